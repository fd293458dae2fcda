"""``twistd cellserver``: options and the one place the cell server is wired.

    twistd -n cellserver --listen tcp:8101:interface=127.0.0.1 --node c1

Every option has a default, so the node runs with no config file; any of
them can come from the ``[cellserver]`` table of a TOML file (``--config``).
``Options.postOptions`` validates everything and builds a frozen
``CellServerSettings``; ``makeService`` is the only code that sees options.
"""
from __future__ import annotations

import os

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from cellserver.provider_settings import PROVIDER_OPTIONS, provider_settings_from_options
from cellserver.settings import CellServerSettings
from deploy.clientip import parse_networks
from deploy.nodeconfig import NodeOptions, check_endpoints, http_idle_timeout_parameter, positive_float, positive_int

_log = Logger(namespace="cellserver")
_D = CellServerSettings.__dataclass_fields__


class Options(NodeOptions):
    section = "cellserver"
    default_listen = ["tcp:8101:interface=127.0.0.1"]
    longdesc = ("A cell server: hands out pre-started sandboxed Jupyter kernels and relays their "
                "messages with SageMathCell's API (POST /kernel, websocket /kernel/<id>/channels, "
                "POST /service). --listen may be repeated.")

    optParameters = [
        ["idle-cap", None, _D["idle_cap"].default,
         "Longest idle timeout (s) a client may ask for with timeout=; also the idle limit of kernels with interacts.",
         positive_float("idle-cap", minimum=1)],
        ["lifespan", None, _D["lifespan"].default, "Hard limit (s) on a kernel's life.",
         positive_float("lifespan", minimum=1)],
        ["connect-grace", None, _D["connect_grace"].default,
         "Seconds after POST /kernel within which a websocket must connect, or the kernel is reclaimed.",
         positive_float("connect-grace", minimum=0.1)],
        ["files-grace", None, _D["files_grace"].default,
         "Seconds a plain cell's kernel (timeout=0) stays after its code wrote files, so their links work.",
         positive_float("files-grace", minimum=0)],
        ["service-wall", None, _D["service_wall"].default, "Wall-clock limit (s) of a /service computation.",
         positive_float("service-wall", minimum=0.1)],
        ["kernels-per-session", None, _D["per_session"].default,
         "Live kernels allowed per CellSessionID (then 429).", positive_int("kernels-per-session")],
        ["output-cap", None, _D["output_cap"].default,
         "Bytes of output one execution may send; the rest is dropped with a notice.",
         positive_int("output-cap", minimum=1000)],
        ["unread-limit", None, _D["unread_limit"].default,
         "Bytes of output that may wait for a page that stopped reading before its websocket is closed "
         "(the kernel stays for a page that reads).", positive_int("unread-limit", minimum=100_000)],
        ["max-frame", None, _D["max_frame"].default, "Largest websocket message (bytes) a client may send.",
         positive_int("max-frame", minimum=1000)],
        ["max-code", None, _D["max_code"].default, "Longest code (characters) accepted.",
         positive_int("max-code", minimum=1)],
        ["max-body", None, _D["max_body"].default, "Largest HTTP request body (bytes).",
         positive_int("max-body", minimum=1000)],
        http_idle_timeout_parameter(),
        ["tos", None, None, "HTML file with terms of service; when set, computations need accepted_tos=true."],
        ["computation-log", None, None, "Append one JSON line per computation here ('-': stdout)."],
        ["trusted-proxies", None, "",
         "Comma-separated addresses/networks whose X-Forwarded-For/-Proto are believed (the edge)."],
        ["static-dir", None, "", "Directory of the page's assets (default: the installed cellserver/static)."],
        ["permalink-url", None, None, "permalinkd base URL the page uses to look up ?q= ids."],
        ["kernel-cpu-seconds", None, 30, "Sandbox: CPU seconds a kernel may use.", positive_int("kernel-cpu-seconds")],
        ["kernel-memory-mb", None, 512, "Sandbox: memory (cgroup) of a kernel, MB.", positive_int("kernel-memory-mb", 64)],
        ["kernel-address-space-mb", None, 4096, "Sandbox: address space (rlimit) of a kernel, MB.",
         positive_int("kernel-address-space-mb", 256)],
        ["kernel-pids", None, 64, "Sandbox: processes and threads of a kernel.", positive_int("kernel-pids", 16)],
        ["kernel-file-size-mb", None, 64, "Sandbox: largest file a kernel may write, MB.",
         positive_int("kernel-file-size-mb")],
        ["kernel-open-files", None, 256, "Sandbox: open files of a kernel.", positive_int("kernel-open-files", 32)],
        ["kernel-uid-base", None, 61000, "Sandbox (as root): first uid of this node's kernel accounts; give "
         "each cell server on a host its own range.", positive_int("kernel-uid-base", 1000)],
        ["kernel-accounts", None, 512, "Sandbox (as root): how many kernel accounts (uids from "
         "--kernel-uid-base on); at least --max-kernels.", positive_int("kernel-accounts", 1)],
        ["sandbox-skip", None, "", "Sandbox: comma-separated parts to leave out, to measure what they cost "
         "or to try the fallbacks: mounts, pidns, userns (not root: no user namespaces), landlock."],
    ] + PROVIDER_OPTIONS
    optFlags = [
        ["no-sandbox", None, "Run kernels unconfined (development only; logged loudly)."],
        ["require-sandbox", None, "Refuse to start unless every sandbox layer can be used."],
        ["no-merge-idle-kernels", None, "Keep each idle ready kernel's pages its own: no samepage merging "
         "(KSM, when the host runs ksmd) while kernels wait to be handed out."],
    ]

    def postOptions(self):
        from twisted.internet import reactor

        node = self.node_name("c1")
        check_endpoints(reactor, self["listen"])
        try:
            trusted = parse_networks(self["trusted-proxies"].split(","))
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxies: {e}")
        tos_html = None
        if self["tos"]:
            try:
                with open(self["tos"], encoding="utf-8") as f:
                    tos_html = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"--tos {self['tos']!r}: cannot read it: {e}")
        provider = provider_settings_from_options(self)
        from dataclasses import replace

        from cellserver.sandbox.settings import OPTIONAL, SandboxSettings
        skip = {x.strip() for x in self["sandbox-skip"].split(",") if x.strip()}
        if skip - set(OPTIONAL):
            raise usage.UsageError(f"--sandbox-skip: unknown {sorted(skip - set(OPTIONAL))}; "
                                   f"choose from {', '.join(OPTIONAL)}")
        sandbox = SandboxSettings(**{name: False for name in skip},
            enabled=not self["no-sandbox"], cpu_seconds=self["kernel-cpu-seconds"],
            memory_mb=self["kernel-memory-mb"], address_space_mb=self["kernel-address-space-mb"],
            pids=self["kernel-pids"], file_size_mb=self["kernel-file-size-mb"],
            open_files=self["kernel-open-files"], uid_base=self["kernel-uid-base"],
            slots=self["kernel-accounts"])
        if sandbox.enabled and sandbox.slots < provider.max_kernels:
            raise usage.UsageError(f"--kernel-accounts ({sandbox.slots}) must be at least --max-kernels "
                                   f"({provider.max_kernels}): each live kernel has its own account")
        provider = replace(provider, sandbox=sandbox, merge_idle=not self["no-merge-idle-kernels"])
        self.require_sandbox = bool(self["require-sandbox"])
        if sandbox.enabled and os.geteuid() == 0:
            check_reachable(provider.runtime_dir_for(node))
        if self["lifespan"] < self["idle-cap"]:
            raise usage.UsageError("--lifespan must be at least --idle-cap")
        self.settings = CellServerSettings(
            node=node, listen=tuple(self["listen"]), idle_cap=self["idle-cap"], lifespan=self["lifespan"],
            connect_grace=self["connect-grace"], files_grace=self["files-grace"], service_wall=self["service-wall"],
            per_session=self["kernels-per-session"], output_cap=self["output-cap"],
            unread_limit=self["unread-limit"],
            max_frame=self["max-frame"], max_code=self["max-code"], max_body=self["max-body"],
            http_idle_timeout=self["http-idle-timeout"],
            tos_html=tos_html, computation_log=self["computation-log"], trusted_proxies=trusted,
            static_dir=self["static-dir"], permalink_url=self["permalink-url"], provider=provider,
        )


