"""marshmallow schemas of the explain bodies, for the OpenAPI document (requests are checked by app.api.explain)."""
from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from app.api.api_schemas import IRIS_ROW, NAMED_TENSORS, PredictRequest, TFPredictRequest
from app.serving.explain_types import METHODS

TENSOR_OR_NAMED = {**NAMED_TENSORS, "description": "per input (an object keyed by input name with several)"}


class ExplainOptions(Schema):
    """How to explain: method, target, baseline and steps (all optional)."""

    method = fields.String(validate=validate.OneOf(METHODS), metadata={"example": "integrated_gradients",
                                                                       "description": "default integrated_gradients"})
    target = fields.Raw(metadata={"description": '"argmax" (default), a flat index into one row of the output, an '
                                  'output name, or {"output": NAME, "index": I or "argmax"}', "example": "argmax"})
    baseline = fields.Raw(metadata={"description": '"zeros" (default), a number, an array shaped like one row, or '
                                    "an object of those keyed by input name (token ids for an Embedding input)",
                                    "example": [5.84, 3.06, 3.76, 1.2]})
    steps = fields.Integer(validate=validate.Range(min=1), metadata={
        "description": "integrated gradients: quadrature nodes, default 50, at most SERVING_MAX_EXPLAIN_STEPS"})


class ExplainRequest(PredictRequest, ExplainOptions):
    """`POST /explain`: the /predict envelope and the options at its top level."""


class TFExplainRequest(TFPredictRequest):
    """`:explain`: the :predict envelope and the options under `parameters`."""

    class Meta:
        unknown = INCLUDE

    parameters = fields.Nested(ExplainOptions)


class Target(Schema):
    output = fields.String(required=True)
    index = fields.Integer(required=True, metadata={"description": "flat index into one row of the output"})


class Completeness(Schema):
    """Integrated gradients only: how far the attributions' sum is from f(input) - f(baseline)."""

    sum_of_attributions = fields.Float(required=True)
    prediction_minus_baseline = fields.Float(required=True)
    delta = fields.Float(required=True)
    relative = fields.Float(required=True, metadata={"description": "|delta| / |f(input) - f(baseline)|"})


class RowExplanation(Schema):
    target = fields.Nested(Target, required=True)
    prediction = fields.Float(required=True, metadata={"description": "the model's value for the target"})
    attributions = fields.Dict(keys=fields.String(), values=fields.Raw(metadata=TENSOR_OR_NAMED), required=True,
                               metadata={"description": "per input name, attributions shaped like one row of it "
                                         "(an Embedding input: like its token ids)", "example": {"features": IRIS_ROW}})
    completeness = fields.Nested(Completeness)


class TFExplainResponse(Schema):
    method = fields.String(required=True)
    steps = fields.Integer(required=True, allow_none=True, metadata={"description": "null unless integrated gradients"})
    explanations = fields.List(fields.Nested(RowExplanation), required=True, metadata={"description": "one per row"})
    notes = fields.Dict(keys=fields.String(), values=fields.String(), required=True, metadata={
        "description": "per input, how it was treated (e.g. attributed over an Embedding's output)"})


class ExplainResponse(TFExplainResponse):
    model = fields.String(required=True)
    version = fields.Integer(required=True)
