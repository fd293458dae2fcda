"""The provider pipe protocol codec (pure)."""
from __future__ import annotations

import os
import signal

import pytest
from hypothesis import given, strategies as st

from cellserver.provider import protocol as P


def test_round_trip_commands_and_events():
    for msg in (P.Start(kid="c1-" + "a" * 32, key="ab" * 32, sock_dir="/tmp/s", work_dir="/tmp/w"),
                P.Kill(kid="k"), P.Quit()):
        assert P.decode_command(P.encode(msg)) == msg
    for ev in (P.Hello(pid=3, python="/usr/bin/python3", warm_ms=12.5, preloaded=("numpy",),
                       failed={"nope": "ModuleNotFoundError: nope"}, huge_mb=48.0),
               P.Started(kid="k", pid=7, fork_ms=0.4), P.StartFailed(kid="k", error="x"),
               P.Exited(kid="k", pid=7, code=None, signal=9, reason="killed by signal 9 (SIGKILL)"),
               P.ProviderError(message="m")):
        assert P.decode_event(P.encode(ev)) == ev


def test_encoded_line_is_one_json_object_with_op_first():
    line = P.encode(P.Kill(kid="k"))
    assert line == b'{"op":"kill","kid":"k"}\n'


@given(st.text(max_size=200), st.text(max_size=200))
def test_any_text_survives(kid, path):
    msg = P.Start(kid=kid, key="00", sock_dir=path, work_dir=path)
    assert P.decode_command(P.encode(msg)) == msg


@pytest.mark.parametrize("line, why", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"kid": "k"}', "unknown op None"),
    (b'{"op": "explode"}', "unknown op 'explode'"),
    (b'{"op": "kill"}', "kill: missing kid"),
    (b'{"op": "kill", "kid": "k", "extra": 1}', "unknown fields extra"),
    (b'{"op": "kill", "kid": 5}', "field kid has the wrong type"),
    (b'{"op": "start", "kid": "k", "key": "00", "sock_dir": "/s"}', "missing work_dir"),
    (b'\xff\xfe', "not JSON"),
])
def test_bad_commands_are_refused_with_a_reason(line, why):
    with pytest.raises(P.ProtocolError, match=why.replace("(", r"\(").replace(")", r"\)")):
        P.decode_command(line)


def test_events_and_commands_are_separate_tables():
    with pytest.raises(P.ProtocolError):
        P.decode_command(P.encode(P.Started(kid="k", pid=1, fork_ms=1.0)))
    with pytest.raises(P.ProtocolError):
        P.decode_event(P.encode(P.Quit()))


def test_bool_is_not_an_int():
    with pytest.raises(P.ProtocolError, match="wrong type"):
        P.decode_event(b'{"op":"started","kid":"k","pid":true,"fork_ms":1}')


def test_line_buffer_joins_chunks_and_skips_blank_lines():
    buf = P.LineBuffer()
    assert buf.feed(b'{"op":"qu') == []
    assert buf.feed(b'it"}\n\n{"op":"kill","kid":"a"}\n{"op"') == [b'{"op":"quit"}', b'{"op":"kill","kid":"a"}']
    assert buf.feed(b':"quit"}\n') == [b'{"op":"quit"}']


def test_line_buffer_refuses_overlong_lines_and_recovers():
    buf = P.LineBuffer(max_line=10)
    with pytest.raises(P.ProtocolError, match="longer than 10"):
        buf.feed(b"x" * 11)
    assert buf.feed(b"ok\n") == [b"ok"]
    with pytest.raises(P.ProtocolError):
        buf.feed(b"y" * 20 + b"\n")


def test_encode_refuses_huge_messages():
    with pytest.raises(P.ProtocolError, match="too long"):
        P.encode(P.ProviderError(message="x" * (P.MAX_LINE + 1)))


def test_describe_status():
    assert P.describe_status(0) == (0, None, "exited with code 0")
    assert P.describe_status(3 << 8) == (3, None, "exited with code 3")
    assert P.describe_status(signal.SIGKILL) == (None, 9, "killed by signal 9 (SIGKILL)")
    assert P.describe_status(signal.SIGSEGV) == (None, 11, "killed by signal 11 (SIGSEGV)")
    assert os.WIFSIGNALED(signal.SIGKILL)
    assert P.describe_signal(200) == "killed by signal 200 (unknown signal)"
