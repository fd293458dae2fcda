"""Trying a sandbox step in a throw-away child.

Why: the steps (``unshare``, mounts, ``pivot_root``...) change the calling
process for good, so whether this machine allows them is found out in a
forked child, at start, and only the answer comes back.
"""
from __future__ import annotations

import os
from typing import Callable


def why_not(attempt: Callable[[], str | None]) -> str:
    """Run ``attempt`` in a forked child: "" when it returns nothing (the step
    works here), else what it returned or raised, or that the child failed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            why = attempt() or ""
            os.write(w, why.encode()[:2000])
            code = 0 if not why else 1
        except BaseException as e:
            try:
                os.write(w, (str(e) or repr(e)).encode()[:2000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while data := os.read(r, 4096):
        chunks.append(data)
    os.close(r)
    if os.waitpid(pid, 0)[1] == 0:
        return ""
    return b"".join(chunks).decode("utf-8", "replace") or "the test child failed"
