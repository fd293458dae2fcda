"""The kernel template's fork loop, and the provider's side of it.

The provider is two processes: its logic (the protocol with the cell
server, directories, cgroups, accounts, clean-up: ``__main__``) and, as its
child, the warm template, which after ``warm_template`` only forks kernels
on command.  Why two: every object a Python loop touches lives on pages the
template shares with its ready kernels, so a template that also ran the
provider's loop copied ~420 of its own pages per kernel (``minflt``) and its
first write into a huge page split it (``hugepages.py``: 44 MB in 2 MiB
pages at start, 6 MB a minute into a load test), after which each fork
copied one page-table entry per 4 KiB (``copy_page_range``, 21% of the
provider's CPU).  Measured on this VM with a 64 MB region and 3,000 pages
written by each child: fork + child 0.3 + 9.7 ms from intact huge pages,
3.1 + 11.3 ms from a parent that writes 400 pages between forks.

The loop itself is C (``forkserver.c``, built into the venv by the install
command), entered once through ``ctypes.PyDLL``: between forks the template
runs no Python at all.  Where the library is missing, :func:`serve_python`
is the same loop in Python (the same wire format, the copies above).

Wire format (both pipes carry fixed-size native-endian int32 records):
commands ``HEAD`` (op, arg, len) + ``len`` bytes of payload; reports
``RECORD`` (kind, pid, init, value).  A started child gets the payload
(its pickled parameters) back from :func:`serve`, whose caller then runs the
kernel; the parent never returns from it until the command pipe closes.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import struct
import sys
import time

HEAD = struct.Struct("=iii")        # op, arg, payload length
RECORD = struct.Struct("=iiii")     # kind, pid, init, value
OP_START, OP_KILL = 1, 2
FLAG_NEWPID = 1
STARTED, START_FAILED, EXITED = 1, 2, 3
MAX_PAYLOAD = 1 << 18
LIBRARY_NAME = "cellstack-forkserver.so"


def library_path() -> str:
    """Where the install command puts the C loop: the venv's lib/."""
    return os.path.join(sys.prefix, "lib", LIBRARY_NAME)


def load_library(path: str | None = None):
    """The C loop, or None (then :func:`serve_python` runs instead)."""
    path = path or library_path()
    if not os.path.exists(path):
        return None
    lib = ctypes.PyDLL(path)        # keeps the GIL: the child returns into Python as from os.fork
    fn = lib.cs_forkserver
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


class TemplateLost(OSError):
    """The template closed its report pipe: it died."""


def serve(cmd_fd: int, report_fd: int, init_path: str | None, loop=None) -> bytes | None:
    """Template side: fork on command until the command pipe closes (None:
    the caller exits) or, in a forked child, return its payload."""
    if loop is None:
        return serve_python(cmd_fd, report_fd, init_path)
    buf = ctypes.create_string_buffer(MAX_PAYLOAD)
    n = loop(cmd_fd, report_fd, (init_path or "").encode(), buf, MAX_PAYLOAD)
    if n == -2:
        raise OSError(ctypes.get_errno(), "cs_forkserver could not set up its signals")
    if n < 0:
        return None
    ctypes.pythonapi.PyOS_AfterFork_Child()     # what os.fork() does in its child
    return buf.raw[:n]


