"""permalinkd's settings: built once by ``Options.postOptions``, passed down as keywords."""
from __future__ import annotations

from dataclasses import dataclass

from deploy.clientip import Network
from deploy.nodeconfig import HTTP_IDLE_TIMEOUT
from permalinkd.validation import DEFAULT_LANGUAGES


@dataclass(frozen=True)
class PermalinkSettings:
    node: str = "p1"
    listen: tuple[str, ...] = ("tcp:8201:interface=127.0.0.1",)
    redis: tuple[str, int] | None = None            # a single server (no Sentinel)
    replicas: tuple[tuple[str, int], ...] = ()      # with --redis: replicas to read from
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = "cellstack"
    password: str | None = None
    wait_replicas: int = 1
    wait_timeout_ms: int = 1000
    redis_timeout: float = 2.0
    redis_pool: int = 4
    sentinel_refresh: float = 2.0
    touch_interval: float = 0.5
    cache_size: int = 32_000_000
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    max_code: int = 65_000
    max_body: int = 1_000_000
    http_idle_timeout: float = HTTP_IDLE_TIMEOUT   # an HTTP connection silent this long is closed
    request_log: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
