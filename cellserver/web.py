"""The cell server's HTTP API (ARCHITECTURE section 2) on twisted.web.

``CellApp`` holds what every request needs (settings, the kernel pool, the
registry of live kernel sessions, metrics, the computation log);
``make_root(app)`` builds the resource tree:

    POST /kernel                    new kernel: {"id", "ws_url"} + Jupyter-Kernel-ID
    DELETE /kernel/<id>             stop it
    /kernel/<id>/channels           websocket (cellserver.relay)
    GET /kernel/<id>/files/<path>   a file the kernel wrote
    POST /service                   one computation in a fresh kernel
    GET /healthz, GET /metrics, GET|POST /tos.html
    /, /embedded_sagecell.js, /static/...   the page and its assets

Errors are JSON ``{"error", "message"}`` with the right status, CORS as in
section 2.  ``LimitedRequest`` refuses request bodies over the limit before
reading them.
"""
from __future__ import annotations

import json
import os
import time
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from prometheus_client import generate_latest
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server, static

from cellserver import messages as M
from cellserver.kernelid import InvalidKernelId, parse_kernel_id
from cellserver.kernels import NoCapacity
from cellserver.lifetimes import Lifetime, parse_timeout
from cellserver.metrics import reason_bucket
from cellserver.relay import channels_factory
from cellserver.safeopen import open_beneath
from cellserver.sessions import KernelRegistry, KernelSession
from deploy.clientip import client_ip
from deploy.webutil import FormRequest, MethodsResource, apply_cors, json_body, json_error

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("bad_encoding", f"{name} is not UTF-8")


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "on")


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class CellApp:
    _log = Logger()

    def __init__(self, reactor, settings, pool, metrics, computation_log):
        self.reactor = reactor
        self.settings = settings
        self.pool = pool
        self.metrics = metrics
        self.computations = computation_log
        self.registry = KernelRegistry()
        self.draining = False       # shutting down: every session is being ended
        self.drained = False        # drained by the operator (SIGUSR1): no new kernels, the others go on
        self.ws_factory = channels_factory(self, settings.max_frame)

    # clients ----------------------------------------------------------------
    def _client(self, peer: str, headers, referer: str | None) -> dict:
        xff = headers.getRawHeaders(b"x-forwarded-for") or []
        ip = client_ip(peer, [v.decode("latin-1") for v in xff], self.settings.trusted_proxies)
        return {"ip": ip, "referer": referer or ""}

    def client_from_request(self, request) -> dict:
        referer = request.getHeader(b"referer")
        return self._client(request.getClientAddress().host, request.requestHeaders,
                            referer.decode("latin-1") if referer else None)

    def client_from_ws(self, ws_request, transport) -> dict:
        from twisted.web.http_headers import Headers

        headers = Headers()
        for k, v in ws_request.headers.items():
            headers.addRawHeader(k.encode("latin-1"), v.encode("latin-1"))
        peer = transport.getPeer()
        return self._client(getattr(peer, "host", ""), headers, ws_request.headers.get("referer"))

    def trusted_peer(self, request) -> bool:
        from deploy.clientip import is_trusted
        return is_trusted(request.getClientAddress().host, self.settings.trusted_proxies)

    def log_computation(self, kind: str, kid: str | None, code: str, client: dict) -> None:
        self.computations.write({
            "time": time.time(), "node": self.settings.node, "kernel": kid, "ip": client.get("ip"),
            "referer": client.get("referer"), "kind": kind, "code": code,
        })

    # kernels ------------------------------------------------------------------
    def check_tos(self, request) -> None:
        if self.settings.tos_html is not None and not truthy(arg(request, "accepted_tos")):
            raise BadRequest("tos_not_accepted",
                             "the terms of service must be accepted (accepted_tos=true); see /tos.html", 403)

    async def create_session(self, request) -> KernelSession:
        self.check_tos(request)
        try:
            timeout = parse_timeout(arg(request, "timeout"), self.settings.idle_cap)
        except ValueError as e:
            raise BadRequest("bad_timeout", str(e))
        cell_session = (arg(request, "CellSessionID") or "")[:200]
        if cell_session and self.registry.count_for(cell_session) >= self.settings.per_session:
            raise BadRequest("too_many_kernels",
                             f"at most {self.settings.per_session} kernels per CellSessionID; "
                             f"close one or wait", 429)
        self.check_accepting()
        try:
            kernel = await self.pool.take()
        except NoCapacity as e:
            raise BadRequest("no_capacity", f"no kernel is free on this server: {e}", 503)
        now = self.reactor.seconds()
        lifetime = Lifetime(created=now, timeout=timeout, idle_cap=self.settings.idle_cap,
                            lifespan=self.settings.lifespan, connect_grace=self.settings.connect_grace,
                            files_grace=self.settings.files_grace)
        client = self.client_from_request(request)
        session = KernelSession(self.reactor, kernel, lifetime, output_cap=self.settings.output_cap,
                                log_computation=self.log_computation, on_end=self._ended,
                                cell_session_id=cell_session, client=client)
        self.registry.add(session)
        self.metrics.kernels_started.labels("kernel").inc()
        self.log_computation("kernel", kernel.id, "", client)
        return session

    def _ended(self, session: KernelSession, reason: str) -> None:
        self.registry.remove(session)
        self.metrics.kernel_ends.labels(reason_bucket(reason)).inc()

    def ws_url(self, request) -> str:
        scheme = "wss" if request.isSecure() else "ws"
        if self.trusted_peer(request):
            proto = request.getHeader(b"x-forwarded-proto")
            if proto in (b"https", b"wss"):
                scheme = "wss"
            elif proto in (b"http", b"ws"):
                scheme = "ws"
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        if not host or any(c in host for c in "/ \\@?#"):
            h = request.getHost()
            host = f"{h.host}:{h.port}"
        return f"{scheme}://{host}/"

    def check_accepting(self) -> None:
        """Refuse new kernels while shutting down or drained."""
        if self.draining:
            raise BadRequest("draining", "this cell server is shutting down", 503)
        if self.drained:
            raise BadRequest("draining", "this cell server is drained: it starts no new kernels", 503)

    def set_drained(self, drained: bool) -> None:
        """SIGUSR1 / SIGUSR2: stop / resume taking new kernels.  Kernels already
        handed out keep working; /healthz still answers 200 (so edges keep
        routing the kernels it owns) with ``accepting: false`` and ``free: 0``,
        and edges choose it for no new work."""
        if drained != self.drained:
            self.drained = drained
            self._log.warn("drained: no new kernels; running ones go on" if drained
                           else "undrained: taking new kernels again")

    def stop_all(self, reason: str) -> list[defer.Deferred]:
        self.draining = True
        return [d for d in (s.end(reason, M.CLOSE_SHUTTING_DOWN) for s in list(self.registry.sessions.values()))
                if d is not None]


