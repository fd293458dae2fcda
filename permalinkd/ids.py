"""Content-derived permalink ids (pure logic, no I/O).

The id of a permalink is a prefix of the URL-safe base64 of
``sha256(language NUL interacts NUL code)``, so the same cell always gets the
same id and a write retried after a failover is idempotent.  Ids start
``MIN_LENGTH`` characters long (60 bits); when that prefix is already taken
by a *different* cell (the store compares the full digest kept in the hash),
the store tries the next longer prefix, up to the whole digest.  A stored
cell is never overwritten.
"""
from __future__ import annotations

import base64
import hashlib
import re
from typing import Iterator

MIN_LENGTH = 10
MAX_LENGTH = 43  # unpadded urlsafe base64 of 32 bytes
ID_RE = re.compile(r"^[A-Za-z0-9_-]{%d,%d}$" % (MIN_LENGTH, MAX_LENGTH))


def digest(code: str, language: str, interacts: str) -> str:
    """The full content digest (43 URL-safe characters)."""
    h = hashlib.sha256()
    for part in (language, interacts, code):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return base64.urlsafe_b64encode(h.digest()).decode("ascii").rstrip("=")


def candidates(full_digest: str, min_length: int = MIN_LENGTH) -> Iterator[str]:
    """Ids to try in order: ever longer prefixes of the digest."""
    for n in range(min_length, len(full_digest) + 1):
        yield full_digest[:n]


def is_valid_id(text: str) -> bool:
    return bool(ID_RE.fullmatch(text))
