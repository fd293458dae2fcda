"""The edge proxy against HAProxy, and its failover drill (issue 5; prints tables).

    python -m loadtest.edge_bench [--seconds 5] [--rounds 3] [--tool wrk|ab] [--requests N]
                                  [--connections 50] [--failover-rounds 2] [--no-failover] [--json FILE]
                                  [--check-interval 0.5 --check-timeout 0.4] [--edge-python PYPY_VENV/bin/python]

Benchmark.  Everything on 127.0.0.1 free ports, in one run: one bare
Twisted backend in its own process (a ``twisted.web`` ``Site`` answering a
constant on ``/`` and ``POST /kernel``, and ``/healthz`` with JSON holding
``free`` as a cell server does, so the edge's health checks pass), HAProxy
(Debian package, config from ``loadtest/haproxy.cfg.tmpl``, one thread) in
front of it on a plain and a TLS port, and ``twistd edgeproxy`` with a
plain ``--listen tcp:`` and an ``ssl:`` listener (certificate from
``certs.devca``).  For each of direct / haproxy / haproxy-tls / edge /
edge-tls, after a short warm-up, ``wrk -t1 -c50 --latency`` (keep-alive)
runs for ``--seconds`` (or ``ab -k -c 50`` for ``--requests``) against
``GET /``, which the edge routes as new work to the cell server.  The
whole sequence is repeated ``--rounds`` times, interleaved, and the table
gives the median with the spread of req/s, p50/p99, the p99 the proxy adds
over direct, the ratio to HAProxy (edge to haproxy, edge-tls to
haproxy-tls) and the CPU the proxy process used.  Target: edge req/s >=
0.8x HAProxy's.

Latency below saturation.  The same five targets, open loop
(``loadtest.openloop``): ``--latency-rate`` requests per second for
``--latency-seconds`` on a few keep-alive connections, ``--latency-rounds``
times interleaved; latency from when each request was due.  What a proxy
adds is its p50/p99 minus direct's in the same round.  Target: the edge
adds <= 1 ms at p99.

Failover drill.  A second edge with the default health-check settings
(``--check-interval``/``--check-timeout``/``--rise``/``--fall`` override)
in front of three backends f1..f3; an open-loop client sends ``POST
/kernel`` (new work; rate limits raised) at ``--rate`` per second on
keep-alive connections (a new one when none is idle, so requests stuck on a
stopped server do not hold back new ones) while a poller reads the edge's
``/healthz`` every 5 ms.  Per round: ``SIGKILL``
f1, time until the edge reports it down, keep loading for
``--after`` seconds, restart it and wait until it is up again; then
``SIGSTOP`` f2, time until down, ``--after`` seconds more, ``SIGCONT`` it
and wait for it to come back.  Failed requests are counted by when they
were sent: between the signal and detection, and after detection (target
0); "stalled" are requests sent before detection that took over 1 s (held
by the stopped server until ``SIGCONT``).  Targets: killed <= 0.1 s, stopped <= 1.5 s.

Every process started here is killed by PID (its process group: each is
started in its own session) when the run ends, whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from edgeproxy.edge import EdgeSettings
from edgeproxy.reactor import TWISTD_OPTION as EDGE_REACTOR
from loadtest.openloop import Latency, measure
from loadtest.permalink_failover import Conn, free_ports   # shared with the permalink drills
from loadtest.procstat import user_system_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
TEMPLATE = os.path.join(ROOT, "loadtest", "haproxy.cfg.tmpl")
TARGETS = ("direct", "haproxy", "haproxy-tls", "edge", "edge-tls")

BACKEND = r"""
import json, sys
from twisted.internet import reactor
from twisted.web import resource, server
port, node = int(sys.argv[1]), sys.argv[2]
HEALTH = json.dumps({"status": "ok", "node": node, "ready": 4, "starting": 0, "running": 0,
                     "capacity": 4, "free": 4, "sessions": 0, "sandbox": {}}).encode()
