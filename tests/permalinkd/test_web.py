"""HTTP handlers through treq's StubTreq against a real redis-server.

The resource tree is the one makeService serves (``permalinkd.tap.build``);
StubTreq runs real HTTP requests in memory, Redis is a real process.
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import reactor, task
from twisted.python.failure import Failure

from deploy import rediscluster
from deploy.clientip import parse_networks
from deploy.jsonlines import MemoryLines
from permalinkd import ids, zcodec
from permalinkd.settings import PermalinkSettings
from permalinkd.store import KEY_PREFIX
from permalinkd.tap import build
from tests.permalinkd.conftest import PASSWORD

pytestmark = pytest.mark.integration
BASE = "http://permalinkd.test"
FORM = {b"Content-Type": [b"application/x-www-form-urlencoded"]}


class App:
    def __init__(self, port, **overrides):
        settings = PermalinkSettings(redis=("127.0.0.1", port), password=PASSWORD, wait_replicas=0,
                                     trusted_proxies=parse_networks(["127.0.0.1"]), max_code=1000, **overrides)
        self.port = port
        self.sink = MemoryLines()
        self.store, _, self.metrics, root = build(settings, reactor, sink=self.sink)
        self.store.set_primary("127.0.0.1", port)
        self.stub = StubTreq(root)

    async def ready(self):
        for _ in range(200):
            if self.store.primary.connected:
                return
            await task.deferLater(reactor, 0.01)
        raise AssertionError("no Redis connection")

    async def settle(self, d):
        """Pump StubTreq's in-memory connection while Redis answers on the real reactor."""
        box = []
        d.addBoth(box.append)
        for _ in range(2500):
            self.stub.flush()
            if box:
                break
            await task.deferLater(reactor, 0.002)
        assert box, "no response within 5 s"
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    async def call(self, d):
        response = await self.settle(d)
        body = await self.settle(response.content())
        return response, body

    async def post(self, data, headers=None, raw=None):
        body = raw if raw is not None else urlencode(data).encode()
        return await self.call(self.stub.post(BASE + "/permalink", data=body, headers={**FORM, **(headers or {})}))

    async def get(self, query: dict | str, headers=None):
        qs = query if isinstance(query, str) else urlencode(query)
        return await self.call(self.stub.get(BASE + "/permalink?" + qs, headers=headers or {}))




@pytest.fixture
def app(redis_single):
    a = App(redis_single)
    yield a
    pytest_twisted.blockon(a.store.close())


def jbody(body):
    return json.loads(body)


@pytest_twisted.ensureDeferred
async def test_create_and_read_back(app):
    await app.ready()
    r, body = await app.post({"code": "print('hé')", "language": "python", "interacts": '[{"x": 1}]', "n": "5"})
    assert r.code == 200, body
    out = jbody(body)
    assert out["n"] == 5 and ids.is_valid_id(out["query"]) and len(out["query"]) == ids.MIN_LENGTH
    assert zcodec.decode(out["zip"]) == "print('hé')"
    assert zcodec.decode(out["interacts"]) == '[{"x": 1}]'
    r, body = await app.get({"q": out["query"]})
    assert r.code == 200 and jbody(body) == ["print('hé')", "python", '[{"x": 1}]']
    # Same cell, same id; nothing rewritten.
    r, again = await app.post({"code": "print('hé')", "language": "python", "interacts": '[{"x": 1}]'})
    assert jbody(again)["query"] == out["query"] and "n" not in jbody(again)
    outcomes = [rec["outcome"] for rec in app.sink.records]
    assert outcomes == ["created", "found", "exists"]
    assert app.sink.records[0]["id"] == out["query"] and app.sink.records[0]["client_ip"]


@pytest_twisted.ensureDeferred
async def test_query_parameters_work_for_post_too(app):
    await app.ready()
    d = app.stub.post(BASE + "/permalink?" + urlencode({"code": "1+1"}))
    r, body = await app.call(d)
    assert r.code == 200 and jbody(body)["query"]


