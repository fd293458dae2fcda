"""The edge's head parser and framing decisions: strict, smuggling-proof."""
import pytest
from hypothesis import assume, given, strategies as st

from edgeproxy import httphead as H


def req(*lines, body=b""):
    return b"\r\n".join(lines) + b"\r\n\r\n"


def test_parses_request_with_repeated_headers_in_order():
    head = H.parse_request_head(req(b"POST /kernel?x=1 HTTP/1.1", b"Host: a", b"Cookie: a=1",
                                    b"Content-Length: 5", b"cookie: b=2"))
    assert (head.method, head.target, head.path, head.version) == (b"POST", b"/kernel?x=1", b"/kernel", 1)
    assert head.get_all(b"cookie") == [b"a=1", b"b=2"] and head.length == 5 and not head.chunked
    assert head.keep_alive


@pytest.mark.parametrize("raw, status", [
    (req(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: 3", b"Transfer-Encoding: chunked"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: 3", b"Content-Length: 4"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: -1"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Content-Length: 1e3"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Transfer-Encoding: gzip, chunked"), 501),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked, identity"), 501),
    (req(b"GET / HTTP/1.0", b"Transfer-Encoding: chunked"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Bad Header: x"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", b"Folded: x", b" continued"), 400),
    (req(b"GET / HTTP/1.1", b"Host : a"), 400),
    (req(b"GET / HTTP/1.1"), 400),                              # no Host
    (req(b"GET / HTTP/1.1", b"Host: a", b"Host: b"), 400),
    (req(b"GET / HTTP/2.0", b"Host: a"), 505),
    (req(b"GET  / HTTP/1.1", b"Host: a"), 400),
    (b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),          # bare LF
    (req(b"GET / HTTP/1.1", b"Host: a", b"X: a\x00b"), 400),
    (req(b"GET / HTTP/1.1", b"Host: a", *[b"X%d: y" % i for i in range(101)]), 431),
])
def test_rejects_ambiguous_or_malformed_heads(raw, status):
    with pytest.raises(H.HeadError) as e:
        H.parse_request_head(raw)
    assert e.value.status == status


def test_oversized_head_is_431():
    with pytest.raises(H.HeadError) as e:
        H.parse_request_head(req(b"GET / HTTP/1.1", b"Host: a", b"X: " + b"y" * H.MAX_HEAD))
    assert e.value.status == 431


def test_keep_alive_rules_and_websocket():
    assert not H.parse_request_head(req(b"GET / HTTP/1.0")).keep_alive
    assert H.parse_request_head(req(b"GET / HTTP/1.0", b"Connection: keep-alive")).keep_alive
    assert not H.parse_request_head(req(b"GET / HTTP/1.1", b"Host: a", b"Connection: close")).keep_alive
    ws = H.parse_request_head(req(b"GET /k HTTP/1.1", b"Host: a", b"Connection: keep-alive, Upgrade",
                                  b"Upgrade: WebSocket"))
    assert ws.is_websocket


def test_hop_by_hop_headers_are_dropped_including_those_named_in_connection():
    headers = [(b"connection", b"close, x-secret"), (b"keep-alive", b"5"), (b"x-secret", b"1"),
               (b"te", b"trailers"), (b"cookie", b"a"), (b"cookie", b"b"), (b"transfer-encoding", b"chunked")]
    assert H.forward_headers(headers) == [(b"cookie", b"a"), (b"cookie", b"b")]


def test_response_framing():
    r = H.parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    assert (r.status, r.length) == (200, 3)
    assert not H.response_has_body(b"HEAD", 200) and not H.response_has_body(b"GET", 304)
    with pytest.raises(H.HeadError):
        H.parse_response_head(b"HTTP/1.1 2000 OK\r\n\r\n")


def chunked(parts, trailer=b""):
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n" + trailer + b"\r\n"


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.binary(max_size=50),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20))
def test_chunked_tracker_finds_the_end_however_the_bytes_are_split(parts, after, cuts):
    body = chunked(parts)
    stream = body + after
    tracker = H.ChunkedTracker()
    consumed, i, k = 0, 0, 0
    while i < len(stream) and not tracker.done:
        piece = stream[i:i + cuts[k % len(cuts)]]
        k += 1
        n = tracker.feed(piece)
        consumed += n
        i += len(piece)
        if tracker.done:
            break
    assert tracker.done and consumed == len(body)


