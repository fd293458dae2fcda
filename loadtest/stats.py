"""Latency statistics and tables shared by the load tools.  Pure: no I/O.

Percentiles use the nearest-rank method on the sorted sample (p99 of 100
samples is the 99th smallest), which never invents a value that was not
measured.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan if empty)."""
    if not sorted_values:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    rank = max(1, math.ceil(round(p / 100 * len(sorted_values), 9)))   # 99.9% of 1000 is 999, not 999.0000001
    return sorted_values[rank - 1]


@dataclass
class Sample:
    phase: str
    start: float       # seconds since the run began
    latency: float     # seconds
    ok: bool
    error: str = ""


@dataclass
class PhaseSummary:
    phase: str
    count: int
    errors: int
    p50: float
    p90: float
    p99: float
    throughput: float  # successful operations per second over the run
    error_kinds: dict[str, int] = field(default_factory=dict)


def summarise(samples: Iterable[Sample], duration: float) -> list[PhaseSummary]:
    """One summary per phase, in the order phases first appear."""
    by_phase: dict[str, list[Sample]] = {}
    for s in samples:
        by_phase.setdefault(s.phase, []).append(s)
    out = []
    for phase, items in by_phase.items():
        good = sorted(s.latency for s in items if s.ok)
        kinds: dict[str, int] = {}
        for s in items:
            if not s.ok:
                kinds[s.error or "error"] = kinds.get(s.error or "error", 0) + 1
        out.append(PhaseSummary(
            phase=phase, count=len(items), errors=len(items) - len(good),
            p50=percentile(good, 50), p90=percentile(good, 90), p99=percentile(good, 99),
            throughput=(len(good) / duration) if duration > 0 else math.nan,
            error_kinds=kinds,
        ))
    return out


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v * 1000:.1f}"


def table(summaries: Sequence[PhaseSummary]) -> str:
    """A fixed-width text table: phase, count, errors, p50/p90/p99 (ms), ops/s."""
    width = max([22] + [len(s.phase) + 1 for s in summaries])
    head = f"{'phase':<{width}}{'count':>8}{'errors':>8}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'ok/s':>9}"
    lines = [head, "-" * len(head)]
    for s in summaries:
        lines.append(f"{s.phase:<{width}}{s.count:>8}{s.errors:>8}{_ms(s.p50):>10}{_ms(s.p90):>10}"
                     f"{_ms(s.p99):>10}{s.throughput:>9.1f}")
    errors = {k: v for s in summaries for k, v in s.error_kinds.items()}
    if errors:
        lines.append("errors: " + ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())))
    return "\n".join(lines)
