"""The ``z`` encoding of code in URLs (ARCHITECTURE section 2), pure.

``z = base64.urlsafe_b64encode(zlib.compress(code.encode()))`` with the
trailing ``=`` optional.  Decoding is bounded so a small ``z`` cannot
inflate into gigabytes (a zip bomb is a ``ZError``, not an out-of-memory).
"""
from __future__ import annotations

import base64
import binascii
import re
import zlib

_Z_RE = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


class ZError(ValueError):
    """A ``z`` value that is not valid; the message says why."""


def encode(code: str) -> str:
    return base64.urlsafe_b64encode(zlib.compress(code.encode("utf-8"))).decode("ascii")


def decode(z: str, max_chars: int = 65_000) -> str:
    """The code a ``z`` value holds; ``ZError`` if malformed or too long."""
    z = z.strip()
    if not _Z_RE.fullmatch(z):
        raise ZError("z must be URL-safe base64 (A-Z a-z 0-9 - _)")
    try:
        raw = base64.urlsafe_b64decode(z + "=" * (-len(z) % 4))
    except (binascii.Error, ValueError) as e:
        raise ZError(f"z is not valid base64: {e}") from e
    limit = max_chars * 4 + 1  # UTF-8 bytes of max_chars characters, plus one to detect overflow
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, limit)
    except zlib.error as e:
        raise ZError(f"z is not zlib-compressed data: {e}") from e
    if len(data) >= limit or inflater.unconsumed_tail:
        raise ZError(f"z decodes to more than {max_chars} characters")
    if not inflater.eof:
        raise ZError("z is truncated")
    try:
        code = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ZError("z does not hold UTF-8 text") from e
    if len(code) > max_chars:
        raise ZError(f"z decodes to more than {max_chars} characters")
    return code
