"""The per-request metrics of `ObserveRequests`: counts and durations of inference requests and
explanations, refusals by reason, each labelled child resolved once per label values."""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from app.observability import metrics
from app.observability.facts import RequestFacts

# Error codes (else statuses) that count as a refusal in keras_serve_rejected_requests_total, by reason.
REJECTION_CODES = {"overloaded": "overloaded", "deadline_exceeded": "deadline_exceeded",
                   "payload_too_large": "too_large", "too_many_rows": "too_large",
                   "model_not_available": "unavailable"}
REJECTION_STATUSES = {"429": "overloaded", "504": "deadline_exceeded", "413": "too_large", "503": "unavailable"}
EXPLAIN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EXPLAIN_REQUESTS = Counter("keras_serve_explain_requests", "Explanations answered, by surface, method and HTTP status.",
                           ("protocol", "method", "code", *metrics.MODEL))
EXPLAIN_SECONDS = Histogram("keras_serve_explain_duration_seconds",
                            "Time from an explanation request reaching the app to its answer.",
                            ("protocol", "method", *metrics.MODEL), buckets=EXPLAIN_BUCKETS)


class RequestMetrics:
    """The per-request metrics, with their labelled children resolved once per label values."""

    def __init__(self) -> None:
        self._children: dict[tuple, tuple[Any, Any]] = {}  # (protocol, status, model, version) -> children

    def record(self, protocol: str, facts: RequestFacts, seconds: float) -> None:
        """Count one answered inference request and observe its duration."""
        status, model, version = facts.status, facts.model, facts.version
        children = self._children.get((protocol, status, model, version))
        if children is None:
            labels = metrics.model_labels(model, version)
            children = self._children[(protocol, status, model, version)] = (
                metrics.REQUESTS.labels(protocol, status[:3], *labels),
                metrics.REQUEST_SECONDS.labels(protocol, *labels))
        metrics.TALLY.end(children[0], children[1], seconds)
        if status[0] != "2":
            self.count_rejection(status[:3], facts)

    def record_explain(self, protocol: str, facts: RequestFacts, seconds: float) -> None:
        """Count one answered explanation and observe its duration (the prediction metrics untouched)."""
        code, method = facts.status[:3], facts.explain_method or ""
        model = metrics.model_labels(facts.model, facts.version)
        metrics.TALLY.count(EXPLAIN_REQUESTS.labels(protocol, method, code, *model))
        metrics.TALLY.observe(EXPLAIN_SECONDS.labels(protocol, method, *model), seconds)

    @staticmethod
    def count_rejection(code: str, facts: RequestFacts) -> None:
        """A refusal in keras_serve_rejected_requests_total, when the answer is one."""
        model, version = facts.model, facts.version
        if code[0] != "2":
            reason = REJECTION_CODES.get(facts.error or "") or REJECTION_STATUSES.get(code)
            if reason is not None:
                metrics.TALLY.count(metrics.REJECTED.labels(reason, *metrics.model_labels(model, version)))