def serve_python(cmd_fd: int, report_fd: int, init_path: str | None) -> bytes | None:
    """:func:`serve` without the C library: the same loop and reports."""
    from cellserver.sandbox import pidns
    live: dict[int, int] = {}       # kernel pid -> its namespace's init (0: none)
    forker = pidns.Forker(init_path) if init_path else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    old_chld = signal.signal(signal.SIGCHLD, lambda *a: None)

    def report(kind, pid=0, init=0, value=0):
        try:
            os.write(report_fd, RECORD.pack(kind, pid, init, value))
        except OSError:
            pass

    def kill_kernel(pid):
        for target in (pid, -pid, live[pid]):
            if target:
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass

    def reap():
        for pid, status in reaped():
            if pid in live:
                init = live[pid]
                kill_kernel(pid)
                del live[pid]
                report(EXITED, pid, init, status)

    while True:
        reap()
        try:
            ready, _, _ = select.select([cmd_fd, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if cmd_fd not in ready:
            continue
        head = read_exact(cmd_fd, HEAD.size)
        if head is None:
            break
        op, arg, length = HEAD.unpack(head)
        if op == OP_KILL:
            if arg in live:
                kill_kernel(arg)
            continue
        if op != OP_START or not 0 <= length <= MAX_PAYLOAD:
            read_exact(cmd_fd, max(0, length))
            report(START_FAILED, value=errno.EINVAL if op != OP_START else errno.E2BIG)
            continue
        payload = read_exact(cmd_fd, length)
        if payload is None:
            break
        try:
            pid, init = forker.fork() if forker is not None and arg & FLAG_NEWPID else (os.fork(), 0)
        except OSError as e:
            report(START_FAILED, value=e.errno or errno.EIO)
            continue
        if pid == 0:
            signal.signal(signal.SIGCHLD, old_chld)
            signal.set_wakeup_fd(old_wakeup)
            for fd in (wake_r, wake_w, cmd_fd, report_fd):
                os.close(fd)
            return payload
        live[pid] = init
        report(STARTED, pid, init)
    for pid in list(live):
        kill_kernel(pid)
    reap_for(2.0)
    return None


def reaped():
    """(pid, wait status) of each child that has ended, reaped now."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def reap_for(seconds: float) -> None:
    """Reap children as they end, for at most ``seconds`` or until none is left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.01)
        except ChildProcessError:
            return


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def write_message(fd: int, data: bytes) -> None:
    """One length-prefixed message (the template's hello, before its loop)."""
    write_all(fd, len(data).to_bytes(4, "little") + data)


def read_message(fd: int) -> bytes | None:
    """What ``write_message`` wrote; None at EOF."""
    head = read_exact(fd, 4)
    return read_exact(fd, int.from_bytes(head, "little")) if head else None


def read_exact(fd: int, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        try:
            data = os.read(fd, n - len(out))
        except InterruptedError:
            continue
        if not data:
            return None
        out += data
    return out


class TemplateClient:
    """Logic side: start and kill kernels through the template's pipes, and
    collect the exits it reports."""

    def __init__(self, cmd_fd: int, report_fd: int):
        self.cmd_fd = cmd_fd
        self.report_fd = report_fd
        self._buf = b""
        self.exited: list[tuple[int, int]] = []     # (pid, wait status), oldest first

    def start(self, payload: bytes, new_pid_ns: bool) -> tuple[int, int]:
        """(kernel pid, its init or 0); OSError with the template's errno."""
        if len(payload) > MAX_PAYLOAD:
            raise OSError(errno.E2BIG, f"kernel parameters of {len(payload)} bytes")
        self._send(HEAD.pack(OP_START, FLAG_NEWPID if new_pid_ns else 0, len(payload)) + payload)
        while True:
            for kind, pid, init, value in self._records(block=True):
                if kind == STARTED:
                    return pid, init
                if kind == START_FAILED:
                    raise OSError(value, f"the template could not fork: {os.strerror(value)}")

    def kill(self, pid: int) -> None:
        self._send(HEAD.pack(OP_KILL, pid, 0))

    def poll(self) -> list[tuple[int, int]]:
        """The exits reported so far (read without blocking)."""
        self._records(block=False)          # only exits arrive unasked
        out, self.exited = self.exited, []
        return out

    def close(self) -> None:
        for fd in (self.cmd_fd, self.report_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def _send(self, data: bytes) -> None:
        try:
            write_all(self.cmd_fd, data)
        except BrokenPipeError:
            raise TemplateLost(errno.EPIPE, "the kernel template is gone") from None

    def _records(self, block: bool) -> list[tuple[int, int, int, int]]:
        """The records read now (at least one when ``block``) but exits,
        which are kept in ``exited`` (all of them: a start's answer may
        come between two)."""
        os.set_blocking(self.report_fd, block)
        try:
            data = os.read(self.report_fd, RECORD.size * 256)
        except (BlockingIOError, InterruptedError):
            return []
        if not data:
            raise TemplateLost(errno.EPIPE, "the kernel template is gone")
        self._buf += data
        whole = len(self._buf) - len(self._buf) % RECORD.size
        chunk, self._buf = self._buf[:whole], self._buf[whole:]
        others = []
        for rec in RECORD.iter_unpack(chunk):
            if rec[0] == EXITED:
                self.exited.append((rec[1], rec[3]))
            else:
                others.append(rec)
        return others
