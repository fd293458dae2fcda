"""``twistd permalinkd``: options and the one place permalinkd is wired.

    twistd -n permalinkd --listen tcp:8201:interface=127.0.0.1 \\
        --sentinels 127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381 --master-name cellstack \\
        --redis-password-file var/secrets/redis-password
    twistd -n permalinkd --listen tcp:8201:interface=127.0.0.1 --redis 127.0.0.1:6379

Every option has a default; any of them can come from the ``[permalinkd]``
table of a TOML file (``--config``).  ``Options.postOptions`` validates and
builds a frozen ``PermalinkSettings``; ``makeService`` is the only code that
sees it whole.
"""
from __future__ import annotations

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from deploy.clientip import parse_networks
from deploy.jsonlines import open_sink
from deploy.nodeconfig import NodeOptions, check_endpoints, http_idle_timeout_parameter, positive_float, positive_int
from permalinkd.settings import PermalinkSettings
from permalinkd.validation import DEFAULT_LANGUAGES

_log = Logger(namespace="permalinkd")
_D = PermalinkSettings.__dataclass_fields__


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise usage.UsageError(f"{what}: {text!r} must be host:port")
    try:
        number = int(port)
    except ValueError:
        raise usage.UsageError(f"{what}: port of {text!r} must be a number")
    if not 0 < number < 65536:
        raise usage.UsageError(f"{what}: port of {text!r} is out of range")
    return host.strip("[]"), number


def parse_addresses(text: str, what: str) -> tuple[tuple[str, int], ...]:
    return tuple(parse_address(t, what) for t in text.split(",") if t.strip())


class Options(NodeOptions):
    section = "permalinkd"
    default_listen = ["tcp:8201:interface=127.0.0.1"]
    longdesc = ("The permalink service: POST /permalink stores a cell (code, language, interacts) under a "
                "content-derived id, GET /permalink?q=<id> returns it (JSONP with callback=). Storage is "
                "Redis: one server (--redis) or a primary found through Sentinel (--sentinels, --master-name); "
                "writes are acknowledged after WAIT confirms a replica has them.")

    optParameters = [
        ["redis", None, None, "A single Redis server host:port (no Sentinel). Default 127.0.0.1:6379 "
                              "when --sentinels is not given."],
        ["replicas", None, "", "With --redis: comma-separated replicas host:port to read from when it is away."],
        ["sentinels", None, "", "Comma-separated Sentinels host:port; permalinkd follows their primary."],
        ["master-name", None, _D["master_name"].default, "The Sentinel master name."],
        ["redis-password", None, None, "Redis (and Sentinel) password. Prefer --redis-password-file."],
        ["redis-password-file", None, None, "File holding the Redis password (first line)."],
        ["wait-replicas", None, None, "Replicas that must confirm a write (WAIT n); default 1 with "
                                      "--sentinels or --replicas, else 0.", positive_int("wait-replicas", 0)],
        ["wait-timeout", None, _D["wait_timeout_ms"].default,
         "Milliseconds WAIT may take before the write is answered 503.", positive_int("wait-timeout", 1)],
        ["redis-timeout", None, _D["redis_timeout"].default, "Seconds a Redis command may take.",
         positive_float("redis-timeout", 0.05)],
        ["redis-pool", None, _D["redis_pool"].default, "Connections per Redis server.",
         positive_int("redis-pool", 1, 64)],
        ["cache-size", None, _D["cache_size"].default,
         "Characters of permalinks kept in memory (LRU; they never change); 0 turns the cache off.",
         positive_int("cache-size", 0)],
        ["touch-interval", None, _D["touch_interval"].default,
         "Seconds between writes of read counts / last_accessed (batched).", positive_float("touch-interval", 0.01)],
        ["sentinel-refresh", None, _D["sentinel_refresh"].default,
         "Seconds between asking Sentinel for the primary and replicas (besides +switch-master).",
         positive_float("sentinel-refresh", 0.1)],
        ["languages", None, ",".join(DEFAULT_LANGUAGES), "Comma-separated languages a permalink may have."],
        ["max-code", None, _D["max_code"].default, "Longest code (characters); longer is 413.",
         positive_int("max-code")],
        ["max-body", None, _D["max_body"].default, "Largest request body (bytes); larger is 413.",
         positive_int("max-body", 1000)],
        http_idle_timeout_parameter(),
        ["request-log", None, None, "Append one JSON line per request here ('-': stdout)."],
        ["trusted-proxies", None, "",
         "Comma-separated addresses/networks whose X-Forwarded-For is believed (the edge)."],
    ]

    def postOptions(self):
        from twisted.internet import reactor

        node = self.node_name("p1")
        check_endpoints(reactor, self["listen"])
        try:
            trusted = parse_networks(self["trusted-proxies"].split(","))
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxies: {e}")
        sentinels = parse_addresses(self["sentinels"], "--sentinels")
        if sentinels and self["redis"]:
            raise usage.UsageError("give either --redis or --sentinels, not both")
        redis = None if sentinels else parse_address(self["redis"] or "127.0.0.1:6379", "--redis")
        replicas = parse_addresses(self["replicas"], "--replicas")
        if replicas and sentinels:
            raise usage.UsageError("--replicas is for --redis; Sentinel says where the replicas are")
        password = self["redis-password"]
        if self["redis-password-file"]:
            if password:
                raise usage.UsageError("give either --redis-password or --redis-password-file, not both")
            try:
                with open(self["redis-password-file"], encoding="utf-8") as f:
                    password = f.readline().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise usage.UsageError(f"--redis-password-file {self['redis-password-file']!r}: {e}")
            if not password:
                raise usage.UsageError(f"--redis-password-file {self['redis-password-file']!r} is empty")
        wait = self["wait-replicas"]
        if wait is None:
            wait = 1 if (sentinels or replicas) else 0
        languages = tuple(x.strip() for x in self["languages"].split(",") if x.strip())
        if not languages:
            raise usage.UsageError("--languages must name at least one language")
        self.settings = PermalinkSettings(
            node=node, listen=tuple(self["listen"]), redis=redis, replicas=replicas, sentinels=sentinels,
            master_name=self["master-name"], password=password or None, wait_replicas=wait,
            wait_timeout_ms=self["wait-timeout"], redis_timeout=self["redis-timeout"],
            redis_pool=self["redis-pool"], touch_interval=self["touch-interval"],
            cache_size=self["cache-size"],
            sentinel_refresh=self["sentinel-refresh"], languages=languages,
            max_code=self["max-code"], max_body=self["max-body"], request_log=self["request-log"],
            trusted_proxies=trusted, http_idle_timeout=self["http-idle-timeout"],
        )


