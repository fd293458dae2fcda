"""Our own session load tester: simulated users doing what a page does.

Each simulated user, until the run's duration is over: creates a kernel
(``POST /kernel``), opens its websocket, evaluates ``<a>+<b>`` and checks the
answer, evaluates K more sums on the same kernel, optionally runs an
interact and moves its slider M times (each move must produce the output for
that value), then closes the kernel.  Users start spread over the ramp-up.
The interact is the project's own ``@interact`` with a ``slider`` (what
pages run; ``--interact ipywidgets`` uses a bare ipywidgets slider instead).

Phases timed: ``kernel start`` (POST /kernel until the websocket is open),
``first computation``, ``new cell to first result`` (one sample per session,
from POST /kernel to the first sum's answer: what a visitor waits for; its
percentiles are measured, not added up from the two phases before),
``later computation``, ``interact update``.  Prints a table per phase
(count, errors, p50/p90/p99, throughput) and can write every sample as CSV
or JSON and plot latency over time (matplotlib PNG).  A failure is recorded
with what it was told (websocket close code and reason, HTTP status and
error code, or the exception's message), and the JSON also has one record
per session: its kernel, the cell server owning it (from the kernel id),
and where and why it failed, if it did (what the failover drill counts).

Traffic goes only to loopback addresses (127.0.0.0/8, ::1): the tool refuses
anything else, and every run is bounded by ``--duration`` and ``--users``.

    python -m loadtest.sessions --url http://127.0.0.1:8101/ --users 20 --duration 30
    python -m loadtest.sessions --url https://localhost:8443/ --cafile var/certs/ca.pem \\
        --users 50 --ramp-up 10 --duration 60 --interact-moves 5 --plot var/sessions.png
"""
from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import random
import socket
import sys
import time
import uuid
from dataclasses import asdict
from urllib.parse import urlsplit

from cellserver.kernelid import node_of
from loadtest.stats import Sample, summarise, table

FIRST_RESULT = "new cell to first result"

INTERACT_CODE = """
import ipywidgets as _w
from IPython.display import display as _display
_out = _w.Output()
_s = _w.IntSlider(value=0, min=0, max=100000, description='x')
def _show(change):
    with _out:
        _out.clear_output(wait=True)
        print('value=%d' % change['new'])
_s.observe(_show, names='value')
_display(_s, _out)
"""


def check_loopback(url: str) -> None:
    """Refuse any target that is not on this machine's loopback."""
    host = urlsplit(url).hostname or ""
    addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    for a in addrs:
        if not ipaddress.ip_address(a.split("%")[0]).is_loopback:
            raise SystemExit(f"loadtest: refusing {url}: {host} resolves to {a}, not a loopback address")


def jupyter_message(msg_type: str, content: dict, session: str, channel: str = "shell") -> dict:
    return {
        "channel": channel,
        "header": {"msg_id": uuid.uuid4().hex, "username": "loadtest", "session": session,
                   "msg_type": msg_type, "version": "5.3",
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())},
        "parent_header": {}, "metadata": {}, "content": content,
    }


def reason(e: BaseException, timeout: float) -> str:
    """What a failure was told, for the tables and the drill: the websocket's
    close code and reason, or the exception's own message (its type alone
    does not say why)."""
    from twisted.internet import defer, error

    if isinstance(e, (defer.TimeoutError, defer.CancelledError, error.TimeoutError, TimeoutError)):
        return f"no answer within {timeout:g} s"
    text = str(e).strip()
    if isinstance(e, ConnectionError) and text:
        return text[:200]              # "websocket closed 1006: ..." / "websocket refused: ..."
    return f"{type(e).__name__}: {text}"[:200] if text else type(e).__name__


def execute(code: str, session: str) -> dict:
    return jupyter_message("execute_request", {
        "code": code, "silent": False, "store_history": False, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True}, session)


