"""BackendPool and BackendConn on in-memory transports: which ended
connections make the edge check a server at once (``on_lost``)."""
from twisted.internet.testing import MemoryReactorClock, StringTransport

from edgeproxy.proxy import BackendConn, BackendPool


def pool_and_conn():
    lost = []
    pool = BackendPool(MemoryReactorClock(), {"c1": ("127.0.0.1", 1)}, idle_timeout=30.0,
                       on_lost=lost.append)
    conn = BackendConn(pool, "c1")
    conn.makeConnection(StringTransport())
    return pool, conn, lost


def test_server_closing_an_idle_connection_is_reported():
    pool, conn, lost = pool_and_conn()
    pool.release(conn)
    assert list(pool.idle["c1"]) == [conn]
    conn.connectionLost()
    assert lost == ["c1"] and not pool.idle["c1"]


def test_connections_we_close_ourselves_are_not_reported():
    pool, conn, lost = pool_and_conn()
    pool.release(conn)
    pool.reactor.advance(31)
    pool.expire()                       # idle too long: closed by us
    assert conn.transport.disconnecting and not pool.idle["c1"]
    conn.connectionLost()
    _, other, _ = pool_and_conn()
    other.pool = pool
    pool.release(other)
    pool.drop_idle("c1")                # the server was marked down
    other.connectionLost()
    assert lost == []


def test_an_abandoned_exchange_is_closed_and_not_reported():
    pool, conn, lost = pool_and_conn()
    conn.start(object())
    conn.abandon()
    assert conn.transport.disconnecting and conn.front is None and not conn.reusable
    conn.connectionLost()
    assert lost == []


def test_no_delay_reaches_the_tcp_transport_under_a_tls_wrapper():
    from edgeproxy.proxy import no_delay

    class TCP:
        nodelay = False

        def setTcpNoDelay(self, on):
            self.nodelay = on

    class TLSWrapper:
        def __init__(self, inner):
            self.transport = inner

    tcp = TCP()
    no_delay(TLSWrapper(tcp))
    assert tcp.nodelay is True
    no_delay(StringTransport())          # nothing to set: no error