BODY = b"cellstack edge bench: a constant answer from a bare twisted.web Site\n"
KERNEL = json.dumps({"id": node + "-bench", "ws_url": "ws://127.0.0.1/"}).encode()
class Constant(resource.Resource):
    isLeaf = True
    def render_GET(self, request):
        if request.path == b"/healthz":
            request.setHeader(b"content-type", b"application/json")
            return HEALTH
        request.setHeader(b"content-type", b"text/plain")
        return BODY
    def render_POST(self, request):
        request.content.read()
        request.setHeader(b"content-type", b"application/json")
        return KERNEL
site = server.Site(Constant())
site.log = lambda request: None
reactor.listenTCP(port, site, interface="127.0.0.1", backlog=1024)
reactor.run()
"""


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """One plain GET on a fresh connection; (0, b"") when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body
    except (OSError, IndexError, ValueError):
        return 0, b""


def wait(pred, timeout: float, what: str, interval: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class Procs:
    """Processes this bench started; each leads its own session and is killed by PID."""

    def __init__(self, directory: str):
        self.directory = directory
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: list[int] = []          # every PID, restarted ones too

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.directory, f"{name}.log"), "ab")
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=self.directory, env=env)
        log.close()
        self.procs[name] = p
        self.started.append(p.pid)
        return p

    def backend(self, name: str, port: int) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-c", BACKEND, str(port), name])

    def log(self, name: str, tail: int = 3000) -> str:
        try:
            with open(os.path.join(self.directory, f"{name}.log"), errors="replace") as f:
                return f.read()[-tail:]
        except OSError:
            return ""

    def signal(self, name: str, sig: int) -> None:
        p = self.procs[name]
        if p.poll() is None:
            os.killpg(p.pid, sig)

    def kill(self, name: str) -> None:
        p = self.procs.get(name)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.kill(name)


EDGE_TWISTD = [os.path.join(VENV_BIN, "twistd")]


def edge_argv(listen: list[str], cells: str, extra: list[str]) -> list[str]:
    argv = [*EDGE_TWISTD, "-n", "--pidfile=", EDGE_REACTOR, "edgeproxy"]
    for desc in listen:
        argv += ["--listen", desc]
    return argv + ["--cells", cells, "--static-dir", "static",
                   "--compute-rate", "1000000", "--compute-burst", "1000000",
                   "--compute-global-rate", "1000000", "--compute-global-burst", "1000000",
                   "--max-conns-per-ip", "10000", *extra]


def cells_up(edge_port: int, names) -> bool:
    status, body = http_get(edge_port, "/healthz")
    if not status:
        return False
    try:
        cells = json.loads(body)["cells"]
        return all(cells[n]["up"] for n in names)
    except (ValueError, KeyError, TypeError):
        return False


