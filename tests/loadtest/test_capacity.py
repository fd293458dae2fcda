import pytest

from loadtest.capacity import source_address


def test_each_session_has_its_own_loopback_source_never_127_0_0_x():
    addrs = [source_address(i) for i in range(1000)]
    assert len(set(addrs)) == 1000 and addrs[0] == "127.0.1.1" and addrs[250] == "127.0.2.1"
    assert all(a.startswith("127.0.") and not a.startswith("127.0.0.") for a in addrs)
    with pytest.raises(ValueError):
        source_address(250 * 250)
