"""permalinkd on a real replicated Redis: primary + 2 replicas + 3 Sentinels
(deploy/rediscluster.py configs), twistd permalinkd processes, real HTTP.

Includes the failover drill of issue 4: kill -9 the primary while writing
and reading; every acknowledged write must be readable afterwards, reads go
on from the replicas, writes resume; the old primary rejoins as a replica.
And: killing one of two permalinkd leaves the other serving.
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from deploy import rediscluster
from tests.permalinkd.conftest import PASSWORD
from tests.support.ports import free_port
from tests.support.procs import http_ok, wait_until

pytestmark = pytest.mark.integration


def http(method, url, data=None, headers=None, timeout=5.0):
    body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start_permalinkd(children, topo, password_file, name="p1", extra=()):
    port = free_port()
    log = os.path.join(topo.directory, f"{name}-requests.jsonl")
    child = children.twistd(name, "permalinkd", [
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--node", name,
        "--sentinels", topo.sentinel_arg, "--master-name", topo.master_name,
        "--redis-password-file", password_file, "--request-log", log,
        "--wait-timeout", "500", "--redis-timeout", "1", "--sentinel-refresh", "1", *extra])
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(base + "/healthz"), 20, f"{name} healthy", child=child)
    return child, base, log


def test_create_read_jsonp_cors_and_bad_input_over_http(children, topology, password_file):
    child, base, log = start_permalinkd(children, topology, password_file)
    st, _, body = http("POST", base + "/permalink", {"code": "show(1)", "language": "sage", "n": "2"},
                       headers={"Origin": "https://embed.example"})
    assert st == 200, body
    out = json.loads(body)
    assert out["n"] == 2
    # Replicated: both replicas have it (WAIT 1 confirmed at least one; give the other a moment).
    key = "permalink:" + out["query"]
    wait_until(lambda: all(rediscluster.command(p, "EXISTS", key, password=PASSWORD) == 1
                           for p in topology.replicas), 5, "replicas have the permalink")
    st, headers, body = http("GET", base + "/permalink?" + urllib.parse.urlencode(
        {"q": out["query"], "callback": "cb"}), headers={"Origin": "https://embed.example"})
    assert st == 200 and body == b'/**/cb(["show(1)","sage","[]"]);'
    assert headers["Access-Control-Allow-Origin"] == "https://embed.example"
    # Bad input through the real Site (its request class drops oversized bodies).
    st, _, body = http("POST", base + "/permalink", b"code=" + b"x" * 1_500_000,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 413 and json.loads(body)["error"] == "body-too-large"
    st, _, body = http("POST", base + "/permalink", {"code": "x" * 65_001})
    assert st == 413 and json.loads(body)["error"] == "code-too-long"
    st, _, body = http("POST", base + "/permalink", {"code": "x" * 65_000})
    assert st == 200
    st, _, body = http("GET", base + "/permalink?q=nosuchpermalink")
    assert st == 404
    st, _, body = http("POST", base + "/permalink", b"\x00\xff garbage&&&==",
                       headers={"Content-Type": "multipart/form-data"})
    assert st == 400
    for method, url, data, status, error in [
        ("POST", "/permalink", {"code": "x", "language": "klingon"}, 400, "unknown-language"),
        ("POST", "/permalink", {"code": "x", "interacts": "{nope"}, 400, "bad-interacts"),
        ("POST", "/permalink", {"code": "x", "interacts": "[NaN]"}, 400, "bad-interacts"),
        ("POST", "/permalink", {"code": "x", "interacts": '{"a": -Infinity}'}, 400, "bad-interacts"),
        ("GET", "/permalink?q=../../etc/passwd", None, 400, "bad-id"),
        ("GET", "/permalink?q=" + "a" * 300, None, 400, "bad-id"),
        ("GET", "/permalink?" + urllib.parse.urlencode({"q": out["query"], "callback": "alert(1)//"}), None,
         400, "bad-callback"),
    ]:
        st, headers, body = http(method, base + url, data, headers={"Origin": "https://embed.example"})
        assert (st, json.loads(body)["error"]) == (status, error), body
        assert headers["Content-Type"].startswith("application/json") and json.loads(body)["message"]
        assert headers["Access-Control-Allow-Origin"] == "https://embed.example"
    # CORS preflight, as a browser sends it before a cross-origin form POST.
    st, headers, body = http("OPTIONS", base + "/permalink", headers={
        "Origin": "https://embed.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert st == 204 and body == b""
    assert (headers["Access-Control-Allow-Origin"], headers["Access-Control-Allow-Credentials"],
            headers["Access-Control-Allow-Methods"], headers["Access-Control-Allow-Headers"]) == (
        "https://embed.example", "true", "GET, POST, DELETE, OPTIONS", "content-type")
    # Nothing bad reached Redis: every stored hash has strict-JSON interacts.
    for key in rediscluster.command(topology.primary, "KEYS", "permalink:*", password=PASSWORD):
        interacts = rediscluster.command(topology.primary, "HGET", key, "interacts", password=PASSWORD)
        json.loads(interacts, parse_constant=lambda name: pytest.fail(f"{key} holds {name}"))
    assert child.alive()
    st, _, body = http("GET", base + "/healthz")
    assert json.loads(body)["status"] == "ok" and len(json.loads(body)["replicas"]) == 2
    with open(log) as f:
        lines = [json.loads(line) for line in f]
    # One line per request, health checks included (the first ones: start_permalinkd's wait).
    lines = lines[next(i for i, r in enumerate(lines) if r["route"] != "healthz"):]
    assert [r["status"] for r in lines] == [200, 200, 413, 413, 200, 404, 400] + [400] * 7 + [204, 200]
    assert [r["route"] for r in lines[-2:]] == ["preflight", "healthz"]
    assert lines[1]["id"] == out["query"] and lines[1]["client_ip"] == "127.0.0.1"
    # logrotate: rename, SIGHUP, the next line goes to a new file.
    os.rename(log, log + ".1")
    child.signal(signal.SIGHUP)
    wait_until(lambda: http("GET", base + "/permalink?q=" + out["query"])[0] == 200 and os.path.exists(log),
               5, "request log reopened", child=child)
    assert child.alive()


def test_retried_write_is_not_acknowledged_before_a_replica_has_it(children, topology, password_file):
    """A retry of a cell that is already stored (after a not-replicated 503,
    or a second client posting the same cell) must still wait for the
    earlier write to reach a replica, on whatever pooled connection it goes
    out.  Both replicas are frozen with SIGSTOP: still connected, so the
    primary goes on streaming to them, but nothing is acked.

    Since Redis 7.2 (and in Valkey) ``WAIT`` waits for the offset of the
    connection's last *propagated* command, so a create script that only
    read would be answered at once.  Redis 7.0 (this machine's) still sets
    that offset after every command, so there the 503s hold either way; what
    the fix changes everywhere is that the retry propagates a write, which
    the AOF (fed by the same propagation as the replicas) shows.
    """
    pool = 4
    child, base, _ = start_permalinkd(children, topology, password_file, extra=["--redis-pool", str(pool)])
    # Warm every pooled connection with a replicated write (so each has an offset of its own).
    for n in range(2 * pool):
        assert http("POST", base + "/permalink", {"code": f"warm {n}"})[0] == 200
    # min-replicas-to-write would start refusing writes (NOREPLICAS: a 503 "redis-unavailable",
    # not this test's subject) once the frozen replicas' last ack is min-replicas-max-lag (10 s)
    # old.  Lift the lag so WAIT alone stands between a retry and a 200.
    rediscluster.command(topology.primary, "CONFIG", "SET", "min-replicas-max-lag", "3600", password=PASSWORD)
    frozen = [topology.procs[name] for name in ("redis-replica1", "redis-replica2")]
    cell = {"code": "written while no replica listens"}
    try:
        for c in frozen:
            c.signal(signal.SIGSTOP)
        aof = []
        for attempt in range(1 + pool):    # the first write, then a retry on every pooled connection
            st, _, body = http("POST", base + "/permalink", cell)
            assert (st, json.loads(body)["error"]) == (503, "not-replicated"), (attempt, st, body)
            aof.append(int(rediscluster.info(topology.primary, "persistence", PASSWORD)["aof_current_size"]))
        # Each retry propagated a write (what makes its WAIT cover the first one).
        assert all(a < b for a, b in zip(aof, aof[1:])), aof
        rep = rediscluster.info(topology.primary, "replication", PASSWORD)
        assert sum(1 for k, v in rep.items() if k.startswith("slave") and "state=online" in v) == 2, rep
    finally:
        for c in frozen:
            c.signal(signal.SIGCONT)
    st, _, body = http("POST", base + "/permalink", cell)
    assert st == 200, body
    key = "permalink:" + json.loads(body)["query"]
    assert any(rediscluster.command(p, "EXISTS", key, password=PASSWORD) == 1 for p in topology.replicas)


def test_switch_master_event_alone_moves_permalinkd_to_the_new_primary(children, topology, password_file):
    """Sentinel's +switch-master is what makes permalinkd follow a failover.

    The drill below runs with --sentinel-refresh 1, and a failed write asks
    Sentinel again, so either could be what finds the new primary.  Here the
    periodic refresh is an hour away and nothing is written while the primary
    is down (only writes re-ask), so only the subscription can move it."""
    child, base, _ = start_permalinkd(children, topology, password_file, extra=["--sentinel-refresh", "3600"])
    assert http("POST", base + "/permalink", {"code": "before the failover"})[0] == 200
    old = f"127.0.0.1:{topology.primary}"
    assert json.loads(http("GET", base + "/healthz")[2])["primary"] == old
    topology.procs["redis-primary"].signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: (topology.current_primary() or ("", topology.primary))[1] != topology.primary, 30,
               "Sentinel promotes a replica")
    promoted = time.monotonic()
    new = "127.0.0.1:%d" % topology.current_primary()[1]

    def primary_seen():
        return json.loads(http("GET", base + "/healthz")[2])["primary"]
    # The Sentinels publish +switch-master as they switch; permalinkd hears it at about the
    # moment the test's own query sees the new primary.
    wait_until(lambda: primary_seen() == new, 3, "permalinkd follows +switch-master", child=child)
    followed = time.monotonic()
    assert f"Sentinel: +switch-master to {new}" in child.log(tail=1_000_000)
    # Writes resume once the new primary has a replica in sync (min-replicas-to-write, WAIT 1).
    wait_until(lambda: http("POST", base + "/permalink", {"code": "after the failover"})[0] == 200, 10,
               "writes resume on the new primary", child=child)
    resumed = time.monotonic()
    print(f"\n+switch-master: Sentinel switched {promoted - killed:.2f}s after kill -9; permalinkd followed "
          f"{followed - promoted:.2f}s later; first write {resumed - killed:.2f}s after the kill")


def test_failover_drill_kill_primary(children, topology, password_file):
    # No in-memory cache: every read during the switch really goes to Redis.
    child, base, _ = start_permalinkd(children, topology, password_file, extra=["--cache-size", "0"])
    acked: dict[str, str] = {}
    read_failures, reads, write_errors = [], 0, {}
    killed_at = first_write_after = None
    deadline = time.monotonic() + 40
    i = 0
    while time.monotonic() < deadline:
        i += 1
        code = f"drill {i}"
        st, _, body = http("POST", base + "/permalink", {"code": code})
        now = time.monotonic()
        if st == 200:
            acked[json.loads(body)["query"]] = code
            if killed_at is not None and first_write_after is None:
                first_write_after = now - killed_at
        else:
            err = json.loads(body)["error"]
            write_errors[err] = write_errors.get(err, 0) + 1
            assert st == 503, body
        if acked:
            pid = list(acked)[i % len(acked)]
            st, _, body = http("GET", base + "/permalink?q=" + pid)
            reads += 1
            if st != 200 or json.loads(body)[0] != acked[pid]:
                read_failures.append((st, body[:200]))
        if killed_at is None and len(acked) >= 30:
            topology.procs["redis-primary"].signal(signal.SIGKILL)
            killed_at = time.monotonic()
        if first_write_after is not None and len(acked) >= 30 + 30:
            break
    assert killed_at is not None, "never got 30 writes before the kill"
    assert first_write_after is not None, f"writes never resumed; errors: {write_errors}\n{child.log()}"
    new_primary = topology.current_primary()
    assert new_primary and new_primary[1] != topology.primary
    # Every acknowledged write is on the new primary.
    lost = [pid for pid in acked
            if rediscluster.command(new_primary[1], "EXISTS", "permalink:" + pid, password=PASSWORD) != 1]
    assert lost == [], f"{len(lost)} acknowledged permalinks lost"
    for pid, code in acked.items():
        st, _, body = http("GET", base + "/permalink?q=" + pid)
        assert st == 200 and json.loads(body)[0] == code
    assert read_failures == [], f"{len(read_failures)}/{reads} reads failed during the switch"
    st, _, metrics = http("GET", base + "/metrics")
    replica_reads = [line for line in metrics.decode().splitlines()
                     if line.startswith('permalinkd_reads_total{source="replica"}')]
    assert replica_reads and float(replica_reads[0].split()[-1]) > 0, "no read was served by a replica"
    print(f"\nfailover: first write {first_write_after:.2f}s after kill -9; {len(acked)} acked, 0 lost; "
          f"{reads} reads, 0 failed; write errors while switching: {write_errors}")
    # The old primary comes back as a replica of the new one.
    topology.start("redis-primary")

    def rejoined():
        # ... of the primary the Sentinels name now: on a loaded machine they may
        # have switched once more since new_primary was read (the writes were checked above).
        info = rediscluster.info(topology.primary, "replication", PASSWORD)
        now = topology.current_primary()
        return (info.get("role") == "slave" and info.get("master_link_status") == "up" and bool(now)
                and now[1] != topology.primary and info.get("master_port") == str(now[1]))
    wait_until(rejoined, 30, "old primary rejoins as a replica of the primary the Sentinels name")


def test_killing_one_of_two_permalinkd_leaves_the_other_serving(children, topology, password_file):
    c1, b1, _ = start_permalinkd(children, topology, password_file, "p1")
    c2, b2, _ = start_permalinkd(children, topology, password_file, "p2")
    st, _, body = http("POST", b1 + "/permalink", {"code": "before"})
    pid = json.loads(body)["query"]
    c1.signal(signal.SIGKILL)
    wait_until(lambda: not c1.alive(), 5, "p1 dead")
    assert not http_ok(b1 + "/healthz")
    st, _, body = http("GET", b2 + "/permalink?q=" + pid)
    assert st == 200 and json.loads(body)[0] == "before"
    for n in range(20):
        st, _, body = http("POST", b2 + "/permalink", {"code": f"after {n}"})
        assert st == 200, body
    assert c2.alive()
