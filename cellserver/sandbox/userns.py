"""Namespaces without root: a user namespace per kernel.

Why: on a developer's machine the cell server runs as an ordinary user, who
cannot make network, mount or pid namespaces, nor switch a kernel to an
account of its own.  Inside a new user namespace the process holds every
capability *over the namespaces it owns*, so it can build them all at once
(``unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC |
CLONE_NEWUTS | CLONE_NEWPID)``), mount its own root and a fresh /proc, and
keep the host's view of its files: its uid maps to itself, nothing else is
mapped, ``setgroups`` is denied.  Once the root is built it drops those
capabilities (``capset``), then ``no_new_privs``, rlimits, Landlock and seccomp
follow as with root.  No per-kernel account and no cgroups here: those need root.

The steps, in the provider's forked child (single-threaded, which
``CLONE_NEWUSER`` requires):

1. ``enter``: the unshare above and the uid/gid maps;
2. the pid namespace is for children only, so the child starts its init
   (PID 1, ``cellserver.sandbox.pidns``), forks the kernel (PID 2, which
   confines itself) and stays outside as the kernel's waiting parent, then
   ends its init and exits the way the kernel did: the provider tracks this
   outer process, and a SIGKILL to it ends the rest (parent-death signals).

Both steps are ``enter_and_fork``.
"""
from __future__ import annotations

import ctypes
import os
import signal

from cellserver.sandbox.libc import PR_SET_PDEATHSIG, check, libc
from cellserver.sandbox.pidns import CLONE_NEWPID, spawn_init
from cellserver.sandbox.trial import why_not

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def enter(flags: int) -> None:
    """Leave for a new user namespace (and the namespaces in ``flags``, made
    in it), mapping our own uid and gid to themselves and nothing else."""
    uid, gid = os.geteuid(), os.getegid()
    check(libc.unshare(CLONE_NEWUSER | flags), f"unshare(CLONE_NEWUSER | {flags:#x})")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def enter_and_fork(flags: int, parent_pid: int, init: str) -> int:
    """In the provider's child: into a new user namespace with the namespaces
    in ``flags``.  With a pid namespace among them, start its init (PID 1,
    ``init``) and fork the kernel (PID 2), and stay outside as the kernel's
    waiting parent: when it ends, end its init and exit the way it did.
    Returns, in the process that goes on, the host pid of its parent."""
    _quiet_copy(parent_pid)
    enter(flags)
    if not flags & CLONE_NEWPID:
        return parent_pid
    outer = os.getpid()
    first = spawn_init(init)
    kernel = os.fork()
    if kernel == 0:
        return outer
    status = _wait_for(kernel)
    os.kill(first, signal.SIGKILL)
    _exit_like(status)


def _quiet_copy(parent_pid: int) -> None:
    """First thing in the outer process: none of the provider's descriptors
    or signal handlers, death with the provider."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    os.closerange(3, 1 << 16)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent_pid:
        os._exit(1)                             # the provider died while we forked


def _wait_for(child: int) -> int:
    while True:
        try:
            pid, status = os.waitpid(child, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            return status


def _exit_like(status: int) -> None:
    """End this process as ``status`` says its child ended: by the same
    signal (default action), or with the same code."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):     # those cannot be caught, nor reset
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def fork_and_wait() -> None:
    """Return in a new child; here, wait for it and exit the way it did."""
    child = os.fork()
    if child == 0:
        return
    _exit_like(_wait_for(child))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def drop_capabilities() -> None:
    """Clear the effective, permitted and inheritable sets (what the user
    namespace granted: mounts are built, nothing more may be done with them)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(libc.capset(ctypes.byref(header), data), "capset")


def available() -> bool:
    """Can an unprivileged process here make a user namespace with the others
    in it?  Tried in a throw-away child."""
    return not why_not(lambda: enter(CLONE_NEWNET | CLONE_NEWPID))
