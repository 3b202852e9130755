"""A real gunicorn writes each non-streamed answer's headers and body in one write (app/gunicorn/one_write.py):
over loopback, the first read after a request holds the whole answer."""
from __future__ import annotations

import socket

import pytest

from tests.support import ROOT, running_server

pytestmark = pytest.mark.e2e

IRIS = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
ROUNDS = 20


@pytest.fixture(scope="module")
def port():
    with running_server(ROOT / "models", {"WEB_CONCURRENCY": "1", "SERVING_MAX_QUEUE_WAIT_MS": "0"}) as base:
        yield int(base.rsplit(":", 1)[1])


def _first_read_is_whole(sock: socket.socket, request: bytes) -> bool:
    """Send `request`; whether the first read holds the headers and all Content-Length bytes of the body
    (the rest, if any, is read so the connection can serve the next one)."""
    sock.sendall(request)
    data = sock.recv(1 << 20)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    whole = len(body) == length and length > 0
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "the connection closed inside the body"
        body += chunk
    return whole


@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(IRIS), IRIS),
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",  # an error answer (404, JSON)
], ids=["health", "predict", "not-found"])
def test_each_answer_arrives_in_one_read(port, request_bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        split = [i for i in range(ROUNDS) if not _first_read_is_whole(sock, request_bytes)]
    assert split == []
