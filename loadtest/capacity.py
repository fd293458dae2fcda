"""How many concurrent websocket sessions the system holds, and what fails first.

Opens sessions one after another at ``--rate`` per second, each the way a
page with an interact does: ``POST /kernel`` (``timeout`` = ``--keep``
seconds, so the kernel stays), the websocket, one ``a+b`` checked.  Every
``--step`` sessions it stops opening and sends one computation on every
session held so far, all at once: a session counts as held only while it
still answers.  It stops at ``--target`` sessions held, at the first failure
(``--tolerate`` more failures allowed), or after ``--max-seconds``; then
prints a row per step (held, new-session p50/p99, round-trip p50/p99 over
all held sessions, host memory available) and what failed first, closes
every session and exits.

Each session comes from its own loopback address (127.0.<n>.<m>), as
distinct users would: the edge's per-IP rate and connection limits then
measure capacity, not one client's allowance.  Traffic stays on 127.0.0.0/8
and every run is bounded by ``--target`` and ``--max-seconds``.

    python -m loadtest.capacity --url https://localhost:8443/ --cafile var/certs/ca.pem --target 500
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import asdict, dataclass, field

from loadtest.sessions import KernelSocket, Run, check_loopback, compute, open_socket, react, tls_for
from loadtest.stats import percentile


def source_address(i: int) -> str:
    """The i-th session's loopback source: 127.0.1.1 .. 127.0.250.250 (never 127.0.0.x)."""
    if not 0 <= i < 250 * 250:
        raise ValueError("at most 62,500 distinct sources")
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


@dataclass
class Step:
    held: int
    opened_p50_ms: float
    opened_p99_ms: float
    rtt_p50_ms: float
    rtt_p99_ms: float
    failed: int
    mem_available_mb: int


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    first_failure: str = ""
    failures: dict[str, int] = field(default_factory=dict)
    max_held: int = 0
    seconds: float = 0.0


def mem_available_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return -1


class Session:
    def __init__(self, i: int, ks: KernelSocket, kernel_id: str, http, session: str):
        self.i, self.ks, self.kernel_id, self.http, self.session = i, ks, kernel_id, http, session


def _client(reactor, policy, source: str):
    """An HTTP client whose connections come from the loopback address ``source``."""
    import treq
    from twisted.web.client import Agent

    if policy is not None:
        return treq.client.HTTPClient(Agent(reactor, contextFactory=policy, bindAddress=(source, 0)))
    return treq.client.HTTPClient(Agent(reactor, bindAddress=(source, 0)))


async def open_session(reactor, args, clock: Run, i: int, policy, tls_options) -> Session:
    source = source_address(i)
    http = _client(reactor, policy, source)
    session = uuid.uuid4().hex
    resp = await http.post(args.url + "kernel", data={"accepted_tos": "true", "timeout": str(args.keep),
                                                       "CellSessionID": session}).addTimeout(args.timeout, reactor)
    body = await resp.content()
    if resp.code != 200:
        try:
            why = json.loads(body).get("error", "")
        except ValueError:
            why = ""
        raise RuntimeError(f"POST /kernel: HTTP {resp.code} {why}".strip())
    info = json.loads(body)
    ws_base = info.get("ws_url") or args.url.replace("http", "ws", 1)
    ws_base += "" if ws_base.endswith("/") else "/"
    ks = await open_socket(reactor, f"{ws_base}kernel/{info['id']}/channels", tls_options, args.timeout, source)
    s = Session(i, ks, info["id"], http, session)
    if not await compute(clock, ks, session, "first computation"):
        raise RuntimeError("first computation: " + (clock.samples[-1].error or "failed"))
    return s


