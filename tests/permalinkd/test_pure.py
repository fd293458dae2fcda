"""Pure logic: ids, the z codec, validation, Sentinel message parsing."""
from __future__ import annotations

import base64
import json
import zlib

import pytest
from hypothesis import given, strategies as st

from permalinkd import ids, zcodec
from permalinkd.cache import SizedLRU
from permalinkd.sentinel import parse_replicas, parse_switch_master
from permalinkd.validation import InputError, is_valid_callback, parse_create, parse_lookup

LANGS = ("sage", "python")


def args(**kw):
    return {k.encode(): [v if isinstance(v, bytes) else v.encode()] for k, v in kw.items()}


# --- ids ------------------------------------------------------------------------

def test_digest_is_deterministic_and_content_derived():
    a = ids.digest("print(1)", "python", "[]")
    assert a == ids.digest("print(1)", "python", "[]")
    assert a != ids.digest("print(1)", "sage", "[]")
    assert a != ids.digest("print(1)", "python", "[1]")
    assert a != ids.digest("print(2)", "python", "[]")
    assert len(a) == ids.MAX_LENGTH and ids.is_valid_id(a)


def test_digest_fields_do_not_run_together():
    # Length-prefixed parts: moving text between fields changes the digest.
    assert ids.digest("ab", "c", "") != ids.digest("b", "ca", "")


def test_candidates_lengthen_from_the_minimum():
    full = ids.digest("x", "sage", "[]")
    c = list(ids.candidates(full))
    assert c[0] == full[:ids.MIN_LENGTH] and c[-1] == full
    assert [len(x) for x in c] == list(range(ids.MIN_LENGTH, ids.MAX_LENGTH + 1))


@pytest.mark.parametrize("text,ok", [("abcdEFGH_-", True), ("abc", False), ("a" * 44, False),
                                     ("abcdefghi!", False), ("abcdefghij\n", False), ("", False)])
def test_id_syntax(text, ok):
    assert ids.is_valid_id(text) is ok


# --- z codec --------------------------------------------------------------------

@given(st.text(max_size=2000))
def test_z_round_trip(code):
    z = zcodec.encode(code)
    assert zcodec.decode(z) == code
    assert zcodec.decode(z.rstrip("=")) == code


def test_z_matches_the_documented_formula():
    code = "plot(sin(x))"
    assert zcodec.encode(code) == base64.urlsafe_b64encode(zlib.compress(code.encode())).decode()


@pytest.mark.parametrize("bad", ["!!!", "abc$", base64.urlsafe_b64encode(b"not zlib").decode(),
                                 base64.urlsafe_b64encode(zlib.compress(b"\xff\xfe")).decode(),
                                 base64.urlsafe_b64encode(zlib.compress(b"abc")[:-3]).decode()])
def test_z_rejects_garbage(bad):
    with pytest.raises(zcodec.ZError):
        zcodec.decode(bad)


def test_z_bomb_is_bounded():
    bomb = base64.urlsafe_b64encode(zlib.compress(b"a" * 10_000_000)).decode()
    with pytest.raises(zcodec.ZError, match="more than"):
        zcodec.decode(bomb, max_chars=65_000)


# --- validation ----------------------------------------------------------------

def test_create_defaults_and_echo_n():
    r = parse_create(args(code="1+1", n="7"), LANGS, 100)
    assert (r.cell.code, r.cell.language, r.cell.interacts, r.n) == ("1+1", "sage", "[]", 7)


@pytest.mark.parametrize("kw,status,code", [
    ({}, 400, "missing-code"),
    ({"code": "x" * 101}, 413, "code-too-long"),
    ({"code": b"\xff\xfe"}, 400, "bad-encoding"),
    ({"code": "x", "language": "cobol"}, 400, "unknown-language"),
    ({"code": "x", "interacts": "[1,"}, 400, "bad-interacts"),
    ({"code": "x", "interacts": "{'a': 1}"}, 400, "bad-interacts"),
    # Python's json takes these; JSON and the browser's JSON.parse do not.
    ({"code": "x", "interacts": "NaN"}, 400, "bad-interacts"),
    ({"code": "x", "interacts": "[1, Infinity]"}, 400, "bad-interacts"),
    ({"code": "x", "interacts": '{"a": -Infinity}'}, 400, "bad-interacts"),
    ({"code": "x", "interacts": '[{"x": [NaN]}]'}, 400, "bad-interacts"),
    ({"code": "x", "interacts": "[" * 100_000}, 413, "interacts-too-long"),
    ({"code": "x", "n": "seven"}, 400, "bad-n"),
    ({"code": "x", "n": "1" * 30}, 400, "bad-n"),
])
def test_create_rejects(kw, status, code):
    with pytest.raises(InputError) as e:
        parse_create(args(**kw), LANGS, 100)
    assert (e.value.status, e.value.code) == (status, code)
    assert e.value.message


