import pytest
from hypothesis import given, strategies as st

from cellserver.kernelid import InvalidKernelId, new_kernel_id, node_of, parse_kernel_id


def test_round_trip_with_hyphenated_node():
    kid = new_kernel_id("cell-2", "0" * 32)
    assert kid == "cell-2-" + "0" * 32
    assert parse_kernel_id(kid) == ("cell-2", "0" * 32)


def test_fresh_ids_differ():
    assert new_kernel_id("c1") != new_kernel_id("c1")


@pytest.mark.parametrize("bad", ["", "c1", "c1-xyz", "C1-" + "0" * 32, "c1-" + "0" * 31, "../etc-" + "0" * 32, "c1-" + "0" * 33])
def test_rejects_non_ids(bad):
    with pytest.raises(InvalidKernelId):
        parse_kernel_id(bad)
    assert node_of(bad) is None


@given(st.text(max_size=100))
def test_never_raises_anything_else(text):
    assert node_of(text) is None or parse_kernel_id(text)[0] == node_of(text)
