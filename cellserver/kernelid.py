"""Kernel ids that name the cell server owning the kernel.

``<node>-<32 hex digits>``, e.g. ``c1-3f2a...``: any edge routes
``/kernel/<id>/...`` by the id alone, with no shared state (ARCHITECTURE
section 4).  Node names are lowercase letters, digits and '-', so the id
splits on its last '-'.  Pure logic, no I/O; randomness is passed in.
"""
from __future__ import annotations

import re
import secrets

_ID_RE = re.compile(r"^([a-z0-9][a-z0-9-]{0,30})-([0-9a-f]{32})$")
MAX_ID_LENGTH = 31 + 1 + 32


class InvalidKernelId(ValueError):
    pass


def new_kernel_id(node: str, token: str | None = None) -> str:
    """A fresh id for a kernel on ``node`` (``token``: 32 hex digits, for tests)."""
    token = token if token is not None else secrets.token_hex(16)
    kid = f"{node}-{token}"
    if not _ID_RE.match(kid):
        raise InvalidKernelId(f"cannot make a kernel id from node {node!r} and token {token!r}")
    return kid


def parse_kernel_id(kid: str) -> tuple[str, str]:
    """Split an id into (node, token); InvalidKernelId if it is not one of ours."""
    if not isinstance(kid, str) or len(kid) > MAX_ID_LENGTH:
        raise InvalidKernelId("kernel id is too long or not text")
    m = _ID_RE.match(kid)
    if not m:
        raise InvalidKernelId(f"{kid[:80]!r} is not a kernel id (expected <node>-<32 hex digits>)")
    return m.group(1), m.group(2)


def node_of(kid: str) -> str | None:
    """The owning node's name, or None for something that is not a kernel id."""
    try:
        return parse_kernel_id(kid)[0]
    except InvalidKernelId:
        return None