# --- resources ------------------------------------------------------------------

def respond_async(request, app: CellApp, endpoint: str, coro_fn):
    """Run ``coro_fn()`` (returns (status, body)); map BadRequest to JSON errors."""
    apply_cors(request)
    gone = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    async def run():
        try:
            status, body = await coro_fn()
            data = json_body(request, status, body)
        except BadRequest as e:
            status = e.status
            data = json_error(request, e.status, e.code, e.message,
                              retry_after=10 if e.status in (429, 503) else None)
            Logger().info("{endpoint}: {status} {code}: {message}", endpoint=endpoint, status=e.status,
                          code=e.code, message=e.message)
        except Exception:
            Logger().failure("{endpoint} failed", endpoint=endpoint)
            status = 500
            data = json_error(request, 500, "internal", "internal error; it has been logged")
        app.metrics.requests.labels(endpoint, str(status)).inc()
        if not gone:
            request.write(data)
            request.finish()

    defer.Deferred.fromCoroutine(run())
    return server.NOT_DONE_YET


class JsonResource(MethodsResource):
    """Base: CORS preflight for every JSON endpoint, and a JSON 405 for a method it does not take."""

    def render_OPTIONS(self, request):
        apply_cors(request)
        request.setResponseCode(204)
        return b""


class KernelsResource(JsonResource):
    def __init__(self, app: CellApp):
        super().__init__()
        self.app = app

    def render_POST(self, request):
        async def go():
            session = await self.app.create_session(request)
            request.setHeader(b"Jupyter-Kernel-ID", session.id.encode())
            return 200, {"id": session.id, "ws_url": self.app.ws_url(request)}

        return respond_async(request, self.app, "kernel", go)

    def render_GET(self, request):
        apply_cors(request)
        return json_error(request, 405, "method_not_allowed", "POST /kernel starts a kernel")

    def getChild(self, path, request):
        try:
            kid = path.decode("ascii")
            parse_kernel_id(kid)
        except (UnicodeDecodeError, InvalidKernelId):
            if request.postpath[:1] == [b"channels"]:
                # A websocket sees a close code with a reason (4004), not a failed upgrade.
                return ChannelsOnly(self.app)
            return ErrorResource(400, "bad_kernel_id", "not a kernel id (expected <node>-<32 hex digits>)")
        return KernelResource(self.app, kid)


class KernelResource(JsonResource):
    def __init__(self, app: CellApp, kid: str):
        super().__init__()
        self.app = app
        self.kid = kid

    def _session(self):
        session = self.app.registry.get(self.kid)
        if session is None or session.ended:
            node = parse_kernel_id(self.kid)[0]
            where = "another cell server" if node != self.app.settings.node else "this cell server"
            raise BadRequest("unknown_kernel", f"no such kernel on {where}", 404)
        return session

    def render_DELETE(self, request):
        async def go():
            session = self._session()
            d = session.end("deleted by the client", M.CLOSE_NORMAL)
            if d is not None:
                await d
            return 200, {"id": self.kid, "deleted": True}

        return respond_async(request, self.app, "kernel_delete", go)

    def getChild(self, path, request):
        if path == b"channels":
            return WebSocketResource(self.app.ws_factory)
        if path == b"files":
            return FilesResource(self.app, self.kid)
        return ErrorResource(404, "not_found", "no such kernel resource")


class ChannelsOnly(resource.Resource):
    def __init__(self, app: CellApp):
        super().__init__()
        self.putChild(b"channels", WebSocketResource(app.ws_factory))


class FilesResource(MethodsResource):
    isLeaf = True

    def __init__(self, app: CellApp, kid: str):
        super().__init__()
        self.app = app
        self.kid = kid

    def render_GET(self, request):
        apply_cors(request)
        session = self.app.registry.get(self.kid)
        if session is None:
            return json_error(request, 404, "unknown_kernel", "no such kernel (files live only as long as it)")
        try:
            rel = "/".join(p.decode("utf-8") for p in request.postpath)
        except UnicodeDecodeError:
            return json_error(request, 400, "bad_path", "file path is not UTF-8")
        root = session.kernel.files_path()
        try:
            opened = open_beneath(root, rel)
        except OSError:
            return json_error(request, 404, "no_such_file", f"the kernel has no file {rel[:200]!r}")
        # Files are the kernel's (hostile) content: never active on our origin.
        request.setHeader(b"Content-Security-Policy", b"sandbox")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return _OpenedFile(os.path.join(root, rel), opened).render_GET(request)


class _OpenedFile(static.File):
    """twisted.web's file serving (ranges, Last-Modified, a producer) of a
    file already opened by ``safeopen.open_beneath``: its size and time come
    from the descriptor, never from the path again."""

    def __init__(self, path: str, opened):
        super().__init__(path)
        self._opened = opened
        self._stat = os.fstat(opened.fileno())

    def restat(self, reraise=True):
        pass

    def exists(self):
        return True

    def isdir(self):
        return False

    def getsize(self):
        return self._stat.st_size

    def getModificationTime(self):
        return self._stat.st_mtime

    def openForReading(self):
        return self._opened


