"""The edge's own HTTP/1.1 proxy: client connections, pooled backend
connections, streaming both ways, websocket splicing.

``Frontend`` (one per client connection) reads a request head with the pure
parser in ``httphead``, asks ``policy`` where it goes, and either answers
itself (health, metrics, static files, errors, rate limits) or takes a
keep-alive connection to the chosen backend from ``BackendPool`` and streams
the body across.  ``BackendConn`` reads the response head and streams the
body back.  Bodies are never buffered whole: each direction registers the
sending transport as the producer of the receiving one, so a slow reader
pauses the fast writer (Twisted's producer/consumer backpressure).

After a ``101 Switching Protocols`` to a websocket upgrade, both
connections are spliced byte for byte.  If the backend then dies, the page
gets a close frame (4502, "kernel server lost") written at a frame boundary
(``wsframes.FrameTracker``).

A request that failed before any byte reached a server (the connection was
refused) is retried once on another server for new work; nothing else is
replayed.
"""
from __future__ import annotations

import json
import time
from collections import deque
from typing import TYPE_CHECKING

from twisted.internet import abstract, defer, protocol, tcp
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.logger import Logger

from edgeproxy import httphead as H
from edgeproxy.fdtls import TLSServer
from edgeproxy.wsframes import FrameTracker, close_frame

if TYPE_CHECKING:
    from edgeproxy.edge import Edge

MAX_PIPELINED = 64 * 1024
HSTS = b"max-age=31536000"
REASONS = {200: b"OK", 204: b"No Content", 301: b"Moved Permanently", 304: b"Not Modified",
           400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
           408: b"Request Timeout", 413: b"Payload Too Large", 429: b"Too Many Requests",
           431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 501: b"Not Implemented",
           502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
           505: b"HTTP Version Not Supported"}


_PLAIN_TCP = (tcp.Server, tcp.Client)


def send(transport, data: bytes) -> None:
    """``transport.write(data)``, but sent at once when nothing is queued.

    Twisted's ``write`` only queues: it registers the socket for writing
    (an ``epoll_ctl``), sends on the next reactor turn and unregisters it
    again (another one).  For the small heads and bodies of a proxied
    exchange that bookkeeping cost more than the ``send`` itself.  Only for
    plain TCP transports with an empty buffer; anything not sent (a full
    socket buffer, an error) goes through ``write`` as before, so ordering,
    backpressure and error handling stay Twisted's.  A TLS connection of an
    ``ssl:`` listener (``fdtls``) does the same in ``send_now``.
    """
    if transport.__class__ in _PLAIN_TCP:
        try:
            idle = (not transport.TLS and transport.connected and not transport.disconnecting
                    and not transport._writeDisconnected and not transport._tempDataBuffer
                    and not transport.dataBuffer)
        except AttributeError:      # another Twisted's internals: just write
            idle = False
        if idle:
            try:
                n = transport.socket.send(data)
            except OSError:
                n = 0
            if n == len(data):
                return
            data = data[n:]
    elif transport.__class__ is TLSServer:
        transport.send_now(data)
        return
    transport.write(data)


def no_delay(transport) -> None:
    """TCP_NODELAY on a connection (through a TLS wrapper too).  A proxy relays
    small messages one at a time (websocket frames, request heads): with Nagle's
    algorithm each waited for the previous one's ACK, which the peer delays by
    up to 40 ms -- a slider update through the edge took 42 ms instead of ~2."""
    while transport is not None:
        if hasattr(transport, "setTcpNoDelay"):
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass
            return
        transport = getattr(transport, "transport", None)   # TLSMemoryBIOProtocol wraps the TCP one


def _endpoint(reactor, host: str, port: int, timeout: float):
    """A TCP endpoint without name resolution for an IP address: ``HostnameEndpoint``
    resolves in a thread and reports a refused connection only at its next
    attempt tick (0.3 s later), which delays marking a dead server down."""
    if abstract.isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if abstract.isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


