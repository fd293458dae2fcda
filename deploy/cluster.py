"""``deploy/cluster up|down|status``: the whole cellstack cluster on one machine.

``up`` makes the development certificate and the Redis password if they are
missing, starts a supervisor in the background and waits (bounded) until
every node answers its ``/healthz``; its last line is the URL to open.
``down`` stops the supervisor, which stops every node (SIGTERM, then SIGKILL
after a grace period), then checks that nothing it started is left: every
process the cluster started carries ``CELLSTACK_CLUSTER=<state dir>`` in its
environment, so stragglers (say, kernels orphaned by a node killed with -9)
are found in ``/proc`` and killed by PID.  Then it removes what SIGKILLed
cell servers left in their runtime directories: only the directories ``up``
recorded in ``var/run``, never through a symlink, never another user's,
never one a live process still works in (``sweep_runtime_dirs``).

The supervisor (``python -m deploy.cluster supervise``) is Twisted's
``ProcessMonitor``: it restarts any node that dies, with exponential back-off
for processes that die at once, and logs each restart.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.request

from twisted.logger import Logger
from twisted.runner.procmon import ProcessMonitor

from deploy.clusterspec import ClusterSpec, ProcessSpec, load_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "deploy", "cluster.toml")
MARKER = "CELLSTACK_CLUSTER"


# --- what runs --------------------------------------------------------------

def redis_processes(spec: ClusterSpec) -> list[ProcessSpec]:
    """Redis primary, replicas and Sentinels of the cluster file's [redis] table."""
    if spec.redis is None:
        return []
    from deploy import rediscluster

    return rediscluster.cluster_process_specs(spec)


def all_processes(spec: ClusterSpec) -> list[ProcessSpec]:
    return redis_processes(spec) + list(spec.nodes)


def prepare(spec: ClusterSpec) -> None:
    """State directories, the Redis password and the development certificate."""
    for sub in ("run", "log", "secrets", "certs", "redis"):
        os.makedirs(os.path.join(spec.var, sub), exist_ok=True)
    os.chmod(os.path.join(spec.var, "secrets"), 0o700)
    if spec.redis is not None and not os.path.exists(spec.redis.password_file):
        os.makedirs(os.path.dirname(spec.redis.password_file), exist_ok=True)
        fd = os.open(spec.redis.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    if any(n.kind == "edgeproxy" for n in spec.nodes):
        from certs import devca

        devca.main(["--dir", os.path.join(spec.var, "certs"), "--hosts", "localhost,127.0.0.1,::1"])


# --- the supervisor -----------------------------------------------------------

class Supervisor(ProcessMonitor):
    """Twisted's ProcessMonitor with the cluster's timings and one log line per
    death (which node, how it ended, when it comes back), so an operator
    reading supervisor.log sees every restart and its back-off.

    A node that lived longer than ``threshold`` seconds is restarted at once;
    one that died sooner waits ``minRestartDelay``, doubled on each quick
    death up to ``maxRestartDelay`` (ProcessMonitor's own back-off)."""

    minRestartDelay = 1
    maxRestartDelay = 30
    threshold = 5
    killTime = 15
    log = Logger(namespace="cluster")

    def __init__(self, reactor):
        super().__init__(reactor=reactor)
        self.hold: dict[str, float] = {}    # name -> restart no sooner than this after a death

    def _monitoredProcessExited(self, name, reason=None):
        super()._monitoredProcessExited(name, reason)
        call = self.restart.get(name)
        if self.running and call is not None and call.active():
            if call.getTime() - self._clock.seconds() < self.hold.get(name, 0.0):
                call.reset(self.hold[name])
            how = reason.getErrorMessage() if reason is not None else "exited"
            self.log.warn("{name} died ({how}); restarting it in {delay:.0f} s", name=name, how=how,
                          delay=max(0.0, call.getTime() - self._clock.seconds()))

    def _forceStopProcess(self, proc):
        self.log.warn("pid {pid} did not stop in {s} s; killing it (SIGKILL)", pid=proc.pid, s=self.killTime)
        super()._forceStopProcess(proc)


def supervise(spec: ClusterSpec) -> None:
    """Run every process under a ProcessMonitor until SIGTERM, then stop them all."""
    from twisted.internet import reactor, task
    from twisted.logger import globalLogBeginner, textFileLogObserver

    log = Supervisor.log
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    monitor = Supervisor(reactor=reactor)
    env = dict(os.environ)
    env[MARKER] = spec.var
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [spec.root, env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    for proc in all_processes(spec):
        monitor.addProcess(proc.name, list(proc.argv), env={**env, **proc.env}, cwd=spec.root)
        if proc.restart_delay:
            monitor.hold[proc.name] = proc.restart_delay
    status_path = os.path.join(spec.run_dir, "status.json")

    def write_status():
        status = {name: (p.transport.pid if p.transport is not None else None)
                  for name, p in monitor.protocols.items()}
        tmp = status_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"supervisor": os.getpid(), "processes": status, "time": time.time()}, f)
        os.replace(tmp, status_path)

    status_loop = task.LoopingCall(write_status)

    def stopping():
        """Before the reactor stops (SIGTERM/SIGINT): stop every process, wait for all exits."""
        from twisted.internet import defer

        log.info("stopping every process")
        if status_loop.running:
            status_loop.stop()
        monitor.stopService()
        done = defer.Deferred()

        def check():
            if not monitor.protocols:
                poll.stop()
                done.callback(None)

        poll = task.LoopingCall(check)
        poll.clock = reactor
        poll.start(0.1)
        return done

    # Twisted's own signal handling also reaps children (SIGCHLD): keep it on.
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    reactor.callWhenRunning(monitor.startService)
    reactor.callWhenRunning(status_loop.start, 1.0, False)
    reactor.run()
    try:
        os.unlink(status_path)
    except FileNotFoundError:
        pass


