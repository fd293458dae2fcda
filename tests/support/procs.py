"""Child processes started by tests, killed by PID when the test ends.

Every process a test starts goes through ``Children.start``: it runs in its
own session (so its whole process group can be signalled), its output goes
to a log file under ``tests/artifacts/logs`` (shown when a wait fails), and
``Children.stop_all`` kills what is left: SIGTERM, a bounded wait, then
SIGKILL, only ever to the groups these children lead.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from edgeproxy.reactor import TWISTD_OPTION as EDGE_REACTOR

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
VENV_BIN = Path(sys.executable).parent


# Disjoint 512-uid ranges for the cell servers one test run starts (the shipped
# clusters use 61000 and 61600).  Each test process has a band of 100 ranges of
# its own, chosen by its pid, so two suites running at once on one machine do
# not hand their kernels the same uids either.
_UID_BASES = itertools.count(1_000_000 + (os.getpid() % 20_000) * 100_000, 1_000)


class Child:
    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        """Signal this child's process group (it leads its own session)."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        # What is left in the group (a kernel provider whose cell server was
        # killed) gets time to clean up (kernels' mounts, cgroups), then SIGKILL.
        self._end_group(timeout=5.0)
        return self.popen.returncode

    def _end_group(self, timeout: float) -> None:
        def group(sig: int) -> bool:
            try:
                os.killpg(self.popen.pid, sig)
                return True
            except (ProcessLookupError, PermissionError):
                return False
        if not group(signal.SIGTERM):
            return
        deadline = time.monotonic() + timeout
        while group(0) and time.monotonic() < deadline:
            time.sleep(0.05)
        group(signal.SIGKILL)


class Children:
    def __init__(self, label: str = "test"):
        self.label = label
        self.children: list[Child] = []
        self.logdir = ARTIFACTS / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict | None = None, cwd: str | None = None) -> Child:
        log_path = self.logdir / f"{self.label}-{name}-{int(time.time() * 1000)}.log"
        logf = open(log_path, "wb")
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        # Children import the tree the tests come from (and its twisted/plugins).
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        if env:
            full_env.update(env)
        popen = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd or str(ROOT), start_new_session=True,
        )
        logf.close()
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def twistd(self, name: str, plugin: str, args: list[str], env: dict | None = None) -> Child:
        """Start ``twistd -n <plugin> <args>`` on the test's interpreter.  A cell
        server gets kernel accounts of its own (unless the test chose them), so
        servers alive at the same time never share a uid's process limit."""
        if plugin == "cellserver" and "--kernel-uid-base" not in args:
            args = [*args, "--kernel-uid-base", str(next(_UID_BASES)), "--kernel-accounts", "512"]
        reactor = [EDGE_REACTOR] if plugin == "edgeproxy" else []     # as every launcher of the edge does
        argv = [str(VENV_BIN / "twistd"), "-n", "--pidfile=", *reactor, plugin, *args]
        return self.start(name, argv, env=env)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05, child: Child | None = None):
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if child is not None and not child.alive():
            raise AssertionError(f"{child.name} exited ({child.popen.returncode}) while waiting for {what}:\n{child.log()}")
        time.sleep(interval)
    detail = f" (last error: {last_exc!r})" if last_exc else ""
    log = f"\n--- {child.name} log ---\n{child.log()}" if child is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}{log}")


def children_of(pid: int) -> list[int]:
    """Host pids whose parent is ``pid`` (from /proc)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def descendants_of(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return found


# Kernel code that prints what ``host_pid`` needs: a sandboxed kernel is PID 2
# of a pid namespace of its own and cannot know its host pid.
PRINT_PID = "import os; print(os.getpid(), os.readlink('/proc/self/ns/pid'))"


def host_pid(printed: str) -> int:
    """The host pid of the kernel that ran ``PRINT_PID`` and printed ``printed``:
    the process in that pid namespace with that pid there (NSpid's last field)."""
    ns_pid, ns = printed.split()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
            with open(f"/proc/{name}/status") as f:
                nspid = next(line for line in f if line.startswith("NSpid:")).split()
        except (OSError, StopIteration):
            continue
        if nspid[-1] == ns_pid:
            return int(name)
    raise LookupError(f"no process {ns_pid} in {ns}")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


_RUNTIME_DIRS: list[str] = []


def kernel_runtime_dir(label: str = "t") -> str:
    """A short runtime directory sandboxed kernels can reach (their own accounts
    must traverse every parent; pytest's tmp dirs are 0700).  Removed at the
    end of the session (tests/conftest.py)."""
    import tempfile

    d = tempfile.mkdtemp(prefix=f"cst-{label}-", dir="/tmp")
    os.chmod(d, 0o711)
    _RUNTIME_DIRS.append(d)
    return d


def remove_runtime_dirs() -> None:
    import shutil

    while _RUNTIME_DIRS:
        shutil.rmtree(_RUNTIME_DIRS.pop(), ignore_errors=True)
