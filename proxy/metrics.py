"""Prometheus metrics, on a registry of our own so several apps (tests) can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hubgate_requests_total", "HTTP requests", ["route", "status"], registry=self.registry)
        self.cache_hits = Counter(
            "hubgate_cache_hits_total", "File requests answered from the vetted cache", registry=self.registry
        )
        self.upstream_bytes = Counter(
            "hubgate_upstream_bytes_total", "Bytes downloaded from upstreams", registry=self.registry
        )
        self.served_files = Counter("hubgate_served_files_total", "Vetted files served", registry=self.registry)
        self.verdicts = Counter(
            "hubgate_verdicts_total", "Verdicts recorded", ["status", "decided_by"], registry=self.registry
        )
        self.refusals = Counter("hubgate_refusals_total", "Refused file requests", ["status"], registry=self.registry)
        self.scan_seconds = Histogram(
            "hubgate_scan_duration_seconds",
            "Scan duration per file",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.vetting = Gauge("hubgate_vetting_in_progress", "Files being vetted now", registry=self.registry)