# load tools ---------------------------------------------------------------------------------------
@dataclass
class Run:
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    proxy_cpu: float = float("nan")     # CPU seconds of the proxy process / wall seconds
    proxy_user: float = float("nan")    # of which in user space (the interpreter, for the edge)
    backend_cpu: float = float("nan")
    wall: float = 0.0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> tuple[float, float, float, int, int]:
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))
    requests = int(re.search(r"^\s+(\d+) requests in", out, re.M).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(m.group(1)) if m else 0
    return rps, _wrk_ms(lat["50"]), _wrk_ms(lat["99"]), requests, errors


def parse_ab(out: str, csv_text: str) -> tuple[float, float, float, int, int]:
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
    errors = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    m = re.search(r"Non-2xx responses:\s+(\d+)", out)
    errors += int(m.group(1)) if m else 0
    pct = {}
    for line in csv_text.splitlines()[1:]:
        p, _, v = line.partition(",")
        pct[int(float(p))] = float(v)
    return rps, pct[50], pct[99], requests, errors


def load(tool: str, url: str, seconds: float, requests: int, connections: int, threads: int,
         timeout: float) -> tuple[float, float, float, int, int]:
    if tool == "wrk":
        argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                "--timeout", "5s", url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout
        return parse_wrk(out)
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as csv:
        argv = ["ab", "-q", "-k", "-c", str(connections), "-s", "5", "-e", csv.name]
        if url.startswith("https:"):
            argv += ["-f", "TLS1.2"]
        argv += ["-n", str(requests)] if requests else ["-t", str(seconds), "-n", "100000000"]
        argv.append(url)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"ab failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
        return parse_ab(proc.stdout, csv.read())


@dataclass
class Bench:
    procs: Procs
    urls: dict[str, str] = field(default_factory=dict)
    proxy_pid: dict[str, int] = field(default_factory=dict)
    backend_pid: int = 0


def start_bench(procs: Procs, certs: str) -> Bench:
    backend, hp, hps, ep, eps = free_ports(5)
    b = Bench(procs)
    b.backend_pid = procs.backend("c1", backend).pid
    wait(lambda: http_get(backend, "/healthz")[0] == 200, 20, "the bare backend")
    cfg = os.path.join(procs.directory, "haproxy.cfg")
    with open(TEMPLATE) as f:
        text = string.Template(f.read()).substitute(
            http_port=hp, https_port=hps, pem=os.path.join(certs, "server.pem"),
            stats_socket=os.path.join(procs.directory, "haproxy.sock"),
            servers=f"    server c1 127.0.0.1:{backend} check inter 1s fall 2 rise 2\n")
    with open(cfg, "w") as f:
        f.write(text)
    haproxy = procs.start("haproxy", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", cfg])
    edge = procs.start("edge", edge_argv(
        [f"tcp:{ep}:interface=127.0.0.1",
         f"ssl:{eps}:interface=127.0.0.1:privateKey={certs}/server.key:certKey={certs}/server.crt"
         f":extraCertChain={certs}/chain.pem"], f"c1=http://127.0.0.1:{backend}", []))
    wait(lambda: http_get(hp, "/")[0] == 200, 20, "haproxy (log: " + procs.log("haproxy") + ")")
    try:
        wait(lambda: cells_up(ep, ["c1"]), 30, "the edge to see its cell server up")
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n{procs.log('edge')}")
    b.urls = {"direct": f"http://127.0.0.1:{backend}/", "haproxy": f"http://127.0.0.1:{hp}/",
              "haproxy-tls": f"https://127.0.0.1:{hps}/", "edge": f"http://127.0.0.1:{ep}/",
              "edge-tls": f"https://127.0.0.1:{eps}/"}
    b.proxy_pid = {"haproxy": haproxy.pid, "haproxy-tls": haproxy.pid, "edge": edge.pid, "edge-tls": edge.pid}
    return b


def bench_round(b: Bench, args) -> list[Run]:
    runs = []
    for target in TARGETS:
        url = b.urls[target]
        limit = args.seconds * 3 + 30 if not args.requests else 120
        if args.warmup > 0:
            load("wrk" if args.tool == "wrk" else "ab", url, args.warmup,
                 0 if args.tool == "wrk" else max(200, args.requests // 5), args.connections, args.threads, 60)
        pid = b.proxy_pid.get(target)
        (u0, s0), bc0, t0 = user_system_seconds(pid) if pid else (float("nan"),) * 2, sum(user_system_seconds(b.backend_pid)), \
            time.monotonic()
        rps, p50, p99, n, errors = load(args.tool, url, args.seconds, args.requests, args.connections,
                                        args.threads, limit)
        wall = time.monotonic() - t0
        run = Run(target, rps, p50, p99, n, errors, wall=wall,
                  backend_cpu=(sum(user_system_seconds(b.backend_pid)) - bc0) / wall)
        if pid:
            u1, s1 = user_system_seconds(pid)
            run.proxy_cpu, run.proxy_user = (u1 + s1 - u0 - s0) / wall, (u1 - u0) / wall
        runs.append(run)
    return runs


def _med(values):
    return statistics.median(values) if values else float("nan")


def summarise(rounds: list[list[Run]]) -> dict[str, dict]:
    by = {t: [r for rnd in rounds for r in rnd if r.target == t] for t in TARGETS}
    out = {}
    for t, runs in by.items():
        out[t] = {"rps": _med([r.rps for r in runs]), "rps_min": min(r.rps for r in runs),
                  "rps_max": max(r.rps for r in runs), "p50_ms": _med([r.p50_ms for r in runs]),
                  "p99_ms": _med([r.p99_ms for r in runs]), "p99_min": min(r.p99_ms for r in runs),
                  "p99_max": max(r.p99_ms for r in runs), "requests": sum(r.requests for r in runs),
                  "errors": sum(r.errors for r in runs), "proxy_cpu": _med([r.proxy_cpu for r in runs]),
                  # CPU the proxy spent per request: steadier than req/s on a shared machine
                  "proxy_us_per_req": _med([r.proxy_cpu / r.rps * 1e6 for r in runs if r.rps > 0]),
                  "proxy_user_us_per_req": _med([r.proxy_user / r.rps * 1e6 for r in runs if r.rps > 0]),
                  "backend_cpu": _med([r.backend_cpu for r in runs])}
    for t in TARGETS:
        ref = {"edge": "haproxy", "edge-tls": "haproxy-tls", "haproxy": "haproxy",
               "haproxy-tls": "haproxy-tls"}.get(t)
        # the ratio per round (same moment, same machine load), then the median
        ratios = []
        for rnd in rounds:
            got = {r.target: r for r in rnd}
            if ref and got[ref].rps > 0:
                ratios.append(got[t].rps / got[ref].rps)
        out[t]["vs_haproxy"] = _med(ratios) if ref else float("nan")
        out[t]["vs_haproxy_min"] = min(ratios) if ratios else float("nan")
        out[t]["vs_haproxy_max"] = max(ratios) if ratios else float("nan")
        out[t]["added_p99_ms"] = _med([{r.target: r for r in rnd}[t].p99_ms - {r.target: r for r in rnd}["direct"].p99_ms
                                       for rnd in rounds])
    return out


def _f(v: float, fmt: str) -> str:
    return "-" if v != v else format(v, fmt)


def bench_table(s: dict[str, dict], rounds: int) -> str:
    head = (f"{'target':<13}{'req/s':>9}{'(min-max)':>17}{'p50 ms':>8}{'p99 ms':>8}{'+p99 ms':>9}"
            f"{'vs HAProxy':>12}{'proxy CPU':>11}{'us/req':>8}{'(user)':>8}{'backend CPU':>13}{'requests':>10}{'errors':>8}")
    lines = [f"benchmark: median of {rounds} interleaved round(s); +p99 = p99 minus direct's p99 "
             f"(same round); vs HAProxy: edge/haproxy, edge-tls/haproxy-tls; us/req = proxy CPU "
             f"microseconds per request (user: of which in user space)", head, "-" * len(head)]
    for t in TARGETS:
        r = s[t]
        spread = f"({r['rps_min']:.0f}-{r['rps_max']:.0f})"
        added = "-" if t == "direct" else f"{r['added_p99_ms']:+.2f}"
        ratio = "-" if r["vs_haproxy"] != r["vs_haproxy"] else f"{r['vs_haproxy']:.2f}x"
        cpu = "-" if r["proxy_cpu"] != r["proxy_cpu"] else f"{r['proxy_cpu'] * 100:.0f}%"
        us = "-" if r["proxy_us_per_req"] != r["proxy_us_per_req"] else f"{r['proxy_us_per_req']:.0f}"
        user = _f(r["proxy_user_us_per_req"], ".0f")
        lines.append(f"{t:<13}{r['rps']:>9.0f}{spread:>17}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{added:>9}"
                     f"{ratio:>12}{cpu:>11}{us:>8}{user:>8}{r['backend_cpu'] * 100:>12.0f}%{r['requests']:>10}{r['errors']:>8}")
    return "\n".join(lines)


# latency below saturation --------------------------------------------------------------------------
def latency_rounds(b: Bench, args) -> list[dict[str, Latency]]:
    """Open-loop at ``--latency-rate``, the targets interleaved per round."""
    rounds = []
    for _ in range(args.latency_rounds):
        rounds.append({t: asyncio.run(measure(b.urls[t], args.latency_rate, args.latency_seconds,
                                              args.latency_connections)) for t in TARGETS})
    return rounds


def latency_summary(rounds: list[dict[str, Latency]]) -> dict[str, dict]:
    """Medians over rounds, and what each target adds to direct's p50/p99 in
    the same round (then the median): the machine's load moves both alike."""
    out = {}
    for t in TARGETS:
        runs = [r[t] for r in rounds]
        out[t] = {"sent": sum(x.sent for x in runs), "errors": sum(x.errors for x in runs),
                  "p50_ms": _med([x.p50_ms for x in runs]), "p99_ms": _med([x.p99_ms for x in runs]),
                  "p999_ms": _med([x.p999_ms for x in runs]), "max_ms": max(x.max_ms for x in runs),
                  "added_p50_ms": _med([r[t].p50_ms - r["direct"].p50_ms for r in rounds]),
                  "added_p99_ms": _med([r[t].p99_ms - r["direct"].p99_ms for r in rounds]),
                  "added_p99_min": min(r[t].p99_ms - r["direct"].p99_ms for r in rounds),
                  "added_p99_max": max(r[t].p99_ms - r["direct"].p99_ms for r in rounds)}
    return out


def latency_table(s: dict[str, dict], args) -> str:
    head = (f"{'target':<13}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}{'max ms':>8}{'+p50 ms':>9}"
            f"{'+p99 ms':>9}{'(min..max)':>18}{'sent':>8}{'errors':>8}")
    lines = [f"latency below saturation: open loop, {args.latency_rate:g} req/s for {args.latency_seconds:g} s on "
             f"{args.latency_connections} keep-alive connections, median of {args.latency_rounds} interleaved "
             f"round(s); +p50/+p99 = minus direct's, same round (target: edge adds <= 1 ms at p99)",
             head, "-" * len(head)]
    for t in TARGETS:
        r = s[t]
        a50 = "-" if t == "direct" else f"{r['added_p50_ms']:+.2f}"
        a99 = "-" if t == "direct" else f"{r['added_p99_ms']:+.2f}"
        spread = "-" if t == "direct" else f"({r['added_p99_min']:+.2f}..{r['added_p99_max']:+.2f})"
        lines.append(f"{t:<13}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['p999_ms']:>10.2f}{r['max_ms']:>8.1f}"
                     f"{a50:>9}{a99:>9}{spread:>18}{r['sent']:>8}{r['errors']:>8}")
    return "\n".join(lines)


# failover drill -------------------------------------------------------------------------------------
@dataclass
class Event:
    what: str             # SIGKILL f1 | SIGSTOP f2
    detect_s: float       # signal -> the edge's /healthz says down
    sent_before: int      # requests sent between the signal and detection
    failed_before: int
    stalled_before: int
    sent_after: int       # requests sent in --after seconds after detection
    failed_after: int
    max_after_ms: float   # slowest request sent after detection
    back_up_s: float      # restart/SIGCONT -> up again
    errors: dict = field(default_factory=dict)


async def drill(procs: Procs, ports: dict[str, int], edge_port: int, args) -> list[Event]:
    samples: list[tuple[float, float, int, str]] = []     # (sent, done, status, error)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    idle: list[Conn] = []
    inflight: set = set()

    async def one():
        c = idle.pop() if idle else Conn("127.0.0.1", edge_port)
        t0 = loop.time()
        try:
            status, _ = await asyncio.wait_for(c.request("POST", "/kernel"), 30)
            samples.append((t0, loop.time(), status, "" if status == 200 else
                            f"HTTP {status}" if status else "connection error"))
            if c.writer is not None:
                idle.append(c)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
            c.close()
            samples.append((t0, loop.time(), 0, type(e).__name__))

    async def sender():
        """Open loop: a new request every 1/rate s, on an idle connection or a new one,
        so requests stuck on a stopped server do not stop new work from being sent."""
        step = 1.0 / args.rate
        next_at = loop.time()
        while not stop.is_set():
            if len(inflight) < args.max_inflight:
                t = asyncio.ensure_future(one())
                inflight.add(t)
                t.add_done_callback(inflight.discard)
            next_at += step
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    poller = Conn("127.0.0.1", edge_port)

    async def state() -> dict:
        try:
            _, body = await asyncio.wait_for(poller.request("GET", "/healthz"), 2)
            return json.loads(body)["cells"]
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, KeyError):
            poller.close()
            return {}

    async def until(pred, timeout: float) -> float:
        t0 = loop.time()
        while loop.time() - t0 < timeout:
            if pred(await state()):
                return loop.time()
            await asyncio.sleep(0.005)
        raise RuntimeError(f"the edge did not change state within {timeout} s")

    def count(t_from: float, t_to: float):
        sel = [s for s in samples if t_from <= s[0] < t_to]
        failed = [s for s in sel if s[2] != 200]
        kinds: dict[str, int] = {}
        for s in failed:
            kinds[s[3]] = kinds.get(s[3], 0) + 1
        stalled = sum(1 for s in sel if s[2] == 200 and s[1] - s[0] > 1.0)
        return len(sel), len(failed), max(((s[1] - s[0]) * 1000 for s in sel), default=0.0), kinds, stalled

    events = []
    workers = [asyncio.ensure_future(sender())]
    try:
        await asyncio.sleep(1.0)
        for rnd in range(args.failover_rounds):
            for sig, name in ((signal.SIGKILL, "f1"), (signal.SIGSTOP, "f2")):
                await until(lambda c: all(c.get(n, {}).get("up") for n in ports), 30)
                await asyncio.sleep(0.3 + 0.37 * rnd)      # vary the phase against the check ticks
                t_sig = loop.time()
                procs.signal(name, sig)
                t_det = await until(lambda c: not c.get(name, {}).get("up", True), 15)
                await asyncio.sleep(args.after)
                await asyncio.sleep(0.3)                   # let requests sent in the window finish
                t_back0 = loop.time()
                if sig == signal.SIGKILL:
                    procs.kill(name)
                    procs.backend(name, ports[name])
                else:
                    procs.signal(name, signal.SIGCONT)
                t_up = await until(lambda c: c.get(name, {}).get("up"), 30)
                sb, fb, _, kb, stb = count(t_sig, t_det)
                sa, fa, ma, ka, _ = count(t_det, t_det + args.after)
                kinds = {f"before: {k}": v for k, v in kb.items()}
                kinds.update({f"after: {k}": v for k, v in ka.items()})
                events.append(Event(f"{signal.Signals(sig).name} {name}", t_det - t_sig, sb, fb, stb, sa, fa, ma,
                                    t_up - t_back0, kinds))
    finally:
        stop.set()
        await asyncio.gather(*workers, *list(inflight), return_exceptions=True)
        for c in idle:
            c.close()
        poller.close()
    return events


def start_failover(procs: Procs, args) -> tuple[dict[str, int], int]:
    *bports, ep = free_ports(4)
    ports = {f"f{i + 1}": p for i, p in enumerate(bports)}
    for name, port in ports.items():
        procs.backend(name, port)
    for port in ports.values():
        wait(lambda: http_get(port, "/healthz")[0] == 200, 20, "a failover backend")
    checks = ["--check-interval", str(args.check_interval), "--check-timeout", str(args.check_timeout),
              "--rise", str(args.rise), "--fall", str(args.fall)]
    procs.start("edge-failover", edge_argv([f"tcp:{ep}:interface=127.0.0.1"],
                                           ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in ports.items()),
                                           checks))
    try:
        wait(lambda: cells_up(ep, ports), 30, "the failover edge to see f1..f3 up")
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n{procs.log('edge-failover')}")
    return ports, ep


def failover_table(events: list[Event], args) -> str:
    head = (f"{'event':<14}{'detect s':>10}{'sent before':>13}{'failed':>8}{'stalled':>9}{'sent after':>12}{'failed':>8}"
            f"{'max ms after':>14}{'back up s':>11}")
    lines = [f"failover: edge checks inter {args.check_interval} s, timeout {args.check_timeout} s, "
             f"rise {args.rise}, fall {args.fall}; POST /kernel at {args.rate:g}/s (open loop); 'before' = sent between "
             f"the signal and detection, 'after' = sent in the {args.after} s after it", head, "-" * len(head)]
    for e in events:
        lines.append(f"{e.what:<14}{e.detect_s:>10.3f}{e.sent_before:>13}{e.failed_before:>8}{e.stalled_before:>9}{e.sent_after:>12}"
                     f"{e.failed_after:>8}{e.max_after_ms:>14.1f}{e.back_up_s:>11.2f}")
        if e.errors:
            lines.append(" " * 14 + "errors: " + ", ".join(f"{k}: {v}" for k, v in sorted(e.errors.items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", choices=("wrk", "ab"), default="wrk" if shutil.which("wrk") else "ab")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measured load run")
    ap.add_argument("--requests", type=int, default=0, help="ab only: requests per run instead of --seconds")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measured run (0: none)")
    ap.add_argument("--rounds", type=int, default=3, help="the five targets, repeated, interleaved")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--latency-rate", type=float, default=500.0,
                    help="latency below saturation: requests per second, open loop")
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--latency-connections", type=int, default=8)
    ap.add_argument("--latency-rounds", type=int, default=3, help="0: leave the latency part out")
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument("--failover-rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=400.0, help="failover: POST /kernel per second (open loop)")
    ap.add_argument("--max-inflight", type=int, default=300, help="failover: cap on requests under way")
    ap.add_argument("--after", type=float, default=1.0, help="failover: seconds of load counted after detection")
    ap.add_argument("--check-interval", type=float, default=EdgeSettings.check_interval)
    ap.add_argument("--check-timeout", type=float, default=EdgeSettings.check_timeout)
    ap.add_argument("--rise", type=int, default=2)
    ap.add_argument("--fall", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--edge-python", help="run the edges with this interpreter (e.g. a PyPy venv's python "
                                          "with the same packages); default: the edge's own venv twistd")
    args = ap.parse_args(argv)
    if args.edge_python:
        EDGE_TWISTD[:] = [args.edge_python, "-c", "from twisted.scripts.twistd import run; run()"]
    if args.requests and args.tool != "ab":
        ap.error("--requests needs --tool ab (wrk runs for --seconds)")
    if not shutil.which(args.tool):
        ap.error(f"{args.tool} is not installed (apt-get install {'wrk' if args.tool == 'wrk' else 'apache2-utils'})")

    tmp = tempfile.mkdtemp(prefix="edge-bench-")
    procs = Procs(tmp)
    result: dict = {"load_before": os.getloadavg(), "tool": args.tool, "connections": args.connections,
                    "cpus": os.cpu_count(), "edge": EDGE_TWISTD}
    try:
        os.makedirs(os.path.join(tmp, "static"))
        certs = os.path.join(tmp, "certs")
        subprocess.run([sys.executable, "-m", "certs.devca", "--dir", certs, "--quiet"], check=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
        print(f"edge bench: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
              f"{args.tool} -c {args.connections}"
              + (f", {args.requests} requests" if args.requests else f", {args.seconds:g} s") + " per run",
              flush=True)
        if not args.no_bench:
            bench = start_bench(procs, certs)
            rounds = [bench_round(bench, args) for _ in range(args.rounds)]
            summary = summarise(rounds)
            result["bench"] = summary
            result["runs"] = [[asdict(r) for r in rnd] for rnd in rounds]
            print(bench_table(summary, args.rounds), flush=True)
            if args.latency_rounds > 0:
                lat = latency_summary(latency_rounds(bench, args))
                result["latency"] = lat
                print(latency_table(lat, args), flush=True)
            for name in ("edge", "haproxy", "c1"):
                procs.kill(name)
        if not args.no_failover:
            ports, ep = start_failover(procs, args)
            events = asyncio.run(drill(procs, ports, ep, args))
            result["failover"] = [asdict(e) for e in events]
            print(failover_table(events, args), flush=True)
        result["load_after"] = os.getloadavg()
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        procs.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.json:
            result["pids"] = procs.started
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
