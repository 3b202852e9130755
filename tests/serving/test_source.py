"""The source: which versions the model folder asks to serve."""
from __future__ import annotations

from app.serving.source import scan_source
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
