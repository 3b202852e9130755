"""SIGTERM drains (app/gunicorn/hooks.py when_ready, app/gunicorn/worker.py); kept-alive connections are recycled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import model_builders
from tests.support import ROOT, free_port

pytestmark = pytest.mark.e2e

GRACEFUL_TIMEOUT = 20
DRAIN_SECONDS = 2
CLIENTS = 8  # every fourth one connects anew for each request
ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


@dataclass(frozen=True)
class Sent:
    at: float
    status: int | None  # None: the request failed (refused, reset)
    closes: bool        # the answer said `Connection: close`


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("drain")
    model_builders.dense(root / "dense.keras")
    return root


def _start(model_dir: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full_env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(model_dir),
                "WEB_CONCURRENCY": "2", **env}
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"gunicorn-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                            env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/health/ready", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the server never became ready")


def _client(base: str, sent: list[Sent], stop: threading.Event, keep_alive: bool) -> None:
    """A client sending one request after another until the server is gone, on one kept-alive
    connection or on a new connection each (those may wait in the listener's backlog)."""
    session = requests.Session()
    if not keep_alive:
        session.headers["Connection"] = "close"
    while not stop.is_set():
        at = time.monotonic()
        try:
            response = session.post(base + "/predict", json=ROW, timeout=30)
            sent.append(Sent(at, response.status_code, response.headers.get("Connection") == "close"))
        except requests.RequestException:
            sent.append(Sent(at, None, False))
            time.sleep(0.01)


def _prober(base: str, probes: list[tuple[float, float, int | None]], stop: threading.Event) -> None:
    """(sent, answered, status) of each probe: one sent just before the signal may be answered after it."""
    while not stop.is_set():
        sent = time.monotonic()
        try:
            status: int | None = requests.get(base + "/health/ready", timeout=5).status_code
        except requests.RequestException:
            status = None
        probes.append((sent, time.monotonic(), status))
        time.sleep(0.02)


@pytest.mark.parametrize("drain_seconds", [0, DRAIN_SECONDS])
def test_sigterm_drains_keep_alive_clients_without_a_failure_and_exits_0(model_dir, drain_seconds):
    proc, base = _start(model_dir, SERVING_DRAIN_SECONDS=str(drain_seconds),
                        GUNICORN_GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT))
    sent: list[Sent] = []
    probes: list[tuple[float, float, int | None]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(base, sent, stop, n % 4 != 3)) for n in range(CLIENTS)]
    threads.append(threading.Thread(target=_prober, args=(base, probes, stop)))
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)  # steady load
        signalled = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)  # to the master only, as Kubernetes and `docker stop` do
        returncode = proc.wait(timeout=drain_seconds + GRACEFUL_TIMEOUT + 10)
        exited = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert returncode == 0
    assert exited - signalled < drain_seconds + GRACEFUL_TIMEOUT
    turned = min(answered for _, answered, status in probes if status != 200)  # the first answer not 200
    assert turned >= signalled
    # Sent before readiness turned, which it does at SIGTERM: a probe sent after it may still be answered 200
    # by a worker that read it first, but a request sent then may find the listener closed when not draining.
    flip_after = signalled
    before = [s for s in sent if s.at < flip_after]
    failed = [s for s in before if s.status != 200]
    after = [s for s in sent if s.at >= flip_after]
    print(f"\ndrain {drain_seconds} s: {len(before)} requests sent before readiness turned 503, {len(failed)} failed; "
          f"{sum(s.status == 200 for s in after)} of {len(after)} sent later answered 200; exit {returncode} "
          f"{exited - signalled:.1f} s after SIGTERM (graceful timeout {GRACEFUL_TIMEOUT} s)")
    assert len(before) > 100 and failed == []
    if drain_seconds:  # while draining, readiness says 503 and every answer closes its connection
        assert any(status == 503 for _, _, status in probes)
        draining = [s for s in after if s.at > turned + 0.5 and s.status == 200]
        assert draining and all(s.closes for s in draining)


def test_a_kept_alive_connection_closes_after_its_share_of_requests(model_dir):
    proc, base = _start(model_dir, SERVING_KEEPALIVE_REQUESTS="5")
    try:
        with requests.Session() as session:
            closes = [session.get(base + "/health", timeout=10).headers.get("Connection") == "close"
                      for _ in range(12)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert closes == [False] * 4 + [True] + [False] * 4 + [True] + [False] * 2


def test_kept_alive_clients_move_to_a_worker_gunicorn_restarted(model_dir):
    from tests.e2e.test_worker_balance import _established_on, _held_by
    from tests.support import children

    proc, base = _start(model_dir, SERVING_KEEPALIVE_REQUESTS="20")
    port = int(base.rsplit(":", 1)[1])
    sent: list[Sent] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(base, sent, stop, True)) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        old = children(proc.pid)
        os.kill(old[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (new := [pid for pid in children(proc.pid) if pid not in old]):
            time.sleep(0.05)
        while time.monotonic() < deadline and requests.get(base + "/health/ready", timeout=10).json().get(
                "workers", {}).get("loaded") != 2:
            time.sleep(0.1)
        new = new[0]
        held = 0
        while time.monotonic() < deadline and held < 2:  # the clients' recycled connections reach it
            held = _held_by(new, _established_on(port))
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    print(f"\nthe restarted worker holds {held} of the {CLIENTS} clients' kept-alive connections")
    assert held >= 2
