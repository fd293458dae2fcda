"""The PROXY protocol: the pure reader (``proxyheader``) and the listener's
adapter around it (``listeners.ProxyHeaderFactory``, on StringTransport and a
fake clock)."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import address, protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport

from deploy.clientip import parse_networks
from edgeproxy import proxyheader as PH
from edgeproxy.listeners import ProxyHeaderFactory

ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
ports = st.integers(0, 65535)
endpoints = st.one_of(st.tuples(ipv4, ports), st.tuples(ipv6, ports))


# the pure reader ---------------------------------------------------------------------------------
def test_v1_tcp4_and_tcp6_lines():
    h = PH.parse(b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n")
    assert h == PH.ProxyHeader(44, 1, ("203.0.113.7", 56324), ("192.0.2.1", 443))
    h = PH.parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n")
    assert h.source == ("2001:db8::7", 4000) and h.length == 45


def test_v1_unknown_means_use_the_tcp_peer():
    assert PH.parse(b"PROXY UNKNOWN\r\n") == PH.ProxyHeader(15, 1)
    assert PH.parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest").source is None


@pytest.mark.parametrize("line, why", [
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n", "must be"),
    (b"PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n", "must be"),
    (b"PROXY TCP4 2001:db8::1 1.2.3.5 1 2\r\n", "not an IPv4"),
    (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "not an IPv6"),
    (b"PROXY TCP4 1.2.3.400 1.2.3.5 1 2\r\n", "not an IP"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n", "not a port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", "CRLF"),
    (b"PROXY TCP4 " + b"1" * 120, "CRLF within 107"),
    (b"PROXY TCP4 \xff.2.3.4 1.2.3.5 1 2\r\n", "ASCII"),
])
def test_v1_malformed_lines_say_what_is_wrong(line, why):
    with pytest.raises(PH.ProxyHeaderError, match=why):
        PH.parse(line)


def test_v2_proxy_and_local():
    raw = PH.encode_v2(("198.51.100.9", 1234), ("192.0.2.1", 443))
    assert len(raw) == 28 and PH.parse(raw + b"\x16\x03\x01") == PH.ProxyHeader(
        28, 2, ("198.51.100.9", 1234), ("192.0.2.1", 443))
    local = PH.encode_v2(None)
    assert PH.parse(local) == PH.ProxyHeader(16, 2)
    with_tlvs = PH.encode_v2(("2001:db8::9", 80), None, tlvs=b"\x01\x00\x02h2")   # ALPN TLV, ignored
    assert PH.parse(with_tlvs).source == ("2001:db8::9", 80)


@pytest.mark.parametrize("raw, why", [
    (PH.V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1"),
    (PH.V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command"),
    (PH.V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), "family"),
    (PH.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "cannot hold"),
    (PH.V2_SIGNATURE + b"\x21\x11\xff\xff", "at most 4096"),
])
def test_v2_malformed_headers_say_what_is_wrong(raw, why):
    with pytest.raises(PH.ProxyHeaderError, match=why):
        PH.parse(raw)


def test_v2_ssl_tlv_says_the_client_came_over_tls():
    alpn = b"\x01\x00\x08http/1.1"
    h = PH.parse(PH.encode_v2(("198.51.100.9", 1234), ("192.0.2.1", 443), tlvs=alpn, tls=True))
    assert h.tls and h.source == ("198.51.100.9", 1234)
    assert not PH.parse(PH.encode_v2(("198.51.100.9", 1234), ("192.0.2.1", 443), tlvs=alpn)).tls
    not_tls = b"\x20\x00\x05\x00\x00\x00\x00\x00"                 # an SSL TLV whose client flag is 0
    assert not PH.parse(PH.encode_v2(("198.51.100.9", 1), ("192.0.2.1", 2), tlvs=not_tls)).tls
    for bad, why in ((b"\x01\x00\x09http/1.1", "longer than"), (b"\x20\x00\x01\x01", "client and verify"),
                     (b"\x01\x00", "cut short")):
        with pytest.raises(PH.ProxyHeaderError, match=why):
            PH.parse(PH.encode_v2(("198.51.100.9", 1), ("192.0.2.1", 2), tlvs=bad))


def test_encoders_refuse_mixed_address_families():
    for encode in (PH.encode_v1, PH.encode_v2):
        with pytest.raises(ValueError, match="one address family"):
            encode(("192.0.2.1", 1), ("::1", 2))


def test_detect_needs_only_the_signature():
    assert PH.detect(b"") is None and PH.detect(b"PRO") is None and PH.detect(b"\r\n\r\n\x00") is None
    assert PH.detect(b"PROXY ") is True and PH.detect(PH.V2_SIGNATURE) is True
    assert PH.detect(b"GET / HTTP/1.1\r\n") is False
    assert PH.detect(b"\x16\x03\x01\x02\x00") is False         # a TLS ClientHello
    assert PH.detect(b"PROXYZ") is False and PH.detect(b"\r\n\r\nX") is False


@given(endpoints, endpoints, st.sampled_from([PH.encode_v1, PH.encode_v2]), st.binary(max_size=40))
def test_encoded_headers_read_back_and_every_prefix_waits(src, dst, encode, after):
    if (":" in src[0]) != (":" in dst[0]):
        dst = ("::", dst[1]) if ":" in src[0] else ("0.0.0.0", dst[1])
    raw = encode(src, dst)
    h = PH.parse(raw + after)
    assert (h.source, h.destination, h.length) == (src, dst, len(raw))
    for n in range(len(raw)):
        assert PH.detect(raw[:n]) is not False
        if PH.detect(raw[:n]):
            assert PH.parse(raw[:n]) is None


@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: b"PROXY " + b),
                 st.binary(max_size=200).map(lambda b: PH.V2_SIGNATURE + b)))
def test_any_bytes_give_a_header_none_or_a_clear_error(data):
    if not PH.detect(data):
        return
    try:
        h = PH.parse(data)
    except PH.ProxyHeaderError as e:
        assert str(e)
        return
    assert h is None or 0 < h.length <= len(data)


# the listener's adapter ------------------------------------------------------------------------------
class Recorder(protocol.Protocol):
    def __init__(self, addr):
        self.addr, self.data, self.made = addr, b"", False
        self.client_tls = False            # as a Frontend has

    def connectionMade(self):
        self.made = True

    def dataReceived(self, data):
        self.data += data


class RecordingFactory(protocol.Factory):
    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        p = Recorder(addr)
        self.built.append(p)
        return p


def connect(peer_ip="127.0.0.1"):
    clock = MemoryReactorClock()
    inner = RecordingFactory()
    factory = ProxyHeaderFactory(clock, inner, parse_networks(["127.0.0.0/8"]), timeout=5.0)
    peer = address.IPv4Address("TCP", peer_ip, 40000)
    proto = factory.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer)
    transport.protocol = proto
    proto.makeConnection(transport)
    return clock, inner, factory, proto, transport


def test_a_trusted_peer_header_names_the_client_and_the_reader_steps_aside():
    clock, inner, _, reader, transport = connect()
    raw = PH.encode_v1(("203.0.113.7", 5555), ("127.0.0.1", 8443))
    reader.dataReceived(raw[:10])
    assert inner.built == []                        # not complete yet
    reader.dataReceived(raw[10:] + b"GET / HTTP/1.1\r\n")
    (p,) = inner.built
    assert p.addr == address.IPv4Address("TCP", "203.0.113.7", 5555)
    assert p.made and p.data == b"GET / HTTP/1.1\r\n" and transport.protocol is p
    assert not clock.getDelayedCalls()              # the header timer is gone
    assert not p.client_tls
    _, inner, _, reader, _ = connect()
    reader.dataReceived(PH.encode_v2(("203.0.113.7", 5555), ("192.0.2.1", 443), tls=True))
    assert inner.built[0].client_tls


def test_a_trusted_peer_without_a_header_is_passed_on_as_it_came():
    _, inner, _, reader, transport = connect()
    reader.dataReceived(b"\x16\x03\x01\x00\xa5")
    (p,) = inner.built
    assert p.addr.host == "127.0.0.1" and p.data == b"\x16\x03\x01\x00\xa5"
    _, inner, _, reader, transport = connect()
    reader.dataReceived(PH.encode_v2(None) + b"GET")            # LOCAL: the balancer itself
    assert inner.built[0].addr.host == "127.0.0.1" and inner.built[0].data == b"GET"


def test_an_untrusted_peer_never_meets_the_reader():
    _, inner, factory, proto, _ = connect("192.0.2.50")
    assert isinstance(proto, Recorder) and proto.addr.host == "192.0.2.50"
    assert factory.refused == 0


def test_a_bad_or_late_header_aborts_the_connection():
    _, inner, factory, reader, transport = connect()
    reader.dataReceived(b"PROXY TCP4 1.2.3.4\r\n")
    assert transport.disconnecting and inner.built == [] and factory.refused == 1
    clock, inner, factory, reader, transport = connect()
    reader.dataReceived(b"PROXY TCP4 1.2.3.4 ")
    clock.advance(5.0)
    assert transport.disconnecting and inner.built == [] and factory.refused == 1
