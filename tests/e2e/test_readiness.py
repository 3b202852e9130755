"""Readiness answers for the whole instance, whichever worker takes the probe (app/serving/readiness.py).

Two gunicorn workers serve `fast` and `slow`. `slow`'s custom_objects.py holds the first worker that
imports it until the test creates a release file: that worker is slowed while loading, the other is not.
Requests for a version still LOADING answer 503 at once (SERVING_LOADING_WAIT=0), so a 200 is proof that
the request met no load.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests import model_builders
from tests.e2e.test_worker_balance import _established_on, _held_by
from tests.support import ROOT, children, free_port, running_server, until

pytestmark = pytest.mark.e2e

GATE = '''\
import os
import time
from pathlib import Path

here = Path(__file__).parent
try:  # the first worker to import this is the slow one
    os.close(os.open(here / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except FileExistsError:
    pass
else:
    while not (here / "release").exists():
        time.sleep(0.02)
CUSTOM_OBJECTS = {}
'''
ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


def _ready(base: str) -> requests.Response:
    return requests.get(base + "/health/ready", timeout=10)


def _probe_until(base: str, predicate, what: str) -> requests.Response:
    """Probe readiness until `predicate(response)` holds; that response (a 503 is falsy: not returned by until)."""
    found: list[requests.Response] = []
    until(lambda: predicate(r := _ready(base)) and (found.append(r) or True), what)
    return found[-1]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A model folder whose `slow` version holds its first loader until `slow/release` exists."""
    root = tmp_path_factory.mktemp("gated")
    model_builders.dense(root / "fast.keras")
    model_builders.dense(root / "slow" / "1" / "model.keras")
    (root / "slow" / "custom_objects.py").write_text(GATE)
    return root


@pytest.fixture(scope="module")
def server(gated):
    env = {"WEB_CONCURRENCY": "2", "SERVING_ALLOW_CUSTOM_CODE": "true", "SERVING_LOADING_WAIT": "0"}
    with running_server(gated, env, wait_ready=False) as base:
        yield base


def _probe_over(port: int, sockets: list[socket.socket]) -> tuple[int, bytes]:
    """One probe on each kept-alive socket in turn: (status, body) of the last, asserting each is 503."""
    body = b""
    for client in sockets:
        client.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            answer += client.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        body = answer.split(b"\r\n\r\n", 1)[1]
    return 503, body


def _length(answer: bytes) -> int:
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    return int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])


def test_readiness_is_503_until_every_worker_has_loaded_then_no_request_waits(server, gated):
    port = int(server.rsplit(":", 1)[1])
    until(lambda: (gated / "slow" / "claimed").exists(), "a worker holds slow's load")
    first = _probe_until(server, lambda r: r.json().get("workers", {}).get("loaded") == 1, "the fast worker loaded")
    assert first.status_code == 503
    assert {"model": "slow", "version": 1, "state": "LOADING", "workers": 1} in first.json()["not_ready"]
    assert first.json()["workers"] == {"expected": 2, "started": 2, "loaded": 1}

    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        for _ in range(40):  # 320 probes on 8 kept-alive connections, held by both workers
            _probe_over(port, clients)
        held = [_held_by(pid, _established_on(port)) for pid in children(server.pid)]
        assert sorted(held)[0] >= 1, held  # both workers answered probes
    finally:
        for client in clients:
            client.close()
    assert requests.get(server + "/v2/health/ready", timeout=10).status_code == 400
    assert requests.get(server + "/v2/models/slow/ready", timeout=10).status_code == 400
    status = requests.get(server + "/v1/models/slow", timeout=10).json()["model_version_status"]
    assert status[0]["state"] == "LOADING"  # whichever worker answers: one of them is still loading

    (gated / "slow" / "release").touch()
    ready = _probe_until(server, lambda r: r.status_code == 200, "ready")
    assert ready.json()["workers"] == {"expected": 2, "started": 2, "loaded": 2}
    with ThreadPoolExecutor(16) as pool:  # fresh connections: both workers take some
        statuses = list(pool.map(lambda _: requests.post(server + "/predict", json={"model": "slow", **ROW},
                                                         timeout=30).status_code, range(200)))
    assert statuses == [200] * 200
    print(f"\n320 probes while one worker loaded: all 503 (held by workers {held}); after the first 200, "
          f"{statuses.count(200)} of 200 parallel requests answered 200 (SERVING_LOADING_WAIT=0)")
    assert requests.get(server + "/v2/models/slow/ready", timeout=10).status_code == 200
    assert requests.get(server + "/v1/models/slow", timeout=10).json()["model_version_status"][0]["state"] == \
        "AVAILABLE"


def test_a_replaced_worker_takes_no_request_until_it_has_loaded(server, gated):
    port = int(server.rsplit(":", 1)[1])
    assert _ready(server).status_code == 200
    for name in ("claimed", "release"):
        (gated / "slow" / name).unlink()
    old = children(server.pid)
    os.kill(old[0], signal.SIGKILL)  # gunicorn starts another, which loads again (and is held)
    until(lambda: (gated / "slow" / "claimed").exists(), "the new worker holds slow's load")
    new = until(lambda: [pid for pid in children(server.pid) if pid not in old], "a new worker")[0]
    with ThreadPoolExecutor(8) as pool:
        probes = list(pool.map(lambda _: _ready(server), range(200)))
        statuses = list(pool.map(lambda _: requests.post(server + "/predict", json={"model": "slow", **ROW},
                                                         timeout=30).status_code, range(200)))
    assert [p.status_code for p in probes] == [200] * 200
    assert probes[-1].json()["workers"] == {"expected": 2, "started": 2, "loaded": 1}
    assert statuses == [200] * 200  # none met the new worker's load (it would answer 503 at once)
    assert _held_by(new, _established_on(port, ("01", "06", "08"))) == 0
    print(f"\nwhile the replacement loaded: {[p.status_code for p in probes].count(200)} of 200 probes 200, "
          f"{statuses.count(200)} of 200 requests 200, none on the new worker")

    (gated / "slow" / "release").touch()
    until(lambda: _ready(server).json()["workers"]["loaded"] == 2, "the new worker has loaded")
    taken = 0
    for _ in range(20):  # now it takes connections again (it listens right after it has published)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        try:
            for client in clients:
                client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            for client in clients:
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
            taken = _held_by(new, _established_on(port))
        finally:
            for client in clients:
                client.close()
        if taken:
            break
        time.sleep(0.5)
    assert taken >= 1


def test_an_empty_model_folder_starts_not_ready_saying_so(tmp_path):
    with running_server(tmp_path, {"WEB_CONCURRENCY": "1"}, wait_ready=False) as base:
        ready = _probe_until(base, lambda r: r.json().get("reason"), "a reason")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "SERVING_MODEL_DIR holds no model"


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: (p / "a-file").write_text("x") and p / "a-file"])
def test_a_missing_model_folder_stops_gunicorn_naming_the_variable(tmp_path, make):
    model_dir = make(tmp_path)
    env = {**os.environ, "PORT": str(free_port()), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(model_dir)}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"Error: SERVING_MODEL_DIR='{model_dir}'" in done.stdout + done.stderr
