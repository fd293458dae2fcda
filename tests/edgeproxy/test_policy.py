"""Routing, token buckets, health hysteresis and backend choice (edgeproxy.policy)."""
from hypothesis import given, strategies as st

from edgeproxy import policy as P

KID = "c2-" + "a" * 32


def test_classify():
    assert P.classify(b"GET", b"/healthz") == P.Route("local")
    assert P.classify(b"GET", b"/static/x.js").kind == "static"
    assert P.classify(b"GET", b"/embedded_sagecell.js").kind == "static"
    assert P.classify(b"POST", b"/permalink") == P.Route("permalink", rate_class=P.PERMALINK)
    assert P.classify(b"GET", f"/kernel/{KID}/channels".encode()) == P.Route("owned", "c2")
    assert P.classify(b"POST", b"/kernel") == P.Route("new", rate_class=P.COMPUTE)
    assert P.classify(b"POST", b"/service") == P.Route("new", rate_class=P.COMPUTE)
    assert P.classify(b"GET", b"/") == P.Route("new")
    assert P.classify(b"GET", b"/x", KID.encode()) == P.Route("owned", "c2")
    assert P.classify(b"GET", b"/kernel/garbage/channels").kind == "unknown_kernel"


def test_bucket_retry_after_is_accurate():
    b = P.TokenBucket(rate=2.0, burst=3.0, stamp=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == 0.5
    assert b.take(0.49) > 0 and b.take(0.5) == 0.0


@given(st.floats(min_value=0.1, max_value=50), st.floats(min_value=1, max_value=20),
       st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
def test_bucket_never_admits_more_than_burst_plus_rate_times_t(rate, burst, gaps):
    b = P.TokenBucket(rate=rate, burst=burst, stamp=0.0)
    now, admitted = 0.0, 0
    for g in gaps:
        now += g
        if b.take(now) == 0.0:
            admitted += 1
    assert admitted <= burst + rate * now + 1e-6


def test_per_ip_and_global_limits_and_bounded_memory():
    lim = P.RateLimiter(P.Limits(per_ip_rate=1, per_ip_burst=2, global_rate=1000, global_burst=5), now=0)
    assert lim.check("a", 0) == 0 and lim.check("a", 0) == 0
    assert lim.check("a", 0) > 0 and lim.check("b", 0) == 0          # other IPs unaffected
    assert [lim.check(ip, 0) for ip in "cde"].count(0.0) == 2         # global burst 5 spent
    many = P.RateLimiter(P.Limits(1, 1, 1e9, 1e9), now=0, sweep_every=10)
    for i in range(100_000):
        many.check(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 0)
    assert len(many.buckets) == 100_000
    many.check("x", 20)   # sweep: every bucket refilled long ago
    assert len(many.buckets) <= 1


def test_connection_counter():
    c = P.ConnectionCounter(2)
    assert c.acquire("a") and c.acquire("a") and not c.acquire("a") and c.acquire("b")
    c.release("a")
    assert c.acquire("a")
    c.release("a"), c.release("a"), c.release("b")
    assert c.counts == {}


def test_health_rise_fall_and_passive():
    h = P.HealthState(rise=2, fall=2)
    assert not h.up and not h.check_passed(1, 5) and h.check_passed(2, 5) and h.up
    assert not h.check_failed(3, "x") and h.check_failed(4, "x") and not h.up
    h.check_passed(5), h.check_passed(6)
    assert h.up and h.connection_failed(7, "refused") and not h.up


def test_pick_cell_most_free_then_round_robin_and_exclusions():
    states = {n: P.HealthState(up=True, free=f) for n, f in (("c1", 3), ("c2", 5), ("c3", 5))}
    rr = P.RoundRobin()
    picks = {P.pick_cell(states, set(), rr) for _ in range(4)}
    assert picks == {"c2", "c3"}
    assert P.pick_cell(states, {"c2", "c3"}, rr) == "c1"
    states["c1"].up = False
    assert P.pick_cell(states, {"c2", "c3"}, rr) is None


def test_health_transitioning_between_checks():
    h = P.HealthState(rise=2, fall=3, up=True)
    assert not h.transitioning
    h.check_failed(0, "timeout")
    assert h.transitioning and h.up
    h.check_passed(1)
    assert not h.transitioning


def test_a_drained_cell_server_gets_no_new_work_but_stays_up():
    """Drained (its /healthz says accepting: false): never chosen for new kernels,
    even when it is the only one left, yet up, so its kernels are still routed."""
    states = {"c1": P.HealthState(), "c2": P.HealthState()}
    for s in states.values():
        s.check_passed(0, 5)
        s.check_passed(1, 5)
    states["c1"].check_passed(2, 0, accepting=False)
    rr = P.RoundRobin()
    assert {P.pick_cell(states, set(), rr) for _ in range(4)} == {"c2"}
    assert states["c1"].up
    assert P.pick_cell(states, {"c2"}, rr) is None
    states["c1"].check_passed(3, 4)                 # undrained
    assert P.pick_cell(states, {"c2"}, rr) == "c1"
