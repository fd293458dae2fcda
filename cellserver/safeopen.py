"""Open a file a kernel wrote, from the cell server, without trusting the path.

Why: the kernel's work directory is the kernel's, and the kernel is hostile.
Checking a path with ``realpath`` and opening it afterwards leaves a window:
between the two the kernel can swap a directory on the path for a symlink
to anywhere on the host (and the cell server runs as root), or a file for
a FIFO that would block the reactor in ``open``.  ``open_beneath`` walks
the path one component at a time from an open descriptor of the root, with
``O_NOFOLLOW`` at every step and ``O_NONBLOCK`` on the file, and accepts
only a regular file: what it returns is beneath the root whatever the
kernel does meanwhile.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


def open_beneath(root: str, rel: str) -> BinaryIO:
    """``root/rel`` opened for reading; FileNotFoundError unless it is a
    regular file reached without a symlink, ``..`` or an absolute part."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\0" in rel:
        raise FileNotFoundError(rel)
    fd = os.open(root, _DIR)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError as e:
                raise FileNotFoundError(rel) from e     # a symlink (ELOOP), a file, nothing
            os.close(fd)
            fd = child
        try:
            file_fd = os.open(parts[-1], _FILE, dir_fd=fd)
        except OSError as e:
            raise FileNotFoundError(rel) from e
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise FileNotFoundError(rel)
    os.set_blocking(file_fd, True)
    return os.fdopen(file_fd, "rb")
