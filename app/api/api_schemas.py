"""marshmallow schemas of the native and TF Serving bodies and of every error shape, for the OpenAPI document.

They describe the wire format only: requests are validated by `app.api.schemas` and the codecs.
"""
from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

# A tensor in JSON: a number, a boolean, or a nested list of them (row-major).
TENSOR = {"description": "a number, a boolean, or nested lists of them (one level per dimension)",
          "anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "array", "items": {}}]}
# A batch: one tensor for a one-input model, or an object from input (or output) name to tensor.
NAMED_TENSORS = {"anyOf": [TENSOR, {"type": "object", "additionalProperties": TENSOR}]}
MODEL_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", "example": "iris"}
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


class NativeErrorBody(Schema):
    code = fields.String(required=True, metadata={"description": "stable, snake_case: match on it",
                                                  "example": "shape_mismatch"})
    message = fields.String(required=True)
    details = fields.Dict(required=True, metadata={"description": "what the code is about (input, expected, ...)"})


class NativeError(Schema):
    """The native error body (`/predict`, `/models`, `/health` and any path outside /v1 and /v2)."""

    error = fields.Nested(NativeErrorBody, required=True)


class MessageError(Schema):
    """TF Serving's and V2's error body."""

    error = fields.String(required=True, metadata={"example": "model 'nope' is not served"})


class PredictRequest(Schema):
    """`POST /predict`: exactly one of `instances` (rows) or `inputs` (columns); model and version optional."""

    model = fields.String(allow_none=True, validate=validate.Length(min=1),
                          metadata={"description": "needed when more than one model is served", "example": "iris"})
    version = fields.Integer(allow_none=True, validate=validate.Range(min=1),
                             metadata={"description": "default: serving.json `default_version`, else the highest "
                                                      "version AVAILABLE in every worker"})
    label = fields.String(allow_none=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]+$"), metadata={
        "description": "a serving.json `labels` name instead of `version` (not both)", "example": "stable"})
    instances = fields.List(fields.Raw(metadata=NAMED_TENSORS), metadata={
        "description": "one entry per row: a tensor, or an object from input name to tensor",
        "example": [IRIS_ROW]})
    inputs = fields.Raw(metadata={**NAMED_TENSORS, "description": "a batch tensor, or an object from input name "
                                                                  "to batch tensor"})


class PredictResponse(Schema):
    """`predictions` answer `instances`, `outputs` answer `inputs`."""

    model = fields.String(required=True)
    version = fields.Integer(required=True)
    predictions = fields.List(fields.Raw(metadata=NAMED_TENSORS), metadata={
        "description": "one entry per row: a tensor, or an object from output name to tensor (several outputs)"})
    outputs = fields.Raw(metadata={**NAMED_TENSORS, "description": "a batch tensor, or an object from output "
                                                                   "name to batch tensor (several outputs)"})


class Health(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class NotReadyEntry(Schema):
    """A version holding readiness back; keys beyond these may be added."""

    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True)
    version = fields.Integer(required=True)
    state = fields.String(required=True)


class Readiness(Schema):
    class Meta:
        unknown = INCLUDE

    status = fields.String(required=True, validate=validate.OneOf(["ready", "not_ready"]))
    not_ready = fields.List(fields.Nested(NotReadyEntry), metadata={"description": "what is not ready yet"})
    reason = fields.String(metadata={"description": "why, in words"})
    workers = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "expected, started and loaded workers"})


# --- TF Serving REST (/v1) ---

class TFStatus(Schema):
    error_code = fields.String(required=True, metadata={"example": "OK"})
    error_message = fields.String(required=True)


class TFVersionStatus(Schema):
    version = fields.String(required=True, metadata={"example": "1"})
    state = fields.String(required=True, validate=validate.OneOf(["LOADING", "AVAILABLE", "UNLOADING", "END"]))
    status = fields.Nested(TFStatus, required=True)


class TFModelStatus(Schema):
    model_version_status = fields.List(fields.Nested(TFVersionStatus), required=True)


class TFModelSpec(Schema):
    name = fields.String(required=True)
    signature_name = fields.String(required=True)
    version = fields.String(required=True)


class TFSignatures(Schema):
    signature_def = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True, metadata={
        "description": "`serving_default`: inputs and outputs (dtype, tensor_shape, name) and method_name"})


class TFMetadataBody(Schema):
    signature_def = fields.Nested(TFSignatures, required=True)


class TFMetadata(Schema):
    model_spec = fields.Nested(TFModelSpec, required=True)
    metadata = fields.Nested(TFMetadataBody, required=True)


class TFPredictRequest(Schema):
    """Exactly one of `instances` (rows) or `inputs` (columns); `signature_name` empty or serving_default."""

    class Meta:
        unknown = INCLUDE

    signature_name = fields.String(metadata={"example": "serving_default"})
    instances = fields.List(fields.Raw(metadata=NAMED_TENSORS), metadata={"example": [IRIS_ROW]})
    inputs = fields.Raw(metadata=NAMED_TENSORS)


class TFPredictResponse(Schema):
    predictions = fields.List(fields.Raw(metadata=NAMED_TENSORS))
    outputs = fields.Raw(metadata=NAMED_TENSORS)
