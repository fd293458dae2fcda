"""Which of the template's mappings become huge pages (pure), and the
adapter's calls, with a libc stand-in that records them."""
from __future__ import annotations

from cellserver.provider import hugepages

M = 1 << 20
SMAPS = """\
00400000-00600000 r--p 00000000 08:01 123 /usr/bin/python3.11
00946000-00a85000 rw-p 00546000 08:01 123 /usr/bin/python3.11
Size:               1276 kB
Rss:                1244 kB
12741000-13e7e000 rw-p 00000000 00:00 0 [heap]
Size:              23796 kB
Rss:               22196 kB
7f0000000000-7f0000800000 rw-p 00000000 00:00 0
Size:               8192 kB
Rss:                8192 kB
7f0000900000-7f0004900000 rw-p 00000000 00:00 0
Size:              65536 kB
Rss:                 132 kB
7f0005000000-7f0005100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1024 kB
7f0006000000-7f0006400000 r--p 00000000 00:00 0
Size:               4096 kB
Rss:                4096 kB
7ffc0000000-7ffc0800000 rw-p 00000000 00:00 0 [stack]
Size:               8192 kB
Rss:                8192 kB
"""


def test_aligned_spans_of_resident_anonymous_writable_mappings():
    spans = hugepages.huge_ranges(SMAPS)
    # the heap, rounded in to 2 MiB boundaries; the whole 8 MiB mapping; not
    # the file's data, the sparse 64 MiB arena, the 1 MiB mapping (no whole
    # huge page fits), the read-only mapping or the stack
    assert spans == [(0x12800000, 0x13e00000), (0x7f0000000000, 0x7f0000800000)]
    assert all(s % (2 * M) == 0 and e % (2 * M) == 0 and e > s for s, e in spans)


def test_a_sparse_mapping_counts_only_without_the_resident_threshold():
    assert (0x7f0000a00000, 0x7f0004800000) in hugepages.huge_ranges(SMAPS, min_resident=0)
    assert (0x7f0000a00000, 0x7f0004800000) not in hugepages.huge_ranges(SMAPS)


class Libc:
    """Records ``madvise``; refuses the spans it is told to."""

    def __init__(self, refuse=()):
        self.calls = []

        def madvise(addr, length, advice):
            self.calls.append((addr, length, advice))
            return -1 if addr in refuse else 0
        self.madvise = madvise          # a function: ``collapse`` may set its argtypes


def test_collapse_counts_what_the_kernel_took_and_refused(tmp_path):
    path = tmp_path / "smaps"
    path.write_text(SMAPS)
    libc = Libc(refuse={0x7f0000000000})
    assert hugepages.collapse(libc, str(path)) == (0x13e00000 - 0x12800000, 8 * M)
    assert [c[2] for c in libc.calls] == [hugepages.MADV_COLLAPSE] * 2


def test_collapse_without_smaps_or_madvise_does_nothing(tmp_path):
    assert hugepages.collapse(Libc(), str(tmp_path / "missing")) == (0, 0)
    path = tmp_path / "smaps"
    path.write_text(SMAPS)
    assert hugepages.collapse(object(), str(path)) == (0, 0)
