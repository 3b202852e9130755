"""A gRPC server in each gunicorn worker, started after the fork, on one port the workers share.

Each worker's server binds SERVING_GRPC_PORT with SO_REUSEPORT once its models have settled (as the
HTTP listener waits for them: a loading worker takes no connection), so the kernel spreads new
connections between the workers that can answer. A worker's gRPC calls reach the same DataPlane
(`app.extensions["dataplane"]`), so the same batchers, as its HTTP requests. On SIGTERM (gunicorn's
graceful stop) the server answers NOT_SERVING, refuses new calls and lets running ones finish while
HTTP drains; worker_exit waits for it.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from app.settings import load_gunicorn_settings

log = logging.getLogger(__name__)

EXTENSION = "grpc_server"


class WorkerGrpc:
    """The worker's gRPC server: started once the models settle, stopped once (SIGTERM or worker exit)."""

    def __init__(self, extensions: dict[str, Any], grace: float):
        self.extensions, self.grace = extensions, grace
        self.lock = threading.Lock()
        self.server: Any = None
        self.stopped: threading.Event | None = None

    def start_when_settled(self) -> None:
        """(a thread) Wait for the models, then listen, unless a stop came first."""
        from app.api.grpc.server import start_server

        settings, dataplane = self.extensions["settings"], self.extensions["dataplane"]
        dataplane.registry.wait_until_settled()
        rule, gunicorn = token_rule(settings), load_gunicorn_settings()
        tls = (gunicorn.certfile, gunicorn.keyfile) if gunicorn.certfile is not None else None
        with self.lock:
            if self.stopped is not None:
                return
            try:
                self.server = start_server(dataplane, settings, gunicorn.host, rule,
                                           control=lambda: self.extensions["control"], tls=tls)
            except Exception:  # noqa: BLE001 - the worker still serves HTTP; say why gRPC does not
                log.exception("gRPC server not started (SERVING_GRPC_PORT=%s)", settings.grpc_port)

    def begin_stop(self) -> threading.Event:
        """NOT_SERVING and no new calls from now; the event is set once running calls have finished."""
        with self.lock:
            if self.stopped is None:
                self.stopped = self.server.stop(self.grace) if self.server is not None else threading.Event()
                if self.server is None:
                    self.stopped.set()
            return self.stopped


def token_rule(settings: Any) -> Any:
    """The REST token rule (app.api.auth), judged per call by the route it stands for."""
    from app.api.auth import RequireTokens

    return RequireTokens(lambda environ, start_response: [], settings)


def start_grpc(worker: Any) -> None:
    """Start the worker's gRPC server once its models settle, unless SERVING_GRPC_PORT is 0; stop it on SIGTERM."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    settings = extensions.get("settings")
    if settings is None or "dataplane" not in extensions or settings.grpc_port == 0:
        return
    grpc_server = extensions[EXTENSION] = WorkerGrpc(extensions, _grace(worker))
    threading.Thread(target=grpc_server.start_when_settled, name="grpc-start", daemon=True).start()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        # Not in the handler itself: stopping takes locks the interrupted thread could hold.
        threading.Thread(target=grpc_server.begin_stop, name="grpc-stop", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def stop_grpc(worker: Any) -> None:
    """Stop the worker's gRPC server (if it runs) and wait for its running calls, within the grace."""
    grpc_server = getattr(getattr(worker, "wsgi", None), "extensions", {}).get(EXTENSION)
    if grpc_server is not None and not grpc_server.begin_stop().wait(grpc_server.grace + 1):
        log.warning("gRPC calls still running after %.0f s; the worker exits anyway", grpc_server.grace)


def _grace(worker: Any) -> float:
    """Seconds running calls get to finish: gunicorn's graceful timeout less a second for the rest."""
    return max(1.0, float(getattr(getattr(worker, "cfg", None), "graceful_timeout", 30)) - 1.0)