# --- up / down / status ------------------------------------------------------

def _pidfile(spec: ClusterSpec) -> str:
    return os.path.join(spec.run_dir, "supervisor.pid")


def _read_pid(spec: ClusterSpec) -> int | None:
    try:
        pid = int(open(_pidfile(spec)).read().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _healthy(url: str, cafile: str | None) -> bool:
    ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
            return r.status == 200
    except Exception:
        return False


def _proc_lists(what: str):
    """(pid, the NUL-separated list in /proc/<pid>/<what>) for every other
    process whose file can be read (``environ``, ``cmdline``)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/{what}", "rb") as f:
                yield int(entry), f.read().split(b"\0")
        except OSError:
            continue


def cluster_processes(spec: ClusterSpec) -> list[int]:
    """PIDs of every process carrying this cluster's marker in its environment."""
    want = f"{MARKER}={spec.var}".encode()
    return [pid for pid, environ in _proc_lists("environ") if want in environ and _alive(pid)]


def _runtime_record(spec: ClusterSpec) -> str:
    return os.path.join(spec.run_dir, "runtime-dirs.json")


def _recorded_runtime_dirs(spec: ClusterSpec) -> list[str]:
    try:
        with open(_runtime_record(spec)) as f:
            dirs = json.load(f)
    except (OSError, ValueError):
        return []
    return [d for d in dirs if isinstance(d, str)] if isinstance(dirs, list) else []


def record_runtime_dirs(spec: ClusterSpec) -> None:
    """Note, before ``up`` starts anything, the runtime directories this
    cluster's cell servers will use: ``down`` sweeps only those.  The default
    ``/tmp/cs-<name>`` is shared with a cell server started by hand
    (``twistd cellserver --node c1``) or another checkout's cluster, so a
    directory merely existing proves nothing.  Kept with what an earlier run
    recorded that its ``down`` never swept."""
    dirs = list(dict.fromkeys(_recorded_runtime_dirs(spec) +
                              [os.path.abspath(n.runtime_dir) for n in spec.nodes if n.runtime_dir]))
    tmp = _runtime_record(spec) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dirs, f)
    os.replace(tmp, _runtime_record(spec))


def users_of(path: str) -> list[int]:
    """PIDs of live processes (but this one) whose working directory or an open
    file is ``path`` or below it: a cell server's kernel provider runs with
    cwd = its runtime directory, kernels below it.  Processes this user may
    not inspect are not seen (a directory of another user is skipped anyway)."""
    real = os.path.realpath(path)
    inside = (lambda t: t == real or t.startswith(real.rstrip("/") + "/"))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            targets = [os.readlink(f"/proc/{entry}/cwd")]
            fd_dir = f"/proc/{entry}/fd"
            for fd in os.listdir(fd_dir):
                try:
                    targets.append(os.readlink(os.path.join(fd_dir, fd)))
                except OSError:
                    continue
        except OSError:
            continue
        if any(inside(t) for t in targets) and _alive(int(entry)):
            pids.append(int(entry))
    return pids


