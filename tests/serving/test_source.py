"""The source: which versions the model folder asks to serve."""
from __future__ import annotations

from app.serving.model_settings import parse_model_settings
from app.serving.source import plan_models, scan_source
from app.serving.version_policy import ModelOverride
from app.settings import load_settings


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _scan(root):
    return scan_source(root, load_settings(environ={}))


def test_flat_files_are_version_one_and_folders_list_versions(tmp_path):
    _touch(tmp_path / "flat.h5")
    _touch(tmp_path / "other.keras")
    _touch(tmp_path / "multi" / "1" / "a.keras")
    _touch(tmp_path / "multi" / "10" / "b.h5")
    _touch(tmp_path / "multi" / "notaversion" / "c.h5")
    _touch(tmp_path / "README.md")
    found = [(s.name, s.version, s.path.name, s.problem) for s in _scan(tmp_path)]
    assert found == [("flat", 1, "flat.h5", None), ("multi", 1, "a.keras", None),
                     ("multi", 10, "b.h5", None), ("other", 1, "other.keras", None)]


def test_layout_problems_become_failed_versions_not_crashes(tmp_path):
    _touch(tmp_path / "m" / "1" / "a.h5")
    _touch(tmp_path / "m" / "1" / "b.h5")
    (tmp_path / "m" / "2").mkdir()
    _touch(tmp_path / "dup.h5")
    _touch(tmp_path / "dup.keras")
    problems = {(s.name, s.version): s.problem for s in _scan(tmp_path)}
    assert "several model files" in problems[("m", 1)]
    assert "no .h5 or .keras" in problems[("m", 2)]
    assert "defined twice" in problems[("dup", 1)]


def test_invalid_names_are_skipped(tmp_path):
    _touch(tmp_path / "bad name.h5")
    _touch(tmp_path / "good-name_1.h5")
    assert [s.name for s in _scan(tmp_path)] == ["good-name_1"]


def test_serving_json_overrides_batching_and_safe_mode(tmp_path):
    _touch(tmp_path / "m" / "1" / "a.keras")
    (tmp_path / "m" / "serving.json").write_text('{"max_batch_size": 4, "safe_mode": false}')
    _touch(tmp_path / "flat.h5")
    (tmp_path / "flat.serving.json").write_text('{"max_queue_rows": 8}')
    sources = {s.name: s for s in _scan(tmp_path)}
    assert sources["m"].batching.max_batch_size == 4
    assert sources["m"].safe_mode is False
    assert sources["flat"].batching.max_queue_rows == 8
    assert sources["flat"].batching.max_batch_size == load_settings(environ={}).max_batch_size


def test_invalid_serving_json_fails_that_model_with_a_reason(tmp_path):
    _touch(tmp_path / "m" / "1" / "a.keras")
    (tmp_path / "m" / "serving.json").write_text('{"max_batch_size": 0, "typo": 1}')
    (source,) = _scan(tmp_path)
    assert source.problem.startswith("serving.json is invalid")
    assert "typo" in source.problem and "max_batch_size" in source.problem


def test_serving_json_runtime_overrides_the_server_runtime(tmp_path):
    _touch(tmp_path / "chosen.h5")
    (tmp_path / "chosen.serving.json").write_text('{"runtime": "tflite"}')
    _touch(tmp_path / "plain.h5")
    sources = {s.name: s for s in scan_source(tmp_path, load_settings({"RUNTIME": "tf"}, environ={}))}
    assert sources["chosen"].runtime == "tflite"
    assert sources["plain"].runtime == "tf"
    assert sources["plain"].safe_mode is True


def test_a_failed_version_keeps_the_server_batching_settings(tmp_path):
    _touch(tmp_path / "flat.h5")
    (tmp_path / "flat.serving.json").write_text('{"max_batch_size": 4.5}')
    settings = load_settings({"MAX_BATCH_SIZE": 12}, environ={})
    (source,) = scan_source(tmp_path, settings)
    assert source.problem.startswith("flat.serving.json is invalid: max_batch_size")
    assert source.batching.max_batch_size == 12


def _versions(root, name, count):
    for version in range(1, count + 1):
        _touch(root / name / str(version) / f"{name}.keras")


def _plan(root, overrides=None):
    return plan_models(root, load_settings(environ={}), overrides)


def test_without_a_policy_every_version_is_aspired_with_no_labels(tmp_path):
    _versions(tmp_path, "m", 2)
    _touch(tmp_path / "flat.h5")
    plans = _plan(tmp_path)
    assert list(plans) == ["flat", "m"]
    assert [s.version for s in plans["m"].versions] == [1, 2]
    assert (plans["m"].not_aspired, plans["m"].labels, plans["m"].default_version) == ((), {}, None)
    assert [s.version for s in plans["flat"].versions] == [1]


def test_latest_policy_aspires_the_highest_versions_and_lists_the_others(tmp_path):
    _versions(tmp_path, "m", 3)
    _touch(tmp_path / "m" / "10" / "m.h5")
    (tmp_path / "m" / "serving.json").write_text('{"version_policy": {"latest": {"num_versions": 2}}}')
    plan = _plan(tmp_path)["m"]
    assert [s.version for s in plan.versions] == [3, 10]
    why = "outside the version policy latest(num_versions=2)"
    assert plan.not_aspired == ((1, why), (2, why))
    assert [s.version for s in scan_source(tmp_path, load_settings(environ={}))] == [3, 10]


