"""TF Serving's PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus)."""
from __future__ import annotations

import grpc

from app import errors
from app.api import tfserving
from app.api.dataplane import DataPlane, InferRequest, RequestedOutput
from app.api.grpc import tf_tensors
from app.api.grpc import tfserving_apis_pb2 as pb
from app.api.grpc.status import TokenGuard, rpc
from app.serving.types import ModelState

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
PREDICTION_METHODS = {"Predict": (pb.PredictRequest, pb.PredictResponse),
                      "GetModelMetadata": (pb.GetModelMetadataRequest, pb.GetModelMetadataResponse)}
MODEL_METHODS = {"GetModelStatus": (pb.GetModelStatusRequest, pb.GetModelStatusResponse)}
STATES = {ModelState.LOADING: pb.ModelVersionStatus.LOADING, ModelState.AVAILABLE: pb.ModelVersionStatus.AVAILABLE,
          ModelState.UNLOADING: pb.ModelVersionStatus.UNLOADING, ModelState.FAILED: pb.ModelVersionStatus.END,
          ModelState.END: pb.ModelVersionStatus.END}  # END: not aspired or unloaded (status OK, as TF Serving)
UNKNOWN_ERROR = 2  # tensorflow.error.Code.UNKNOWN: how a failed load ends


def requested(spec: pb.ModelSpec) -> tuple[int | None, str | None]:
    """(version, label) a ModelSpec names: a version number, a serving.json label, or neither (the default)."""
    version = spec.version.value if spec.HasField("version") else None
    return version, spec.version_label if spec.HasField("version_label") else None


def model_spec(name: str, version: int) -> pb.ModelSpec:
    """The ModelSpec of the version that answered."""
    spec = pb.ModelSpec(name=name, signature_name=tfserving.DEFAULT_SIGNATURE)
    spec.version.value = version  # (the package's own Int64Value: its messages live in their own pool)
    return spec


def _check_signature(name: str) -> None:
    if name not in ("", tfserving.DEFAULT_SIGNATURE):
        raise errors.InvalidRequest(f"Serving signature name: {name!r} not found in signature def; "
                                    f"Keras models have only {tfserving.DEFAULT_SIGNATURE!r}")


class PredictionServicer:
    """Predict and GetModelMetadata; the token rule of the matching /v1 route."""

    def __init__(self, dataplane: DataPlane, guard: TokenGuard):
        self.dataplane, self.guard = dataplane, guard

    @rpc(lambda request: f"/v1/models/{request.model_spec.name}:predict")
    def Predict(self, request: pb.PredictRequest, context: grpc.ServicerContext) -> pb.PredictResponse:
        """Run the model on TensorProto inputs keyed by input name; outputs filtered by output_filter."""
        _check_signature(request.model_spec.signature_name)
        version, label = requested(request.model_spec)
        envelope = dict(model=request.model_spec.name or None, version=version, label=label,
                        outputs=tuple(RequestedOutput(n) for n in request.output_filter) or None)
        try:
            decoded = InferRequest(**envelope, inputs={name: tf_tensors.to_array(tensor, name)
                                                       for name, tensor in request.inputs.items()})
        except errors.ServingError as exc:  # a bad tensor is an input error: after the model is known
            decoded = InferRequest(**envelope, input_error=exc)
        answer = self.dataplane.infer(decoded)
        outputs = {name: tf_tensors.to_proto(array) for name, array in answer.outputs.items()}
        return pb.PredictResponse(model_spec=model_spec(answer.model, answer.version), outputs=outputs)

    @rpc(lambda request: f"/v1/models/{request.model_spec.name}/metadata")
    def GetModelMetadata(self, request: pb.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> pb.GetModelMetadataResponse:
        """The `serving_default` SignatureDef, in metadata['signature_def'] (a packed SignatureDefMap)."""
        if list(request.metadata_field) != ["signature_def"]:
            raise errors.InvalidRequest("metadata_field must be ['signature_def'], the one metadata served")
        servable = self.dataplane.resolve(request.model_spec.name or None, *requested(request.model_spec))
        assert servable.signature is not None  # resolve() answers AVAILABLE versions
        signature = pb.SignatureDef(method_name=tfserving.PREDICT_METHOD, inputs={
            spec.name: pb.TensorInfo(name=f"serving_default_{spec.name}:0", dtype=tf_tensors.data_type(spec.dtype),
                                     tensor_shape=tf_tensors.shape_proto(spec.shape))
            for spec in servable.signature.inputs}, outputs={
            spec.name: pb.TensorInfo(name=f"StatefulPartitionedCall:{index}", dtype=tf_tensors.data_type(spec.dtype),
                                     tensor_shape=tf_tensors.shape_proto(spec.shape))
            for index, spec in enumerate(servable.signature.outputs)})
        response = pb.GetModelMetadataResponse(model_spec=model_spec(servable.name, servable.version))
        response.metadata["signature_def"].Pack(pb.SignatureDefMap(
            signature_def={tfserving.DEFAULT_SIGNATURE: signature}))
        return response


class ModelServicer:
    """GetModelStatus: every version's state, or one version's."""

    def __init__(self, dataplane: DataPlane, guard: TokenGuard):
        self.dataplane, self.guard = dataplane, guard

    @rpc(lambda request: f"/v1/models/{request.model_spec.name}")
    def GetModelStatus(self, request: pb.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> pb.GetModelStatusResponse:
        """Each version's state (a failed load is END with error_code UNKNOWN and the reason), or one version's
        (by number, or by label: the version it routes to)."""
        registry, spec = self.dataplane.registry, request.model_spec
        version, label = requested(spec)
        if label is not None:
            version = registry.resolve(spec.name, None, label).version
        versions = registry.model_versions(spec.name) if version is None else [registry.get(spec.name, version)]
        return pb.GetModelStatusResponse(model_version_status=[
            pb.ModelVersionStatus(version=v.version, state=STATES[v.state], status=pb.StatusProto(
                error_code=UNKNOWN_ERROR if v.state is ModelState.FAILED else 0,
                error_message=(v.error or "") if v.state is ModelState.FAILED else ""))
            for v in versions])
