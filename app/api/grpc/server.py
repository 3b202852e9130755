"""One gRPC server: the V2 and TF Serving services, health (`grpc.health.v1`) and reflection.

Options: messages up to SERVING_MAX_CONTENT_LENGTH (not gRPC's 4 MB), connections closed after
SERVING_GRPC_MAX_CONNECTION_AGE seconds so HTTP/2 channels rebalance between workers, the port
shared between the workers' servers (SO_REUSEPORT: the kernel spreads new connections). TLS with
gunicorn's GUNICORN_CERTFILE / GUNICORN_KEYFILE when they are set (`tls_credentials`).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from app import errors
from app.api.dataplane import DataPlane
from app.api.grpc import repository_service, tfs_service, v2_service
from app.api.grpc.pool import POOL
from app.api.grpc.status import TokenGuard
from app.settings import Settings

log = logging.getLogger(__name__)

CONNECTION_AGE_GRACE_S = 10  # a connection past its age finishes its calls within this
SERVICES = (v2_service.SERVICE, tfs_service.PREDICTION_SERVICE, tfs_service.MODEL_SERVICE)


class ReadinessHealth(health.HealthServicer):
    """Check answers SERVING when the worker is ready (every model version, as /health/ready), until stopping."""

    def __init__(self, dataplane: DataPlane):
        super().__init__(experimental_non_blocking=True)
        self.dataplane, self.stopping = dataplane, False

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
        """SERVING or NOT_SERVING for the server ("") and each service; NOT_FOUND for another name."""
        if request.service not in ("", *SERVICES):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        ready = not self.stopping and v2_service.server_ready(self.dataplane)
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)

    def publish(self) -> None:
        """Store the current readiness for Watch streams."""
        ready = not self.stopping and v2_service.server_ready(self.dataplane)
        for name in ("", *SERVICES):
            self.set(name, health_pb2.HealthCheckResponse.SERVING if ready
                     else health_pb2.HealthCheckResponse.NOT_SERVING)


@dataclass(frozen=True)
class GrpcServer:
    """A started gRPC server, its port and its health service."""

    server: grpc.Server
    port: int
    health: ReadinessHealth

    def stop(self, grace: float) -> Any:
        """NOT_SERVING, no new calls, running ones finish within `grace` s; the event is set at the end."""
        self.health.stopping = True
        self.health.enter_graceful_shutdown()
        return self.server.stop(grace)


def handlers(service: str, servicer: Any, methods: dict[str, tuple[Any, Any]]) -> grpc.GenericRpcHandler:
    """The generic handler of one service: each method with its messages' (de)serializers."""
    return grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request_deserializer=request.FromString,
                                                  response_serializer=response.SerializeToString)
        for name, (request, response) in methods.items()})


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel arguments: message sizes, connection age, a port shared by the workers."""
    options = [("grpc.max_receive_message_length", settings.max_content_length),
               ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 1)]
    if settings.grpc_max_connection_age > 0:
        options += [("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age * 1000)),
                    ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_S * 1000)]
    return options


def tls_credentials(certfile: Path, keyfile: Path | None) -> grpc.ServerCredentials:
    """Server credentials from gunicorn's PEM files (the certificate file holds the key too when no keyfile)."""
    chain = certfile.read_bytes()
    return grpc.ssl_server_credentials([(keyfile.read_bytes() if keyfile else chain, chain)])


def start_server(dataplane: DataPlane, settings: Settings, host: str, token_rule: Any | None,
                 control: Any = None, tls: tuple[Path, Path | None] | None = None) -> GrpcServer:
    """Build and start the server on host:SERVING_GRPC_PORT (TLS with `tls`: certfile, keyfile); `control()`
    is the app's model control (the repository RPCs). RuntimeError when the port cannot be bound."""
    server = grpc.server(ThreadPoolExecutor(max_workers=settings.grpc_threads, thread_name_prefix="grpc"),
                         options=server_options(settings))
    guard = TokenGuard(token_rule)
    server.add_generic_rpc_handlers((
        handlers(v2_service.SERVICE, v2_service.InferenceServicer(dataplane, guard), v2_service.METHODS),
        handlers(v2_service.SERVICE, repository_service.RepositoryServicer(control or _no_control, guard),
                 repository_service.METHODS),
        handlers(tfs_service.PREDICTION_SERVICE, tfs_service.PredictionServicer(dataplane, guard),
                 tfs_service.PREDICTION_METHODS),
        handlers(tfs_service.MODEL_SERVICE, tfs_service.ModelServicer(dataplane, guard), tfs_service.MODEL_METHODS)))
    health_service = ReadinessHealth(dataplane)
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server,
                                        pool=POOL)
    address = f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}"
    port = (server.add_secure_port(address, tls_credentials(*tls)) if tls is not None
            else server.add_insecure_port(address))
    if not port:
        raise RuntimeError(f"gRPC cannot listen on {address} (SERVING_GRPC_PORT)")
    health_service.publish()
    server.start()
    log.info("gRPC listening on %s%s", address, " (TLS)" if tls is not None else "")
    return GrpcServer(server, port, health_service)


def _no_control() -> Any:
    raise errors.InternalError("model control is not available in this process")
