"""The edge's decisions: routes, rate limits, backend health.  Pure: time is
passed in as ``now`` (seconds), no Twisted import.

- ``classify(method, path, headers)``: where a request goes and which rate
  class it counts against (ARCHITECTURE section 4).
- ``TokenBucket`` / ``RateLimiter``: per client IP and global buckets per
  class; an idle IP's bucket is dropped once it would be full again, so
  memory stays bounded under many addresses; ``ConnectionCounter`` caps
  concurrent connections per IP.
- ``HealthState``: rise/fall hysteresis of active checks, plus passive
  "down at once" on a refused or reset connection.
- ``pick_cell``: the healthy cell server with the most free kernels, ties
  taken in turn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from cellserver.kernelid import node_of

COMPUTE = "compute"
PERMALINK = "permalink"


@dataclass(frozen=True)
class Route:
    kind: str                     # owned | new | permalink | static | local | unknown_kernel
    node: str | None = None       # owned: the cell server that has the kernel
    rate_class: str | None = None


def classify(method: bytes, path: bytes, kernel_header: bytes | None = None) -> Route:
    if path in (b"/healthz", b"/metrics"):
        return Route("local")
    if path.startswith(b"/static/") or path == b"/embedded_sagecell.js":
        return Route("static")
    if path == b"/permalink" or path.startswith(b"/permalink/"):
        return Route("permalink", rate_class=PERMALINK)
    parts = path.split(b"/")
    if len(parts) >= 3 and parts[1] == b"kernel" and parts[2]:
        node = node_of(parts[2].decode("latin-1"))
        return Route("owned", node) if node else Route("unknown_kernel")
    if kernel_header:
        node = node_of(kernel_header.decode("latin-1"))
        return Route("owned", node) if node else Route("unknown_kernel")
    if method == b"POST" and path in (b"/kernel", b"/service"):
        return Route("new", rate_class=COMPUTE)
    return Route("new")


@dataclass
class TokenBucket:
    rate: float          # tokens per second
    burst: float         # bucket size
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float, n: float = 1.0) -> float:
        """0.0 if ``n`` tokens were taken, else seconds until they would be there."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        if self.rate <= 0:
            return math.inf
        return (n - self.tokens) / self.rate

    def full_at(self) -> float:
        return self.stamp + ((self.burst - self.tokens) / self.rate if self.rate > 0 else math.inf)


@dataclass(frozen=True)
class Limits:
    per_ip_rate: float
    per_ip_burst: float
    global_rate: float
    global_burst: float


class RateLimiter:
    """Per-IP and global token buckets for one rate class."""

    def __init__(self, limits: Limits, now: float = 0.0, sweep_every: float = 10.0):
        self.limits = limits
        self.global_bucket = TokenBucket(limits.global_rate, limits.global_burst, stamp=now)
        self.buckets: dict[str, TokenBucket] = {}
        self.sweep_every = sweep_every
        self._next_sweep = now + sweep_every

    def check(self, ip: str, now: float) -> float:
        """0.0 when allowed (tokens taken); else the accurate Retry-After in seconds."""
        if now >= self._next_sweep:
            self.sweep(now)
        bucket = self.buckets.get(ip)
        if bucket is None:
            bucket = self.buckets[ip] = TokenBucket(self.limits.per_ip_rate, self.limits.per_ip_burst, stamp=now)
        wait = bucket.take(now)
        if wait:
            return wait
        wait = self.global_bucket.take(now)
        if wait:
            bucket.tokens += 1  # the global limit said no: the IP's token was not used
            return wait
        return 0.0

    def sweep(self, now: float) -> None:
        """Forget IPs whose bucket has refilled: they would start full anyway."""
        self.buckets = {ip: b for ip, b in self.buckets.items() if b.full_at() > now}
        self._next_sweep = now + self.sweep_every


class ConnectionCounter:
    def __init__(self, per_ip: int):
        self.per_ip = per_ip
        self.counts: dict[str, int] = {}

    def acquire(self, ip: str) -> bool:
        n = self.counts.get(ip, 0)
        if n >= self.per_ip:
            return False
        self.counts[ip] = n + 1
        return True

    def release(self, ip: str) -> None:
        n = self.counts.get(ip, 0) - 1
        if n <= 0:
            self.counts.pop(ip, None)
        else:
            self.counts[ip] = n


@dataclass
class HealthState:
    """Rise/fall hysteresis.  A new backend starts down until ``rise`` checks pass,
    so no traffic goes to a server that has never answered."""

    rise: int = 2
    fall: int = 2
    up: bool = False
    streak: int = 0                 # consecutive results contradicting the state
    free: int = 0                   # cell servers: kernels they can still hand out
    accepting: bool = True          # cell servers: False while drained (no new kernels, old ones served)
    changed_at: float = 0.0
    last_error: str = ""

    @property
    def transitioning(self) -> bool:
        """Results contradict the state but not yet ``rise``/``fall`` times in a row:
        worth confirming sooner than the regular interval (HAProxy's ``fastinter``)."""
        return self.streak > 0

    def check_passed(self, now: float, free: int = 0, accepting: bool = True) -> bool:
        """Record a good check; True if the backend just came up."""
        self.free = free
        self.accepting = accepting
        self.last_error = ""
        if self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= self.rise:
            self.up, self.streak, self.changed_at = True, 0, now
            return True
        return False

    def check_failed(self, now: float, error: str) -> bool:
        """Record a failed check; True if the backend just went down."""
        self.last_error = error
        if not self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= self.fall:
            self.up, self.streak, self.changed_at = False, 0, now
            return True
        return False

    def connection_failed(self, now: float, error: str) -> bool:
        """Passive detection: a refused or reset connection is down at once."""
        self.last_error = error
        self.streak = 0
        if self.up:
            self.up, self.changed_at = False, now
            return True
        return False


@dataclass
class RoundRobin:
    turn: int = 0
    names: list = field(default_factory=list)


def pick_cell(states: dict[str, HealthState], exclude: set[str], rr: RoundRobin) -> str | None:
    """The healthy cell server with the most free kernels; ties in turn.  A
    drained one (not accepting) is never chosen for new work."""
    best = [n for n, s in states.items() if s.up and s.accepting and n not in exclude]
    if not best:
        return None
    top = max(states[n].free for n in best)
    tied = sorted(n for n in best if states[n].free == top)
    rr.turn += 1
    return tied[rr.turn % len(tied)]


def pick_any(states: dict[str, HealthState], exclude: set[str], rr: RoundRobin) -> str | None:
    healthy = sorted(n for n, s in states.items() if s.up and n not in exclude)
    if not healthy:
        return None
    rr.turn += 1
    return healthy[rr.turn % len(healthy)]
