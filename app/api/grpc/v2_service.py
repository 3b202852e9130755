"""inference.GRPCInferenceService: health, metadata and ModelInfer on the data plane."""
from __future__ import annotations

import grpc

from app.api import v2
from app.api.dataplane import DataPlane
from app.api.grpc import grpc_predict_v2_pb2 as pb
from app.api.grpc import v2_tensors
from app.api.grpc.status import TokenGuard, rpc
from app.api.grpc.v2_wire import WireInferRequest
from app.api.v2_datatypes import datatype_of, v2_shape
from app.serving.types import TensorSpec

SERVICE = "inference.GRPCInferenceService"
EXTENSIONS = ["binary_tensor_data", "model_repository"]  # raw contents; RepositoryIndex, Load, Unload
# method -> (request type, response type), for the generic handler (app.api.grpc.server)
METHODS = {"ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
           "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
           "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
           "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
           "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
           "ModelInfer": (WireInferRequest, pb.ModelInferResponse)}  # raw tensors not copied out of the call


class InferenceServicer:
    """The V2 RPCs; a method's token rule is the one of the REST route it stands for."""

    def __init__(self, dataplane: DataPlane, guard: TokenGuard):
        self.dataplane, self.guard = dataplane, guard

    @rpc(lambda request: "/v2/health/live")
    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        """Live while the worker serves."""
        return pb.ServerLiveResponse(live=True)

    @rpc(lambda request: "/v2/health/ready")
    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        """Ready when every model version is (FAILED ones count unless strict readiness is off)."""
        return pb.ServerReadyResponse(ready=server_ready(self.dataplane))

    @rpc(lambda request: f"/v2/models/{request.name}/ready")
    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        """Whether the model (version) is AVAILABLE in every worker (as REST answers); NOT_FOUND when unknown."""
        _, held = self.dataplane.registry.model_readiness(request.name, v2_tensors.version_number(request.version))
        return pb.ModelReadyResponse(ready=not held)

    @rpc(lambda request: "/v2")
    def ServerMetadata(self, request: pb.ServerMetadataRequest,
                       context: grpc.ServicerContext) -> pb.ServerMetadataResponse:
        """Server name, version and extensions."""
        return pb.ServerMetadataResponse(name=v2.SERVER_NAME, version=v2.SERVER_VERSION, extensions=EXTENSIONS)

    @rpc(lambda request: f"/v2/models/{request.name}")
    def ModelMetadata(self, request: pb.ModelMetadataRequest,
                      context: grpc.ServicerContext) -> pb.ModelMetadataResponse:
        """Name, versions, platform and tensors (-1 marks variable dimensions), as GET /v2/models/NAME."""
        servable = self.dataplane.resolve(request.name, v2_tensors.version_number(request.version))
        assert servable.signature is not None  # resolve() answers AVAILABLE versions
        return pb.ModelMetadataResponse(
            name=servable.name, platform=v2.PLATFORM,
            versions=[str(v.version) for v in self.dataplane.registry.model_versions(servable.name)],
            inputs=[_tensor(spec) for spec in servable.signature.inputs],
            outputs=[_tensor(spec) for spec in servable.signature.outputs])

    @rpc(lambda request: f"/v2/models/{request.message.model_name}/infer")
    def ModelInfer(self, request: WireInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        """Run the model on raw or typed inputs; the request's id is echoed."""
        decoded = v2_tensors.decode(request.message, request.raw)
        return v2_tensors.encode(decoded, self.dataplane.infer(decoded))


def server_ready(dataplane: DataPlane) -> bool:
    """The instance's readiness, as /health/ready answers it (every worker; not while draining)."""
    return dataplane.registry.instance_readiness().ready


def _tensor(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=datatype_of(spec.dtype),
                                                   shape=v2_shape(spec.shape))