@pytest_twisted.ensureDeferred
async def test_read_updates_count_and_last_accessed(app):
    await app.ready()
    _, body = await app.post({"code": "count me"})
    pid = jbody(body)["query"]
    for _ in range(3):
        r, _ = await app.get({"q": pid})
        assert r.code == 200
    # Counted in memory, written in one batch by the periodic flush.
    await app.store.flush_touches(reactor.seconds())
    h = rediscluster.command(app.port, "HGETALL", KEY_PREFIX + pid, password=PASSWORD)
    fields = dict(zip(h[::2], h[1::2]))
    assert fields["requested"] == "3" and float(fields["last_accessed"]) >= float(fields["created"])


@pytest_twisted.ensureDeferred
async def test_collision_of_short_prefix_lengthens_never_overwrites(app):
    await app.ready()
    full = ids.digest("collide", "sage", "[]")
    short = full[:ids.MIN_LENGTH]
    # Another cell already holds the short id (different digest).
    rediscluster.command(app.port, "HSET", KEY_PREFIX + short, "digest", "someone-else", "code", "other",
                         "language", "sage", "interacts", "[]", password=PASSWORD)
    r, body = await app.post({"code": "collide"})
    assert r.code == 200
    pid = jbody(body)["query"]
    assert pid == full[:ids.MIN_LENGTH + 1]
    _, other = await app.get({"q": short})
    assert jbody(other) == ["other", "sage", "[]"]
    _, mine = await app.get({"q": pid})
    assert jbody(mine) == ["collide", "sage", "[]"]
    # Retried: the same longer id again.
    _, again = await app.post({"code": "collide"})
    assert jbody(again)["query"] == pid


@pytest_twisted.ensureDeferred
async def test_second_read_comes_from_the_cache_and_still_counts(app):
    await app.ready()
    _, body = await app.post({"code": "cached"})
    pid = jbody(body)["query"]
    for _ in range(2):
        r, body = await app.get({"q": pid})
        assert r.code == 200 and jbody(body)[0] == "cached"
    assert [rec.get("source") for rec in app.sink.records[-2:]] == [f"127.0.0.1:{app.port}", "cache"]
    await app.store.flush_touches(reactor.seconds())
    assert rediscluster.command(app.port, "HGET", KEY_PREFIX + pid, "requested", password=PASSWORD) == "2"


@pytest_twisted.ensureDeferred
async def test_jsonp_and_cors(app):
    await app.ready()
    _, body = await app.post({"code": "jsonp"}, headers={b"Origin": [b"https://example.org"]})
    pid = jbody(body)["query"]
    r, body = await app.get({"q": pid, "callback": "jQuery_1.done"}, headers={b"Origin": [b"https://a.example"]})
    assert r.code == 200
    assert r.headers.getRawHeaders(b"content-type")[0].startswith(b"application/javascript")
    assert body == b'/**/jQuery_1.done(["jsonp","sage","[]"]);'
    assert_cors(r.headers, b"https://a.example")
    d = app.stub.request("OPTIONS", BASE + "/permalink", headers={
        b"Origin": [b"https://a.example"], b"Access-Control-Request-Method": [b"POST"],
        b"Access-Control-Request-Headers": [b"content-type"]})
    r, body = await app.call(d)
    assert r.code == 204 and body == b""
    assert_cors(r.headers, b"https://a.example")
    assert r.headers.getRawHeaders(b"access-control-allow-headers") == [b"content-type"]
    assert r.headers.getRawHeaders(b"access-control-max-age") == [b"600"]
    # Errors carry CORS too (a page can read the JSON error), and no Origin means no CORS headers.
    r, _ = await app.get({"q": "doesnotexist"}, headers={b"Origin": [b"https://b.example"]})
    assert r.code == 404
    assert_cors(r.headers, b"https://b.example")
    r, _ = await app.get({"q": pid})
    assert not r.headers.hasHeader(b"access-control-allow-origin")
    assert not r.headers.hasHeader(b"access-control-allow-credentials")


