"""marshmallow schemas of the Open Inference Protocol (V2) bodies, for the OpenAPI document."""
from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from app.api.api_schemas import TENSOR
from app.api.v2_datatypes import DATATYPES

DATATYPE_NAMES = [*DATATYPES, "BYTES", "BF16"]
# A flat or nested list of values (or one value); BOOL data are true/false.
DATA = {**TENSOR, "description": "flat or nested, row-major; absent when sent as binary"}


class V2ServerMetadata(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class V2Live(Schema):
    live = fields.Boolean(required=True)


class V2Ready(Schema):
    class Meta:
        unknown = INCLUDE

    ready = fields.Boolean(required=True)
    not_ready = fields.List(fields.Dict(), metadata={"description": "the versions holding readiness back"})
    reason = fields.String(metadata={"description": "why, in words"})
    workers = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": "expected, started and loaded workers"})


class V2ModelReady(Schema):
    name = fields.String(required=True)
    version = fields.String(metadata={"description": "the version that answers"})
    ready = fields.Boolean(required=True)
    error = fields.String(metadata={"description": "why it is not ready"})
    not_ready = fields.List(fields.Dict(), metadata={"description": "the versions not ready, in how many workers"})


class V2TensorMetadata(Schema):
    name = fields.String(required=True)
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPE_NAMES))
    shape = fields.List(fields.Integer(), required=True, metadata={"description": "-1 for a variable dimension"})


class V2ModelMetadata(Schema):
    name = fields.String(required=True)
    versions = fields.List(fields.String(), required=True)
    platform = fields.String(required=True)
    inputs = fields.List(fields.Nested(V2TensorMetadata), required=True)
    outputs = fields.List(fields.Nested(V2TensorMetadata), required=True)


class V2ConfigTensor(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True)
    data_type = fields.String(required=True, metadata={"example": "TYPE_FP32"})
    dims = fields.List(fields.Integer(), required=True, metadata={"description": "without the batch dimension"})


class V2StringValue(Schema):
    string_value = fields.String(required=True)


class V2ModelConfig(Schema):
    """Triton's model configuration, in its JSON form."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True)
    platform = fields.String(required=True)
    backend = fields.String(required=True)
    max_batch_size = fields.Integer(required=True)
    input = fields.List(fields.Nested(V2ConfigTensor), required=True)
    output = fields.List(fields.Nested(V2ConfigTensor), required=True)
    version_policy = fields.Dict()
    dynamic_batching = fields.Dict()
    parameters = fields.Dict(keys=fields.String(), values=fields.Nested(V2StringValue))


class V2IndexRequest(Schema):
    class Meta:
        unknown = INCLUDE

    ready = fields.Boolean(metadata={"description": "true: list only READY versions"})


class V2IndexEntry(Schema):
    name = fields.String(required=True)
    version = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(["READY", "LOADING", "UNAVAILABLE", "UNLOADING"]))
    reason = fields.String(required=True)


class V2BinaryParameters(Schema):
    class Meta:
        unknown = INCLUDE

    binary_data_size = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "binary extension: the tensor's bytes follow the JSON header"})


class V2InferInput(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, metadata={"example": "features"})
    shape = fields.List(fields.Integer(validate=validate.Range(min=0)), required=True, metadata={"example": [1, 4]})
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPE_NAMES), metadata={"example": "FP32"})
    parameters = fields.Nested(V2BinaryParameters)
    data = fields.Raw(metadata={**DATA, "example": [5.1, 3.5, 1.4, 0.2]})


class V2OutputParameters(Schema):
    class Meta:
        unknown = INCLUDE

    binary_data = fields.Boolean(metadata={"description": "answer this output as binary"})


class V2RequestedOutput(Schema):
    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True)
    parameters = fields.Nested(V2OutputParameters)


class V2RequestParameters(Schema):
    class Meta:
        unknown = INCLUDE

    binary_data_output = fields.Boolean(metadata={"description": "answer every output as binary by default"})


class V2InferRequest(Schema):
    """JSON tensors; with the binary extension this is the header, and the tensors' bytes follow it."""

    class Meta:
        unknown = INCLUDE

    id = fields.String(metadata={"description": "echoed in the answer"})
    parameters = fields.Nested(V2RequestParameters)
    inputs = fields.List(fields.Nested(V2InferInput), required=True, validate=validate.Length(min=1))
    outputs = fields.List(fields.Nested(V2RequestedOutput), metadata={"description": "default: every output"})


class V2InferOutput(Schema):
    name = fields.String(required=True)
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPE_NAMES))
    shape = fields.List(fields.Integer(), required=True)
    data = fields.List(fields.Raw(metadata={"anyOf": [{"type": "number"}, {"type": "boolean"}]}), metadata={
        "description": "flat, row-major; absent when the output is binary"})
    parameters = fields.Nested(V2BinaryParameters)


class V2InferResponse(Schema):
    model_name = fields.String(required=True)
    model_version = fields.String(required=True)
    id = fields.String()
    outputs = fields.List(fields.Nested(V2InferOutput), required=True)
