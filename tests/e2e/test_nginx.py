"""Two instances behind nginx (deploy/nginx/): steady load of 32 connections sees no failure when an
instance is killed, during a rolling restart, and while 64 slow clients drip their bodies to nginx.

Real nginx (Debian's package), real gunicorn, 127.0.0.1 only. The instances serve the demo model as a
.tflite file (LiteRT, no TensorFlow in the workers), so they restart in about a second.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.support import ROOT, free_port, gunicorn_command

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NO_NGINX = "nginx is not installed (apt-get install -y nginx; .ci/run does)"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(NGINX is None, reason=NO_NGINX)]

CONNECTIONS = 32
FAIL_TIMEOUT_S = 2  # the upstream servers' fail_timeout in deploy/nginx/run.sh
SLOW_CLIENTS = 64
BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


class Instance:
    """One gunicorn (1 worker x 4 threads) on a fixed loopback port, started and stopped at will."""

    def __init__(self, model_dir: Path, log_dir: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(model_dir),
                    "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4", "SERVING_GRPC_PORT": "0",
                    "SERVING_DRAIN_SECONDS": "1", "SERVING_MAX_QUEUE_WAIT_MS": "0"}
        self.log_path = log_dir / f"instance-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        """Start it and return once /health/ready answers 200."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(gunicorn_command(), cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"instance on :{self.port} not ready in {timeout} s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM the master, as a container runtime does, and wait for its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL every process of the instance at once (a crashed or OOM-killed container)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Load:
    """`connections` keep-alive clients posting one row to `port` in a loop, each result recorded."""

    port: int
    connections: int = CONNECTIONS
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[tuple[float, float, object]] = field(default_factory=list)  # (start, seconds, status or error)

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.connections)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                conn.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                outcome: object = response.status if response.status != 200 or b"predictions" in payload else "bad body"
            except (OSError, http.client.HTTPException) as exc:
                outcome = repr(exc)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.results.append((start, time.monotonic() - start, outcome))
        conn.close()

    def failures(self) -> list[object]:
        return [outcome for _, _, outcome in self.results if outcome != 200]

    def served_after(self, moment: float) -> int:
        return sum(1 for start, _, outcome in self.results if start > moment and outcome == 200)

    def p99_between(self, begin: float, end: float) -> float:
        return float(np.percentile([seconds for start, seconds, outcome in self.results
                                    if begin <= start < end and outcome == 200], 99))


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model converted to one .tflite file (in a subprocess: TensorFlow stays out of this one)."""
    folder = tmp_path_factory.mktemp("nginx-models")
    subprocess.run([sys.executable, "-m", "app.cli", "optimize", "models/iris/1/iris.keras",
                    "--out", str(folder / "iris.tflite")], cwd=ROOT, check=True, capture_output=True, timeout=300)
    for report in folder.glob("*.report.json"):
        report.unlink()
    return folder


@pytest.fixture(scope="module")
def instances(tflite_models: Path, tmp_path_factory: pytest.TempPathFactory):
    both = [Instance(tflite_models, tmp_path_factory.mktemp("instance-logs")) for _ in range(2)]
    for instance in both:
        instance.start()
    yield both
    for instance in both:
        if instance.running():
            instance.kill()


@pytest.fixture(scope="module")
def nginx(instances: list[Instance], tmp_path_factory: pytest.TempPathFactory):
    """deploy/nginx/run.sh on a free loopback port in front of both instances; yields (port, access log)."""
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    proc = subprocess.Popen(["deploy/nginx/run.sh", str(port), *(str(i.port) for i in instances)], cwd=ROOT,
                            env={**os.environ, "PREFIX": str(prefix), "NGINX": NGINX or ""},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield port, prefix / "access.log"
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # a graceful quit still waiting on a connection: stop at once
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    temp = re.search(r"client_body_temp_path (\S+)/client_body;", (prefix / "nginx.conf").read_text())
    if temp and Path(temp.group(1)) != prefix:  # as root, run.sh makes the workers' temp folders elsewhere
        shutil.rmtree(temp.group(1), ignore_errors=True)


@pytest.fixture
def both_running(instances: list[Instance]) -> list[Instance]:
    """Both instances up at the start of a test (a previous test may have killed one)."""
    for instance in instances:
        if not instance.running():
            instance.start()
    return instances


def _upstreams(access_log: Path, since_line: int) -> set[str]:
    lines = access_log.read_text().splitlines()[since_line:]
    return {json.loads(line)["upstream"].split(",")[0].strip() for line in lines if json.loads(line)["upstream"]}


def test_the_request_id_is_passed_through_and_logged_as_json(nginx, both_running):
    port, access_log = nginx
    answer = requests.post(f"http://127.0.0.1:{port}/predict", data=BODY, timeout=10,
                           headers={"X-Request-ID": "abc-123", "Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "abc-123"
    time.sleep(0.2)
    assert json.loads(access_log.read_text().splitlines()[-1])["request_id"] == "abc-123"


def test_a_body_over_the_limit_is_refused_by_nginx_before_any_instance(nginx, both_running):
    port, _ = nginx
    answer = requests.post(f"http://127.0.0.1:{port}/predict", data=b"x" * (32 * 1024 * 1024 + 1), timeout=30)
    assert answer.status_code == 413


def test_a_body_nginx_buffers_to_disk_reaches_the_instance(nginx, both_running):
    port, _ = nginx
    rows = b",".join([b"[5.1, 3.5, 1.4, 0.2]"] * 100_000)  # 2.2 MB: over client_body_buffer_size (1 MiB)
    answer = requests.post(f"http://127.0.0.1:{port}/predict", data=b'{"instances": [' + rows + b"]}", timeout=60,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_many_rows"  # the instance's answer


def test_an_instance_killed_mid_run_fails_no_client_request(nginx, both_running):
    port, access_log = nginx
    logged = len(access_log.read_text().splitlines())
    with Load(port) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        both_running[0].kill()
        time.sleep(3)
    assert _upstreams(access_log, logged) >= {f"127.0.0.1:{i.port}" for i in both_running}  # both served
    assert load.served_after(killed_at + 1) > 0
    # Each answer's headers and body go out in one write (app/gunicorn/one_write.py): a kill leaves nginx
    # either nothing of an answer (it retries on the other instance) or all of it. None is cut short.
    print(f"killed mid-run: {len(load.results)} requests, failures: {load.failures()}")
    assert load.failures() == []


def test_a_rolling_restart_fails_no_client_request(nginx, both_running):
    port, _ = nginx
    with Load(port) as load:
        time.sleep(1)
        for instance in both_running:  # SIGTERM one, start it again, once ready the other
            assert instance.terminate() == 0
            instance.start()
            # nginx rests a failed server for fail_timeout (2 s, deploy/nginx/run.sh) and sends it nothing
            # meanwhile: stopping the other one sooner would leave nginx no live server (502).
            time.sleep(FAIL_TIMEOUT_S + 1)
        time.sleep(1)
    assert len(load.results) > 100
    assert load.failures() == []


def _drip(stop: threading.Event, port: int) -> list[int]:
    """SLOW_CLIENTS connections send their headers, then their body a byte per ~0.25 s until `stop`,
    then the rest; return the statuses they get."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(SLOW_CLIENTS)]
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode()
    for sock in socks:
        sock.sendall(head)
    sent = 0
    while not stop.wait(0.25) and sent < len(BODY) - 1:
        for sock in socks:
            sock.sendall(BODY[sent:sent + 1])
        sent += 1
    statuses = []
    for sock in socks:
        sock.sendall(BODY[sent:])
        response = http.client.HTTPResponse(sock)
        response.begin()
        statuses.append(response.status)
        sock.close()
    return statuses


def test_slow_clients_at_nginx_leave_normal_clients_p99_within_twice_its_value_without_them(nginx, both_running):
    port, _ = nginx
    phase = 4.0
    with Load(port) as load:
        time.sleep(1)  # warm-up, not measured
        before = time.monotonic()
        time.sleep(phase)
        stop, statuses = threading.Event(), []
        dripper = threading.Thread(target=lambda: statuses.extend(_drip(stop, port)))
        slow_from = time.monotonic()
        dripper.start()
        time.sleep(phase)
        slow_to = time.monotonic()
        stop.set()
        dripper.join(30)
        after = time.monotonic()
        time.sleep(phase)
        end = time.monotonic()
    # Without them: before and after (the machine is shared, its load drifts), the higher of the two.
    without = max(load.p99_between(before, slow_from), load.p99_between(after, end))
    with_slow = load.p99_between(slow_from + 0.5, slow_to)
    print(f"p99 without slow clients {without * 1e3:.1f} ms, with {SLOW_CLIENTS} of them {with_slow * 1e3:.1f} ms")
    assert statuses == [200] * SLOW_CLIENTS
    assert load.failures() == []
    assert with_slow <= 2 * without
