"""The gateway's own Prometheus series, next to the kit's request counters and latency histograms."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from tongban_kit.observe import LATENCY_BUCKETS, HttpMetrics

#: breaker states as gauge values
BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}
#: dependency states as gauge values, by the first word of their description
DEPENDENCY_STATES = {"ok": 0, "degraded": 1, "unavailable": 2}


class GatewayMetrics(HttpMetrics):
    """Requests by route and status (kit), plus upstream outcomes and time, refusals and breaker states."""

    def __init__(self) -> None:
        super().__init__()
        self.upstream_requests = Counter(
            "gateway_upstream_requests_total",
            "Requests sent to upstream services, by outcome (status class, timeout, unavailable)",
            ["upstream", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_duration_seconds",
            "Time until the upstream's response head arrived",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total",
            "Requests refused by a rate limit",
            ["route", "partition"],
            registry=self.registry,
        )
        self.rate_limit_store_errors = Counter(
            "gateway_rate_limit_store_errors_total",
            "Rate-limit checks the shared store could not answer",
            registry=self.registry,
        )
        self.tokens_refused = Counter(
            "gateway_tokens_refused_total",
            "Access tokens refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "gateway_connections_closed_total",
            "Client connections the gateway cut off or refused, by reason (timeouts, oversized heads, the cap)",
            ["reason"],
            registry=self.registry,
        )
        self.dependency_state = Gauge(
            "gateway_dependency_state",
            "What the gateway last saw of a dependency (upstream, jwks, nats, rate_limits, cors_origins): "
            "0 ok, 1 degraded, 2 unavailable",
            ["dependency"],
            registry=self.registry,
        )
        self._outcomes: dict[tuple[str, str], Any] = {}
        self._upstream_times: dict[str, Any] = {}
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker per upstream instance: 0 closed, 1 open, 2 half-open",
            ["upstream", "instance"],
            registry=self.registry,
        )

    def dependencies(self, states: dict[str, str]) -> None:
        """Record dependency states ('ok', 'degraded: …', 'unavailable: …') for alerting."""
        for name, state in states.items():
            value = DEPENDENCY_STATES.get(state.split(":", 1)[0], 2)
            self.dependency_state.labels(name).set(value)

    def upstream_outcome(self, upstream: str, outcome: str) -> None:
        """Count one upstream request by outcome (label children cached for the hot path)."""
        child = self._outcomes.get((upstream, outcome))
        if child is None:
            child = self._outcomes[(upstream, outcome)] = self.upstream_requests.labels(upstream, outcome)
        child.inc()

    def upstream_time(self, upstream: str, seconds: float) -> None:
        """Record the time until an upstream's response head arrived."""
        child = self._upstream_times.get(upstream)
        if child is None:
            child = self._upstream_times[upstream] = self.upstream_latency.labels(upstream)
        child.observe(seconds)