class Run:
    """One load run: its settings, its clock and its samples."""

    def __init__(self, reactor, args):
        self.reactor = reactor
        self.args = args
        self.samples: list[Sample] = []
        self.t0 = reactor.seconds()
        self.t0_wall = time.time()
        self.deadline = self.t0 + args.duration
        self.sessions_done = 0
        self.sessions_broken = 0
        self.sessions: list[dict] = []     # one record per session (see one_session)

    def now(self) -> float:
        return self.reactor.seconds() - self.t0

    def record(self, phase: str, started: float, ok: bool, error: str = "", session: dict | None = None) -> None:
        """One sample; a failure is also the ``session`` record's first failure."""
        self.samples.append(Sample(phase, started, self.now() - started, ok, error))
        if not ok:
            self.session_failed(session, phase, error)

    def session_failed(self, session: dict | None, phase: str, error: str) -> None:
        """Note a session's first failure in its record."""
        if session is not None and not session["failed_phase"]:
            session.update(failed_phase=phase, error=error, failed_at=round(self.now(), 4))


def tls_for(url: str, cafile: str | None):
    """(HTTPS policy for Agents, TLS options for websockets) trusting ``cafile``,
    or (None, None) for a plain-HTTP ``url``."""
    from twisted.internet import ssl
    from twisted.web.client import BrowserLikePolicyForHTTPS

    if not url.startswith("https"):
        return None, None
    trust = None
    if cafile:
        with open(cafile, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    host = urlsplit(url).hostname
    return BrowserLikePolicyForHTTPS(trustRoot=trust), ssl.optionsForClientTLS(host, trustRoot=trust)


def make_clients(reactor, args):
    """An HTTP agent and the TLS options for websockets (trusting --cafile)."""
    import treq
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max(10, args.users)
    policy, tls_options = tls_for(args.url, args.cafile)
    agent = Agent(reactor, contextFactory=policy, pool=pool) if policy else Agent(reactor, pool=pool)
    return treq.client.HTTPClient(agent), tls_options, pool


class KernelSocket:
    """A websocket to one kernel: send Jupyter messages, await replies/outputs."""

    def __init__(self):
        self.waiters = []          # (predicate, deferred)
        self.closed = None
        self.proto = None
        self.session = None        # the load tester's record of the session using it

    def feed(self, msg: dict) -> None:
        for item in list(self.waiters):
            pred, d = item
            if pred(msg):
                self.waiters.remove(item)
                d.callback(msg)

    def lost(self, reason: str) -> None:
        self.closed = reason
        for pred, d in self.waiters:
            d.errback(ConnectionError(reason))
        self.waiters = []

    def wait_for(self, pred, reactor, timeout: float):
        from twisted.internet.defer import Deferred, fail

        if self.closed:             # a failed Deferred, like a close while waiting: callers await it
            return fail(ConnectionError(self.closed))
        d = Deferred()
        self.waiters.append((pred, d))
        return d.addTimeout(timeout, reactor)

    def send(self, msg: dict) -> None:
        if self.closed:
            raise ConnectionError(self.closed)
        self.proto.sendMessage(json.dumps(msg).encode("utf-8"), isBinary=False)


async def open_socket(reactor, ws_url: str, tls_options, timeout: float, source: str | None = None) -> KernelSocket:
    """The kernel's websocket, open (from the local address ``source`` when given)."""
    from autobahn.twisted.websocket import (WebSocketClientFactory, WebSocketClientProtocol,
                                            connectWS)
    from twisted.internet.defer import Deferred

    ks = KernelSocket()
    opened = Deferred()

    class Proto(WebSocketClientProtocol):
        def onOpen(self):
            ks.proto = self
            opened.callback(ks)

        def onMessage(self, payload, isBinary):
            if not isBinary:
                try:
                    ks.feed(json.loads(payload))
                except ValueError:
                    pass

        def onClose(self, wasClean, code, reason):
            ks.lost(f"websocket closed {code}: {reason}")
            if not opened.called:
                opened.errback(ConnectionError(f"websocket refused: {code} {reason}"))

    factory = WebSocketClientFactory(ws_url)
    factory.protocol = Proto
    connectWS(factory, contextFactory=tls_options, timeout=timeout,
              bindAddress=(source, 0) if source else None)
    return await opened.addTimeout(timeout, reactor)


async def compute(run: Run, ks: KernelSocket, session: str, phase: str) -> bool:
    a, b = random.randint(1, 10**6), random.randint(1, 10**6)
    msg = execute(f"{a}+{b}", session)
    mid = msg["header"]["msg_id"]
    started = run.now()
    result = ks.wait_for(lambda m: m.get("msg_type", m.get("header", {}).get("msg_type")) == "execute_result"
                         and m.get("parent_header", {}).get("msg_id") == mid, run.reactor, run.args.timeout)
    try:
        ks.send(msg)
        got = await result
    except Exception as e:  # noqa: BLE001 - every failure is counted, with what it was told
        run.record(phase, started, False, reason(e, run.args.timeout), ks.session)
        return False
    text = got.get("content", {}).get("data", {}).get("text/plain")
    ok = text == str(a + b)
    run.record(phase, started, ok, "" if ok else f"wrong answer {text!r} to {a}+{b}", ks.session)
    return ok


async def interact_ours(run: Run, ks: KernelSocket, session: str) -> bool:
    """The project's ``@interact`` with a slider, moved ``--interact-moves``
    times (the conversation of ``loadtest.interact_bench``, which times it)."""
    from loadtest.interact_bench import PHASE, move, set_up_interact

    try:
        slider_id, output_id = await set_up_interact(run, ks, session)
    except Exception as e:  # noqa: BLE001
        run.record(PHASE, run.now(), False, "interact setup: " + reason(e, run.args.timeout), ks.session)
        return False
    last = 0                                   # the slider starts at 0: moving to it shows nothing
    for _ in range(run.args.interact_moves):
        value = last
        while value == last:
            value = random.randint(1, 99999)
        last = value
        try:
            moved = await move(run, ks, session, slider_id, output_id, value)
        except Exception as e:  # noqa: BLE001 - e.g. the websocket closed before the move was sent
            run.record(PHASE, run.now(), False, reason(e, run.args.timeout), ks.session)
            return False
        if not moved:
            # move() recorded its failed sample just now (same turn of the reactor)
            run.session_failed(ks.session, PHASE, ks.closed or run.samples[-1].error)
            return False
    return True


async def interact_ipywidgets(run: Run, ks: KernelSocket, session: str) -> bool:
    """A bare ipywidgets slider observed by a callback that prints its value."""
    msg = execute(INTERACT_CODE, session)
    mid = msg["header"]["msg_id"]
    opened = []

    def slider_open(m):
        if m.get("header", {}).get("msg_type") == "comm_open":
            state = m.get("content", {}).get("data", {}).get("state", {})
            if state.get("_model_name") == "IntSliderModel":
                opened.append(m["content"]["comm_id"])
                return True
        return False

    comm = ks.wait_for(slider_open, run.reactor, run.args.timeout)
    idle = ks.wait_for(lambda m: m.get("header", {}).get("msg_type") == "execute_reply"
                       and m.get("parent_header", {}).get("msg_id") == mid, run.reactor, run.args.timeout)
    try:
        ks.send(msg)
        comm_id = (await comm)["content"]["comm_id"]
        await idle
    except Exception as e:  # noqa: BLE001
        run.record("interact update", run.now(), False, "interact setup: " + reason(e, run.args.timeout),
                   ks.session)
        return False
    for _ in range(run.args.interact_moves):
        value = random.randint(1, 99999)
        want = f"value={value}"
        started = run.now()

        def shows(m, want=want):
            if m.get("header", {}).get("msg_type") != "stream":
                return False
            return want in m.get("content", {}).get("text", "")

        shown = ks.wait_for(shows, run.reactor, run.args.timeout)
        update = jupyter_message("comm_msg", {"comm_id": comm_id, "data": {
            "method": "update", "state": {"value": value}, "buffer_paths": []}}, session)
        try:
            ks.send(update)
            await shown
            run.record("interact update", started, True)
        except Exception as e:  # noqa: BLE001
            run.record("interact update", started, False, reason(e, run.args.timeout), ks.session)
            return False
    return True


async def one_session(run: Run, http, tls_options) -> None:
    """One visitor's cell: a kernel, its websocket, sums, maybe an interact.

    ``run.sessions`` gets its record: ``start``, ``kernel``, ``node`` (the
    cell server owning the kernel), and, if it failed, ``failed_phase``,
    ``error`` and ``failed_at`` (the first failure only)."""
    from twisted.internet.task import deferLater

    args = run.args
    session = uuid.uuid4().hex
    started = run.now()
    rec = {"start": round(started, 4), "kernel": None, "node": None, "failed_phase": "", "error": "",
           "failed_at": None}
    run.sessions.append(rec)
    info = {}
    ks = None
    try:
        resp = await http.post(args.url + "kernel", data={"accepted_tos": "true", "timeout": "60",
                                                           "CellSessionID": session}).addTimeout(args.timeout, run.reactor)
        body = await resp.content()
        if resp.code != 200:
            try:
                code = json.loads(body).get("error", "")
            except (ValueError, AttributeError):
                code = ""
            kind = {429: "429 rate limited", 503: "503 no capacity"}.get(resp.code, f"HTTP {resp.code}")
            if code and resp.code != 429:
                kind = f"HTTP {resp.code} {code}"
            run.record("kernel start", started, False, kind, rec)
            run.record(FIRST_RESULT, started, False, kind)
            return
        info = json.loads(body)
        rec.update(kernel=info["id"], node=node_of(info["id"]))
        ws_base = info.get("ws_url") or args.url.replace("http", "ws", 1)
        if not ws_base.endswith("/"):
            ws_base += "/"
        ks = await open_socket(run.reactor, f"{ws_base}kernel/{info['id']}/channels", tls_options, args.timeout)
        ks.session = rec
    except Exception as e:  # noqa: BLE001
        why = reason(e, args.timeout)
        run.record("kernel start", started, False, why, rec)
        run.record(FIRST_RESULT, started, False, why)
        await close_kernel(run, http, info.get("id"))
        return
    run.record("kernel start", started, True)
    try:
        ok = await compute(run, ks, session, "first computation")
        run.record(FIRST_RESULT, started, ok, "" if ok else rec["error"])
        for _ in range(args.computations):
            if not ok or run.reactor.seconds() > run.deadline:
                break
            if args.pause:          # a visitor reading the answer: the kernel stays held meanwhile
                await deferLater(run.reactor, args.pause, lambda: None)
            ok = await compute(run, ks, session, "later computation")
        if ok and args.interact_moves:
            ok = await (interact_ours if args.interact == "ours" else interact_ipywidgets)(run, ks, session)
        if not ok:
            run.sessions_broken += 1
    finally:
        run.sessions_done += 1
        if ks.proto is not None and not ks.closed:
            ks.proto.sendClose(1000)
        await close_kernel(run, http, info["id"])


async def close_kernel(run: Run, http, kid: str | None) -> None:
    if kid:
        try:
            await http.delete(run.args.url + f"kernel/{kid}").addTimeout(run.args.timeout, run.reactor)
        except Exception:  # noqa: BLE001 - the kernel may already be gone
            pass


async def user_loop(run: Run, http, tls_options, delay: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(run.reactor, delay, lambda: None)
    while run.reactor.seconds() < run.deadline:
        try:
            await one_session(run, http, tls_options)
        except Exception as e:  # noqa: BLE001 - one session's surprise must not end the user (nor the run)
            run.record("session", run.now(), False, f"unexpected: {reason(e, run.args.timeout)}")
        if run.args.think:
            await deferLater(run.reactor, run.args.think, lambda: None)


async def main_async(reactor, args) -> Run:
    from twisted.internet.defer import Deferred, gatherResults

    http, tls_options, pool = make_clients(reactor, args)
    run = Run(reactor, args)
    users = [Deferred.fromCoroutine(user_loop(run, http, tls_options, args.ramp_up * i / max(1, args.users)))
             for i in range(args.users)]
    await gatherResults(users)
    run.duration = reactor.seconds() - run.t0
    await pool.closeCachedConnections()
    return run


def write_outputs(run: Run, args) -> None:
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["phase", "start_s", "latency_s", "ok", "error"])
            for s in run.samples:
                w.writerow([s.phase, f"{s.start:.4f}", f"{s.latency:.6f}", int(s.ok), s.error])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"t0": run.t0_wall, "samples": [asdict(s) for s in run.samples],
                       "sessions": run.sessions,
                       "summary": [asdict(s) for s in summarise(run.samples, run.duration)]}, f)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 5))
        for phase in dict.fromkeys(s.phase for s in run.samples):
            pts = [(s.start, s.latency * 1000) for s in run.samples if s.phase == phase and s.ok]
            if pts:
                ax.scatter(*zip(*pts), s=6, label=phase)
            bad = [s.start for s in run.samples if s.phase == phase and not s.ok]
            if bad:
                ax.scatter(bad, [0] * len(bad), marker="x", color="red", s=20)
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel("latency (ms)")
        ax.set_yscale("log")
        ax.set_title(f"{args.users} users against {args.url} (red x: errors)")
        ax.legend()
        fig.savefig(args.plot, dpi=100)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="base URL of an edge or cell server, ending in /")
    p.add_argument("--cafile", help="CA certificate to trust for https (the dev CA: var/certs/ca.pem)")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--ramp-up", type=float, default=5.0, help="seconds over which users start")
    p.add_argument("--duration", type=float, default=30.0, help="seconds; users start no session after it")
    p.add_argument("--computations", type=int, default=2, help="sums after the first, per session")
    p.add_argument("--interact-moves", type=int, default=0, help="slider moves per session (0: no interact)")
    p.add_argument("--interact", choices=["ours", "ipywidgets"], default="ours",
                   help="the project's @interact (default) or a bare ipywidgets slider")
    p.add_argument("--think", type=float, default=0.0, help="pause between a user's sessions")
    p.add_argument("--pause", type=float, default=0.0, help="pause before each later computation (kernel held)")
    p.add_argument("--timeout", type=float, default=30.0, help="per operation")
    p.add_argument("--csv"), p.add_argument("--json"), p.add_argument("--plot")
    args = p.parse_args(argv)
    if not args.url.endswith("/"):
        args.url += "/"
    if not (1 <= args.users <= 2000) or not (0 < args.duration <= 3600):
        p.error("--users must be 1..2000 and --duration 0..3600 s")
    return args


def react(coroutine_function, *args):
    """Run ``coroutine_function(reactor, *args)`` on the global reactor (the
    load tools are programs, not libraries) and return what it returned."""
    from twisted.internet import defer, task

    result = []

    def go(reactor):
        async def body():
            result.append(await coroutine_function(reactor, *args))
        return defer.Deferred.fromCoroutine(body())

    try:
        task.react(go)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    return result[0]


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    check_loopback(args.url)
    started = time.time()
    run = react(main_async, args)
    print(f"{args.users} users, {run.duration:.1f} s, {run.sessions_done} sessions "
          f"({run.sessions_broken} broken) against {args.url}")
    print(table(summarise(run.samples, run.duration)))
    write_outputs(run, args)
    print(f"wall time {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
