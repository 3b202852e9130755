"""gRPC ModelInfer against REST V2 (binary and JSON): 1-row MLP at 32 connections, one 1000x256 FP32 request.

.venv/bin/python -m bench.grpc [--seconds 5] [--quick] [--out DIR]
Serves the bench MLP with the service (gunicorn.conf.py: 2 workers, gRPC in each on a shared port),
drives REST with wrk (as `make bench` does) and gRPC with a closed-loop grpc.aio client of
pre-serialized requests (one channel, so one HTTP/2 connection, per "connection"), and reports for
each surface req/s, p50/p99 (ms), request MB/s, the server's CPU time per request (the workers'
utime+stime, which no client cost enters) and the client's (wrk's utime+stime, the gRPC driver
processes' CPU time in their calls' loop: a closed loop on one connection waits for both).
Writes OUT/grpc.json and prints a table.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench import servers, wrk
from bench.models import MLP_INPUTS, sample_rows
from tests.support import children, free_port

METHOD = "/inference.GRPCInferenceService/ModelInfer"
CASES = (("mlp-1", 1, 32), ("large-1000x256", 1000, 1))  # (name, rows, connections)
CLIENT_PROCESSES = 2  # gRPC client processes sharing the connections (one Python process tops out first)
LUA_REQUEST = 'local req = wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)'


def v2_bodies(rows: np.ndarray) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The REST V2 request of `rows` as JSON and as binary tensor data: (body, headers)."""
    tensor = {"name": "features", "datatype": "FP32", "shape": list(rows.shape)}
    as_json = orjson.dumps({"inputs": [{**tensor, "data": rows.ravel().tolist()}]})
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": rows.nbytes}}],
                           "outputs": [{"name": "probs", "parameters": {"binary_data": True}}]})
    return {"v2-json": (as_json, {"Content-Type": "application/json"}),
            "v2-binary": (header + rows.tobytes(), {"Content-Type": "application/octet-stream",
                                                    "Inference-Header-Content-Length": str(len(header))})}


def grpc_body(rows: np.ndarray) -> bytes:
    """The serialized ModelInferRequest of `rows` (raw_input_contents)."""
    from app.api.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[rows.tobytes()])
    request.inputs.add(name="features", datatype="FP32", shape=rows.shape)
    return request.SerializeToString()


def wrk_script(folder: Path, name: str, body: bytes, headers: dict[str, str]) -> Path:
    """bench.wrk's script, posting `body` with `headers` to /v2/models/mlp/infer."""
    script = wrk.write_script(folder, name, body)
    text = script.read_text()
    assert LUA_REQUEST in text, "bench/wrk.py's request line changed"
    lua_headers = ", ".join(f'["{key}"] = "{value}"' for key, value in headers.items())
    script.write_text(text.replace(LUA_REQUEST, f'local req = wrk.format("POST", "/v2/models/mlp/infer", '
                                                f'{{{lua_headers}}}, body)'))
    return script


async def _drive(address: str, body: bytes, channels: int, seconds: float) -> dict:
    import grpc

    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", -1),
               ("grpc.max_receive_message_length", -1)]
    opened = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started_cpu = time.process_time()
    stop_at = time.perf_counter() + seconds

    async def loop(channel: grpc.aio.Channel) -> None:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out: no (de)serialization on the client
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await call(body, timeout=30)
                latencies.append(time.perf_counter() - started)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

    await asyncio.gather(*(loop(c) for c in opened))
    cpu = time.process_time() - started_cpu  # the calls' loop only, not the start-up
    for channel in opened:
        await channel.close()
    return {"latencies": latencies, "errors": errors, "cpu_s": cpu}


def drive_grpc(address: str, body_path: Path, connections: int, seconds: float) -> dict:
    """Closed-loop ModelInfer calls over `connections` channels split between client processes."""
    processes = min(CLIENT_PROCESSES, connections)
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.grpc", "--drive", address, str(body_path), str(share),
                               str(seconds)], stdout=subprocess.PIPE, cwd=servers.ROOT) for share in shares]
    results = [json.loads(proc.communicate(timeout=seconds + 60)[0]) for proc in procs]
    latencies = np.sort(np.concatenate([r["latencies"] for r in results])) * 1000
    errors: dict[str, int] = {}
    for result in results:
        for code, count in result["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {"rps": round(len(latencies) / seconds, 1), "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)), "errors": errors,
            "client_cpu_s": sum(r["cpu_s"] for r in results)}


