"""``python -m loadtest.edge_bench`` in a tiny configuration: it starts its
backends, HAProxy and the edge, measures, prints both tables and leaves no
process behind.  Sanity only (every row there, requests served, no
failures after detection), not the timing targets: the machine is shared."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from loadtest.edge_bench import TARGETS, parse_ab, parse_wrk
from tests.support.procs import ROOT

pytestmark = pytest.mark.integration

WRK = """Running 1s test @ http://127.0.0.1:1/
  1 threads and 50 connections
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.50ms
     99%    2.25ms
  12345 requests in 1.00s, 1.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  12340.50
"""


def test_open_loop_schedule_and_summary():
    from loadtest.openloop import due_times, summary

    assert due_times(10.0, 4, 1.0) == [10.0, 10.25, 10.5, 10.75]      # due at the rate, whatever answers do
    s = summary([i / 1000 for i in range(1, 1001)], sent=1002, errors=2)   # 1..1000 ms
    assert (s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms) == (500, 990, 999, 1000) and s.errors == 2


def test_parsers():
    assert parse_wrk(WRK) == (12340.5, 0.812, 2.25, 12345, 7)
    out = "Complete requests:      300\nFailed requests:        0\nRequests per second:    999.10 [#/sec] (mean)\n"
    csv = "Percentage served,Time in ms\n" + "".join(f"{i},{i / 100:.3f}\n" for i in range(101))
    assert parse_ab(out, csv) == (999.1, 0.5, 0.99, 300, 0)


@pytest.mark.skipif(not shutil.which("haproxy") or not shutil.which("ab"), reason="needs haproxy and ab")
def test_tiny_run_prints_both_tables(tmp_path):
    out_json = tmp_path / "edge.json"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest.edge_bench", "--tool", "ab", "--requests", "300", "--connections", "10",
         "--rounds", "1", "--warmup", "0", "--failover-rounds", "1", "--rate", "100", "--after", "0.5",
         "--latency-rounds", "1", "--latency-seconds", "1", "--latency-rate", "100",
         "--json", str(out_json)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for target in TARGETS:
        row = re.search(rf"^{re.escape(target)}\s+(\d+)\s", text, re.M)
        assert row and int(row.group(1)) > 0, text
    assert re.search(r"^SIGKILL f1\s+\d", text, re.M) and re.search(r"^SIGSTOP f2\s+\d", text, re.M), text
    result = json.loads(out_json.read_text())
    for target in TARGETS:
        r = result["bench"][target]
        assert r["rps"] > 0 and r["errors"] == 0 and r["requests"] >= 300 and 0 < r["p50_ms"] <= r["p99_ms"], r
    assert result["bench"]["edge"]["vs_haproxy"] > 0
    assert "latency below saturation" in text
    for target in TARGETS:
        r = result["latency"][target]
        assert r["sent"] == 100 and r["errors"] == 0 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], r
    for event in result["failover"]:
        assert 0 < event["detect_s"] < 15 and event["sent_after"] > 0 and event["failed_after"] == 0, event
    # Everything it started (backends, restarted ones, haproxy, both edges) is gone.
    assert len(result["pids"]) >= 8
    assert not [pid for pid in result["pids"] if os.path.exists(f"/proc/{pid}")], result["pids"]


def test_edge_cpu_bench_proxies_real_exchanges_in_memory():
    from loadtest import edge_cpu

    _, _, front, conn = edge_cpu.setup(secure=True)
    front.dataReceived(edge_cpu.REQUEST)
    assert conn.transport.last.startswith(b"GET / HTTP/1.1\r\n") and b"x-forwarded-for: 127.0.0.1" in conn.transport.last
    conn.dataReceived(edge_cpu.RESPONSE)
    out = front.transport.last
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"strict-transport-security" in out and out.endswith(b"Site\n")
    assert front.state == "head" and conn.mode == "idle"      # ready for the next request on both connections
    assert edge_cpu.run(300) > 0