def test_code_limit_counts_characters_not_bytes():
    r = parse_create(args(code="é" * 100), LANGS, 100)
    assert len(r.cell.code) == 100


def test_deeply_nested_interacts_is_a_clear_error_not_a_crash():
    with pytest.raises(InputError) as e:
        parse_create(args(code="x", interacts="[" * 50_000 + "]" * 50_000), LANGS, 100)
    assert e.value.status in (400, 413)


@pytest.mark.parametrize("kw,code", [({}, "missing-q"), ({"q": "short"}, "bad-id"), ({"q": "a/b/../cdefgh"}, "bad-id"),
                                     ({"q": "abcdefghij", "callback": "alert(1)"}, "bad-callback"),
                                     ({"q": "abcdefghij", "callback": "a;b"}, "bad-callback"),
                                     ({"q": "abcdefghij", "callback": "function"}, "bad-callback"),
                                     ({"q": "a" * 300}, "bad-id"),
                                     ({"q": "abcdefghij", "callback": "a" * 600}, "bad-callback")])
def test_lookup_rejects(kw, code):
    with pytest.raises(InputError) as e:
        parse_lookup(args(**kw))
    assert e.value.status == 400 and e.value.code == code


def test_lookup_accepts_id_and_callback():
    assert parse_lookup(args(q="abcdefghij", callback="jQuery123_456.cb")) == ("abcdefghij", "jQuery123_456.cb")
    assert parse_lookup(args(q="abcdefghij")) == ("abcdefghij", None)


@pytest.mark.parametrize("name,ok", [("cb", True), ("$.x", True), ("a.b.c", True), ("1a", False),
                                     ("a..b", False), ("a-b", False), ("x" * 70, False), ("a.new", False)])
def test_callback_names(name, ok):
    assert is_valid_callback(name) is ok


# --- Sentinel messages ----------------------------------------------------------

def test_switch_master_parsing():
    assert parse_switch_master("cellstack 127.0.0.1 6391 127.0.0.1 6392", "cellstack") == ("127.0.0.1", 6392)
    assert parse_switch_master("other 127.0.0.1 6391 127.0.0.1 6392", "cellstack") is None
    assert parse_switch_master("garbage", "cellstack") is None
    assert parse_switch_master("cellstack a 1 b x", "cellstack") is None


def test_replicas_parsing_skips_down_ones():
    reply = [["name", "r1", "ip", "127.0.0.1", "port", "7001", "flags", "slave", "master-link-status", "ok"],
             ["name", "r2", "ip", "127.0.0.1", "port", "7002", "flags", "s_down,slave", "master-link-status", "ok"],
             ["name", "r3", "ip", "127.0.0.1", "port", "7003", "flags", "slave", "master-link-status", "err"]]
    # r3 lost its primary but still serves reads: kept.
    assert parse_replicas(reply) == [("127.0.0.1", 7001), ("127.0.0.1", 7003)]


# --- the cache of (immutable) permalinks -----------------------------------------

def test_lru_is_bounded_by_size_and_evicts_least_recent():
    c = SizedLRU(100)
    c.put("a", "A", 40)
    c.put("b", "B", 40)
    assert c.get("a") == "A"          # a is now the most recent
    c.put("c", "C", 40)               # over 100: evicts b
    assert c.get("b") is None and c.get("a") == "A" and c.get("c") == "C"
    assert c.size == 80 and len(c) == 2
    c.put("huge", "H", 101)           # larger than the whole cache: not kept
    assert c.get("huge") is None and c.size == 80
    c.put("a", "A2", 10)              # replacing adjusts the size
    assert c.get("a") == "A2" and c.size == 50


# --- the Sentinel watcher's reaction to +switch-master (no connections: no Sentinels given) ---

def test_switch_master_message_moves_the_primary_at_once():
    from twisted.internet.task import Clock

    from permalinkd.sentinel import SentinelWatcher

    seen, switches = [], []
    w = SentinelWatcher(Clock(), [], "cellstack", None, on_primary=lambda h, p: seen.append((h, p)),
                        on_replicas=lambda r: None, on_switch=lambda: switches.append(1))
    w.switch_message("other 127.0.0.1 1 127.0.0.1 2")
    w.switch_message("cellstack 127.0.0.1 6391 127.0.0.1 6392")
    w.switch_message("cellstack nonsense")
    assert seen == [("127.0.0.1", 6392)] and switches == [1]


