"""Kernel-side benchmark: forked kernels through ``KernelPoolService``.

Prints one table (not a test).  Measures, on this machine:

* provider ``fork()`` and start -> ready (start command sent -> welcome +
  kernel_info reply + idle seen by the cell server's sockets);
* take -> ``1+1`` reply (execute_reply and idle) through our ``Kernel``, warm pool;
* execute round trip on an open kernel: ours vs. a plain jupyter_client
  ``BlockingKernelClient`` on a ``KernelManager`` kernel, and the cold
  ``KernelManager`` start -> first reply for comparison;
* sustained fresh kernels per second: take -> ``1+1`` -> shutdown, by
  ``--workers`` concurrent loops for ``--kernels`` kernels;
* PSS per idle ready kernel (``/proc/<pid>/smaps_rollup``);
* CPU time per fresh kernel during the rate test: the cell-server side (this
  process), the provider, and every kernel it reaped (their ``cutime`` /
  ``cstime``).  On a shared machine the rate moves with other load; the CPU
  each kernel costs moves much less, so it is the figure to compare.

    python -m loadtest.kernels_bench [--kernels 200] [--workers 4] [--samples 100]
                                     [--sandbox | --no-sandbox]

As root the pool's kernels run sandboxed (``cellserver.sandbox``) and, by
default, the whole pool side is measured three times in the same run:
without the sandbox, with it but without its ``mounts``, ``pidns`` and
``landlock`` layers, and with every layer; the cost of the sandbox is printed (issue 3: at most 20% of
throughput).  ``--sandbox`` / ``--no-sandbox`` measure only one of them;
``--rounds 2`` repeats the modes in reverse order (a shared machine's load
drifts) and pools the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from cellserver.provider.plan import UNMERGED_READY
from loadtest.procstat import cpu_seconds, stat_fields
from loadtest.stats import percentile

CODE = "1+1"


def fmt(name: str, values: list[float], unit: str = "ms", target: str = "") -> str:
    v = sorted(values)
    if not v:
        return f"{name:<46} {'-':>6}"
    return (f"{name:<46} {len(v):>6} {statistics.median(v):>9.2f} {percentile(v, 99):>9.2f} "
            f"{unit:>5}  {target}")


def jupyter_client_figures(samples: int, cold: int) -> tuple[list[float], list[float]]:
    """(round trips on an open kernel in ms, cold start -> first reply in ms)."""
    from jupyter_client import KernelManager
    starts, rts = [], []
    for i in range(cold):
        t0 = time.perf_counter()
        km = KernelManager(kernel_name="python3")
        km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive(CODE, timeout=30)
        starts.append((time.perf_counter() - t0) * 1000)
        if i == 0:
            kc.execute_interactive(CODE, timeout=30)
            for _ in range(samples):
                t = time.perf_counter()
                kc.execute_interactive(CODE, timeout=30, output_hook=lambda m: None)
                rts.append((time.perf_counter() - t) * 1000)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return rts, starts


def children_system_seconds(pid: str | int) -> float:
    """System CPU of a process's reaped children (``cstime``), in seconds."""
    return int(stat_fields(pid)[14]) / os.sysconf("SC_CLK_TCK")


def children_faults(pid: str | int) -> int:
    """Minor page faults of a process's reaped children (``cminflt``): for
    the provider, its kernels' copy-on-write copies of the template, each a
    trap and a 4 KiB copy (~3.7 us apiece on the 2026-12-03 VM)."""
    return int(stat_fields(pid)[8])


def ksm_full_scans() -> int | None:
    """ksmd's count of full passes, None when it is not running."""
    try:
        with open("/sys/kernel/mm/ksm/run") as f:
            if f.read().strip() != "1":
                return None
        with open("/sys/kernel/mm/ksm/full_scans") as f:
            return int(f.read())
    except OSError:
        return None


def _ksmd_pid() -> int | None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "ksmd":
                    return int(pid)
        except OSError:
            pass
    return None


