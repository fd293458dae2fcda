"""Confining a forked kernel (the child side), and the cgroups around it
(the provider side).  Runs on Linux as root, or degrades as ``plan`` says.

``detect()`` finds what the machine allows (namespaces and mounts are tried
in throw-away children).  ``prepare(...)`` runs in the provider before the
fork: it makes the kernel's cgroups, mounts its size-capped home tmpfs (the
``mounts`` layer, see ``mounts.py``) and hands its two directories to the
kernel's account.  ``confine_child(...)`` runs in the
child, single-threaded, right after the provider's own ``confine`` step.
``cleanup(...)`` runs after the kernel was reaped: it kills anything left in
its cgroups (a process that escaped with setsid() included) and removes them;
``release_dirs(...)`` unmounts the home tmpfs and removes both directories.
"""
from __future__ import annotations

import ctypes
import errno
import os
import resource
import shutil
import signal
import socket
import time

from cellserver.kernelid import node_of
from cellserver.provider import samepages
from cellserver.sandbox import landlock, mounts, pidns, trial, userns
from cellserver.sandbox.libc import PR_SET_PDEATHSIG, check, libc
from cellserver.sandbox.settings import Capabilities, Plan, SandboxSettings

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_NO_NEW_PRIVS = 38
CONTROLLERS = ("memory", "pids", "cpu")


def detect(settings: SandboxSettings) -> Capabilities:
    root = os.geteuid() == 0
    use_userns = not root and userns.available()
    if root:
        netns = not trial.why_not(lambda: check(libc.unshare(CLONE_NEWNET), "unshare"))
    else:
        netns = use_userns            # userns.available() made one inside it
    init = pidns.init_path()
    if root:
        pidns_error = pidns.available(init)
    elif not use_userns:
        pidns_error = "needs root or user namespaces"
    else:
        pidns_error = "" if os.access(init, os.X_OK) else f"{init} is missing (the install command builds it)"
    mounts_ok, mounts_error = (_try_mounts(use_userns) if root or use_userns else
                               (False, "not root, no user namespaces"))
    cgroups = []
    for c in CONTROLLERS:
        d = os.path.join(settings.cgroup_root, c)
        if os.path.isdir(d) and os.access(d, os.W_OK) and os.path.exists(os.path.join(d, "cgroup.procs")):
            cgroups.append(c)
    try:
        import pyseccomp  # noqa: F401
        seccomp = True
    except (ImportError, OSError):
        seccomp = False
    return Capabilities(root=root, netns=netns, cgroups=tuple(cgroups), seccomp=seccomp,
                        mounts=mounts_ok, mounts_error=mounts_error, userns=use_userns,
                        landlock_abi=landlock.abi_version(),
                        pidns=not pidns_error, pidns_error=pidns_error)


def _try_mounts(in_userns: bool = False) -> tuple[bool, str]:
    """Build a kernel root in a throw-away child (its namespace dies with it);
    ``in_userns``: as a kernel does without root, inside a user namespace and
    in a pid namespace (a fresh /proc needs one)."""
    def attempt() -> str:
        if in_userns:
            userns.enter(mounts.MOUNT_FLAGS | CLONE_NEWNET | pidns.CLONE_NEWPID)
            userns.fork_and_wait()
        return mounts.try_build()
    why = trial.why_not(attempt)
    return not why, why


# --- provider side ---------------------------------------------------------------

def cgroup_dirs(settings: SandboxSettings, kid: str) -> list[str]:
    return [os.path.join(settings.cgroup_root, c, settings.cgroup_name, kid) for c in CONTROLLERS]


def stale_cgroups(settings: SandboxSettings, node: str) -> list[str]:
    """This node's kernel cgroups still on the host: what a provider killed
    before its clean-up (SIGKILL, a crash) left."""
    found = []
    for c in CONTROLLERS:
        parent = os.path.join(settings.cgroup_root, c, settings.cgroup_name)
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        found += [os.path.join(parent, n) for n in names
                  if node_of(n) == node and os.path.isdir(os.path.join(parent, n))]
    return found


def prepare(settings: SandboxSettings, plan: Plan, kid: str, uid: int | None, dirs: list[str],
            home: str | None = None) -> list[str]:
    """Before the fork: the kernel's cgroups (made, limited), its home tmpfs
    (``home``, one of ``dirs``) and its directories' owner."""
    made = []
    if home is not None and plan.layers.get("mounts") and not plan.userns:
        mounts.mount_home(home, settings.home_mb, uid)     # the host's namespace: root only
    if plan.layers.get("cgroups"):
        for d, c in zip(cgroup_dirs(settings, kid), CONTROLLERS):
            os.makedirs(d, exist_ok=True)
            made.append(d)
            if c == "memory":
                limit = settings.memory_mb * 1024 * 1024
                _write(d, "memory.limit_in_bytes", limit)
                _write_quiet(d, "memory.memsw.limit_in_bytes", limit)   # no swap beyond it, where supported
            elif c == "pids":
                _write(d, "pids.max", settings.pids)
            elif c == "cpu":
                _write(d, "cpu.shares", settings.cpu_shares)
    if uid is not None:
        for d in dirs:
            os.chown(d, uid, uid)
    return made


def _write(d: str, name: str, value) -> None:
    with open(os.path.join(d, name), "w") as f:
        f.write(str(value))


def _write_quiet(d: str, name: str, value) -> None:
    try:
        _write(d, name, value)
    except OSError:
        pass


