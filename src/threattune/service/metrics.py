"""Prometheus metrics of the service, in a registry of its own (one per app)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "SEVERITY_LEVELS", "ServiceMetrics"]

SEVERITY_LEVELS = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Requests, latency, scored flows and emails, alerts by class, model reloads, drift."""

    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series only double the exposition
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "threattune_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "threattune_request_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.scored = Counter(
            "threattune_scored", "Flows and emails scored.", ["model", "kind"], registry=r
        )
        self.alerts = Counter(
            "threattune_alerts", "Alerts raised, by class.", ["model", "class"], registry=r
        )
        self.verdicts = Counter(
            "threattune_verdicts", "Verdicts received.", ["verdict"], registry=r
        )
        self.model_info = Gauge(
            "threattune_model_version_info",
            "The version each served model serves (value 1).",
            ["model", "version"],
            registry=r,
        )
        self.model_loaded = Gauge(
            "threattune_model_loaded_timestamp_seconds",
            "When the served version was loaded.",
            ["model"],
            registry=r,
        )
        self.reload_failures = Counter(
            "threattune_model_reload_failures",
            "Failed attempts to load a model version.",
            ["model"],
            registry=r,
        )
        self.reload_failing = Gauge(
            "threattune_model_reload_failing",
            "1 while the latest load attempt failed (the previous version keeps serving).",
            ["model"],
            registry=r,
        )
        self.ready = Gauge(
            "threattune_ready", "1 when every configured model is loaded.", registry=r
        )
        self.drift_share = Gauge(
            "threattune_drift_feature_share",
            "Share of tested features drifting in the latest diagnosis.",
            ["model"],
            registry=r,
        )
        self.drift_auc = Gauge(
            "threattune_drift_multivariate_auc",
            "Domain classifier AUC of the latest diagnosis (0.5: no combined drift).",
            ["model"],
            registry=r,
        )
        self.drift_severity = Gauge(
            "threattune_drift_severity",
            "Worst finding of the latest diagnosis: 0 info, 1 low, 2 medium, 3 high, 4 critical.",
            ["model"],
            registry=r,
        )
        self.drift_time = Gauge(
            "threattune_drift_diagnosed_timestamp_seconds",
            "When the latest diagnosis ran.",
            ["model"],
            registry=r,
        )
        self._versions: dict[str, str] = {}
        self._failures: dict[str, int] = {}

    def served(self, name: str, version: str | None, loaded_at: float | None) -> None:
        """Record the version a model serves."""
        previous = self._versions.get(name)
        if previous is not None and previous != version:
            self.model_info.remove(name, previous)
        if version is not None:
            self.model_info.labels(name, version).set(1)
            self._versions[name] = version
        if loaded_at is not None:
            self.model_loaded.labels(name).set(loaded_at)

    def reload_state(self, name: str, failures: int, failing: bool) -> None:
        """Record the reload failures of a model (a running total) and whether it fails now."""
        new = failures - self._failures.get(name, 0)
        if new > 0:
            self.reload_failures.labels(name).inc(new)
        self._failures[name] = failures
        self.reload_failing.labels(name).set(1 if failing else 0)

    def diagnosis(self, name: str, summary: dict[str, Any], diagnosed_at: float) -> None:
        """Record the latest diagnosis of a model."""
        share = summary.get("drifted_share")
        if share is not None:
            self.drift_share.labels(name).set(float(share))
        auc = summary.get("multivariate_auc")
        if auc is not None:
            self.drift_auc.labels(name).set(float(auc))
        self.drift_severity.labels(name).set(SEVERITY_LEVELS.get(summary.get("severity"), 0))
        self.drift_time.labels(name).set(diagnosed_at)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
