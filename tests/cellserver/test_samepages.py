"""samepages.py: which mappings a kernel marks, what ``ksm_stat`` and the
ksmd switch say (pure), and the opt-in / opt-out in a real process."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cellserver.provider import samepages
from cellserver.provider.plan import busy, may_merge, pick_ready, to_replace

MAPS = """\
55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 123 /usr/bin/python3.11
55d0c0c00000-55d0c0c02000 rw-p 00200000 08:01 123 /usr/bin/python3.11
55d0c1000000-55d0c3000000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
7f0000400000-7f0004000000 ---p 00000000 00:00 0
7f1000000000-7f1000001000 rw-s 00000000 00:05 9 /dev/zero (deleted)
7f2000000000-7f2000100000 r-xp 00000000 08:01 77 /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r--p 00000000 00:00 0 [vvar]
"""

STAT_67 = "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\n" \
          "ksm_merge_any: no\nksm_mergeable: {}\n"


def test_the_private_writable_mappings_are_marked_not_the_stack_shared_or_reserved_ones():
    assert samepages.mergeable_ranges(MAPS) == [
        (0x55d0c0c00000, 0x55d0c0c02000),     # a library's data
        (0x55d0c1000000, 0x55d0c3000000),     # the C heap
        (0x7f0000000000, 0x7f0000400000),     # anonymous (pymalloc arenas, malloc)
    ]
    assert samepages.mergeable_ranges("") == []
    assert samepages.top_of(MAPS) == 0x7ffd00102000
    assert samepages.top_of("") == 0


SMAPS = """\
55d0c0c00000-55d0c0c02000 rw-p 00200000 08:01 123 /usr/bin/python3.11
Size:                  8 kB
Rss:                   8 kB
VmFlags: rd wr mr mw me ac sd
55d0c1000000-55d0c3000000 rw-p 00000000 00:00 0 [heap]
Size:              32768 kB
Rss:                8192 kB
7f0000000000-7f0002000000 rw-p 00000000 00:00 0
Size:              32768 kB
Rss:                8188 kB
7f1000000000-7f1000001000 rw-s 00000000 00:05 9 /dev/zero (deleted)
Size:                  4 kB
Rss:                   4 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Size:                132 kB
Rss:                 132 kB
"""


def test_the_template_marks_only_mappings_it_mostly_uses():
    # a quarter resident is enough (the heap); just under it (a reserved
    # buffer) is left out; shared mappings and the stack never count
    assert samepages.resident_ranges(SMAPS) == [
        (0x55d0c0c00000, 0x55d0c0c02000),
        (0x55d0c1000000, 0x55d0c3000000),
    ]
    assert samepages.resident_ranges(SMAPS, min_resident=0.5) == [(0x55d0c0c00000, 0x55d0c0c02000)]
    assert samepages.resident_ranges("") == []


def test_ksm_stat_says_mergeable_or_nothing():
    assert samepages.mergeable(STAT_67.format("yes")) is True
    assert samepages.mergeable(STAT_67.format("no")) is False
    assert samepages.mergeable("ksm_rmap_items 0\nksm_merging_pages 0\n") is None     # an older Linux


def test_merge_state_says_why_not():
    yes, no = STAT_67.format("no"), "ksm_rmap_items 0\n"
    assert samepages.merge_state("1\n", yes) == "on"
    assert "ksmd is not running" in samepages.merge_state("0\n", yes)
    assert "'2'" in samepages.merge_state("2\n", yes)
    assert "no KSM" in samepages.merge_state(None, None)
    assert "does not say" in samepages.merge_state("1\n", no)
    assert "does not say" in samepages.merge_state("1\n", None)


def test_one_ready_kernel_stays_unmerged_and_goes_first():
    assert not may_merge(unmerged=0, enabled=True)
    assert may_merge(unmerged=1, enabled=True)
    assert not may_merge(unmerged=5, enabled=False)
    assert not may_merge(unmerged=5, enabled=True, busy=True)
    assert pick_ready([("a", True), ("b", False), ("c", True)]) == "b"
    assert pick_ready([("a", False), ("b", False)]) == "b"         # the newest of the unmerged
    assert pick_ready([("a", True), ("b", True)]) == "b"           # else the newest: least to copy back
    assert pick_ready([("a", True)]) == "a"


def test_a_pool_is_busy_for_a_rest_after_each_take():
    assert not busy(now=100.0, last_take=None, rest=10.0)          # nothing handed out yet
    assert busy(now=100.0, last_take=95.0, rest=10.0)
    assert busy(now=104.999, last_take=95.0, rest=10.0)
    assert not busy(now=105.0, last_take=95.0, rest=10.0)


def test_at_rest_the_unmerged_spares_are_replaced_oldest_first_keeping_one():
    ready = [("a", False), ("b", True), ("c", False), ("d", False)]
    assert to_replace(ready, unmerged_starting=0, enabled=True) == ["a", "c"]   # "d" goes out first
    assert to_replace(ready, unmerged_starting=1, enabled=True) == ["a", "c", "d"]
    assert to_replace([("a", False), ("b", True)], unmerged_starting=0, enabled=True) == []
    assert to_replace([("a", True)], unmerged_starting=0, enabled=True) == []
    assert to_replace(ready, unmerged_starting=0, enabled=False) == []
    assert to_replace(ready, unmerged_starting=0, enabled=True, keep=0) == ["a", "c", "d"]


def _says_mergeable() -> bool:
    try:
        with open("/proc/self/ksm_stat") as f:
            return samepages.mergeable(f.read()) is not None
    except OSError:
        return False


@pytest.mark.skipif(not _says_mergeable(), reason="needs a Linux whose ksm_stat says whether a process is mergeable")
def test_opt_in_marks_this_process_and_opt_out_leaves_nothing_mergeable():
    code = textwrap.dedent("""
        from cellserver.provider.samepages import SamePages, mergeable, template_marks
        from cellserver.sandbox.libc import libc
        stat = lambda: mergeable(open("/proc/self/ksm_stat").read())
        data = bytearray(8 << 20)                   # some anonymous memory of its own
        pages = SamePages(libc)
        assert stat() is False
        marked = pages.opt_in()
        assert marked >= len(data), marked
        assert stat() is True
        more = bytearray(8 << 20)                   # mapped later: not marked, still nothing left after
        pages.opt_out()
        assert stat() is False
        assert pages.stat_fd is None
        # the template's way: the spans it uses, found once, marked without reading maps
        used = bytearray(b"x" * (8 << 20))         # resident
        marks = template_marks()
        pages = SamePages(libc, marks)
        assert pages.opt_in() >= len(used)
        assert stat() is True
        pages.opt_out()
        assert stat() is False
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


