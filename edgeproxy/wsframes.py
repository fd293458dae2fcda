"""Where server-to-client websocket frames begin and end.  Pure.

The edge splices websocket bytes without re-framing them.  When a cell
server dies, the edge tells the page with a close frame of its own; that
frame may only be written between two of the server's frames, never inside
one.  ``FrameTracker`` follows the byte stream (RFC 6455 5.2 frame headers)
just enough to know whether it is at a frame boundary.
"""
from __future__ import annotations

import struct


class FrameTracker:
    def __init__(self) -> None:
        self._header = bytearray()
        self._payload_left = 0

    @property
    def at_boundary(self) -> bool:
        return not self._header and self._payload_left == 0

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._payload_left:
                take = min(self._payload_left, n - i)
                self._payload_left -= take
                i += take
                continue
            self._header.append(data[i])
            i += 1
            need = _header_length(self._header)
            if need is not None and len(self._header) == need:
                self._payload_left = _payload_length(self._header)
                self._header.clear()


def _header_length(h: bytearray) -> int | None:
    if len(h) < 2:
        return None
    size = 2 + (4 if h[1] & 0x80 else 0)
    code = h[1] & 0x7F
    return size + (2 if code == 126 else 8 if code == 127 else 0)


def _payload_length(h: bytearray) -> int:
    code = h[1] & 0x7F
    if code == 126:
        return struct.unpack("!H", bytes(h[2:4]))[0]
    if code == 127:
        return struct.unpack("!Q", bytes(h[2:10]))[0]
    return code


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked (server-to-client) close frame."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
    return bytes([0x88, len(payload)]) + payload
