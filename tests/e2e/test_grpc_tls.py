"""gRPC over TLS: with GUNICORN_CERTFILE / GUNICORN_KEYFILE set, the workers' gRPC servers use the same files."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests import model_builders as mb
from tests.support import ROOT, free_port, gunicorn_command, stop

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc = pytest.importorskip("grpc")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.e2e

ROW = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def serving(channel: grpc.Channel) -> bool:
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    except grpc.RpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def infer(triton: grpcclient.InferenceServerClient) -> np.ndarray:
    item = grpcclient.InferInput("features", list(ROW.shape), "FP32")
    item.set_data_from_numpy(ROW)
    return triton.infer("dense", [item]).as_numpy("probs")


@pytest.mark.parametrize("key_in_certfile", [False, True], ids=["keyfile", "key-in-certfile"])
def test_grpc_serves_tls_with_gunicorns_certificate(tmp_path, certificate, key_in_certfile):
    cert, key = certificate
    models = tmp_path / "models"
    mb.dense(models / "dense.keras")
    if key_in_certfile:  # GUNICORN_CERTFILE holding the key and the certificate, no GUNICORN_KEYFILE
        combined = tmp_path / "combined.pem"
        combined.write_bytes(key.read_bytes() + cert.read_bytes())
        files = {"GUNICORN_CERTFILE": str(combined)}
    else:
        files = {"GUNICORN_CERTFILE": str(cert), "GUNICORN_KEYFILE": str(key)}
    port, grpc_port = free_port(), free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(models),
           "WEB_CONCURRENCY": "1", "SERVING_GRPC_PORT": str(grpc_port), **files}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(gunicorn_command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    address = f"127.0.0.1:{grpc_port}"
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    try:
        deadline = time.monotonic() + 120
        with grpc.secure_channel(address, credentials) as channel:
            while not serving(channel):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.3)
        with grpcclient.InferenceServerClient(url=address, ssl=True, root_certificates=str(cert)) as triton:
            assert triton.is_server_ready()
            probs = infer(triton)
            assert probs.shape == (1, 3) and np.isclose(probs.sum(), 1.0, atol=1e-5)
        with grpcclient.InferenceServerClient(url=address) as plain:  # a plaintext channel gets no answer
            with pytest.raises(InferenceServerException) as caught:
                plain.is_server_live(client_timeout=5)
            assert caught.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
        assert "(TLS)" in log_path.read_text()
    finally:
        stop(proc)
