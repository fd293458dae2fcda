"""Append-only JSON-lines files: computation logs, request logs, access logs.

Each record is serialised to one line and written with a single ``write(2)``
on a file opened with ``O_APPEND``, so concurrent writers never interleave
within a line and a node killed mid-write loses at most the line being
written (ARCHITECTURE section 7).  No buffering in Python: the kernel's page
cache holds the data the moment ``write`` returns, and logrotate's
``copytruncate`` or a ``reopen()`` on SIGHUP both work.

``MemoryLines`` is the in-memory twin for unit tests of code that logs.
"""
from __future__ import annotations

import json
import os
from typing import Any, Protocol


class LineSink(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...


def encode(record: dict[str, Any]) -> bytes:
    """One record as one line of UTF-8 JSON (newlines inside strings are escaped)."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")


class JsonLinesFile:
    """An append-only JSON-lines file; ``path='-'`` writes to standard output."""

    def __init__(self, path: str):
        self.path = path
        self._fd = -1
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the file: call after rotation (SIGHUP)."""
        old = self._fd
        if self.path == "-":
            self._fd = os.dup(1)
        else:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if old >= 0:
            os.close(old)

    def write(self, record: dict[str, Any]) -> None:
        data = encode(record)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class MemoryLines:
    """Keeps records in a list (for unit tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        # Round-trip through the real encoder so tests see what a file would hold.
        self.records.append(json.loads(encode(record)))


class NullLines:
    def write(self, record: dict[str, Any]) -> None:
        pass


def open_sink(path: str | None) -> LineSink:
    """A sink for a configured path: ``None``/``''`` discards, ``-`` is stdout."""
    if not path:
        return NullLines()
    return JsonLinesFile(path)
