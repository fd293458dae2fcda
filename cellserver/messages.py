"""Websocket frames <-> Jupyter messages, and what a client may send.  Pure.

Client frames are JSON text: a Jupyter message plus ``channel``
(ARCHITECTURE section 3).  ``parse_client_frame`` either returns the channel
and the message to hand to the kernel, or raises ``FrameError`` with the
websocket close code and a reason the client can read.

Frames to the client are built from the kernel's raw JSON parts without
re-encoding them (parent headers stay byte-for-byte what the kernel sent);
``msg_type`` and ``msg_id`` are added at the top level as Jupyter server does.
"""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from jupyter_client.jsonutil import extract_dates

from cellserver.kernels import KernelMessage

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_UNKNOWN_KERNEL = 4004
CLOSE_BAD_FRAME = 4400
CLOSE_TIMEOUT = 4408
CLOSE_LIMIT = 4413
CLOSE_KERNEL_DIED = 4500
CLOSE_SHUTTING_DOWN = 4503

SHELL_TYPES = frozenset({
    "execute_request", "complete_request", "inspect_request", "kernel_info_request",
    "comm_open", "comm_msg", "comm_close", "comm_info_request", "history_request",
    "is_complete_request",
})
CONTROL_TYPES = frozenset({"interrupt_request", "kernel_info_request"})
ALLOWED = {"shell": SHELL_TYPES, "control": CONTROL_TYPES}


