"""Interact update round trip over a cell server's (or the edge's) websocket.

Each simulated user gets a kernel (``POST /kernel``), opens its websocket and
runs a SageMathCell interact whose function prints its argument::

    @interact
    def f(x=slider(0, 100000)):
        print(x)

then moves the slider the way the browser's widget manager does: a
``comm_msg`` ``update`` of the slider's ``value``.  The round trip is timed
from sending that message to receiving the interact's ``Output`` widget
update whose ``outputs`` show the new value (what the page then draws).
A user sends its next move only after the previous one came back (the widget
manager keeps one update in flight per control), every ``--interval``
seconds (0 = as fast as possible).

Prints a table (count, errors, p50/p90/p99, throughput) and the kernel start
times; traffic only to loopback, bounded by ``--moves`` and ``--timeout``.

    python -m loadtest.interact_bench --url http://127.0.0.1:8101/ --moves 300
    python -m loadtest.interact_bench --pool --moves 300     # kernel side only: no HTTP, no websocket
    python -m loadtest.interact_bench --url http://127.0.0.1:8101/ --users 20 --interval 1 --moves 30
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import uuid

from loadtest.sessions import Run, check_loopback, execute, jupyter_message, make_clients, open_socket
from loadtest.stats import summarise, table

INTERACT = """
from cellserver.interacts import interact, slider
@interact
def f(x=slider(0, 100000)):
    print(x)