def check_reachable(runtime_dir: str) -> None:
    """Sandboxed kernels run as their own accounts: every directory above the
    runtime directory must let others through (x), or no kernel can bind its sockets."""
    import stat

    path = os.path.abspath(runtime_dir)
    while True:
        if os.path.exists(path) and not os.stat(path).st_mode & stat.S_IXOTH:
            raise usage.UsageError(
                f"--runtime-dir {runtime_dir!r}: {path!r} is not searchable by other users (mode "
                f"{oct(os.stat(path).st_mode & 0o777)}), so sandboxed kernels cannot reach their sockets; "
                f"use a directory such as /tmp/cs-<node> or /run/cellstack")
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


class CellServerService(service.MultiService):
    """The kernel pool plus the listeners; on stop, ends every kernel session first."""

    def __init__(self, app, pool):
        super().__init__()
        self.app = app
        self.pool = pool

    def startService(self):
        import signal

        super().startService()
        # Drain: SIGUSR1 stops taking new kernels, SIGUSR2 takes them again (deploy/README.md).
        reactor = self.app.reactor
        signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(self.app.set_drained, True))
        signal.signal(signal.SIGUSR2, lambda *_: reactor.callFromThread(self.app.set_drained, False))

    def stopService(self):
        from twisted.internet import defer

        ends = self.app.stop_all("the cell server is shutting down")
        d = defer.DeferredList(ends) if ends else defer.succeed(None)
        d.addBoth(lambda _: super(CellServerService, self).stopService())
        return d


