"""Verifying and splitting kernel messages (``cellserver.kernelconn.parse_frames``)."""
from __future__ import annotations

import json

from jupyter_client.session import DELIM, Session

from cellserver.kernelconn import parse_frames

KEY = b"0123456789abcdef"


def signed(session, header=b'{"msg_id":"m1","msg_type":"stream"}', parent=b'{"msg_id":"p1"}',
           metadata=b"{}", content=b'{"name":"stdout","text":"2\\n"}', prefix=(b"topic",), extra=()):
    parts = [header, parent, metadata, content]
    return [*prefix, DELIM, session.sign(parts), *parts, *extra]


def test_good_message_keeps_raw_parts():
    s = Session(key=KEY)
    raw_content = b'{"text": "2\\n",   "name":"stdout"}'        # odd spacing kept as is
    msg = parse_frames(s, "iopub", signed(s, content=raw_content, extra=(b"buf",)))
    assert msg.channel == "iopub" and msg.msg_type == "stream" and msg.parent_msg_id == "p1"
    assert msg.raw_content == raw_content and msg.buffers == (b"buf",)
    assert msg.content() == {"text": "2\n", "name": "stdout"}
    assert msg.size == sum(len(x) for x in (msg.raw_header, msg.raw_parent_header,
                                            msg.raw_metadata, raw_content, b"buf"))


def test_message_signed_with_another_key_is_refused():
    other = Session(key=b"another key")
    assert parse_frames(Session(key=KEY), "shell", signed(other)) == "bad signature"


def test_tampered_content_is_refused():
    s = Session(key=KEY)
    frames = signed(s)
    frames[-1] = b'{"name":"stdout","text":"evil"}'
    assert parse_frames(s, "iopub", frames) == "bad signature"


def test_unsigned_session_accepts_nothing():
    assert parse_frames(Session(key=b""), "iopub", signed(Session(key=b""))) == "bad signature"


def test_malformed_multipart_messages():
    s = Session(key=KEY)
    assert parse_frames(s, "iopub", [b"a", b"b"]) == "no delimiter"
    assert "expected at least 5" in parse_frames(s, "iopub", [DELIM, b"sig", b"{}"])
    bad_json = signed(s, header=b"not json")
    assert parse_frames(s, "shell", bad_json) == "header or parent header is not JSON"
    not_obj = signed(s, parent=b"[1]")
    assert parse_frames(s, "shell", not_obj) == "header or parent header is not an object"


def test_our_signing_matches_jupyter_client():
    # What ZmqKernel.send puts on the wire is what Session.deserialize accepts.
    s = Session(key=KEY)
    msg = s.msg("execute_request", {"code": "1+1"})
    parts = [s.pack(msg["header"]), s.pack({}), s.pack({}), s.pack(msg["content"])]
    wire = [s.sign(parts), *parts]
    back = s.deserialize(wire)
    assert back["header"]["msg_id"] == msg["header"]["msg_id"]
    assert json.loads(parts[3]) == {"code": "1+1"}
