"""The cell server's settings, built once from its options (``tap.py``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from cellserver.provider_settings import ProviderSettings
from deploy.nodeconfig import HTTP_IDLE_TIMEOUT


@dataclass(frozen=True)
class CellServerSettings:
    node: str = "c1"
    listen: tuple[str, ...] = ("tcp:8101:interface=127.0.0.1",)
    idle_cap: float = 900.0            # longest idle timeout a client may ask for
    lifespan: float = 1800.0           # hard limit on a kernel's life
    connect_grace: float = 30.0        # a kernel nobody connects to is reclaimed
    files_grace: float = 60.0          # a plain cell's kernel stays this long when its code wrote files
    service_wall: float = 30.0         # /service wall-clock limit
    per_session: int = 2               # live kernels per CellSessionID
    output_cap: int = 1_000_000        # bytes of output per execution
    unread_limit: int = 16_000_000     # bytes waiting for a page that stopped reading, before it is cut off
    max_frame: int = 1_000_000         # largest websocket message from a client
    max_code: int = 65_000             # characters
    max_body: int = 2_000_000          # largest HTTP request body
    http_idle_timeout: float = HTTP_IDLE_TIMEOUT   # an HTTP connection silent this long is closed
    tos_html: str | None = None        # terms of service; None = no terms
    computation_log: str | None = None
    trusted_proxies: tuple = ()
    static_dir: str = ""
    permalink_url: str | None = None   # where the page looks up ?q= ids
    provider: ProviderSettings = field(default_factory=ProviderSettings)
