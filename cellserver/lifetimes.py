"""When a kernel must end.  Pure: every method takes ``now``.

The rules (ARCHITECTURE section 3, issue 2):
- ``timeout=0`` (a plain cell): the kernel ends once it is idle after its
  first execution, unless it has open comms (an interact or a widget),
  which keep it alive like a positive timeout at the idle cap;
- ``timeout>0``: it ends after that many idle seconds (at most the idle
  cap); an execution in progress is never "idle";
- every kernel ends at its hard lifespan, busy or not;
- a kernel nobody connected to within ``connect_grace`` is reclaimed, and
  a ``timeout=0`` kernel whose last websocket closed ends at once.

``Lifetime.check(now)`` answers the reason to end now, or None;
``Lifetime.next_check(now)`` the time at which the answer may change, so
the adapter schedules one timer instead of polling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

REASON_FINISHED = "finished: the computation is done (timeout=0)"
REASON_IDLE = "idle timeout"
REASON_LIFESPAN = "kernel lifespan reached"
REASON_UNUSED = "nobody connected to the kernel"
REASON_DISCONNECTED = "the page disconnected"


def parse_timeout(value, idle_cap: float) -> float:
    """The ``timeout`` form field as seconds in [0, idle_cap]; ValueError if not a number >= 0."""
    if value is None or value == "":
        return 0.0
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"timeout must be a number of seconds, not {str(value)[:40]!r}")
    if math.isnan(t) or t < 0:
        raise ValueError(f"timeout must be 0 or more seconds, not {value!r}")
    return min(t, idle_cap)


@dataclass
class Lifetime:
    created: float
    timeout: float
    idle_cap: float
    lifespan: float
    connect_grace: float = 30.0
    files_grace: float = 0.0        # timeout=0: how long a kernel whose code wrote files stays for them
    busy: bool = False
    executed: bool = False          # an execution has finished at least once
    comms_open: int = 0
    sockets: int = 0
    ever_connected: bool = False
    last_activity: float = 0.0
    files_written: bool = False     # an execution reported files in the working directory

    def __post_init__(self) -> None:
        self.last_activity = self.created

    # events -----------------------------------------------------------------
    def connected(self, now: float) -> None:
        self.sockets += 1
        self.ever_connected = True
        self.last_activity = now

    def disconnected(self, now: float) -> None:
        self.sockets = max(0, self.sockets - 1)
        self.last_activity = now

    def activity(self, now: float) -> None:
        self.last_activity = now

    def execution_started(self, now: float) -> None:
        self.busy = True
        self.last_activity = now

    def execution_finished(self, now: float) -> None:
        self.busy = False
        self.executed = True
        self.last_activity = now

    def files_reported(self) -> None:
        """The code wrote files (their links are in the page): keep a plain cell's
        kernel ``files_grace`` more seconds so they can still be fetched."""
        self.files_written = True

    def comm_opened(self) -> None:
        self.comms_open += 1

    def comm_closed(self) -> None:
        self.comms_open = max(0, self.comms_open - 1)

    # decisions ----------------------------------------------------------------
    @property
    def idle_limit(self) -> float:
        if self.comms_open:
            return self.idle_cap
        return min(self.timeout, self.idle_cap)

    def check(self, now: float) -> str | None:
        if now >= self.created + self.lifespan:
            return REASON_LIFESPAN
        if not self.ever_connected:
            return REASON_UNUSED if now >= self.created + self.connect_grace else None
        if self.timeout == 0 and not self.comms_open:
            if self.sockets == 0:
                return REASON_DISCONNECTED
            if self.executed and not self.busy:
                if self.files_written and now < self.last_activity + self.files_grace:
                    return None
                return REASON_FINISHED
            return None
        if self.busy:
            return None
        if now >= self.last_activity + self.idle_limit:
            return REASON_IDLE
        return None

    def next_check(self, now: float) -> float:
        """The earliest time ``check`` could answer differently without new events."""
        times = [self.created + self.lifespan]
        if not self.ever_connected:
            times.append(self.created + self.connect_grace)
        elif not self.busy and not (self.timeout == 0 and not self.comms_open):
            times.append(self.last_activity + self.idle_limit)
        elif not self.busy and self.files_written:
            times.append(self.last_activity + self.files_grace)
        return max(now, min(times))
