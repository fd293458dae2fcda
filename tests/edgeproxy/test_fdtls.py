"""``fdtls.TLSServer`` driven step by step: a real TCP connection on 127.0.0.1,
OpenSSL on the server's descriptor, Python's ``ssl`` (non-blocking) as the
client, and a ``MemoryReactorClock`` instead of a running reactor, so each test
calls ``doRead``/``doWrite`` itself and sees which directions the transport
asks to be polled for.  Each step waits (bounded) for its socket to be
readable: loopback may deliver a little after ``send`` returns.
"""
from __future__ import annotations

import select
import socket
import ssl

import pytest
from twisted.internet import main, protocol
from twisted.python.failure import Failure
from twisted.internet import address
from twisted.internet.testing import MemoryReactorClock

from certs import devca
from deploy.clientip import parse_networks
from edgeproxy import fdtls
from edgeproxy import proxyheader as PH
from edgeproxy.listeners import ProxyHeaderFactory
from edgeproxy.fdtls import TLSServer
from edgeproxy.tls import ReloadingContextFactory


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fdtls-certs")
    assert devca.main(["--dir", str(d), "--quiet"]) == 0
    return d


class Collect(protocol.Protocol):
    def __init__(self):
        self.data = b""
        self.lost = None

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason=protocol.connectionDone):
        self.lost = reason


class _Port:
    """What ``TLSServer`` needs of its listening port."""

    def __init__(self, ctx):
        self.context_factory = ctx
        self._realPortNumber = 0