def pss_kb(pid: int, tree: bool = True) -> int | None:
    """PSS of the process and its descendants: a sandboxed kernel's pid is its
    pid namespace's init, and the kernel proper is init's child."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            own = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        if not tree:
            return own
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except (OSError, StopIteration):
        return None
    return own + sum(filter(None, (pss_kb(k) for k in kids)))


async def ours(reactor, args, sandbox=None) -> dict:
    from jupyter_client.session import Session
    from twisted.internet import defer, task

    from cellserver.pool import KernelPoolService
    from cellserver.provider_settings import ProviderSettings

    client = Session(key=b"unused")
    from cellserver.sandbox.settings import SandboxSettings
    runtime = tempfile.mkdtemp(prefix="csb-", dir=args.runtime_parent)
    os.chmod(runtime, 0o711)            # sandboxed kernels (other accounts) traverse it
    settings = ProviderSettings(ready_kernels=args.ready, max_kernels=max(32, args.ready + args.workers),
                                runtime_dir=runtime, take_wait=30, merge_idle=args.merge_idle,
                                sandbox=sandbox or SandboxSettings(enabled=False))
    pool = KernelPoolService(reactor, settings, "bench")
    pool.startService()
    out: dict = {}
    if settings.sandbox.enabled:
        from cellserver.sandbox.apply import detect
        from cellserver.sandbox.settings import plan
        p = plan(settings.sandbox, detect(settings.sandbox))
        out["layers"] = [k for k, v in p.layers.items() if v]
        out["missing"] = p.missing

    async def until(pred, timeout=60):
        for _ in range(int(timeout / 0.01)):
            if pred():
                return
            await task.deferLater(reactor, 0.01)
        raise RuntimeError("timed out")

    async def execute(k, code=CODE):
        msg = client.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                             "user_expressions": {}, "allow_stdin": False})
        mid, seen, done = msg["header"]["msg_id"], set(), defer.Deferred()

        def on(m):
            if m.parent_msg_id == mid:
                if m.msg_type == "execute_reply":
                    seen.add("r")
                elif m.msg_type == "status" and b"idle" in m.raw_content:
                    seen.add("i")
                if len(seen) == 2 and not done.called:
                    done.callback(None)
        remove = k.add_listener(on)
        k.send("shell", msg)
        await done.addTimeout(30, reactor)
        remove()

    try:
        await until(lambda: pool.stats().ready >= args.ready)
        # PSS of idle ready kernels (give them a moment to settle)
        await task.deferLater(reactor, 2.0)
        out["pss"] = [p / 1024 for p in (pss_kb(k.pid) for k in list(pool._ready.values())) if p]
        out["pss_template"] = (pss_kb(pool.template_pid, tree=False) or 0) / 1024
        scans0, t0 = ksm_full_scans(), time.perf_counter()
        if args.merge_idle and scans0 is not None and args.settle > 0:
            # merged while they wait: three full ksmd passes (two merge, one confirms)
            while ksm_full_scans() < scans0 + 3 and time.perf_counter() - t0 < args.settle:
                await task.deferLater(reactor, 1.0)
            out["pss_merged"] = [p / 1024 for p in (pss_kb(k.pid) for k in list(pool._ready.values())) if p]
            out["settle_s"] = time.perf_counter() - t0
        # take -> 1+1 reply on a warm pool (one at a time, pool refilled in between)
        take_rt = []
        pool.ready_times.clear()
        for _ in range(args.samples // 2):
            await until(lambda: pool.stats().ready >= args.ready)
            t = time.perf_counter()
            k = await pool.take()
            await execute(k)
            take_rt.append((time.perf_counter() - t) * 1000)
            await k.shutdown("bench")
        out["take_rt"] = take_rt
        out["single_ready"] = [x * 1000 for x in pool.ready_times]
        # round trip on an open kernel
        k = await pool.take()
        await execute(k)
        rts = []
        for _ in range(args.samples):
            t = time.perf_counter()
            await execute(k)
            rts.append((time.perf_counter() - t) * 1000)
        out["open_rt"] = rts
        await k.shutdown("bench")
        # sustained fresh kernels: take -> 1+1 -> shutdown
        await until(lambda: pool.stats().ready >= args.ready)
        pool.ready_times.clear()
        pool.fork_times.clear()
        left = [args.kernels]

        async def worker():
            while left[0] > 0:
                left[0] -= 1
                kk = await pool.take()
                await execute(kk)
                await kk.shutdown("bench")
        t = time.perf_counter()
        # the provider is its logic and the template, the kernels' parent
        pp, tp = pool.provider_pid, pool.template_pid

        def provider_kernels_cpu():
            own = cpu_seconds(tp)
            return cpu_seconds(pp) + own, cpu_seconds(tp, children=True) - own
        own0, (prov0, kern0) = cpu_seconds("self"), provider_kernels_cpu()
        ksmd = _ksmd_pid()
        ksmd0 = cpu_seconds(ksmd) if ksmd else 0.0
        faults0, ksys0 = children_faults(tp), children_system_seconds(tp)
        await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(args.workers)])
        out["rate"] = args.kernels / (time.perf_counter() - t)
        own, (prov, kern) = cpu_seconds("self") - own0, provider_kernels_cpu()
        prov, kern = prov - prov0, kern - kern0
        out["cpu_ms"] = [1000 * x / args.kernels for x in (own, prov, kern)]
        out["kernel_sys_ms"] = [1000 * (children_system_seconds(tp) - ksys0) / args.kernels]
        out["faults"] = [(children_faults(tp) - faults0) / args.kernels]
        out["ksmd_ms"] = [1000 * (cpu_seconds(ksmd) - ksmd0) / args.kernels] if ksmd else []
        out["ready_times"] = [s * 1000 for s in pool.ready_times]
        out["fork_times"] = list(pool.fork_times)
    finally:
        await pool.stopService()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", type=int, default=200, help="fresh kernels for the rate test")
    ap.add_argument("--workers", type=int, default=4, help="concurrent take->1+1->shutdown loops")
    ap.add_argument("--ready", type=int, default=8, help="ready_kernels of the pool")
    ap.add_argument("--samples", type=int, default=100, help="round trips per latency figure")
    ap.add_argument("--cold", type=int, default=5, help="cold KernelManager starts to time")
    ap.add_argument("--sandbox", action=argparse.BooleanOptionalAction, default=None,
                    help="kernels sandboxed (needs root) or not; default as root: off, no mounts/pidns/landlock, "
                         "all layers")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the modes, every other round reversed")
    ap.add_argument("--merge-idle", action=argparse.BooleanOptionalAction, default=True,
                    help="idle ready kernels may have their pages merged (provider/samepages.py)")
    ap.add_argument("--runtime-parent", default="/tmp",
                    help="where the pool's runtime directory (kernels' sockets and work dirs) is made")
    ap.add_argument("--settle", type=float, default=180.0,
                    help="at most this many seconds for ksmd's three passes before the merged PSS figure "
                         "(0: skip it)")
    args = ap.parse_args(argv)
    from cellserver.sandbox.settings import SandboxSettings
    off, all_layers = ("no sandbox", None), ("sandbox", SandboxSettings())
    if args.sandbox is None:
        modes = [off, ("sandbox without mounts, pidns, landlock",
                       SandboxSettings(mounts=False, pidns=False, landlock=False)), all_layers] \
            if os.geteuid() == 0 else [off]
    else:
        modes = [all_layers if args.sandbox else off]

    jc_rt, jc_start = jupyter_client_figures(args.samples, args.cold)
    from twisted.internet import defer, task

    def table(r: dict, label: str) -> None:
        ratio = (statistics.median(r["open_rt"]) / statistics.median(jc_rt)
                 if r["open_rt"] and jc_rt else float("nan"))     # --samples 0 or --cold 0: no ratio
        mode = f"{label} (layers {r['layers']}; missing {r['missing']})" if "layers" in r else label
        print(f"kernel side benchmark: {os.cpu_count()} CPUs, {args.kernels} fresh kernels, "
              f"{args.workers} workers, ready_kernels={args.ready}, {mode}")
        print(f"{'figure':<46} {'n':>6} {'median':>9} {'p99':>9} {'unit':>5}  target")
        print(fmt("provider fork()", r["fork_times"]))
        print(fmt("start command -> kernel ready, one at a time", r["single_ready"]))
        print(fmt("start command -> kernel ready, rate test", r["ready_times"]))
        print(fmt("take -> 1+1 reply+idle, warm pool (ours)", r["take_rt"], target="<= 20 ms"))
        print(fmt("KernelManager cold start -> 1+1 reply", jc_start))
        print(fmt("1+1 round trip, open kernel (ours)", r["open_rt"]))
        print(fmt("1+1 round trip, open kernel (jupyter_client)", jc_rt))
        print(f"{'round trip ratio ours / jupyter_client':<46} {'':>6} {ratio:>9.2f}")
        rates = " ".join(f"{x:.1f}" for x in r["rates"])
        print(f"{'sustained fresh kernels (take->1+1->shutdown)':<46} {'':>6} {r['rate']:>9.1f} "
              f"{'':>9} {'/s':>5}  >= 40/s  (rounds: {rates})")
        own, prov, kern = (statistics.mean(c[i] for c in r["cpus"]) for i in range(3))
        print(f"{'CPU per fresh kernel, all processes':<46} {'':>6} {own + prov + kern:>9.1f} {'':>9} "
              f"{'ms':>5}  ({own:.1f} cell server, {prov:.1f} provider, {kern:.1f} kernel, "
              f"{statistics.mean(r['kernel_sys_ms']):.1f} of it in Linux)")
        print(f"{'page faults per fresh kernel (its copies)':<46} {'':>6} {statistics.mean(r['faults']):>9.0f}")
        print(fmt("PSS per idle ready kernel, just started", r["pss"], unit="MB",
                  target="" if r.get("pss_merged") else "<= 15 MB"))
        if r.get("pss_merged"):
            print(fmt(f"PSS per idle ready kernel, {r['settle_s']:.0f} s later", r["pss_merged"], unit="MB",
                      target=f"<= 15 MB (merged by ksmd; {UNMERGED_READY} kept unmerged)"))
        if r.get("ksmd_ms"):
            print(f"{'ksmd CPU per fresh kernel, rate test':<46} {'':>6} {statistics.mean(r['ksmd_ms']):>9.2f} "
                  f"{'':>9} {'ms':>5}")
        print(f"{'PSS of the template (provider)':<46} {'':>6} {r['pss_template']:>9.1f} {'':>9} {'MB':>5}")
        print()

    async def run(reactor):
        results: dict[str, dict] = {}
        for rnd in range(args.rounds):
            for label, sb in (modes if rnd % 2 == 0 else modes[::-1]):
                r = await ours(reactor, args, sb)
                if label in results:           # pool the rounds
                    acc = results[label]
                    for key, value in r.items():
                        if isinstance(value, list) and key not in ("layers", "missing"):
                            acc[key] = acc[key] + value
                    acc["rates"].append(r["rate"])
                    acc["cpus"].append(r["cpu_ms"])
                else:
                    r["rates"], r["cpus"] = [r["rate"]], [r["cpu_ms"]]
                    results[label] = r
        for r in results.values():
            r["rate"] = statistics.mean(r["rates"])
        for label, r in results.items():
            table(r, label)
        base = results.get(off[0])
        for label, r in results.items():
            if base is None or r is base:
                continue
            cost = 1 - r["rate"] / base["rate"]
            print(f"{label + ' cost, fresh kernels/s':<46} {base['rate']:>9.1f} -> {r['rate']:.1f} /s: "
                  f"{cost * 100:.1f}% of throughput lost (target <= 20%)")
            for key, name in (("single_ready", "start -> ready, one at a time"),
                              ("ready_times", "start -> ready, rate test")):
                a, b = statistics.median(base[key]), statistics.median(r[key])
                print(f"{label + ' cost, ' + name:<46} {a:>9.2f} -> {b:.2f} ms median ({b - a:+.2f} ms)")

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
