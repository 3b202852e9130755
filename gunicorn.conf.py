"""gunicorn settings: gthread workers, no preload (TensorFlow is not fork-safe), logs to stdout.

Models load in each worker after the fork, in a background thread, so /health
answers at once and /health/ready turns 200 when loading settles. The worker and
the hooks live in app/gunicorn/, the variables read here in app/settings.py
(`GunicornSettings`); this file only wires them.
"""
import os

from app.gunicorn.hooks import (  # noqa: F401 - gunicorn reads hooks by name
    child_exit,
    on_exit,
    on_starting,
    post_fork,
    post_worker_init,
    pre_fork,
    when_ready,
    worker_exit,
)
from app.settings import load_gunicorn_settings

_settings = load_gunicorn_settings()

bind = f"{_settings.host}:{_settings.port}"
worker_class = "app.gunicorn.worker.QueueTimedThreadWorker"
# Measured on 2 cores (docs/operations.md, worker layout): one worker per core, 4 threads each (more
# threads spend more CPU per request on GIL hand-offs); set WEB_CONCURRENCY to the number of cores.
workers = _settings.web_concurrency
threads = _settings.threads
preload_app = False  # never import TensorFlow in the master
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = 75  # longer than common load balancers' idle timeouts
backlog = 2048
accesslog = "-" if _settings.access_log else None
errorlog = "-"
logger_class = "app.observability.gunicorn_logs.ServingLogger"  # JSON lines with SERVING_LOG_FORMAT=json
loglevel = _settings.log_level
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No gunicornc control socket: nothing here uses it, and its default path ($HOME/.gunicorn) is shared by
# every instance on the machine and not writable in the image.
control_socket_disable = True
# TLS belongs at the load balancer; these serve HTTPS here for those who need it (docs/operations.md).
certfile = str(_settings.certfile) if _settings.certfile else None
keyfile = str(_settings.keyfile) if _settings.keyfile else None