class BackendConn(protocol.Protocol):
    """One keep-alive connection to a backend; carries one exchange at a time."""

    _log = Logger()

    def __init__(self, pool: "BackendPool", name: str):
        self.pool = pool
        self.name = name
        self.front: Frontend | None = None
        self.buf = bytearray()
        self.mode = "idle"        # idle | head | length | chunked | until_close | tunnel
        self.remaining = 0
        self.tracker: H.ChunkedTracker | None = None
        self.reusable = True
        self.connected = False
        self.closing = False          # we closed it ourselves (pool expiry, shutdown)

    def connectionMade(self):
        self.connected = True
        no_delay(self.transport)

    def close(self) -> None:
        """Close it ourselves: its end then says nothing about the server's health."""
        self.closing = True
        self.transport.loseConnection()

    def abandon(self) -> None:
        """The client side is done with this exchange: close it, never reuse it."""
        self.front = None
        self.reusable = False
        self.close()

    def start(self, front: "Frontend") -> None:
        self.front = front
        self.mode = "head"
        self.buf.clear()

    def dataReceived(self, data: bytes) -> None:
        front = self.front
        if front is None:
            self.close()  # a backend talking out of turn is not reused
            return
        if self.mode == "tunnel":
            front.tunnel_from_backend(data)
            return
        if self.mode == "head":
            self.buf += data
            try:
                end = H.find_head_end(self.buf)
            except H.HeadError as e:
                self._bad_response(e.message)
                return
            if end < 0:
                if len(self.buf) > H.MAX_HEAD * 4:
                    self._bad_response("response head too large")
                return
            try:
                head = H.parse_response_head(bytes(self.buf[:end]))
            except H.HeadError as e:
                self._bad_response(e.message)
                return
            rest = bytes(self.buf[end:])
            self.buf.clear()
            if 100 <= head.status < 200 and head.status != 101:
                front.interim_response(head)
                if rest:
                    self.dataReceived(rest)
                return
            self.reusable = head.keep_alive
            if head.status == 101:
                if front.request.is_websocket:
                    self.mode = "tunnel"
                    self.reusable = False
                    front.response_head(head, framed=True)
                    if rest:
                        front.tunnel_from_backend(rest)
                    return
                self._bad_response("101 without a websocket upgrade")
                return
            body = b""
            if not H.response_has_body(front.request.method, head.status):
                self.mode = "none"
            elif head.chunked:
                self.mode, self.tracker = "chunked", H.ChunkedTracker()
            elif head.length is not None:
                self.mode, self.remaining = "length", head.length
                if rest and len(rest) >= head.length:   # the whole body came with the head: one write
                    body, rest = rest[:head.length], rest[head.length:]
                    self.remaining = 0
            else:
                self.mode, self.reusable = "until_close", False
            front.response_head(head, framed=self.mode != "until_close", body=body)
            if self.mode == "none" or (self.mode == "length" and self.remaining == 0):
                self._done()
                if rest:
                    self.close()
                return
            data = rest
            if not data:
                return
        self._body(data)

    def _body(self, data: bytes) -> None:
        front = self.front
        if self.mode == "length":
            take = data[:self.remaining]
            self.remaining -= len(take)
            front.response_body(take)
            if self.remaining == 0:
                self._done()
                if len(data) > len(take):
                    self.close()
        elif self.mode == "chunked":
            try:
                n = self.tracker.feed(data)
            except H.ChunkedError as e:
                self._log.warn("backend {name}: bad chunked body: {err}", name=self.name, err=str(e))
                self.reusable = False
                front.backend_lost("bad chunked body from the server")
                self.front = None
                self.close()
                return
            front.response_body(data[:n])
            if self.tracker.done:
                self._done()
                if len(data) > n:
                    self.close()
        elif self.mode == "until_close":
            front.response_body(data)

    def _done(self) -> None:
        front, self.front = self.front, None
        self.mode = "idle"
        front.response_done()
        self.pool.release(self)

    def _bad_response(self, why: str) -> None:
        self._log.warn("backend {name} sent a bad response: {why}", name=self.name, why=why)
        front, self.front = self.front, None
        self.reusable = False
        self.close()
        if front is not None:
            front.backend_failed_response(f"bad response from the server: {why}")

    def connectionLost(self, reason=protocol.connectionDone):
        self.connected = False
        self.pool.discard(self)
        front, self.front = self.front, None
        if front is None:
            if not self.closing:
                self.pool.on_lost(self.name)   # the server closed an idle connection: did it die?
            return
        if self.mode == "until_close":
            front.response_done(close=True)
            return
        self.pool.on_lost(self.name)   # it died mid-exchange
        if self.mode == "tunnel":
            front.tunnel_backend_lost()
        elif self.mode == "head" and not self.buf:
            front.backend_failed_response("the server closed the connection before answering")
        else:
            front.backend_lost("the server closed the connection mid-response")


