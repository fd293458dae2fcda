"""Redis primary, replicas and Sentinels on one machine: config files and
the processes to run (``ProcessSpec``), for ``deploy/cluster`` and tests.

Nothing here starts a process: the cluster supervisor (or a test's
``Children``) runs the returned argv in the foreground (``daemonize no``)
and restarts it when it dies.  Configs come from ``deploy/redis/*.tmpl``:
AOF with ``appendfsync everysec``, ``requirepass``/``masterauth`` from the
password file, ``min-replicas-to-write 1``; Sentinels with quick timings
(``down-after-milliseconds`` 1000 by default) and ``auth-pass``.

A config file is only (re)written when missing or made for another
topology: Sentinel rewrites ``replicaof`` and its own file after a failover,
and a restarted server must come back with what Sentinel decided.

API:
- ``cluster_process_specs(spec)`` for a ``deploy.clusterspec.ClusterSpec``
  (state under ``spec.var/redis``);
- ``process_specs(directory, master_name=, primary=, replicas=, sentinels=,
  password=)`` the same for any directory and ports (tests);
- ``command(port, *args, password=)`` a tiny blocking RESP client;
  ``topology_ready(...)``, ``wait_ready(...)``, ``sentinel_primary(...)``,
  ``wait_cluster_ready(...)`` (whichever server Sentinel made primary).
"""
from __future__ import annotations

import os
import shutil
import socket
import string
import time
from typing import Sequence

from deploy.clusterspec import ClusterSpec, ProcessSpec

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "redis")
HOST = "127.0.0.1"


def _render(name: str, **values) -> str:
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
        return string.Template(f.read()).substitute(**values)


