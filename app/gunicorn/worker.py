"""gunicorn's gthread worker, telling the app what each request met in its queue, sharing connections
evenly with the other workers, and answering gunicorn's own errors in our JSON error shape.

Under overload, requests wait in the worker's thread-pool queue before any of our code runs, so a
queue inside the app never fills. This worker stamps each request when gunicorn queues it and hands
the wait to the app (`app.gunicorn.queue_wait`); `app.api.admission` answers inference requests that
waited too long with 429 before Flask sees them.

Workers share one listening socket and the kernel wakes whichever it likes: in a burst of new
keep-alive connections one worker can take them all, and then serve them alone, on one core, for as
long as the clients stay (measured: 32 connections all on one of two workers for 15 s, 1.9k req/s
instead of 4.6k). So each worker publishes how many connections it holds in a table shared by all
(`app.gunicorn.table`), and a worker holding more than one connection more than the least loaded live
worker waits a millisecond before accepting, which lets that one take the connection. When the others
have taken nothing for `MAX_DEFER_S` (busy, or stuck), it stops deferring for `BUSY_PAUSE_S`: no
connection waits more than that long for a worker that will not come, and a large burst is not
accepted at one connection per wait.

Readiness (`app.serving.readiness`): the worker publishes its models' states in a second shared table.
A worker started after the instance has been ready (gunicorn replaced one) does not listen until its
models have settled, so no request waits for its load. Keep-alive connections are closed after
SERVING_KEEPALIVE_REQUESTS answers or SERVING_KEEPALIVE_SECONDS (`Connection: close`), and every answer
closes its connection once the master has begun to drain, so clients move to a worker or an instance
that stays. A stopping worker first accepts what the kernel already queued on the listener (those
clients connected before the stop), then lets gunicorn finish its requests.
"""
from __future__ import annotations

import errno
import os
import time
from datetime import datetime
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.gthread import TConn, ThreadWorker

from app.gunicorn import read_timeout
from app.gunicorn.http_errors import error_answer
from app.gunicorn.one_write import OneWriteHandling
from app.gunicorn.queue_wait import set_queue_wait
from app.gunicorn.table import ConnectionTable
from app.serving.control_worker import attach_control
from app.serving.readiness import InstanceReadiness, ReadinessTable

DEFER_S = 0.001           # how long a worker over its share waits before it looks again
MAX_DEFER_S = 0.005       # the longest a worker defers while the others take nothing
BUSY_PAUSE_S = 0.1        # then it accepts without deferring for this long
TOLERANCE = 1             # connections a worker may hold above the least loaded one
NOT_LISTENING = 1 << 40   # what a worker holding its accepts publishes: nobody defers to it

# Created at import, i.e. in the master (gunicorn imports the worker class there), inherited by every worker.
TABLE = ConnectionTable()
READINESS = ReadinessTable(TABLE.slots)


def should_defer(own: int, others: list[int]) -> bool:
    """Whether a worker holding `own` connections lets the others (holding `others`) accept first."""
    return bool(others) and own > min(others) + TOLERANCE