class BackendPool:
    """Keep-alive connections per backend (host, port), reused in LIFO order."""

    _log = Logger()

    def __init__(self, reactor, addresses: dict[str, tuple[str, int]], max_idle: int = 64,
                 idle_timeout: float = 30.0, connect_timeout: float = 3.0,
                 on_lost=lambda name: None):
        self.reactor = reactor
        self.addresses = addresses
        # Called with the backend's name when a connection we did not close
        # ourselves ended (idle, or mid-exchange): a dying server does that
        # first, so the edge checks it at once instead of at the next interval.
        self.on_lost = on_lost
        self.idle: dict[str, deque] = {name: deque() for name in addresses}
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle_since: dict[int, float] = {}

    def take_idle(self, name: str) -> "BackendConn | None":
        """The most recently used live idle connection to ``name``, or None
        (no Deferred: the common case of a keep-alive exchange stays a plain call)."""
        idle = self.idle[name]
        while idle:
            conn = idle.pop()
            self._idle_since.pop(id(conn), None)
            if conn.connected:
                return conn
        return None

    def acquire(self, name: str) -> defer.Deferred:
        conn = self.take_idle(name)
        if conn is not None:
            return defer.succeed(conn)
        host, port = self.addresses[name]
        ep = _endpoint(self.reactor, host, port, self.connect_timeout)
        return ep.connect(_OneFactory(lambda: BackendConn(self, name)))

    def release(self, conn: BackendConn) -> None:
        idle = self.idle[conn.name]
        if not conn.reusable or not conn.connected or len(idle) >= self.max_idle:
            conn.close()
            return
        idle.append(conn)
        self._idle_since[id(conn)] = self.reactor.seconds()

    def discard(self, conn: BackendConn) -> None:
        try:
            self.idle[conn.name].remove(conn)
        except ValueError:
            pass
        self._idle_since.pop(id(conn), None)

    def drop_idle(self, name: str) -> None:
        """A backend went down: its idle connections are worthless."""
        while self.idle[name]:
            self.idle[name].pop().close()

    def expire(self) -> None:
        now = self.reactor.seconds()
        for name, idle in self.idle.items():
            for conn in list(idle):
                if now - self._idle_since.get(id(conn), now) > self.idle_timeout:
                    idle.remove(conn)
                    conn.close()


class _OneFactory(protocol.Factory):
    noisy = False

    def __init__(self, make):
        self.make = make

    def buildProtocol(self, addr):
        return self.make()


