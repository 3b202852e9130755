"""Observability: Prometheus metrics of the whole instance, the facts of each request, the access line.

`install(app, settings, registry)` wraps the WSGI app in `ObserveRequests` (metrics and access line in one
middleware, outside everything else so the load shedder's 429s are seen too) and serves `/metrics`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.serving.registry import ModelRegistry
    from app.settings import Settings


def install(app: Any, settings: Settings, registry: ModelRegistry) -> None:
    """Wrap `app.wsgi_app` in the request observer and, with metrics on, serve `GET /metrics`."""
    from app.observability import metrics
    from app.observability.middleware import ObserveRequests

    metrics.enabled = settings.metrics  # read by the batchers, made when versions load
    access_log = settings.access_log if settings.access_log is not None else settings.log_format == "json"
    if settings.metrics:
        from app.observability.exposition import bp
        app.register_blueprint(bp)
        for servable in registry.versions():
            metrics.publish_state(servable.name, servable.version, servable.state)
    if settings.metrics or access_log:
        app.wsgi_app = ObserveRequests(app.wsgi_app, metrics=settings.metrics, access_log=access_log,
                                       json_lines=settings.log_format == "json")
