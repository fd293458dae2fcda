"""Open-loop latency: requests sent at a fixed rate, below saturation.

Why: a closed loop (wrk, ab: each connection sends its next request when the
last answer arrives) at saturation measures queueing, not what a proxy adds
to one request (issue 5: added p99 <= 1 ms).  Here requests are due at
``start + i / rate`` whatever the answers do, each latency is counted from
when the request was *due* (so a stall delays every request behind it, and
is seen: no coordinated omission), on a few keep-alive connections opened
and warmed first (TLS handshakes are not measured).
"""
from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from dataclasses import dataclass

from loadtest.permalink_failover import Conn
from loadtest.stats import percentile


@dataclass
class Latency:
    sent: int
    errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


def summary(latencies_s: list[float], sent: int, errors: int) -> Latency:
    """Pure: the figures of one run (latencies in seconds, any order)."""
    ms = sorted(x * 1000 for x in latencies_s)
    return Latency(sent, errors, percentile(ms, 50), percentile(ms, 99), percentile(ms, 99.9),
                   ms[-1] if ms else float("nan"))


def due_times(start: float, rate: float, seconds: float) -> list[float]:
    """Pure: when each request is due."""
    return [start + i / rate for i in range(int(rate * seconds))]


async def measure(url: str, rate: float, seconds: float, connections: int = 8) -> Latency:
    u = urllib.parse.urlsplit(url)
    tls = None
    if u.scheme == "https":
        # loopback benchmark of the development certificate: the handshake is
        # not what is measured, and it is made before the clock starts
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    path = u.path or "/"
    conns = [Conn(u.hostname, u.port, tls) for _ in range(connections)]
    for c in conns:                                  # open, handshake, warm
        await c.request("GET", path)
    idle: asyncio.Queue = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        conn = await idle.get()                      # none idle: it waits, and that counts
        status, _ = await conn.request("GET", path)
        done = loop.time()
        idle.put_nowait(conn)
        if status == 200:
            latencies.append(done - due)
        else:
            errors += 1

    tasks = []
    for due in due_times(loop.time() + 0.05, rate, seconds):
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return summary(latencies, len(tasks), errors)
