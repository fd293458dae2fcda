"""``/service`` on one real cell server, and what each computation costs whom.

Why a benchmark of its own: on this VM class the machine's speed drifts by
a third within minutes, so computations per second alone cannot tell one
tree from another.  What a computation costs in CPU, split between the cell
server, the kernel provider (its logic and its template) and the kernel
(the template's reaped children), and the copy-on-write faults of each
kernel, move far less; this prints them beside the rate.  It starts its own ``twistd cellserver`` on a
free loopback port (sandboxed as root unless ``--no-sandbox``), waits for
its ready kernels, runs ``ab`` (``--requests`` computations, ``--concurrency``
at a time, ``print(1+1)``) for each round, and stops the server::

    python -m loadtest.service_bench                     # 200 computations, c=4, 2 rounds
    python -m loadtest.service_bench --ready-kernels 4 --concurrency 8
    python -m loadtest.service_bench -- --sandbox-skip mounts   # what a layer costs

Kernels still alive at the end are not in the kernels' figure: the pool is
full before and after each round, so the ones started in a round and the
ones handed out in it are about the same number.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from loadtest.http_bench import parse_ab
from loadtest.permalink_failover import free_ports
from loadtest.procstat import stat_fields

CODE_FORM = "code=print(1%2B1)&accepted_tos=true"


def health(base: str) -> dict | None:
    try:
        with urllib.request.urlopen(base + "healthz", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def child_pid(parent: int, says: bytes, where: str = "cmdline") -> int | None:
    """A child of ``parent`` whose ``/proc/<pid>/<where>`` holds ``says``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(stat_fields(entry)[1]) != parent:
                continue
            with open(f"/proc/{entry}/{where}", "rb") as f:
                if says in f.read():
                    return int(entry)
        except (OSError, IndexError, ValueError):
            continue
    return None


def provider_pids(server_pid: int) -> tuple[int, int] | None:
    """The provider's two processes: its logic, and the warm template that
    forks the kernels (cellserver/provider/forkserver.py)."""
    logic = child_pid(server_pid, b"cellserver.provider")
    template = child_pid(logic, b"cs-template", "comm") if logic else None
    return (logic, template) if template else None


def counters(server: int, provider: tuple[int, int]) -> dict[str, float]:
    """CPU ticks and minor faults: the server's, the provider's own (logic
    and template), the kernels' (the template's reaped children)."""
    s, p, t = stat_fields(server), stat_fields(provider[0]), stat_fields(provider[1])
    return {"server": int(s[11]) + int(s[12]),
            "provider": int(p[11]) + int(p[12]) + int(t[11]) + int(t[12]),
            "kernels": int(t[13]) + int(t[14]), "provider_faults": int(p[7]) + int(t[7]),
            "kernel_faults": int(t[8])}


