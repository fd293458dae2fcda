"""The edge's state and decisions for each request, wiring ``policy`` (pure)
to the proxy protocols (``proxy``), active health checks, metrics and the
access log.  One ``Edge`` per edge process, built by ``tap.makeService``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError
from twisted.logger import Logger
from twisted.web.client import Agent, readBody

from deploy.clientip import client_ip, is_trusted
from deploy.jsonlines import NullLines
from edgeproxy import policy as P
from edgeproxy.httphead import forward_headers
from edgeproxy.proxy import BackendPool, Frontend
from edgeproxy.static import StaticFiles


@dataclass(frozen=True)
class EdgeSettings:
    cells: tuple[tuple[str, str], ...]           # (name, base url)
    permalinks: tuple[tuple[str, str], ...]
    static_dir: str
    trusted_proxies: tuple = ()
    metrics_from: tuple = ()         # networks whose TCP peers may read /metrics
    compute: P.Limits = P.Limits(2.0, 10.0, 100.0, 200.0)
    permalink: P.Limits = P.Limits(2.0, 20.0, 200.0, 400.0)
    max_conns_per_ip: int = 100
    # A stopped server (SIGSTOP, a hung reactor) answers nothing: it is down
    # ``fall`` timeouts after the first check it misses, at worst
    # interval + fall x timeout = 1.3 s (the target is 1.5 s).  Two /healthz in a
    # row over 0.4 s on loopback or a LAN mean a server too stalled for new work
    # anyway; marking it down costs it new kernels for a moment, never its sessions.
    check_interval: float = 0.5
    check_timeout: float = 0.4
    check_fast_interval: float = 0.1     # between the starts of checks while a backend is transitioning
    rise: int = 2
    fall: int = 2
    head_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    connect_timeout: float = 3.0
    response_timeout: float = 120.0
    tunnel_idle: float = 3600.0
    # A backend marked down by failed checks (a timeout: slow under load, or
    # stopped) keeps its open websockets this long; a refused connection (the
    # server is gone) closes them at once.  Closing them at the first slow
    # /healthz would end every session of a busy server.
    tunnel_down_grace: float = 30.0
    https_port: int = 443
    access_log: str | None = None


class EdgeMetrics:
    def __init__(self, edge: "Edge"):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("edge_requests", "Requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram("edge_request_seconds", "Time to the response head (proxied) or answer",
                                 ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.rejected = Counter("edge_rejected", "Requests refused by rate limits, by class", ["what"], registry=r)
        self.backend_up = Gauge("edge_backend_up", "1 when the backend is healthy", ["pool", "backend"], registry=r)
        self.tunnels = Gauge("edge_websocket_tunnels", "Open websocket tunnels", registry=r)
        self.connections = Gauge("edge_client_connections", "Open client connections", registry=r)
        self.connections.set_function(lambda: len(edge.open_connections))
        self.retries = Counter("edge_retries", "Requests retried on another backend", registry=r)
        self._done: dict = {}
        self._seconds: dict = {}

    # ``labels()`` takes a lock and builds a key on every call: keep the children.
    def request_done(self, route: str, status: int) -> None:
        child = self._done.get((route, status))
        if child is None:
            child = self._done[(route, status)] = self.requests.labels(route, str(status))
        child.inc()

    def observe(self, route: str, seconds: float) -> None:
        child = self._seconds.get(route)
        if child is None:
            child = self._seconds[route] = self.latency.labels(route)
        child.observe(seconds)


def _quiet_pool(reactor):
    """Health checks open a connection per check: don't log each one."""
    from twisted.web import client

    class Quiet(client._HTTP11ClientFactory):
        noisy = False

    pool = client.HTTPConnectionPool(reactor, persistent=False)
    pool._factory = Quiet
    return pool


class _CheckEndpoints:
    """Endpoints for health checks: the proxy's own (``proxy._endpoint``: no
    name resolution for an IP address, so a refused connection is reported at
    once, not 0.3 s later as ``HostnameEndpoint`` does), TLS for https."""

    def __init__(self, reactor, timeout: float):
        self.reactor = reactor
        self.timeout = timeout

    def endpointForURI(self, uri):
        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.ssl import optionsForClientTLS

        from edgeproxy.proxy import _endpoint

        host = uri.host.decode("ascii")
        ep = _endpoint(self.reactor, host, uri.port, self.timeout)
        return wrapClientTLS(optionsForClientTLS(host), ep) if uri.scheme == b"https" else ep


def _address(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)


