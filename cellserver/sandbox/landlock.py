"""The ``landlock`` layer: what a kernel may touch, enforced by the kernel's
Landlock LSM (unprivileged, Linux 5.13+), on top of the namespaces.

Why: one layer failing must not be a breach, and Landlock needs neither root
nor user namespaces, so it is the layer left where both are missing (a
laptop whose distribution forbids unprivileged user namespaces).  There the
kernel shares the host's file tree, network and pid space with its user's
other processes; Landlock still confines it to:

- files: read and execute under the interpreter's and virtualenv's prefixes
  and ``/usr`` (``RootSpec.ro_dirs``), read ``/etc``'s few needed files,
  ``/proc``, the device nodes a process needs; read-write only its home and
  socket directory (and, in its own root, its ``/tmp`` and ``/dev/shm``);
- network (ABI 4+): no TCP bind or connect at all;
- scope (ABI 6+): no signal to a process outside its domain (the cell
  server, other kernels run by the same user), no abstract unix socket
  outside it.

Rights the running kernel's ABI does not know are left out (best effort, as
the Landlock documentation recommends), and the ABI version is reported.
Applied after ``no_new_privs`` (which Landlock needs) and before seccomp.
"""
from __future__ import annotations

import ctypes
import os

from cellserver.sandbox.libc import error, libc

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446    # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

FS_V1 = (1 << 13) - 1                      # EXECUTE .. MAKE_SYM
READ = READ_FILE | READ_DIR
RO_EXEC = EXECUTE | READ
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV   # what a rule on a file may hold
RW = FS_V1 & ~(MAKE_CHAR | MAKE_BLOCK) | REFER | TRUNCATE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The Landlock ABI of the running kernel; 0 when it has none (or it is off)."""
    v = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, int(v))


def handled(abi: int) -> tuple[int, int, int]:
    """(fs, net, scope) rights this ABI can restrict."""
    fs = FS_V1 | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0) | (IOCTL_DEV if abi >= 5 else 0)
    net = (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0
    scope = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0
    return fs, net, scope


ETC_NEEDED = ("passwd", "group", "hosts", "hostname")     # besides RootSpec.etc_files


def rules(ro_dirs, etc_paths, rw_dirs, own_root: bool) -> list[tuple[str, int]]:
    """(path, rights) a kernel is allowed, pure.  ``own_root``: the mounts
    layer built its root (its /, /etc, /tmp and /dev are its own)."""
    out = [(p, RO_EXEC) for p in ro_dirs]
    out += [("/", READ_DIR), ("/etc", READ)] if own_root else [(p, READ_FILE) for p in etc_paths]
    out += [("/proc", READ)]
    out += [(f"/dev/{n}", READ_FILE | WRITE_FILE | IOCTL_DEV) for n in ("null", "zero", "full", "random", "urandom")]
    rw = list(rw_dirs) + (["/tmp", "/dev/shm"] if own_root else [])
    out += [(p, RW) for p in rw]
    return out


def restrict(paths: list[tuple[str, int]], abi: int) -> None:
    """Build the ruleset and enforce it on this (no_new_privs) process and
    everything it starts.  Paths that do not exist here are skipped."""
    fs, net, scope = handled(abi)
    attr = _RulesetAttr(fs, net, scope)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise error("landlock_create_ruleset")
    try:
        for path, rights in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                allowed = rights & fs
                if not os.path.isdir(path):
                    allowed &= FILE_RIGHTS
                rule = _PathBeneath(allowed, fd)
                if libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise error(f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        if libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise error("landlock_restrict_self")
    finally:
        os.close(ruleset)


