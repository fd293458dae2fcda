"""permalinkd throughput and failover figures on this machine (prints a table).

One run, everything on 127.0.0.1 (shares the cores with the load client):
Redis primary + 2 replicas + 3 Sentinels, one ``twistd permalinkd``
following them, and for comparison a bare Twisted ``Site`` answering a
constant.  A single-process asyncio client with ``--connections`` keep-alive
connections measures, each for ``--seconds``:

* GET of a constant from the bare Site (the baseline);
* GET /permalink?q= of existing permalinks (cycling over ``--ids``), once
  with the default in-memory cache (permalinks never change) and once from
  a second permalinkd with ``--cache-size 0`` (every read goes to Redis);
* POST /permalink of new cells (every write waits for ``WAIT 1``);

then one failover round (``loadtest.permalink_failover``): time from
``kill -9`` of the primary to the first acknowledged write, and
acknowledged writes lost.  Targets from issue 4: GET >= 0.5x bare Site,
POST >= 1,500/s, first write <= 3 s, 0 lost.

    python -m loadtest.permalink_bench [--seconds 5] [--connections 16]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlencode

from loadtest.permalink_failover import VENV_BIN, Cluster, Conn, failover_round, free_ports, wait, _ok
from loadtest.procstat import cpu_seconds
from loadtest.stats import percentile

CONSTANT_SITE = """
import sys
from twisted.internet import reactor
from twisted.web import resource, server
class Constant(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return b'["print(1)","sage","[]"]'
reactor.listenTCP(int(sys.argv[1]), server.Site(Constant()), interface="127.0.0.1")
reactor.run()
"""


async def load(port: int, seconds: float, connections: int, make_request) -> tuple[int, int, list[float]]:
    """(ok, failed, latencies) of ``connections`` loops for ``seconds``."""
    ok = failed = 0
    latencies: list[float] = []
    end = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def loop():
        nonlocal ok, failed
        conn = Conn("127.0.0.1", port)
        while time.monotonic() < end:
            method, path, body = make_request(next(counter))
            t0 = time.perf_counter()
            status, _ = await conn.request(method, path, body)
            latencies.append(time.perf_counter() - t0)
            if status == 200:
                ok += 1
            else:
                failed += 1
        conn.close()

    await asyncio.gather(*[loop() for _ in range(connections)])
    return ok, failed, latencies


def row(name: str, seconds: float, result, cpu: float, target: str = "") -> tuple[str, float, float]:
    """The table line, req/s and requests per server CPU-second of one phase."""
    ok, failed, lat = result
    lat.sort()
    rate, per_cpu = ok / seconds, ok / max(cpu, 1e-9)
    return (f"{name:<38} {rate:>9.0f} {failed:>6} {percentile(lat, 50) * 1000:>8.2f} "
            f"{percentile(lat, 99) * 1000:>8.2f} {100 * cpu / seconds:>6.0f}% {per_cpu:>9.0f}  {target}"), rate, per_cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--ids", type=int, default=500)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    cluster = Cluster.start()
    try:
        base = cluster.permalinkd("p1")
        pl_port = int(base.rsplit(":", 1)[1])
        nocache_port = int(cluster.permalinkd("p2", ["--cache-size", "0"]).rsplit(":", 1)[1])
        (const_port,) = free_ports(1)
        cluster.run("constant-site", [os.path.join(VENV_BIN, "python"), "-c", CONSTANT_SITE, str(const_port)])
        wait(lambda: _ok(f"http://127.0.0.1:{const_port}/"), 10, "constant site")

        async def seed() -> list[str]:
            conn = Conn("127.0.0.1", pl_port)
            out = []
            for i in range(args.ids):
                status, data = await conn.request("POST", "/permalink", urlencode(
                    {"code": f"seed {i}\nprint({i})", "language": "sage"}).encode())
                assert status == 200, data
                out.append(json.loads(data)["query"])
            conn.close()
            return out

        ids = asyncio.run(seed())
        tag = str(time.time())
        phases = [
            ("GET constant, bare twisted.web Site", const_port, lambda i: ("GET", "/", b""), ""),
            ("GET /permalink?q=, cached (hot)", pl_port,
             lambda i: ("GET", "/permalink?q=" + ids[i % len(ids)], b""), ">= 0.5x bare Site"),
            ("GET, uncached (--cache-size 0: Redis)", nocache_port,
             lambda i: ("GET", "/permalink?q=" + ids[i % len(ids)], b""), ">= 0.5x bare Site"),
            ("POST /permalink, WAIT 1 (permalinkd)", pl_port,
             lambda i: ("POST", "/permalink", urlencode({"code": f"bench {tag} {i}", "n": str(i)}).encode()),
             ">= 1500/s"),
        ]
        lines, rates, per_cpu = [], [], []
        for name, port, make, target in phases:
            pid = cluster.procs[{const_port: "constant-site", pl_port: "p1", nocache_port: "p2"}[port]].pid
            cpu0 = cpu_seconds(pid)
            result = asyncio.run(load(port, args.seconds, args.connections, make))
            line, rate, efficiency = row(name, args.seconds, result, cpu_seconds(pid) - cpu0, target)
            lines.append(line)
            rates.append(rate)
            per_cpu.append(efficiency)
        print(f"\npermalinkd benchmark: {os.cpu_count()} cores shared by Redis x3, Sentinel x3, permalinkd, "
              f"the baseline Site and the load client; {args.connections} keep-alive connections, "
              f"{args.seconds:.0f} s per phase; load average {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after the throughput phases")
        print(f"{'phase':<38} {'req/s':>9} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'srvCPU':>7} "
              f"{'req/CPU-s':>9}  target")
        for line in lines:
            print(line)
        # The req/CPU-s ratio is the steadier one when other work shares the cores.
        for label, i in (("cached", 1), ("uncached", 2)):
            print(f"{'GET ratio ' + label + ' / bare Site':<38} {rates[i] / rates[0]:>9.2f} req/s, "
                  f"{per_cpu[i] / per_cpu[0]:.2f} req/CPU-s")
        print("(srvCPU: CPU time of the server process (permalinkd or the bare Site) over the phase; "
              "req/CPU-s: requests per second of its CPU)", flush=True)
        # The throughput table is out before the failover round, which can fail on a loaded machine.
        fo = asyncio.run(failover_round(cluster, base, 4, "bench"))
        print(f"{'failover: first write after kill -9':<38} {fo.first_write_s:>8.2f}s {'':>24}  <= 3 s")
        print(f"{'failover: acknowledged writes lost':<38} {fo.lost:>9} {'':>24}  0 (of {fo.acked} acked)")
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
