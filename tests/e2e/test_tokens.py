"""Bearer tokens and TLS through a real gunicorn with two workers."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests import model_builders as mb
from tests.support import ROOT, children, free_port, gunicorn_command, running_server, stop

pytestmark = pytest.mark.e2e

TOKEN, ROTATED = "e2e-token-0123456789abcdef", "e2e-rotated-fedcba9876543210"
BODY = {"model": "dense", "instances": [[1.0, 2.0, 3.0, 4.0]]}
REQUESTS = 40  # per check: enough for both workers to answer (connections are spread between them)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("token-models")
    mb.dense(folder / "dense.keras")
    return folder


def predict_many(base: str, token: str | None, count: int = REQUESTS) -> list[requests.Response]:
    """`count` predictions, each on its own connection, 8 at a time."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: requests.post(f"{base}/predict", json=BODY, headers=headers, timeout=30),
                             range(count)))


def test_token_protected_predict_401_and_rotation_through_two_workers(model_dir, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    env = {"WEB_CONCURRENCY": "2", "SERVING_API_TOKENS_FILE": str(tokens), "SERVING_REQUIRE_TOKEN": "true",
           "GUNICORN_ACCESS_LOG": "true", "SERVING_LOG_LEVEL": "DEBUG"}
    with running_server(model_dir, env) as base:
        assert len(children(base.pid)) == 2
        allowed = predict_many(base, TOKEN)
        assert [r.status_code for r in allowed] == [200] * REQUESTS
        refused = predict_many(base, None, 8) + predict_many(base, "wrong", 8)
        assert {r.status_code for r in refused} == {401}
        assert all(r.headers["WWW-Authenticate"].startswith("Bearer") for r in refused)
        assert all(r.json()["error"]["code"] in {"unauthorized", "invalid_token"} for r in refused)
        assert requests.get(f"{base}/health/ready", timeout=10).status_code == 200
        staged = tmp_path / "tokens.new"
        staged.write_text(f"{ROTATED}\n")
        os.replace(staged, tokens)  # rotated without a restart: every worker re-reads the file
        assert {r.status_code for r in predict_many(base, TOKEN)} == {401}
        assert {r.status_code for r in predict_many(base, ROTATED)} == {200}
        time.sleep(0.5)  # let the access log lines reach the file
        log = base.log_path.read_text()
    assert '"POST /predict HTTP/1.1" 401' in log and '"POST /predict HTTP/1.1" 200' in log
    assert TOKEN not in log and ROTATED not in log


def test_management_is_disabled_without_tokens_through_gunicorn(model_dir):
    with running_server(model_dir, {"WEB_CONCURRENCY": "2"}) as base:
        answer = requests.post(f"{base}/v2/repository/index", timeout=10)
        assert answer.status_code == 403 and "SERVING_API_TOKENS" in answer.json()["error"]
        assert requests.post(f"{base}/predict", json=BODY, timeout=10).status_code == 200


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_gunicorn_serves_https_with_certfile_and_keyfile(model_dir, certificate, tmp_path):
    cert, key = certificate
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(model_dir),
           "WEB_CONCURRENCY": "2", "GUNICORN_CERTFILE": str(cert), "GUNICORN_KEYFILE": str(key),
           "SERVING_API_TOKENS": TOKEN, "SERVING_REQUIRE_TOKEN": "true"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(gunicorn_command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if requests.get(f"{base}/health/ready", verify=str(cert), timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        ok = requests.post(f"{base}/predict", json=BODY, verify=str(cert), timeout=30,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and len(ok.json()["predictions"][0]) == 3
        assert requests.post(f"{base}/predict", json=BODY, verify=str(cert), timeout=30).status_code == 401
        with pytest.raises(requests.ConnectionError):  # plain HTTP on the TLS port gets no answer
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        stop(proc)