def busy_slots(settings: SandboxSettings) -> set[int]:
    """Slots whose account has a live process on this host (``/proc``, ~0.5 ms):
    another cell server's kernels share the uid range, and a kernel orphaned
    by a killed provider keeps its uid until it is gone."""
    busy = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                slot = os.stat("/proc/" + name).st_uid - settings.uid_base
            except OSError:
                continue
            if 0 <= slot < settings.slots:
                busy.add(slot)
    return busy


def release_dirs(dirs) -> None:
    """After the kernel was reaped (or failed to start): unmount its home tmpfs
    if it has one, and remove its directories."""
    for d in dirs:
        try:
            mounts.unmount_home(d)
        except OSError:
            pass
        shutil.rmtree(d, ignore_errors=True)


def cleanup(cgroups: list[str], timeout: float = 2.0) -> None:
    """Kill whatever is left in the kernel's cgroups, then remove them."""
    deadline = time.monotonic() + timeout
    for d in cgroups:
        while True:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = [int(x) for x in f.read().split()]
            except FileNotFoundError:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.rmdir(d)
                break
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)


# --- child side --------------------------------------------------------------------

def _nproc_per_userns() -> bool:
    """Since Linux 5.14 RLIMIT_NPROC counts a uid's processes per user namespace."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def namespace_flags(plan: Plan, with_root: bool) -> int:
    """The namespaces a kernel leaves for (``with_root``: the mounts layer
    builds it one); without root they are made in its user namespace, with
    the pid namespace among them (``userns.enter_and_fork``)."""
    flags = CLONE_NEWNET if plan.layers.get("net") else 0
    if plan.layers.get("mounts") and with_root:
        flags |= mounts.MOUNT_FLAGS
    if plan.userns and plan.layers.get("pidns"):
        flags |= pidns.CLONE_NEWPID
    return flags


def confine_child(settings: SandboxSettings, plan: Plan, cgroups: list[str], uid: int | None,
                  root: "mounts.RootSpec | None" = None, work_dir: str = "", sock_dir: str = "",
                  landlock_rules: list[tuple[str, int]] | None = None) -> None:
    """In the forked child, single-threaded, before any socket or thread."""
    for d in cgroups:                        # join them while /sys is still there and writable
        _write(d, "cgroup.procs", os.getpid())
    use_mounts = bool(plan.layers.get("mounts") and root is not None)
    flags = namespace_flags(plan, use_mounts)
    if flags and not plan.userns:            # without root: made already, in the user namespace
        check(libc.unshare(flags), f"unshare({flags:#x})")
    if use_mounts:
        mounts.build_root(root, work_dir, sock_dir, uid)
        os.environ["TMPDIR"] = "/tmp"        # /tmp is the kernel's own tmpfs now
    if plan.userns:
        userns.drop_capabilities()           # those it held over its own namespaces
    if uid is not None and plan.layers.get("account"):
        parent = os.getppid()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.environ["USER"] = os.environ["LOGNAME"] = f"cellk{uid}"
        # A change of credentials clears the parent-death signal: set it again,
        # or a kernel outlives a killed provider (an orphan holding its uid).
        check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if os.getppid() != parent:
            os._exit(1)                      # the provider died meanwhile
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    for name, limit in settings.rlimits():
        if name == "RLIMIT_NPROC" and uid is None and not (plan.userns and _nproc_per_userns()):
            continue                         # counts a uid's processes: else the whole host user's
        resource.setrlimit(getattr(resource, name), (limit, limit))
    if landlock_rules is not None and plan.layers.get("landlock"):
        landlock.restrict(landlock_rules, plan.landlock_abi)
    if plan.layers.get("seccomp"):
        install_seccomp()


DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "bpf", "mount", "umount2", "pivot_root",
          "unshare", "setns", "keyctl", "add_key", "request_key", "perf_event_open", "io_uring_setup",
          "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
          "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "userfaultfd",
          "open_by_handle_at", "name_to_handle_at", "chroot", "syslog", "quotactl", "lookup_dcookie",
          "fanotify_init", "fsopen", "fsmount", "fspick", "move_mount", "open_tree")


_BPF: bytes | None = None


def seccomp_program() -> bytes:
    """The deny list below compiled to BPF once (in the template: libseccomp
    takes ~3 ms of CPU per compilation), so each child only loads it."""
    global _BPF
    if _BPF is None:
        import tempfile
        with tempfile.TemporaryFile() as t:
            _build_filter().export_bpf(t)
            t.seek(0)
            _BPF = t.read()
    return _BPF


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def install_seccomp() -> None:
    """Load the filter into this (single-threaded, no_new_privs) process."""
    prog = seccomp_program()
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(PR_SET_SECCOMP)")


def _build_filter():
    """Deny list: EPERM for the calls above, raw IP and packet sockets, new
    user namespaces through clone, and opting in to samepage merging; clone3
    answers ENOSYS (its flags cannot be inspected) so libc falls back to
    clone."""
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            f.add_rule(eperm, name)
        except (ValueError, OSError):
            pass                              # not a syscall on this architecture
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, socket.AF_PACKET))
    for family in (socket.AF_INET, socket.AF_INET6):   # raw IP; raw netlink (getifaddrs) stays allowed
        f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, family), sc.Arg(1, sc.MASKED_EQ, 0xF, socket.SOCK_RAW))
    # Samepage merging: a kernel opts out before its first execution and may
    # not opt in again (a side channel across kernels: samepages.py).
    f.add_rule(eperm, "prctl", sc.Arg(0, sc.EQ, samepages.PR_SET_MEMORY_MERGE), sc.Arg(1, sc.NE, 0))
    f.add_rule(eperm, "madvise", sc.Arg(2, sc.EQ, samepages.MADV_MERGEABLE))
    return f
