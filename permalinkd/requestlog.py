"""The request log: one JSON line per request, apart from the permalink data.

``record`` is pure (time passed in); the sink is a ``deploy.jsonlines``
file, stdout, or ``MemoryLines`` in tests.
"""
from __future__ import annotations

from typing import Any


def record(now: float, node: str, client_ip: str, method: str, route: str, status: int, outcome: str,
           pid: str | None = None, duration: float | None = None, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "time": round(now, 6), "node": node, "client_ip": client_ip, "method": method,
        "route": route, "status": status, "outcome": outcome, "id": pid,
    }
    if duration is not None:
        rec["duration_ms"] = round(duration * 1000, 3)
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec
