"""``twistd edgeproxy``: options and the one place the edge is wired.

    twistd -n edgeproxy --listen ssl:8443:privateKey=key.pem:certKey=cert.pem \\
        --http-listen tcp:8080 --cells c1=http://127.0.0.1:8101,c2=http://127.0.0.1:8102 \\
        --permalinks http://127.0.0.1:8201,http://127.0.0.1:8202

``--listen`` (repeatable) takes Twisted endpoint descriptions; ``ssl:`` ones
use the edge's own TLS context (``tls.py``: TLS 1.2+, resumption, ALPN,
reloaded on SIGHUP).  With ``--proxy-protocol``, a PROXY header from a
``--trusted-proxies`` peer names the client (``listeners.py``).  ``--http-listen`` answers plain HTTP with a redirect
to HTTPS, except ``/healthz``.  Stopping drains: listeners close first, then
open exchanges get ``--drain`` seconds to finish.
"""
from __future__ import annotations

import os
import signal

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python import usage

from deploy.clientip import parse_networks
from deploy.nodeconfig import NodeOptions, positive_float, positive_int
from edgeproxy import policy as P
from edgeproxy.edge import EdgeSettings

_log = Logger(namespace="edgeproxy")
STATIC_DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cellserver", "static")


def parse_cells(text: str) -> tuple[tuple[str, str], ...]:
    from cellserver.kernelid import new_kernel_id

    cells = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"--cells wants name=http://host:port items, not {item!r}")
        new_kernel_id(name, "0" * 32)  # the name must be a valid node name
        cells.append((name, url))
    if len({n for n, _ in cells}) != len(cells):
        raise ValueError("--cells: names must be unique")
    return tuple(cells)


def parse_permalinks(text: str) -> tuple[tuple[str, str], ...]:
    """``url,...`` (named p1, p2, ...) or ``name=url,...`` (names as in their --node)."""
    items = []
    for i, item in enumerate(x.strip() for x in text.split(",") if x.strip()):
        name, sep, url = item.partition("=") if "=" in item.split("://")[0] else (f"p{i + 1}", "=", item)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--permalinks wants [name=]http://host:port items, not {item!r}")
        items.append((name, url))
    if len({n for n, _ in items}) != len(items):
        raise ValueError("--permalinks: names must be unique")
    return tuple(items)


