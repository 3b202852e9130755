"""Load and unload through the control API, carried out by every worker of a real gunicorn (two workers).

Each check of what the workers serve goes over kept-alive connections held by both workers (counted in
/proc, as tests/e2e/test_worker_balance.py does), so an answer from each worker is seen; each worker's own
report is read from the runtime folder (SERVING_RUNTIME_DIR: results/<pid>.json).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from tests import model_builders
from tests.e2e.test_worker_balance import _established_on, _held_by
from tests.support import children, running_server, until

pytestmark = pytest.mark.e2e

TOKEN = "e2e-control-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = {"model": "m", "instances": [[0.1, 0.2, 0.3, 0.4]]}
CONNECTIONS = 16  # kept alive at once: the balanced accepts give each of the two workers some


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("control-models")
    model_builders.dense(root / "m" / "1" / "model.keras")
    model_builders.dense(root / "other.keras", seed=2)
    model_builders.corrupt(root / "broken" / "1" / "model.h5")
    return root


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("control-runtime")


@pytest.fixture(scope="module")
def server(model_dir, runtime):
    env = {"WEB_CONCURRENCY": "2", "SERVING_API_TOKENS": TOKEN, "SERVING_STRICT_READINESS": "false",
           "SERVING_RUNTIME_DIR": str(runtime), "SERVING_LOADING_WAIT": "0"}
    with running_server(model_dir, env) as base:
        yield base


def _exchange(client: socket.socket, request: bytes) -> tuple[int, dict]:
    """One request on a kept-alive socket: (status, JSON body)."""
    client.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client.recv(65536)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += client.recv(65536)
    return int(head.split()[1]), json.loads(body[:length])


def _predict_in_every_worker(base: str) -> list[tuple[int, dict]]:
    """/predict for `m` over CONNECTIONS kept-alive connections, each worker holding at least one."""
    port = int(base.rsplit(":", 1)[1])
    payload = json.dumps(PREDICT).encode()
    request = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    for _ in range(20):  # the kernel may hand a burst to one worker; try again until both hold some
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(CONNECTIONS)]
        try:
            for client in clients:
                assert _exchange(client, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
            held = [_held_by(pid, _established_on(port)) for pid in children(base.pid)]
            if len(held) == 2 and min(held) >= 1:
                return [_exchange(client, request) for client in clients]
        finally:
            for client in clients:
                client.close()
        time.sleep(0.5)
    raise AssertionError(f"the connections never reached both workers: {held}")


def _post(base: str, path: str, body: dict | None = None, headers: dict | None = None) -> requests.Response:
    return requests.post(base + path, json=body, headers=headers, timeout=180)


def _results(runtime: Path, pid: int) -> dict:
    path = runtime / "results" / f"{pid}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _assert_unloaded(answers: list[tuple[int, dict]]) -> None:
    statuses = sorted({status for status, _ in answers})
    assert set(statuses) <= {404, 503}, answers[:3]
    assert all("error" in body for _, body in answers)


def test_load_and_unload_need_a_configured_token(model_dir):
    with running_server(model_dir, {"WEB_CONCURRENCY": "1", "SERVING_STRICT_READINESS": "false"}) as base:
        for action in ("load", "unload"):
            answer = _post(base, f"/v2/repository/models/m/{action}")
            assert answer.status_code == 403 and "token" in answer.json()["error"]


def test_load_and_unload_without_the_token_answer_401_and_change_nothing(server, runtime):
    for action in ("load", "unload"):
        answer = _post(server, f"/v2/repository/models/m/{action}", headers={"Authorization": "Bearer wrong"})
        assert answer.status_code == 401, answer.text
        assert _post(server, f"/v2/repository/models/m/{action}").status_code == 401
    assert not (runtime / "control.json").exists()
    assert {status for status, _ in _predict_in_every_worker(server)} == {200}


def test_bad_loads_answer_an_error_and_change_nothing(server, runtime):
    unknown = _post(server, "/v2/repository/models/missing/load", headers=AUTH)
    assert unknown.status_code == 404 and "missing" in unknown.json()["error"]
    config = {"parameters": {"config": json.dumps({"max_batch_size": 0})}}
    invalid = _post(server, "/v2/repository/models/m/load", config, headers=AUTH)
    assert invalid.status_code == 400 and "max_batch_size" in invalid.json()["error"]
    assert not (runtime / "control.json").exists()
    failed = _post(server, "/v2/repository/models/broken/load", headers=AUTH)
    assert failed.status_code == 400, failed.text
    message = failed.json()["error"]  # the V2 error shape: {"error": message}, naming each worker and why
    assert message.startswith("model 'broken' failed to load: version 1 in worker ")
    assert all(f"in worker {pid}: " in message for pid in children(server.pid)), message


def test_unload_takes_the_model_out_of_every_worker_and_load_brings_it_back(server, runtime):
    assert {status for status, _ in _predict_in_every_worker(server)} == {200}
    answer = _post(server, "/v2/repository/models/m/unload", headers=AUTH)
    assert answer.status_code == 200 and answer.json() == {}
    generation = json.loads((runtime / "control.json").read_text())["generation"]
    for pid in children(server.pid):  # each worker reported the unload before the call returned
        report = _results(runtime, pid)
        assert report["generation"] >= generation and report["models"]["m"]["1"]["state"] == "END"
    _assert_unloaded(_predict_in_every_worker(server))
    index = _post(server, "/v2/repository/index", headers=AUTH).json()
    assert {"name": "m", "version": "1", "state": "UNAVAILABLE"}.items() <= \
        next(row for row in index if row["name"] == "m").items()
    assert _post(server, "/v2/repository/models/m/load", headers=AUTH).status_code == 200
    assert {status for status, _ in _predict_in_every_worker(server)} == {200}


def test_a_config_sent_with_a_load_is_served_by_every_worker_until_the_next_load(server):
    config = {"parameters": {"config": json.dumps({"max_batch_size": 4})}}
    assert _post(server, "/v2/repository/models/m/load", config, headers=AUTH).status_code == 200
    sizes = {requests.get(server + "/v2/models/m/config", timeout=30).json()["max_batch_size"] for _ in range(40)}
    assert sizes == {4}
    assert _post(server, "/v2/repository/models/m/load", headers=AUTH).status_code == 200
    sizes = {requests.get(server + "/v2/models/m/config", timeout=30).json()["max_batch_size"] for _ in range(40)}
    assert sizes == {256}


def test_a_worker_killed_after_an_unload_comes_back_with_the_model_unloaded(server, runtime):
    assert _post(server, "/v2/repository/models/m/unload", headers=AUTH).status_code == 200
    old = children(server.pid)
    os.kill(old[0], signal.SIGKILL)  # gunicorn starts another, which reads the control file at start
    new = until(lambda: [pid for pid in children(server.pid) if pid not in old], "a new worker")[0]
    generation = json.loads((runtime / "control.json").read_text())["generation"]
    report = until(lambda: _results(runtime, new).get("generation", -1) >= generation and _results(runtime, new),
                    "the new worker reported the control state")
    assert report["models"]["m"]["1"]["state"] == "END"
    until(lambda: requests.get(server + "/health/ready", timeout=10).json().get("workers", {}).get("loaded") == 2,
           "the new worker has loaded")
    _assert_unloaded(_predict_in_every_worker(server))
    assert {status for status, _ in _post_many(server, "other")} == {200}  # the other model is served
    assert _post(server, "/v2/repository/models/m/load", headers=AUTH).status_code == 200
    assert {status for status, _ in _predict_in_every_worker(server)} == {200}


def _post_many(base: str, model: str, count: int = 40) -> list[tuple[int, dict]]:
    """`count` predictions of `model`, each on a fresh connection."""
    answers = [requests.post(base + "/predict", json={**PREDICT, "model": model}, timeout=30) for _ in range(count)]
    return [(answer.status_code, answer.json()) for answer in answers]
