"""What the Prometheus metrics cost: the 1-row MLP at 32 connections, metrics on against off.

.venv/bin/python -m bench.metrics_cost [--seconds 5] [--rounds 5] [--out DIR]
Starts the service twice under gunicorn on 127.0.0.1 (SERVING_METRICS=true and false, both with
text logs, no access line and no load shedding, whose 429s would blur req/s), both at once, and
alternates wrk runs between them round by round, so a noisy neighbour on a shared machine slows
both alike; compares each round's pair (the median of the rounds' ratios) in req/s and in server
CPU time per request (the master's and the workers' user + system time over the run, from /proc:
on a machine shared with other work it moves far less than req/s, which follow the neighbours'). Then times, in one
process with prometheus-client in multiprocess mode, what the request path adds per request (the
middleware's tally, the forward pass's and the queue's observations). Target: metrics on cost
at most 5%: at least 95% of the req/s with them off, and at most 1/0.95 of the CPU per request.
Writes OUT/metrics_cost.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench import servers, wrk
from bench.models import SCENARIOS, predict_body
from tests.support import children

CONNECTIONS = 32
TARGET = 0.95  # metrics on / metrics off, in req/s

MICRO = r"""
import timeit
import numpy as np
from app.observability import facts, metrics
from app.observability.middleware import ObserveRequests

def bare(environ, start_response):
    facts.note_servable("mlp", 1); facts.note_rows(1)
    start_response("200 OK", [("Content-Length", "10")]); return [b"x"]

observed = ObserveRequests(bare, metrics=True, access_log=False, json_lines=False)
environ, respond = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict"}, lambda status, headers, exc=None: None
run = lambda inputs: inputs
timed, queue, x = metrics.timed_pass(run, "mlp", 1), metrics.queue_histogram("mlp", 1), {"x": np.zeros((1, 4))}
def best(call, n=50000):
    return min(timeit.repeat(call, number=n, repeat=5)) / n * 1e6
added = {"middleware_us": best(lambda: observed(environ, respond)) - best(lambda: bare(environ, respond)),
         "forward_pass_us": best(lambda: timed(x)) - best(lambda: run(x)),
         "queue_us": best(lambda: metrics.TALLY.observe(queue, 0.0))}
added["total_us"] = sum(added.values())
print(json.dumps({k: round(v, 2) for k, v in added.items()}))
"""


def cpu_seconds(master: int) -> float:
    """User + system CPU seconds of the master and its live workers so far."""
    total = 0
    for pid in (master, *children(master)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def per_request_cost() -> dict:
    """Microseconds the metrics add to one request, timed in a child process (multiprocess mode)."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", "import json\n" + MICRO], cwd=servers.ROOT, check=True,
                              capture_output=True, text=True, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder})
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    """Run both servers, alternate the wrk rounds, print and write the comparison."""
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="wrk runs of each server (the median is kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    wrk.require_wrk()
    work = Path(tempfile.mkdtemp(prefix="keras-bench-metrics-"))
    model_dir = work / "models"
    subprocess.run([sys.executable, "-c", "import pathlib, bench.models as m; m.build_models(pathlib.Path("
                    f"{str(model_dir)!r}))"], check=True, cwd=servers.ROOT, capture_output=True)
    scenario = next(s for s in SCENARIOS if s.name == "mlp-1")
    script = wrk.write_script(work / "wrk", scenario.name, predict_body(scenario))
    runs: dict[str, list[float]] = {"on": [], "off": []}
    cpu_us: dict[str, list[float]] = {"on": [], "off": []}
    with ExitStack() as stack:
        served = {label: stack.enter_context(servers.serve("service", model_dir, work / "logs", env={
            "SERVING_METRICS": "true" if label == "on" else "false", "SERVING_LOG_FORMAT": "text",
            "SERVING_ACCESS_LOG": "false", "SERVING_MAX_QUEUE_WAIT_MS": "0"})) for label in runs}
        for base, _ in served.values():
            wrk.run(base, script, 4, 2)  # warm both workers of each
        for round_number in range(args.rounds):
            order = ("on", "off") if round_number % 2 == 0 else ("off", "on")
            for label in order:
                base, master = served[label]
                cpu_before = cpu_seconds(master)
                result = wrk.run(base, script, CONNECTIONS, args.seconds)
                assert result["non_2xx"] == 0 and not any(result["socket_errors"].values()), result
                runs[label].append(result["rps"])
                cpu_us[label].append(round((cpu_seconds(master) - cpu_before) / result["requests"] * 1e6, 1))
                print(f"  round {round_number + 1} metrics {label:3}  {result['rps']:8.0f} req/s  "
                      f"p99 {result['p99_ms']:7.2f} ms  {cpu_us[label][-1]:6.0f} us CPU/request", flush=True)
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    cpu_on, cpu_off = statistics.median(cpu_us["on"]), statistics.median(cpu_us["off"])
    rps_ratio = statistics.median(a / b for a, b in zip(runs["on"], runs["off"]))  # on / off, round by round
    cpu_ratio = statistics.median(b / a for a, b in zip(cpu_us["on"], cpu_us["off"]))  # off / on: 1 = no cost
    report = {"scenario": f"{scenario.name} at {CONNECTIONS} connections", "rps_on": on, "rps_off": off,
              "ratio": round(rps_ratio, 3), "cpu_us_on": cpu_on, "cpu_us_off": cpu_off,
              "cpu_ratio": round(cpu_ratio, 3), "target": TARGET,
              "passed": rps_ratio >= TARGET and cpu_ratio >= TARGET, "runs": runs, "cpu_us": cpu_us,
              "added_per_request": per_request_cost(), "seconds": args.seconds, "rounds": args.rounds,
              "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics_cost.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"metrics on {on:.0f} req/s, off {off:.0f} req/s (medians), on/off by round {rps_ratio:.1%}; CPU per "
          f"request on {cpu_on:.0f} us, off {cpu_off:.0f} us, off/on by round {cpu_ratio:.1%} "
          f"({'PASS' if report['passed'] else 'FAIL'}, target "
          f"{TARGET:.0%}); added per request {report['added_per_request']['total_us']} us in one process "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
