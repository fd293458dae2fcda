"""``deploy/cluster up`` / ``down``: the whole cluster (Redis primary + 2
replicas + 3 Sentinels, 2 permalinkd, 2 cell servers, the TLS edge) from one
cluster file, used through the edge like a page would, then stopped with
nothing left behind.  The file is the shipped one with free ports and a
temporary state directory, so it cannot collide with a running dev cluster."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor

from tests.support.ports import free_ports
from tests.support.procs import ROOT, kernel_runtime_dir
from tests.support.wsclient import stdout_of

pytestmark = pytest.mark.integration


def cluster_file(tmp) -> tuple[str, dict]:
    p = dict(zip(["r0", "r1", "r2", "s0", "s1", "s2", "p1", "p2", "c1", "c2", "https", "http"], free_ports(12)))
    var = tmp / "var"
    rt1, rt2 = kernel_runtime_dir("c1"), kernel_runtime_dir("c2")
    text = f"""
[cluster]
var = "{var}"
url = "https://localhost:{p['https']}/"
[redis]
master-name = "cstest"
primary = {p['r0']}
replicas = [{p['r1']}, {p['r2']}]
sentinels = [{p['s0']}, {p['s1']}, {p['s2']}]
password-file = "{var}/secrets/redis-password"
[permalinkd]
sentinels = "127.0.0.1:{p['s0']},127.0.0.1:{p['s1']},127.0.0.1:{p['s2']}"
master-name = "cstest"
redis-password-file = "{var}/secrets/redis-password"
trusted-proxies = "127.0.0.1"
[permalinkd.nodes.tp1]
listen = ["tcp:{p['p1']}:interface=127.0.0.1"]
[permalinkd.nodes.tp2]
listen = ["tcp:{p['p2']}:interface=127.0.0.1"]
[cellserver]
trusted-proxies = "127.0.0.1"
ready-kernels = 1
computation-log = "{var}/log/computations.jsonl"
[cellserver.nodes.tc1]
listen = ["tcp:{p['c1']}:interface=127.0.0.1"]
runtime-dir = "{rt1}"
[cellserver.nodes.tc2]
listen = ["tcp:{p['c2']}:interface=127.0.0.1"]
runtime-dir = "{rt2}"
[edgeproxy]
cells = "tc1=http://127.0.0.1:{p['c1']},tc2=http://127.0.0.1:{p['c2']}"
permalinks = "tp1=http://127.0.0.1:{p['p1']},tp2=http://127.0.0.1:{p['p2']}"
# the drill's load comes from one address: per-IP limits are not what it tests
compute-rate = 1000.0
compute-burst = 1000.0
permalink-rate = 1000.0
permalink-burst = 1000.0
access-log = "{var}/log/access.jsonl"
[edgeproxy.nodes.te1]
listen = ["ssl:{p['https']}:interface=127.0.0.1:privateKey={var}/certs/server.key:certKey={var}/certs/server.crt:extraCertChain={var}/certs/chain.pem"]
http-listen = "tcp:{p['http']}:interface=127.0.0.1"
"""
    path = tmp / "cluster.toml"
    path.write_text(text)
    p["runtime_dirs"] = (rt1, rt2)
    return str(path), p


def cluster(*args, timeout=150):
    return subprocess.run([str(ROOT / "deploy" / "cluster"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cl")
    path, ports = cluster_file(tmp)
    up = cluster("up", "--config", path, "--timeout", "120")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.strip().splitlines()[-1] == f"https://localhost:{ports['https']}/"
        yield {"path": path, "ports": ports, "tmp": tmp, "runtime_dirs": ports["runtime_dirs"],
               "base": f"https://localhost:{ports['https']}/",
               "ca": str(tmp / "var" / "certs" / "ca.pem")}
    finally:
        down = cluster("down", "--config", path)
        print(down.stdout, down.stderr)


def test_through_the_tls_edge_compute_and_share(running):
    ctx = ssl.create_default_context(cafile=running["ca"])

    def post(path, **form):
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(urllib.request.Request(running["base"] + path, data=data), context=ctx,
                                    timeout=30) as r:
            return json.loads(r.read())

    import urllib.parse
    assert post("service", code="print(40+2)")["stdout"] == "42\n"
    made = post("permalink", code="print('hello')", language="python", n="1")
    with urllib.request.urlopen(running["base"] + f"permalink?q={made['query']}", context=ctx, timeout=10) as r:
        assert json.loads(r.read())[:2] == ["print('hello')", "python"]


@pytest_twisted.ensureDeferred
async def test_kernel_and_websocket_through_the_edge(running):
    import treq
    from twisted.internet import ssl as tssl
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
    from tests.edgeproxy.test_edge_integration import _wss

    ca = tssl.Certificate.loadPEM(open(running["ca"], "rb").read())
    client = treq.client.HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=ca)))
    resp = await client.post(running["base"] + "kernel", data={"timeout": "0"})
    info = json.loads(await resp.content())
    assert resp.code == 200, info
    ws = await _wss(info["ws_url"] + f"kernel/{info['id']}/channels", {"ca": running["ca"]})
    assert stdout_of(await ws.run("print('cluster')")) == "cluster\n"


@pytest_twisted.ensureDeferred
async def test_drain_one_cell_server(running):
    """SIGUSR1 drains a cell server: the edge sends it no new kernel (its
    /healthz says accepting: false, still 200), while a kernel it already
    runs keeps computing through the edge; SIGUSR2 undrains it."""
    import signal

    import treq
    from twisted.internet import ssl as tssl
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
    from tests.edgeproxy.test_edge_integration import _wss

    ca = tssl.Certificate.loadPEM(open(running["ca"], "rb").read())
    client = treq.client.HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=ca)))

    async def new_kernel():
        resp = await client.post(running["base"] + "kernel", data={"timeout": "0"})
        info = json.loads(await resp.content())
        assert resp.code == 200, info
        return info

    async def accepting(want):
        for _ in range(100):                      # bounded: 10 s
            with urllib.request.urlopen(f"http://127.0.0.1:{running['ports']['http']}/healthz", timeout=5) as r:
                cell = json.loads(r.read())["cells"]["tc1"]
            if cell["up"] and cell["accepting"] is want:
                return
            await deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"tc1 accepting is not {want} at the edge: {cell}")

    # a kernel tc1 runs (asked of tc1 itself: the edge picks by free kernels, not in turn)
    resp = await treq.post(f"http://127.0.0.1:{running['ports']['c1']}/kernel", data={"timeout": "0"})
    kept = json.loads(await resp.content())
    assert resp.code == 200 and kept["id"].startswith("tc1-"), kept
    made = [kept]
    pid = json.load(open(running["tmp"] / "var" / "run" / "status.json"))["processes"]["tc1"]
    os.kill(pid, signal.SIGUSR1)
    try:
        await accepting(False)
        after = [await new_kernel() for _ in range(6)]
        assert all(k["id"].startswith("tc2-") for k in after), [k["id"] for k in after]
        ws = await _wss(running["base"].replace("https", "wss") + f"kernel/{kept['id']}/channels",
                        {"ca": running["ca"]})
        assert stdout_of(await ws.run("print('still here')")) == "still here\n"
        made += after
    finally:
        os.kill(pid, signal.SIGUSR2)
    await accepting(True)
    for k in made:
        await client.delete(running["base"] + f"kernel/{k['id']}")


def test_short_session_load_through_the_tls_edge(running):
    """The session load tester, short, through the TLS edge: ramp-up, sums,
    the project's @interact moved, every output written; no error at all."""
    import csv
    import subprocess
    import sys

    tmp = running["tmp"]
    files = {k: tmp / f"sessions.{k}" for k in ("csv", "json", "png")}
    r = subprocess.run([sys.executable, "-m", "loadtest.sessions", "--url", running["base"], "--cafile",
                        running["ca"], "--users", "4", "--ramp-up", "3", "--duration", "12",
                        "--computations", "2", "--interact-moves", "3", "--csv", str(files["csv"]),
                        "--json", str(files["json"]), "--plot", str(files["png"])],
                       capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    print(r.stdout[-3000:], r.stderr[-2000:])
    assert r.returncode == 0
    table = r.stdout.splitlines()
    for phase in ("kernel start", "first computation", "new cell to first result", "later computation",
                  "interact update"):
        assert any(line.startswith(phase) for line in table), phase
    assert "errors:" not in r.stdout
    report = json.loads(files["json"].read_text())
    summary = {s["phase"]: s for s in report["summary"]}
    assert all(s["errors"] == 0 for s in summary.values()), summary
    sessions = report["sessions"]
    assert len(sessions) >= 4 and not [s for s in sessions if s["failed_phase"]]
    assert {s["node"] for s in sessions} <= {"tc1", "tc2"}
    # one new-cell-to-first-result sample per session that started
    assert summary["new cell to first result"]["count"] == summary["kernel start"]["count"] == len(sessions)
    assert summary["interact update"]["count"] >= 3 * 4
    rows = list(csv.reader(files["csv"].open()))
    assert rows[0] == ["phase", "start_s", "latency_s", "ok", "error"] and len(rows) == len(report["samples"]) + 1
    png = files["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_short_failover_drill_under_load(running):
    """Kill a cell server, stop the other, kill a permalinkd and the Redis primary,
    all under load: a timeline per fault; broken sessions only on the faulted
    server, each with what it was told; no new session failing once the edge
    has seen the fault; no acknowledged permalink lost; every restarted node
    (cell server, permalinkd, Redis primary) back, the stopped one resumed."""
    import subprocess
    import sys

    out = running["tmp"] / "drill.json"
    r = subprocess.run([sys.executable, "-m", "loadtest.drill", "--config", running["path"], "--users", "6",
                        "--step", "8", "--json", str(out)], capture_output=True, text=True, timeout=400,
                       cwd=str(ROOT))
    print(r.stdout[-4000:], r.stderr[-2000:])
    result = json.loads(out.read_text())
    counts, timeline, failed = result["counts"], result["timeline"], result["failed_sessions"]
    assert counts["permalinks_lost"] == 0 and counts["permalinks_acked"] > 20
    assert counts["new_sessions_failed_after_detection"] == 0, failed["new_failed"]
    assert counts["sessions_broken_elsewhere"] == 0, failed["broken_elsewhere"]
    assert counts["faults"] == 4 and counts["nodes_restarted"] == 3 and counts["nodes_back"] == 3
    assert counts["nodes_resumed"] == 1
    assert counts["sessions"] > 15
    # users hold their kernels (--pause 1 s between sums, the edge balancing 6 of them over 2
    # servers): the SIGKILL breaks some sessions on tc1, each told why
    assert counts["sessions_broken_by_node"]["tc1"] >= 1, failed
    for s in failed["broken"] + failed["in_flight"]:
        assert s["error"] and s["error"] not in ("ConnectionError", "TimeoutError"), s   # told why
    for s in failed["broken"]:
        assert s["node"] == s["fault"] and s["node"] in ("tc1", "tc2"), s
    assert sum(counts["sessions_broken_by_node"].values()) == counts["sessions_broken"]
    assert [(t["node"], t["restarted"]) for t in timeline[:3]] == [("tc1", True), ("tc2", False), ("tp1", True)]
    for t in timeline:
        assert t["kill_at"] < t["detected_at"] < t["back_at"], t
    kill = timeline[0]
    assert kill["detected_at"] - kill["kill_at"] <= 1.0
    stop = timeline[1]
    assert stop["resumed_at"] <= stop["back_at"]
    redis = timeline[3]
    assert redis["pool"] == "redis" and redis["primary_after"] != redis["primary_before"]
    assert redis["detected_at"] - redis["kill_at"] <= 10                  # Sentinel switch
    assert redis["first_write_at"] is not None and redis["first_write_at"] - redis["kill_at"] <= 10
    assert r.returncode == 0


def test_ab_and_httperf_against_the_edge(running):
    """The ab/httperf driver, short: every target answered, split by status from the edge's metrics."""
    import subprocess
    import sys

    out = running["tmp"] / "http_bench.json"
    r = subprocess.run([sys.executable, "-m", "loadtest.http_bench", "--url", running["base"], "--cafile",
                        running["ca"], "--requests", "200", "--concurrency", "10", "--rate", "50",
                        "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    print(r.stdout[-3000:], r.stderr[-2000:])
    assert r.returncode == 0
    results = {(x["target"], x["tool"]): x for x in json.loads(out.read_text())}
    assert set(results) == {("page", "ab"), ("page", "httperf"), ("static", "ab"), ("static", "httperf"),
                            ("service", "ab"), ("permalink-get", "ab"), ("permalink-get", "httperf"),
                            ("permalink-post", "ab")}
    for (target, tool), x in results.items():
        assert x["rps"] > 0 and x["errors"] == 0 and x["ok"] + x["limited"] == x["requests"], x
        if tool == "ab":
            assert x["p50_ms"] is not None and 0 <= x["p50_ms"] <= x["p90_ms"] <= x["p99_ms"], x
    assert results[("static", "ab")]["ok"] == 200 and results[("service", "ab")]["ok"] > 0


def test_capacity_holds_concurrent_sessions_from_distinct_addresses(running):
    """The capacity tool, short: 8 sessions held at once, each still answering, all closed after."""
    import subprocess
    import sys

    out = running["tmp"] / "capacity.json"
    r = subprocess.run([sys.executable, "-m", "loadtest.capacity", "--url", running["base"], "--cafile",
                        running["ca"], "--target", "8", "--step", "4", "--rate", "0", "--keep", "60",
                        "--max-seconds", "120", "--json", str(out)], capture_output=True, text=True, timeout=200,
                       cwd=str(ROOT))
    print(r.stdout[-3000:], r.stderr[-2000:])
    report = json.loads(out.read_text())
    assert r.returncode == 0 and report["max_held"] == 8 and report["failures"] == {}, report
    assert [s["held"] for s in report["steps"]] == [4, 8]


def test_down_leaves_nothing_behind(running):
    down = cluster("down", "--config", running["path"])
    assert down.returncode == 0 and "cluster: stopped" in down.stdout, down.stdout + down.stderr
    marker = f"CELLSTACK_CLUSTER={running['tmp'] / 'var'}".encode()
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
                left.append(pid)
        except OSError:
            pass
    assert not left
    import glob
    for rt in running["runtime_dirs"]:
        # the cell servers' runtime directories (sockets, kernels' work and IPython dirs) are gone
        assert not os.path.exists(rt), (rt, glob.glob(os.path.join(rt, "*")))
    assert not (running["tmp"] / "var" / "run" / "supervisor.pid").exists()
    assert not (running["tmp"] / "var" / "run" / "status.json").exists()
    assert not glob.glob(str(running["tmp"] / "var" / "run" / "*")), "sockets or pid files left in var/run"

