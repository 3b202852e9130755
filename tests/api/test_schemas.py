"""The /predict envelope: the plain fast path accepts only what the marshmallow schema accepts."""
from __future__ import annotations

import itertools

import orjson
from marshmallow import ValidationError

from app.api import json_body
from app.api.schemas import _PREDICT, plain_predict_request


def proxied(envelope: dict) -> dict:
    """The envelope as the codec sees it: top-level fields of a parsed body, containers as proxies."""
    return json_body.fields(json_body.parse_object(orjson.dumps(envelope)))


def plain(loaded: dict | None) -> dict | None:
    return None if loaded is None else {key: json_body.plain(value) for key, value in loaded.items()}

VALUES = {
    "model": [None, "", "m", 1, True, ["m"]],
    "version": [None, 0, 1, 2, True, 1.0, "1", -1],
    "label": [None, "canary", "", "a b", 1],
    "instances": [None, [], [[1.0]], {"a": 1}, "x", 1],
    "inputs": [None, [], [[1.0]], {"a": [1]}, "x", 1],
    "other": [1],
}


def envelopes():
    keys = list(VALUES)
    for present in itertools.product([False, True], repeat=len(keys)):
        chosen = [key for key, keep in zip(keys, present) if keep]
        for combo in itertools.product(*(VALUES[key] for key in chosen)):
            yield dict(zip(chosen, combo))


def test_the_fast_path_loads_exactly_what_the_schema_loads_and_never_more():
    fast_count = 0
    for envelope in map(proxied, envelopes()):
        fast = plain_predict_request(envelope)
        if fast is None:
            continue
        fast_count += 1
        try:
            loaded = _PREDICT.load(envelope)
        except ValidationError as exc:
            raise AssertionError(f"fast path accepted {envelope!r}; the schema says {exc.messages}") from None
        assert plain(fast) == plain(loaded), envelope
    assert fast_count > 50  # the common envelopes do take the fast path


def test_common_envelopes_take_the_fast_path():
    assert plain(plain_predict_request(proxied({"instances": [[1.0, 2.0]]}))) == {
        "model": None, "version": None, "label": None, "instances": [[1.0, 2.0]]}
    assert plain(plain_predict_request(proxied({"model": "m", "version": 2, "inputs": {"a": [1]}}))) == {
        "model": "m", "version": 2, "label": None, "inputs": {"a": [1]}}
    assert plain(plain_predict_request(proxied({"model": "m", "label": "canary", "inputs": [1]}))) == {
        "model": "m", "version": None, "label": "canary", "inputs": [1]}
    assert plain_predict_request(proxied({"version": 1, "label": "canary", "inputs": [1]})) is None
    assert plain_predict_request(proxied({"model": "m", "instances": [], "inputs": []})) is None
