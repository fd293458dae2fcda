"""One cell server per node name on a host, held by a lock while it runs.

Why: at start a cell server clears what a crashed run of its node left
behind: the kernels' cgroups of that node name, and with them every process
still in them (``sandbox.apply.stale_cgroups``).  A second cell server
started with a node name in use on the same host took the first one's live
kernels for leftovers and killed them (seen: one test suite's server killed
three kernels of another suite running at the same time).  Kernel ids carry
the node name, so two servers of one name also break the edge's routing.

So the pool holds an exclusive ``flock`` on ``<dir>/node-<name>.lock`` for
as long as it runs.  The kernel drops the lock when the process ends, however
it ends (SIGKILL included), so a lock that can be taken means the node's
leftovers really are a dead run's.  One that cannot be taken is a clear
error naming the holder's pid.  Only as root, where there are cgroups to
clear: the directory (``/run/cellstack``) is root's, so no other user can
hold a node's lock to keep it from starting.
"""
from __future__ import annotations

import fcntl
import os

LOCK_DIR = "/run/cellstack"
_held: dict[str, int] = {}          # lock path -> descriptor, taken by this process


class NodeInUse(RuntimeError):
    pass


def lock_path(node: str, lock_dir: str = LOCK_DIR) -> str:
    return os.path.join(lock_dir, f"node-{node}.lock")


def lock_node(node: str, lock_dir: str = LOCK_DIR) -> int:
    """Take ``node``'s lock, or keep it if this process holds it already (a
    second flock on a new descriptor would conflict with our own); returns
    the descriptor that holds it.  Raises ``NodeInUse`` when another live
    process holds it."""
    path = lock_path(node, lock_dir)
    if path in _held:
        return _held[path]
    os.makedirs(lock_dir, mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise NodeInUse(f"node name {node!r} is in use on this host by another cell server (pid {holder}): "
                        f"each cell server on a host needs a --node of its own") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = fd
    return fd


def unlock_node(node: str, lock_dir: str = LOCK_DIR) -> None:
    fd = _held.pop(lock_path(node, lock_dir), None)
    if fd is not None:
        os.close(fd)
