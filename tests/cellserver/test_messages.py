"""Client frame validation and kernel frame building (cellserver.messages)."""
import json

import pytest
from hypothesis import given, strategies as st

from cellserver import messages as M
from cellserver.kernels import KernelMessage


def frame(**over):
    f = {"channel": "shell", "header": {"msg_id": "m1", "msg_type": "execute_request"},
         "parent_header": {}, "metadata": {}, "content": {"code": "1+1"}}
    f.update(over)
    return json.dumps(f)


def test_valid_execute_is_passed_with_stdin_off():
    channel, msg = M.parse_client_frame(frame(), max_code=100)
    assert channel == "shell"
    assert msg["header"]["msg_id"] == "m1"
    assert msg["content"] == {"code": "1+1", "allow_stdin": False}


@pytest.mark.parametrize("payload, code, words", [
    ("{nope", M.CLOSE_BAD_FRAME, "not valid JSON"),
    ("[1]", M.CLOSE_BAD_FRAME, "JSON object"),
    (frame(channel="stdin"), M.CLOSE_BAD_FRAME, "unknown channel"),
    (frame(channel=None), M.CLOSE_BAD_FRAME, "unknown channel"),
    (frame(header=None), M.CLOSE_BAD_FRAME, "no header"),
    (frame(header={"msg_type": "execute_request"}), M.CLOSE_BAD_FRAME, "msg_id"),
    (frame(header={"msg_id": "x", "msg_type": "shutdown_request"}), M.CLOSE_BAD_FRAME, "not accepted"),
    (frame(channel="control", header={"msg_id": "x", "msg_type": "execute_request"}), M.CLOSE_BAD_FRAME, "not accepted"),
    (frame(content=[]), M.CLOSE_BAD_FRAME, "content"),
    (frame(content={}), M.CLOSE_BAD_FRAME, "content.code"),
    (frame(metadata=3), M.CLOSE_BAD_FRAME, "metadata"),
    (frame(content={"code": "x" * 101}), M.CLOSE_LIMIT, "limit is 100"),
    (b"\xff\xfe", M.CLOSE_BAD_FRAME, "not valid JSON"),
    (frame(content={"code": "1", "n": float("inf")}), M.CLOSE_BAD_FRAME, "Infinity is not a JSON value"),
    (frame(metadata={"x": float("nan")}), M.CLOSE_BAD_FRAME, "NaN is not a JSON value"),
    # headers the kernel would drop unanswered (an evaluation that never begins blocks every later one)
    (frame(header={"msg_id": "x", "msg_type": "execute_request", "version": 0}), M.CLOSE_BAD_FRAME, "version"),
    (frame(header={"msg_id": "x", "msg_type": "execute_request", "version": "five"}), M.CLOSE_BAD_FRAME, "version"),
    (frame(header={"msg_id": "x", "msg_type": "execute_request", "date": "2026-02-30T10:00:00Z"}),
     M.CLOSE_BAD_FRAME, "date"),
    (frame(parent_header={"date": "2026-13-01T10:00:00Z"}), M.CLOSE_BAD_FRAME, "parent_header holds a date"),
    (frame(header={"msg_id": "x", "msg_type": "execute_request", "session": {"a": 1}}), M.CLOSE_BAD_FRAME,
     "header.session must be a string"),
    (frame(header={"msg_id": "x", "msg_type": "execute_request", "date": [""]}), M.CLOSE_BAD_FRAME, "header.date"),
])
def test_bad_frames_say_what_is_wrong(payload, code, words):
    with pytest.raises(M.FrameError) as e:
        M.parse_client_frame(payload, max_code=100)
    assert e.value.code == code and words in e.value.reason


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_garbage_only_ever_raises_frame_error(data):
    try:
        M.parse_client_frame(data, max_code=100)
    except M.FrameError:
        pass


HEADER_VALUES = st.one_of(
    st.text(max_size=12), st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["5.3", "4.1", "5", "x.y", "2026-01-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-01-01"]))


@given(st.dictionaries(st.sampled_from(["session", "username", "date", "version", "subshell_id", "x"]),
                       HEADER_VALUES, max_size=5),
       st.dictionaries(st.sampled_from(["msg_id", "date", "version"]), HEADER_VALUES, max_size=3))
def test_what_is_accepted_the_kernel_can_read(extra, parent):
    """Whatever passes validation goes through the kernel's own reading of a
    message (jupyter_client's Session.deserialize, as ipykernel calls it)
    and can key ipykernel's output buffers (frozenset of the header's items)."""
    from jupyter_client.session import Session

    header = {**extra, "msg_id": "m1", "msg_type": "execute_request"}
    try:
        _, msg = M.parse_client_frame(frame(header=header, parent_header=parent), max_code=100)
    except M.FrameError:
        return
    session = Session(key=b"k" * 32)
    idents, parts = session.feed_identities(session.serialize(msg))
    read = session.deserialize(parts, content=True)
    assert read["header"]["msg_id"] == "m1" and read["content"]["code"] == "1+1"
    frozenset(read["header"].items())


def test_kernel_frame_keeps_raw_parts():
    raw_parent = b'{"msg_id": "m1", "date": "2026-01-01T00:00:00.000001Z"}'
    msg = KernelMessage("iopub", {"msg_id": "k1", "msg_type": "stream"}, {"msg_id": "m1"},
                        b'{"msg_id":"k1","msg_type":"stream"}', raw_parent, b"{}", b'{"name":"stdout","text":"2\\n"}')
    data = M.kernel_frame(msg)
    out = json.loads(data)
    assert out["channel"] == "iopub" and out["msg_type"] == "stream" and out["msg_id"] == "k1"
    assert out["content"]["text"] == "2\n"
    assert raw_parent in data  # byte-for-byte, date format untouched


def test_server_frames():
    dead = json.loads(M.dead_status("idle timeout"))
    assert dead["content"] == {"execution_state": "dead", "reason": "idle timeout"}
    ab = json.loads(M.aborted_reply({"msg_id": "m9"}, "superseded"))
    assert ab["parent_header"]["msg_id"] == "m9" and ab["content"]["status"] == "aborted"


def test_binary_buffers_travel_as_base64_both_ways():
    f = json.loads(frame(header={"msg_id": "c", "msg_type": "comm_msg"}, content={"comm_id": "x", "data": {}}))
    f["buffers"] = ["AAEC", "/w=="]
    channel, msg = M.parse_client_frame(json.dumps(f), max_code=100)
    assert msg["buffers"] == [b"\x00\x01\x02", b"\xff"]
    for bad in (["not base64!"], [1], "AAEC", ["A"] * 65):
        f["buffers"] = bad
        with pytest.raises(M.FrameError):
            M.parse_client_frame(json.dumps(f), max_code=100)
    msg = KernelMessage("iopub", {"msg_id": "k", "msg_type": "comm_msg"}, {}, b"{}", b"{}", b"{}", b"{}",
                        buffers=(b"\x89PNG",))
    assert json.loads(M.kernel_frame(msg))["buffers"] == ["iVBORw=="]
