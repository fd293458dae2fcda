"""The ``mounts`` layer: a kernel's own root file system, built in the forked
child (as root, single-threaded, before any user code) with unshare(2),
mount(2) and pivot_root(2) through libc.

The child leaves the host's mount, IPC and UTS namespaces (with the network
one), makes every mount private, mounts a small tmpfs on an empty host
directory and builds a root there:

- read-only binds of ``/usr`` (``/bin``, ``/lib``, ... as the host's
  merged-usr symlinks, or binds where they are directories), of the
  interpreter's and virtualenv's prefixes that are not under ``/usr``, and of
  the IPython directory the template uses;
- a minimal ``/etc``: a few files and directories bound read-only
  (``ld.so.cache``, ``localtime``, ``fonts``, ``alternatives``, ...; never
  ``shadow``), and a written ``passwd``, ``group``, ``hosts`` that name only
  root and the kernel's own account;
- ``/dev`` on a tmpfs: ``null``, ``zero``, ``full``, ``random``, ``urandom``
  bound from the host, ``/dev/shm`` a size-capped tmpfs, the usual symlinks;
- ``/proc``, a fresh instance mounted ``hidepid=invisible``: the kernel (its
  own account) sees only its own processes;
- ``/tmp``, a size-capped tmpfs (``tmp_mb``) that exists only in the
  kernel's namespace, so it vanishes with the kernel;
- the kernel's working directory (its HOME) at its host path, read-write:
  on the host it is a size-capped tmpfs (``home_mb``) the provider mounts
  before the fork and unmounts after the kernel ended, so the cell server
  serves the kernel's files from the host path (``/kernel/<id>/files/``);
- the kernel's ipc socket directory at its host path, read-write (the
  kernel binds its sockets there; the cell server connects by path).

Then ``pivot_root``, the old root is detached (nothing of the host is left:
no ``/root``, ``/home``, project tree, other kernels' directories) and the
new root tmpfs is remounted read-only.  Every mount lives in the kernel's
namespace and disappears with its last process; only the home tmpfs is in
the host's namespace, for the kernel's lifetime.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys
from dataclasses import dataclass

from cellserver.sandbox.libc import error, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
MOUNT_FLAGS = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "ppc64le": 203, "s390x": 217}

libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

ETC_FILES = ("ld.so.cache", "localtime", "timezone", "nsswitch.conf", "mime.types", "host.conf")
ETC_DIRS = ("fonts", "alternatives", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}")
DEV_NODES = ("null", "zero", "full", "random", "urandom")
TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _b(path) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(src, target, fstype, flags: int, data=None) -> None:
    if libc.mount(_b(src), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise error(f"mount {target}")


def umount(target, flags: int = MNT_DETACH) -> None:
    if libc.umount2(_b(target), flags) != 0:
        raise error(f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "pivot_root: unknown architecture")
    if libc.syscall(nr, _b(new_root), _b(put_old)) != 0:
        raise error("pivot_root")


@dataclass(frozen=True)
class RootSpec:
    """What every kernel's root holds (worked out once, in the template)."""

    mountpoint: str                                   # an empty host directory (the new root's tmpfs)
    ro_dirs: tuple[str, ...] = ()                     # bound read-only at their own paths
    links: tuple[tuple[str, str], ...] = ()           # (path, target) symlinks in the new root
    etc_files: tuple[str, ...] = ()                   # host files under /etc bound read-only
    etc_links: tuple[tuple[str, str], ...] = ()
    hostname: str = "cell"
    home_mb: int = 64
    tmp_mb: int = 64
    shm_mb: int = 16


def _covered(path: str, dirs) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _entries_and_links(paths: list[str], is_kind) -> tuple[list[str], list[tuple[str, str]]]:
    """Split host ``paths`` into those that exist as ``is_kind`` (to bind) and
    symlinks (to recreate as (path, target), e.g. Debian's /bin -> usr/bin)."""
    entries, links = [], []
    for p in paths:
        if os.path.islink(p):
            links.append((p, os.readlink(p)))
        elif is_kind(p):
            entries.append(p)
    return entries, links


def root_spec(mountpoint: str, home_mb: int = 64, tmp_mb: int = 64, shm_mb: int = 16,
              extra_ro: tuple[str, ...] = ()) -> RootSpec:
    """The read-only parts of a kernel's root on this machine: /usr and the
    interpreter's prefixes (never ``sys.path`` as a whole: the project tree is
    on it and must stay hidden; what the kernel needs of it is imported in the
    template)."""
    top, links = _entries_and_links(["/" + name for name in TOP_LINKS], os.path.isdir)
    ro = ["/usr", *top]
    exe = os.path.realpath(sys.executable)
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(exe)), *extra_ro]
    for p in candidates:
        if not p:
            continue
        p = os.path.realpath(p)
        if p != "/" and os.path.isdir(p) and not _covered(p, ro):
            ro = [d for d in ro if not _covered(d, [p])] + [p]
    # a virtualenv's bin/python may be a symlink chain through paths outside /usr
    p = sys.executable
    while os.path.islink(p):
        target = os.readlink(p)
        p = target if os.path.isabs(target) else os.path.join(os.path.dirname(p), target)
        d = os.path.dirname(os.path.realpath(p))
        if not _covered(d, ro):
            ro.append(d)
    etc_files, etc_links = _entries_and_links(["/etc/" + name for name in ETC_FILES], os.path.isfile)
    for name in ETC_DIRS:
        p = "/etc/" + name
        if os.path.isdir(p) and not os.path.islink(p):
            ro.append(p)
    return RootSpec(mountpoint=mountpoint, ro_dirs=tuple(ro), links=tuple(links),
                    etc_files=tuple(etc_files), etc_links=tuple(etc_links),
                    home_mb=home_mb, tmp_mb=tmp_mb, shm_mb=shm_mb)