def test_specific_policy_aspires_the_listed_versions_and_a_missing_one_is_absent(tmp_path, caplog):
    _versions(tmp_path, "m", 3)
    (tmp_path / "m" / "serving.json").write_text('{"version_policy": {"specific": {"versions": [1, 3, 9]}}}')
    with caplog.at_level("WARNING", logger="app.serving.source"):
        plan = _plan(tmp_path)["m"]
    assert [s.version for s in plan.versions] == [1, 3]
    assert [v for v, _ in plan.not_aspired] == [2]
    assert "[9]" in caplog.text and "not on disk" in caplog.text


def test_labels_and_default_version_are_copied_even_to_a_version_not_aspired(tmp_path):
    _versions(tmp_path, "m", 2)
    (tmp_path / "m" / "serving.json").write_text(
        '{"version_policy": {"specific": {"versions": [2]}}, "labels": {"stable": 1, "canary": 2}, '
        '"default_version": 2}')
    plan = _plan(tmp_path)["m"]
    assert (dict(plan.labels), plan.default_version) == ({"stable": 1, "canary": 2}, 2)
    assert [s.version for s in plan.versions] == [2]


def test_an_unloaded_override_makes_every_version_not_aspired(tmp_path):
    _versions(tmp_path, "m", 2)
    _touch(tmp_path / "other.h5")
    plans = _plan(tmp_path, {"m": ModelOverride(unloaded=True), "absent": ModelOverride(unloaded=True)})
    assert plans["m"].versions == ()
    assert plans["m"].not_aspired == ((1, "unloaded through the model control API"),
                                      (2, "unloaded through the model control API"))
    assert [s.version for s in plans["other"].versions] == [1]
    assert "absent" not in plans


def test_an_unloaded_override_wins_over_an_invalid_serving_json(tmp_path):
    _versions(tmp_path, "m", 1)
    (tmp_path / "m" / "serving.json").write_text('{"typo": 1}')
    plan = _plan(tmp_path, {"m": ModelOverride(unloaded=True)})["m"]
    assert (plan.versions, [v for v, _ in plan.not_aspired]) == ((), [1])


def test_an_override_config_replaces_the_whole_serving_json(tmp_path):
    _versions(tmp_path, "m", 3)
    (tmp_path / "m" / "serving.json").write_text(
        '{"max_batch_size": 4, "labels": {"stable": 1}, "version_policy": {"latest": {}}}')
    config = parse_model_settings({"max_queue_rows": 8, "runtime": "tf", "labels": {"canary": 2},
                                   "version_policy": {"specific": {"versions": [1, 2]}}})
    plan = _plan(tmp_path, {"m": ModelOverride(config=config)})["m"]
    assert [s.version for s in plan.versions] == [1, 2]
    assert dict(plan.labels) == {"canary": 2}
    first = plan.versions[0]
    assert (first.batching.max_queue_rows, first.runtime) == (8, "tf")
    assert first.batching.max_batch_size == load_settings(environ={}).max_batch_size  # the file's 4 is replaced
    assert first.config_path is None  # the file on disk is not what serves


def test_an_override_config_rescues_a_model_whose_serving_json_is_invalid(tmp_path):
    _versions(tmp_path, "m", 1)
    (tmp_path / "m" / "serving.json").write_text("{bad")
    assert _plan(tmp_path)["m"].versions[0].problem.startswith("serving.json is not valid JSON")
    plan = _plan(tmp_path, {"m": ModelOverride(config=parse_model_settings({}))})["m"]
    assert plan.versions[0].problem is None


def test_an_invalid_serving_json_fails_every_version_whatever_its_policy(tmp_path):
    _versions(tmp_path, "m", 2)
    (tmp_path / "m" / "serving.json").write_text('{"version_policy": {"latest": {"num_versions": 0}}}')
    plan = _plan(tmp_path)["m"]
    assert [s.version for s in plan.versions] == [1, 2]
    assert all(s.problem.startswith("serving.json is invalid: version_policy.latest.num_versions")
               for s in plan.versions)
    assert (plan.not_aspired, plan.labels) == ((), {})


def test_a_policy_counts_failed_versions_by_their_number(tmp_path):
    _versions(tmp_path, "m", 1)
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "serving.json").write_text('{"version_policy": {"latest": {}}}')
    (latest,) = _plan(tmp_path)["m"].versions
    assert (latest.version, "no .h5" in latest.problem) == (2, True)


def test_a_model_defined_as_file_and_folder_fails_each_version_once(tmp_path):
    _touch(tmp_path / "dup.h5")
    _versions(tmp_path, "dup", 2)
    plan = _plan(tmp_path)["dup"]
    assert [s.version for s in plan.versions] == [1, 2]
    assert all("defined twice" in s.problem for s in plan.versions)


def test_a_model_folder_without_versions_is_not_planned(tmp_path):
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "serving.json", b"{}")
    assert _plan(tmp_path) == {}
