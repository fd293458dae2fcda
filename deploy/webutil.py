"""Small helpers every node's twisted.web layer shares: JSON bodies, JSON
errors in the shape of ARCHITECTURE section 2, and its CORS rules."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web import resource
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


def method_not_allowed(request: Request, allowed: bytes) -> bytes:
    """405 with an ``Allow`` header and a JSON body (RFC 9110 15.5.6)."""
    request.setHeader(b"Allow", allowed)
    return json_error(request, 405, "method-not-allowed",
                      f"{request.method.decode('latin-1')[:20]} is not allowed here; use {allowed.decode()}")


class MethodsResource(resource.Resource):
    """A resource that answers a method it has no ``render_*`` for with a
    JSON 405 naming the ones it has.

    Why: twisted.web answers such requests with an HTML page, 405 for GET,
    HEAD and POST but 501 "Huh?" for PUT, DELETE and the rest, and a HEAD
    on a resource without ``render_GET`` is a 500 (``Resource.render_HEAD``
    calls ``render_GET``).  A client that sent the wrong method gets what is
    wrong, in the shape of every other error.
    """

    def render(self, request):
        allowed = _allowed(type(self))
        if request.method not in allowed:
            apply_cors(request)
            return method_not_allowed(request, b", ".join(allowed))
        return super().render(request)


_ALLOWED: dict[type, tuple[bytes, ...]] = {}


def _allowed(cls: type) -> tuple[bytes, ...]:
    methods = _ALLOWED.get(cls)
    if methods is None:
        names = {n[len("render_"):] for n in dir(cls) if n.startswith("render_") and n[len("render_"):].isupper()}
        if "GET" not in names:
            names.discard("HEAD")          # Resource's own render_HEAD only calls render_GET
        methods = _ALLOWED[cls] = tuple(sorted(n.encode() for n in names))
    return methods


def parse_form(qs: bytes) -> dict[bytes, list[bytes]]:
    """A query string or urlencoded body as browsers and SageMathCell's server
    (Tornado, ``urllib.parse``) read it: fields split on ``&`` only, ``+`` a
    space, fields without ``=`` left out.  Twisted's ``parse_qs`` splits on
    ``;`` too, so a raw ``code=import numpy as np; print(1)`` (curl -d)
    arrived as ``code=import numpy as np`` and printed nothing."""
    args: dict[bytes, list[bytes]] = {}
    for field in qs.split(b"&"):
        name, sep, value = field.partition(b"=")
        if not sep:
            continue
        args.setdefault(unquote_to_bytes(name.replace(b"+", b" ")), []).append(
            unquote_to_bytes(value.replace(b"+", b" ")))
    return args


def media_type(request: Request) -> bytes:
    """The request's Content-Type without its parameters, lower-cased
    (b"" without one)."""
    ctype = request.requestHeaders.getRawHeaders(b"content-type")
    return ctype[0].split(b";", 1)[0].strip().lower() if ctype else b""


def reparse_form_args(request: Request) -> None:
    """``request.args`` again with ``parse_form``, as Twisted built them: the
    query string's, then an urlencoded POST body's over them (a multipart
    body's stay Twisted's).  Only where a ``;`` is in them: without one
    Twisted's reading is the same, and most requests are read once."""
    kind = media_type(request) if request.method == b"POST" else b""
    if kind == b"multipart/form-data":
        return                            # Twisted's parse, untouched
    _, _, query = request.uri.partition(b"?")
    body = b""
    if kind == b"application/x-www-form-urlencoded":
        request.content.seek(0)
        body = request.content.read()
        request.content.seek(0)
    if b";" not in query and b";" not in body:
        return
    args = parse_form(query)
    args.update(parse_form(body))
    request.args = args


def unreadable_multipart(request: Request, method: bytes) -> str | None:
    """Why a POST's multipart/form-data body cannot be read, or None (no such
    body, or a good one).  The reading is twisted.web's own."""
    if method != b"POST" or media_type(request) != b"multipart/form-data" or request.content is None:
        return None
    end = request.content.tell()          # twisted.web takes the body's length from where it stands
    request.content.seek(0)
    content = request.content.read()
    request.content.seek(end)
    if not content:
        return None
    from twisted.web.http import _getMultiPartArgs
    try:
        _getMultiPartArgs(content, request.requestHeaders.getRawHeaders(b"content-type")[0])
    except Exception as e:          # noqa: BLE001 - anything the parser raises means the same
        return f"the multipart/form-data body cannot be read ({type(e).__name__}: {str(e)[:80]})"
    return None


class FormRequest(Request):
    """A Request whose ``args`` are read as browsers and SageMathCell read
    forms (``reparse_form_args``), before its resource sees them.

    A multipart body twisted.web cannot read gets a JSON 400 saying so, and a
    log line: twisted.web itself writes a bare ``400 Bad Request`` without a
    body or a log line and drops the connection."""

    _log = Logger()

    def requestReceived(self, command, path, version):
        why = unreadable_multipart(self, command)
        if why is None:
            super().requestReceived(command, path, version)
            return
        self._log.info("{method} {path}: 400 bad_body: {why}", method=command.decode("latin-1"),
                       path=path[:200].decode("latin-1"), why=why)
        body = json.dumps({"error": "bad_body", "message": why}).encode()
        transport = self.channel.transport
        transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        transport.loseConnection()

    def process(self):
        reparse_form_args(self)
        super().process()
