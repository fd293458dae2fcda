"""How the failover drill sorts failed sessions (loadtest.drill.classify):
pure, on hand-made timelines; and that a drill that cannot go on stops the
load tester it started (real processes)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from loadtest.drill import classify
from tests.support.ports import free_ports
from tests.support.procs import ROOT

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


# A SIGSTOPped server (c2, 11.0 -> back 14.5) answers nothing meanwhile: a session
# there fails only by its operation timeout, after the permalinkd kill (19.0).
TIMEOUT = 30.0


def test_a_session_on_the_stopped_server_failing_by_its_timeout_is_broken_there():
    late = 11.5 + TIMEOUT
    out = classify([s(5.0, "c2", "later computation", late, "no answer within 30 s"),
                    s(6.0, "c2", "first computation", 25.0, "no answer within 30 s")], TIMELINE)
    assert [(x["fault"], x["failed_at"]) for x in out["broken"]] == [("c2", late), ("c2", 25.0)]
    assert not out["new_failed"] and not out["broken_elsewhere"]


def test_a_kernel_start_in_flight_to_the_stopped_server_is_in_flight_after_later_faults():
    out = classify([s(12.0, None, "kernel start", 12.0 + TIMEOUT, "no answer within 30 s")], TIMELINE)
    assert [x["fault"] for x in out["in_flight"]] == ["c2"] and not out["new_failed"]


def test_a_session_on_the_killed_server_failing_after_the_next_fault_is_still_broken_there():
    """Filed by its own server's fault, not the latest one (c2's stop at 11.0)."""
    out = classify([s(2.0, "c1", "later computation", 12.0)], TIMELINE)
    assert [x["fault"] for x in out["broken"]] == ["c1"] and not out["broken_elsewhere"]


def test_outside_its_servers_fault_window_a_failure_counts_against_the_target():
    """After the stopped server was back plus one timeout, or started after the edge
    knew, a failure is not explained by that fault."""
    out = classify([s(5.0, "c2", "later computation", 14.5 + TIMEOUT + 0.1),
                    s(13.5, "c2", "first computation", 20.0)], TIMELINE)
    assert len(out["broken_elsewhere"]) == 1 and len(out["new_failed"]) == 1 and not out["broken"]


def test_the_window_is_the_load_testers_timeout():
    """The drill runs the load tester with --timeout SESSION_TIMEOUT: the window above assumes it."""
    from loadtest.drill import SESSION_TIMEOUT

    assert SESSION_TIMEOUT == TIMEOUT


def test_a_node_never_back_keeps_its_window_open():
    never = [dict(TIMELINE[0], back_at=None)]
    out = classify([s(2.0, "c1", "later computation", 500.0)], never)
    assert [x["fault"] for x in out["broken"]] == ["c1"]


@pytest.mark.integration
def test_a_drill_that_cannot_go_on_says_why_and_stops_the_load_tester(tmp_path):
    """No cluster runs (no status.json): the drill exits 1 saying so, and the
    session load tester it started is gone (it carries the drill's environment)."""
    from certs import devca

    var = tmp_path / "var"
    devca.main(["--dir", str(var / "certs"), "--quiet"])
    (var / "secrets").mkdir()
    (var / "secrets" / "redis-password").write_text("x\n")
    edge, redis, sentinel = free_ports(3)
    (tmp_path / "c.toml").write_text(f"""
[cluster]
var = "{var}"
url = "https://localhost:{edge}/"
[redis]
primary = {redis}
sentinels = [{sentinel}]
password-file = "{var}/secrets/redis-password"
[permalinkd.nodes.p1]
[cellserver.nodes.c1]
[edgeproxy.nodes.e1]
listen = ["tcp:{edge}:interface=127.0.0.1"]
""")
    mark = f"drill-test-{uuid.uuid4().hex}"
    r = subprocess.run([sys.executable, "-m", "loadtest.drill", "--config", str(tmp_path / "c.toml"),
                        "--users", "1", "--step", "5"], capture_output=True, text=True, timeout=60,
                       cwd=str(ROOT), env={**os.environ, "DRILL_TEST_MARK": mark})
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"DRILL_TEST_MARK={mark}".encode() in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                left.append(pid)
        except OSError:
            pass
    for pid in left:        # so a failure does not leave it running either
        os.kill(int(pid), signal.SIGKILL)
    assert not left, "the session load tester was left running"
    assert r.returncode == 1 and "drill: no pid for c1" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_a_permalink_the_edge_would_not_read_back_is_unverified_not_lost():
    from types import SimpleNamespace

    from loadtest.drill import PermalinkWriter
    answers = {"kept": (200, ["code kept"]), "changed": (200, ["other"]), "gone": (404, None),
               "limited": (429, None), "down": (0, None)}
    cluster = SimpleNamespace(base="https://127.0.0.1:8443/", get=lambda path: answers[path.split("=", 1)[1]])
    writer = PermalinkWriter(cluster)
    writer.acked = {"kept": "code kept", "changed": "code", "gone": "code", "limited": "code", "down": "code"}
    lost, unread = writer.lost()
    assert lost == ["changed", "gone"] and unread == [("limited", 429), ("down", 0)]