@pytest.mark.parametrize("bad", [b"zz\r\nabc\r\n", b"3\r\nabcd\r\n", b"3\nabc\r\n", b"-1\r\n",
                                 b"ffffffffffffffffff\r\n"])
def test_chunked_tracker_rejects_malformed_bodies(bad):
    with pytest.raises(H.ChunkedError):
        H.ChunkedTracker().feed(bad)


def test_chunked_trailers_and_extensions():
    t = H.ChunkedTracker()
    data = b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT"
    assert t.feed(data) == len(data) - 4 and t.done


@given(st.binary(max_size=400))
def test_parser_only_raises_head_errors(data):
    try:
        H.parse_request_head(data + b"\r\n\r\n")
    except H.HeadError:
        pass


def test_head_end_and_bare_lf():
    assert H.find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nnext") == 27
    assert H.find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n") == -1          # not yet
    assert H.find_head_end(b"GET / HTTP/1.1\r\n\r\nbody\n with LF") == 18   # a body may hold LFs
    for bad in (b"GET / HTTP/1.1\nHost: a\n\n", b"GET / HTTP/1.1\r\nAccept: x\n\r\n", b"\nGET"):
        with pytest.raises(H.HeadError) as e:
            H.find_head_end(bad)
        assert e.value.status == 400 and "bare LF" in e.value.message


@given(st.binary(max_size=300))
def test_head_end_only_raises_head_errors(data):
    try:
        end = H.find_head_end(data)
    except H.HeadError:
        return
    assert end == -1 or data[:end].endswith(b"\r\n\r\n")


def slow_fields(data: bytes):
    """The line-by-line reading of the fields after the first line, or None if it refuses them."""
    try:
        return H._parse_fields(H._lines(data)[1:])
    except H.HeadError:
        return None


# Names and values drawn from the characters that decide: token and non-token
# bytes, blanks, controls (tab is allowed in values), CR, LF, high bytes.
NAME_BYTES = st.sampled_from([b"a", b"Z", b"-", b"!", b"~", b"1", b" ", b"\t", b":", b"(", b"\x80", b"\r", b"\n"])
VALUE_BYTES = st.sampled_from([b"x", b" ", b"\t", b":", b"\x00", b"\x01", b"\x1f", b"\x7f", b"\x80", b"\xff",
                               b"\r", b"\n", b"\r\n", b"\x0b", b"\"", b","])


@given(st.lists(st.tuples(st.lists(NAME_BYTES, max_size=4).map(b"".join),
                          st.lists(VALUE_BYTES, max_size=8).map(b"".join)), max_size=6))
def test_the_one_pass_field_reading_agrees_with_the_line_by_line_one(fields):
    data = b"GET / HTTP/1.1\r\n" + b"".join(n + b":" + v + b"\r\n" for n, v in fields) + b"\r\n"
    assume(data.find(b"\r\n\r\n") == len(data) - 4)     # a head as find_head_end cuts it
    start = data.index(b"\r\n") + 2
    assert H._fast_fields(data, start) == slow_fields(data)


def test_well_formed_heads_take_the_one_pass_way_and_blank_runs_cost_linear_time():
    head = req(b"GET /x?y HTTP/1.1", b"Host: a", b"Accept:  text/html, */*  ", b"X-E:", b"X-Tab:\tv\tw\t")
    assert H._fast_fields(head, head.index(b"\r\n") + 2) == [
        (b"host", b"a"), (b"accept", b"text/html, */*"), (b"x-e", b""), (b"x-tab", b"v\tw")]
    for value in (b" " * 15000 + b"\x01", b"\t " * 7000 + b"x\x01", b"x " * 7000 + b"\x01"):
        with pytest.raises(H.HeadError):     # quadratic backtracking here would take seconds
            H.parse_request_head(req(b"GET / HTTP/1.1", b"Host: a", b"X: " + value))