class Edge:
    _log = Logger()

    def __init__(self, reactor, settings: EdgeSettings, access_log):
        self.reactor = reactor
        self.settings = settings
        self.access_log = access_log
        self.cells = dict(settings.cells)
        self.permalinkds = dict(settings.permalinks)
        addresses = {name: _address(url) for name, url in [*settings.cells, *settings.permalinks]}
        self.health_urls = {name: url.rstrip("/") + "/healthz" for name, url in [*settings.cells, *settings.permalinks]}
        self.pool = BackendPool(reactor, addresses, connect_timeout=settings.connect_timeout,
                                on_lost=self.suspect)
        now = reactor.seconds()
        self.health = {name: P.HealthState(settings.rise, settings.fall) for name in addresses}
        self.cell_rr, self.perm_rr = P.RoundRobin(), P.RoundRobin()
        self.limiters = {P.COMPUTE: P.RateLimiter(settings.compute, now),
                         P.PERMALINK: P.RateLimiter(settings.permalink, now)}
        self.connections = P.ConnectionCounter(settings.max_conns_per_ip)
        self.static = StaticFiles(settings.static_dir)
        self.open_connections: set[Frontend] = set()
        self.metrics = EdgeMetrics(self)
        self.agent = Agent.usingEndpointFactory(reactor, _CheckEndpoints(reactor, settings.check_timeout),
                                                pool=_quiet_pool(reactor))
        self.log_requests = not isinstance(access_log, NullLines)
        self._loops: list[task.LoopingCall] = []
        self._fast_checks: dict[str, object] = {}    # name -> pending confirming check (IDelayedCall)
        self._suspected: set[str] = set()           # servers with an out-of-turn check under way
        self._tunnel_closes: dict[str, object] = {}  # name -> pending close of its tunnels (IDelayedCall)
        self.draining = False

    # health ------------------------------------------------------------------------------
    def start_checks(self) -> None:
        for name, url in self.health_urls.items():
            loop = task.LoopingCall(self._check, name, url)
            loop.clock = self.reactor
            loop.start(self.settings.check_interval, now=True)
            self._loops.append(loop)
        expire = task.LoopingCall(self.pool.expire)
        expire.clock = self.reactor
        expire.start(5.0, now=False)
        self._loops.append(expire)

    def stop_checks(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        for pending in (self._fast_checks, self._tunnel_closes):
            for call in pending.values():
                call.cancel()
            pending.clear()

    def _pool_of(self, name: str) -> str:
        return "cells" if name in self.cells else "permalinks"

    def _check(self, name: str, url: str) -> defer.Deferred:
        started = self.reactor.seconds()

        async def check():
            try:
                resp = await self.agent.request(b"GET", url.encode()).addTimeout(
                    self.settings.check_timeout, self.reactor)
                body = await readBody(resp).addTimeout(self.settings.check_timeout, self.reactor)
            except Exception as e:  # noqa: BLE001 - any failure is a failed check
                if isinstance(e, ConnectionRefusedError):
                    self.passive_failure(name, "connection refused")   # nobody listens: down at once
                    return
                self._record(name, False, f"{type(e).__name__}: {str(e)[:80]}", started=started)
                return
            if resp.code != 200:
                self._record(name, False, f"HTTP {resp.code}", started=started)
                return
            free, accepting = 0, True
            try:
                h = json.loads(body)
                free, accepting = int(h.get("free", 0)), h.get("accepting", True) is not False
            except (ValueError, AttributeError, TypeError):
                pass
            self._record(name, True, "", free, accepting, started)

        return defer.Deferred.fromCoroutine(check())

    def _record(self, name: str, ok: bool, error: str, free: int = 0, accepting: bool = True,
                started: float | None = None) -> None:
        """The result of a check begun at ``started`` (default: now)."""
        state = self.health[name]
        now = self.reactor.seconds()
        changed = state.check_passed(now, free, accepting) if ok else state.check_failed(now, error)
        if changed:
            self._changed(name, state)
        if state.transitioning and name not in self._fast_checks and self._loops:
            # One check failed on an up server (or passed on a down one): confirm it
            # soon rather than a whole interval later, ``check_fast_interval`` after
            # the contradicting check began.  A check that timed out is thus
            # confirmed at once (a stopped server is down after interval + fall x
            # timeout at worst, not interval x fall + timeout), while a quick 503 is
            # not confirmed by another asked a millisecond later.
            begun = now if started is None else started
            delay = max(0.0, begun + self.settings.check_fast_interval - now)
            self._fast_checks[name] = self.reactor.callLater(delay, self._fast_check, name)

    def _fast_check(self, name: str) -> None:
        del self._fast_checks[name]
        self.suspect(name)

    def _changed(self, name: str, state: P.HealthState, gone: bool = False) -> None:
        """``name`` went up or down; ``gone``: down because nothing listens there."""
        self.metrics.backend_up.labels(self._pool_of(name), name).set(1 if state.up else 0)
        pending = self._tunnel_closes.pop(name, None)
        if pending is not None and pending.active():
            pending.cancel()
        if state.up:
            self._log.info("backend {name} is up", name=name)
            return
        self._log.warn("backend {name} is DOWN: {error}", name=name, error=state.last_error)
        self.pool.drop_idle(name)
        if gone:
            self._close_tunnels(name)
        else:
            self._tunnel_closes[name] = self.reactor.callLater(
                self.settings.tunnel_down_grace, self._close_tunnels, name)

    def _close_tunnels(self, name: str) -> None:
        self._tunnel_closes.pop(name, None)
        for front in list(self.open_connections):
            front.close_tunnel_for_backend(name)

    def suspect(self, name: str) -> None:
        """Something says ``name`` changed (a connection we did not close
        ended; it refused new work): check it now, not at the next tick, with
        one such check at a time per server however many requests saw it."""
        if name not in self.health_urls or name in self._suspected:
            return
        self._suspected.add(name)
        defer.maybeDeferred(self._check, name, self.health_urls[name]).addBoth(
            lambda _: self._suspected.discard(name))

    def passive_failure(self, name: str, error: str) -> None:
        if self.health[name].connection_failed(self.reactor.seconds(), error):
            self._changed(name, self.health[name], gone=True)

    # requests ----------------------------------------------------------------------------------
    def dispatch(self, front: Frontend) -> None:
        req = front.request
        path = req.path
        peer = front.peer_ip
        https = front.secure or front.client_tls
        if self.settings.trusted_proxies and is_trusted(peer, self.settings.trusted_proxies):
            xff = [v.decode("latin-1") for v in req.get_all(b"x-forwarded-for")]
            front.client_ip = client_ip(peer, xff, self.settings.trusted_proxies)
            # a balancer that terminated TLS says so (the first value: the hop nearest the browser)
            proto = req.get(b"x-forwarded-proto")
            https = https or (proto is not None and proto.split(b",")[0].strip().lower() == b"https")
        else:
            front.client_ip = peer
        front.https = https
        if front.redirect_only and path != b"/healthz" and not https:
            # (a trusted balancer that terminated TLS and says so is served, not sent round in a loop)
            host = (req.get(b"host") or b"localhost").split(b":")[0]
            port = b"" if self.settings.https_port == 443 else b":%d" % self.settings.https_port
            front.route_kind = "redirect"
            front.respond(301, [(b"location", b"https://" + host + port + req.target),
                                (b"content-type", b"text/plain")], b"use https\n")
            return
        route = P.classify(req.method, path, req.get(b"jupyter-kernel-id"))
        front.route_kind = route.kind
        if route.kind == "local":
            self._local(front, path)
            return
        if route.kind == "static":
            status, headers, body = self.static.answer(req.method, path, req.get(b"if-none-match"),
                                                       req.get(b"accept-encoding"))
            front.respond(status, headers, body)
            return
        if route.rate_class and req.method != b"OPTIONS":
            wait = self.limiters[route.rate_class].check(front.client_ip, self.reactor.seconds())
            if wait:
                self.metrics.rejected.labels(route.rate_class).inc()
                front.error(429, "rate_limited",
                            f"too many {route.rate_class} requests; retry in {wait:.1f} s", retry_after=wait)
                return
        front.tried = set()
        self._choose_and_send(front, route)

    def _choose_and_send(self, front: Frontend, route: P.Route) -> None:
        if route.kind == "owned":
            name = route.node
            if name not in self.cells:
                front.error(404, "unknown_kernel_server",
                            f"the kernel's server {name!r} is not one of this edge's cell servers")
                return
            if not self.health[name].up:
                front.error(503, "kernel_server_lost", f"the kernel's server {name} is down: the kernel is gone",
                            retry_after=5)
                return
        elif route.kind == "permalink":
            name = P.pick_any({n: self.health[n] for n in self.permalinkds}, front.tried, self.perm_rr)
            if name is None:
                front.error(503, "no_permalink_server", "no permalink server is available", retry_after=5)
                return
        else:  # new work (and malformed kernel ids, which a cell server answers)
            name = P.pick_cell({n: self.health[n] for n in self.cells}, front.tried, self.cell_rr)
            if name is None:
                front.error(503, "no_capacity", "no cell server is available right now", retry_after=5)
                return
        front.tried.add(name)
        front.backend_name = name
        front.route = route
        conn = self.pool.take_idle(name)
        if conn is not None:
            front.forward_to(conn, self._request_headers(front))
            return
        self.pool.acquire(name).addCallbacks(
            lambda conn: front.forward_to(conn, self._request_headers(front)),
            lambda f: self._connect_failed(front, route, name, f))

    def _connect_failed(self, front: Frontend, route: P.Route, name: str, failure) -> None:
        error = failure.getErrorMessage()[:120]
        self.passive_failure(name, error)
        if front.state == "closed":
            return
        if route.kind in ("new", "permalink", "unknown_kernel") and len(front.tried) < 2:
            self.metrics.retries.inc()
            self._choose_and_send(front, route)
            return
        front.error(502, "backend_unreachable", f"could not reach {name}: {error}", retry_after=5)

    def backend_broke(self, front: Frontend, why: str) -> None:
        """No response byte came back: retry once if nothing could have been processed."""
        req = front.request
        route = getattr(front, "route", None)
        if route is not None and not req.has_body and req.method in (b"GET", b"HEAD", b"OPTIONS") \
                and len(front.tried) < 2:
            self.metrics.retries.inc()
            front.tried.add("retry")
            self._choose_and_send(front, route)
            return
        front.error(502, "backend_failed", why, close=True)

    def _request_headers(self, front: Frontend) -> list[tuple[bytes, bytes]]:
        req = front.request
        headers = [(k, v) for k, v in forward_headers(req.headers)
                   if k not in (b"x-forwarded-for", b"x-forwarded-proto")]
        chain = front.client_ip
        if front.client_ip != front.peer_ip:
            chain = f"{front.client_ip}, {front.peer_ip}"
        headers.append((b"x-forwarded-for", chain.encode()))
        headers.append((b"x-forwarded-proto", b"https" if front.https else b"http"))
        if req.is_websocket:
            headers += [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")]
        else:
            headers.append((b"connection", b"keep-alive"))
        if req.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        return headers

    def _local(self, front: Frontend, path: bytes) -> None:
        if path == b"/metrics":
            if not is_trusted(front.peer_ip, self.settings.metrics_from):
                front.error(403, "forbidden", "metrics are served to the operators' networks only "
                                              "(--metrics-from)")
                return
            front.respond(200, [(b"content-type", b"text/plain; version=0.0.4")],
                          generate_latest(self.metrics.registry))
            return
        cells = {n: {"up": self.health[n].up, "free": self.health[n].free, "accepting": self.health[n].accepting,
                     "error": self.health[n].last_error} for n in self.cells}
        perms = {n: {"up": self.health[n].up, "error": self.health[n].last_error} for n in self.permalinkds}
        ok = any(c["up"] for c in cells.values()) and not self.draining
        body = json.dumps({"status": "ok" if ok else ("draining" if self.draining else "no-cell-server"),
                           "cells": cells, "permalinks": perms,
                           "tunnels": int(self.metrics.tunnels._value.get())}).encode()
        front.respond(200 if ok else 503, [(b"content-type", b"application/json"),
                                           (b"cache-control", b"no-store")], body)

    def backend_answered(self, front: Frontend) -> None:
        self.metrics.observe(front.route_kind, self.reactor.seconds() - front.started)
        if front.status == 503 and front.route_kind == "new":
            # Draining, or out of kernels: until the next check the edge would
            # keep sending new work there; ask it now.
            self.suspect(front.backend_name)

    def finished(self, front: Frontend) -> None:
        if not front.started:
            return
        elapsed = self.reactor.seconds() - front.started
        status = front.status or 0
        self.metrics.request_done(front.route_kind, status)
        if front.route_kind in ("local", "static", "redirect") or status >= 400:
            self.metrics.observe(front.route_kind, elapsed)
        front.started = 0.0
        if not self.log_requests:
            return
        req = front.request
        self.access_log.write({
            "time": time.time(), "ip": front.client_ip, "method": req.method.decode("latin-1") if req else "-",
            "target": req.target[:300].decode("latin-1") if req else "-", "status": status,
            "bytes": front.bytes_out, "ms": round(elapsed * 1000, 2), "route": front.route_kind,
            "backend": getattr(front, "backend_name", None),
        })

    def log_event(self, fmt: str, status: int, code: str, message: str, ip: str) -> None:
        self._log.info(fmt, status=status, code=code, message=message, why=message, ip=ip)
