"""deploy/rediscluster.py: config files and process specs (no process started),
and permalinkd's options from the shipped cluster file."""
from __future__ import annotations

import dataclasses
import os
import shutil
import stat

import pytest
from twisted.python import usage

from deploy import rediscluster
from deploy.clusterspec import load_cluster
from permalinkd.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def conf(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_process_specs_write_configs(tmp_path):
    specs = rediscluster.process_specs(str(tmp_path), master_name="m", primary=7001, replicas=[7002, 7003],
                                       sentinels=[27001, 27002, 27003], password="pw")
    assert [s.name for s in specs] == ["redis-primary", "redis-replica1", "redis-replica2",
                                       "redis-sentinel1", "redis-sentinel2", "redis-sentinel3"]
    assert os.path.isabs(specs[0].argv[0]) and specs[0].argv[0].endswith("redis-server")
    assert specs[0].argv[1:] == (str(tmp_path / "redis-primary.conf"),)
    assert specs[3].argv[-1] == "--sentinel"
    primary = conf(tmp_path / "redis-primary.conf")
    for line in ["port 7001", "bind 127.0.0.1", "daemonize no", "appendonly yes", "appendfsync everysec",
                 "requirepass pw", "masterauth pw", "min-replicas-to-write 1"]:
        assert line in primary
    assert not any(line.startswith("replicaof") for line in primary)
    assert "replicaof 127.0.0.1 7001" in conf(tmp_path / "redis-replica2.conf")
    sentinel = conf(tmp_path / "redis-sentinel2.conf")
    for line in ["port 27002", "sentinel monitor m 127.0.0.1 7001 2", "sentinel auth-pass m pw",
                 "requirepass pw", "sentinel down-after-milliseconds m 1000"]:
        assert line in sentinel
    # Secrets inside: owner-only.
    assert stat.S_IMODE(os.stat(tmp_path / "redis-sentinel2.conf").st_mode) == 0o600


def test_configs_rewritten_by_sentinel_are_kept(tmp_path):
    kw = dict(master_name="m", primary=7001, replicas=[7002], sentinels=[27001], password="pw")
    rediscluster.process_specs(str(tmp_path), **kw)
    path = tmp_path / "redis-primary.conf"
    path.write_text(path.read_text() + "replicaof 127.0.0.1 7002\n")  # what Sentinel does after a failover
    rediscluster.process_specs(str(tmp_path), **kw)
    assert "replicaof 127.0.0.1 7002" in conf(path)
    # Another topology: rewritten.
    rediscluster.process_specs(str(tmp_path), **{**kw, "primary": 7101})
    assert "port 7101" in conf(path) and "replicaof 127.0.0.1 7002" not in conf(path)


@pytest.mark.parametrize("bad", ["", "has space", 'quo"te'])
def test_password_must_be_usable_in_a_config(tmp_path, bad):
    with pytest.raises(ValueError):
        rediscluster.process_specs(str(tmp_path), master_name="m", primary=1, replicas=[], sentinels=[],
                                   password=bad)


def test_cluster_process_specs_from_the_shipped_cluster_file(tmp_path):
    spec = load_cluster(os.path.join(ROOT, "deploy", "cluster.toml"), ROOT, "/venv/bin")
    pwfile = tmp_path / "secrets" / "redis-password"
    pwfile.parent.mkdir()
    pwfile.write_text("s3cret\n")
    spec = dataclasses.replace(spec, var=str(tmp_path / "var"),
                               redis=dataclasses.replace(spec.redis, password_file=str(pwfile)))
    specs = rediscluster.cluster_process_specs(spec)
    assert len(specs) == 6 and {s.kind for s in specs} == {"redis", "sentinel"}
    directory = tmp_path / "var" / "redis"
    assert "port 6391" in conf(directory / "redis-primary.conf")
    assert "requirepass s3cret" in conf(directory / "redis-replica1.conf")
    assert "sentinel monitor cellstack 127.0.0.1 6391 2" in conf(directory / "redis-sentinel3.conf")


def test_options_from_the_shipped_cluster_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("var/secrets")
    with open("var/secrets/redis-password", "w") as f:
        f.write("pw123\n")
    shutil.copy(os.path.join(ROOT, "deploy", "cluster.toml"), "cluster.toml")
    o = Options()
    o.parseOptions(["--config", "cluster.toml", "--node", "p2"])
    s = o.settings
    assert s.node == "p2" and s.listen == ("tcp:8202:interface=127.0.0.1",)
    assert s.sentinels == (("127.0.0.1", 26391), ("127.0.0.1", 26392), ("127.0.0.1", 26393))
    assert s.master_name == "cellstack" and s.password == "pw123" and s.redis is None
    assert s.wait_replicas == 1 and s.request_log == "var/log/permalink-requests.jsonl"
    assert len(s.trusted_proxies) == 1


@pytest.mark.parametrize("argv,msg", [
    (["--redis", "nohost"], "host:port"),
    (["--redis", "h:99999"], "out of range"),
    (["--redis", "h:1", "--sentinels", "h:2"], "either"),
    (["--redis-password-file", "/nonexistent/pw"], "redis-password-file"),
    (["--wait-timeout", "0"], "wait-timeout"),
    (["--languages", ","], "at least one"),
    (["--listen", "nonsense:1"], "endpoint"),
    (["--trusted-proxies", "not-an-ip"], "trusted-proxies"),
])
def test_bad_options_are_usage_errors(argv, msg):
    with pytest.raises(usage.UsageError, match=msg):
        Options().parseOptions(argv)


def test_single_redis_defaults():
    o = Options()
    o.parseOptions([])
    assert o.settings.redis == ("127.0.0.1", 6379) and o.settings.wait_replicas == 0
    o = Options()
    o.parseOptions(["--redis", "127.0.0.1:7000", "--replicas", "127.0.0.1:7001", "--redis-password", "x"])
    assert o.settings.wait_replicas == 1 and o.settings.replicas == (("127.0.0.1", 7001),)


def test_silent_http_connections_are_closed_after_the_idle_timeout():
    """Twisted's Site keeps a silent connection 12 hours by default."""
    from twisted.internet.testing import MemoryReactorClock

    from permalinkd.tap import makeService
    o = Options()
    o.parseOptions([])
    assert o.settings.http_idle_timeout == 75.0
    o = Options()
    o.parseOptions(["--http-idle-timeout", "5"])
    top = makeService(o, reactor=MemoryReactorClock())
    sites = [s.factory for s in top if hasattr(s, "factory")]
    assert sites and all(site.timeOut == 5 for site in sites)
