"""Prometheus metrics of one process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric this process exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kitchencam_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "kitchencam_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.registrations = Counter(
            "kitchencam_registrations",
            "Restaurants and cameras registered by this process, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.restaurants = Gauge(
            "kitchencam_restaurants", "Restaurants registered.", registry=self.registry
        )
        self.cameras = Gauge("kitchencam_cameras", "Cameras registered.", registry=self.registry)
        self.role_up = Gauge(
            "kitchencam_role_up",
            "1 when a role of this process is running, 0 when it has stopped.",
            ["role"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return bytes(generate_latest(self.registry))
