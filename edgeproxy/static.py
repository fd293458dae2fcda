"""Static assets served by the edge itself (in the place of nginx).

Files under the static directory answer ``/static/<path>``, and
``/embedded_sagecell.js`` answers from its root.  Each file is read once per
change (size and mtime), with a strong ETag, ``Cache-Control``, 304 for a
matching ``If-None-Match``, and a gzip copy kept when it saves at least a
tenth (text types only; images are already compressed).
"""
from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
from dataclasses import dataclass

MAX_FILE = 20 * 1024 * 1024
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml", "application/wasm")


@dataclass(frozen=True)
class Asset:
    body: bytes
    gz: bytes | None
    etag: bytes
    content_type: bytes
    stamp: tuple[int, int]


class StaticFiles:
    def __init__(self, root: str, max_age: int = 3600):
        self.root = os.path.realpath(root)
        self.max_age = max_age
        self.cache: dict[str, Asset] = {}

    def resolve(self, path: bytes) -> str | None:
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            return None
        from urllib.parse import unquote

        if text == "/embedded_sagecell.js":
            rel = "embedded_sagecell.js"
        elif text.startswith("/static/"):
            rel = unquote(text[len("/static/"):])
        else:
            return None
        full = os.path.realpath(os.path.join(self.root, rel))
        if not full.startswith(self.root + os.sep) or not os.path.isfile(full):
            return None
        return full

    def asset(self, full: str) -> Asset | None:
        try:
            st = os.stat(full)
        except OSError:
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self.cache.get(full)
        if cached is not None and cached.stamp == stamp:
            return cached
        if st.st_size > MAX_FILE:
            return None
        with open(full, "rb") as f:
            body = f.read()
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/javascript":
            ctype += "; charset=utf-8"
        gz = None
        if len(body) > 1024 and ctype.startswith(COMPRESSIBLE):
            packed = gzip.compress(body, 6, mtime=0)
            if len(packed) < len(body) * 0.9:
                gz = packed
        etag = b'"' + hashlib.sha256(body).hexdigest()[:24].encode() + b'"'
        asset = Asset(body, gz, etag, ctype.encode(), stamp)
        self.cache[full] = asset
        return asset

    def answer(self, method: bytes, path: bytes, if_none_match: bytes | None,
               accept_encoding: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers, body) for a static request."""
        if method not in (b"GET", b"HEAD"):
            return 405, [(b"allow", b"GET, HEAD"), (b"content-type", b"application/json")], \
                b'{"error":"method_not_allowed","message":"static files are GET only"}'
        full = self.resolve(path)
        asset = self.asset(full) if full else None
        if asset is None:
            return 404, [(b"content-type", b"application/json")], \
                b'{"error":"not_found","message":"no such static file"}'
        headers = [(b"etag", asset.etag), (b"cache-control", b"public, max-age=%d" % self.max_age),
                   (b"vary", b"Accept-Encoding"), (b"access-control-allow-origin", b"*")]
        if if_none_match and asset.etag in [t.strip() for t in if_none_match.split(b",")]:
            return 304, headers, b""
        headers.append((b"content-type", asset.content_type))
        if asset.gz is not None and accept_encoding and b"gzip" in accept_encoding.lower():
            headers.append((b"content-encoding", b"gzip"))
            return 200, headers, asset.gz
        return 200, headers, asset.body
