"""SERVING_REQUEST_READ_TIMEOUT against a real gunicorn over raw sockets: a client that stops (or drips)
inside its headers or its body is answered 408 in our JSON shape and closed, and the threads it held
serve others again (app/gunicorn/read_timeout.py)."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.support import ROOT, running_server

pytestmark = pytest.mark.e2e

TIMEOUT_S = 2
BOUND_S = 20  # generous: the answer is due after TIMEOUT_S, a busy machine may take longer
THREADS = 2
IRIS = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
POST_HEAD = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(IRIS))


@pytest.fixture(scope="module")
def base():
    env = {"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": str(THREADS), "SERVING_REQUEST_READ_TIMEOUT": str(TIMEOUT_S),
           "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(ROOT / "models", env) as url:
        yield url


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took."""
    start, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - start


def _json_error(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert len(body) == int(headers["content-length"])
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}
    return int(status_line.split()[1]), error


def _stalled(base: str, sent: bytes) -> bytes:
    """Send `sent` on a new connection, then nothing more; what the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", _port(base)), timeout=BOUND_S + 10) as sock:
        sock.sendall(sent)
        data, seconds = _until_closed(sock)
    assert seconds < BOUND_S
    return data


def test_a_client_that_stops_inside_its_headers_gets_408_json_and_is_closed(base):
    status, error = _json_error(_stalled(base, b"GET /health HTTP/1.1\r\nHost: x\r\nAccept: */"))
    assert status == 408 and error["code"] == "request_timeout" and error["details"] == {"timeout_seconds": TIMEOUT_S}


def test_a_client_that_stops_inside_its_body_gets_408_json_and_is_closed(base):
    status, error = _json_error(_stalled(base, POST_HEAD + IRIS[: len(IRIS) // 2]))
    assert status == 408 and error["code"] == "request_timeout"


def test_a_client_dripping_its_headers_is_cut_at_the_deadline_not_at_an_idle_gap(base):
    """A byte every 0.2 s never leaves the socket idle for TIMEOUT_S; the deadline still ends it."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 400 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", _port(base)), timeout=BOUND_S + 10) as sock:
        start, sent = time.monotonic(), 0
        try:
            while sent < len(request) and time.monotonic() - start < BOUND_S:
                sock.sendall(request[sent:sent + 1])
                sent += 1
                time.sleep(0.2)
        except OSError:  # closed by the server under our feet
            pass
        data, _ = _until_closed(sock)
    assert time.monotonic() - start < BOUND_S and sent < len(request)
    status, error = _json_error(data)
    assert status == 408 and error["code"] == "request_timeout"


def test_a_kept_alive_connection_gets_a_new_deadline_for_each_request(base):
    with requests.Session() as session:
        for _ in range(3):  # longer than TIMEOUT_S in all, each request quick
            assert session.get(f"{base}/health", timeout=30).status_code == 200
            time.sleep(TIMEOUT_S * 0.75)


def test_health_answers_again_once_slow_clients_holding_every_thread_are_cut(base):
    stalled: list[bytes] = []
    clients = [threading.Thread(target=lambda: stalled.append(_stalled(base, POST_HEAD + b"{")))
               for _ in range(THREADS * 2)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(BOUND_S * 3)
    assert [_json_error(data)[0] for data in stalled] == [408] * len(clients)
    assert requests.get(f"{base}/health", timeout=BOUND_S).status_code == 200
    answer = requests.post(f"{base}/predict", data=IRIS, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200 and "predictions" in answer.json()