class ServiceResource(JsonResource):
    def __init__(self, app: CellApp):
        super().__init__()
        self.app = app

    def render_POST(self, request):
        return respond_async(request, self.app, "service", lambda: run_service(self.app, request))


async def run_service(app: CellApp, request):
    """One execution in a fresh kernel with a wall-clock limit."""
    code = arg(request, "code")
    if code is None:
        raise BadRequest("missing_code", "the code parameter is required")
    if len(code) > app.settings.max_code:
        raise BadRequest("code_too_long", f"code is {len(code)} characters; the limit is {app.settings.max_code}", 413)
    app.check_tos(request)
    raw_ue = arg(request, "user_expressions")
    try:
        user_expressions = json.loads(raw_ue) if raw_ue else {}
    except ValueError:
        raise BadRequest("bad_user_expressions", "user_expressions must be a JSON object")
    if not isinstance(user_expressions, dict) or not all(isinstance(v, str) for v in user_expressions.values()):
        raise BadRequest("bad_user_expressions", "user_expressions must be a JSON object of strings")
    app.check_accepting()
    try:
        kernel = await app.pool.take()
    except NoCapacity as e:
        raise BadRequest("no_capacity", f"no kernel is free on this server: {e}", 503)
    app.metrics.kernels_started.labels("service").inc()
    client = app.client_from_request(request)
    app.log_computation("service", kernel.id, code, client)
    message = M.execute_request(code, user_expressions)
    mid = message["header"]["msg_id"]
    out = {"stdout": [], "stderr": []}
    size = [0]
    done = defer.Deferred()
    reply = {}
    seen = set()

    def listen(msg):
        if msg.parent_msg_id != mid:
            return
        if msg.msg_type == "stream":
            c = msg.content()
            text = c.get("text", "")
            if size[0] + len(text) <= app.settings.output_cap:
                out.setdefault(c.get("name", "stdout"), []).append(text)
            size[0] += len(text)
        elif msg.msg_type == "execute_reply":
            reply.update(msg.content())
            seen.add("reply")
        elif msg.msg_type == "status" and msg.content().get("execution_state") == "idle":
            seen.add("idle")
        # iopub's idle and shell's reply travel on different sockets: wait for both.
        if seen == {"reply", "idle"} and not done.called:
            done.callback(None)

    remove = kernel.add_listener(listen)
    kernel.when_ended().addCallback(lambda reason: done.called or done.errback(RuntimeError(reason)))
    started = app.reactor.seconds()
    success, note = False, ""
    try:
        kernel.send("shell", message)
        await done.addTimeout(app.settings.service_wall, app.reactor)
        success = reply.get("status") == "ok"
    except defer.TimeoutError:
        note = f"\n[the computation was stopped: wall time limit of {app.settings.service_wall:g} s]\n"
    except RuntimeError as e:
        note = f"\n[the kernel died: {e}]\n"
    finally:
        remove()
        kernel.shutdown("/service finished")
        app.metrics.service_seconds.observe(app.reactor.seconds() - started)
    if size[0] > app.settings.output_cap:
        note += f"\n[output truncated at {app.settings.output_cap} bytes]\n"
    return 200, {"success": success, "stdout": "".join(out["stdout"]),
                 "stderr": "".join(out["stderr"]) + note, "execute_reply": reply}


class HealthResource(MethodsResource):
    isLeaf = True

    def __init__(self, app: CellApp, sandbox_report=None):
        super().__init__()
        self.app = app
        self.sandbox_report = sandbox_report or {}

    def render_GET(self, request):
        stats = self.app.pool.stats()
        status = "ok"
        if self.app.draining:
            status = "draining"
        elif not getattr(self.app.pool, "provider_up", True):
            status = "no-provider"
        accepting = not self.app.drained
        body = {"status": status, "node": self.app.settings.node, "ready": stats.ready,
                "starting": stats.starting, "running": stats.running, "capacity": stats.capacity,
                "free": max(0, stats.capacity - stats.running) if accepting else 0, "accepting": accepting,
                "sessions": len(self.app.registry.sessions),
                "sandbox": self.sandbox_report}
        apply_cors(request)
        return json_body(request, 200 if status == "ok" else 503, body)


