"""The edge's listening sockets: plain or TLS, and the PROXY protocol in front
of either when a trusted load balancer sends it.

An ``ssl:`` listener is a ``fdtls.TLSPort``: OpenSSL on the socket.  A PROXY
header comes before the TLS handshake, so it is read on the raw connection,
outside TLS (``header_before_tls``: only the header's bytes are taken from
the socket, the handshake's stay for OpenSSL), and ``ProxyHeaderFactory``
wraps the factory a listener would use.  A
connection from a peer not in ``--trusted-proxies`` is handed to that factory
at once, untouched (its PROXY header, if it sends one, is just bad HTTP or bad
TLS).  From a trusted peer the edge reads the first bytes: a header names the
client, anything else is passed on as it came.  Once decided, the reader leaves
the data path: the TCP transport's protocol becomes the real one, built with
the client's address as the one the connection came from.
"""
from __future__ import annotations

from twisted.internet import address, defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from deploy.clientip import is_trusted
from edgeproxy import proxyheader as PH
from edgeproxy.fdtls import TLSPort
from edgeproxy.tls import ReloadingContextFactory, parse_ssl_description

_log = Logger(namespace="edgeproxy")


class _HeaderReader(protocol.Protocol):
    """Reads the PROXY header (if any) of one trusted connection, then hands over."""

    def __init__(self, factory: "ProxyHeaderFactory", peer):
        self.factory = factory
        self.peer = peer
        self.buf = b""
        self.timer = None

    def connectionMade(self):
        self.timer = self.factory.reactor.callLater(self.factory.timeout, self._timed_out)

    def _decide(self, buf: bytes) -> tuple[bool, PH.ProxyHeader | None]:
        """(decided, header): (False, None) until the bytes tell, then (True,
        the header) or (True, None) for a connection without one.  Raises
        ``ProxyHeaderError`` for a bad one."""
        begins = PH.detect(buf)
        if begins is None:
            return False, None
        if not begins:
            return True, None
        header = PH.parse(buf)
        if header is None:
            if len(buf) > PH.MAX_HEADER:
                raise PH.ProxyHeaderError(f"PROXY header over {PH.MAX_HEADER} bytes")
            return False, None
        return True, header

    def _client(self, header: PH.ProxyHeader | None):
        if header is None or header.source is None:
            return self.peer
        ip, port = header.source
        return (address.IPv6Address if ":" in ip else address.IPv4Address)("TCP", ip, port)

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        try:
            decided, header = self._decide(self.buf)
        except PH.ProxyHeaderError as e:
            self._refuse(str(e))
            return
        if decided:
            self._hand_over(self._client(header), self.buf[header.length:] if header is not None else self.buf,
                            header is not None and header.tls)

    def header_before_tls(self, pending: bytes):
        """For TLS on the socket (``fdtls``), which must leave the handshake's
        bytes in the socket for OpenSSL: ``pending`` is what the socket holds
        (peeked).  Returns (how many of those bytes are header bytes to take
        out, and once decided the hand-over to call after taking them, else
        None).  Undecided bytes are all header bytes: a TLS record never
        begins like a PROXY header, so taking them loses nothing."""
        buf = self.buf + pending
        try:
            decided, header = self._decide(buf)
        except PH.ProxyHeaderError as e:
            self._refuse(str(e))
            return 0, None
        if not decided:
            self.buf = buf
            return len(pending), None
        take = header.length - len(self.buf) if header is not None else 0
        tls = header is not None and header.tls
        return take, lambda: self._hand_over(self._client(header), b"", tls)

    def _hand_over(self, client, rest: bytes, client_tls: bool = False) -> None:
        self._cancel()
        transport, self.buf = self.transport, b""
        inner = self.factory.wrapped.buildProtocol(client)
        if inner is None:
            transport.loseConnection()
            return
        if client_tls and hasattr(inner, "client_tls"):
            inner.client_tls = True         # a plain listener's frontend: the client used TLS to the balancer
        transport.protocol = inner          # what the TCP connection calls from now on
        inner.makeConnection(transport)
        if rest:
            inner.dataReceived(rest)

    def _refuse(self, why: str) -> None:
        self._cancel()
        self.factory.refused += 1
        self.factory.on_refused()
        _log.warn("bad PROXY header from {peer}: {why}", peer=self.peer.host, why=why)
        self.transport.abortConnection()

    def _timed_out(self) -> None:
        self.timer = None
        self._refuse(f"no complete PROXY header or request in {self.factory.timeout:g} s")

    def _cancel(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def connectionLost(self, reason=protocol.connectionDone):
        self._cancel()


class ProxyHeaderFactory(protocol.Factory):
    """``wrapped``'s connections, with the PROXY protocol honoured from ``trusted`` peers."""

    noisy = False

    def __init__(self, reactor, wrapped: protocol.Factory, trusted, timeout: float, on_refused=lambda: None):
        self.reactor = reactor
        self.wrapped = wrapped
        self.trusted = trusted
        self.timeout = timeout
        self.refused = 0
        self.on_refused = on_refused          # a bad or missing header closed a connection (a metric)

    def doStart(self):
        self.wrapped.doStart()

    def doStop(self):
        self.wrapped.doStop()

    def buildProtocol(self, addr):
        if not is_trusted(getattr(addr, "host", ""), self.trusted):
            return self.wrapped.buildProtocol(addr)
        return _HeaderReader(self, addr)


def _listen_tls(reactor, port: int, opts: dict[str, str], factory, ctx) -> defer.Deferred:
    """Like ``endpoint.listen``: a Deferred firing with the listening port."""
    tls_port = TLSPort(port, factory, ctx, backlog=int(opts.get("backlog", 511)),
                       interface=opts.get("interface", ""), reactor=reactor)
    try:
        tls_port.startListening()
    except Exception:
        return defer.fail()
    return defer.succeed(tls_port)


def listen(reactor, desc: str, factory: protocol.Factory, *, trusted=(), proxy_protocol: bool = False,
           header_timeout: float = 10.0, on_refused=lambda: None):
    """Listen on ``desc`` (a Twisted endpoint description; ``ssl:`` ones get the
    edge's TLS context).  Returns (Deferred firing with the port, the TLS
    context factory or None)."""
    ctx = port = opts = None
    if desc.startswith("ssl:"):
        port, opts = parse_ssl_description(desc)
        ctx = ReloadingContextFactory(opts["certKey"], opts["privateKey"], opts.get("extraCertChain"))
    if proxy_protocol:
        factory = ProxyHeaderFactory(reactor, factory, trusted, header_timeout, on_refused)
    if ctx is not None:
        return _listen_tls(reactor, port, opts, factory, ctx), ctx
    return serverFromString(reactor, desc).listen(factory), ctx
