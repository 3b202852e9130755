"""gRPC surfaces: the Open Inference Protocol's GRPCInferenceService and TF Serving's services.

Each is a codec in front of the one data plane (`app.api.dataplane.DataPlane`), served by a gRPC
server in each gunicorn worker (`app.gunicorn.grpc_server`). The `*_pb2.py` modules are generated
from `protos/` by `scripts/generate_grpc.sh`.
"""
