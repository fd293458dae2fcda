"""Idle ready kernels share their identical pages (KSM), until one is used.

Why: every kernel's start writes into the same template objects in the same
order (reference counts, GC headers, the interpreter's inline caches), so an
idle ready kernel's ~10 MB of private pages are, for the most part,
byte-for-byte the pages of every other ready kernel.  Fork cannot share
them again; the kernel's samepage merging (``ksmd``) can: right after the
fork a kernel marks its private writable mappings ``MADV_MERGEABLE``
(``opt_in``), and ``ksmd`` folds identical pages into one copy-on-write
page.  Measured on the 2-core VM with 8 ready kernels and ksmd's default
rate: PSS per idle kernel 20.3 -> 12.4 MB about 70 s after they started
(loadtest/RESULTS-provider.md).

Why a kernel opts out before it runs any code: page deduplication across
processes is a side channel (a process that can time its own writes learns
whether another process holds a page with the same content) and a way to
place a victim's data on a physical page of the attacker's choosing
(rowhammer, "Flip Feng Shui").  So only kernels that have run nothing merge,
and only what their start wrote, which is the same in every kernel and
secret from no one (each kernel's key and random state sit on pages no other
kernel has, so they never merge).  Before its first execution a kernel
unmarks every mapping, which also copies back every page it shares, and
checks with the kernel that nothing is left mergeable (``opt_out``, from
IPython's ``pre_execute`` event); the sandbox's seccomp filter forbids
marking anything again (``madvise(MADV_MERGEABLE)``, ``PR_SET_MEMORY_MERGE``),
so user code can neither merge nor probe.

What it costs: copying back ~2,200 merged pages adds ~11 ms to a merged
kernel's first execution, so the pool keeps one ready kernel unmerged and
hands it out first (``plan.pick_ready``); a burst after a quiet period pays
it from the second kernel on.  Marking and unmarking cost ~5 ms of CPU
whether anything merged or not (the opt-out walks every marked page), so a
busy pool starts its kernels unmerged and replaces the spares once at rest
(``plan.busy``, ``plan.to_replace``), and kernels mark only the mappings the
template mostly uses (``template_marks``).  ksmd scans at its own rate (~3%
of one CPU while there is anything to scan), and merging splits some of the
template's shared huge pages (hugepages.py).  ``--no-merge-idle-kernels``
turns it off.

``ksmd`` is a host setting (``/sys/kernel/mm/ksm/run``, turned on by
``deploy/install``): where it is off, or Linux is too old to say whether a
process is still mergeable (``ksm_stat``), kernels keep their private pages
and the provider's hello says why.
"""
from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

from cellserver.provider import smaps

PR_SET_MEMORY_MERGE = 67
MADV_MERGEABLE, MADV_UNMERGEABLE = 12, 13
KSM_RUN = "/sys/kernel/mm/ksm/run"
KSM_STAT = "/proc/self/ksm_stat"


def merge_state(run_text: str | None, stat_text: str | None) -> str:
    """Whether idle kernels' pages will be merged, from the text of
    ``/sys/kernel/mm/ksm/run`` and of ``/proc/self/ksm_stat`` (None: no such
    file): "on", or why not."""
    if run_text is None:
        return "off: this Linux has no KSM (/sys/kernel/mm/ksm)"
    if stat_text is None or mergeable(stat_text) is None:
        return "off: this Linux does not say whether a process is mergeable (ksm_stat); kernels do not opt in"
    value = run_text.strip()
    if value != "1":
        return f"off: ksmd is not running (/sys/kernel/mm/ksm/run is {value!r}; deploy/install turns it on)"
    return "on"


