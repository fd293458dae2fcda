"""HTTP/1.1 message heads and body framing for the edge.  Pure: bytes in,
decisions out (no Twisted import).

The edge must not be fooled into seeing a different request boundary than
the server behind it (request smuggling), so parsing is strict:

- the head is at most ``MAX_HEAD`` bytes (431 beyond);
- request line ``METHOD SP target SP HTTP/1.x``; header names are tokens;
  no whitespace before the colon, no obsolete line folding, no bare CR/LF;
- ``Transfer-Encoding`` with ``Content-Length`` is rejected (RFC 9112 6.1
  allows dropping CL, but a proxy that refuses is safer); several
  ``Content-Length`` values must agree; any transfer coding other than a
  single final ``chunked`` is 501;
- ``ChunkedTracker`` follows a chunked body byte by byte to find where it
  ends, passing the bytes through unchanged.

Headers are kept as an ordered list of (name, value) byte pairs, so
repeated headers survive.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"           # a token (RFC 9110 5.6.2)
_REQUEST = rb"(" + _NAME + rb") ([^\x00-\x20\x7f]+) HTTP/1\.([01])"
_STATUS = rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?"
TOKEN = re.compile(rb"^" + _NAME + rb"$")
REQUEST_LINE = re.compile(rb"^" + _REQUEST + rb"$")
STATUS_LINE = re.compile(rb"^" + _STATUS + rb"$")
BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# The common case in one pass of the regex engine: a head every line of which is
# well formed.  These match only field lines ``_parse_fields`` accepts (token
# name, colon, a value without control characters, CRLF) and capture the name
# and the value without its surrounding blanks; a head they do not match goes
# the line-by-line way, which says what is wrong (or accepts what the fast way
# was too narrow for).  test_httphead checks that both ways agree.  The value's
# blanks and non-blanks alternate inside atomic groups, so no input makes the
# engine backtrack much (a value of spaces would otherwise take it quadratic
# time).  Not possessive quantifiers: CPython 3.11.2's get nested ones wrong.
_VALUE = rb"(?>(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?)"
_FIELD_RE = re.compile(rb"(" + _NAME + rb"):(?>[ \t]*)(" + _VALUE + rb")[ \t]*\r\n")
_FIELDS = re.compile(rb"(?:" + _NAME + rb":(?>[ \t]*)" + _VALUE + rb"[ \t]*\r\n)*\r\n")
_REQUEST_LINE_CRLF = re.compile(_REQUEST + rb"\r\n")
_STATUS_LINE_CRLF = re.compile(_STATUS + rb"\r\n")

# RFC 9110 7.6.1: connection-specific ("hop-by-hop") fields, never forwarded.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})


class HeadError(Exception):
    """A malformed head: ``status`` is the answer to give (400, 431, 501, 505)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Head:
    version: int                          # minor version: 0 or 1
    headers: list[tuple[bytes, bytes]]    # names lowercased, values stripped
    length: int | None = None             # Content-Length, if any
    chunked: bool = False

    def get(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def get_all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]

    def connection_tokens(self) -> set[bytes]:
        values = self.get_all(b"connection")
        if not values:
            return set()
        return {t.strip().lower() for v in values for t in v.split(b",") if t.strip()}

    @property
    def keep_alive(self) -> bool:
        tokens = self.connection_tokens()
        if self.version == 0:
            return b"keep-alive" in tokens
        return b"close" not in tokens


@dataclass
class RequestHead(Head):
    method: bytes = b""
    target: bytes = b""

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]

    @property
    def is_websocket(self) -> bool:
        upgrade = (self.get(b"upgrade") or b"").lower()
        return b"upgrade" in self.connection_tokens() and upgrade == b"websocket"

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.length)


