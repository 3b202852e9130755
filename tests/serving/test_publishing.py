"""A version whose file is still being copied is left out of the plan until two scans agree."""
from __future__ import annotations

import os

from app.serving.publishing import PublishingCheck
from app.serving.source import plan_models
from app.settings import load_settings


def _write(path, data=b"x" * 10):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _aspired(root, check):
    return {name: [s.version for s in plan.versions]
            for name, plan in plan_models(root, load_settings(environ={}), stable=check).items()}


def test_at_the_first_scan_everything_on_disk_counts_as_published(tmp_path):
    _write(tmp_path / "m" / "1" / "m.keras")
    _write(tmp_path / "flat.h5")
    assert _aspired(tmp_path, PublishingCheck()) == {"flat": [1], "m": [1]}


def test_a_file_growing_between_two_scans_is_left_out_until_it_stops(tmp_path):
    _write(tmp_path / "m" / "1" / "m.keras")
    check = PublishingCheck()
    assert _aspired(tmp_path, check) == {"m": [1]}
    growing = _write(tmp_path / "m" / "2" / "m.keras", b"half")
    assert _aspired(tmp_path, check) == {"m": [1]}
    with growing.open("ab") as out:
        out.write(b"more bytes")
    assert _aspired(tmp_path, check) == {"m": [1]}
    assert _aspired(tmp_path, check) == {"m": [1, 2]}


def test_a_served_file_overwritten_in_place_stays_aspired(tmp_path):
    path = _write(tmp_path / "flat.h5")
    check = PublishingCheck()
    assert _aspired(tmp_path, check) == {"flat": [1]}
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert _aspired(tmp_path, check) == {"flat": [1]}  # never unloaded because its file changes


def test_a_removed_file_counts_as_new_when_it_comes_back(tmp_path):
    path = _write(tmp_path / "m" / "2" / "m.keras")
    _write(tmp_path / "m" / "1" / "m.keras")
    check = PublishingCheck()
    assert _aspired(tmp_path, check) == {"m": [1, 2]}
    path.unlink()
    assert _aspired(tmp_path, check) == {"m": [1]}
    _write(path)
    assert _aspired(tmp_path, check) == {"m": [1]}
    assert _aspired(tmp_path, check) == {"m": [1, 2]}


def test_a_version_first_seen_on_a_later_scan_waits_one_scan(tmp_path):
    _write(tmp_path / "m" / "1" / "m.keras")
    check = PublishingCheck()
    assert _aspired(tmp_path, check) == {"m": [1]}
    staged = _write(tmp_path / "m" / ".incoming-2" / "m.keras")  # the safe way: write elsewhere, then rename
    assert _aspired(tmp_path, check) == {"m": [1]}
    staged.parent.rename(tmp_path / "m" / "2")
    assert _aspired(tmp_path, check) == {"m": [1]}
    assert _aspired(tmp_path, check) == {"m": [1, 2]}


def test_a_new_empty_version_folder_is_not_failed_while_its_file_may_still_come(tmp_path):
    _write(tmp_path / "m" / "1" / "m.keras")
    check = PublishingCheck()
    _aspired(tmp_path, check)
    (tmp_path / "m" / "2").mkdir()
    assert _aspired(tmp_path, check) == {"m": [1]}
    _write(tmp_path / "m" / "2" / "m.keras")
    assert _aspired(tmp_path, check) == {"m": [1]}
    assert _aspired(tmp_path, check) == {"m": [1, 2]}


def test_a_held_back_version_is_logged_once_while_it_keeps_changing(tmp_path, caplog):
    _write(tmp_path / "m" / "1" / "m.keras")
    check = PublishingCheck()
    _aspired(tmp_path, check)
    growing = _write(tmp_path / "m" / "2" / "m.keras", b"a")
    with caplog.at_level("INFO", logger="app.serving.publishing"):
        for size in range(2, 5):
            assert _aspired(tmp_path, check) == {"m": [1]}
            growing.write_bytes(b"a" * size)
    held = [r for r in caplog.records if "m/2/m.keras" in r.getMessage()]
    assert len(held) == 1 and held[0].levelname == "INFO"
    assert _aspired(tmp_path, check) == {"m": [1]}
    assert _aspired(tmp_path, check) == {"m": [1, 2]}


def test_without_a_check_a_new_file_is_planned_at_once(tmp_path):
    _write(tmp_path / "flat.h5")
    assert _aspired(tmp_path, None) == {"flat": [1]}


def test_a_file_that_settles_with_new_content_changes_its_versions_source(tmp_path):
    path = _write(tmp_path / "flat.h5")
    check = PublishingCheck()
    settings = load_settings(environ={})
    before = plan_models(tmp_path, settings, stable=check)["flat"].versions[0]
    path.write_bytes(b"y" * 20)
    during = plan_models(tmp_path, settings, stable=check)["flat"].versions[0]
    after = plan_models(tmp_path, settings, stable=check)["flat"].versions[0]
    assert during == before  # still served as it was while the file changes
    assert after != before and after.file_stamp[0] == 20  # settled: the manager reloads it


def test_a_plan_without_a_check_has_the_same_sources_as_the_checks_first_scan(tmp_path):
    _write(tmp_path / "m" / "1" / "m.keras")
    settings = load_settings(environ={})
    assert plan_models(tmp_path, settings) == plan_models(tmp_path, settings, stable=PublishingCheck())
