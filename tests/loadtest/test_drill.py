"""How the failover drill sorts failed sessions (loadtest.drill.classify):
pure, on hand-made timelines."""
from __future__ import annotations

from loadtest.drill import classify

TIMELINE = [
    {"node": "c1", "pool": "cells", "kill_at": 3.0, "detected_at": 3.2, "back_at": 9.0},
    {"node": "c2", "pool": "cells", "kill_at": 11.0, "detected_at": 12.9, "back_at": 14.5},
    {"node": "p1", "pool": "permalinks", "kill_at": 19.0, "detected_at": 19.1, "back_at": 23.0},
]


def s(start, node, phase, at, error="websocket closed 1006: connection was closed uncleanly"):
    return {"start": start, "node": node, "kernel": node and f"{node}-{'0' * 32}", "failed_phase": phase,
            "failed_at": at, "error": error}


def test_sessions_on_the_killed_server_are_broken_with_their_reason():
    out = classify([s(2.0, "c1", "later computation", 3.05), s(2.9, "c1", "first computation", 3.1),
                    s(1.0, "c2", "", None)], TIMELINE)
    assert [x["fault"] for x in out["broken"]] == ["c1", "c1"]
    assert all(x["error"].startswith("websocket closed 1006") for x in out["broken"])
    assert not out["new_failed"] and not out["broken_elsewhere"]


def test_a_start_in_flight_before_detection_is_expected():
    out = classify([s(3.1, None, "kernel start", 3.15, "HTTP 502 backend_failed")], TIMELINE)
    assert len(out["in_flight"]) == 1 and not out["new_failed"]


def test_after_detection_a_failure_before_the_first_result_is_a_failed_new_session():
    out = classify([s(3.5, "c1", "first computation", 3.6), s(3.5, None, "kernel start", 3.6, "HTTP 503 x")],
                   TIMELINE)
    assert len(out["new_failed"]) == 2 and not out["broken"]


def test_a_session_on_the_other_server_failing_later_is_broken_elsewhere():
    out = classify([s(2.0, "c2", "later computation", 3.1), s(18.0, "c1", "later computation", 19.5)], TIMELINE)
    assert len(out["broken_elsewhere"]) == 2


def test_rate_limits_are_apart_and_failures_before_any_fault_count():
    out = classify([s(0.5, None, "kernel start", 0.6, "429 rate limited"), s(0.5, None, "kernel start", 0.7,
                                                                           "HTTP 503 no_capacity")], TIMELINE)
    assert len(out["rate_limited"]) == 1 and len(out["new_failed"]) == 1