def cpu_seconds(master: int) -> float:
    """utime + stime of the master's workers, in seconds."""
    ticks = 0
    for pid in children(master):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for_grpc(address: str, timeout: float = 60) -> None:
    """Until the gRPC health service answers SERVING (every worker has started its server once loaded)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with grpc.insecure_channel(address) as channel:
            try:
                if health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    time.sleep(1.0)  # the other worker settles at about the same time
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.3)
    raise RuntimeError(f"gRPC not SERVING on {address} after {timeout}s")


def main() -> None:
    """Run every case on every surface against one service; print the table, write OUT/grpc.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.grpc", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="2-second runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    wrk.require_wrk()
    work = Path(tempfile.mkdtemp(prefix="keras-bench-grpc-"))
    subprocess.run([sys.executable, "-c", "import pathlib; from bench.models import build_models; "
                    f"build_models(pathlib.Path({str(work / 'models')!r}))"], check=True, cwd=servers.ROOT)
    port = free_port()
    rows_out = []
    with servers.serve("service", work / "models", work / "logs", env={"SERVING_GRPC_PORT": str(port)}) as (base, pid):
        wait_for_grpc(f"127.0.0.1:{port}")
        for name, rows, connections in CASES:
            sample = sample_rows("mlp", rows)
            assert sample.shape == (rows, MLP_INPUTS)
            for surface, (body, headers) in v2_bodies(sample).items():
                script = wrk_script(work / "wrk", f"{name}-{surface}", body, headers)
                before, client_before = cpu_seconds(pid), client_cpu_seconds()
                result = wrk.run(base + "/v2/models/mlp/infer", script, connections, seconds)
                rows_out.append(_row(name, surface, connections, len(body), result, cpu_seconds(pid) - before,
                                     seconds, result["non_2xx"] + sum(result["socket_errors"].values()),
                                     client_cpu_seconds() - client_before))
            body = grpc_body(sample)
            body_path = work / f"{name}.grpc.bin"
            body_path.write_bytes(body)
            before = cpu_seconds(pid)
            result = drive_grpc(f"127.0.0.1:{port}", body_path, connections, seconds)
            rows_out.append(_row(name, "grpc", connections, len(body), result, cpu_seconds(pid) - before, seconds,
                                 sum(result["errors"].values()), result["client_cpu_s"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grpc.json").write_text(json.dumps(rows_out, indent=1))
    print(f"{'case':<16}{'surface':<11}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'MB/s':>8}"
          f"{'cpu ms/req':>11}{'client ms/req':>14}{'errors':>8}")
    for r in rows_out:
        print(f"{r['case']:<16}{r['surface']:<11}{r['connections']:>6}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{r['mb_s']:>8.1f}{r['server_cpu_ms_per_request']:>11.3f}"
              f"{r['client_cpu_ms_per_request']:>14.3f}{r['errors']:>8}")
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")


def client_cpu_seconds() -> float:
    """utime + stime of this process's finished children (wrk), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _row(case: str, surface: str, connections: int, body_bytes: int, result: dict, cpu: float, seconds: float,
         errors: int, client_cpu: float) -> dict:
    requests = max(result["rps"] * seconds, 1)
    return {"case": case, "surface": surface, "connections": connections, "rps": result["rps"],
            "p50_ms": round(result["p50_ms"], 3), "p99_ms": round(result["p99_ms"], 3),
            "mb_s": round(result["rps"] * body_bytes / 1e6, 2), "request_bytes": body_bytes,
            "server_cpu_ms_per_request": round(cpu * 1000 / requests, 3),
            "client_cpu_ms_per_request": round(client_cpu * 1000 / requests, 3), "errors": errors}


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--drive":
        address, body_file, channels, run_seconds = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        found = asyncio.run(_drive(address, body_file.read_bytes(), channels, run_seconds))
        print(json.dumps(found))
    else:
        main()
