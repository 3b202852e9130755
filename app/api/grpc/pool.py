"""The descriptor pool of this package's protos: its own, not protobuf's default one.

A client library in the same process (tritonclient.grpc, tensorflow_serving.apis) registers the
same message names (`inference.ModelInferRequest`, `tensorflow.serving.PredictRequest`) in the
default pool, and one pool refuses a name twice. The files ours import, and the health and
reflection services' (so reflection finds every service here), are added first.
"""
from __future__ import annotations

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

POOL = descriptor_pool.DescriptorPool()
for _module in (any_pb2, wrappers_pb2, health_pb2, reflection_pb2):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