def assert_cors(headers, origin: bytes):
    """ARCHITECTURE section 2: echo the Origin, allow credentials, methods GET, POST, DELETE, OPTIONS."""
    assert headers.getRawHeaders(b"access-control-allow-origin") == [origin]
    assert headers.getRawHeaders(b"access-control-allow-credentials") == [b"true"]
    assert headers.getRawHeaders(b"access-control-allow-methods") == [b"GET, POST, DELETE, OPTIONS"]
    assert headers.getRawHeaders(b"vary") == [b"Origin"]


@pytest_twisted.ensureDeferred
async def test_bad_input_battery(app):
    await app.ready()
    cases = [
        (app.post({"code": "x" * 1001}), 413, "code-too-long"),
        (app.post({"code": "x", "language": "klingon"}), 400, "unknown-language"),
        (app.post({"code": "x", "interacts": "{nope"}), 400, "bad-interacts"),
        (app.post({}), 400, "missing-code"),
        (app.post(None, raw=b"code=%ff%fe"), 400, "bad-encoding"),
        (app.post(None, raw=b"code=x&n=abc"), 400, "bad-n"),
        (app.post(None, raw=b"x" * 2_000_000), 413, "body-too-large"),
        (app.post(None, raw=b"--b\r\nbroken", headers={b"Content-Type": [b"multipart/form-data; boundary=b"]}),
         400, None),
        (app.get({"q": "doesnotexist"}), 404, "unknown-id"),
        (app.get({"q": "../../etc"}), 400, "bad-id"),
        (app.get({"q": "abcdefghij", "callback": "alert(document.cookie)//"}), 400, "bad-callback"),
        (app.get(""), 400, "missing-q"),
        (app.call(app.stub.get(BASE + "/permalink/extra?q=abcdefghij")), 404, "not-found"),
        (app.call(app.stub.get(BASE + "/nowhere")), 404, "not-found"),
    ]
    for coro, status, code in cases:
        r, body = await coro
        assert r.code == status, (status, code, body)
        if code is not None:
            assert jbody(body)["error"] == code and jbody(body)["message"]
    # Nothing bad was stored: every stored hash loads as a cell.
    keys = rediscluster.command(app.port, "KEYS", KEY_PREFIX + "*", password=PASSWORD)
    for key in keys:
        h = rediscluster.command(app.port, "HGETALL", key, password=PASSWORD)
        d = dict(zip(h[::2], h[1::2]))
        json.loads(d["interacts"])
    # And the service still answers.
    r, _ = await app.post({"code": "still alive"})
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_healthz_and_metrics(app):
    await app.ready()
    _, made = await app.post({"code": "m"})
    for _ in range(2):
        await app.get({"q": jbody(made)["query"]})
    r, body = await app.call(app.stub.get(BASE + "/healthz"))
    assert r.code == 200 and jbody(body)["status"] == "ok" and jbody(body)["primary_connected"] is True
    r, body = await app.call(app.stub.get(BASE + "/metrics"))
    assert r.code == 200 and b'permalinkd_requests_total{outcome="created",route="create"} 1.0' in body
    assert b'permalinkd_reads_total{source="primary"} 1.0' in body
    assert b'permalinkd_reads_total{source="cache"} 1.0' in body


@pytest_twisted.ensureDeferred
async def test_wait_without_replicas_is_503_with_clear_body(redis_single):
    app = App(redis_single, wait_timeout_ms=50)
    app.store.wait_replicas = 1
    try:
        await app.ready()
        r, body = await app.post({"code": "nobody confirms this"})
        assert r.code == 503
        assert jbody(body)["error"] == "not-replicated" and "replica" in jbody(body)["message"]
        assert r.headers.getRawHeaders(b"retry-after")
    finally:
        await app.store.close()


