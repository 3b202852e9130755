"""The worker's accept balancing rule and its shared table (the end-to-end tests of the worker are in tests/e2e)."""
from __future__ import annotations

import gc
import hashlib
import importlib
import inspect
import json
import multiprocessing
import os
import queue
import re
import socket
import threading
import types
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import RequestParser
from gunicorn.http import errors as http
from gunicorn.http.wsgi import Response

from app import errors
from app.gunicorn import hooks, one_write
from app.gunicorn.http_errors import error_answer
from app.gunicorn.read_timeout import DeadlineSocket
from app.gunicorn.table import ConnectionTable, process_identity
from app.gunicorn.worker import TOLERANCE, should_defer

FORK = multiprocessing.get_context("fork")


def test_a_worker_over_its_share_lets_the_least_loaded_one_accept():
    assert should_defer(own=TOLERANCE + 1, others=[0, 5])
    assert should_defer(own=20, others=[10])


def test_a_worker_within_its_share_accepts_at_once():
    assert not should_defer(own=TOLERANCE, others=[0])
    assert not should_defer(own=8, others=[8, 9])


def test_the_only_live_worker_accepts_at_once():
    assert not should_defer(own=50, others=[])


def _claim_when_told(table: ConnectionTable, go, claimed, done) -> None:
    go.wait()
    claimed.put(table.claim(preferred=0, master=os.getppid()))
    done.wait()  # stay alive: a dead worker's slot may rightly be taken again


@pytest.fixture
def workers():
    """Start forked children that each claim a slot of `table` at the same moment; yield their slots."""
    started = []

    def start(table: ConnectionTable, count: int) -> list[int | None]:
        go, done, claimed = FORK.Event(), FORK.Event(), FORK.Queue()
        started.append(done)
        procs = [FORK.Process(target=_claim_when_told, args=(table, go, claimed, done)) for _ in range(count)]
        for proc in procs:
            proc.start()
        started.extend(procs)
        go.set()
        return [claimed.get(timeout=60) for _ in procs]

    yield start
    for item in started:
        if isinstance(item, multiprocessing.process.BaseProcess):
            item.join(timeout=30)
        else:
            item.set()


def test_a_claim_waits_for_the_lock_the_table_shares_with_every_fork():
    """Two workers checking the same free slot at once would both take it: claims run one at a time."""
    table = ConnectionTable(slots=4, claim_timeout=120)
    go, done, claimed = FORK.Event(), FORK.Event(), FORK.Queue()
    child = FORK.Process(target=_claim_when_told, args=(table, go, claimed, done))
    with table._lock:  # another worker is claiming
        child.start()
        go.set()
        with pytest.raises(queue.Empty):
            claimed.get(timeout=0.5)
    try:
        assert claimed.get(timeout=60) == 0
    finally:
        done.set()
        child.join(timeout=30)


def test_workers_claiming_together_get_different_slots(workers):
    slots = workers(ConnectionTable(slots=16), 8)
    assert None not in slots and len(set(slots)) == 8, slots


def test_a_live_worker_keeps_its_slot_and_a_full_table_claims_none(workers):
    table = ConnectionTable(slots=3)
    assert sorted(workers(table, 3)) == [0, 1, 2]
    assert workers(table, 1) == [None]


def test_a_dead_workers_slot_is_claimed_again():
    table = ConnectionTable(slots=1)
    proc = FORK.Process(target=table.claim, kwargs={"preferred": 0, "master": os.getpid()})
    proc.start()
    proc.join(timeout=30)
    assert not table.is_live(0, os.getpid())
    assert table.claim(preferred=0, master=os.getppid()) == 0


def test_a_reused_pid_does_not_pass_for_the_worker_that_held_it():
    """A process that has the slot's pid but not its parent or its start time is not that worker."""
    table = ConnectionTable(slots=2)
    assert table.claim(preferred=0, master=os.getppid()) == 0
    assert table.is_live(0, master=os.getppid())
    assert not table.is_live(0, master=os.getpid())  # alive, but not a child of this master
    parent, started = process_identity(os.getpid())
    table._set(0, 1, started + 1)  # the same pid, started at another time
    assert not table.is_live(0, master=parent)
    assert table.claim(preferred=0, master=parent) == 0 and table.is_live(0, master=parent)


def test_others_reads_the_connections_of_live_workers_only():
    table = ConnectionTable(slots=3)
    master = os.getppid()
    mine = table.claim(preferred=0, master=master)
    table._set(1, 0, 1)  # pid 1 is not a child of our master
    table._set(1, 2, 7)
    table.publish(mine, 4)
    assert table.others(mine, master) == []
    assert table.others(2, master) == [4]


@pytest.mark.parametrize("exc, status, code", [
    (http.LimitRequestLine(9000, 4094), 414, "uri_too_long"),
    (http.LimitRequestHeaders("limit request headers fields size"), 431, "header_fields_too_large"),
    (http.UnsupportedTransferCoding("gzip"), 501, "unsupported_transfer_coding"),
    (http.InvalidRequestLine("GET"), 400, "invalid_request_line"),
    (http.InvalidChunkSize(b"zz"), 400, "invalid_chunked_body"),
    (http.InvalidResponseHeader("bad\r\n"), 500, "internal_error"),
    (RuntimeError("a bug"), 500, "internal_error"),
])
def test_gunicorns_errors_answer_our_json_error_shape(exc, status, code):
    head, _, body = error_answer(exc).to_bytes().partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Content-Type: application/json" in head.split(b"\r\n")
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["details"] == {}
    assert ("a bug" not in error["message"]) and ("bad" not in error["message"] or status != 500)