@dataclass
class ResponseHead(Head):
    status: int = 0
    reason: bytes = b""


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending the head, or -1.  A line ended by
    a bare LF is a ``HeadError`` at once: waiting for a CRLF CRLF that such a
    client never sends would only end in the head timeout, and servers that
    read LF and CRLF differently are what request smuggling feeds on."""
    i = buf.find(b"\r\n\r\n", start)
    end = len(buf) if i < 0 else i + 4
    j = buf.find(b"\n", start, end)
    while j >= 0:
        if j == 0 or buf[j - 1] != 0x0D:
            raise HeadError(400, "a line of the head ends in a bare LF (CRLF is required)")
        j = buf.find(b"\n", j + 1, end)
    return -1 if i < 0 else end


def _parse_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(lines) > MAX_HEADERS:
        raise HeadError(431, f"more than {MAX_HEADERS} header fields")
    headers = []
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise HeadError(400, "obsolete line folding is not accepted")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN.match(name):
            raise HeadError(400, f"malformed header field {line[:40]!r}")
        value = value.strip(b" \t")
        if BAD_VALUE.search(value):
            raise HeadError(400, f"control characters in header {name[:40]!r}")
        headers.append((name.lower(), value))
    return headers


def _fast_fields(data: bytes, start: int) -> list[tuple[bytes, bytes]] | None:
    """The fields of ``data[start:]`` (which ends with the blank line), or None
    when a line is not plainly well formed."""
    if not _FIELDS.fullmatch(data, start):
        return None
    fields = _FIELD_RE.findall(data, start)
    if len(fields) > MAX_HEADERS:
        return None
    return [(name.lower(), value) for name, value in fields]


def _framing(head: Head) -> None:
    te = head.get_all(b"transfer-encoding")
    cl = head.get_all(b"content-length")
    if te:
        if cl:
            raise HeadError(400, "both Transfer-Encoding and Content-Length: refused")
        codings = [c.strip().lower() for v in te for c in v.split(b",") if c.strip()]
        if codings != [b"chunked"]:
            raise HeadError(501, f"transfer coding {b', '.join(codings)[:60]!r} is not supported")
        if head.version == 0:
            raise HeadError(400, "Transfer-Encoding in an HTTP/1.0 message")
        head.chunked = True
    elif cl:
        values = {v.strip() for value in cl for v in value.split(b",")}
        if len(values) != 1:
            raise HeadError(400, "conflicting Content-Length values")
        value = values.pop()
        if not value.isdigit() or len(value) > 15:
            raise HeadError(400, f"bad Content-Length {value[:20]!r}")
        head.length = int(value)


def _lines(data: bytes) -> list[bytes]:
    if not data.endswith(b"\r\n\r\n"):
        raise HeadError(400, "head does not end with an empty line")
    body = data[:-4]
    if b"\n" in body.replace(b"\r\n", b"") or b"\r" in body.replace(b"\r\n", b""):
        raise HeadError(400, "bare CR or LF in the head")
    return body.split(b"\r\n")


def parse_request_head(data: bytes) -> RequestHead:
    """Parse a complete request head (``data`` ends with the blank line)."""
    if len(data) > MAX_HEAD:
        raise HeadError(431, f"request head over {MAX_HEAD} bytes")
    m = _REQUEST_LINE_CRLF.match(data)
    headers = _fast_fields(data, m.end()) if m else None
    if headers is not None:
        head = RequestHead(version=int(m.group(3)), headers=headers, method=m.group(1), target=m.group(2))
    else:
        head = _parse_request_lines(data)
    if head.version == 1 and len(head.get_all(b"host")) != 1:
        raise HeadError(400, "an HTTP/1.1 request needs exactly one Host header")
    _framing(head)
    return head


def _parse_request_lines(data: bytes) -> RequestHead:
    lines = _lines(data)
    # Tolerate empty lines before the request line (RFC 9112 2.2).
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        raise HeadError(400, "empty request")
    m = REQUEST_LINE.match(lines[0])
    if not m:
        if lines[0].startswith(b"HTTP/") or re.search(rb" HTTP/[2-9]", lines[0]):
            raise HeadError(505, "only HTTP/1.0 and HTTP/1.1 are spoken here")
        raise HeadError(400, f"malformed request line {lines[0][:60]!r}")
    return RequestHead(version=int(m.group(3)), headers=_parse_fields(lines[1:]),
                       method=m.group(1), target=m.group(2))


def parse_response_head(data: bytes) -> ResponseHead:
    if len(data) > MAX_HEAD * 4:
        raise HeadError(502, "response head too large")
    m = _STATUS_LINE_CRLF.match(data)
    headers = _fast_fields(data, m.end()) if m else None
    if headers is None:
        lines = _lines(data)
        m = STATUS_LINE.match(lines[0])
        if not m:
            raise HeadError(502, f"malformed status line {lines[0][:60]!r}")
        headers = _parse_fields(lines[1:])
    head = ResponseHead(version=int(m.group(1)), headers=headers, status=int(m.group(2)), reason=m.group(3) or b"")
    _framing(head)
    return head


def response_has_body(request_method: bytes, status: int) -> bool:
    return not (request_method == b"HEAD" or 100 <= status < 200 or status in (204, 304))


def forward_headers(headers: list[tuple[bytes, bytes]], extra_hop: set[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """Drop hop-by-hop fields (and any named in Connection), keep order and repeats."""
    named = set(extra_hop)
    for k, v in headers:
        if k == b"connection":
            named.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]


def serialize_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([method, b" ", target, b" HTTP/1.1\r\n",
                     *(b"%s: %s\r\n" % kv for kv in headers), b"\r\n"])


def serialize_response(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-"),
                     *(b"%s: %s\r\n" % kv for kv in headers), b"\r\n"])


class ChunkedError(Exception):
    pass


@dataclass
class ChunkedTracker:
    """Follows a chunked body to find its end; bytes pass through unchanged.

    ``feed(data)`` returns how many bytes of ``data`` belong to the body
    (all of them until the end is found).  ``done`` is set once the last
    chunk and the trailer section are complete.
    """

    max_line: int = 4096
    done: bool = False
    _state: str = "size"          # size | data | data_crlf | trailer
    _remaining: int = 0
    _line: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> int:
        i, n = 0, len(data)
        while i < n and not self.done:
            if self._state == "data":
                take = min(self._remaining, n - i)
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "data_crlf"
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self._line += data[i:]
                if len(self._line) > self.max_line:
                    raise ChunkedError("chunk line too long")
                return n
            self._line += data[i:j + 1]
            i = j + 1
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise ChunkedError("chunk line not ended by CRLF")
            line = line[:-2]
            if self._state == "size":
                size = line.split(b";", 1)[0].strip(b" \t")
                if not size or len(size) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                    raise ChunkedError(f"bad chunk size {size[:20]!r}")
                self._remaining = int(size, 16)
                self._state = "data" if self._remaining else "trailer"
            elif self._state == "data_crlf":
                if line:
                    raise ChunkedError("chunk data longer than its size")
                self._state = "size"
            else:  # trailer fields until an empty line
                if not line:
                    self.done = True
        return i