class _Libc:
    """madvise answering as told (pure logic of opt_out; the real calls are
    tested above)."""

    def __init__(self, ret: int, err: int = 0):
        import ctypes
        self.calls = []

        def madvise(addr, length, advice):      # a function: ``SamePages`` sets its argtypes
            self.calls.append((addr, length, advice))
            ctypes.set_errno(err)
            return ret
        self.madvise = madvise


def _opted_in(tmp_path, libc, stat: str) -> samepages.SamePages:
    import os
    path = tmp_path / "ksm_stat"
    path.write_text(stat)
    pages = samepages.SamePages(libc)
    pages.stat_fd = os.open(path, os.O_RDONLY)
    pages.top = 0x7ffd00102000
    return pages


def test_opt_out_accepts_holes_in_the_range_and_checks_the_result(tmp_path):
    import errno
    libc = _Libc(-1, errno.ENOMEM)               # holes between mappings: done for the rest
    pages = _opted_in(tmp_path, libc, STAT_67.format("no"))
    pages.opt_out()
    assert libc.calls == [(0, 0x7ffd00102000, samepages.MADV_UNMERGEABLE)]
    assert pages.stat_fd is None


def test_opt_out_raises_when_refused_or_still_mergeable(tmp_path):
    import errno
    with pytest.raises(OSError, match="MADV_UNMERGEABLE"):
        _opted_in(tmp_path, _Libc(-1, errno.EAGAIN), STAT_67.format("no")).opt_out()
    with pytest.raises(OSError, match="still mergeable"):
        _opted_in(tmp_path, _Libc(0), STAT_67.format("yes")).opt_out()
