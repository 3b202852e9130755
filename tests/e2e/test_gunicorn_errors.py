"""gunicorn's own error answers and the body reader, against a real gunicorn over raw sockets.

What gunicorn refuses before the app runs answers our JSON error shape (app/gunicorn/http_errors.py);
what the app refuses while reading a body (app/api/body.py) is never a 500, never a body cut at the
limit, and never "empty".
"""
from __future__ import annotations

import gzip
import json
import socket

import pytest

from tests.support import ROOT, running_server

pytestmark = pytest.mark.e2e

LIMIT = 4096
IRIS = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


@pytest.fixture(scope="module")
def port():
    env = {"WEB_CONCURRENCY": "1", "SERVING_MAX_CONTENT_LENGTH": str(LIMIT), "SERVING_MAX_QUEUE_WAIT_MS": "0"}
    with running_server(ROOT / "models", env) as base:
        yield int(base.rsplit(":", 1)[1])


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a new connection, close our side, and read one response: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before a response: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        while len(body) < int(headers["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "the connection closed inside the body"
            body += chunk
    return int(status_line.split()[1]), headers, body


def json_error(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return error


@pytest.mark.parametrize("raw, status, code", [
    (b"GARBAGE\r\n\r\n", 400, "invalid_request_line"),
    (b"GET /health HTTP/7.1\r\nHost: x\r\n\r\n", 400, "invalid_http_version"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "invalid_header"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "header_fields_too_large"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
     431, "header_fields_too_large"),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n", 501, "unsupported_transfer_coding"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: 100-banana\r\n\r\n", 417, "expectation_failed"),
], ids=["request line", "http version", "header name", "uri too long", "header too large", "too many headers",
        "transfer coding", "expectation"])
def test_gunicorns_own_errors_answer_our_json_error_shape(port, raw, status, code):
    answer_status, headers, body = exchange(port, raw)
    assert answer_status == status
    assert json_error(headers, body)["code"] == code


def _chunked_predict(wire: bytes, *extra_headers: bytes) -> bytes:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    return head + b"".join(h + b"\r\n" for h in extra_headers) + b"\r\n" + wire


def chunks(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def test_a_chunked_body_within_the_limit_is_answered(port):
    status, headers, body = exchange(port, _chunked_predict(chunks(IRIS[:10], IRIS[10:])))
    assert status == 200 and len(json.loads(body)["predictions"]) == 1


@pytest.mark.parametrize("parts", [(b"[" * (LIMIT + 1),), (IRIS, b" " * LIMIT)],
                         ids=["larger than the limit", "valid JSON padded past the limit"])
def test_a_chunked_body_over_the_limit_answers_413_not_a_cut_body(port, parts):
    status, headers, body = exchange(port, _chunked_predict(chunks(*parts)))
    assert status == 413 and json_error(headers, body)["code"] == "payload_too_large"


@pytest.mark.parametrize("wire", [
    b"zz\r\n" + IRIS + b"\r\n0\r\n\r\n",
    b"%x\r\n%sXY0\r\n\r\n" % (len(IRIS), IRIS),
    b"%x\r\n%s\r\n" % (len(IRIS), IRIS),
    b"%x\r\n%s" % (len(IRIS) + 10, IRIS),
], ids=["bad chunk size", "missing chunk terminator", "no last chunk", "cut inside a chunk"])
def test_malformed_chunking_answers_400_invalid_chunked_body(port, wire):
    status, headers, body = exchange(port, _chunked_predict(wire))
    assert status == 400 and json_error(headers, body)["code"] == "invalid_chunked_body"


@pytest.mark.parametrize("payload", [gzip.compress(IRIS) + b"trailing", gzip.compress(IRIS)[:-4]],
                         ids=["trailing garbage", "cut trailer"])
def test_a_gzip_body_that_does_not_end_exactly_answers_400(port, payload):
    raw = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    status, headers, body = exchange(port, raw)
    assert status == 400 and json_error(headers, body)["code"] == "invalid_encoding"


def test_a_gzip_chunked_body_is_answered(port):
    packed = gzip.compress(IRIS)
    status, headers, body = exchange(port, _chunked_predict(chunks(packed[:9], packed[9:]), b"Content-Encoding: gzip"))
    assert status == 200 and len(json.loads(body)["predictions"]) == 1


def test_a_gzip_transfer_coding_before_chunked_is_undone(port):
    """gunicorn accepts `Transfer-Encoding: gzip, chunked` and undoes only the chunking."""
    raw = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunks(gzip.compress(IRIS)))
    status, headers, body = exchange(port, raw)
    assert status == 200 and len(json.loads(body)["predictions"]) == 1