class Options(NodeOptions):
    section = "edgeproxy"
    default_listen = ["tcp:8080:interface=127.0.0.1"]
    longdesc = "The edge: TLS, rate limits, health checks and routing in front of cell servers and permalinkd."
    optParameters = [
        ["http-listen", None, None, "Plain-HTTP endpoint that redirects to HTTPS (except /healthz)."],
        ["cells", None, "c1=http://127.0.0.1:8101", "Cell servers: name=url,... (names as in their --node)."],
        ["permalinks", None, "", "permalinkd servers: [name=]url,..."],
        ["static-dir", None, STATIC_DEFAULT, "Directory served at /static/ and /embedded_sagecell.js."],
        ["trusted-proxies", None, "", "Upstreams (load balancers) whose X-Forwarded-For is believed."],
        ["metrics-from", None, "127.0.0.0/8,::1", "Networks (TCP peers) /metrics is served to; others get 403."],
        ["access-log", None, None, "One JSON line per request here ('-': stdout)."],
        ["compute-rate", None, 2.0, "Computations (POST /kernel, /service) per second per client IP.",
         positive_float("compute-rate")],
        ["compute-burst", None, 10.0, "Burst of computations per client IP.", positive_float("compute-burst", 1)],
        ["compute-global-rate", None, 100.0, "Computations per second in total.", positive_float("compute-global-rate")],
        ["compute-global-burst", None, 200.0, "Burst of computations in total.",
         positive_float("compute-global-burst", 1)],
        ["permalink-rate", None, 2.0, "Permalink requests per second per client IP.", positive_float("permalink-rate")],
        ["permalink-burst", None, 20.0, "Burst of permalink requests per IP.", positive_float("permalink-burst", 1)],
        ["permalink-global-rate", None, 200.0, "Permalink requests per second in total.",
         positive_float("permalink-global-rate")],
        ["permalink-global-burst", None, 400.0, "Burst of permalink requests in total.",
         positive_float("permalink-global-burst", 1)],
        ["max-conns-per-ip", None, 100, "Concurrent connections per client IP.", positive_int("max-conns-per-ip")],
        ["check-interval", None, EdgeSettings.check_interval, "Seconds between health checks.",
         positive_float("check-interval", 0.05)],
        ["check-timeout", None, EdgeSettings.check_timeout, "Health check timeout (s).",
         positive_float("check-timeout", 0.01)],
        ["check-fast-interval", None, EdgeSettings.check_fast_interval, "Seconds from the start of a check that "
         "contradicted a backend's state to the start of the one confirming it (at once if it took longer).",
         positive_float("check-fast-interval", 0.01)],
        ["rise", None, 2, "Good checks that mark a backend up.", positive_int("rise")],
        ["fall", None, 2, "Failed checks that mark a backend down.", positive_int("fall")],
        ["head-timeout", None, 10.0, "Seconds to receive a request head (slowloris).", positive_float("head-timeout", 0.1)],
        ["keepalive-timeout", None, 60.0, "Idle keep-alive seconds.", positive_float("keepalive-timeout", 0.1)],
        ["connect-timeout", None, 3.0, "Backend connect timeout (s).", positive_float("connect-timeout", 0.05)],
        ["response-timeout", None, 120.0, "Seconds for a backend to start answering.",
         positive_float("response-timeout", 0.1)],
        ["tunnel-idle", None, 3600.0, "Idle websocket tunnel timeout (s).", positive_float("tunnel-idle", 1)],
        ["tunnel-down-grace", None, 30.0, "Seconds a cell server marked down by failed checks (not a refused "
         "connection) keeps its open websockets, in case it is only slow.", positive_float("tunnel-down-grace", 0)],
        ["drain", None, 10.0, "Seconds open exchanges get to finish on shutdown.", positive_float("drain", 0)],
    ]

    optFlags = [
        ["proxy-protocol", None, "Connections from --trusted-proxies may begin with a PROXY protocol header "
         "(v1 or v2, as HAProxy's send-proxy writes it), which then names the client; from other peers such a "
         "header is not believed."],
    ]

    def postOptions(self):
        from edgeproxy.tls import parse_ssl_description

        self.node_name("e1")
        https_port = 443
        for desc in self["listen"]:
            if desc.startswith("ssl:"):
                try:
                    port, opts = parse_ssl_description(desc)
                except ValueError as e:
                    raise usage.UsageError(f"--listen: {e}")
                for key in ("privateKey", "certKey"):
                    if not os.path.exists(opts[key]):
                        raise usage.UsageError(f"--listen {desc!r}: {key} file {opts[key]!r} does not exist "
                                               f"(make a development one with: python -m certs.devca --dir DIR)")
                https_port = port
        try:
            cells = parse_cells(self["cells"])
            perms = parse_permalinks(self["permalinks"])
            trusted = parse_networks(self["trusted-proxies"].split(","))
            metrics_from = parse_networks(self["metrics-from"].split(","))
        except ValueError as e:
            raise usage.UsageError(str(e))
        if not cells:
            raise usage.UsageError("--cells: at least one cell server is needed")
        if self["proxy-protocol"] and not trusted:
            raise usage.UsageError("--proxy-protocol needs --trusted-proxies (whose PROXY headers to believe)")
        if not os.path.isdir(self["static-dir"]):
            os.makedirs(self["static-dir"], exist_ok=True)
        self.settings = EdgeSettings(
            cells=cells, permalinks=perms, static_dir=self["static-dir"], trusted_proxies=trusted,
            metrics_from=metrics_from,
            compute=P.Limits(self["compute-rate"], self["compute-burst"], self["compute-global-rate"],
                             self["compute-global-burst"]),
            permalink=P.Limits(self["permalink-rate"], self["permalink-burst"], self["permalink-global-rate"],
                               self["permalink-global-burst"]),
            max_conns_per_ip=self["max-conns-per-ip"], check_interval=self["check-interval"],
            check_timeout=self["check-timeout"], check_fast_interval=self["check-fast-interval"],
            rise=self["rise"], fall=self["fall"],
            head_timeout=self["head-timeout"], keepalive_timeout=self["keepalive-timeout"],
            connect_timeout=self["connect-timeout"], response_timeout=self["response-timeout"],
            tunnel_idle=self["tunnel-idle"], tunnel_down_grace=self["tunnel-down-grace"], https_port=https_port, access_log=self["access-log"])
        self.listen = list(self["listen"])
        self.http_listen = self["http-listen"]
        self.drain = self["drain"]
        self.proxy_protocol = bool(self["proxy-protocol"])


class EdgeService(service.Service):
    """Listeners + health checks; SIGHUP reloads certificates; stop drains."""

    def __init__(self, reactor, edge, listen: list[str], http_listen: str | None, drain: float,
                 proxy_protocol: bool = False):
        self.reactor = reactor
        self.proxy_protocol = proxy_protocol
        self.edge = edge
        self.listen = listen
        self.http_listen = http_listen
        self.drain = drain
        self.ports = []
        self.tls_factories = []

    def startService(self):
        from edgeproxy.listeners import listen
        from edgeproxy.proxy import FrontendFactory

        super().startService()
        settings = self.edge.settings
        kw = dict(trusted=settings.trusted_proxies, proxy_protocol=self.proxy_protocol,
                  header_timeout=settings.head_timeout,
                  on_refused=self.edge.metrics.rejected.labels("proxy_header").inc)
        for desc in self.listen:
            secure = desc.startswith("ssl:")
            d, ctx = listen(self.reactor, desc, FrontendFactory(self.edge, secure=secure), **kw)
            if ctx is not None:
                self.tls_factories.append(ctx)
            d.addCallback(self.ports.append)
        if self.http_listen:
            d, _ = listen(self.reactor, self.http_listen, FrontendFactory(self.edge, secure=False, redirect_only=True),
                          **kw)
            d.addCallback(self.ports.append)
        self.edge.start_checks()
        signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))
        _log.info("edge up: cells {cells}, permalinks {perms}", cells=[n for n, _ in self.edge.settings.cells],
                  perms=[u for _, u in self.edge.settings.permalinks])

    def reload(self):
        for ctx in self.tls_factories:
            ctx.reload()

    async def _stop(self):
        self.edge.draining = True
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        self.edge.stop_checks()
        deadline = self.reactor.seconds() + self.drain
        while any(f.state in ("body", "response") for f in self.edge.open_connections) \
                and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        for front in list(self.edge.open_connections):
            front.transport.loseConnection()

    def stopService(self):
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    from deploy.jsonlines import open_sink
    from edgeproxy.edge import Edge

    edge = Edge(reactor, options.settings, open_sink(options.settings.access_log))
    return EdgeService(reactor, edge, options.listen, options.http_listen, options.drain, options.proxy_protocol)
