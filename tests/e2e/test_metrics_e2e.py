"""/metrics under real gunicorn: the instance's numbers summed over both workers, exact, and never
going backwards when a worker is killed and replaced (prometheus-client's multiprocess mode)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, children, running_server

pytestmark = pytest.mark.e2e

BODY = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
REQUESTS = 120


def scrape(base: str) -> dict[str, list]:
    """`GET /metrics` parsed with prometheus-client's parser: {sample name: [(labels, value), ...]}."""
    answer = requests.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, list], name: str = "keras_serve_requests_total", **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == want for k, want in labels.items()))


def settle(base: str, expected: float, timeout: float = 20.0) -> float:
    """The request total once it reaches `expected` (each worker writes its tally within a second)."""
    deadline, seen = time.monotonic() + timeout, -1.0
    while time.monotonic() < deadline:
        seen = total(scrape(base))
        if seen >= expected:
            return seen
        time.sleep(0.2)
    return seen


def send(base: str, count: int) -> list[int]:
    """`count` predictions from 8 clients, a new connection each (so both workers take some)."""
    def one(_: int) -> int:
        return requests.post(f"{base}/predict", json=BODY, headers={"Connection": "close"}, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(count)))
    assert statuses == [200] * count
    return statuses


@pytest.fixture(scope="module")
def stale_folder(tmp_path_factory):
    """A metrics folder holding a counter file of an earlier run (1000 requests): the master must empty it."""
    folder = tmp_path_factory.mktemp("prometheus")
    script = ("from prometheus_client import Counter; Counter('keras_serve_requests', 'x', "
              "('protocol', 'code', 'model', 'version')).labels('native', '200', 'iris', '1').inc(1000)")
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
                   check=True)
    assert list(folder.glob("counter_*.db"))
    return folder


@pytest.fixture(scope="module")
def server(stale_folder):
    env = {"WEB_CONCURRENCY": "2", "SERVING_MAX_QUEUE_WAIT_MS": "0", "SERVING_LOG_FORMAT": "json",
           "PROMETHEUS_MULTIPROC_DIR": str(stale_folder)}
    with running_server(ROOT / "models", env) as base:
        yield base


def workers_that_answered(base, since: int) -> set[int]:
    """Worker pids of the access lines written after byte `since` of the log."""
    import json

    lines = base.log_path.read_bytes()[since:].decode().splitlines()
    return {record["pid"] for record in map(json.loads, filter(None, lines))
            if record.get("logger") == "app.access" and record.get("path") == "/predict"}


def test_requests_over_both_workers_grow_the_total_by_exactly_their_number(server):
    assert total(scrape(server)) == 0  # the earlier run's 1000 are gone: the master emptied the folder
    offset = server.log_path.stat().st_size
    send(server, REQUESTS)
    assert settle(server, REQUESTS) == REQUESTS
    time.sleep(1.5)  # a flush period later, still exactly that many
    samples = scrape(server)
    assert total(samples) == REQUESTS
    assert total(samples, protocol="native", code="200", model="iris", version="1") == REQUESTS
    assert total(samples, "keras_serve_request_duration_seconds_count") == REQUESTS
    assert total(samples, "keras_serve_queue_duration_seconds_count") == REQUESTS
    assert total(samples, "keras_serve_inflight_requests") == 0
    assert len(workers_that_answered(server, offset)) == 2  # both workers served, both are counted
    workers = {labels["pid"] for labels, _ in samples["process_resident_memory_bytes"] if labels["role"] == "worker"}
    assert workers == {str(pid) for pid in children(server.pid)}
    assert total(samples, "keras_serve_model_state", state="AVAILABLE") == 1


def test_a_killed_and_replaced_worker_does_not_take_the_total_backwards(server):
    before = settle(server, REQUESTS)
    assert before >= REQUESTS
    victim = children(server.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # gunicorn starts a new worker; wait until it has loaded
        pids = children(server.pid)
        if len(pids) == 2 and victim not in pids and total(
                scrape(server), "keras_serve_model_state", state="AVAILABLE") == 1 and all(
                requests.get(f"{server}/health/ready", timeout=5).status_code == 200 for _ in range(6)):
            break
        time.sleep(0.5)
    else:
        pytest.fail("no replacement worker became ready")
    for _ in range(10):  # whichever worker answers the scrape, the dead worker's counts are still in the sum
        assert total(scrape(server)) == before
    send(server, 40)
    assert settle(server, before + 40) == before + 40
    samples = scrape(server)
    workers = {labels["pid"] for labels, _ in samples["process_resident_memory_bytes"] if labels["role"] == "worker"}
    assert str(victim) not in workers and len(workers) == 2
    assert total(samples, "keras_serve_inflight_requests") == 0  # the dead worker's live gauge is gone