async def run(reactor, args) -> Report:
    from twisted.internet import defer
    from twisted.internet.task import deferLater

    policy, tls_options = tls_for(args.url, args.cafile)
    clock = Run(reactor, argparse.Namespace(timeout=args.timeout, duration=args.max_seconds))
    report = Report()
    held: list[Session] = []
    opened: list[Session] = []       # every session, held or not: all are closed at the end
    opened_ms: list[float] = []
    deadline = reactor.seconds() + args.max_seconds
    failures = 0

    def fail(why: str) -> None:
        nonlocal failures
        failures += 1
        report.failures[why] = report.failures.get(why, 0) + 1
        if not report.first_failure:
            report.first_failure = f"{why} (with {len(held)} sessions held)"

    i = 0
    while len(held) < args.target and failures <= args.tolerate and reactor.seconds() < deadline:
        t = reactor.seconds()
        try:
            held.append(await open_session(reactor, args, clock, i, policy, tls_options))
            opened.append(held[-1])
            opened_ms.append((reactor.seconds() - t) * 1000)
        except Exception as e:  # noqa: BLE001 - every failure is reported by kind
            fail(str(e)[:120] or type(e).__name__)
        i += 1
        if len(held) % args.step == 0 or len(held) == args.target or failures > args.tolerate:
            # Every held session computes once, all at the same time.
            for s in [s for s in held if s.ks.closed]:
                held.remove(s)
                fail(f"websocket lost: {s.ks.closed}"[:120])
            start = len(clock.samples)
            results = await defer.gatherResults(
                [defer.Deferred.fromCoroutine(compute(clock, s.ks, s.session, "held")) for s in held],
                consumeErrors=True)
            for s, ok in zip(list(held), results):
                if not ok:
                    held.remove(s)
            for x in clock.samples[start:]:
                if not x.ok:
                    fail("held session stopped answering: " + (x.error or "wrong answer"))
            rtts = sorted(x.latency * 1000 for x in clock.samples[start:] if x.ok)
            recent = sorted(opened_ms[-args.step:])
            report.steps.append(Step(len(held), percentile(recent, 50), percentile(recent, 99),
                                     percentile(rtts, 50), percentile(rtts, 99), failures, mem_available_mb()))
            print(row(report.steps[-1]), flush=True)
        if args.rate:
            await deferLater(reactor, 1 / args.rate, lambda: None)
        report.max_held = max(report.max_held, len(held))
    report.seconds = reactor.seconds() - clock.t0
    for s in opened:
        if s.ks.proto is not None and not s.ks.closed:
            s.ks.proto.sendClose(1000)
    await defer.gatherResults([s.http.delete(args.url + f"kernel/{s.kernel_id}").addTimeout(30, reactor)
                               for s in opened], consumeErrors=True).addErrback(lambda f: None)
    return report


HEAD = f"{'held':>6}{'open p50':>10}{'open p99':>10}{'rtt p50':>9}{'rtt p99':>9}{'failed':>8}{'mem avail MB':>14}"


def _f(v: float) -> str:
    return "-" if v != v else f"{v:.1f}"


def row(s: Step) -> str:
    return (f"{s.held:>6}{_f(s.opened_p50_ms):>10}{_f(s.opened_p99_ms):>10}{_f(s.rtt_p50_ms):>9}"
            f"{_f(s.rtt_p99_ms):>9}{s.failed:>8}{s.mem_available_mb:>14}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="https://localhost:8443/")
    ap.add_argument("--cafile")
    ap.add_argument("--target", type=int, default=500, help="stop once this many sessions are held")
    ap.add_argument("--step", type=int, default=50, help="check every held session after this many new ones")
    ap.add_argument("--rate", type=float, default=20.0, help="new sessions per second (0: as fast as they open)")
    ap.add_argument("--keep", type=float, default=600.0, help="timeout= asked for each kernel (s)")
    ap.add_argument("--tolerate", type=int, default=0, help="failures allowed before stopping")
    ap.add_argument("--timeout", type=float, default=30.0, help="per operation (s)")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if not args.url.endswith("/"):
        args.url += "/"
    if not (1 <= args.target <= 5000) or not (0 < args.max_seconds <= 3600) or args.step < 1:
        ap.error("--target must be 1..5000, --max-seconds 0..3600 and --step >= 1")
    check_loopback(args.url)
    print(f"opening up to {args.target} sessions against {args.url}, {args.rate:g}/s, check every {args.step}")
    print(HEAD)
    r = react(run, args)
    print(f"held at most {r.max_held} concurrent sessions in {r.seconds:.1f} s; "
          f"first failure: {r.first_failure or 'none'}")
    for why, n in sorted(r.failures.items(), key=lambda kv: -kv[1]):
        print(f"  {n} x {why}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(asdict(r), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
