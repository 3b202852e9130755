"""The model lifecycle on a real gunicorn with two workers watching the folder (SERVING_POLL_SECONDS=1):
version policies, labels on /v1 and /predict, a half-copied file, a version removed under load."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.rollout_load import Load
from tests import model_builders
from tests.support import running_server, until

pytestmark = pytest.mark.e2e

ROW = [[0.1, 0.2, 0.3, 0.4]]
# No admission shedding (SERVING_MAX_QUEUE_WAIT_MS=0): these tests check the lifecycle, and a stall of a busy
# machine must not turn into a 429 that has nothing to do with a switch of versions.
ENV = {"WEB_CONCURRENCY": "2", "SERVING_POLL_SECONDS": "1", "SERVING_MAX_QUEUE_WAIT_MS": "0"}
ASKS = 8  # answers on fresh connections, so that both workers answer some


def states(base: str, name: str) -> dict[int, str]:
    """Version -> state of `name` as one worker lists it."""
    return {v["version"]: v["state"] for v in requests.get(f"{base}/models/{name}", timeout=30).json()["versions"]}


def predict(base: str, name: str, **envelope) -> requests.Response:
    """POST /predict of ROW for `name` (with "version" or "label" if given), on a fresh connection."""
    return requests.post(f"{base}/predict", json={"model": name, "instances": ROW, **envelope}, timeout=60)


def write_settings(folder: Path, document: dict) -> None:
    """Replace `folder`/serving.json atomically (written beside it, renamed into place)."""
    tmp = folder.parent / f".{folder.name}.serving.json"
    tmp.write_text(json.dumps(document))
    tmp.replace(folder / "serving.json")


def expected(path: Path) -> np.ndarray:
    """What Keras computes in-process for ROW with the model at `path`."""
    return np.asarray(model_builders.reference(path, np.asarray(ROW, dtype=np.float32)))


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle")
    for name, seeds in (("newest", (1, 2, 3)), ("pinned", (4, 5, 6)), ("labelled", (7, 8)), ("growing", (9,)),
                        ("removable", (10, 11)), ("repolicy", (14, 15))):
        for version, seed in enumerate(seeds, start=1):
            model_builders.dense(root / name / str(version) / "model.keras", seed=seed)
    write_settings(root / "newest", {"version_policy": {"latest": {"num_versions": 2}}})
    write_settings(root / "pinned", {"version_policy": {"specific": {"versions": [1, 3]}}})
    write_settings(root / "labelled", {"labels": {"stable": 1, "canary": 2}, "default_version": 1})
    model_builders.dense(root / "halfbad" / "1" / "model.keras", seed=12)
    write_settings(root / "halfbad", {"labels": {"stable": 1, "canary": 2}})
    return root


@pytest.fixture(scope="module")
def server(repository):
    with running_server(repository, ENV) as base:
        yield base


@pytest.mark.parametrize(("name", "served", "ended"), [("newest", {2, 3}, 1), ("pinned", {1, 3}, 2)])
def test_versions_outside_the_policy_are_listed_end_and_never_loaded(server, name, served, ended):
    for _ in range(ASKS):
        listed = states(server, name)
        assert listed == {**{v: "AVAILABLE" for v in served}, ended: "END"}, listed
    assert predict(server, name).json()["version"] == max(served)
    for version in served:
        assert predict(server, name, version=version).status_code == 200
    refused = predict(server, name, version=ended)
    assert refused.status_code in (404, 503) and "error" in refused.json()
    assert f"model {name} version {ended} loaded" not in server.log_path.read_text()


def test_a_changed_policy_in_serving_json_is_applied_in_every_worker(server, repository):
    assert states(server, "repolicy") == {1: "AVAILABLE", 2: "AVAILABLE"}
    write_settings(repository / "repolicy", {"version_policy": {"specific": {"versions": [1]}}})
    for _ in range(ASKS):
        until(lambda: states(server, "repolicy") == {1: "AVAILABLE", 2: "END"}, "version 2 END")
        until(lambda: predict(server, "repolicy").json()["version"] == 1, "default on version 1")
    write_settings(repository / "repolicy", {"version_policy": {"latest": {"num_versions": 1}}})
    for _ in range(ASKS):
        until(lambda: states(server, "repolicy") == {1: "END", 2: "AVAILABLE"}, "version 1 END, 2 back")
        until(lambda: predict(server, "repolicy").json()["version"] == 2, "default on version 2")


def test_a_label_routes_tf_serving_and_native_requests_to_its_version(server, repository):
    canary = expected(repository / "labelled" / "2" / "model.keras")
    for _ in range(ASKS):
        answer = requests.post(f"{server}/v1/models/labelled/labels/canary:predict", json={"instances": ROW},
                               timeout=60)
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "2"
        np.testing.assert_allclose(answer.json()["predictions"], canary, rtol=1e-5, atol=1e-6)
        stable = predict(server, "labelled", label="stable")
        assert stable.status_code == 200 and stable.json()["version"] == 1
        assert stable.headers["X-Model-Version"] == "1"
        assert predict(server, "labelled").json()["version"] == 1  # default_version, not the highest
    status = requests.get(f"{server}/v1/models/labelled/labels/canary", timeout=30)
    assert status.status_code == 200
    assert [s["version"] for s in status.json()["model_version_status"]] == ["2"]


def test_an_unknown_label_is_404_and_a_label_with_a_version_is_400(server):
    native = predict(server, "labelled", label="nope")
    assert native.status_code == 404 and native.json()["error"]["code"] == "label_not_found", native.text
    tf_serving = requests.post(f"{server}/v1/models/labelled/labels/nope:predict", json={"instances": ROW},
                               timeout=60)  # TF Serving's error shape: {"error": "<message>"}
    assert tf_serving.status_code == 404 and "nope" in tf_serving.json()["error"], tf_serving.text
    both = predict(server, "labelled", label="stable", version=1)
    assert both.status_code == 400 and "error" in both.json()


def test_a_label_on_a_failed_version_is_503_naming_the_label_and_the_version(server, repository, tmp_path):
    model_builders.corrupt(tmp_path / "2" / "model.h5")
    (tmp_path / "2").rename(repository / "halfbad" / "2")  # published the safe way, but broken
    for _ in range(ASKS):
        until(lambda: states(server, "halfbad").get(2) == "FAILED", "halfbad v2 FAILED")
    for answer in (predict(server, "halfbad", label="canary"),
                   requests.post(f"{server}/v1/models/halfbad/labels/canary:predict", json={"instances": ROW},
                                 timeout=60)):
        assert answer.status_code == 503, answer.text
        assert "canary" in answer.text and "2" in answer.text
    assert predict(server, "halfbad", label="stable").json()["version"] == 1


def test_a_file_still_being_copied_is_never_loaded_and_is_loaded_once_complete(server, repository, tmp_path):
    whole = model_builders.dense(tmp_path / "model.keras", seed=13).read_bytes()
    target = repository / "growing" / "2" / "model.keras"
    target.parent.mkdir()
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(states(server, "growing").get(2, "absent"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    chunk = max(1, len(whole) // 80)  # about 80 writes 0.05 s apart: ~4 poll intervals of a growing file
    with open(target, "wb") as out:
        for offset in range(0, len(whole), chunk):
            out.write(whole[offset:offset + chunk])
            out.flush()
            time.sleep(0.05)
    for _ in range(ASKS):
        until(lambda: predict(server, "growing", version=2).status_code == 200, "growing v2 served")
    done.set()
    watcher.join(timeout=60)
    assert "FAILED" not in seen, seen
    answer = predict(server, "growing", version=2)
    np.testing.assert_allclose(answer.json()["predictions"], expected(target), rtol=1e-5, atol=1e-6)
    assert "growing/2/model.keras" in server.log_path.read_text()  # "not loading ... yet: still being copied?"


def test_removing_the_newest_version_under_load_fails_no_request_and_serves_the_previous(server, repository):
    port = int(server.rsplit(":", 1)[1])
    body = json.dumps({"model": "removable", "instances": ROW}).encode()
    with Load("127.0.0.1", port, "/predict", body, 6, time.monotonic() + 300, pause=0.02) as load:
        until(lambda: all(c and c[-1].version == 2 for c in load.answers()), "every connection on version 2")
        removed = time.monotonic()
        shutil.rmtree(repository / "removable" / "2")
        until(lambda: all(c[-1].version == 1 and c[-1].sent > removed for c in load.answers()),
              "every connection back on version 1")
        time.sleep(2)  # past the drain: version 2 has been unloaded in both workers
    answers = [a for c in load.answers() for a in c]
    assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:5]
    assert all(a.version == 1 for c in load.answers() for a in c[-5:])

    def unloaded() -> bool:
        listed = states(server, "removable")
        return listed.get(1) == "AVAILABLE" and listed.get(2, "END") == "END"

    for _ in range(ASKS):
        until(unloaded, "version 2 gone or END in the listing")
