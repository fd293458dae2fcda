"""Small helpers every node's twisted.web layer shares: JSON bodies, JSON
errors in the shape of ARCHITECTURE section 2, and its CORS rules."""
from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request

CORS_METHODS = b"GET, POST, DELETE, OPTIONS"


def apply_cors(request: Request) -> None:
    """Echo the Origin, allow credentials (ARCHITECTURE section 2)."""
    origin = request.getHeader(b"origin")
    if origin:
        request.setHeader(b"Access-Control-Allow-Origin", origin)
        request.setHeader(b"Access-Control-Allow-Credentials", b"true")
        request.setHeader(b"Access-Control-Allow-Methods", CORS_METHODS)
        request.setHeader(b"Vary", b"Origin")
        asked = request.getHeader(b"access-control-request-headers")
        if asked:
            request.setHeader(b"Access-Control-Allow-Headers", asked)
        request.setHeader(b"Access-Control-Expose-Headers", b"Jupyter-Kernel-ID, Retry-After")


def json_body(request: Request, status: int, body: Any) -> bytes:
    """Set status and JSON content type; return the encoded body for render_*."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def json_error(request: Request, status: int, code: str, message: str, retry_after: float | None = None) -> bytes:
    """``{"error": code, "message": message}`` with the right status."""
    if retry_after is not None:
        request.setHeader(b"Retry-After", str(max(1, int(retry_after + 0.999))).encode())
    return json_body(request, status, {"error": code, "message": message})
