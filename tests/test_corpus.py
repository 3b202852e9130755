"""Optional: serve every file of ../shared/corpus over `POST /predict` and compare with its reference.

Skipped when the corpus folder is absent. Files with a reference must be AVAILABLE and match it
(atol 1e-4, rtol 1e-3); where tf_keras also reads a file, the served outputs agree with it within 1e-5.
Files without a reference must be FAILED with a reason naming the cause the corpus README expects.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / ".." / "shared" / "corpus"

pytestmark = [pytest.mark.corpus,
              pytest.mark.skipif(not (CORPUS / "manifest.json").is_file(),
                                 reason=f"corpus folder {CORPUS.resolve()} is absent: it is the shared/corpus "
                                        "folder handed to developers beside the checkout (../shared/corpus, see its "
                                        "README.md); link or copy it there to run these tests")]


def manifest() -> list[dict]:
    return json.loads((CORPUS / "manifest.json").read_text()) if (CORPUS / "manifest.json").is_file() else []


def cause_words(expected_failure: str) -> list[str]:
    """What the reason must name: quoted class names, Lambda, weights only, pickle, truncated."""
    words = re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", expected_failure)
    for word in ("Lambda", "weights only", "pickle", "truncated"):
        if word.lower() in expected_failure.lower():
            words.append(word)
    return words or [expected_failure]


@pytest.fixture(scope="module")
def corpus_app(tmp_path_factory):
    from app import create_app

    folder = tmp_path_factory.mktemp("corpus_models")
    for entry in manifest():
        source = CORPUS / "files" / entry["file"]
        (folder / entry["file"]).symlink_to(source.resolve())
    application = create_app({"TESTING": True, "MODEL_DIR": folder, "STRICT_READINESS": False,
                              "MAX_REQUEST_ROWS": 100})
    assert application.extensions["registry"].wait_until_settled(300)
    yield application
    application.extensions["registry"].close()


def model_name(entry: dict) -> str:
    return Path(entry["file"]).stem


def served_outputs(client, entry: dict, reference) -> tuple[dict, list[np.ndarray]]:
    name = model_name(entry)
    info = client.get(f"/models/{name}/versions/1").get_json()
    assert info["state"] == "AVAILABLE", info
    inputs = {spec["name"]: reference[f"in_{i}"].tolist() for i, spec in enumerate(info["inputs"])}
    response = client.post("/predict", json={"model": name, "inputs": inputs})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    outputs = response.get_json()["outputs"]
    names = [spec["name"] for spec in info["outputs"]]
    columns = [outputs[n] for n in names] if isinstance(outputs, dict) else [outputs]
    return info, [np.array(c, dtype="float64") for c in columns]  # null (NaN) becomes nan


@pytest.mark.parametrize("entry", [e for e in manifest() if e["reference"]], ids=lambda e: e["file"])
def test_file_with_a_reference_is_served_and_matches(corpus_app, entry):
    reference = np.load(CORPUS / entry["reference"])
    info, outputs = served_outputs(corpus_app.test_client(), entry, reference)
    assert len(outputs) == len([k for k in reference.files if k.startswith("out_")])
    for i, got in enumerate(outputs):
        np.testing.assert_allclose(got, reference[f"out_{i}"], atol=1e-4, rtol=1e-3, equal_nan=True)
    assert info["keras_version"] == entry["keras_version"]
    assert info["loaded_by"].startswith(("keras3", "tf_keras"))
    if info["format"] == "hdf5" and info["loaded_by"] != "tf_keras":
        agree_with_tf_keras(entry, reference, outputs)


def agree_with_tf_keras(entry: dict, reference, outputs: list[np.ndarray]) -> None:
    """Where tf_keras also loads the file, the served outputs equal its outputs within 1e-5."""
    from app.serving.legacy.build import tf_keras_from_hdf5

    try:
        model = tf_keras_from_hdf5(CORPUS / "files" / entry["file"], {}, True)
    except Exception:  # noqa: BLE001 - tf_keras cannot read it: nothing to compare with
        return
    inputs = [reference[f"in_{i}"] for i in range(len(model.inputs))]
    theirs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    for got, want in zip(outputs, theirs):
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-5, rtol=0, equal_nan=True)


# Files no Keras loads that the server serves by translation (a Lambda's bytecode, a Keras 1 Merge); with no
# reference output, each is checked against its own parts, loaded separately (see docs/models.md).
SERVED_BY_TRANSLATION = {"01_carnd_k120_lambda.h5", "02_carnd_k110_merge_two_branch.h5"}


@pytest.mark.parametrize("entry", [e for e in manifest() if not e["reference"] and e["file"] not in
                                   SERVED_BY_TRANSLATION], ids=lambda e: e["file"])
def test_file_without_a_reference_fails_with_its_cause(corpus_app, entry):
    info = corpus_app.test_client().get(f"/models/{model_name(entry)}/versions/1").get_json()
    assert info["state"] == "FAILED", info
    for word in cause_words(entry["expected_failure"]):
        assert word.lower() in info["error"].lower(), (word, info["error"])


def test_summary(corpus_app, capsys):
    """Print how many files were served and how many refused, and why."""
    versions = corpus_app.extensions["registry"].versions()
    served = [v for v in versions if v.state.value == "AVAILABLE"]
    with capsys.disabled():
        print(f"\ncorpus: {len(served)} served, {len(versions) - len(served)} refused")
        for v in versions:
            served_by = v.metadata.get("loaded_by") if v.state.value == "AVAILABLE" else f"FAILED {v.error}"
            print(f"  {v.name}: {served_by}")
    assert len(versions) == len(manifest())


@pytest.mark.parametrize("entry", [e for e in manifest() if "Lambda" in e["layers"]], ids=lambda e: e["file"])
def test_lambda_file_with_translation_off_names_the_bytecode_problem(entry, monkeypatch):
    """With translation off and `"safe_mode": false`, a Lambda from an older Python is refused, saying why."""
    from app.cli import CHECK_BATCHING
    from app.errors import LoadError
    from app.serving.loader import load_model_file
    from app.serving.types import ModelSource

    monkeypatch.setenv("SERVING_TRANSLATE_LAMBDA", "false")
    path = CORPUS / "files" / entry["file"]
    try:
        load_model_file(ModelSource(path.stem, 1, path, CHECK_BATCHING, safe_mode=False))
    except LoadError as exc:
        if "older Python" in (entry["expected_failure"] or ""):
            assert "another Python version" in str(exc)
    else:
        assert "older Python" not in (entry["expected_failure"] or "")


def predict(client, name: str, arrays: list[np.ndarray]) -> np.ndarray:
    """POST /predict with one array per model input, in the model's input order; the one output."""
    info = client.get(f"/models/{name}/versions/1").get_json()
    assert info["state"] == "AVAILABLE", info
    inputs = {spec["name"]: array.tolist() for spec, array in zip(info["inputs"], arrays)}
    response = client.post("/predict", json={"model": name, "inputs": inputs})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return np.array(response.get_json()["outputs"], dtype="float32")


