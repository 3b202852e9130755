"""Triton's model-repository RPCs of inference.GRPCInferenceService: index, load and unload.

They stand for POST /v2/repository/index, /v2/repository/models/NAME/load and .../unload, so they
take the management token (`authorization: Bearer ...` metadata) whatever SERVING_REQUIRE_TOKEN says:
no token configured answers PERMISSION_DENIED (management_disabled), a missing or wrong one
UNAUTHENTICATED. Load and unload go through the instance's model control (`app.extensions["control"]`:
every worker carries them out before the call answers).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
import orjson

from app import errors
from app.api.grpc import grpc_predict_v2_pb2 as pb
from app.api.grpc.status import TokenGuard, rpc

METHODS = {"RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
           "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
           "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse)}
REPOSITORY_PATH = "/v2/repository"


def _check_repository(name: str) -> None:
    if name:
        raise errors.InvalidRequest(f"unknown repository {name!r}: this server has one model repository; "
                                    "leave repository_name empty")


def load_config(name: str, parameters: Mapping[str, pb.ModelRepositoryParameter]) -> dict[str, Any] | None:
    """The serving.json document a load's `config` parameter carries (a JSON string), or None."""
    for key in parameters:
        if key.startswith("file:"):
            raise errors.InvalidRequest(f"load parameter {key!r}: model files cannot be sent; put them in the "
                                        "model folder", {"model": name})
        if key != "config":
            raise errors.InvalidRequest(f"unknown load parameter {key!r} (only 'config')", {"model": name})
    if "config" not in parameters:
        return None
    parameter = parameters["config"]
    if parameter.WhichOneof("parameter_choice") != "string_param":
        raise errors.InvalidRequest("load parameter 'config' must be a string_param holding serving.json",
                                    {"model": name})
    try:
        return orjson.loads(parameter.string_param)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequest(f"load parameter 'config' is not JSON: {exc}", {"model": name}) from None


class RepositoryServicer:
    """RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload on the instance's model control."""

    def __init__(self, control: Callable[[], Any], guard: TokenGuard):
        self.control, self.guard = control, guard  # control(): the app's current ModelControl

    @rpc(lambda request: f"{REPOSITORY_PATH}/index", management=True)
    def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                        context: grpc.ServicerContext) -> pb.RepositoryIndexResponse:
        """Every model version with its state (READY, LOADING, UNLOADING, UNAVAILABLE) and reason."""
        _check_repository(request.repository_name)
        rows = [row for row in self.control().index() if row["state"] == "READY" or not request.ready]
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows])

    @rpc(lambda request: f"{REPOSITORY_PATH}/models/{request.model_name}/load", management=True)
    def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                            context: grpc.ServicerContext) -> pb.RepositoryModelLoadResponse:
        """(Re)load a model in every worker, with the `config` parameter instead of its serving.json if given."""
        _check_repository(request.repository_name)
        self.control().load(request.model_name, load_config(request.model_name, request.parameters))
        return pb.RepositoryModelLoadResponse()

    @rpc(lambda request: f"{REPOSITORY_PATH}/models/{request.model_name}/unload", management=True)
    def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                              context: grpc.ServicerContext) -> pb.RepositoryModelUnloadResponse:
        """Unload every version of a model in every worker until the next load."""
        _check_repository(request.repository_name)
        for key in request.parameters:
            if key != "unload_dependents":  # tritonclient always sends it; no model here has dependents
                raise errors.InvalidRequest(f"unknown unload parameter {key!r}", {"model": request.model_name})
        self.control().unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()