def page_resource(settings, static_dir: str):
    try:
        from cellserver.page import make_page_resource
    except ImportError:
        from cellserver.web import placeholder_page
        return placeholder_page(static_dir)
    return make_page_resource(static_dir, permalink_url=settings.permalink_url)


def sandbox_report(settings: CellServerSettings, require: bool) -> dict:
    """Detect the sandbox layers this machine allows; warn loudly about missing ones."""
    from cellserver.sandbox.apply import detect
    from cellserver.sandbox.settings import plan

    sb = settings.provider.sandbox
    p = plan(sb, detect(sb) if sb.enabled else None)
    if sb.enabled and p.not_implemented:
        _log.warn("SANDBOX: not built by this version: {layers} ({why})", layers=p.not_implemented,
                  why={k: p.why.get(k, "") for k in p.not_implemented})
    if p.missing:
        _log.warn("SANDBOX: kernels run WITHOUT these layers: {missing} ({why})",
                  missing=p.missing, why=p.why)
        if require:
            raise SystemExit(f"--require-sandbox: missing sandbox layers {p.missing}: {p.why}")
    else:
        _log.info("sandbox: every layer this version builds is in use")
    return p.report()


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    from cellserver.metrics import CellMetrics
    from cellserver.pool import KernelPoolService
    from cellserver.web import STATIC_DIR, CellApp, make_site
    from deploy.jsonlines import open_sink

    settings: CellServerSettings = options.settings
    report = sandbox_report(settings, getattr(options, "require_sandbox", False))
    pool = KernelPoolService(reactor, settings.provider, settings.node)
    metrics = CellMetrics(pool)
    app = CellApp(reactor, settings, pool, metrics, open_sink(settings.computation_log))
    static_dir = settings.static_dir or STATIC_DIR
    site = make_site(app, page_resource(settings, static_dir), sandbox_report=report)
    top = CellServerService(app, pool)
    pool.setServiceParent(top)
    for desc in settings.listen:
        strports.service(desc, site, reactor=reactor).setServiceParent(top)
    _log.info("cell server {node} on {listen}: capacity {cap}, {ready} ready kernels",
              node=settings.node, listen=list(settings.listen), cap=settings.provider.max_kernels,
              ready=settings.provider.ready_kernels)
    return top
