"""A bound on how long one request may take to arrive: SERVING_REQUEST_READ_TIMEOUT seconds from its
first byte to its last (request line, headers and the body the app reads), then 408 and close.

gthread waits for a connection's first byte on its poller (5 s, then the connection goes back to it),
but once a byte has arrived, the thread that took the connection reads the rest with blocking reads
and no bound: a client dripping a byte a second holds that thread as long as it likes. Here the
parser reads through a `DeadlineSocket`, which gives every read the time left as its timeout. When it
runs out the read raises `errors.RequestTimeout`: while the headers are read gunicorn hands it to the
worker's `handle_error` (408 in our JSON shape), while the app reads the body the app answers it (the
same JSON) and the connection closes after that answer.

A slow client then holds a thread at most that long. Many of them still fill every thread for that
long, again and again; only a buffering proxy in front (deploy/nginx/) takes them off the workers.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gunicorn import http
from gunicorn.http2 import negotiation

from app import errors

NOWAIT = getattr(socket, "MSG_DONTWAIT", 0)  # Linux: one non-blocking read before a timed one


class DeadlineSocket:
    """A connection's socket as its parser reads it: while armed, each `recv` gets the time left until
    the deadline (which starts at the first read) as its timeout, and 408 once it has passed."""

    __slots__ = ("sock", "seconds", "armed", "deadline", "request")

    def __init__(self, sock: Any, seconds: float) -> None:
        self.sock, self.seconds = sock, seconds
        self.armed, self.deadline, self.request = False, None, None

    def arm(self) -> None:
        """A new request: its deadline starts at its first read."""
        self.armed, self.deadline, self.request = True, None, None

    def disarm(self) -> None:
        """The request is answered: reads are unbounded again (gunicorn bounds its own drain)."""
        self.armed, self.deadline, self.request = False, None, None

    def gettimeout(self) -> float | None:
        """The socket's own timeout (gunicorn's body drain sets and restores it)."""
        return self.sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        """Set the socket's own timeout."""
        self.sock.settimeout(value)

    def recv(self, size: int) -> bytes:
        """One read, bounded by the deadline when armed."""
        if not self.armed:
            return self.sock.recv(size)
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.seconds
        remaining = self.deadline - now
        if remaining <= 0:
            raise self._expired()
        outer = self.sock.gettimeout()
        if outer is None and NOWAIT:  # bytes already here (the usual case) cost one recv, no mode switch or poll
            try:
                return self.sock.recv(size, NOWAIT)
            except BlockingIOError:
                pass
        self.sock.settimeout(remaining if outer is None else min(remaining, outer))
        try:
            return self.sock.recv(size)
        except TimeoutError:
            if outer is None or remaining <= outer:
                raise self._expired() from None
            raise  # the caller's own, shorter timeout
        finally:
            self.sock.settimeout(outer)

    def _expired(self) -> errors.RequestTimeout:
        if self.request is not None:
            self.request.must_close = True  # the rest of the body is unread: the answer closes
        return errors.RequestTimeout(f"the request did not arrive whole within {self.seconds:g} s",
                                     {"timeout_seconds": self.seconds})


def _source(conn: Any) -> DeadlineSocket | None:
    parser = getattr(conn, "parser", None)
    source = getattr(getattr(parser, "unreader", None), "sock", None)
    return source if isinstance(source, DeadlineSocket) else None


def begin(conn: Any, seconds: float) -> None:
    """(a worker thread, before gunicorn reads) Bound this request's reads; a new plain HTTP/1
    connection gets its parser here, reading through a `DeadlineSocket` (TLS and HTTP/2 are left as
    gunicorn makes them)."""
    if seconds <= 0 or conn.is_http2:
        return
    if conn.parser is None:
        if conn.initialized or conn.cfg.is_ssl or negotiation.prior_knowledge_allowed(conn.cfg, conn.client):
            return
        conn.parser = http.get_parser(conn.cfg, DeadlineSocket(conn.sock, seconds), conn.client)
    source = _source(conn)
    if source is not None:
        source.arm()


@contextmanager
def serving(conn: Any, req: Any) -> Iterator[None]:
    """While the app serves `req`: a body read that times out closes the connection after the answer;
    once answered, reads are unbounded again."""
    source = _source(conn)
    if source is not None:
        source.request = req
    try:
        yield
    finally:
        if source is not None:
            source.disarm()