class MetricsResource(MethodsResource):
    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return generate_latest(self.registry)


class TosResource(MethodsResource):
    isLeaf = True

    def __init__(self, tos_html: str | None):
        super().__init__()
        self.tos = tos_html

    def render_GET(self, request):
        apply_cors(request)
        if self.tos is None:
            request.setResponseCode(204)
            return b""
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return self.tos.encode("utf-8")

    render_POST = render_GET

    def render_OPTIONS(self, request):
        apply_cors(request)
        request.setResponseCode(204)
        return b""


class ErrorResource(resource.Resource):
    isLeaf = True

    def __init__(self, status: int, code: str, message: str):
        super().__init__()
        self.status, self.code, self.message = status, code, message

    def render(self, request):
        apply_cors(request)
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            return b""
        return json_error(request, self.status, self.code, self.message)


class StaticFiles(MethodsResource, static.File):
    """Static assets without directory listings (GET and HEAD only)."""

    def directoryListing(self):
        return ErrorResource(404, "not_found", "no such file")


class Root(resource.Resource):
    def __init__(self, app: CellApp, page: resource.Resource, sandbox_report=None):
        super().__init__()
        static_dir = app.settings.static_dir or STATIC_DIR
        os.makedirs(static_dir, exist_ok=True)
        self.putChild(b"kernel", KernelsResource(app))
        self.putChild(b"service", ServiceResource(app))
        self.putChild(b"healthz", HealthResource(app, sandbox_report))
        self.putChild(b"metrics", MetricsResource(app.metrics.registry))
        self.putChild(b"tos.html", TosResource(app.settings.tos_html))
        self.putChild(b"static", StaticFiles(static_dir))
        self.putChild(b"", page)
        embedded = os.path.join(static_dir, "embedded_sagecell.js")
        self.putChild(b"embedded_sagecell.js", StaticFiles(embedded) if os.path.exists(embedded)
                      else ErrorResource(404, "not_built", "the front-end bundle is not built (deploy/install)"))

    def getChild(self, path, request):
        return ErrorResource(404, "not_found", f"no such path: /{path.decode('latin-1')[:100]}")


class LimitedRequest(FormRequest):
    """A request that refuses a body over ``max_body`` before buffering it."""

    max_body = 2_000_000
    _refused = False
    _received = 0

    def gotLength(self, length):
        if length is not None and length > self.max_body:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self):
        self._refused = True
        body = json.dumps({"error": "body_too_large",
                           "message": f"request bodies are limited to {self.max_body} bytes"}).encode()
        transport = self.channel.transport
        transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        # Close our side only (FIN after the answer) and keep discarding what the
        # client still sends: closing a socket with unread data sends an RST,
        # and a client still uploading would then lose the 413 it was sent.
        # The client closes once it has read the answer; abort if it never does.
        transport.loseWriteConnection()
        self.channel.callLater(5.0, transport.abortConnection)
        if self.content is None:
            import io
            self.content = io.BytesIO()


def make_site(app: CellApp, page: resource.Resource, sandbox_report=None) -> server.Site:
    site = server.Site(Root(app, page, sandbox_report), timeout=app.settings.http_idle_timeout)
    site.requestFactory = type("CellRequest", (LimitedRequest,), {"max_body": app.settings.max_body})
    site.displayTracebacks = False
    return site


def placeholder_page(static_dir: str) -> resource.Resource:
    """Until the front end's page (cellserver.page) is there: a plain page saying so."""

    class Placeholder(MethodsResource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            return (b"<!doctype html><title>cellstack</title><h1>cellstack cell server</h1>"
                    b"<p>The API is at <code>POST /kernel</code> and <code>POST /service</code>. "
                    b"The page is built by the front end (deploy/install).</p>")

    return Placeholder()
