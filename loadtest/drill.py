"""The failover drill: kill servers on purpose under load, and count.

Against a cluster started with ``deploy/cluster up`` (same ``--config``), it
runs the session load tester (``loadtest.sessions``) and a permalink writer
while it, in turn (one fault every ``--step`` seconds):

1. kills a cell server with SIGKILL,
2. stops the other cell server with SIGSTOP (and SIGCONT 3 s later),
3. kills a permalinkd with SIGKILL,
4. kills the Redis primary (whichever server Sentinel names) with SIGKILL,

and prints a timeline per fault, in seconds from the drill's start: the
kill; its detection (the edge marks the node down; for Redis: the Sentinels
name another primary); its recovery (the node back in service: restarted by
the supervisor, or resumed, and up at the edge again; for Redis: the old
primary restarted and attached as a replica of the new one; and the first
acknowledged permalink write after the switch).  Then the counts:

- sessions broken on the faulted server (expected: they held a kernel
  there), each with what it was told (close code and reason, error message)
  and the server owning its kernel (from the kernel id); a failure counts
  for its own server's fault until that server is back plus one operation
  timeout, even after later faults (a stopped server's sessions fail by
  their timeout);
- kernel starts in flight to it before the edge knew (expected, listed);
- new sessions failed after detection: a session that started after the
  edge saw the fault and failed before its first result (target 0);
- sessions broken elsewhere: on a server that was not faulted (target 0);
- acknowledged permalinks lost (target 0; every acknowledged one is read
  back at the end) and write attempts that failed (not acknowledged);
- restarted nodes back in service (the killed cell server, permalinkd and
  Redis primary; the stopped cell server is resumed, counted apart).

    deploy/cluster up --config loadtest/bench-cluster.toml
    python -m loadtest.drill --config loadtest/bench-cluster.toml --users 10 --step 12

Traffic stays on loopback (refused otherwise) and the run is bounded
(``--step`` seconds per fault, four faults, bounded waits).
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
import urllib.error
import urllib.parse
import urllib.request

from deploy import rediscluster
from deploy.clusterspec import load_cluster
from loadtest.sessions import check_loopback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOP_SECONDS = 3.0        # SIGSTOP, then SIGCONT this much later
SESSION_TIMEOUT = 30.0    # the load tester's --timeout: an operation fails by then at the latest


class DrillError(Exception):
    """The drill cannot go on (no pid for a node, no Sentinel answering): said, exit 1."""


class Cluster:
    def __init__(self, config: str):
        self.spec = load_cluster(config, ROOT, os.path.dirname(sys.executable))
        self.base = self.spec.url
        check_loopback(self.base)
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.spec.var, "certs", "ca.pem"))
        edge = next(n for n in self.spec.nodes if n.kind == "edgeproxy")
        self.edge_health = edge.health_url
        r = self.spec.redis
        self.redis_password = rediscluster.read_password(r.password_file) if r else None
        self.redis_names = {r.primary: "redis-primary", **{p: f"redis-replica{i + 1}"
                                                             for i, p in enumerate(r.replicas)}} if r else {}

    def pids(self) -> dict[str, int]:
        try:
            with open(os.path.join(self.spec.run_dir, "status.json")) as f:
                return {k: v for k, v in json.load(f)["processes"].items() if v}
        except (OSError, ValueError, KeyError):
            return {}

    def restarted(self, name: str, old_pid: int) -> bool:
        return self.pids().get(name) not in (None, old_pid)

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

    def redis_primary(self) -> int | None:
        r = self.spec.redis
        addr = rediscluster.sentinel_primary(r.sentinels, r.master_name, self.redis_password)
        return addr[1] if addr else None

    def replica_of(self, port: int, primary: int) -> bool:
        """``port`` serves as a replica of ``primary`` with its link up."""
        try:
            rep = rediscluster.info(port, "replication", self.redis_password)
        except (OSError, rediscluster.RedisReplyError):
            return False
        return rep.get("role") == "slave" and rep.get("master_port") == str(primary) \
            and rep.get("master_link_status") == "up"

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
            return 0, {"error": f"{type(e).__name__}: {e}"}

    def get(self, path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10, context=self.ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None
        except Exception:  # noqa: BLE001
            return 0, None


def wait_for(pred, timeout: float, interval: float = 0.02) -> float | None:
    """time.time() when ``pred()`` first held, or None after ``timeout`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.time()
        time.sleep(interval)
    return None


class PermalinkWriter(threading.Thread):
    """Writes distinct permalinks continuously; remembers every acknowledged one."""

    def __init__(self, cluster: Cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        check_loopback(cluster.base)
        self.acked: dict[str, str] = {}
        self.ack_times: list[float] = []
        self.failures: list[tuple[float, int, str]] = []
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
                self.failures.append((time.time(), status, str(body.get("error", ""))))
            time.sleep(0.05)

    def lost(self) -> tuple[list[str], list[tuple[str, int]]]:
        """(acknowledged permalinks read back missing or different, those that
        could not be read at all with the status that said so).  A 429 or a 503
        at read-back is not a lost permalink, and not a kept one either."""
        lost, unread = [], []
        for q, code in self.acked.items():
            status, body = self.cluster.get(f"permalink?q={q}")
            if status == 404 or (status == 200 and (not body or body[0] != code)):
                lost.append(q)
            elif status != 200:
                unread.append((q, status))
        return lost, unread

    def first_ack_after_outage(self, t0: float) -> float | None:
        """time.time() of the first acknowledged write after the first failed one
        since ``t0`` (``t0`` itself if none failed: the switch was seamless)."""
        failed = [t for t, _, _ in self.failures if t >= t0]
        if not failed:
            return t0
        acks = [t for t in self.ack_times if t > failed[0]]
        return acks[0] if acks else None


def _covers(fault: dict, s: dict) -> bool:
    """The session was there for ``fault`` (it started before the edge knew)
    and failed in the fault's window: from the kill until the node was back
    plus one operation timeout (an operation sent to a stopped server fails
    only by its timeout, maybe after later faults)."""
    detected = fault["detected_at"] if fault["detected_at"] is not None else fault["kill_at"] + 10
    end = float("inf") if fault["back_at"] is None else fault["back_at"] + SESSION_TIMEOUT
    return s["start"] < detected and fault["kill_at"] <= s["failed_at"] <= end


def classify(sessions: list[dict], timeline: list[dict]) -> dict[str, list[dict]]:
    """Sort failed sessions (times in drill seconds) by what the faults explain.

    A failure belongs to the cell-server fault of the server the session
    was on (its kernel's server) when that fault covers it (``_covers``): it
    is *broken* (expected), even if other faults came in between.  A session
    with no kernel yet, covered by a cell-server fault, was *in flight*
    (expected; the latest such fault).  Any other failure before a first
    result is a *new session failed* (target 0), after it a session *broken
    elsewhere* (target 0).  429s are counted apart."""
    out = {"broken": [], "in_flight": [], "new_failed": [], "broken_elsewhere": [], "rate_limited": []}
    cell_faults = sorted((f for f in timeline if f["pool"] == "cells"), key=lambda r: r["kill_at"])
    for s in sessions:
        if not s["failed_phase"]:
            continue
        if s["error"].startswith("429"):
            out["rate_limited"].append(s)
            continue
        covering = [f for f in cell_faults if f["node"] == s["node"] or s["node"] is None]
        covering = [f for f in covering if _covers(f, s)]
        if covering:
            out["broken" if s["node"] is not None else "in_flight"].append(dict(s, fault=covering[-1]["node"]))
        elif s["failed_phase"] in ("kernel start", "first computation"):
            out["new_failed"].append(s)
        else:
            out["broken_elsewhere"].append(s)
    return out


def _s(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_report(timeline: list[dict], counts: dict, kinds: dict[str, list[dict]]) -> None:
    print(f"{'node':16}{'fault':30}{'kill s':>8}{'detected s':>12}{'back s':>9}  recovery")
    for r in timeline:
        note = r["recovery"]
        if r.get("first_write_at") is not None:
            note += f"; first acknowledged write at {r['first_write_at']:.2f} s"
        print(f"{r['node']:16}{r['fault']:30}{r['kill_at']:>8.2f}{_s(r['detected_at']):>12}"
              f"{_s(r['back_at']):>9}  {note}")
    for k, v in counts.items():
        print(f"{k}: {v}")
    for title, key in (("broken on the faulted server", "broken"), ("in flight before detection", "in_flight"),
                       ("new session failed after detection", "new_failed"),
                       ("broken elsewhere", "broken_elsewhere")):
        for s in kinds[key]:
            print(f"  {title}: started {s['start']:.2f} s on {s['node'] or '-'}, failed at {s['failed_at']:.2f} s "
                  f"in {s['failed_phase']}: {s['error']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "deploy", "cluster.toml"))
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--step", type=float, default=12.0, help="seconds per fault")
    ap.add_argument("--pause", type=float, default=1.0,
                    help="seconds each session holds its kernel between sums (so faults find sessions to break)")
    ap.add_argument("--json", help="write the timeline, counts and failed sessions here")
    args = ap.parse_args(argv)
    if not (1 <= args.users <= 200 and 5 <= args.step <= 120):
        ap.error("--users must be 1..200 and --step 5..120 s")
    cl = Cluster(args.config)
    duration = args.step * 4 + 8
    fd, out = tempfile.mkstemp(suffix=".json", prefix="drill-sessions-")
    os.close(fd)
    load = subprocess.Popen([sys.executable, "-m", "loadtest.sessions", "--url", cl.base, "--cafile",
                             os.path.join(cl.spec.var, "certs", "ca.pem"), "--users", str(args.users),
                             "--ramp-up", "2", "--duration", str(duration), "--computations", "2",
                             "--think", "0.2", "--pause", str(args.pause), "--timeout", f"{SESSION_TIMEOUT:g}",
                             "--json", out],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    writer = PermalinkWriter(cl)
    try:
        writer.start()
        return drill(args, cl, load, writer, out, duration)
    except DrillError as e:
        print(f"drill: {e}")
        return 1
    finally:
        # Whatever happened (a crash too), the load tester is not left running.
        writer.stop.set()
        if load.poll() is None:
            load.kill()
        load.wait()
        if load.stdout is not None:
            load.stdout.close()
        try:
            os.unlink(out)
        except FileNotFoundError:
            pass


def drill(args, cl: Cluster, load: subprocess.Popen, writer: PermalinkWriter, out: str, duration: float) -> int:
    """The four faults under the running load, then the counts and the report."""
    cells = [n.name for n in cl.spec.nodes if n.kind == "cellserver"]
    perms = [n.name for n in cl.spec.nodes if n.kind == "permalinkd"]
    if not cells or not perms or cl.spec.redis is None:
        raise DrillError(f"{cl.spec.config_path}: the drill needs cell servers, permalinkd nodes and [redis]")
    t_start = time.time()
    timeline = []

    def rel(t):
        return None if t is None else round(t - t_start, 2)

    def at(i):   # fault i starts 3 s in, then every --step seconds (or at once if late)
        time.sleep(max(0.0, t_start + 3 + i * args.step - time.time()))

    def pid_of(name):
        pid = cl.pids().get(name)
        if pid is None:
            raise DrillError(f"no pid for {name} in {cl.spec.run_dir}/status.json: is the cluster up "
                             f"(deploy/cluster up --config {cl.spec.config_path})?")
        return pid

    def node_fault(i, name, pool, stop=False):
        at(i)
        pid = pid_of(name)
        t0 = time.time()
        os.kill(pid, signal.SIGSTOP if stop else signal.SIGKILL)
        detected = wait_for(lambda: not cl.up(pool, name), 10)
        row = {"node": name, "pool": pool, "fault": f"SIGSTOP, SIGCONT {STOP_SECONDS:g} s later" if stop
               else "SIGKILL", "kill_at": rel(t0), "detected_at": rel(detected), "restarted": not stop}
        if stop:
            time.sleep(max(0.0, t0 + STOP_SECONDS - time.time()))
            os.kill(pid, signal.SIGCONT)
            row["resumed_at"] = rel(time.time())
            back = wait_for(lambda: cl.up(pool, name), 60, 0.1)
            row["recovery"] = f"resumed at {row['resumed_at']:.2f} s, up at the edge again"
        else:
            back = wait_for(lambda: cl.restarted(name, pid) and cl.up(pool, name), 60, 0.1)
            row["recovery"] = "restarted by the supervisor, up at the edge again"
        row["back_at"] = rel(back)
        timeline.append(row)

    node_fault(0, cells[0], "cells")
    node_fault(1, cells[-1], "cells", stop=True)
    node_fault(2, perms[0], "permalinks")
    at(3)
    old = cl.redis_primary()
    if old is None:
        raise DrillError(f"no Sentinel ({cl.spec.redis.sentinels}) names a primary: nothing to kill")
    name = cl.redis_names.get(old, f"redis:{old}")
    pid = pid_of(name)
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    switched = wait_for(lambda: cl.redis_primary() not in (None, old), 30, 0.05)
    new = cl.redis_primary()
    # The old primary is back once it replicates the primary the Sentinels
    # name *then*: on a loaded machine they may switch again meanwhile (seen
    # in CI), which is no lost write and no fault of the restarted node.
    back = wait_for(lambda: cl.restarted(name, pid) and cl.replica_of(old, cl.redis_primary()), 60, 0.1)
    final = cl.redis_primary()
    time.sleep(1.0)          # let the writer show its first acknowledged write after the switch
    timeline.append({"node": name, "pool": "redis", "fault": "SIGKILL (the Redis primary)", "kill_at": rel(t0),
                     "detected_at": rel(switched), "back_at": rel(back), "restarted": True,
                     "first_write_at": rel(writer.first_ack_after_outage(t0)),
                     "primary_before": old, "primary_after": new, "primary_at_end": final,
                     "recovery": f"Sentinels switched to {new}"
                                 + (f", then to {final}" if final not in (new, None) else "")
                                 + (f"; old primary {old} restarted, a replica again" if back is not None
                                    else f"; old primary {old} not a replica of it within 60 s")})
    try:
        load_out, _ = load.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        load.kill()
        load_out, _ = load.communicate()
    writer.stop.set()
    writer.join(15)
    lost, unread = writer.lost()
    try:
        with open(out) as f:
            loaded = json.load(f)
    except (OSError, ValueError):
        print(load_out)
        print("drill: the session load tester wrote no results")
        return 1
    offset = loaded.get("t0", t_start) - t_start        # load-tester time -> drill time
    sessions = [dict(s, start=round(s["start"] + offset, 2),
                     failed_at=None if s["failed_at"] is None else round(s["failed_at"] + offset, 2))
                for s in loaded["sessions"]]
    kinds = classify(sessions, timeline)
    restarted = [r for r in timeline if r["restarted"]]
    counts = {
        "sessions": len(sessions),
        "sessions_broken": len(kinds["broken"]),
        "sessions_broken_by_node": {n: sum(1 for s in kinds["broken"] if s["node"] == n) for n in cells},
        "kernel_starts_in_flight": len(kinds["in_flight"]),
        "new_sessions_failed_after_detection": len(kinds["new_failed"]),
        "sessions_broken_elsewhere": len(kinds["broken_elsewhere"]),
        "rate_limited": len(kinds["rate_limited"]),
        "permalinks_acked": len(writer.acked),
        "permalinks_lost": len(lost),
        "permalinks_unverified": len(unread),
        "permalink_write_failures": len(writer.failures),
        "nodes_restarted": len(restarted),
        "nodes_back": sum(1 for r in restarted if r["back_at"] is not None),
        "nodes_resumed": sum(1 for r in timeline if not r["restarted"] and r["back_at"] is not None),
        "faults": len(timeline),
    }
    print(load_out)
    print_report(timeline, counts, kinds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timeline": timeline, "counts": counts,
                       "failed_sessions": {k: v for k, v in kinds.items()},
                       "permalink_write_failures": writer.failures}, f, indent=1)
    if unread:
        print(f"drill: {len(unread)} acknowledged permalinks could not be read back "
              f"(HTTP {', '.join(str(c) for c in sorted({c for _, c in unread}))}): neither kept nor lost")
    if counts["rate_limited"] or any(status == 429 for _, status, _ in writer.failures) \
            or any(status == 429 for _, status in unread):
        print("drill: the edge rate-limited the drill's own traffic (all of it from one address); "
              "run the cluster with loadtest/bench-cluster.toml, whose limits are raised for load tests")
    ok = counts["permalinks_lost"] == 0 and counts["permalinks_unverified"] == 0 \
        and counts["new_sessions_failed_after_detection"] == 0 \
        and counts["sessions_broken_elsewhere"] == 0 and counts["nodes_back"] == counts["nodes_restarted"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
