"""The failover drill: kill servers on purpose under load, and count.

Against a cluster started with ``deploy/cluster up`` (same ``--config``), it
runs the session load tester (``loadtest.sessions``) and a permalink writer
while it, in turn:

1. kills a cell server with SIGKILL,
2. stops the other cell server with SIGSTOP (and SIGCONT a few seconds later),
3. kills a permalinkd with SIGKILL,
4. kills the Redis primary with SIGKILL,

and prints a timeline (fault, detection by the edge, recovery: the node
restarted by the supervisor and back in service) and the counts: sessions
broken (expected on a killed server; each was told why), new sessions that
failed after the fault was detected (target 0), permalink writes
acknowledged and then lost (target 0), nodes back in service.

    python -m loadtest.drill --config deploy/cluster.toml --users 10 --step 12

Traffic stays on 127.0.0.1 and the run is bounded (``--step`` seconds per
fault, four faults).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from deploy.clusterspec import load_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Cluster:
    def __init__(self, config: str):
        self.spec = load_cluster(config, ROOT, os.path.dirname(sys.executable))
        self.base = self.spec.url
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.spec.var, "certs", "ca.pem"))
        edge = next(n for n in self.spec.nodes if n.kind == "edgeproxy")
        self.edge_health = edge.health_url

    def pids(self) -> dict[str, int]:
        with open(os.path.join(self.spec.run_dir, "status.json")) as f:
            return {k: v for k, v in json.load(f)["processes"].items() if v}

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(self.edge_health, timeout=2, context=self.ctx) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")
        except Exception:
            return {}

    def up(self, pool: str, name: str) -> bool:
        return bool(self.health().get(pool, {}).get(name, {}).get("up"))

    def post(self, path: str, **form) -> tuple[int, dict]:
        data = urllib.parse.urlencode(form).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(self.base + path, data=data), timeout=10,
                                        context=self.ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read())
            except ValueError:
                return e.code, {}
        except Exception as e:  # noqa: BLE001
            return 0, {"error": type(e).__name__}

    def get(self, path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10, context=self.ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None
        except Exception:  # noqa: BLE001
            return 0, None


def wait_for(pred, timeout: float, interval: float = 0.02) -> float | None:
    """Seconds until ``pred()`` held, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(interval)
    return None


class PermalinkWriter(threading.Thread):
    """Writes distinct permalinks continuously; remembers every acknowledged one."""

    def __init__(self, cluster: Cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.acked: dict[str, str] = {}
        self.ack_times: list[float] = []
        self.failures: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            code = f"print('drill {i} {time.time()}')"
            status, body = self.cluster.post("permalink", code=code, language="python")
            if status == 200 and body.get("query"):
                self.acked[body["query"]] = code
                self.ack_times.append(time.time())
            else:
                self.failures.append((time.time(), status))
            time.sleep(0.05)

    def lost(self) -> list[str]:
        lost = []
        for q, code in self.acked.items():
            status, body = self.cluster.get(f"permalink?q={q}")
            if status != 200 or not body or body[0] != code:
                lost.append(q)
        return lost


def first_write_after(writer: PermalinkWriter, t0: float) -> float | None:
    """Seconds from the kill to the first acknowledged write after the outage
    (0.0 if no write failed at all: the switch was seamless for writers)."""
    failed = [t for t, _ in writer.failures if t >= t0]
    if not failed:
        return 0.0
    acks = [t for t in writer.ack_times if t > failed[0]]
    return round(acks[0] - t0, 2) if acks else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "deploy", "cluster.toml"))
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--step", type=float, default=12.0, help="seconds per fault")
    ap.add_argument("--json", help="write the timeline and counts here")
    args = ap.parse_args(argv)
    cl = Cluster(args.config)
    cells = [n.name for n in cl.spec.nodes if n.kind == "cellserver"]
    perms = [n.name for n in cl.spec.nodes if n.kind == "permalinkd"]
    duration = args.step * 4 + 4
    out = tempfile.mktemp(suffix=".json")
    load = subprocess.Popen([sys.executable, "-m", "loadtest.sessions", "--url", cl.base, "--cafile",
                             os.path.join(cl.spec.var, "certs", "ca.pem"), "--users", str(args.users),
                             "--ramp-up", "2", "--duration", str(duration), "--computations", "2",
                             "--think", "0.2", "--json", out],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    writer = PermalinkWriter(cl)
    writer.start()
    t_start = time.time()
    timeline = []

    def fault(name, kind, pool, do, undo=None, undo_after=3.0, detect=True):
        pid = cl.pids()[name]
        t0 = time.time()
        do(pid)
        row = {"node": name, "fault": kind, "at": round(t0 - t_start, 2)}
        if detect:
            row["detected_after"] = wait_for(lambda: not cl.up(pool, name), 10)
        if undo:
            time.sleep(undo_after)
            undo(pid)
        row["back_after"] = wait_for(lambda: cl.up(pool, name) and cl.pids().get(name) is not None, 60, 0.1)
        row["detected_at"] = t0 - t_start + (row.get("detected_after") or 0)
        timeline.append(row)

    time.sleep(3)
    fault(cells[0], "SIGKILL", "cells", lambda p: os.kill(p, signal.SIGKILL))
    time.sleep(max(0.0, args.step - 5))
    fault(cells[-1], "SIGSTOP, SIGCONT 3 s later", "cells", lambda p: os.kill(p, signal.SIGSTOP),
          lambda p: os.kill(p, signal.SIGCONT))
    time.sleep(max(0.0, args.step - 8))
    fault(perms[0], "SIGKILL", "permalinks", lambda p: os.kill(p, signal.SIGKILL))
    time.sleep(max(0.0, args.step - 5))
    primary = cl.pids()["redis-primary"]
    t0 = time.time()
    os.kill(primary, signal.SIGKILL)
    time.sleep(min(10.0, max(5.0, args.step - 2)))
    timeline.append({"node": "redis-primary", "fault": "SIGKILL", "at": round(t0 - t_start, 2),
                     "first_write_after": first_write_after(writer, t0)})
    load_out, _ = load.communicate(timeout=duration + 120)
    writer.stop.set()
    writer.join(15)
    lost = writer.lost()
    with open(out) as f:
        loaded = json.load(f)
    offset = loaded.get("t0", t_start) - t_start        # load-tester time -> drill time
    samples = [dict(s, start=s["start"] + offset) for s in loaded["samples"]]
    os.unlink(out)
    windows = [(r["at"] - 0.5, r["at"] + (r.get("detected_after") or 0) + 1.0)
               for r in timeline if r["node"] in cells]          # from the fault to its detection
    rate_limited = [s for s in samples if not s["ok"] and s["error"].startswith("429")]
    samples = [s for s in samples if not s["error"].startswith("429")]
    after_detection = [s for s in samples if s["phase"] == "kernel start" and not s["ok"]
                       and not any(a <= s["start"] <= b for a, b in windows)]
    broken = [s for s in samples if s["phase"] != "kernel start" and not s["ok"]]
    print(load_out)
    print(f"{'node':16}{'fault':30}{'at s':>8}{'detected s':>12}{'back s':>9}")
    for r in timeline:
        det = r.get("detected_after")
        back = r.get("back_after")
        extra = f"  first write {r['first_write_after']} s after" if "first_write_after" in r else ""
        print(f"{r['node']:16}{r['fault']:30}{r['at']:>8}{(f'{det:.2f}' if det is not None else '-'):>12}"
              f"{(f'{back:.1f}' if back is not None else '-'):>9}{extra}")
    counts = {
        "sessions_broken": len(broken),
        "rate_limited": len(rate_limited),
        "new_sessions_failed_after_detection": len(after_detection),
        "permalinks_acked": len(writer.acked),
        "permalinks_lost": len(lost),
        "permalink_write_failures": len(writer.failures),
        "nodes_back": sum(1 for r in timeline if r.get("back_after") is not None),
        "faults": len(timeline),
    }
    for k, v in counts.items():
        print(f"{k}: {v}")
    for s in after_detection:
        print(f"  new session failed at {s['start']:.2f} s: {s['error']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timeline": timeline, "counts": counts}, f, indent=1)
    return 0 if counts["permalinks_lost"] == 0 and counts["new_sessions_failed_after_detection"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
