"""Reading ``/proc/<pid>/smaps`` text (pure): each mapping with its resident
size.  Both the template's huge-page collapse (hugepages.py) and the spans
kernels mark for merging (samepages.py) choose mappings by what is resident
in them."""
from __future__ import annotations

from collections.abc import Iterator


def mappings(smaps: str) -> Iterator[tuple[list[str], int]]:
    """Each mapping: the fields of its header line, split as a
    ``/proc/<pid>/maps`` line is (at most six: range, perms, offset, device,
    inode, name), and its ``Rss`` in bytes.  A mapping without an ``Rss``
    line is left out."""
    header = None
    for line in smaps.splitlines():
        fields = line.split(maxsplit=5)
        if not fields:
            continue
        if fields[0] == "Rss:":
            if header is not None:
                yield header, int(fields[1]) * 1024
            header = None
        elif not fields[0].endswith(":"):
            header = fields


def span(fields: list[str]) -> tuple[int, int]:
    """(start, end) of a header line's address range."""
    lo, hi = (int(x, 16) for x in fields[0].split("-"))
    return lo, hi
