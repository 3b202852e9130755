"""gunicorn server hooks (wired by name in gunicorn.conf.py)."""
from __future__ import annotations

import gc
import threading
import time
from typing import Any

from app.errors import ConfigError
from app.gunicorn.grpc_server import start_grpc, stop_grpc
from app.gunicorn.worker import READINESS
from app.observability import multiproc, stderr_relay, tracing
from app.observability.gunicorn_logs import json_logs
from app.serving import control_state
from app.serving.source import check_model_dir
from app.settings import load_settings


def on_starting(server: Any) -> None:
    """(master) Refuse to start without a readable SERVING_MODEL_DIR: one clear line, exit 1."""
    try:
        check_model_dir(load_settings().model_dir)
    except ConfigError as exc:
        server.log.error("Error: %s", exc)
        raise SystemExit(1) from None
    multiproc.prepare_folder()  # the metric files' folder, empty, before any worker forks (on_exit removes it)
    control_state.prepare_runtime()  # model control's folder (SERVING_RUNTIME_DIR), likewise


def when_ready(server: Any) -> None:
    """(master) SIGTERM drains: readiness answers 503 at once, the workers serve SERVING_DRAIN_SECONDS
    more (every answer closing its connection), then gunicorn's graceful stop closes the listener."""
    drain_seconds = load_settings().drain_seconds
    graceful_stop = server.handle_term

    def drain_then_stop() -> None:
        READINESS.set_draining()
        server.log.info("SIGTERM: readiness answers 503; serving %.1f s more, then stopping", drain_seconds)
        time.sleep(drain_seconds)
        graceful_stop()

    server.handle_term = drain_then_stop


def post_worker_init(worker: Any) -> None:
    """Start loading the models; hide TensorFlow's ~330k long-lived objects from the GC (a full
    collection took ~190 ms, the p99)."""
    gc.freeze()
    tracing.setup(load_settings().traces)  # OpenTelemetry from the OTEL_* variables, when on (after the fork)
    registry = _registry(worker)
    if registry is not None:  # start loading now (waiting 0 s starts it), and freeze again once loaded
        registry.wait_until_settled(0)
        threading.Thread(target=lambda: (registry.wait_until_settled(), gc.freeze()), name="gc-freeze",
                         daemon=True).start()
    start_grpc(worker)  # after the fork, on the port the workers share (app/gunicorn/grpc_server.py)


def worker_exit(server: Any, worker: Any) -> None:
    """Drain every batcher so no queued request is left hanging on shutdown."""
    stop_grpc(worker)  # its running calls finish first: they hold batcher slots
    registry = _registry(worker)
    if registry is not None:
        registry.close()


def pre_fork(server: Any, worker: Any) -> None:
    """(master) In json mode, relay the workers' raw stderr lines as JSON (app/observability/stderr_relay.py)."""
    if json_logs():
        stderr_relay.start()


def post_fork(server: Any, worker: Any) -> None:
    """(worker) Point descriptor 2 at the master's stderr relay, when there is one."""
    stderr_relay.attach()


def child_exit(server: Any, worker: Any) -> None:
    """(master) A worker exited: its live gauges (in-flight requests, model states) stop counting."""
    multiproc.mark_dead(worker.pid)
    control_state.forget_worker(worker.pid)  # its model-control results


def on_exit(server: Any) -> None:
    """(master) Remove the metric files' and model control's folders if the master made them."""
    multiproc.remove_made_folder()
    control_state.remove_made_runtime()


def _registry(worker: Any) -> Any:
    """The model registry of the worker's Flask app, if it has one."""
    app = getattr(worker, "wsgi", None)
    return getattr(app, "extensions", {}).get("registry") if app is not None else None
