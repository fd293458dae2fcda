"""The template's anonymous memory as transparent huge pages, before any fork.

Why: ``fork()`` copies one page-table entry per resident 4 KiB page of the
template (~73 MB anonymous: ~18,000 entries), and every kernel's exit tears
as many down again.  Profiled on the 2-core VM (``perf record -a`` under
``kernels_bench``), ``copy_page_range`` and ``unmap_page_range`` were each
~5% of all the machine's CPU.  A 2 MiB huge page is one entry instead of 512.
A kernel that writes into one still copies only the 4 KiB page it writes
(the kernel splits the shared huge mapping in the child), so memory per
kernel barely moves (~+0.3 MB PSS) while CPU per fresh kernel fell 15-20%
(RESULTS-provider.md).

``MADV_COLLAPSE`` (Linux 6.1) collapses a range synchronously, whatever the
system's THP mode (unless "never"), and unlike ``MADV_HUGEPAGE`` it does not
mark the mapping: a kernel's own later allocations still get 4 KiB pages, so
a small ``malloc`` in a child never faults in 2 MiB.

``huge_ranges`` is pure (tested on sample ``/proc/self/smaps`` text);
``collapse`` does the system calls and never raises: on an older kernel or
without THP the template is simply forked as before.
"""
from __future__ import annotations

import ctypes

from cellserver.provider import smaps

HUGE = 2 << 20
MADV_COLLAPSE = 25


def huge_ranges(text: str, huge: int = HUGE, min_resident: float = 0.5) -> list[tuple[int, int]]:
    """The huge-page-aligned spans of the private, writable, anonymous
    mappings (the C heap included, thread stacks and files not) in a
    ``/proc/<pid>/smaps`` text, as (start, end) byte addresses.  A mapping
    less than ``min_resident`` resident is left out: collapsing fills every
    page of a span, and a sparse one (a thread's reserved malloc arena) would
    cost the template memory for nothing."""
    spans = []
    for fields, rss in smaps.mappings(text):
        name = fields[5].strip() if len(fields) == 6 else ""
        if len(fields) < 5 or fields[1] != "rw-p" or name not in ("", "[heap]"):
            continue
        lo, hi = smaps.span(fields)
        start, end = -(-lo // huge) * huge, hi // huge * huge
        if end > start and rss >= min_resident * (hi - lo):
            spans.append((start, end))
    return spans


def collapse(libc, smaps_path: str = "/proc/self/smaps") -> tuple[int, int]:
    """Collapse this process's anonymous memory into huge pages where the
    kernel can.  Returns (bytes collapsed, bytes refused: Linux < 6.1, THP
    "never", or a span the kernel would not collapse, left as it was)."""
    try:
        with open(smaps_path) as f:
            spans = huge_ranges(f.read())
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0, 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = refused = 0
    for start, end in spans:
        if madvise(start, end - start, MADV_COLLAPSE) == 0:
            done += end - start
        else:
            refused += end - start
    return done, refused