def part_model(layers_config: dict, handle) -> object:
    """A Keras 3 model from part of the file's config (translated by the rules), its weights by layer name."""
    from keras.src.legacy.saving import legacy_h5_format, saving_options, saving_utils

    from app.serving.legacy.rules import translate

    translate(layers_config, "1.1.0")
    with saving_options.keras_option_scope(use_legacy_config=True):
        model = saving_utils.model_from_config(layers_config)
    legacy_h5_format.load_weights_from_hdf5_group_by_name(handle["model_weights"], model)
    return model


def test_lambda_file_equals_its_network_without_the_lambda_given_the_expression(corpus_app):
    """01: served(x) == the same file with its Lambda layer removed, called on x / 127.5 - 1.0 (numpy)."""
    import h5py

    name = "01_carnd_k120_lambda"
    info = corpus_app.test_client().get(f"/models/{name}/versions/1").get_json()
    assert info["translated_lambdas"] == [{"layer": "lambda_1", "expression": "x / 127.5 - 1.0"}]
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    served = predict(corpus_app.test_client(), name, [x])
    with h5py.File(CORPUS / "files" / f"{name}.h5", "r") as handle:
        layers = json.loads(handle.attrs["model_config"])["config"]
        shape = layers.pop(0)["config"]["batch_input_shape"]
        layers[0]["config"]["batch_input_shape"] = shape
        rest = part_model({"class_name": "Sequential", "config": layers}, handle)
    expected = np.asarray(rest(x / np.float32(127.5) - np.float32(1.0)))
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=1e-4)


def test_merge_file_equals_its_branches_concatenated_into_its_head(corpus_app):
    """02: served(a, b, c) == dense_10(concat(branch_1(a), branch_2(b), branch_3(c))), each part loaded alone."""
    import h5py

    name = "02_carnd_k110_merge_two_branch"
    rng = np.random.default_rng(0)
    with h5py.File(CORPUS / "files" / f"{name}.h5", "r") as handle:
        merge, head = json.loads(handle.attrs["model_config"])["config"]
        assert merge["config"]["mode"] == "concat" and merge["config"]["concat_axis"] == -1
        branches = [part_model(branch, handle) for branch in merge["config"]["layers"]]
        inputs = [rng.standard_normal((3, *b.inputs[0].shape[1:])).astype("float32") for b in branches]
        joined = np.concatenate([np.asarray(b(x)) for b, x in zip(branches, inputs)], axis=-1)
        head["config"]["batch_input_shape"] = [None, joined.shape[1]]
        expected = np.asarray(part_model({"class_name": "Sequential", "config": [head]}, handle)(joined))
    served = predict(corpus_app.test_client(), name, inputs)
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=1e-4)
