#!/usr/bin/env bash
# Regenerate app/api/grpc/*_pb2.py from app/api/grpc/protos/*.proto with grpcio-tools==1.85.1
# (requirements-dev.txt): `bash scripts/generate_grpc.sh`. Only the message modules are generated;
# the servicers register their methods with grpc's generic handlers (app/api/grpc/server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -m grpc_tools.protoc --version  # libprotoc 35.1 with grpcio-tools 1.85.1
"$PYTHON" -m grpc_tools.protoc -I app/api/grpc/protos --python_out=app/api/grpc \
  app/api/grpc/protos/grpc_predict_v2.proto app/api/grpc/protos/tfserving_apis.proto
# Generated code is not ours to lint; its messages go to the package's own descriptor pool
# (app/api/grpc/pool.py), so a client library's protos can be imported in the same process.
for module in app/api/grpc/grpc_predict_v2_pb2.py app/api/grpc/tfserving_apis_pb2.py; do
  sed -i '1i # ruff: noqa' "$module"
  sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/from app.api.grpc.pool import POOL\nDESCRIPTOR = POOL.AddSerializedFile(/' "$module"
  grep -q '^DESCRIPTOR = POOL.AddSerializedFile(' "$module"
done