def tcp_pair():
    """(client socket, server socket, the client's address): one TCP connection on 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        raw_client = socket.create_connection(listener.getsockname())
        raw_server, addr = listener.accept()
    return raw_client, raw_server, addr


@pytest.fixture(params=["cffi", "pyopenssl"])
def pair(certs, request, monkeypatch):
    """(server transport, its protocol, the client's ssl socket, the reactor),
    the server reading and writing through the bindings (``_Calls``) or
    through pyOpenSSL's public methods (its fallback)."""
    monkeypatch.setattr(fdtls, "_RAW", request.param == "cffi")
    raw_client, raw_server, addr = tcp_pair()
    reactor = MemoryReactorClock()
    proto = Collect()
    ctx = ReloadingContextFactory(str(certs / "server.crt"), str(certs / "server.key"))
    server = TLSServer(raw_server, proto, addr, _Port(ctx), 0, reactor)
    proto.makeConnection(server)
    assert isinstance(server._io, fdtls._Calls) == (request.param == "cffi")
    cctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    cctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF   # so a missing close_notify shows (SSLEOFError)
    client = cctx.wrap_socket(raw_client, server_hostname="localhost", do_handshake_on_connect=False,
                              suppress_ragged_eofs=False)
    client.setblocking(False)
    yield server, proto, client, reactor
    client.close()
    if server.connected:
        server.socket.close()


def readable(sock, timeout=5.0) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def server_read(server):
    assert readable(server.socket), "nothing came to the server"
    return server.doRead()


def handshake(server, client, rounds=10):
    for _ in range(rounds):
        try:
            client.do_handshake()
            return
        except ssl.SSLWantReadError:
            assert server_read(server) is None
            readable(client)
    raise AssertionError("no handshake")


def client_read(client, want: int, eof: bool = False) -> bytes:
    """``want`` bytes (and then the end, if ``eof``) from the client, waiting
    up to 5 s for each piece; session tickets end a non-blocking read early."""
    out = b""
    while True:
        try:
            chunk = client.recv(1 << 20)
        except ssl.SSLWantReadError:
            if len(out) >= want and not eof:
                return out
            assert readable(client), f"got {len(out)} of {want} bytes"
            continue
        if not chunk:
            return out + b"<EOF>"
        out += chunk


def test_requests_and_answers_after_the_handshake(pair):
    server, proto, client, reactor = pair
    handshake(server, client)
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert server_read(server) is None
    assert proto.data == b"GET / HTTP/1.1\r\n\r\n"
    server.send_now(b"HTTP/1.1 200 OK\r\n\r\n")
    assert server not in reactor.writers           # sent at once, nothing queued
    assert client_read(client, 19) == b"HTTP/1.1 200 OK\r\n\r\n"
    # Two records: a read takes one record at a time, and the socket (level
    # triggered) stays readable while the other is in it, not inside OpenSSL.
    client.sendall(b"one")
    client.sendall(b"two")
    while len(proto.data) < 24:
        assert server_read(server) is None
    assert proto.data.endswith(b"onetwo")


def test_a_write_before_the_handshake_waits_for_it_even_when_closing(pair):
    """The edge's 429 for too many connections is written and closed in
    ``connectionMade``: OpenSSL cannot write before the handshake, so the
    transport must read (although closing stopped reading) and not spin on a
    writable socket; the answer then gets out, followed by close_notify."""
    server, proto, client, reactor = pair
    server.send_now(b"HTTP/1.1 429 Too Many Requests\r\n\r\n")
    server.loseConnection()
    assert server not in reactor.writers and server in reactor.readers
    why = None
    for _ in range(20):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            why = server_read(server) or (server.doWrite() if server in reactor.writers else None)
            assert why is None
            readable(client)
    else:
        raise AssertionError("no handshake")
    for _ in range(20):                              # the client's Finished lets the write out
        why = server_read(server) or (server.doWrite() if server in reactor.writers else None)
        if why is not None:
            break
    assert why is main.CONNECTION_DONE
    server.connectionLost(Failure(why))
    # close_notify: the client sees a clean end, not a bare FIN (an SSLEOFError here)
    assert client_read(client, 0, eof=True) == b"HTTP/1.1 429 Too Many Requests\r\n\r\n<EOF>"


def test_a_close_waiting_for_a_handshake_that_never_comes_is_aborted(pair):
    server, proto, client, reactor = pair
    server.send_now(b"HTTP/1.1 429 Too Many Requests\r\n\r\n")
    server.loseConnection()
    reactor.advance(fdtls.CLOSE_GRACE - 0.1)
    assert server.connected and not reactor.getDelayedCalls()[0].called
    reactor.advance(0.2)                             # abortConnection: lost at the next turn
    reactor.advance(0)
    assert proto.lost is not None and not server.connected


def test_a_reader_that_does_not_read_gets_everything_later_in_order(pair):
    server, proto, client, reactor = pair
    handshake(server, client)
    payload = bytes(range(256)) * (16 * 1024)      # 4 MB: more than the socket buffers take
    server.send_now(payload)
    assert server in reactor.writers and (server._tempDataBuffer or server.dataBuffer)  # the rest queued
    got = b""
    while server in reactor.writers:
        got += client_read(client, 1)
        assert server.doWrite() is None
    got += client_read(client, len(payload) - len(got))
    assert got == payload


def test_plain_http_on_the_tls_port_ends_that_connection(pair):
    server, proto, client, reactor = pair
    with socket.socket(fileno=client.detach()) as raw:      # no TLS at all on this one
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server_read(server) is main.CONNECTION_LOST
        server.connectionLost(Failure(main.CONNECTION_LOST))
        assert proto.data == b"" and proto.lost is not None
        raw.settimeout(5)
        alert = raw.recv(100)
        assert alert[:1] in (b"\x15", b"")                # a TLS alert record (or just the close)


def test_an_unclean_end_is_a_done_connection(pair):
    server, proto, client, reactor = pair
    handshake(server, client)
    client.sendall(b"x")
    assert server_read(server) is None and proto.data == b"x"
    server.send_now(b"y")
    assert client_read(client, 1) == b"y"          # (the tickets too: unread bytes would make a reset)
    raw = socket.socket(fileno=client.detach())
    raw.close()                                     # TCP FIN without close_notify
    assert server_read(server) is main.CONNECTION_DONE


class _Factory(protocol.Factory):
    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        p = Collect()
        p.addr = addr
        self.built.append(p)
        return p


@pytest.mark.parametrize("header", [PH.encode_v1(("203.0.113.7", 4711), ("127.0.0.1", 443)),
                                    PH.encode_v2(("2001:db8::7", 4711), ("::1", 443)), b""],
                         ids=["v1", "v2", "no-header"])
def test_a_proxy_header_before_the_handshake_is_read_raw_and_only_it(certs, header):
    """The header's bytes are taken out of the socket and no more: the
    handshake that follows in the same segment is OpenSSL's."""
    raw_client, raw_server, addr = tcp_pair()
    reactor = MemoryReactorClock()
    inner = _Factory()
    factory = ProxyHeaderFactory(reactor, inner, trusted=parse_networks(["127.0.0.1"]), timeout=10)
    reader = factory.buildProtocol(address.IPv4Address("TCP", *addr))
    ctx = ReloadingContextFactory(str(certs / "server.crt"), str(certs / "server.key"))
    server = TLSServer(raw_server, reader, addr, _Port(ctx), 0, reactor)
    reader.makeConnection(server)
    cctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = cctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    raw_client.sendall(header + outgoing.read())     # header and ClientHello in one segment
    try:
        for _ in range(10):
            assert server_read(server) is None
            if not inner.built:
                continue                              # (a header split over reads)
            assert readable(raw_client)
            incoming.write(raw_client.recv(65536))
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
        tls.write(b"GET / HTTP/1.1\r\n\r\n")
        raw_client.sendall(outgoing.read())
        front = inner.built[0]
        while not front.data:
            assert server_read(server) is None
        assert front.data == b"GET / HTTP/1.1\r\n\r\n"
        want = {b"": "127.0.0.1"}.get(header, "203.0.113.7" if header.startswith(b"PROXY") else "2001:db8::7")
        assert front.addr.host == want and server.protocol is front
    finally:
        raw_client.close()
        server.socket.close()