class RecordingRegistry:
    """Stands in for the model registry: records what the hooks call."""

    def __init__(self) -> None:
        self.closed = False
        self.settled = threading.Event()

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        self.settled.set()
        return True

    def close(self) -> None:
        self.closed = True


def _worker_with(registry: RecordingRegistry | None) -> types.SimpleNamespace:
    extensions = {} if registry is None else {"registry": registry}
    return types.SimpleNamespace(wsgi=types.SimpleNamespace(extensions=extensions))


def test_post_worker_init_freezes_the_gc_and_waits_in_the_background_for_the_models():
    registry = RecordingRegistry()
    gc.unfreeze()
    try:
        hooks.post_worker_init(_worker_with(registry))
        assert gc.get_freeze_count() > 0
        assert registry.settled.wait(timeout=30)
    finally:
        gc.unfreeze()


def test_worker_exit_closes_the_registry():
    registry = RecordingRegistry()
    hooks.worker_exit(server=None, worker=_worker_with(registry))
    assert registry.closed
    hooks.worker_exit(server=None, worker=_worker_with(None))  # an app without a registry: nothing to close


def test_a_request_read_timeout_answers_408_in_our_json_error_shape():
    head, _, body = error_answer(errors.RequestTimeout("too slow", {"timeout_seconds": 2.0})).to_bytes().partition(
        b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in head.split(b"\r\n")
    assert json.loads(body) == {"error": {"code": "request_timeout", "message": "too slow",
                                          "details": {"timeout_seconds": 2.0}}}


def test_an_armed_read_gets_408_at_the_deadline_and_a_disarmed_one_the_sockets_own_timeout():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        source = DeadlineSocket(ours, seconds=0.2)
        source.arm()
        theirs.sendall(b"GET")
        assert source.recv(10) == b"GET"  # the deadline starts here
        with pytest.raises(errors.RequestTimeout):
            source.recv(10)
        with pytest.raises(errors.RequestTimeout):  # passed: no more waiting
            source.recv(10)
        assert ours.gettimeout() is None  # the socket is left as it was
        source.disarm()
        source.settimeout(0.1)  # gunicorn's bounded body drain
        with pytest.raises(TimeoutError):
            source.recv(10)


@pytest.mark.parametrize("name, digest", sorted(one_write.GUNICORN_SOURCES.items()))
def test_the_gunicorn_methods_one_write_copies_are_those_it_was_written_against(name, digest):
    """A gunicorn upgrade that changes one of them must be read before app/gunicorn/one_write.py follows it."""
    module, owner, method = name.rsplit(".", 2)
    source = inspect.getsource(getattr(getattr(importlib.import_module(module), owner), method))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest


class RecordingSocket:
    """Stands in for a client socket: records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def _response(method: str = "GET", kind: type = one_write.OneWriteResponse) -> Any:
    cfg = Config()
    req = next(RequestParser(cfg, iter([f"{method} /x HTTP/1.1\r\nHost: x\r\n\r\n".encode()]), ("127.0.0.1", 1)))
    return kind(req, RecordingSocket(), cfg)


def _writes(resp: Any) -> list[bytes]:
    return [re.sub(rb"Date: [^\r]*\r\n", b"", write) for write in resp.sock.writes]


def test_a_whole_known_length_body_goes_out_with_its_headers_in_one_write():
    ours, theirs = _response(), _response(kind=Response)
    for resp in (ours, theirs):
        resp.start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
        resp.write(b'{"a": true}')
        resp.close()
    assert len(ours.sock.writes) == 1 and len(theirs.sock.writes) == 2
    assert _writes(ours) == [b"".join(_writes(theirs))]  # the same bytes
    assert ours.sock.writes[0].endswith(b'Content-Length: 11\r\n\r\n{"a": true}')


@pytest.mark.parametrize("method, headers, chunks", [
    ("GET", [], [b"ab", b"cd"]),  # streamed: chunked
    ("GET", [("Content-Length", "4")], [b"ab", b"cd"]),  # one length, two chunks
    ("GET", [("Content-Length", "4")], [b"abcdef"]),  # more than its length: cut to it
    ("HEAD", [("Content-Length", "4")], [b"abcd"]),  # no body on the wire
])
def test_other_answers_are_written_as_gunicorn_writes_them(method, headers, chunks):
    ours, theirs = _response(method), _response(method, Response)
    for resp in (ours, theirs):
        resp.start_response("200 OK", list(headers))
        for chunk in chunks:
            resp.write(chunk)
        resp.close()
    assert _writes(ours) == _writes(theirs)


class _CountingSocket:
    """A real socket that counts the timeout switches made on it."""

    def __init__(self, sock):
        self.sock, self.switches = sock, 0

    def gettimeout(self):
        return self.sock.gettimeout()

    def settimeout(self, value):
        self.switches += 1
        self.sock.settimeout(value)

    def recv(self, size, flags=0):
        return self.sock.recv(size, flags)


def test_a_deadline_read_of_bytes_already_there_switches_no_timeout_and_a_waiting_one_does():
    import socket
    import threading

    from app.gunicorn.read_timeout import DeadlineSocket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        counting = _CountingSocket(ours)
        reader = DeadlineSocket(counting, 10.0)
        reader.arm()
        theirs.sendall(b"GET / HTTP/1.1\r\n")
        assert reader.recv(100) == b"GET / HTTP/1.1\r\n" and counting.switches == 0
        threading.Timer(0.2, theirs.sendall, [b"Host: x\r\n"]).start()
        assert reader.recv(100) == b"Host: x\r\n"  # nothing there yet: a timed, blocking read
        assert counting.switches == 2 and ours.gettimeout() is None
