"""Namespaces without root: a user namespace per kernel.

Why: on a developer's machine the cell server runs as an ordinary user, who
cannot make network, mount or pid namespaces, nor switch a kernel to an
account of its own.  Inside a new user namespace the process holds every
capability *over the namespaces it owns*, so it can build them all at once
(``unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC |
CLONE_NEWUTS | CLONE_NEWPID)``), mount its own root and a fresh /proc, and
keep the host's view of its files: its uid maps to itself, nothing else is
mapped, ``setgroups`` is denied.  Once the root is built it drops those
capabilities (``capset``), then ``no_new_privs``, rlimits and seccomp follow
as with root.  No per-kernel account and no cgroups here: those need root.

The steps, in the provider's forked child (single-threaded, which
``CLONE_NEWUSER`` requires):

1. ``enter``: the unshare above and the uid/gid maps;
2. ``fork_and_wait``: the pid namespace is for children only, so the child
   forks its PID 1 (that process goes on to confine itself and become the
   namespace's init, ``cellserver.sandbox.pidns``) and stays outside as its
   waiting parent, exiting with its status: the provider tracks this outer
   process, and a SIGKILL to it ends the rest (PID 1's parent-death signal).
"""
from __future__ import annotations

import ctypes
import os

from cellserver.sandbox.pidns import CLONE_NEWPID, exit_code

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def enter(flags: int) -> None:
    """Leave for a new user namespace (and the namespaces in ``flags``, made
    in it), mapping our own uid and gid to themselves and nothing else."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(CLONE_NEWUSER | flags), f"unshare(CLONE_NEWUSER | {flags:#x})")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def fork_and_wait() -> None:
    """Return in a new child (PID 1 when a pid namespace was just made); the
    caller waits for it and exits with its status (``pidns.exit_code``)."""
    child = os.fork()
    if child == 0:
        return
    while True:
        try:
            pid, status = os.waitpid(child, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            os._exit(exit_code(status))


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
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def available() -> bool:
    """Can an unprivileged process here make a user namespace with the others
    in it?  Tried in a throw-away child."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            enter(CLONE_NEWNET | CLONE_NEWPID)
            code = 0
        except BaseException:
            pass
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0
