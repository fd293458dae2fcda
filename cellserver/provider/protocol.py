"""The pipe protocol between a cell server and its kernel provider.

The cell server (``cellserver.pool``) spawns ``python -m cellserver.provider``
and talks to it over the child's stdin/stdout: one JSON object per line,
UTF-8, each with an ``op`` naming it.  This module is the pure codec (no I/O):
both ends use it, so the provider needs nothing but the standard library and
this file before it forks kernels.

Cell server -> provider (commands)::

    {"op": "start", "kid": ..., "key": <hex>, "sock_dir": ..., "work_dir": ...}
    {"op": "kill", "kid": ...}
    {"op": "quit"}

Provider -> cell server (events)::

    {"op": "hello", "pid": ..., "python": ..., "warm_ms": ..., "preloaded": [...], "failed": {...},
     "huge_mb": ...}
    {"op": "started", "kid": ..., "pid": ..., "fork_ms": ...}
    {"op": "start_failed", "kid": ..., "error": ...}
    {"op": "exited", "kid": ..., "pid": ..., "code": int|null, "signal": int|null, "reason": ...}
    {"op": "error", "message": ...}

``exited`` is sent once the kernel's process group is gone and its
directories are removed: after it nothing of the kernel is left.
"""
from __future__ import annotations

import json
import os
import signal as _signal
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Union

MAX_LINE = 64 * 1024


class ProtocolError(ValueError):
    """A line that is not a valid message of this protocol."""


@dataclass(frozen=True)
class Start:
    kid: str
    key: str          # hex HMAC key for the kernel's Session
    sock_dir: str     # where the kernel binds its ipc sockets
    work_dir: str     # the kernel's working directory (user files)
    mergeable: bool = False   # opts in to samepage merging until its first execution (samepages.py)
    op: str = field(default="start", init=False)


@dataclass(frozen=True)
class Kill:
    kid: str
    op: str = field(default="kill", init=False)


@dataclass(frozen=True)
class Quit:
    op: str = field(default="quit", init=False)


@dataclass(frozen=True)
class Hello:
    pid: int
    python: str
    warm_ms: float
    preloaded: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)   # module -> error text
    huge_mb: float = 0.0            # template memory in huge pages (hugepages.py)
    merge: str = "off"              # whether idle kernels' pages are merged, or why not (samepages.py)
    template_pid: int = 0           # the warm template, the kernels' parent (forkserver.py)
    fork_loop: str = ""             # "c" (forkserver.c) or "python" (its fallback)
    op: str = field(default="hello", init=False)


@dataclass(frozen=True)
class Started:
    kid: str
    pid: int
    fork_ms: float
    op: str = field(default="started", init=False)


@dataclass(frozen=True)
class StartFailed:
    kid: str
    error: str
    op: str = field(default="start_failed", init=False)


@dataclass(frozen=True)
class Exited:
    kid: str
    pid: int
    code: int | None
    signal: int | None
    reason: str
    op: str = field(default="exited", init=False)


@dataclass(frozen=True)
class ProviderError:
    message: str
    op: str = field(default="error", init=False)


Command = Union[Start, Kill, Quit]
Event = Union[Hello, Started, StartFailed, Exited, ProviderError]

COMMANDS = {"start": Start, "kill": Kill, "quit": Quit}
EVENTS = {"hello": Hello, "started": Started, "start_failed": StartFailed,
          "exited": Exited, "error": ProviderError}

_TYPES: dict[str, tuple[type, ...]] = {
    "kid": (str,), "key": (str,), "sock_dir": (str,), "work_dir": (str,),
    "pid": (int,), "python": (str,), "warm_ms": (int, float), "fork_ms": (int, float),
    "huge_mb": (int, float), "merge": (str,), "mergeable": (bool,),
    "preloaded": (list, tuple), "failed": (dict,), "error": (str,),
    "code": (int, type(None)), "signal": (int, type(None)), "reason": (str,),
    "message": (str,), "template_pid": (int,), "fork_loop": (str,),
}


def encode(message: Command | Event) -> bytes:
    """One line (with its newline) for ``message``."""
    data = asdict(message)
    data = {"op": data.pop("op"), **data}
    line = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message too long ({len(line)} bytes, at most {MAX_LINE})")
    return line


def decode(line: bytes, table: dict[str, type]) -> Any:
    """Parse one line (without or with its newline) into a message of ``table``."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    op = obj.pop("op", None)
    cls = table.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"unknown op {op!r}")
    names = {f.name for f in fields(cls) if f.init}
    missing = names - {k for k in obj if k in names}
    extra = set(obj) - names
    required = {f.name for f in fields(cls)
                if f.init and f.default is MISSING and f.default_factory is MISSING}
    if missing & required:
        raise ProtocolError(f"{op}: missing {', '.join(sorted(missing & required))}")
    if extra:
        raise ProtocolError(f"{op}: unknown fields {', '.join(sorted(extra))}")
    for k, v in obj.items():
        if not isinstance(v, _TYPES[k]) or (isinstance(v, bool) and bool not in _TYPES[k]):
            raise ProtocolError(f"{op}: field {k} has the wrong type")
    if "preloaded" in obj:
        obj["preloaded"] = tuple(obj["preloaded"])
    return cls(**obj)


def decode_command(line: bytes) -> Command:
    return decode(line, COMMANDS)


def decode_event(line: bytes) -> Event:
    return decode(line, EVENTS)


class LineBuffer:
    """Split a byte stream into lines; refuses lines longer than ``MAX_LINE``."""

    def __init__(self, max_line: int = MAX_LINE):
        self._buf = b""
        self._max = max_line

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > self._max:
            self._buf = b""
            raise ProtocolError(f"line longer than {self._max} bytes")
        out = []
        for line in lines:
            if len(line) > self._max:
                raise ProtocolError(f"line longer than {self._max} bytes")
            if line.strip():
                out.append(line)
        return out


def describe_status(status: int) -> tuple[int | None, int | None, str]:
    """(exit code, signal number, reason text) for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status), describe_signal(os.WTERMSIG(status))
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return code, None, f"exited with code {code}"


def describe_signal(signum: int) -> str:
    try:
        name = _signal.Signals(signum).name
    except ValueError:
        name = "unknown signal"
    return f"killed by signal {signum} ({name})"
