"""``deploy/cluster up`` after a Redis failover: Sentinel has rewritten the
configs (the old primary is now a replica), and ``up`` must accept the
primary Sentinel elected instead of waiting for the configured one.  A small
cluster (Redis primary + 2 replicas + 3 Sentinels, one permalinkd) keeps it
to tens of seconds; permalinks written before the failover must still be
readable after down and up."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from deploy import rediscluster
from tests.support.ports import free_ports
from tests.support.procs import ROOT

pytestmark = pytest.mark.integration


def cluster(*args, timeout=120):
    return subprocess.run([str(ROOT / "deploy" / "cluster"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def test_up_again_after_a_failover_keeps_the_elected_primary(tmp_path):
    r0, r1, r2, s0, s1, s2, p1 = free_ports(7)
    var = tmp_path / "var"
    path = tmp_path / "cluster.toml"
    path.write_text(f"""
[cluster]
var = "{var}"
[redis]
master-name = "csfo"
primary = {r0}
replicas = [{r1}, {r2}]
sentinels = [{s0}, {s1}, {s2}]
password-file = "{var}/secrets/redis-password"
[permalinkd]
sentinels = "127.0.0.1:{s0},127.0.0.1:{s1},127.0.0.1:{s2}"
master-name = "csfo"
redis-password-file = "{var}/secrets/redis-password"
[permalinkd.nodes.fp1]
listen = ["tcp:{p1}:interface=127.0.0.1"]
""")
    base = f"http://127.0.0.1:{p1}/"

    def share(code):
        data = urllib.parse.urlencode({"code": code, "language": "python"}).encode()
        with urllib.request.urlopen(urllib.request.Request(base + "permalink", data=data), timeout=10) as r:
            return json.loads(r.read())["query"]

    def read(query):
        with urllib.request.urlopen(base + f"permalink?q={query}", timeout=10) as r:
            return json.loads(r.read())[0]

    up = cluster("up", "--config", str(path), "--timeout", "60")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        before = share("print('before the failover')")
        password = rediscluster.read_password(f"{var}/secrets/redis-password")
        # A Sentinel that has just started may not yet rate the replicas as candidates
        # (it refreshes what it knows of them with INFO every few seconds): NOGOODSLAVE
        # then, once seen in CI right after `up`; ask again, bounded.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert rediscluster.command(s0, "SENTINEL", "FAILOVER", "csfo", password=password) == "OK"
                break
            except rediscluster.RedisReplyError as e:
                if "NOGOODSLAVE" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # bounded: the elected replica has both others attached and every Sentinel agrees
        deadline = time.monotonic() + 30
        new = None
        while time.monotonic() < deadline:
            try:
                new = rediscluster.wait_cluster_ready(1.0, servers=(r0, r1, r2), sentinels=(s0, s1, s2),
                                                      master_name="csfo", password=password)
            except TimeoutError:
                continue
            if new != r0:
                break
        assert new in (r1, r2), f"no failover within 30 s (primary {new})"
        down = cluster("down", "--config", str(path))
        assert down.returncode == 0, down.stdout + down.stderr
        # what made the old `up` time out: the configured primary is now a replica in its config
        assert f"replicaof 127.0.0.1 {new}" in (var / "redis" / "redis-primary.conf").read_text()

        again = cluster("up", "--config", str(path), "--timeout", "60")
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"redis primary {new} with 2 replicas" in again.stdout
        assert read(before) == "print('before the failover')"
        assert read(share("print('after')")) == "print('after')"
    finally:
        down = cluster("down", "--config", str(path))
        assert down.returncode == 0, down.stdout + down.stderr
