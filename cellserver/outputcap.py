"""The most output one execution may send to the browser.  Pure.

``while True: print(1)`` must not flood a page or the server: each request
(keyed by the ``parent_header.msg_id`` its output carries) has a byte budget
for its iopub output.  The message that crosses the budget is replaced by
one truncation notice; everything after it for that request is dropped.
Status, ``execute_input`` and shell replies always pass, so the page still
learns that the execution ended.
"""
from __future__ import annotations

from enum import Enum

UNCAPPED = frozenset({"status", "execute_input", "comm_close", "clear_output"})


class Verdict(Enum):
    PASS = "pass"
    NOTICE = "notice"      # send the truncation notice instead of this message
    DROP = "drop"


class OutputCap:
    def __init__(self, limit: int, max_tracked: int = 10_000):
        self.limit = limit
        self.max_tracked = max_tracked
        self._used: dict[str, int] = {}
        self._truncated: set[str] = set()

    def account(self, channel: str, msg_type: str, parent_msg_id: str | None, size: int) -> Verdict:
        if channel != "iopub" or msg_type in UNCAPPED or not parent_msg_id:
            return Verdict.PASS
        if parent_msg_id in self._truncated:
            return Verdict.DROP
        used = self._used.get(parent_msg_id, 0) + size
        if used > self.limit:
            self._truncated.add(parent_msg_id)
            self._used.pop(parent_msg_id, None)
            return Verdict.NOTICE
        if parent_msg_id not in self._used and len(self._used) >= self.max_tracked:
            self._used.pop(next(iter(self._used)))  # forget the oldest request
        self._used[parent_msg_id] = used
        return Verdict.PASS

    def finished(self, parent_msg_id: str | None) -> None:
        """The request went idle: later output for it (there is none) needs no budget."""
        if parent_msg_id:
            self._used.pop(parent_msg_id, None)
            self._truncated.discard(parent_msg_id)

    def used(self, parent_msg_id: str) -> int:
        return self._used.get(parent_msg_id, 0)