def wait_ready(base: str, want: int, child: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the cell server exited ({child.returncode})")
        h = health(base)
        if h and h.get("ready", 0) >= want and not h.get("starting"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the cell server did not get {want} ready kernels within {timeout} s")


def run_ab(base: str, n: int, c: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        body, csv, tsv = (os.path.join(d, name) for name in ("body", "pct.csv", "requests.tsv"))
        with open(body, "w") as f:
            f.write(CODE_FORM)
        cmd = ["ab", "-q", "-k", "-n", str(n), "-c", str(min(c, n)), "-s", str(int(timeout)), "-e", csv,
               "-g", tsv, "-p", body, "-T", "application/x-www-form-urlencoded", base + "service"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10 * n)
        if out.returncode != 0 and "Complete requests" not in out.stdout:
            raise RuntimeError(f"ab failed: {out.stderr.strip() or out.stdout[-500:]}")

        def read(path):
            return open(path).read() if os.path.exists(path) else ""
        figures = parse_ab(out.stdout, read(csv), read(tsv))
        non2xx = re.search(r"^Non-2xx responses:\s+(\d+)", out.stdout, re.M)
        figures["non2xx"] = int(non2xx.group(1)) if non2xx else 0
        return figures


def one_round(base: str, server: int, provider: tuple[int, int], args) -> dict:
    before = counters(server, provider)
    figures = run_ab(base, args.requests, args.concurrency, args.timeout)
    after = counters(server, provider)
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    n = args.requests
    cost = {k: (after[k] - before[k]) * tick_ms / n for k in ("server", "provider", "kernels")}
    return {"rps": figures.get("rps") or 0.0, "p50": figures.get("p50_ms"), "p99": figures.get("p99_ms"),
            "failed": figures.get("failed", 0), "non2xx": figures.get("non2xx", 0), **cost,
            "cpu": sum(cost.values()),
            "kernel_faults": (after["kernel_faults"] - before["kernel_faults"]) / n,
            "provider_faults": (after["provider_faults"] - before["provider_faults"]) / n}


def table(rounds: list[dict], label: str) -> str:
    rows = [("computations per second", "rps", "/s", ">= 40/s"),
            ("p50 / request", "p50", "ms", ""), ("p99 / request", "p99", "ms", ""),
            ("CPU per computation, all three", "cpu", "ms", ""),
            ("  of it the cell server", "server", "ms", ""), ("  the provider", "provider", "ms", ""),
            ("  the kernel", "kernels", "ms", ""),
            ("copy-on-write faults per kernel", "kernel_faults", "", ""),
            ("the provider's own faults per kernel", "provider_faults", "", "")]
    out = [f"/service on one cell server: {label}",
           f"{'figure':<40} {'mean':>9} {'rounds':<28} {'unit':>4}  target"]
    for name, key, unit, target in rows:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if not values:
            continue
        out.append(f"{name:<40} {statistics.mean(values):>9.1f} "
                   f"{', '.join(f'{v:.1f}' for v in values):<28} {unit:>4}  {target}")
    failed = sum(r["failed"] + r["non2xx"] for r in rounds)
    out.append(f"{'failed or non-2xx computations':<40} {failed:>9}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="computations per round")
    ap.add_argument("--concurrency", type=int, default=4, help="ab -c")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ready-kernels", type=int, default=None, help="the server's --ready-kernels (default: its own)")
    ap.add_argument("--sandbox", action=argparse.BooleanOptionalAction, default=os.geteuid() == 0,
                    help="sandboxed kernels (needs root; the default as root)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per request (ab -s)")
    ap.add_argument("server_args", nargs="*", metavar="-- CELLSERVER-OPTION",
                    help="more options for twistd cellserver, after --, e.g. -- --sandbox-skip mounts")
    args = ap.parse_args(argv)
    if shutil.which("ab") is None:
        print("service_bench needs ab (apache2-utils; deploy/install installs it)", file=sys.stderr)
        return 2
    port = free_ports(1)[0]
    base = f"http://127.0.0.1:{port}/"
    runtime = f"/tmp/cs-sb-{port}"         # made by the server (kernels of other accounts must reach it)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    cmd = [twistd, "-n", "--pidfile=", "cellserver", "--node", "sb", "--listen", f"tcp:{port}:interface=127.0.0.1",
           "--runtime-dir", runtime, "--max-kernels", "32", "--kernels-per-session", "32"]
    if args.ready_kernels is not None:
        cmd += ["--ready-kernels", str(args.ready_kernels)]
    if not args.sandbox:
        cmd.append("--no-sandbox")
    cmd += args.server_args
    log = tempfile.NamedTemporaryFile("w+", prefix="service_bench-", suffix=".log")
    child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(0.5)
        h = None
        deadline = time.monotonic() + 60
        while h is None and time.monotonic() < deadline and child.poll() is None:
            h = health(base)
            time.sleep(0.2)
        if h is None:
            raise RuntimeError("the cell server did not answer /healthz")
        ready = args.ready_kernels if args.ready_kernels is not None else h["ready"] + h["starting"]
        wait_ready(base, ready, child)
        provider = provider_pids(child.pid)
        if provider is None:
            raise RuntimeError("no kernel provider under the cell server")
        rounds = []
        for _ in range(args.rounds):
            wait_ready(base, ready, child)
            rounds.append(one_round(base, child.pid, provider, args))
        label = (f"{'sandboxed' if args.sandbox else 'no sandbox'} {' '.join(args.server_args)}, {ready} ready kernels, "
                 f"{args.requests} computations x {args.rounds} rounds, c={args.concurrency}, {os.cpu_count()} CPUs")
        print(table(rounds, label))
        return 0
    except RuntimeError as e:
        log.seek(0)
        print(f"service_bench: {e}\n--- the cell server's log (end) ---\n{log.read()[-3000:]}", file=sys.stderr)
        return 1
    finally:
        try:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