def test_watcher_refreshes_on_its_clock():
    from twisted.internet.task import Clock

    from permalinkd.sentinel import SentinelWatcher

    clock = Clock()
    w = SentinelWatcher(clock, [], "cellstack", None, on_primary=lambda h, p: None,
                        on_replicas=lambda r: None, refresh=2.0)
    calls = []
    w.refresh_now = lambda: calls.append(clock.seconds())
    w._loop.f = w.refresh_now
    w.start()
    clock.advance(2.0)
    clock.advance(2.0)
    assert calls == [0.0, 2.0, 4.0]
    w.stop()


def test_watcher_asks_again_soon_until_a_sentinel_answers():
    """The first refresh runs before any Sentinel connection is up: a long refresh
    interval must not leave permalinkd without a primary for that long."""
    from twisted.internet.task import Clock

    from permalinkd.sentinel import SentinelWatcher

    clock = Clock()
    seen = []
    w = SentinelWatcher(clock, [], "cellstack", None, on_primary=lambda h, p: seen.append((h, p)),
                        on_replicas=lambda r: None, refresh=3600.0)
    answers = iter([False, False, True])
    asked = []

    async def refresh_once():
        asked.append(clock.seconds())
        return next(answers)
    w.refresh_once = refresh_once
    w.start()
    for _ in range(10):
        clock.advance(w.RETRY)
    assert asked == [0.0, w.RETRY, 2 * w.RETRY]     # then the hourly refresh only
    clock.advance(3600)
    assert len(asked) == 4
    w.stop()


def test_watcher_asks_again_soon_after_a_refresh_that_raised():
    """A refresh that raises (not just one no Sentinel answered) is retried every
    RETRY seconds too, not only at the next (here hourly) refresh."""
    from twisted.internet.task import Clock
    from twisted.logger import globalLogPublisher

    from permalinkd.sentinel import SentinelWatcher

    clock = Clock()
    w = SentinelWatcher(clock, [], "cellstack", None, on_primary=lambda h, p: None,
                        on_replicas=lambda r: None, refresh=3600.0)
    answers = iter([RuntimeError("boom"), RuntimeError("again"), True])
    asked, logged = [], []

    async def refresh_once():
        asked.append(clock.seconds())
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer
    w.refresh_once = refresh_once

    def observer(event):
        if event.get("log_failure") is not None:
            logged.append(event)
    globalLogPublisher.addObserver(observer)
    try:
        w.start()
        for _ in range(10):
            clock.advance(w.RETRY)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert asked == [0.0, w.RETRY, 2 * w.RETRY]     # then the hourly refresh only
    assert [str(e["log_failure"].value) for e in logged] == ["boom", "again"]
    assert w._loop.running                          # the refresh loop survived the errors
    clock.advance(3600)
    assert len(asked) == 4
    w.stop()


# --- whatever arrives, validation answers with a cell or an InputError, nothing else ---

# JSON-ish values too, so interacts often parses (or nearly: NaN, Infinity).
_json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8).map(lambda v: json.dumps(v).encode())
_arg_values = st.lists(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
                       | _json_ish, min_size=1, max_size=3)
_args = st.dictionaries(st.sampled_from([b"code", b"language", b"interacts", b"n", b"q", b"callback", b"x"]),
                        _arg_values, max_size=6)


def _strict_json(text: str):
    """JSON as a browser's JSON.parse reads it: no NaN / Infinity."""
    def refuse(name):
        raise ValueError(name)
    return json.loads(text, parse_constant=refuse)


@given(_args)
def test_any_create_arguments_give_a_cell_or_a_clear_error(args):
    try:
        req = parse_create(args, LANGS, 200)
    except InputError as e:
        assert 400 <= e.status < 500 and e.code and e.message
        return
    # What would be stored loads back: UTF-8 text, strict-JSON interacts, a known language.
    req.cell.code.encode("utf-8")
    _strict_json(req.cell.interacts)
    assert req.cell.language in LANGS and len(req.cell.code) <= 200


@given(_json_ish)
def test_interacts_is_accepted_exactly_when_it_is_strict_json(interacts):
    """Validation and the browser agree: what parses strictly is stored, the rest (NaN...) is a 400."""
    try:
        _strict_json(interacts.decode())
        strict = True
    except ValueError:
        strict = False
    try:
        parse_create({b"code": [b"x"], b"interacts": [interacts]}, LANGS, 200)
        accepted = True
    except InputError as e:
        assert (e.status, e.code) == (400, "bad-interacts")
        accepted = False
    assert accepted is strict


@given(_args)
def test_any_lookup_arguments_give_an_id_or_a_clear_error(args):
    try:
        pid, callback = parse_lookup(args)
    except InputError as e:
        assert e.status == 400 and e.code
        return
    assert ids.is_valid_id(pid) and (callback is None or is_valid_callback(callback))