@pytest_twisted.ensureDeferred
async def test_reads_do_not_queue_behind_a_writes_wait(redis_single):
    """A WAIT holds its connection in Redis until a replica confirms (here none does: the
    whole timeout).  Reads have a connection of their own, so they answer meanwhile."""
    app = App(redis_single, wait_timeout_ms=1500)
    try:
        for _ in range(500):
            if sum(c.connected for c in app.store.primary.factory.pool) == app.store.poolsize:
                break
            await task.deferLater(reactor, 0.01)
        _, body = await app.post({"code": "read me while writes wait"})
        pid = jbody(body)["query"]
        app.store.wait_replicas = 1
        # As many waiting writes as there are connections, sent before the read.
        posts = [app.stub.post(BASE + "/permalink", data=urlencode({"code": f"waits {i}"}).encode(), headers=FORM)
                 for i in range(app.store.poolsize)]
        started = reactor.seconds()
        r, body = await app.get({"q": pid})
        assert r.code == 200 and jbody(body)[0] == "read me while writes wait"
        assert reactor.seconds() - started < 0.75, "the read waited for a WAIT"
        for d in posts:
            r, body = await app.call(d)
            assert r.code == 503 and jbody(body)["error"] == "not-replicated"
    finally:
        await app.store.close()


@pytest_twisted.ensureDeferred
async def test_redis_down_is_503_not_a_crash():
    from tests.support.ports import free_port
    app = App(free_port())
    try:
        r, body = await app.post({"code": "x"})
        assert r.code == 503 and jbody(body)["error"] == "redis-unavailable"
        r, body = await app.get({"q": "abcdefghij"})
        assert r.code == 503
        r, body = await app.call(app.stub.get(BASE + "/healthz"))
        assert r.code == 503 and jbody(body)["status"] == "no-redis"
    finally:
        await app.store.close()


@pytest_twisted.ensureDeferred
async def test_every_request_writes_one_request_log_line(app):
    """Not only /permalink: health checks, metrics scrapes, unknown paths and refused methods too."""
    await app.ready()
    calls = [
        (lambda: app.stub.get(BASE + "/healthz"), 200, "healthz", "ok"),
        (lambda: app.stub.get(BASE + "/metrics"), 200, "metrics", "ok"),
        (lambda: app.stub.get(BASE + "/nowhere/at/all"), 404, "unknown", "not-found"),
        (lambda: app.stub.get(BASE + "/"), 404, "unknown", "not-found"),
        (lambda: app.stub.post(BASE + "/healthz"), 405, "healthz", "method-not-allowed"),
        (lambda: app.stub.put(BASE + "/permalink", data=b"x"), 405, "permalink", "method-not-allowed"),
        (lambda: app.stub.delete(BASE + "/nowhere"), 404, "unknown", "not-found"),
    ]
    for send, status, route, outcome in calls:
        before = len(app.sink.records)
        r, body = await app.call(send())
        assert r.code == status, body
        if status >= 400:
            assert jbody(body)["error"] == outcome
        assert len(app.sink.records) == before + 1, app.sink.records[before:]
        rec = app.sink.records[-1]
        assert (rec["route"], rec["status"], rec["outcome"]) == (route, status, outcome), rec
        assert rec["client_ip"] and rec["node"] == "p1" and rec["duration_ms"] >= 0
    r, _ = await app.call(app.stub.put(BASE + "/permalink", data=b"x"))
    assert r.headers.getRawHeaders(b"allow") == [b"GET, HEAD, POST, OPTIONS"]


@pytest_twisted.ensureDeferred
async def test_trusted_xff_in_request_log(app):
    await app.ready()
    await app.get({"q": "abcdefghij"}, headers={b"X-Forwarded-For": [b"203.0.113.9"]})
    rec = app.sink.records[-1]
    assert rec["outcome"] == "unknown-id" and rec["status"] == 404
    # StubTreq's peer is 127.0.0.1 (trusted here), so the forwarded address is the client.
    assert rec["client_ip"] == "203.0.113.9", rec
