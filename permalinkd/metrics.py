"""Prometheus metrics of one permalinkd instance (its own registry)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class PermalinkMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("permalinkd_requests_total", "HTTP requests by route and outcome",
                                ["route", "outcome"], registry=self.registry)
        self.latency = Histogram("permalinkd_request_seconds", "Request handling time",
                                 ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.created = Counter("permalinkd_permalinks_created_total", "New permalinks stored",
                               registry=self.registry)
        self.collisions = Counter("permalinkd_id_lengthened_total",
                                  "Permalinks whose short id was taken and got a longer one", registry=self.registry)
        self.not_replicated = Counter("permalinkd_wait_timeouts_total",
                                      "Writes no replica confirmed in time (answered 503)", registry=self.registry)
        self.primary_switches = Counter("permalinkd_primary_switches_total",
                                        "Times the Redis primary changed (Sentinel)", registry=self.registry)
        self.reads = Counter("permalinkd_reads_total", "Permalinks found, by where they were read",
                             ["source"], registry=self.registry)
        self.primary_up = Gauge("permalinkd_primary_connected", "1 when connected to the Redis primary",
                                registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
