"""What ``/proc/<pid>/stat`` says of a process's CPU and faults: read one way
for every benchmark here (kernels, /service, the edge, permalinkd), which
split the machine's CPU between the processes they start.  Linux only."""
from __future__ import annotations

import os

NAN_PAIR = (float("nan"), float("nan"))


def stat_fields(pid: str | int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state
    first: field 3 of proc(5) is index 0)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: str | int, children: bool = False) -> float:
    """User + system CPU of a process (and, with ``children``, of its
    reaped children), in seconds."""
    fields = stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])            # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])       # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def user_system_seconds(pid: str | int) -> tuple[float, float]:
    """(utime, stime) of a process in seconds; NaNs when it is gone."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return NAN_PAIR
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick
