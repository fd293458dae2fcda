"""The edge's own Python per proxied request, without sockets or a kernel.

Why: on the shared 2-core VMs this project is measured on, req/s and even
CPU-seconds per request drift by up to 2x within minutes, and the edge's
share of a loopback benchmark is mostly its interpreter (``edge_bench``
splits the proxy's CPU into user and system time: the edge's system time
per request is about HAProxy's, its user time several times more).  This
bench runs the real ``Edge``, ``Frontend`` and ``BackendConn`` on in-memory
transports and a fake clock, feeding them the bytes wrk and twisted.web
exchange for one keep-alive ``GET /``, and prints the microseconds of CPU
per request.  Even pure CPU work drifts on those VMs (20-36 µs for the same
code within a minute), so it runs many short rounds and reports the
minimum (the round least disturbed) beside the median: A/B a change by
alternating runs of the two trees (``PYTHONPATH=tree``) and comparing the
minima.  It leaves out the system calls and Twisted's reactor, so it is a
floor of the edge's cost, not its throughput.

    python -m loadtest.edge_cpu [--requests 2000] [--rounds 30] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from twisted.internet import address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from deploy.jsonlines import NullLines
from edgeproxy.edge import Edge, EdgeSettings
from edgeproxy.proxy import BackendConn, Frontend

# What wrk sends and a twisted.web Site answers (loadtest/edge_bench.py's backend).
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: TwistedWeb/26.10.0\r\nDate: Thu, 03 Dec 2026 13:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 69\r\n\r\n"
            b"cellstack edge bench: a constant answer from a bare twisted.web Site\n")


class _Sink(StringTransport):
    """A transport that keeps only the last write (the bench would otherwise grow a buffer)."""

    last = b""
    writes = 0

    def write(self, data):
        self.last = data
        self.writes += 1


def setup(secure: bool = False):
    clock = MemoryReactorClock()
    settings = EdgeSettings(cells=(("c1", "http://127.0.0.1:9"),), permalinks=(), static_dir="/nonexistent")
    edge = Edge(clock, settings, NullLines())
    edge.health["c1"].check_passed(clock.seconds(), 4, True)
    edge.health["c1"].check_passed(clock.seconds(), 4, True)
    conn = BackendConn(edge.pool, "c1")
    conn.makeConnection(_Sink(peerAddress=address.IPv4Address("TCP", "127.0.0.1", 9)))
    edge.pool.release(conn)
    peer = address.IPv4Address("TCP", "127.0.0.1", 50000)
    front = Frontend(edge, secure=secure, addr=peer)
    front.makeConnection(_Sink(peerAddress=peer))
    return clock, edge, front, conn


def run(n: int, secure: bool = False) -> float:
    """CPU microseconds per request over ``n`` exchanges on one keep-alive connection."""
    clock, edge, front, conn = setup(secure)
    front_rx, back_rx = front.dataReceived, conn.dataReceived
    for _ in range(200):                      # warm the paths (and CPython's specialisation)
        front_rx(REQUEST)
        back_rx(RESPONSE)
    assert front.state == "head" and conn.mode == "idle", (front.state, conn.mode)
    t0 = time.process_time()
    for _ in range(n):
        front_rx(REQUEST)
        back_rx(RESPONSE)
    return (time.process_time() - t0) / n * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="exchanges per round")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--secure", action="store_true", help="as on an ssl: listener (HSTS added; no TLS work)")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions instead")
    args = ap.parse_args(argv)
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run, args.requests * args.rounds, args.secure)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    figures = [run(args.requests, args.secure) for _ in range(args.rounds)]
    print(f"edge Python per proxied GET (no sockets): min {min(figures):.2f} us, median "
          f"{statistics.median(figures):.2f}, max {max(figures):.2f} ({args.rounds} rounds of {args.requests})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
