"""The Edge's check scheduling on a MemoryReactorClock: a check that
contradicts a backend's state is confirmed ``check_fast_interval`` after it
began (at once if it took longer), not a whole interval later."""
from twisted.internet.testing import MemoryReactorClock

from edgeproxy.edge import Edge, EdgeSettings


def make_edge(tmp_path):
    reactor = MemoryReactorClock()
    settings = EdgeSettings(cells=(("c1", "http://127.0.0.1:1"),), permalinks=(), static_dir=str(tmp_path),
                            check_interval=1.0, check_timeout=0.5, check_fast_interval=0.1, rise=2, fall=2)
    edge = Edge(reactor, settings, access_log=None)
    checks = []
    edge._check = lambda name, url: checks.append((reactor.seconds(), name, url))
    return reactor, edge, checks


def test_a_failed_check_on_an_up_server_is_confirmed_fast(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    edge.start_checks()
    assert checks == [(0, "c1", "http://127.0.0.1:1/healthz")]
    edge.health["c1"].up = True
    edge._record("c1", False, "TimeoutError")
    assert edge.health["c1"].up
    reactor.advance(0.1)
    assert checks[-1] == (0.1, "c1", "http://127.0.0.1:1/healthz")
    edge._record("c1", False, "TimeoutError")          # the confirming check failed too
    assert not edge.health["c1"].up and not edge._fast_checks
    reactor.advance(0.9)
    assert [t for t, _, _ in checks] == [0, 0.1, 1.0]    # then back to the regular interval
    edge.stop_checks()


def test_a_check_that_timed_out_is_confirmed_at_once_a_quick_failure_after_the_fast_interval(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    edge.start_checks()
    edge.health["c1"].up = True
    reactor.advance(0.5)                                 # the check begun at 0 timed out
    edge._record("c1", False, "TimeoutError", started=0.0)
    reactor.advance(0)
    assert [t for t, _, _ in checks] == [0, 0.5]         # confirming check at once, not at 0.6
    edge._record("c1", False, "TimeoutError", started=0.5)
    assert not edge.health["c1"].up                      # a stopped server: down after fall x timeout
    edge.health["c1"].up = True
    reactor.advance(0.2)
    edge._record("c1", False, "HTTP 503", started=0.68)  # a quick failure is not re-asked a moment later
    reactor.advance(0.07)
    assert [t for t, _, _ in checks] == [0, 0.5]
    reactor.advance(0.02)
    assert [round(t, 2) for t, _, _ in checks] == [0, 0.5, 0.79]
    edge.stop_checks()


def test_steady_results_schedule_no_extra_checks_and_stop_cancels(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    edge.start_checks()
    edge._record("c1", False, "refused")                 # down and failing: nothing to confirm
    assert not edge._fast_checks
    edge._record("c1", True, "", 3)                      # first pass on a down server: confirm soon
    assert edge._fast_checks
    edge.stop_checks()
    assert not edge._fast_checks and not reactor.getDelayedCalls()


class Tunnel:
    def __init__(self):
        self.closed_for = []

    def close_tunnel_for_backend(self, name):
        self.closed_for.append(name)


def down_by_checks(edge):
    edge.health["c1"].up = True
    edge._record("c1", False, "TimeoutError")
    edge._record("c1", False, "TimeoutError")
    assert not edge.health["c1"].up


def test_a_server_down_by_check_timeouts_keeps_its_websockets_for_the_grace(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    tunnel = Tunnel()
    edge.open_connections.add(tunnel)
    down_by_checks(edge)
    reactor.advance(29)
    assert tunnel.closed_for == []                       # slow or stopped: sessions kept for now
    reactor.advance(1)
    assert tunnel.closed_for == ["c1"]                   # still down after 30 s: closed with a reason


def test_back_up_within_the_grace_keeps_the_websockets(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    tunnel = Tunnel()
    edge.open_connections.add(tunnel)
    down_by_checks(edge)
    reactor.advance(5)
    edge._record("c1", True, "", 3)
    edge._record("c1", True, "", 3)
    assert edge.health["c1"].up
    reactor.advance(60)
    assert tunnel.closed_for == []


def test_a_refused_connection_closes_the_websockets_at_once(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    tunnel = Tunnel()
    edge.open_connections.add(tunnel)
    edge.health["c1"].up = True
    edge.passive_failure("c1", "connection refused")
    assert tunnel.closed_for == ["c1"] and not reactor.getDelayedCalls()


def test_the_edge_reads_accepting_from_a_passing_check(tmp_path):
    reactor, edge, checks = make_edge(tmp_path)
    edge._record("c1", True, "", 0, False)
    edge._record("c1", True, "", 0, False)
    assert edge.health["c1"].up and not edge.health["c1"].accepting
    edge._record("c1", True, "", 3)
    assert edge.health["c1"].accepting


def test_new_work_refused_with_503_checks_that_server_at_once_one_check_at_a_time(tmp_path):
    """A drained (or full) cell server answers new work 503 until the edge's
    next check; the first such answer makes the edge ask it right away."""
    from types import SimpleNamespace

    from twisted.internet import defer
    reactor, edge, checks = make_edge(tmp_path)
    pending = defer.Deferred()

    def check(name, url):
        checks.append((reactor.seconds(), name, url))
        return pending
    edge._check = check
    answer = SimpleNamespace(status=503, route_kind="new", backend_name="c1", started=0.0)
    edge.backend_answered(answer)
    edge.backend_answered(answer)                       # the first check is still under way
    assert checks == [(0, "c1", "http://127.0.0.1:1/healthz")]
    pending.callback(None)
    edge.backend_answered(SimpleNamespace(status=200, route_kind="new", backend_name="c1", started=0.0))
    edge.backend_answered(SimpleNamespace(status=503, route_kind="owned", backend_name="c1", started=0.0))
    assert len(checks) == 1                             # neither a success nor a kernel's own 503
    edge.backend_answered(answer)
    assert len(checks) == 2