class Frontend(protocol.Protocol):
    """One client connection: keep-alive, one exchange at a time."""

    _log = Logger()

    def __init__(self, edge: "Edge", secure: bool, redirect_only: bool = False, addr=None):
        self.edge = edge
        self.secure = secure          # TLS to the edge (an ssl: listener)
        # The client used TLS to a trusted balancer in front (its PROXY v2 SSL
        # TLV; ``listeners``), or a trusted peer's X-Forwarded-Proto says https:
        # either way the page is on https (X-Forwarded-Proto, HSTS).
        self.client_tls = False
        self.https = secure           # this request's scheme as the browser saw it (set per request)
        self.redirect_only = redirect_only
        self.addr = addr          # where it came from: the TCP peer, or a trusted PROXY header's client
        self.buf = bytearray()
        self.state = "head"     # head | body | response | tunnel | closed
        self.request: H.RequestHead | None = None
        self.backend: BackendConn | None = None
        self.peer_ip = ""
        self.client_ip = ""
        self.timer = None
        self.timer_why: str | None = None    # what the timer means now; None: disarmed
        self.keep_alive = True
        self.exchange_bytes_sent = 0
        self.tried: set[str] = set()
        self.tracker = None
        self.remaining = 0
        self.ws_tracker: FrameTracker | None = None
        self.counted = False
        self.started = 0.0
        self.status = 0
        self.route_kind = ""
        self.bytes_out = 0
        self.backend_name: str | None = None
        self.route = None

    # connection ---------------------------------------------------------------------
    def connectionMade(self):
        no_delay(self.transport)
        peer = self.addr if self.addr is not None else self.transport.getPeer()
        self.peer_ip = getattr(peer, "host", "")
        self.client_ip = self.peer_ip
        if not self.edge.connections.acquire(self.peer_ip):
            self.edge.metrics.rejected.labels("connections").inc()
            self.transport.write(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nConnection: close\r\n"
                                 b"Content-Type: application/json\r\nContent-Length: 79\r\n\r\n"
                                 b'{"error":"too_many_connections","message":"too many connections from you"}    ')
            self.transport.loseConnection()
            self.state = "closed"
            return
        self.counted = True
        self.edge.open_connections.add(self)
        self._arm(self.edge.settings.head_timeout, "request head timeout")

    def connectionLost(self, reason=protocol.connectionDone):
        prev, self.state = self.state, "closed"
        self._cancel_timer()
        if self.counted:
            self.edge.connections.release(self.peer_ip)
            self.counted = False
        self.edge.open_connections.discard(self)
        backend, self.backend = self.backend, None
        if backend is not None:
            if prev == "tunnel":
                self.edge.metrics.tunnels.dec()
            backend.abandon()

    # One DelayedCall per connection, moved instead of replaced: a request
    # arms and disarms its connection's timer twice (head, response, idle),
    # and a callLater plus a cancel each time was ~5% of the edge's CPU per
    # proxied request (an A/B in loadtest/RESULTS-edge.md).  Disarming only
    # forgets what the timer means; if it fires meanwhile it does nothing.
    def _arm(self, seconds: float, why: str) -> None:
        self.timer_why = why
        timer = self.timer
        if timer is not None and timer.active():
            timer.reset(seconds)
        else:
            self.timer = self.edge.reactor.callLater(seconds, self._timed_out)

    def _disarm(self) -> None:
        self.timer_why = None

    def _cancel_timer(self) -> None:
        timer, self.timer, self.timer_why = self.timer, None, None
        if timer is not None and timer.active():
            timer.cancel()

    def _timed_out(self) -> None:
        self.timer = None
        why, self.timer_why = self.timer_why, None
        if why is None:
            return                                   # disarmed since it was set
        if self.state == "head" and not self.buf:
            self.transport.loseConnection()          # idle keep-alive: just close
        elif self.state in ("head", "body"):
            self.error(408, "timeout", why, close=True)
        elif self.state == "response":
            if self.exchange_bytes_sent == 0 and self.backend is not None:
                backend, self.backend = self.backend, None
                backend.abandon()
                self.error(504, "backend_timeout", f"{self._backend_label()} did not answer in time", close=True)
            else:
                self.transport.loseConnection()
        else:
            self.transport.loseConnection()

    def _backend_label(self) -> str:
        return "the server"

    # reading ----------------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state == "tunnel":
            self.backend.transport.write(data)
            return
        if state == "body":
            self._body_data(data)
            return
        if state == "closed":
            return
        self.buf += data
        if state == "head":
            self._try_head()
        elif len(self.buf) > MAX_PIPELINED:
            self.transport.pauseProducing()

    def _try_head(self) -> None:
        try:
            end = H.find_head_end(self.buf)
        except H.HeadError as e:
            self.request = None
            self.error(e.status, "bad_request", e.message, close=True)
            return
        if end < 0:
            if len(self.buf) > H.MAX_HEAD:
                self.error(431, "head_too_large", f"request head over {H.MAX_HEAD} bytes", close=True)
            return
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        self._disarm()
        self.started = self.edge.reactor.seconds()
        self.status = 0
        self.bytes_out = 0
        self.exchange_bytes_sent = 0
        self.route_kind = "-"
        try:
            self.request = H.parse_request_head(raw)
        except H.HeadError as e:
            self.request = None
            self.error(e.status, "bad_request", e.message, close=True)
            return
        self.keep_alive = self.request.keep_alive
        self.edge.dispatch(self)

    def _next(self) -> None:
        """The exchange is over: read the next request (pipelined bytes first)."""
        self.edge.finished(self)
        if not self.keep_alive or self.state == "closed":
            self.state = "closed"
            self.transport.loseConnection()
            return
        self.state = "head"
        self.request = None
        self.transport.resumeProducing()
        self._arm(self.edge.settings.keepalive_timeout, "idle")
        if self.buf:
            self._arm(self.edge.settings.head_timeout, "request head timeout")
            self._try_head()

    # answering locally ----------------------------------------------------------------------
    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool = False) -> None:
        if self.state == "closed":
            return
        req = self.request
        if close or (req is not None and req.has_body and self.state == "head"):
            # A body we answer without reading ends the connection, and the
            # answer says so (Connection: close) before the client sends more.
            self.keep_alive = False
        hdrs = list(headers)
        hdrs.append((b"content-length", b"%d" % len(body)))
        hdrs.append((b"connection", b"keep-alive" if self.keep_alive else b"close"))
        if self.https:
            hdrs.append((b"strict-transport-security", HSTS))
        self.status = status
        self.bytes_out = len(body)
        method = self.request.method if self.request is not None else b"GET"
        send(self.transport, H.serialize_response(status, REASONS.get(status, b"-"), hdrs)
             + (b"" if method == b"HEAD" else body))
        self.state = "response"
        self._next()

    def error(self, status: int, code: str, message: str, close: bool = False,
              retry_after: float | None = None) -> None:
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % max(1, int(retry_after + 0.999))))
        origin = self.request.get(b"origin") if self.request is not None else None
        if origin:
            headers += [(b"access-control-allow-origin", origin), (b"access-control-allow-credentials", b"true"),
                        (b"access-control-expose-headers", b"Retry-After")]
        body = json.dumps({"error": code, "message": message}).encode()
        if status >= 500 or status in (400, 431):
            self.edge.log_event("edge answered {status} {code}: {message}", status, code, message, self.client_ip)
        self.respond(status, headers, body, close=close)

    # proxying ------------------------------------------------------------------------------------
    def forward_to(self, conn: BackendConn, request_headers: list[tuple[bytes, bytes]]) -> None:
        """Send the request head and start streaming the body to ``conn``."""
        if self.state == "closed":
            self.edge.pool.release(conn)
            return
        self.backend = conn
        conn.start(self)
        req = self.request
        send(conn.transport, H.serialize_request(req.method, req.target, request_headers))
        self.exchange_bytes_sent = 1
        self._arm(self.edge.settings.response_timeout, "backend response timeout")
        if req.chunked:
            self.tracker, self.state = H.ChunkedTracker(), "body"
        elif req.length:
            self.remaining, self.state = req.length, "body"
        else:
            self.state = "response"
        if self.state == "body":
            conn.transport.registerProducer(self.transport, True)
            if self.buf:
                data = bytes(self.buf)
                self.buf.clear()
                self._body_data(data)

    def _body_data(self, data: bytes) -> None:
        backend = self.backend
        if self.tracker is not None:
            try:
                n = self.tracker.feed(data)
            except H.ChunkedError as e:
                self._abort_exchange(400, "bad_chunked_body", str(e))
                return
            done = self.tracker.done
        else:
            n = min(self.remaining, len(data))
            self.remaining -= n
            done = self.remaining == 0
        if backend is not None and n:
            send(backend.transport, data[:n] if n < len(data) else data)
        if done:
            self.tracker = None
            if self.state == "body":
                self.state = "response"
            if backend is not None and backend.connected:
                backend.transport.unregisterProducer()
            if len(data) > n:
                self.buf += data[n:]
                if len(self.buf) > MAX_PIPELINED:
                    self.transport.pauseProducing()

    def _abort_exchange(self, status: int, code: str, message: str) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.abandon()
        self.error(status, code, message, close=True)

    def interim_response(self, head: H.ResponseHead) -> None:
        self.transport.write(H.serialize_response(head.status, head.reason, H.forward_headers(head.headers)))

    def response_head(self, head: H.ResponseHead, framed: bool, body: bytes = b"") -> None:
        self._disarm()
        self.status = head.status
        headers = H.forward_headers(head.headers)
        if head.status == 101:
            headers += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
            self.transport.write(H.serialize_response(101, head.reason, headers))
            self.state = "tunnel"
            self.ws_tracker = FrameTracker()
            self.transport.registerProducer(self.backend.transport, True)
            self.backend.transport.registerProducer(self.transport, True)
            self.edge.metrics.tunnels.inc()
            self._arm(self.edge.settings.tunnel_idle, "tunnel idle")
            return
        if not framed:
            self.keep_alive = False
        if head.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        headers.append((b"connection", b"keep-alive" if self.keep_alive else b"close"))
        if self.https and not any(k == b"strict-transport-security" for k, _ in headers):
            headers.append((b"strict-transport-security", HSTS))
        self.bytes_out += len(body)
        send(self.transport, H.serialize_response(head.status, head.reason, headers) + body)
        if self.state == "response":
            self.transport.registerProducer(self.backend.transport, True)
        else:
            # Response before the request body was sent completely: do not reuse anything.
            self.keep_alive = False
            self.transport.registerProducer(self.backend.transport, True)
        self.edge.backend_answered(self)

    def response_body(self, data: bytes) -> None:
        self.bytes_out += len(data)
        send(self.transport, data)

    def response_done(self, close: bool = False) -> None:
        if self.state == "closed":
            return
        self.transport.unregisterProducer()
        self.backend = None
        if close:
            self.keep_alive = False
        if self.state == "body":
            self.keep_alive = False
        self.state = "response"
        self._next()

    def backend_failed_response(self, why: str) -> None:
        """The backend failed before sending any response byte."""
        self.backend = None
        if self.state == "closed":
            return
        self.edge.backend_broke(self, why)

    def backend_lost(self, why: str) -> None:
        """The backend died mid-response: nothing sane can follow on this connection."""
        self.backend = None
        self.edge.log_event("backend lost mid-response: {why}", 502, "backend_lost", why, self.client_ip)
        self.status = self.status or 502
        self.edge.finished(self)
        self.state = "closed"
        self.transport.loseConnection()

    # tunnel ------------------------------------------------------------------------------------------
    def tunnel_from_backend(self, data: bytes) -> None:
        self.ws_tracker.feed(data)
        self.transport.write(data)
        self._arm(self.edge.settings.tunnel_idle, "tunnel idle")

    def tunnel_backend_lost(self, code: int = 4502, reason: str = "kernel server lost") -> None:
        """Tell the page why, with a close frame at a frame boundary."""
        if self.state != "tunnel":
            return
        self.edge.metrics.tunnels.dec()
        self.backend = None
        if self.ws_tracker is not None and self.ws_tracker.at_boundary:
            self.transport.write(close_frame(code, reason))
        self.state = "closed"
        self.edge.finished(self)
        self.transport.loseConnection()

    def close_tunnel_for_backend(self, name: str) -> None:
        """The backend was marked down: close our websocket with a reason."""
        if self.state == "tunnel" and self.backend is not None and self.backend.name == name:
            backend, self.backend = self.backend, None
            backend.abandon()
            self.tunnel_backend_lost()


class FrontendFactory(protocol.Factory):
    noisy = False

    def __init__(self, edge: "Edge", secure: bool, redirect_only: bool = False):
        self.edge = edge
        self.secure = secure
        self.redirect_only = redirect_only

    def buildProtocol(self, addr):
        return Frontend(self.edge, self.secure, self.redirect_only, addr)


def now_wall() -> float:
    return time.time()