"""
PHASE = "interact update"


def _type(m: dict) -> str:
    return m.get("header", {}).get("msg_type", "")


def _output_text(m: dict, output_id: str) -> str | None:
    """The text an Output widget update shows, if ``m`` is one for ``output_id``."""
    if _type(m) != "comm_msg" or m.get("content", {}).get("comm_id") != output_id:
        return None
    state = m["content"].get("data", {}).get("state", {})
    if "outputs" not in state:
        return None
    return "".join(o.get("text", "") for o in state["outputs"])


async def set_up_interact(run: Run, ks, session: str) -> tuple[str, str]:
    """Run the interact; returns (slider comm id, output comm id)."""
    comms: dict[str, str] = {}

    feed = ks.feed

    def note(m):
        if _type(m) == "comm_open":
            state = m.get("content", {}).get("data", {}).get("state", {})
            comms[state.get("_model_name", "")] = m["content"]["comm_id"]
        feed(m)

    ks.feed = note  # see every message while the interact is made
    msg = execute(INTERACT, session)
    mid = msg["header"]["msg_id"]
    reply = ks.wait_for(lambda m: _type(m) == "execute_reply"
                        and m.get("parent_header", {}).get("msg_id") == mid, run.reactor, run.args.timeout)
    # iopub and shell are separate streams: the comm_opens are certain only
    # once the request's iopub "idle" has come.
    idle = ks.wait_for(lambda m: _type(m) == "status" and m.get("parent_header", {}).get("msg_id") == mid
                       and m.get("content", {}).get("execution_state") == "idle",
                       run.reactor, run.args.timeout)
    ks.send(msg)
    got = await reply
    await idle
    if got["content"].get("status") != "ok":
        raise RuntimeError(f"interact failed: {got['content'].get('ename')}: {got['content'].get('evalue')}")
    ks.feed = feed
    if "IntSliderModel" not in comms or "OutputModel" not in comms:
        raise RuntimeError(f"interact opened no slider/output comm (got {sorted(comms)})")
    return comms["IntSliderModel"], comms["OutputModel"]


async def move(run: Run, ks, session: str, slider_id: str, output_id: str, value: int) -> bool:
    want = f"{value}\n"
    started = run.now()
    shown = ks.wait_for(lambda m: _output_text(m, output_id) == want, run.reactor, run.args.timeout)
    ks.send(jupyter_message("comm_msg", {"comm_id": slider_id, "data": {
        "method": "update", "state": {"value": value}, "buffer_paths": []}}, session))
    try:
        await shown
    except Exception as e:  # noqa: BLE001 - counted by kind
        run.record(PHASE, started, False, type(e).__name__)
        return False
    run.record(PHASE, started, True)
    return True


async def one_user(run: Run, http, tls_options, delay: float) -> None:
    from twisted.internet.task import deferLater

    args = run.args
    await deferLater(run.reactor, delay, lambda: None)
    session = uuid.uuid4().hex
    started = run.now()
    ks = None
    kid = None
    try:
        resp = await http.post(args.url + "kernel", data={
            "accepted_tos": "true", "timeout": "60", "CellSessionID": session}).addTimeout(args.timeout, run.reactor)
        body = await resp.content()
        if resp.code != 200:
            run.record("kernel start", started, False, f"HTTP {resp.code}")
            return
        info = json.loads(body)
        kid = info["id"]
        ws_base = info.get("ws_url") or args.url.replace("http", "ws", 1)
        ws_base = ws_base if ws_base.endswith("/") else ws_base + "/"
        ks = await open_socket(run.reactor, f"{ws_base}kernel/{kid}/channels", tls_options, args.timeout)
        run.record("kernel start", started, True)
        t = run.now()
        slider_id, output_id = await set_up_interact(run, ks, session)
        run.record("interact created", t, True)
        last = -1
        for _ in range(args.moves):
            value = random.randint(0, 100000)
            while value == last:
                value = random.randint(0, 100000)
            last = value
            t = run.now()
            if not await move(run, ks, session, slider_id, output_id, value):
                break
            wait = args.interval - (run.now() - t)
            if wait > 0:
                await deferLater(run.reactor, wait, lambda: None)
    except Exception as e:  # noqa: BLE001
        run.record("kernel start" if ks is None else "interact created", started, False,
                   f"{type(e).__name__}: {e}"[:120])
    finally:
        if ks is not None and ks.proto is not None and not ks.closed:
            ks.proto.sendClose(1000)
        if kid:
            try:
                await http.delete(args.url + f"kernel/{kid}").addTimeout(args.timeout, run.reactor)
            except Exception:  # noqa: BLE001 - may be gone already
                pass


class PoolSocket:
    """``--pool``: the same conversation straight to a kernel of an in-process
    KernelPoolService (what the cell server relays), to separate the kernel's
    share of the round trip from the server's and the websocket's."""

    def __init__(self, kernel):
        from loadtest.sessions import KernelSocket
        self._ks = KernelSocket()
        self.kernel = kernel
        self.proto = None
        self.closed = None
        kernel.add_listener(lambda m: self.feed({
            "header": m.header, "parent_header": m.parent_header, "content": m.content()}))

    def feed(self, msg):
        self._ks.feed(msg)

    @property
    def waiters(self):
        return self._ks.waiters

    def wait_for(self, pred, reactor, timeout):
        return self._ks.wait_for(pred, reactor, timeout)

    def send(self, msg):
        msg = dict(msg)
        channel = msg.pop("channel", "shell")
        self.kernel.send(channel, msg)


async def pool_user(run: Run) -> None:
    import tempfile
    from cellserver.pool import KernelPoolService
    from cellserver.provider_settings import DEFAULT_PRELOAD, ProviderSettings

    pool = KernelPoolService(run.reactor, ProviderSettings(
        runtime_dir=tempfile.mkdtemp(prefix="csbench-", dir="/tmp"), ready_kernels=1, max_kernels=2,
        preload=tuple(DEFAULT_PRELOAD) + ("cellserver.interacts",)), "bench")
    pool.startService()
    try:
        started = run.now()
        kernel = await pool.take()
        run.record("kernel start", started, True)
        ks = PoolSocket(kernel)
        session = uuid.uuid4().hex
        t = run.now()
        slider_id, output_id = await set_up_interact(run, ks, session)
        run.record("interact created", t, True)
        for i in range(run.args.moves):
            if not await move(run, ks, session, slider_id, output_id, (i * 7919) % 100000 + 1):
                break
        await kernel.shutdown("bench over")
    finally:
        await pool.stopService()


async def main_async(reactor, args) -> Run:
    from twisted.internet.defer import gatherResults, Deferred

    run = Run(reactor, args)
    if args.pool:
        await pool_user(run)
        return run
    http, tls_options, pool = make_clients(reactor, args)
    users = [Deferred.fromCoroutine(one_user(run, http, tls_options, i * args.ramp_up / max(args.users, 1)))
             for i in range(args.users)]
    await gatherResults(users)
    await pool.closeCachedConnections()
    return run


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="loadtest.interact_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="cell server or edge base URL (loopback only)")
    ap.add_argument("--pool", action="store_true",
                    help="no server: one kernel of an in-process kernel pool (the kernel's share)")
    ap.add_argument("--cafile", help="CA certificate to trust for https")
    ap.add_argument("--users", type=int, default=1, help="simulated users, each with its own kernel")
    ap.add_argument("--moves", type=int, default=200, help="slider moves per user")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between a user's moves")
    ap.add_argument("--ramp-up", type=float, default=0.0, help="spread user starts over this many seconds")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args(argv)
    if args.pool:
        args.url = args.url or "pool:"
        args.users = 1
    elif not args.url:
        ap.error("give --url (or --pool)")
    elif not args.url.endswith("/"):
        args.url += "/"
    if args.users < 1 or args.moves < 1 or args.users > 500 or args.moves > 100000:
        ap.error("--users must be 1..500 and --moves 1..100000")
    args.duration = 10**9  # Run wants one; the run is bounded by --moves
    return args


def main(argv=None) -> int:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    args = parse_args(argv)
    if not args.pool:
        check_loopback(args.url)
    result = {}

    def done(run):
        result["run"] = run
        reactor.stop()

    def failed(f):
        result["error"] = f
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main_async(reactor, args)).addCallbacks(done, failed))
    reactor.run()
    if "error" in result:
        result["error"].printTraceback()
        return 1
    run = result["run"]
    elapsed = run.now()
    print(f"interact_bench: {args.users} user(s) x {args.moves} moves, interval {args.interval}s, "
          f"url {args.url}, {elapsed:.1f}s")
    print(table(summarise(run.samples, elapsed)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([s.__dict__ for s in run.samples], f)
    bad = [s for s in run.samples if not s.ok]
    for s in bad[:5]:
        print(f"error in {s.phase}: {s.error}", file=sys.stderr)
    return 1 if bad or not any(s.phase == PHASE for s in run.samples) else 0


if __name__ == "__main__":
    sys.exit(main())
