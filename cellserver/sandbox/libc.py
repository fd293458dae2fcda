"""The C library calls the sandbox makes (unshare, setns, mount, prctl,
capset, the Landlock syscalls...), and their errors as ``OSError``: one
handle, one way to turn ``errno`` into an exception with what was tried."""
from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# prctl(2) options used here (linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36


def error(what: str) -> OSError:
    """The ``OSError`` for the call that just failed (its ``errno``)."""
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def check(ret: int, what: str) -> None:
    """Raise ``error(what)`` unless the call returned 0."""
    if ret != 0:
        raise error(what)
