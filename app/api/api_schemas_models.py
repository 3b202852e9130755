"""marshmallow schemas of the native model listing (`/models`) and of the model repository extension's
load and unload bodies, for the OpenAPI document (they describe the wire format only)."""
from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

STATES = ["LOADING", "AVAILABLE", "FAILED", "UNLOADING", "END"]


class TensorSpec(Schema):
    name = fields.String(required=True)
    shape = fields.List(fields.Integer(allow_none=True), required=True,
                        metadata={"description": "null for a variable dimension"})
    dtype = fields.String(required=True, metadata={"example": "float32"})


class VersionSummary(Schema):
    version = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    error = fields.String(metadata={"description": "why the version FAILED, or why it is END (not aspired, unloaded)"})


class VersionDetail(VersionSummary):
    """Everything known about one version; keys beyond these may be added."""

    class Meta:
        unknown = INCLUDE

    source = fields.String(allow_none=True)
    settings_file = fields.String(allow_none=True)
    custom_objects = fields.String(allow_none=True)
    format = fields.String(allow_none=True)
    loaded_by = fields.String(allow_none=True)
    keras_version = fields.String(allow_none=True)
    backend = fields.String(allow_none=True)
    load_seconds = fields.Float(allow_none=True)
    warmup_seconds = fields.Float(allow_none=True)
    loaded_at = fields.String(allow_none=True)
    runtime = fields.Dict(metadata={"description": "kind (tflite or tf_function), not_tflite_because, call_us"})
    inputs = fields.List(fields.Nested(TensorSpec))
    outputs = fields.List(fields.Nested(TensorSpec))
    batching = fields.Dict(metadata={"description": "the effective batching settings (absent for an END version)"})
    stats = fields.Dict(metadata={"description": "this worker's counters (requests, rows, batches, queue_ms, ...)"})


class NamedVersionDetail(VersionDetail):
    name = fields.String(required=True)


class ModelSummary(Schema):
    name = fields.String(required=True)
    versions = fields.List(fields.Nested(VersionSummary), required=True)


class Admission(Schema):
    max_queue_wait_ms = fields.Float(required=True)
    queue_wait_grace_ms = fields.Float(required=True)
    shed_requests = fields.Integer(required=True)


class ModelList(Schema):
    models = fields.List(fields.Nested(ModelSummary), required=True)
    admission = fields.Nested(Admission, required=True)


class ModelDetail(Schema):
    name = fields.String(required=True)
    versions = fields.List(fields.Nested(VersionDetail), required=True)


class V2LoadParameters(Schema):
    config = fields.String(metadata={
        "description": "a serving.json document as a JSON string: it replaces the model's serving.json until the "
                       "next load", "example": '{"labels": {"stable": 1, "canary": 2}, "default_version": 1}'})


class V2LoadRequest(Schema):
    """Triton's load body (optional): `parameters.config`."""

    parameters = fields.Nested(V2LoadParameters)


class V2UnloadParameters(Schema):
    unload_dependents = fields.Boolean(metadata={"description": "accepted for Triton's clients; no model has "
                                                                "dependents here"})


class V2UnloadRequest(Schema):
    """Triton's unload body (optional)."""

    parameters = fields.Nested(V2UnloadParameters)


class V2Empty(Schema):
    """`{}`: carried out by every worker of the instance."""