class QueueTimedThreadWorker(OneWriteHandling, ThreadWorker):
    """gthread, plus queue waits, balanced accepts, JSON errors, bounded request reads, one write per answer."""

    def init_process(self) -> None:
        # A slot by spawn order (`age`): unique among live workers unless SLOTS spawns apart.
        self._slot = TABLE.claim(preferred=getattr(self, "age", 0), master=self.ppid)
        self._defer_until = 0.0
        self._deferring_since: float | None = None  # this run of deferrals (the others took nothing)
        self._last_deferral = float("-inf")
        self._eager_until = float("-inf")  # the others were busy: accept without deferring until then
        self._hold_accepts = READINESS.ready_once  # a replacement: listen once the models have settled
        self._took_queued = False
        self._keepalive_requests, self._keepalive_seconds, self._read_timeout = 1000, 0.0, 0.0
        self._publish()
        super().init_process()

    def load_wsgi(self) -> None:
        """gunicorn's, then attach the app's registry to the instance's readiness table."""
        super().load_wsgi()
        app = self.wsgi
        registry = getattr(app, "extensions", {}).get("registry")
        settings = getattr(app, "extensions", {}).get("settings")
        if settings is not None:
            self._keepalive_requests, self._keepalive_seconds = settings.keepalive_requests, settings.keepalive_seconds
            self._read_timeout = settings.request_read_timeout
        if registry is None:
            self._hold_accepts = False
            return
        if self._slot is not None:
            instance = InstanceReadiness(READINESS, self._slot, os.getpid(), self.cfg.workers,
                                         lambda slot, pid: TABLE.holds(slot, pid, self.ppid))
            registry.attach_instance(instance)
            attach_control(app, instance, lambda slot: TABLE.is_live(slot, self.ppid))  # load/unload: every worker
        registry.when_settled(self._models_settled)

    def _models_settled(self) -> None:
        """(the loading thread) Listen from now on, waking the main loop."""
        self._hold_accepts = False
        self.method_queue.defer(lambda: None)

    def _publish(self) -> None:
        if self._slot is not None:  # a worker not listening yet must not be waited for
            TABLE.publish(self._slot, NOT_LISTENING if self._hold_accepts else self.nr_conns)

    def accept(self, listener: Any) -> None:
        now = time.monotonic()
        if self._slot is not None and now >= self._eager_until:
            if not should_defer(self.nr_conns, TABLE.others(self._slot, self.ppid)):
                self._deferring_since = None  # within its share (the others took what it left)
            else:
                if self._deferring_since is None or now - self._last_deferral > 3 * DEFER_S:
                    self._deferring_since = now  # a new run of deferrals
                if now - self._deferring_since < MAX_DEFER_S:
                    self._last_deferral, self._defer_until = now, now + DEFER_S
                    super().set_accept_enabled(False)
                    return
                self._eager_until, self._deferring_since = now + BUSY_PAUSE_S, None
        super().accept(listener)
        self._publish()

    def set_accept_enabled(self, enabled: bool) -> None:
        if not enabled and not self.alive and not self._hold_accepts and not self._took_queued:
            self._took_queued = True
            self._accept_queued()
        super().set_accept_enabled(enabled and not self._hold_accepts and time.monotonic() >= self._defer_until)

    def _accept_queued(self) -> None:
        """Stopping: take every connection the kernel has already queued (each answer then closes it)."""
        for listener in self.sockets:
            listener.setblocking(False)
            while self.nr_conns < self.worker_connections:
                try:
                    client, address = listener.accept()
                except OSError as exc:
                    if exc.errno == errno.ECONNABORTED:
                        continue  # that client gave up; more may be queued
                    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINVAL):
                        break
                    raise
                self.nr_conns += 1
                client.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gunicorn's, closing the connection once draining or after its share of requests or seconds."""
        served = conn.serving_served = getattr(conn, "serving_served", 0) + 1
        if served == 1:
            conn.serving_opened_at = time.monotonic()
        if (served >= self._keepalive_requests or READINESS.draining
                or (self._keepalive_seconds and time.monotonic() - conn.serving_opened_at >= self._keepalive_seconds)):
            req.must_close = True
        with read_timeout.serving(conn, req):
            return super().handle_request(req, conn)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        self._publish()  # connections closed since the last look
        remaining = self._defer_until - time.monotonic()
        if remaining > 0:  # wake when the deferral ends (gunicorn's loop then listens again)
            timeout = min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)

    def enqueue_req(self, conn: Any) -> None:
        conn.serving_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        queued_at = getattr(conn, "serving_queued_at", None)
        set_queue_wait(None if queued_at is None else time.monotonic() - queued_at)
        read_timeout.begin(conn, self._read_timeout)
        return super().handle(conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own handle_error (same statuses, log lines and access line), answering JSON."""
        request_start = datetime.now()
        addr = addr or ("", -1)  # a unix socket
        answer = error_answer(exc)
        if answer.client_error:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
            if req is None and isinstance(exc, (http.InvalidHeader, http.InvalidHeaderName)):
                req = getattr(exc, "req", None)  # for the access log
        elif hasattr(req, "uri"):
            self.log.exception("Error handling request %s %s", getattr(req, "method", ""), req.uri)
        else:
            self.log.exception("Error handling request (no URI read)")
        payload = answer.to_bytes()
        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            resp = Response(req, client, self.cfg)
            resp.status, resp.response_length = f"{answer.status} {answer.reason}", len(payload)
            self.log.access(resp, req, environ, datetime.now() - request_start)
        try:
            util.write_nonblock(client, payload)
        except Exception:  # noqa: BLE001 - the client may be gone; nothing left to tell it
            self.log.debug("Failed to send error message.")
