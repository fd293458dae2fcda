"""Failover drill for permalinkd on a real replicated Redis (prints a table).

Starts, on 127.0.0.1 free ports: Redis primary + 2 replicas + 3 Sentinels
(configs from deploy/rediscluster.py, the shipped quick Sentinel timings)
and one ``twistd permalinkd`` following them.  Each round: writers POST new
permalinks continuously; the current primary gets ``kill -9``; we measure
the time from the kill to the first acknowledged write, count the 503s in
between, check that every acknowledged permalink is on the new primary
(lost = acknowledged but missing), then restart the killed server and wait
until it is a replica again.  Everything started is killed by PID at the end.

    python -m loadtest.permalink_failover [--rounds 3] [--writers 4]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlencode

from deploy import rediscluster

PASSWORD = "bench-password-0c1d"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Cluster:
    directory: str
    primary: int
    replicas: list[int]
    sentinels: list[int]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list = field(default_factory=list)
    master_name: str = "cellstack"

    @classmethod
    def start(cls) -> "Cluster":
        ports = free_ports(6)
        c = cls(tempfile.mkdtemp(prefix="permalink-bench-"), ports[0], ports[1:3], ports[3:6])
        c.specs = {s.name: s for s in rediscluster.process_specs(
            c.directory, master_name=c.master_name, primary=c.primary, replicas=c.replicas,
            sentinels=c.sentinels, password=PASSWORD)}
        for name in c.specs:
            c.run(name)
        rediscluster.wait_ready(timeout=30, primary=c.primary, replicas=c.replicas, sentinels=c.sentinels,
                                master_name=c.master_name, password=PASSWORD)
        with open(os.path.join(c.directory, "password"), "w") as f:
            f.write(PASSWORD + "\n")
        return c

    def run(self, name: str, argv=None) -> subprocess.Popen:
        log = open(os.path.join(self.directory, f"{name}.log"), "ab")
        env = dict(os.environ, PYTHONPATH=ROOT)
        p = subprocess.Popen(list(argv or self.specs[name].argv), stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT, env=env)
        log.close()
        self.procs[name] = p
        return p

    def permalinkd(self, name: str, extra=()) -> str:
        (port,) = free_ports(1)
        self.run(name, [os.path.join(VENV_BIN, "twistd"), "-n", "--pidfile=", "permalinkd",
                        "--listen", f"tcp:{port}:interface=127.0.0.1", "--node", name,
                        "--sentinels", ",".join(f"127.0.0.1:{p}" for p in self.sentinels),
                        "--master-name", self.master_name,
                        "--redis-password-file", os.path.join(self.directory, "password"), *extra])
        base = f"http://127.0.0.1:{port}"
        wait(lambda: _ok(base + "/healthz"), 20, f"{name} healthy")
        return base

    def kill(self, name: str) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)

    def name_of(self, port: int) -> str:
        return {self.primary: "redis-primary", self.replicas[0]: "redis-replica1",
                self.replicas[1]: "redis-replica2"}[port]

    def current_primary(self) -> int:
        return rediscluster.sentinel_primary(self.sentinels, self.master_name, PASSWORD)[1]

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.directory, ignore_errors=True)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


# --- a minimal keep-alive HTTP/1.1 client (asyncio), shared with the benchmark ---

class Conn:
    def __init__(self, host: str, port: int, tls=None):
        self.host, self.port, self.tls = host, port, tls      # tls: an ssl.SSLContext, or None
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
        try:
            self.writer.write(head.encode() + b"\r\n" + body)
            status_line = await self.reader.readline()
            length, close = 0, False
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"connection" and v.strip().lower() == b"close":
                    close = True
            data = await self.reader.readexactly(length) if length else b""
            if close or not status_line:
                self.close()
            return int(status_line.split()[1]), data
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            self.close()
            return 0, b""

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Round:
    first_write_s: float
    acked: int
    lost: int
    refused: int
    rejoined_s: float


async def failover_round(cluster: Cluster, base: str, writers: int, tag: str) -> Round:
    host, port = base.split("//")[1].split(":")
    acked: set[str] = set()
    refused = 0
    killed_at = first = None
    stop = asyncio.Event()
    counter = iter(range(10**9))
    old_port = cluster.current_primary()
    import json

    async def writer():
        nonlocal refused, first
        conn = Conn(host, int(port))
        while not stop.is_set():
            body = urlencode({"code": f"failover {tag} {next(counter)}"}).encode()
            sent = time.monotonic()
            status, data = await conn.request("POST", "/permalink", body)
            now = time.monotonic()
            if status == 200:
                acked.add(json.loads(data)["query"])
                # Only a write sent after the kill shows that writes resumed.
                if killed_at is not None and sent > killed_at and first is None:
                    first = now - killed_at
            else:
                refused += 1
                await asyncio.sleep(0.01)
        conn.close()

    tasks = [asyncio.ensure_future(writer()) for _ in range(writers)]
    await asyncio.sleep(1.0)
    cluster.kill(cluster.name_of(old_port))
    killed_at = time.monotonic()
    deadline = killed_at + 30
    while first is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    wait(lambda: cluster.current_primary() != old_port, 30, "Sentinel to name a new primary")
    new_port = cluster.current_primary()
    lost = sum(1 for pid in acked
               if rediscluster.command(new_port, "EXISTS", "permalink:" + pid, password=PASSWORD) != 1)
    t0 = time.monotonic()
    cluster.run(cluster.name_of(old_port))
    wait(lambda: rediscluster.info(old_port, "replication", PASSWORD).get("master_link_status") == "up",
         60, "old primary rejoins")
    rediscluster.wait_ready(timeout=30, primary=new_port,
                            replicas=[p for p in [cluster.primary, *cluster.replicas] if p != new_port],
                            sentinels=cluster.sentinels, master_name=cluster.master_name, password=PASSWORD)
    return Round(first if first is not None else float("nan"), len(acked), lost, refused, time.monotonic() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args(argv)
    cluster = Cluster.start()
    try:
        base = cluster.permalinkd("p1")
        rows = []
        for r in range(args.rounds):
            rows.append(asyncio.run(failover_round(cluster, base, args.writers, f"r{r}")))
        print(f"\npermalinkd failover drill: {args.rounds} rounds, {args.writers} writers, kill -9 of the primary")
        print(f"{'round':>5} {'first write after kill (s)':>27} {'acked':>7} {'lost':>5} {'503s':>6} "
              f"{'old primary back as replica (s)':>32}")
        for i, row in enumerate(rows):
            print(f"{i + 1:>5} {row.first_write_s:>27.2f} {row.acked:>7} {row.lost:>5} {row.refused:>6} "
                  f"{row.rejoined_s:>32.2f}")
        print("targets: first write <= 3 s, lost = 0")
        return 0 if all(r.lost == 0 for r in rows) else 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
