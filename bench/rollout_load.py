"""bench.rollout's clients: closed-loop keep-alive connections (one thread and one http.client connection each)
recording every answer's times, status, the version that computed it and the connection's client port."""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable

from bench.rollout_stats import Answer

VERSION_HEADER = "X-Model-Version"
MAX_ANSWERS = 500_000  # per connection: a bound on memory whatever the machine's speed


def answered_version(headers: Callable[[str], str | None], body: bytes) -> int | None:
    """The version an answer names: the X-Model-Version header, else the JSON body's "version"."""
    header = headers(VERSION_HEADER)
    if header and header.strip().isdigit():
        return int(header)
    if body[:1] == b"{":
        try:
            version = json.loads(body).get("version")
        except ValueError:
            return None
        return version if isinstance(version, int) else None
    return None


class Connection(threading.Thread):
    """One keep-alive connection posting `body` to `path` until stopped, the deadline or MAX_ANSWERS;
    `pause` seconds between requests (0: closed loop). A transport error is an answer with status 0."""

    def __init__(self, host: str, port: int, path: str, body: bytes, stop: threading.Event, deadline: float,
                 pause: float = 0.0, timeout: float = 30.0):
        super().__init__(name=f"rollout-{path}", daemon=True)
        self.host, self.server_port, self.path, self.body = host, port, path, body
        self.stop_event, self.deadline, self.pause, self.timeout = stop, deadline, pause, timeout
        self.answers: list[Answer] = []
        self.errors: dict[str, int] = {}  # transport errors (answers with status 0) by exception class
        self.port = 0  # the client side's port of the current socket

    def run(self) -> None:
        """Send, read, record, until told to stop."""
        headers = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection(self.host, self.server_port, timeout=self.timeout)
        while not self.stop_event.is_set() and time.monotonic() < self.deadline and len(self.answers) < MAX_ANSWERS:
            sent = time.monotonic()
            try:
                conn.request("POST", self.path, self.body, headers)
                if conn.sock is not None:
                    self.port = conn.sock.getsockname()[1]
                response = conn.getresponse()
                data = response.read()
                status, version = response.status, answered_version(response.getheader, data)
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
                status, version = 0, None
            self.answers.append(Answer(sent, time.monotonic(), status, version, self.port))
            if self.pause:
                self.stop_event.wait(self.pause)
        conn.close()


class Load:
    """`count` connections to one path of the server, started together and stopped together."""

    def __init__(self, host: str, port: int, path: str, body: bytes, count: int, deadline: float,
                 pause: float = 0.0):
        self._stop = threading.Event()
        self._make = lambda: Connection(host, port, path, body, self._stop, deadline, pause)
        self.connections = [self._make() for _ in range(count)]

    def __enter__(self) -> Load:
        for connection in self.connections:
            connection.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for connection in self.connections:
            connection.join(timeout=60)

    def add(self, count: int) -> None:
        """Open and start `count` more connections."""
        for _ in range(count):
            self.connections.append(connection := self._make())
            connection.start()

    def answers(self) -> list[list[Answer]]:
        """Every connection's answers so far (the lists themselves: they keep growing)."""
        return [c.answers for c in self.connections]

    def errors(self) -> dict[str, int]:
        """Transport errors over every connection, by exception class."""
        out: dict[str, int] = {}
        for connection in self.connections:
            for kind, count in list(connection.errors.items()):
                out[kind] = out.get(kind, 0) + count
        return out

    def ports(self) -> list[int]:
        """The client ports of the connections now."""
        return [c.port for c in self.connections if c.port]