def _write_if_changed(path: str, text: str, marker: str) -> None:
    """Write ``text`` unless the file exists and was made for the same topology."""
    try:
        with open(path, encoding="utf-8") as f:
            if f"topology: {marker}\n" in f.read():
                return
    except OSError:
        pass
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def process_specs(directory: str, *, master_name: str, primary: int, replicas: Sequence[int],
                  sentinels: Sequence[int], password: str, redis_server: str | None = None,
                  down_after_ms: int = 1000, failover_timeout_ms: int = 5000,
                  quorum: int | None = None, restart_delay: float = 0.0) -> list[ProcessSpec]:
    """Write configs under ``directory`` and return primary, replicas, Sentinels (in start order)."""
    if not password or any(c.isspace() or c in "\"'" for c in password):
        raise ValueError("the Redis password must be non-empty, without spaces or quotes")
    marker = f"{master_name} primary={primary} replicas={','.join(map(str, replicas))} " \
             f"sentinels={','.join(map(str, sentinels))}"
    quorum = quorum or (len(sentinels) // 2 + 1)
    # An absolute path: the supervisor (ProcessMonitor / spawnProcess) does not search PATH.
    redis_server = redis_server or shutil.which("redis-server") or "/usr/bin/redis-server"
    specs = []
    servers = [("redis-primary", primary, None)] + [(f"redis-replica{i + 1}", p, primary)
                                                     for i, p in enumerate(replicas)]
    for name, port, of in servers:
        data = os.path.join(directory, name)
        os.makedirs(data, mode=0o700, exist_ok=True)
        conf = os.path.join(directory, f"{name}.conf")
        _write_if_changed(conf, _render(
            "redis.conf.tmpl", role=name, marker=marker, port=port, host=HOST, dir=data, password=password,
            replicaof=f"replicaof {HOST} {of}" if of else ""), marker)
        specs.append(ProcessSpec(name=name, argv=(redis_server, conf), kind="redis", restart_delay=restart_delay))
    for i, port in enumerate(sentinels):
        name = f"redis-sentinel{i + 1}"
        data = os.path.join(directory, name)
        os.makedirs(data, mode=0o700, exist_ok=True)
        conf = os.path.join(directory, f"{name}.conf")
        _write_if_changed(conf, _render(
            "sentinel.conf.tmpl", marker=marker, port=port, host=HOST, dir=data, password=password,
            master_name=master_name, primary=primary, quorum=quorum, down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms), marker)
        specs.append(ProcessSpec(name=name, argv=(redis_server, conf, "--sentinel"), kind="sentinel"))
    return specs


def read_password(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().strip()


def cluster_process_specs(spec: ClusterSpec) -> list[ProcessSpec]:
    """What ``deploy/cluster`` runs for the ``[redis]`` table (configs under ``var/redis``)."""
    r = spec.redis
    if r is None:
        return []
    directory = os.path.join(spec.var, "redis")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return process_specs(directory, master_name=r.master_name, primary=r.primary, replicas=r.replicas,
                         sentinels=r.sentinels, password=read_password(r.password_file),
                         restart_delay=r.restart_delay)


# --- a tiny blocking RESP client, for readiness checks and drills ------------

class RedisReplyError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"bad reply {line!r}")


def command(port: int, *args, password: str | None = None, host: str = HOST, timeout: float = 2.0):
    """Run one command (after AUTH) and return its reply."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        f = s.makefile("rb")
        cmds = ([("AUTH", password)] if password else []) + [args]
        payload = b""
        for cmd in cmds:
            parts = [str(a).encode() for a in cmd]
            payload += b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        s.sendall(payload)
        if password:
            _read_reply(f)
        return _read_reply(f)


def info(port: int, section: str, password: str | None) -> dict[str, str]:
    text = command(port, "INFO", section, password=password)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def sentinel_primary(sentinels: Sequence[int], master_name: str, password: str | None) -> tuple[str, int] | None:
    for port in sentinels:
        try:
            addr = command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name, password=password)
        except (OSError, RedisReplyError):
            continue
        if addr:
            return addr[0], int(addr[1])
    return None


def topology_problem(*, primary: int, replicas: Sequence[int], sentinels: Sequence[int], master_name: str,
                     password: str) -> str | None:
    """None once the primary has every replica online and every Sentinel knows them all; else what is missing."""
    try:
        rep = info(primary, "replication", password)
        if rep.get("role") != "master":
            return f"{primary} has role {rep.get('role')}"
        online = sum(1 for k, v in rep.items() if k.startswith("slave") and "state=online" in v)
        if online < len(replicas):
            return f"{primary} has {online} of {len(replicas)} replicas online"
        for port in sentinels:
            m = command(port, "SENTINEL", "MASTER", master_name, password=password)
            d = dict(zip(m[::2], m[1::2]))
            if int(d.get("port", 0)) != primary or int(d.get("num-slaves", 0)) < len(replicas) \
                    or int(d.get("num-other-sentinels", 0)) < len(sentinels) - 1:
                return (f"Sentinel {port} sees primary {d.get('port')} with {d.get('num-slaves')} replicas "
                        f"and {d.get('num-other-sentinels')} other Sentinels")
        return None
    except (OSError, RedisReplyError, ValueError) as e:
        return f"{type(e).__name__}: {e}"


def topology_ready(**topology) -> bool:
    """True once the primary has every replica online and every Sentinel knows them all."""
    return topology_problem(**topology) is None


def wait_ready(timeout: float = 30.0, interval: float = 0.1, **topology) -> None:
    """Block until ``topology_ready(**topology)`` or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    problem = None
    while time.monotonic() < deadline:
        problem = topology_problem(**topology)
        if problem is None:
            return
        time.sleep(interval)
    raise TimeoutError(f"Redis topology not ready after {timeout}s: {problem}")


def wait_cluster_ready(timeout: float, *, servers: Sequence[int], sentinels: Sequence[int], master_name: str,
                       password: str, interval: float = 0.1) -> int:
    """Block until the server Sentinel names primary (one of ``servers``) has
    every other one as an online replica and every Sentinel knows them all;
    return that primary's port, or raise ``TimeoutError``.

    Unlike ``wait_ready`` it does not insist on the configured primary: after
    a failover Sentinel rewrote the configs, and the old primary restarts as
    a replica of the one it elected."""
    deadline = time.monotonic() + timeout
    problem = "no Sentinel answered"
    while time.monotonic() < deadline:
        addr = sentinel_primary(sentinels, master_name, password)
        if addr is None:
            problem = "no Sentinel answered"
        elif addr[1] not in servers:
            problem = f"Sentinels name {addr[0]}:{addr[1]} primary, not one of {list(servers)}"
        else:
            problem = topology_problem(primary=addr[1], replicas=[p for p in servers if p != addr[1]],
                                       sentinels=sentinels, master_name=master_name, password=password)
            if problem is None:
                return addr[1]
        time.sleep(interval)
    raise TimeoutError(f"Redis topology not ready after {timeout:.0f}s: {problem}")