def why_not_sweep(path: str) -> str | None:
    """Why the recorded runtime directory ``path`` must be left alone, or None.

    Never through a symlink (/tmp is world-writable: a link planted at the
    path would redirect the removal), only a directory this user owns (in a
    sticky /tmp nobody else can then swap it), and not while a live process
    works in it (say a cell server started by hand on the same directory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "gone"
    except OSError as e:
        return f"cannot stat: {e.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not {os.geteuid()}"
    users = users_of(path)
    if users:
        return f"in use by pids {users}"
    return None


def sweep_runtime_dirs(spec: ClusterSpec) -> tuple[list[str], list[str]]:
    """Remove the runtime directories (sockets, kernels' work and IPython dirs)
    cell servers leave when they are SIGKILLed instead of stopping: a cell
    server removes them itself on a clean stop.  Only the directories ``up``
    recorded (``record_runtime_dirs``) and each only if ``why_not_sweep`` has
    nothing against it; the record is then dropped, so a second ``down``
    sweeps nothing.  Call it once no process of the cluster is left.
    Returns (removed, skipped with why)."""
    from cellserver.pool import remove_runtime_dir

    swept, skipped = [], []
    for path in _recorded_runtime_dirs(spec):
        why = why_not_sweep(path)
        if why is None:
            remove_runtime_dir(path)
            swept.append(path)
        elif why != "gone":
            skipped.append(f"{path} ({why})")
    try:
        os.unlink(_runtime_record(spec))
    except FileNotFoundError:
        pass
    return swept, skipped


def up(spec: ClusterSpec, timeout: float) -> int:
    if _read_pid(spec):
        print(f"cluster: already running (supervisor pid {_read_pid(spec)}); deploy/cluster down first")
        return 1
    leftovers = cluster_processes(spec)
    if leftovers:
        print(f"cluster: processes of an earlier run are still alive: {leftovers}; deploy/cluster down first")
        return 1
    prepare(spec)
    taken = {d: users_of(d) for d in (n.runtime_dir for n in spec.nodes if n.runtime_dir) if os.path.isdir(d)}
    taken = {d: pids for d, pids in taken.items() if pids}
    if taken:
        print("cluster: runtime directories in use by processes not of this cluster (set runtime-dir): "
              + "; ".join(f"{d} (pids {pids})" for d, pids in taken.items()))
        return 1
    record_runtime_dirs(spec)
    log_path = os.path.join(spec.log_dir, "supervisor.log")
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cluster", "supervise", "--config", spec.config_path],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=spec.root, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [spec.root, os.environ.get("PYTHONPATH")]))},
        )
    with open(_pidfile(spec), "w") as f:
        f.write(f"{proc.pid}\n")
    cafile = os.path.join(spec.var, "certs", "ca.pem")
    waiting = {p.name: p.health_url for p in spec.nodes if p.health_url}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"cluster: the supervisor exited ({proc.returncode}); see {log_path}")
            return 1
        for name, url in list(waiting.items()):
            if _healthy(url, cafile if os.path.exists(cafile) else None):
                print(f"cluster: {name} is up ({url})")
                del waiting[name]
        time.sleep(0.3)
    if waiting:
        print(f"cluster: not healthy after {timeout:.0f} s: {', '.join(sorted(waiting))}; logs in {spec.log_dir}")
        return 1
    if spec.redis is not None:
        # Permalink writes need a replica to confirm them (WAIT 1): wait for the topology.
        from deploy import rediscluster

        r = spec.redis
        try:
            # Whichever server Sentinel made primary: after a failover the
            # configs it rewrote keep the old primary a replica.
            primary = rediscluster.wait_cluster_ready(
                timeout=max(1.0, deadline - time.monotonic()), servers=(r.primary, *r.replicas),
                sentinels=r.sentinels, master_name=r.master_name,
                password=rediscluster.read_password(r.password_file))
        except TimeoutError as e:
            print(f"cluster: {e}; logs in {spec.log_dir}")
            return 1
        print(f"cluster: redis primary {primary} with {len(r.replicas)} replicas and "
              f"{len(r.sentinels)} sentinels ready")
    for edge in (n for n in spec.nodes if n.kind == "edgeproxy" and n.health_url):
        # Ready means: the edge itself sees every backend up (its checks need `rise` passes).
        def all_up(url=edge.health_url):
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    h = json.loads(r.read())
            except Exception:
                return False
            backends = list(h.get("cells", {}).values()) + list(h.get("permalinks", {}).values())
            return bool(backends) and all(b.get("up") for b in backends)

        while not all_up() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not all_up():
            print(f"cluster: {edge.name} does not see every backend up; logs in {spec.log_dir}")
            return 1
        print(f"cluster: {edge.name} sees every backend up")
    print(f"cluster: logs in {spec.log_dir}; stop it with: deploy/cluster down")
    print(spec.url)
    return 0


def supervised_config(argv: list[str]) -> str | None:
    """The ``--config`` of a ``deploy.cluster supervise`` command line, else None."""
    for i in range(len(argv) - 2):
        if argv[i:i + 3] == ["-m", "deploy.cluster", "supervise"]:
            rest = argv[i + 3:]
            return rest[rest.index("--config") + 1] if "--config" in rest[:-1] else DEFAULT_CONFIG
    return None


def other_clusters(spec: ClusterSpec) -> list[tuple[int, str]]:
    """Supervisors alive on this machine running another cluster file than
    ``spec``'s, as (pid, config): a cluster started with ``--config
    loadtest/bench-cluster.toml`` is stopped with that ``--config``, and a
    ``down`` without it should say so rather than only "stopped"."""
    found = []
    mine = os.path.realpath(spec.config_path)
    for pid, args in _proc_lists("cmdline"):
        config = supervised_config([a.decode("utf-8", "replace") for a in args])
        if config is not None and os.path.realpath(config) != mine and _alive(pid):
            found.append((pid, config))
    return sorted(found)


def _mention_others(spec: ClusterSpec) -> None:
    for pid, config in other_clusters(spec):
        print(f"cluster: another cluster runs from {config} (supervisor pid {pid}); "
              f"stop it with: deploy/cluster down --config {config}")


def down(spec: ClusterSpec, timeout: float) -> int:
    pid = _read_pid(spec)
    running = bool(pid or cluster_processes(spec))
    if not running:
        print(f"cluster: not running ({spec.config_path})")
        _mention_others(spec)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            print(f"cluster: supervisor {pid} did not stop in {timeout:.0f} s; killing it")
            os.kill(pid, signal.SIGKILL)
    stragglers = cluster_processes(spec)
    if stragglers:
        print(f"cluster: killing processes left behind: {stragglers}")
        for p in stragglers:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in stragglers) and time.monotonic() < deadline:
            time.sleep(0.05)
    swept, skipped = sweep_runtime_dirs(spec) if not cluster_processes(spec) else ([], [])
    if swept:
        print(f"cluster: removed what killed cell servers left: {', '.join(swept)}")
    if skipped:
        print(f"cluster: runtime directories left alone: {'; '.join(skipped)}")
    for name in ("supervisor.pid", "status.json"):
        try:
            os.unlink(os.path.join(spec.run_dir, name))
        except FileNotFoundError:
            pass
    left = cluster_processes(spec)
    if left:
        print(f"cluster: still alive: {left}")
    elif running:
        print("cluster: stopped")
    return 0 if not left else 1


def status(spec: ClusterSpec) -> int:
    pid = _read_pid(spec)
    if not pid:
        print(f"cluster: not running ({spec.config_path})")
        _mention_others(spec)
        return 3
    try:
        with open(os.path.join(spec.run_dir, "status.json")) as f:
            procs = json.load(f)["processes"]
    except (OSError, ValueError, KeyError):
        procs = {}
    cafile = os.path.join(spec.var, "certs", "ca.pem")
    print(f"supervisor pid {pid}")
    for p in all_processes(spec):
        health = ""
        if p.health_url:
            health = "healthy" if _healthy(p.health_url, cafile if os.path.exists(cafile) else None) else "NOT healthy"
        print(f"  {p.name:12} pid {procs.get(p.name) or '-':>7}  {health}")
    print(spec.url)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "supervise"])
    parser.add_argument("--config", default=os.environ.get("CELLSTACK_CLUSTER_CONFIG", DEFAULT_CONFIG),
                        help="the cluster file (default deploy/cluster.toml)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for up/down")
    args = parser.parse_args(argv)
    spec = load_cluster(args.config, ROOT, os.path.dirname(sys.executable))
    if args.command == "supervise":
        supervise(spec)
        return 0
    return {"up": up, "down": down}.get(args.command, lambda s, t: status(s))(spec, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