class FrameError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_client_frame(payload: bytes | str, max_code: int) -> tuple[str, dict[str, Any]]:
    """Validate one client frame; return (channel, message) or raise FrameError."""
    try:
        frame = json.loads(payload, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as e:
        raise FrameError(CLOSE_BAD_FRAME, f"frame is not valid JSON: {str(e)[:80]}")
    if not isinstance(frame, dict):
        raise FrameError(CLOSE_BAD_FRAME, "frame must be a JSON object (a Jupyter message)")
    channel = frame.get("channel")
    if channel not in ALLOWED:
        raise FrameError(CLOSE_BAD_FRAME, f"unknown channel {str(channel)[:40]!r}: use shell or control")
    header = frame.get("header")
    if not isinstance(header, dict):
        raise FrameError(CLOSE_BAD_FRAME, "message has no header object")
    msg_type = header.get("msg_type")
    msg_id = header.get("msg_id")
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > 200:
        raise FrameError(CLOSE_BAD_FRAME, "header.msg_id must be a non-empty string")
    if msg_type not in ALLOWED[channel]:
        raise FrameError(CLOSE_BAD_FRAME, f"message type {str(msg_type)[:40]!r} is not accepted on {channel}")
    _kernel_can_read(header, frame.get("parent_header", {}))
    content = frame.get("content", {})
    if not isinstance(content, dict):
        raise FrameError(CLOSE_BAD_FRAME, "content must be a JSON object")
    for part in ("parent_header", "metadata"):
        if not isinstance(frame.get(part, {}), dict):
            raise FrameError(CLOSE_BAD_FRAME, f"{part} must be a JSON object")
    if msg_type == "execute_request":
        code = content.get("code")
        if not isinstance(code, str):
            raise FrameError(CLOSE_BAD_FRAME, "execute_request needs content.code (a string)")
        if len(code) > max_code:
            raise FrameError(CLOSE_LIMIT, f"code is {len(code)} characters; the limit is {max_code}")
        # No stdin channel is relayed: input() must fail at once, not hang.
        content = {**content, "allow_stdin": False}
    message = {
        "header": header,
        "parent_header": frame.get("parent_header", {}),
        "metadata": frame.get("metadata", {}),
        "content": content,
    }
    buffers = frame.get("buffers")
    if buffers:
        message["buffers"] = decode_buffers(buffers)
    return channel, message


def _not_json(name: str):
    """Python's json reads NaN and Infinity, which JSON has not (and jupyter_client
    warns it will refuse to send on): a browser never writes them."""
    raise ValueError(f"{name} is not a JSON value")


def _major_version(version: Any) -> bool:
    """jupyter_client's own reading: ``int(version.split(".")[0])``."""
    try:
        int(version.split(".")[0])
    except (AttributeError, ValueError):
        return False
    return True


def _kernel_can_read(header: dict[str, Any], parent_header: Any) -> None:
    """Refuse a header the kernel would drop without a word.

    ipykernel reads a message with jupyter_client's ``Session.deserialize``,
    which turns ISO dates into datetimes (a malformed one raises) and reads
    the protocol's major version from ``header.version`` (anything but a
    string like "5.3" raises); a message that fails there is logged by the
    kernel and never answered.  For an ``execute_request`` that is worse
    than a lost request: the evaluation never begins, so every later one
    waits behind it (``scheduler``), and the page's kernel looks hung.  And
    ipykernel keys its output buffers on the request's header items, so a
    list or an object among them breaks every print of that evaluation.
    """
    for key, value in header.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise FrameError(CLOSE_BAD_FRAME, f"header.{key[:40]} must be a string or a number")
    if "version" in header and not _major_version(header["version"]):
        raise FrameError(CLOSE_BAD_FRAME, "header.version must be a protocol version such as '5.3'")
    for name, part in (("header", header), ("parent_header", parent_header)):
        try:
            extract_dates(part)
        except (ValueError, OverflowError, TypeError) as e:
            raise FrameError(CLOSE_BAD_FRAME, f"{name} holds a date that is not one: {str(e)[:60]}")


def decode_buffers(buffers) -> list[bytes]:
    """Binary buffers (widgets) travel in JSON frames as base64 strings."""
    if not isinstance(buffers, list) or len(buffers) > 64:
        raise FrameError(CLOSE_BAD_FRAME, "buffers must be a list of at most 64 base64 strings")
    try:
        return [base64.b64decode(b, validate=True) for b in buffers if isinstance(b, str)] \
            if all(isinstance(b, str) for b in buffers) else _bad_buffers()
    except (binascii.Error, ValueError):
        _bad_buffers()


def _bad_buffers():
    raise FrameError(CLOSE_BAD_FRAME, "buffers must be base64 strings")


def kernel_frame(msg: KernelMessage) -> bytes:
    """The websocket text frame for a kernel message: raw parts, plus channel."""
    return b"".join((
        b'{"channel":', json.dumps(msg.channel).encode(),
        b',"msg_type":', json.dumps(msg.msg_type).encode(),
        b',"msg_id":', json.dumps(msg.header.get("msg_id", "")).encode(),
        b',"header":', msg.raw_header,
        b',"parent_header":', msg.raw_parent_header,
        b',"metadata":', msg.raw_metadata,
        b',"content":', msg.raw_content,
        *((b',"buffers":', json.dumps([base64.b64encode(b).decode("ascii") for b in msg.buffers]).encode())
          if msg.buffers else ()),
        b"}",
    ))


def _header(msg_type: str, session: str = "cellserver") -> dict[str, Any]:
    return {
        "msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "cellserver",
        "session": session, "version": "5.3",
        "date": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
    }


def server_frame(channel: str, msg_type: str, parent_header: dict, content: dict) -> bytes:
    """A message the cell server itself sends to the client (dead status, aborts, notices)."""
    header = _header(msg_type)
    return json.dumps({
        "channel": channel, "msg_type": msg_type, "msg_id": header["msg_id"], "header": header,
        "parent_header": parent_header, "metadata": {}, "content": content,
    }, separators=(",", ":")).encode()


def dead_status(reason: str) -> bytes:
    return server_frame("iopub", "status", {}, {"execution_state": "dead", "reason": reason})


def aborted_reply(parent_header: dict, reason: str) -> bytes:
    return server_frame("shell", "execute_reply", parent_header,
                        {"status": "aborted", "execution_count": None, "reason": reason})


def truncation_notice(parent_header: dict, limit: int) -> bytes:
    return server_frame("iopub", "stream", parent_header, {
        "name": "stderr",
        "text": f"\n[output truncated: this execution produced more than {limit} bytes of output; "
                f"the rest is not shown]\n",
    })


def interrupt_request() -> dict[str, Any]:
    return {"header": _header("interrupt_request"), "parent_header": {}, "metadata": {}, "content": {}}


def execute_request(code: str, user_expressions: dict | None = None) -> dict[str, Any]:
    return {"header": _header("execute_request"), "parent_header": {}, "metadata": {}, "content": {
        "code": code, "silent": False, "store_history": False, "allow_stdin": False,
        "user_expressions": user_expressions or {}, "stop_on_error": True}}