def mount_home(work_dir: str, size_mb: int, uid: int | None) -> None:
    """Host side, before the fork: the kernel's working directory becomes a
    size-capped tmpfs (its files are served from here by the cell server)."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    mount("cellstack-home", work_dir, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={size_mb}m,nr_inodes=16384,mode=0700{owner}")


def unmount_home(work_dir: str) -> None:
    try:
        umount(work_dir)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):   # not a mount point (any more)
            raise


def mounts_under(path: str) -> list[str]:
    """Mount points below ``path`` (not ``path`` itself) in this process's
    namespace, deepest first."""
    path = path.rstrip("/")
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp.startswith(path + "/"):
                    found.append(mp)
    except OSError:
        return []
    return sorted(set(found), key=len, reverse=True)


def unmount_under(path: str) -> None:
    """Best effort: detach whatever a crashed provider left mounted below ``path``."""
    for mp in mounts_under(path):
        try:
            umount(mp)
        except OSError:
            pass


# --- child side ---------------------------------------------------------------------


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _touch(path: str) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _bind(src: str, dst: str, readonly: bool, extra: int = 0) -> None:
    if os.path.isdir(src):
        _mkdirs(dst)
    else:
        _mkdirs(os.path.dirname(dst))
        _touch(dst)
    mount(src, dst, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | extra | (MS_RDONLY if readonly else 0)
    mount(None, dst, None, flags)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def build_root(spec: RootSpec, work_dir: str, sock_dir: str, uid: int | None) -> None:
    """In the forked child, as root, after ``unshare(MOUNT_FLAGS | CLONE_NEWNET)``:
    build the kernel's root and pivot into it.  Raises on any failure."""
    old_umask = os.umask(0o022)
    try:
        _build(spec, work_dir, sock_dir, uid)
    finally:
        os.umask(old_umask)


def _build(spec: RootSpec, work_dir: str, sock_dir: str, uid: int | None) -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)        # nothing we do here reaches the host
    r = spec.mountpoint.rstrip("/")
    mount("cellstack-root", r, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    # /tmp first: what is bound below it (the IPython directory, home, sockets) goes on top
    _mkdirs(r + "/tmp")
    mount("cellstack-tmp", r + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={spec.tmp_mb}m,nr_inodes=16384,mode=1777")
    for path in spec.ro_dirs:
        _bind(path, r + path, readonly=True, extra=MS_NODEV)
    for path, target in spec.links:
        os.symlink(target, r + path)
    _mkdirs(r + "/etc")
    for path in spec.etc_files:
        _bind(path, r + path, readonly=True, extra=MS_NODEV | MS_NOEXEC)
    for path, target in spec.etc_links:
        os.symlink(target, r + path)
    name = f"cellk{uid}" if uid is not None else "kernel"
    kuid = uid if uid is not None else os.getuid()
    _write(r + "/etc/passwd", f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                              f"{name}:x:{kuid}:{kuid}:kernel:{work_dir}:/bin/sh\n")
    _write(r + "/etc/group", f"root:x:0:\n{name}:x:{kuid}:\n")
    _write(r + "/etc/hosts", f"127.0.0.1\tlocalhost {spec.hostname}\n::1\tlocalhost\n")
    _write(r + "/etc/hostname", spec.hostname + "\n")
    # /dev
    _mkdirs(r + "/dev")
    mount("cellstack-dev", r + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
    for node in DEV_NODES:
        _bind("/dev/" + node, r + "/dev/" + node, readonly=False, extra=MS_NOEXEC)
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{r}/dev/{link}")
    _mkdirs(r + "/dev/shm")
    mount("cellstack-shm", r + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          f"size={spec.shm_mb}m,nr_inodes=1024,mode=1777")
    mount(None, r + "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    # /proc: only the kernel's own processes (its own account)
    _mkdirs(r + "/proc")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    try:
        mount("proc", r + "/proc", "proc", flags, "hidepid=invisible")
    except OSError:
        mount("proc", r + "/proc", "proc", flags, "hidepid=2")   # kernels before 5.8
    # home and sockets at their host paths (usually below /tmp)
    _bind(work_dir, r + work_dir, readonly=False, extra=MS_NODEV)
    _bind(sock_dir, r + sock_dir, readonly=False, extra=MS_NODEV | MS_NOEXEC)
    # into it; the host's tree goes away
    os.chdir(r)
    pivot_root(".", ".")          # the old root ends up stacked on top of the new one...
    umount(".", MNT_DETACH)       # ...and is detached: nothing of the host is reachable
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(work_dir)
    try:
        libc.sethostname(spec.hostname.encode(), len(spec.hostname))
    except (AttributeError, OSError):
        pass


def try_build() -> str:
    """In a throw-away child (``detect``): the whole sequence on scratch
    directories.  Returns "" when it works, else why not."""
    try:
        if libc.unshare(MOUNT_FLAGS) != 0:
            raise error("unshare(mount, ipc, uts)")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        scratch = "/tmp"                  # a tmpfs over it, in this child's namespace only
        mount("cellstack-detect", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        dirs = [os.path.join(scratch, n) for n in ("root", "work", "sock")]
        for d in dirs:
            os.mkdir(d)
        mount_home(dirs[1], 1, None)
        build_root(root_spec(dirs[0], 1, 1, 1), dirs[1], dirs[2], None)
        if os.path.exists("/root") or not os.path.isdir("/usr/lib") or os.getcwd() != dirs[1]:
            return "the built root does not look as planned"
        return ""
    except OSError as e:
        return str(e)