class RedisService(service.Service):
    """Owns the store (and the Sentinel watcher): connects on start, closes on stop."""

    def __init__(self, store, settings: PermalinkSettings, watcher=None):
        self.store, self.settings, self.watcher = store, settings, watcher

    def startService(self):
        super().startService()
        from twisted.internet import task
        clock = self.store.reactor
        self._flusher = task.LoopingCall(lambda: self.store.flush_touches(clock.seconds()))
        self._flusher.clock = clock
        self._flusher.start(self.settings.touch_interval, now=False)
        if self.watcher is not None:
            self.watcher.start()
        else:
            self.store.set_primary(*self.settings.redis)
            self.store.set_replicas(self.settings.replicas)

    def stopService(self):
        super().stopService()
        from twisted.internet import defer
        if self._flusher.running:
            self._flusher.stop()
        self.store.flush_touches(self.store.reactor.seconds())
        ds = [self.store.close()]
        if self.watcher is not None:
            ds.append(self.watcher.stop())
        return defer.DeferredList(ds, consumeErrors=True)


def build(settings: PermalinkSettings, reactor, sink=None):
    """The store, watcher, metrics and root resource for ``settings`` (used by makeService and tests)."""
    from permalinkd.metrics import PermalinkMetrics
    from permalinkd.sentinel import SentinelWatcher
    from permalinkd.store import RedisStore
    from permalinkd.web import make_root

    metrics = PermalinkMetrics()
    store = RedisStore(reactor, settings.password, wait_replicas=settings.wait_replicas,
                       wait_timeout_ms=settings.wait_timeout_ms, reply_timeout=settings.redis_timeout,
                       poolsize=settings.redis_pool, cache_size=settings.cache_size,
                       on_change=lambda event, **kw: metrics.primary_switches.inc())
    watcher = None
    if settings.sentinels:
        watcher = SentinelWatcher(reactor, settings.sentinels, settings.master_name, settings.password,
                                  on_primary=store.set_primary, on_replicas=store.set_replicas,
                                  refresh=settings.sentinel_refresh)
        store.on_trouble = watcher.refresh_now
    if sink is None:
        sink = open_sink(settings.request_log)
        _reopen_on_sighup(sink, reactor)
    root = make_root(store=store, clock=reactor, node=settings.node, languages=settings.languages,
                     max_code=settings.max_code, sink=sink, metrics=metrics,
                     trusted_proxies=settings.trusted_proxies, watcher=watcher,
                     max_body=settings.max_body)
    return store, watcher, metrics, root


def _reopen_on_sighup(sink, reactor) -> None:
    """logrotate: SIGHUP reopens the request log file."""
    import signal

    if hasattr(sink, "reopen") and getattr(sink, "path", "-") != "-":
        signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(sink.reopen))


def _quiet_site():
    from twisted.web import server

    class QuietSite(server.Site):
        """No Twisted access-log line per request: the request log (--request-log) is ours."""

        def log(self, request):
            pass

    return QuietSite


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    from twisted.web import server

    from permalinkd.web import request_factory

    settings: PermalinkSettings = options.settings
    QuietSite = _quiet_site()
    store, watcher, metrics, root = build(settings, reactor)
    top = service.MultiService()
    RedisService(store, settings, watcher).setServiceParent(top)
    site = QuietSite(root, timeout=settings.http_idle_timeout)
    site.requestFactory = request_factory(settings.max_body)
    site.displayTracebacks = False
    for desc in settings.listen:
        strports.service(desc, site, reactor=reactor).setServiceParent(top)
    _log.info("permalinkd {node} on {listen}; redis {redis}; sentinels {sentinels}",
              node=settings.node, listen=list(settings.listen), redis=settings.redis,
              sentinels=list(settings.sentinels))
    return top
