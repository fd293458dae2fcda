"""permalinkd's twisted.web resources: ``/permalink``, ``/healthz``, ``/metrics``.

Thin adapters: parameters go through ``permalinkd.validation``, storage
through a store object (``permalinkd.store.RedisStore``), one request-log
line per request (``RequestLog``, records from ``permalinkd.requestlog``)
whatever answers it: permalinks, health, metrics, a 405 or an unknown path.
Every failure is a JSON error ``{"error", "message"}`` with its status
(deploy/webutil); nothing a client sends escapes as a traceback.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import http, resource, server

from deploy.clientip import client_ip
from deploy.jsonlines import NullLines
from deploy.webutil import FormRequest, apply_cors, json_body, json_error, media_type, method_not_allowed
from permalinkd import requestlog, zcodec
from permalinkd.redisnode import Unavailable
from permalinkd.store import NotReplicated, StoreFull
from permalinkd.validation import InputError, parse_create, parse_lookup


class LimitedRequest(FormRequest):
    """A request that keeps at most ``max_body`` bytes of body (the rest is dropped, 413)."""

    max_body = 1_000_000
    body_too_large = False
    bad_form: str | None = None
    _body_seen = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._body_seen += len(data)
        if self._body_seen > self.max_body:
            self.body_too_large = True
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self.body_too_large:
            # Do not parse a truncated form; the resource answers 413.
            self.content.seek(0)
            self.content.truncate()
            self.requestHeaders.removeHeader(b"content-type")
        elif command == b"POST" and self._is_multipart():
            # twisted.web answers a malformed multipart body with a bare 400 and a
            # disconnect; parse it here first so the client gets a JSON error instead.
            try:
                self.content.seek(0)
                http._getMultiPartArgs(self.content.read(), self.requestHeaders.getRawHeaders(b"content-type")[0])
            except Exception as e:  # noqa: BLE001 - any parse failure is the client's
                self.bad_form = f"the multipart/form-data body cannot be parsed: {str(e)[:200]}"
                self.requestHeaders.removeHeader(b"content-type")
            self.content.seek(0)
        super().requestReceived(command, path, version)

    def _is_multipart(self) -> bool:
        return media_type(self) == b"multipart/form-data"


def request_factory(max_body: int):
    return type("PermalinkRequest", (LimitedRequest,), {"max_body": max_body})


def _body_size(request) -> int:
    content = request.content
    if content is None:
        return 0
    size = content.seek(0, 2)
    content.seek(0)
    return size


def _peer_ip(request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", None) or str(peer)


class RequestLog:
    """Writes the one request-log line of a request, for every resource.

    The client address believes ``X-Forwarded-For`` only from the trusted
    proxies; a failing sink is logged, never fails the request.
    """

    _log = Logger()

    def __init__(self, sink, clock, node: str, trusted_proxies=()):
        self.sink, self.clock, self.node = sink, clock, node
        self.trusted = tuple(trusted_proxies)
        self.off = isinstance(sink, NullLines)     # no --request-log: build no records

    def write(self, request, route: str, status: int, outcome: str, pid: str | None, start: float, **extra):
        if self.off:
            return
        now = self.clock.seconds()
        peer = _peer_ip(request)
        if self.trusted:
            xff = [v.decode("latin-1") for v in request.requestHeaders.getRawHeaders(b"x-forwarded-for", ())]
            peer = client_ip(peer, xff, self.trusted)
        try:
            self.sink.write(requestlog.record(now, self.node, peer, request.method.decode("latin-1"), route,
                                              status, outcome, pid, now - start, **extra))
        except OSError:
            self._log.failure("request log write failed")


class PermalinkResource(resource.Resource):
    isLeaf = True
    _log = Logger()
    ALLOWED = b"GET, HEAD, POST, OPTIONS"

    def __init__(self, *, store, clock, languages, max_code: int, reqlog: RequestLog, metrics,
                 max_body: int = 1_000_000):
        super().__init__()
        self.max_body = max_body
        self.store = store
        self.clock = clock
        self.languages = tuple(languages)
        self.max_code = max_code
        self.reqlog = reqlog
        self.metrics = metrics
        self._children: dict[tuple[str, str], object] = {}   # labelled metrics, by (route, outcome)

    # --- twisted.web entry points ---------------------------------------------

    def render(self, request):
        if request.method not in (b"GET", b"HEAD", b"POST", b"OPTIONS"):
            apply_cors(request)
            body = method_not_allowed(request, self.ALLOWED)
            self.reqlog.write(request, "permalink", 405, "method-not-allowed", None, self.clock.seconds())
            return body
        return super().render(request)

    def render_OPTIONS(self, request):
        apply_cors(request)
        request.setHeader(b"Access-Control-Max-Age", b"600")
        request.setResponseCode(204)
        self.reqlog.write(request, "preflight", 204, "ok", None, self.clock.seconds())
        return b""

    def render_POST(self, request):
        return self._run(request, "create", self._create)

    def render_GET(self, request):
        return self._run(request, "lookup", self._lookup)

    # --- plumbing -------------------------------------------------------------

    def _run(self, request, route: str, handler):
        apply_cors(request)
        defer.Deferred.fromCoroutine(self._serve(request, route, handler)).addErrback(
            lambda f: self._log.failure("permalinkd: response not sent", f))
        return server.NOT_DONE_YET

    async def _serve(self, request, route: str, handler) -> None:
        start = self.clock.seconds()
        gone = []
        request.notifyFinish().addErrback(gone.append)
        status, outcome, pid, body, extra = await self._guarded(request, route, handler, start)
        self._observe(route, outcome, start)
        self.reqlog.write(request, route, status, outcome, pid, start, **extra)
        if not gone:
            request.setHeader(b"Content-Length", b"%d" % len(body))
            request.write(body)
            request.finish()

    def _observe(self, route: str, outcome: str, start: float) -> None:
        """Count and time the request (the labelled children are looked up once: labels() takes a lock)."""
        children = self._children.get((route, outcome))
        if children is None:
            children = self._children[(route, outcome)] = (
                self.metrics.requests.labels(route, outcome), self.metrics.latency.labels(route))
        children[0].inc()
        children[1].observe(max(0.0, self.clock.seconds() - start))

    async def _guarded(self, request, route, handler, start):
        try:
            if request.postpath not in ([], [b""]):
                raise InputError(404, "not-found", "no such path")
            if getattr(request, "body_too_large", False) or _body_size(request) > self.max_body:
                raise InputError(413, "body-too-large", "the request body is too large")
            if getattr(request, "bad_form", None):
                raise InputError(400, "bad-form", request.bad_form)
            return await handler(request, start)
        except InputError as e:
            return e.status, e.code, None, json_error(request, e.status, e.code, e.message), {}
        except NotReplicated as e:
            self.metrics.not_replicated.inc()
            return 503, "not-replicated", None, json_error(
                request, 503, "not-replicated",
                f"the permalink was not confirmed by a Redis replica in time ({e}); it was not acknowledged, "
                "retry (the same cell always gets the same id)", retry_after=1), {}
        except Unavailable as e:
            return 503, "redis-unavailable", None, json_error(
                request, 503, "redis-unavailable", f"the permalink store is unavailable: {e}", retry_after=1), {}
        except StoreFull as e:
            return 500, "id-space-exhausted", None, json_error(request, 500, "id-space-exhausted", str(e)), {}
        except Exception:
            self._log.failure("permalinkd: {route} failed", route=route)
            return 500, "internal", None, json_error(request, 500, "internal", "internal error (logged)"), {}

    async def _create(self, request, now):
        req = parse_create(request.args, self.languages, self.max_code)
        pid, created = await self.store.create(req.cell, now)
        if created:
            self.metrics.created.inc()
            if len(pid) > 10:
                self.metrics.collisions.inc()
        body: dict[str, Any] = {"query": pid, "zip": zcodec.encode(req.cell.code),
                                "interacts": zcodec.encode(req.cell.interacts)}
        if req.n is not None:
            body["n"] = req.n
        return 200, "created" if created else "exists", pid, json_body(request, 200, body), {}

    async def _lookup(self, request, now):
        pid, callback = parse_lookup(request.args)
        cell, source = await self.store.lookup(pid, now)
        if cell is None:
            raise InputError(404, "unknown-id", f"no permalink with id {pid}")
        primary = self.store.primary
        kind = source if source == "cache" else (
            "primary" if primary is not None and source == primary.address else "replica")
        counter = self._children.get(("read", kind))
        if counter is None:
            counter = self._children[("read", kind)] = self.metrics.reads.labels(kind)
        counter.inc()
        if callback:
            payload = json.dumps([cell.code, cell.language, cell.interacts], separators=(",", ":"))
            request.setResponseCode(200)
            request.setHeader(b"Content-Type", b"application/javascript; charset=utf-8")
            request.setHeader(b"X-Content-Type-Options", b"nosniff")
            body = f"/**/{callback}({payload});".encode("utf-8")
        else:
            body = json_body(request, 200, [cell.code, cell.language, cell.interacts])
        return 200, "found", pid, body, {"source": source}


class _LoggedLeaf(resource.Resource):
    """A synchronous GET-only leaf whose every answer (a 405 too) is one request-log line.

    Subclasses implement ``answer(request) -> (outcome, body)``.
    """

    isLeaf = True
    route = "unknown"
    methods: tuple[bytes, ...] | None = (b"GET", b"HEAD")

    def __init__(self, reqlog: RequestLog):
        super().__init__()
        self.reqlog = reqlog

    def render(self, request):
        start = self.reqlog.clock.seconds()
        if self.methods is not None and request.method not in self.methods:
            outcome, body = "method-not-allowed", method_not_allowed(request, b", ".join(self.methods))
        else:
            outcome, body = self.answer(request)
        self.reqlog.write(request, self.route, request.code, outcome, None, start)
        return body

    def answer(self, request) -> tuple[str, bytes]:
        raise NotImplementedError


class HealthResource(_LoggedLeaf):
    route = "healthz"

    def __init__(self, reqlog: RequestLog, *, store, node: str, watcher=None):
        super().__init__(reqlog)
        self.store, self.node, self.watcher = store, node, watcher

    def answer(self, request):
        st = self.store.status()
        if st["primary_connected"]:
            status, code = "ok", 200
        elif st["replicas_connected"]:
            status, code = "read-only", 200
        else:
            status, code = "no-redis", 503
        return status, json_body(request, code, {"status": status, "node": self.node, **st})


class MetricsResource(_LoggedLeaf):
    route = "metrics"

    def __init__(self, reqlog: RequestLog, metrics, store=None):
        super().__init__(reqlog)
        self.metrics, self.store = metrics, store

    def answer(self, request):
        if self.store is not None:
            self.metrics.primary_up.set(1 if self.store.status()["primary_connected"] else 0)
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return "ok", self.metrics.render()


class NotFound(_LoggedLeaf):
    """Any path permalinkd does not serve, whatever the method."""

    methods = None

    def answer(self, request):
        return "not-found", json_error(request, 404, "not-found", "no such path")


def make_root(*, store, clock, node, languages, max_code, sink, metrics, trusted_proxies=(), watcher=None,
              max_body=1_000_000):
    reqlog = RequestLog(sink, clock, node, trusted_proxies)
    root = resource.Resource()
    root.putChild(b"permalink", PermalinkResource(store=store, clock=clock, languages=languages,
                                                  max_code=max_code, reqlog=reqlog, metrics=metrics,
                                                  max_body=max_body))
    root.putChild(b"healthz", HealthResource(reqlog, store=store, node=node, watcher=watcher))
    root.putChild(b"metrics", MetricsResource(reqlog, metrics, store))
    not_found = NotFound(reqlog)
    root.putChild(b"", not_found)
    root.getChildWithDefault = _default_not_found(root, not_found)
    return root


def _default_not_found(root, not_found):
    original = root.getChildWithDefault

    def lookup(path, request):
        if path in root.children:
            return original(path, request)
        return not_found

    return lookup
