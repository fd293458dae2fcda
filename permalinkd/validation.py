"""Checking what clients send to permalinkd (pure logic, no I/O).

Everything a client sends goes through here before it reaches Redis, so
nothing stored can later fail to load: code is valid UTF-8 text of at most
``max_code`` characters, the language is one of the configured ones, and
interacts is valid JSON (stored as the client's text, which is what the
cell page gets back; strict JSON, as a browser's ``JSON.parse`` reads it:
no ``NaN`` or ``Infinity``).  Each problem is an ``InputError`` carrying the HTTP
status, a short error code and a human message (ARCHITECTURE section 2).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from permalinkd import ids

DEFAULT_LANGUAGES = ("sage", "gap", "gp", "html", "macaulay2", "maxima", "octave", "python", "r", "singular")
MAX_INTERACTS = 65_000
# A JSONP callback: dotted JavaScript identifiers, nothing that could run code.
CALLBACK_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,4}$")
_JS_RESERVED = frozenset("""break case catch class const continue debugger default delete do else export extends
false finally for function if import in instanceof new null return super switch this throw true try typeof var
void while with yield let static enum await implements package protected interface private public eval""".split())

Args = Mapping[bytes, Sequence[bytes]]


@dataclass(frozen=True)
class InputError(Exception):
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class Cell:
    code: str
    language: str
    interacts: str   # JSON text, as the client sent it


@dataclass(frozen=True)
class CreateRequest:
    cell: Cell
    n: int | None


def text_arg(args: Args, name: str, default: str | None = None, max_bytes: int | None = None) -> str | None:
    """The first value of ``name`` as text; 400 if it is not UTF-8."""
    values = args.get(name.encode("ascii"))
    if not values:
        return default
    raw = values[0]
    if max_bytes is not None and len(raw) > max_bytes:
        raise InputError(413, "too-large", f"{name} is too large")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(400, "bad-encoding", f"{name} is not valid UTF-8 text")


def parse_create(args: Args, languages: Sequence[str], max_code: int) -> CreateRequest:
    """Validate the parameters of ``POST /permalink``."""
    code = text_arg(args, "code", max_bytes=max_code * 4)
    if code is None:
        raise InputError(400, "missing-code", "the code parameter is required")
    if len(code) > max_code:
        raise InputError(413, "code-too-long", f"code has {len(code)} characters; at most {max_code} are allowed")
    language = text_arg(args, "language", default="sage", max_bytes=64) or "sage"
    if language not in languages:
        raise InputError(400, "unknown-language",
                         f"language {language[:40]!r} is not one of: {', '.join(languages)}")
    interacts = text_arg(args, "interacts", default="[]", max_bytes=MAX_INTERACTS * 4)
    if interacts is None or interacts.strip() == "":
        interacts = "[]"
    if len(interacts) > MAX_INTERACTS:
        raise InputError(413, "interacts-too-long", f"interacts has more than {MAX_INTERACTS} characters")
    try:
        json.loads(interacts, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise InputError(400, "bad-interacts", f"interacts is not valid JSON: {str(e)[:200]}")
    n_text = text_arg(args, "n", max_bytes=32)
    n = None
    if n_text is not None:
        try:
            n = int(n_text.strip())
        except ValueError:
            raise InputError(400, "bad-n", f"n must be a whole number, not {n_text[:32]!r}")
        if abs(n) > 2**53:
            raise InputError(400, "bad-n", "n is out of range")
    return CreateRequest(Cell(code=code, language=language, interacts=interacts), n)


def _reject_constant(name: str):
    """``NaN``/``Infinity``/``-Infinity``: Python's json takes them, JSON (and the
    cell page's ``JSON.parse``) does not, so such a permalink would never load."""
    raise ValueError(f"{name} is not JSON (no NaN or Infinity)")


def _short_arg(args: Args, name: str, max_bytes: int, too_long: InputError) -> str | None:
    try:
        return text_arg(args, name, max_bytes=max_bytes)
    except InputError as e:
        if e.status == 413:
            raise too_long
        raise


def parse_lookup(args: Args) -> tuple[str, str | None]:
    """``(id, callback)`` of ``GET /permalink?q=...[&callback=...]``."""
    bad_id = InputError(400, "bad-id", f"q must be {ids.MIN_LENGTH} to {ids.MAX_LENGTH} characters of A-Z a-z 0-9 - _")
    bad_callback = InputError(400, "bad-callback",
                              "callback must be a JavaScript identifier (letters, digits, _ $ and dots)")
    # An overlong id or callback is malformed (400), not a too-large upload (413).
    q = _short_arg(args, "q", 256, bad_id)
    if q is None or q == "":
        raise InputError(400, "missing-q", "the q parameter (permalink id) is required")
    if not ids.is_valid_id(q):
        raise bad_id
    callback = _short_arg(args, "callback", 512, bad_callback)
    if callback is not None and callback != "":
        if not is_valid_callback(callback):
            raise bad_callback
    else:
        callback = None
    return q, callback


def is_valid_callback(name: str) -> bool:
    return bool(CALLBACK_RE.fullmatch(name)) and not any(p in _JS_RESERVED for p in name.split("."))
