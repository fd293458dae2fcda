import gzip
import struct

from hypothesis import given, strategies as st

from edgeproxy.static import StaticFiles
from edgeproxy.wsframes import FrameTracker, close_frame


def frame(payload: bytes, mask: bool = False) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([0x81, n | (0x80 if mask else 0)])
    elif n < 65536:
        head = bytes([0x81, 126 | (0x80 if mask else 0)]) + struct.pack("!H", n)
    else:
        head = bytes([0x81, 127 | (0x80 if mask else 0)]) + struct.pack("!Q", n)
    return head + (b"abcd" if mask else b"") + payload


@given(st.lists(st.integers(min_value=0, max_value=70000), min_size=1, max_size=4), st.integers(1, 5000))
def test_tracker_is_at_boundary_only_between_frames(sizes, step):
    stream = b"".join(frame(b"x" * n) for n in sizes)
    ends = set()
    pos = 0
    for n in sizes:
        pos += len(frame(b"x" * n))
        ends.add(pos)
    t = FrameTracker()
    for i in range(0, len(stream), step):
        t.feed(stream[i:i + step])
        upto = min(i + step, len(stream))
        assert t.at_boundary == (upto in ends)


def test_close_frame():
    f = close_frame(4502, "kernel server lost")
    assert f[0] == 0x88 and f[1] == len(f) - 2 and struct.unpack("!H", f[2:4])[0] == 4502


def test_static_etag_304_gzip_and_no_escape(tmp_path):
    (tmp_path / "app.js").write_text("var x = 1;\n" * 500)
    (tmp_path / "embedded_sagecell.js").write_text("sagecell = {};")
    s = StaticFiles(str(tmp_path))
    status, headers, body = s.answer(b"GET", b"/static/app.js", None, b"gzip, br")
    h = dict(headers)
    assert status == 200 and h[b"content-encoding"] == b"gzip" and gzip.decompress(body) == b"var x = 1;\n" * 500
    assert b"max-age" in h[b"cache-control"]
    status, _, body = s.answer(b"GET", b"/static/app.js", h[b"etag"], None)
    assert status == 304 and body == b""
    assert s.answer(b"GET", b"/embedded_sagecell.js", None, None)[0] == 200
    for bad in (b"/static/../../etc/passwd", b"/static/%2e%2e/x", b"/static/nope", b"/static/"):
        assert s.answer(b"GET", bad, None, None)[0] == 404
    assert s.answer(b"POST", b"/static/app.js", None, None)[0] == 405
