"""Prometheus metrics of one cell server (its own registry, not the global one)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily


def reason_bucket(reason: str) -> str:
    """A bounded label for why a kernel ended (the text itself is unbounded)."""
    r = reason.lower()
    for word in ("finished", "idle", "lifespan", "nobody connected", "disconnected", "deleted",
                 "shutting down", "wall", "signal", "exit", "provider"):
        if word in r:
            return word.replace(" ", "_")
    return "other"


class _PoolCollector:
    def __init__(self, pool):
        self.pool = pool

    def collect(self):
        stats = self.pool.stats()
        g = GaugeMetricFamily("cellserver_kernels", "Kernels of this node by state", labels=["state"])
        for state in ("ready", "starting", "running", "capacity"):
            g.add_metric([state], getattr(stats, state))
        yield g
        up = GaugeMetricFamily("cellserver_provider_up", "1 while the kernel provider runs")
        up.add_metric([], 1 if getattr(self.pool, "provider_up", True) else 0)
        yield up


class CellMetrics:
    def __init__(self, pool=None):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("cellserver_http_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.kernels_started = Counter("cellserver_kernels_handed_out", "Kernels handed out", ["kind"], registry=r)
        self.kernel_ends = Counter("cellserver_kernel_ends", "Kernel sessions ended, by reason", ["reason"], registry=r)
        self.client_messages = Counter("cellserver_client_messages", "Client messages relayed, by type",
                                       ["msg_type"], registry=r)
        self.bad_frames = Counter("cellserver_bad_frames", "Websocket frames rejected", registry=r)
        self.unread_closes = Counter("cellserver_unread_closes",
                                     "Websockets closed because the page stopped reading its output", registry=r)
        self.websockets = Gauge("cellserver_websockets", "Open kernel websockets", registry=r)
        self.service_seconds = Histogram("cellserver_service_seconds", "/service wall time", registry=r,
                                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        if pool is not None:
            r.register(_PoolCollector(pool))
