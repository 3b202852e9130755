"""gunicorn settings: gthread workers, no preload (TensorFlow is not fork-safe), logs to stdout.

Models load in each worker after the fork, in a background thread, so /health
answers at once and /health/ready turns 200 when loading settles.
"""
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{int(os.environ.get('PORT', '8000'))}"
# gthread that also times each request's wait for a thread (app/gunicorn_worker.py).
worker_class = "app.gunicorn_worker.QueueTimedThreadWorker"
# Measured on 2 cores (README, "Worker layout"): one worker per core, 4 threads each (more threads
# spend more CPU per request on GIL hand-offs); set WEB_CONCURRENCY to the number of cores.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
preload_app = False  # never import TensorFlow in the master
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 75  # longer than common load balancers' idle timeouts
backlog = 2048
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "0") in ("1", "true") else None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def post_worker_init(worker):
    """Hide TensorFlow's ~330k long-lived objects from the GC: a full collection took ~190 ms (the p99)."""
    import gc
    import threading

    gc.freeze()
    registry = _registry(worker)
    if registry is not None:  # again once the models (loading in the background) are in memory
        threading.Thread(target=lambda: (registry.wait_until_settled(), gc.freeze()), name="gc-freeze",
                         daemon=True).start()


def _registry(worker):
    app = getattr(worker, "wsgi", None)
    return getattr(app, "extensions", {}).get("registry") if app is not None else None


def worker_exit(server, worker):
    """Drain every batcher so no queued request is left hanging on shutdown."""
    registry = _registry(worker)
    if registry is not None:
        registry.close()