def read_merge_state() -> str:
    def text(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return None
    return merge_state(text(KSM_RUN), text(KSM_STAT))


def _markable(fields: list[str]) -> tuple[int, int] | None:
    """(start, end) of a ``/proc/<pid>/maps`` line's mapping if a kernel's
    start may write there (private and writable, not the stack or another
    special mapping), else None."""
    if len(fields) < 5 or fields[1] != "rw-p" or "-" not in fields[0]:
        return None
    name = fields[5].strip() if len(fields) == 6 else ""
    if name.startswith("[") and name != "[heap]":
        return None
    return smaps.span(fields)


def mergeable_ranges(maps: str) -> list[tuple[int, int]]:
    """The private writable mappings of a ``/proc/<pid>/maps`` text (the C
    heap, anonymous memory, the data of loaded libraries; not the stack),
    as (start, end): where a kernel's start writes.  Measured in a ready
    kernel, 95% of its private pages lie in mappings it inherited from the
    template, so marking those at the fork covers nearly all of them."""
    return [span for span in map(_markable, (line.split(maxsplit=5) for line in maps.splitlines())) if span]


def resident_ranges(text: str, min_resident: float = 0.25) -> list[tuple[int, int]]:
    """``mergeable_ranges`` of a ``/proc/<pid>/smaps`` text, less the
    mappings under ``min_resident`` resident.  Why: unmarking costs a page
    walk per 4 KiB of every marked mapping, resident or not (Linux's
    ``unmerge_ksm_pages``), and the template holds ~64 MB of reserved,
    untouched buffers (OpenBLAS's among them) beside its ~75 MB in use;
    nothing a kernel's start writes lands there.  The template computes this
    once and every kernel marks the same spans, without reading its own
    maps (RESULTS-provider.md)."""
    return [span for fields, rss in smaps.mappings(text)
            if (span := _markable(fields)) and rss >= min_resident * (span[1] - span[0])]


def top_of(maps: str) -> int:
    """The end of the highest mapping in a ``/proc/<pid>/maps`` text (the
    stack's, usually): later mappings land below it unless asked to go
    higher, which nothing in a kernel before its first execution does."""
    return max((int(line.split("-", 1)[1].split()[0], 16) for line in maps.splitlines() if "-" in line),
               default=0)


def mergeable(stat: str) -> bool | None:
    """Whether a ``/proc/<pid>/ksm_stat`` text says the process has any
    mapping ``ksmd`` may merge (None: the kernel does not say, < 6.7)."""
    for line in stat.splitlines():
        if line.startswith("ksm_mergeable:"):
            return line.split(":", 1)[1].strip() == "yes"
    return None


class Marks(NamedTuple):
    """What every kernel marks, found once in the template: the spans, and
    the top of the address space for the opt-out's one call."""
    spans: list[tuple[int, int]]
    top: int


def template_marks() -> Marks | None:
    """``Marks`` of this process (the template, after its last allocation
    before forking); None where /proc cannot say."""
    try:
        with open("/proc/self/smaps") as f:
            text = f.read()
    except OSError:
        return None
    top = max((smaps.span(fields)[1] for fields, _ in smaps.mappings(text)), default=0)
    return Marks(resident_ranges(text), top)


class SamePages:
    """One kernel's opt-in and opt-out (in the child, after the fork)."""

    def __init__(self, libc, marks: Marks | None = None):
        self.libc = libc
        self.marks = marks      # None: this process's own mappings, read at opt_in
        self.stat_fd: int | None = None
        self.top = 0            # opt_out unmarks [0, top): every mapping there was at opt_in and below

    def opt_in(self) -> int:
        """Mark this process's private writable mappings for merging (the
        template's ``marks``, else all of them); before the sandbox's seccomp
        filter, which forbids it.  Returns the bytes marked, 0 where the
        kernel cannot say whether a process is still mergeable (then nothing
        is marked: the opt-out could not be checked)."""
        try:
            fd = os.open(KSM_STAT, os.O_RDONLY)      # kept: the sandbox may hide /proc later
        except OSError:
            return 0
        if mergeable(os.pread(fd, 4096, 0).decode()) is None:
            os.close(fd)
            return 0
        if self.marks is None:
            with open("/proc/self/maps") as f:
                maps = f.read()
            spans, self.top = mergeable_ranges(maps), top_of(maps)
        else:
            spans, self.top = self.marks
        madvise = self._madvise()
        marked = sum(hi - lo for lo, hi in spans if madvise(lo, hi - lo, MADV_MERGEABLE) == 0)
        if marked:
            self.stat_fd = fd
        else:
            os.close(fd)
        return marked

    def opt_out(self) -> None:
        """Unmark every mapping and copy back every page this process shares
        through KSM, then check with the kernel that nothing is mergeable (a
        mapping moved above ``top`` would be caught there).
        Raises ``OSError`` otherwise: the caller must then not run user code."""
        madvise = self._madvise()
        if madvise(0, self.top, MADV_UNMERGEABLE) != 0:
            e = ctypes.get_errno()
            if e != 12:                              # ENOMEM: the range has holes, done for the rest
                raise OSError(e, f"madvise(MADV_UNMERGEABLE): {os.strerror(e)}")
        if mergeable(os.pread(self.stat_fd, 4096, 0).decode()) is not False:
            raise OSError(0, "still mergeable after MADV_UNMERGEABLE")
        os.close(self.stat_fd)
        self.stat_fd = None

    def _madvise(self):
        madvise = self.libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return madvise


def opt_out_before_first_execution(shell, pages: SamePages) -> None:
    """Register the opt-out on the shell's ``pre_execute`` event (fired before
    every cell, silent ones included, before any of its code runs); it
    removes itself after the first.  Only for a process that opted in.  A
    kernel that cannot opt out ends rather than run user code on merged
    pages."""
    def before():
        shell.events.unregister("pre_execute", before)
        try:
            pages.opt_out()
        except OSError as e:
            os.write(2, f"kernel ends: {e}\n".encode())
            os._exit(70)
    shell.events.register("pre_execute", before)
