"""The one step a forked kernel takes before it does anything else.

``confine`` runs in the child right after ``fork()``, while the child is
still single-threaded and before it binds a socket, starts a thread or runs
any user code.  That is the point where a process can still change what it
is allowed to do for the rest of its life: issue 3 (the sandbox) adds its
layers here, in this order, after the steps below:

1. namespaces (``unshare``: user, mount, pid, net, ipc, uts) -- needs a
   single-threaded process, which is why nothing before this may start one;
2. mounts: read-only ``/usr``, interpreter and virtualenv; a size-capped tmpfs
   for HOME and /tmp; the socket directory bound in;
3. as root: switch to a per-kernel unprivileged account; ``no_new_privs``;
4. rlimits (address space, CPU, file size, open files, core=0, nproc);
5. cgroup membership (the provider can do this from outside, by pid);
6. the seccomp filter, last, since it forbids the calls above.

(Done in ``cellserver.sandbox.apply.confine_child``; the mount, IPC, UTS and
net namespaces and the kernel's own root in ``cellserver.sandbox.mounts``.
The pid namespace is made around the provider's fork, with a tiny init as
its PID 1: ``cellserver.sandbox.pidns``.)

Before the fork the provider has made the kernel's two directories (mode
0700, owned by the provider's user): ``sock_dir`` for the ipc sockets the
kernel binds after ``confine`` returns, ``work_dir`` for user files (served by
the cell server as ``/kernel/<id>/files/``).  The sandbox hands both to the
kernel's account (chown; ``work_dir`` is then a size-capped tmpfs on the host)
and binds both into the kernel's root at their own paths: the cell server
connects to the sockets and reads the files by the host paths.

Today it does the part every kernel needs: its own session and process group
(so ``killpg`` ends everything it starts and an interrupt reaches its
children), default signal handling (the provider's SIGCHLD wake-up and
blocked signals must not leak into kernels; SIGINT raises
KeyboardInterrupt), stdin from /dev/null, only fds 0-2 open, the per-kernel
working directory as cwd and HOME, and a fresh random state for libraries
that keep one across fork.
"""
from __future__ import annotations

import _signal
import os
import signal
import sys
from dataclasses import dataclass

from cellserver.sandbox.libc import PR_SET_NAME, PR_SET_PDEATHSIG, libc
from cellserver.sandbox.pidns import host_ppid

# Looked up once in the template: every object the child touches after the
# fork costs it a copied page, and ctypes builds a function object at a
# name's first lookup, ``signal``'s Python wrappers an enum member per call.
_prctl = libc.prctl
_RESET_SIGNALS = tuple(int(s) for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                                        signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM))
_SIG_DFL = int(signal.SIG_DFL)
_SIG_SETMASK = int(signal.SIG_SETMASK)
_SIGINT = int(signal.SIGINT)


@dataclass(frozen=True)
class Confinement:
    """What the child is confined to (issue 3 extends this)."""

    work_dir: str       # cwd and HOME; the files served under /kernel/<id>/files/
    sock_dir: str       # the kernel's ipc sockets (bound after confine returns)
    parent_pid: int = 0  # the provider: the kernel dies with it


def confine(c: Confinement) -> None:
    """Confine the current (forked, single-threaded) process.  Raises on failure:
    the caller must then exit without running the kernel."""
    os.setsid()                                   # own session + process group, pgid == pid
    _die_with_parent(c.parent_pid)
    _name_process()
    _reset_signals()
    _reset_fds()
    os.chdir(c.work_dir)
    os.environ["HOME"] = c.work_dir
    os.environ["TMPDIR"] = c.work_dir
    os.environ["PWD"] = c.work_dir
    os.umask(0o077)
    _reseed()


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this kernel when the provider dies (the pool then kills the rest
    of its process group by pgid)."""
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent_pid and host_ppid() != parent_pid:
        os._exit(1)                               # the provider died while we forked


KERNEL_COMM = b"cs-kernel"


def _name_process() -> None:
    """Name the kernel ``cs-kernel`` in ``/proc/<pid>/comm`` (what ps, top and
    perf show; threads started later inherit it), so operators and profiles
    tell kernels from the provider and the cell server, all ``python``."""
    _prctl(PR_SET_NAME, KERNEL_COMM, 0, 0, 0)             # a failure only leaves the name


def _reset_signals() -> None:
    _signal.set_wakeup_fd(-1)
    _signal.pthread_sigmask(_SIG_SETMASK, ())
    for sig in _RESET_SIGNALS:
        _signal.signal(sig, _SIG_DFL)
    _signal.signal(_SIGINT, signal.default_int_handler)


def _reset_fds() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    # fd 1 goes nowhere; fd 2 stays the provider's stderr so a kernel that
    # fails to boot leaves a traceback in the cell server's log (once running,
    # ipykernel captures fds 1 and 2 and sends that output to the client).
    os.dup2(null, 1)
    os.closerange(3, _max_fd())


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 4096


MT19937_WORDS = 624


def _reseed() -> None:
    """The legacy global generator (``numpy.random.rand`` ...) would give
    every kernel the template's numbers.  Its whole state straight from the
    OS, with the position at the end so the first draw regenerates it: what
    ``numpy.random.seed()`` amounts to, at half the pages it touches (its
    SeedSequence path runs a dozen Python and Cython calls).  A numpy.random
    the template never imported seeds itself from the OS when imported."""
    random = sys.modules.get("numpy.random")
    if random is not None:
        np = sys.modules["numpy"]
        words = np.frombuffer(os.urandom(4 * MT19937_WORDS), dtype=np.uint32)
        random.set_state(("MT19937", words, MT19937_WORDS, 0, 0.0))
