"""The ``pidns`` layer: each kernel in a pid namespace of its own.

Why: a kernel then cannot name, let alone signal, any process outside its
namespace (``kill`` of a host pid is ESRCH, whatever /proc shows), and once
the namespace's first process ends the kernel of the host kills everything
left in it: a ``setsid()`` + double-fork escape dies with the kernel even
before the provider empties its cgroups.

How, for ~1 ms and one tiny process per kernel:

- the provider (root) calls ``unshare(CLONE_NEWPID)``, so its next child is
  PID 1 of a new namespace: ``cellstack-init`` (``init.c``, built by the
  install command), started with ``posix_spawn`` so none of the provider's
  memory is copied for it.  It blocks every signal and reaps what is
  reparented to it: PID 1 must, or orphans stay zombies (and the kernel
  itself could not be PID 1: signals it sends itself without a handler,
  its own ``os.kill(os.getpid(), 9)`` included, are ignored for PID 1);
- the provider's next ``fork()`` is the kernel, PID 2 of the same namespace
  and still the provider's own child: the provider reaps it and reads its
  real status, and its parent-death signal works as without the namespace;
- ``setns()`` back to the provider's own namespace right after, so the next
  kernel gets a new one (a second ``unshare`` would fail otherwise);
- when the kernel has ended (or is killed), the provider SIGKILLs its init,
  which ends the namespace.

Without root the namespace is made inside the kernel's user namespace
(``cellserver.sandbox.userns``), the same way one level down.  From inside
the namespace ``getppid()`` is 0 for a parent outside it; ``host_ppid``
reads the real parent from the host's /proc.
"""
from __future__ import annotations

import os
import sys

from cellserver.sandbox import trial
from cellserver.sandbox.libc import check, libc

CLONE_NEWPID = 0x20000000
INIT_NAME = "cellstack-init"


def init_path() -> str:
    """Where the install command puts ``cellstack-init``: beside the
    interpreter of the venv the provider runs on."""
    return os.path.join(os.path.dirname(sys.executable), INIT_NAME)


def spawn_init(path: str) -> int:
    """Start the init of the namespace made for our next children (its
    stdio on /dev/null: it holds none of ours)."""
    null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    return os.posix_spawn(path, [path, str(os.getpid())], {}, file_actions=null)


class Forker:
    """Provider side (root): ``fork()`` whose child is PID 2 of a new pid
    namespace, after its init."""

    def __init__(self, init: str):
        self.init = init
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def fork(self) -> tuple[int, int]:
        """(kernel pid, init pid) in the parent; (0, 0) in the child."""
        check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        try:
            init = spawn_init(self.init)
        except BaseException:
            self._back()
            raise
        try:
            pid = os.fork()
        except BaseException:
            self._back()
            _kill(init)
            raise
        if pid == 0:
            return 0, 0
        self._back()
        return pid, init

    def _back(self) -> None:
        check(libc.setns(self._own, CLONE_NEWPID), "setns(own pid namespace)")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def available(init: str) -> str:
    """Why a pid namespace per kernel cannot be made here ("" when it can):
    tried in a throw-away child, where the kernel must come out as PID 2."""
    if not os.access(init, os.X_OK):
        return f"{init} is missing (the install command builds it)"

    def attempt() -> str:
        check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        first = spawn_init(init)
        inner = os.fork()
        if inner == 0:
            os._exit(0 if os.getpid() == 2 else 1)
        ok = os.waitpid(inner, 0)[1] == 0
        _kill(first)
        os.waitpid(first, 0)
        return "" if ok else "the kernel did not come out as PID 2"
    return trial.why_not(attempt)


def host_ppid() -> int:
    """This process's parent's pid, also when the parent is outside our pid
    namespace (``getppid()`` is 0 then): field 4 of /proc/self/stat, read
    through the host's /proc (mounted still: only the kernel mounts its own)."""
    ppid = os.getppid()
    if ppid:
        return ppid
    with open("/proc/self/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])
