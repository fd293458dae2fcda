"""The edge's listening sockets: plain or TLS, and the PROXY protocol in front
of either when a trusted load balancer sends it.

An ``ssl:`` listener is a ``fdtls.TLSPort``: OpenSSL on the socket.  With the
PROXY protocol it is Twisted's ``TLSMemoryBIOFactory`` on a TCP port instead:
the header comes before the TLS handshake, so it is read on the raw TCP
connection, outside TLS, and ``ProxyHeaderFactory`` wraps the factory a
listener would use (``TLSMemoryBIOFactory`` around the frontends).  A
connection from a peer not in ``--trusted-proxies`` is handed to that factory
at once, untouched (its PROXY header, if it sends one, is just bad HTTP or bad
TLS).  From a trusted peer the edge reads the first bytes: a header names the
client, anything else is passed on as it came.  Once decided, the reader leaves
the data path: the TCP transport's protocol becomes the real one, built with
the client's address as the one the connection came from.
"""
from __future__ import annotations

from twisted.internet import address, defer, protocol
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory

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

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        try:
            begins = PH.detect(self.buf)
            if begins is None:
                return
            header = PH.parse(self.buf) if begins else None
            if begins and header is None:
                if len(self.buf) > PH.MAX_HEADER:
                    raise PH.ProxyHeaderError(f"PROXY header over {PH.MAX_HEADER} bytes")
                return
        except PH.ProxyHeaderError as e:
            self._refuse(str(e))
            return
        client = self.peer
        if header is not None and header.source is not None:
            ip, port = header.source
            client = (address.IPv6Address if ":" in ip else address.IPv4Address)("TCP", ip, port)
        self._hand_over(client, self.buf[header.length:] if header is not None else self.buf,
                        header is not None and header.tls)

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


def _tcp_endpoint(reactor, port: int, opts: dict[str, str]):
    interface = opts.get("interface", "")
    cls = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
    return cls(reactor, port, backlog=int(opts.get("backlog", 511)), interface=interface)


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
    ctx = None
    if desc.startswith("ssl:"):
        port, opts = parse_ssl_description(desc)
        ctx = ReloadingContextFactory(opts["certKey"], opts["privateKey"], opts.get("extraCertChain"))
        if not proxy_protocol:
            return _listen_tls(reactor, port, opts, factory, ctx), ctx
        endpoint = _tcp_endpoint(reactor, port, opts)
        factory = TLSMemoryBIOFactory(ctx, False, factory)
    else:
        endpoint = serverFromString(reactor, desc)
    if proxy_protocol:
        factory = ProxyHeaderFactory(reactor, factory, trusted, header_timeout, on_refused)
    return endpoint.listen(factory), ctx
