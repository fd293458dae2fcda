"""The ``pidns`` layer: each kernel in a pid namespace of its own.

Why: a kernel then cannot name, let alone signal, any process outside its
namespace (``kill`` of a host pid is ESRCH, whatever /proc shows), and when
the namespace's first process ends the kernel of the host kills everything
left in it: a ``setsid()`` + double-fork escape dies with the kernel even
before the provider empties its cgroups.

How, at the cost of ~0.5 ms per kernel and no extra process in the provider:

- the provider (root) calls ``unshare(CLONE_NEWPID)`` right before its
  ``fork()``, so that child is PID 1 of a new namespace, and ``setns()`` back
  to its own namespace right after, so the next fork starts clean (a second
  ``unshare`` would fail otherwise).  The provider is still that child's
  parent: it gets its host pid from ``fork()``, reaps it, and the child's
  parent-death signal still works;
- that child (the namespace's *init*) confines itself as every kernel does,
  then forks the kernel proper (PID 2) and does nothing but reap: PID 1 of a
  namespace ignores signals it has no handler for when they come from inside
  (so a kernel's own ``os.kill(os.getpid(), 9)`` would do nothing if the
  kernel were PID 1), and orphans are reparented to it: it must reap them or
  they stay zombies;
- init exits with the kernel's status, a signal death as ``128 + signal``
  (``exit_code``), which the provider reads back (``status_of_init``), so a
  kernel killed by SIGKILL is still reported as such.

The provider tracks init's host pid as the kernel's pid: SIGKILL to it ends
the namespace.  A process outside the namespace gets ``0`` from
``getppid()``; ``host_ppid`` reads the real parent from the host's /proc.
"""
from __future__ import annotations

import ctypes
import os
import signal

CLONE_NEWPID = 0x20000000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


class Forker:
    """Provider side: ``fork()`` whose child starts a new pid namespace."""

    def __init__(self):
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fork(self) -> int:
        _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        try:
            pid = os.fork()
        except BaseException:
            self._back()
            raise
        if pid:
            self._back()
        return pid

    def _back(self) -> None:
        _check(_libc.setns(self._own, CLONE_NEWPID), "setns(own pid namespace)")

    def close(self) -> None:
        os.close(self._own)


def available() -> bool:
    """Can this process make pid namespaces (root, not forbidden here)?  Tried
    in a throw-away child, whose own child is then PID 1."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _check(_libc.unshare(CLONE_NEWPID), "unshare")
            inner = os.fork()
            if inner == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            code = os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1])
        except BaseException:
            pass
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


def host_ppid(stat_fd: int | None = None) -> int:
    """This process's parent's pid, also when the parent is outside our pid
    namespace (``getppid()`` is 0 then): field 4 of /proc/self/stat, read
    through the host's /proc (``stat_fd``: opened on it before our own /proc
    was mounted)."""
    ppid = os.getppid()
    if ppid:
        return ppid
    if stat_fd is None:
        with open("/proc/self/stat", "rb") as f:
            data = f.read()
    else:
        data = os.pread(stat_fd, 4096, 0)
    return int(data.rsplit(b")", 1)[1].split()[1])


def become_init() -> None:
    """In the namespace's first process, confined: fork the kernel and return
    in it; in the parent, reap until the kernel ends, then exit with its
    status.  The kernel gets a session of its own, so ipykernel's interrupt
    (``killpg`` of its group) reaches its processes and not init."""
    kernel = os.fork()
    if kernel == 0:
        os.setsid()
        return
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == kernel:
            os._exit(exit_code(status))


def exit_code(status: int) -> int:
    """Init's exit code for its kernel's wait status (a signal death: 128 + n)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def status_of_init(status: int) -> int:
    """The wait status the kernel ended with, from init's own: an exit code
    ``128 + n`` (n a signal) reads as death by that signal."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code > 128 and (code - 128) in _SIGNALS:
            return code - 128              # wait status of "killed by signal n" (no core)
    return status


_SIGNALS = {int(s) for s in signal.Signals}
