"""A rollout and its rollback under light load on a real gunicorn with two workers (SERVING_POLL_SECONDS=1):
publish version 2, make it the default, move the label `stable` to it, then move both back. No request
fails; each connection switches once per change and never goes back to the old version afterwards."""
from __future__ import annotations

import json
import time

import pytest

from bench.rollout_load import Load
from bench.rollout_stats import switched_back, window
from tests import model_builders
from tests.e2e.test_lifecycle import ASKS, ENV, ROW, predict, write_settings
from tests.support import running_server, until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout")
    model_builders.dense(root / "models" / "rolling" / "1" / "model.keras", seed=21)
    model_builders.dense(root / "staging" / "2" / "model.keras", seed=22)
    write_settings(root / "models" / "rolling", {"default_version": 1, "labels": {"stable": 1}})
    return root


def _on(load: Load, version: int, since: float) -> bool:
    """Whether every connection's latest answer, sent after `since`, came from `version`."""
    return all(c and c[-1].sent > since and c[-1].version == version for c in load.answers())


def _versions(load: Load, start: float, end: float) -> set[int | None]:
    return {a.version for c in load.answers() for a in c if start <= a.sent < end}


def test_a_rollout_moves_traffic_only_when_told_and_a_rollback_moves_it_back_without_a_failed_request(repository):
    folder = repository / "models" / "rolling"
    with running_server(repository / "models", ENV) as base:
        port = int(base.rsplit(":", 1)[1])
        plain = json.dumps({"model": "rolling", "instances": ROW}).encode()
        labelled = json.dumps({"model": "rolling", "label": "stable", "instances": ROW}).encode()
        deadline = time.monotonic() + 600
        with Load("127.0.0.1", port, "/predict", plain, 6, deadline, pause=0.02) as default, \
                Load("127.0.0.1", port, "/predict", labelled, 4, deadline, pause=0.02) as stable:
            until(lambda: _on(default, 1, 0) and _on(stable, 1, 0), "both loads answered by version 1")

            published = time.monotonic()
            (repository / "staging" / "2").rename(folder / "2")
            for _ in range(ASKS):
                until(lambda: predict(base, "rolling", version=2).status_code == 200, "version 2 served")
            assert _versions(default, 0, time.monotonic()) | _versions(stable, 0, time.monotonic()) == {1}

            promoted = time.monotonic()
            write_settings(folder, {"default_version": 2, "labels": {"stable": 1}})
            until(lambda: _on(default, 2, promoted), "default traffic on version 2")
            assert _versions(stable, published, time.monotonic()) == {1}

            labelled_at = time.monotonic()
            write_settings(folder, {"default_version": 2, "labels": {"stable": 2}})
            until(lambda: _on(stable, 2, labelled_at), "label stable on version 2")

            rolled_back = time.monotonic()
            write_settings(folder, {"default_version": 1, "labels": {"stable": 1}})
            until(lambda: _on(default, 1, rolled_back) and _on(stable, 1, rolled_back), "both back on version 1")
            time.sleep(1)
        answers = [a for load in (default, stable) for c in load.answers() for a in c]
        assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:5]
        ended = time.monotonic()
        for load, changes in ((default, ((promoted, rolled_back, 2), (rolled_back, ended, 1))),
                              (stable, ((labelled_at, rolled_back, 2), (rolled_back, ended, 1)))):
            for start, end, version in changes:  # once a connection had the new version, only the new version
                assert sum(switched_back(window(c, start, end), start, version) for c in load.answers()) == 0
        log = base.log_path.read_text()
        assert log.count("model rolling version 1 loaded") == 2  # one per worker: labels and default only re-route
        assert log.count("model rolling version 2 loaded") == 2
