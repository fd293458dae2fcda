"""Kernel side: report the files an execution created or changed.

SageMathCell shows, after an execution, links to the files the code wrote in
its working directory (served by the cell server under
``/kernel/<id>/files/<path>``).  :func:`install` registers one IPython
event hook on the template's shell (before the fork, so every kernel
shares it), ``post_run_cell``: a bounded ``os.scandir`` walk of the working
directory -- relative path -> (size, mtime_ns) -- compared with the walk
taken when the kernel started (:func:`set_root`) or after the previous
execution; if some files are new or changed, one ``display_data`` (parent:
the execution, like the inline figures the ``post_execute`` hook of
matplotlib_inline flushes just before)::

      {"application/x-cellstack-files": {"files": ["out.txt", "data/a.csv"], "more": 0},
       "text/plain": "Files written: out.txt, data/a.csv"}

Silent executions (``silent=True``: the front end's helpers) fire no hook:
what they write is listed after the next execution.  Hidden names (``.cache``, ``.config``, ...), ``__pycache__``,
symlinks and the IPython directory are skipped; the walk stops after
``MAX_SCAN`` entries and at ``MAX_DEPTH`` levels, at most ``MAX_REPORT``
files are listed (``more`` counts the rest).  When the walk was cut short
the comparison only trusts files modified since the execution started.

The root is set after the fork by :func:`set_root` (the kernel's working
directory); until then the hooks do nothing.
"""
from __future__ import annotations

import os
import time

MIME = "application/x-cellstack-files"
MAX_SCAN = 1000
MAX_REPORT = 50
MAX_DEPTH = 8
SKIP_NAMES = frozenset(("__pycache__",))

_root: str | None = None
_skip: frozenset[str] = frozenset()
_before: dict[str, tuple[int, int]] | None = None
_before_cut = False
_started_ns = 0


def set_root(path: str | None) -> None:
    """The directory to watch (a kernel's working directory), or None: off."""
    global _root, _skip, _before
    _before = None
    if not path:
        _root = None
        return
    _root = os.path.realpath(path)
    skip = set()
    ipdir = os.environ.get("IPYTHONDIR")
    if ipdir:
        skip.add(os.path.realpath(ipdir))
    _skip = frozenset(skip)
    _take_snapshot()


def snapshot(root: str, limit: int = MAX_SCAN, skip: frozenset[str] = frozenset()) -> tuple[dict[str, tuple[int, int]], bool]:
    """{relative path: (size, mtime_ns)} of the regular files under ``root``,
    and whether the walk was cut short (``limit`` entries, depth)."""
    files: dict[str, tuple[int, int]] = {}
    seen = 0
    cut = False
    stack = [(root, "", 0)]
    while stack:
        path, prefix, depth = stack.pop()
        try:
            it = os.scandir(path)
        except OSError:
            continue
        with it:
            for entry in it:
                seen += 1
                if seen > limit:
                    return files, True
                name = entry.name
                if name[0] == "." or name in SKIP_NAMES:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth + 1 >= MAX_DEPTH:
                            cut = True
                        elif not skip or os.path.realpath(entry.path) not in skip:
                            stack.append((entry.path, prefix + name + "/", depth + 1))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        files[prefix + name] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    continue
    return files, cut


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
            since_ns: int | None = None) -> list[str]:
    """Paths new or different in ``after``, sorted; with ``since_ns`` (an
    untrustworthy ``before``) only those modified at or after it."""
    out = []
    for path, sig in after.items():
        if before.get(path) == sig:
            continue
        if since_ns is not None and sig[1] < since_ns:
            continue
        out.append(path)
    out.sort()
    return out


def bundle(paths: list[str]) -> dict:
    shown = paths[:MAX_REPORT]
    more = len(paths) - len(shown)
    text = "Files written: " + ", ".join(shown) + (f" (and {more} more)" if more else "")
    return {MIME: {"files": shown, "more": more}, "text/plain": text}


def _take_snapshot(taken: tuple[dict[str, tuple[int, int]], bool] | None = None) -> None:
    """Remember the directory as it is now (``taken``: a walk just made) as what
    the next execution is compared with."""
    global _before, _before_cut, _started_ns
    # Coarse file-system clocks: a file written in the next execution may carry
    # a slightly earlier stamp than time.time_ns() here.
    _started_ns = time.time_ns() - 50_000_000
    _before, _before_cut = taken if taken is not None else snapshot(_root, MAX_SCAN, _skip)


def post_run_cell(result=None) -> None:
    """After an execution: publish what it wrote, then remember the directory
    for the next one.  There is deliberately no ``pre_run_cell`` hook: IPython
    runs it after ``execute_input`` is published and swallows a
    KeyboardInterrupt raised in it, so an interrupt that arrived then (a Stop
    pressed at once) was lost and the code ran on."""
    if _root is None:
        return
    before = _before
    after, cut = snapshot(_root, MAX_SCAN, _skip)
    paths = changed(before, after, _started_ns if (cut or _before_cut) else None) if before is not None else []
    _take_snapshot((after, cut))      # one walk: this execution's "after" is the next one's "before"
    if not paths:
        return
    from IPython.display import publish_display_data
    publish_display_data(bundle(paths), metadata={})


def install(shell) -> None:
    """Register the hooks on ``shell`` (the warm template's, before the fork)."""
    shell.events.register("post_run_cell", post_run_cell)
