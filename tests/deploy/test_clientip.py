from hypothesis import given, strategies as st

from deploy.clientip import client_ip, parse_networks

EDGE = parse_networks(["127.0.0.1", "10.0.0.0/8"])


def test_untrusted_peer_is_the_client_whatever_it_claims():
    assert client_ip("203.0.113.9", ["1.2.3.4"], EDGE) == "203.0.113.9"
    assert client_ip("203.0.113.9", ["1.2.3.4"], ()) == "203.0.113.9"


def test_trusted_peer_walks_right_to_left_past_trusted_hops():
    assert client_ip("127.0.0.1", ["198.51.100.7"], EDGE) == "198.51.100.7"
    assert client_ip("127.0.0.1", ["6.6.6.6, 198.51.100.7, 10.1.2.3"], EDGE) == "198.51.100.7"
    assert client_ip("127.0.0.1", ["6.6.6.6", "198.51.100.7"], EDGE) == "198.51.100.7"


def test_malformed_hop_stops_the_walk():
    assert client_ip("127.0.0.1", ["6.6.6.6, garbage"], EDGE) == "127.0.0.1"
    assert client_ip("127.0.0.1", [], EDGE) == "127.0.0.1"


def test_ports_and_v6():
    assert client_ip("127.0.0.1", ["198.51.100.7:5555"], EDGE) == "198.51.100.7"
    assert client_ip("127.0.0.1", ["[2001:db8::1]:80"], EDGE) == "2001:db8::1"


@given(st.lists(st.text(max_size=30), max_size=5))
def test_never_raises_and_spoofing_needs_a_trusted_peer(values):
    assert client_ip("192.0.2.1", values, EDGE) == "192.0.2.1"
    client_ip("127.0.0.1", values, EDGE)
