"""A rollout and a rollback under load: what a switch of versions costs the requests in flight, and memory.

.venv/bin/python -m bench.rollout [--connections 32] [--steady 10] [--hidden 64] [--out DIR]
Serves version 1 of the bench MLP (256 -> 64 -> 10) with the service (gunicorn.conf.py, 2 workers,
SERVING_POLL_SECONDS=1, a management token), 32 keep-alive connections posting 1-row full-precision
/predict bodies naming neither version nor label, and in turn: version 2 published into the watched folder
(written elsewhere, renamed into place; serving.json keeps default_version 1), label canary=2 (probed on
/v1/models/mlp/labels/canary:predict), stable=2 and default_version 2, the rollback (stable=1, default 1),
and version 2 unloaded through the API. The contract's /unload unloads a whole model, so "version 2
unloaded" is POST /v2/repository/models/mlp/load with a config whose version_policy is specific [1].
Per step: non-2xx answers, p99 against the steady p99, the time from the change to the first answer from
the new version on every connection (max per worker, connections mapped to workers through /proc), and
peak and settled RSS per worker against the steady RSS; then PASS/FAIL per target. Writes OUT/rollout.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import servers
from bench.models import MLP_HIDDEN, Scenario, predict_body
from bench.rollout_load import Load
from bench.rollout_procs import Sampler, build_versions, write_json
from bench.rollout_stats import StepSummary, rss_summary, summarize, switch_by_worker, table, targets, targets_text
from bench.rollout_steps import MODEL, TOKEN, Step, steps

PROBES = 8  # connections watching a route the load does not use (explicit version 2, label canary)
STEP_TIMEOUT_S, MIN_STEP_S, SETTLE_S = 40.0, 3.0, 3.0
TOTAL_LIMIT_S = 300.0  # every connection stops by then whatever happens


def run_step(step: Step, load: Load, probes: list[Load], sampler: Sampler, host: str, port: int,
             deadline: float, settle: float) -> StepSummary:
    """Make the step's change under load and summarize what the load (and the probes) saw."""
    probe = Load(host, port, step.probe_path, step.probe_body, PROBES, deadline, pause=0.02) \
        if step.probe_path else None
    if probe:
        probes.append(probe.__enter__())
        time.sleep(0.5)
        for _ in range(3):  # until the probes' connections reach every worker
            if {sampler.worker_of.get(p) for p in probe.ports()} >= set(sampler.workers()):
                break
            probe.add(PROBES)
            time.sleep(0.5)
    watched = probe if probe and step.version is not None else load
    start = time.monotonic()
    note, waited = step.change()
    while step.version is not None and time.monotonic() - start < STEP_TIMEOUT_S:
        switch = switch_by_worker(watched.answers(), start, step.version, sampler.worker_of)
        if switch and None not in switch.values() and time.monotonic() - start >= MIN_STEP_S:
            break
        time.sleep(0.2)
    time.sleep(max(settle, MIN_STEP_S - (time.monotonic() - start)))
    end = time.monotonic()
    if probe:
        probe.__exit__(None, None, None)
    switch = {"api (every worker)": waited} if step.version is None else \
        switch_by_worker(watched.answers(), start, step.version, sampler.worker_of)
    if step.version is None and probe:
        after = [a for c in probe.answers() for a in c if a.done >= start + (waited or 0) and a.version == 2]
        note += f"; probe answers from v2 after the call returned: {len(after)}"
    switched_to = step.version if watched is load else None
    summary = summarize(step.name, load.answers(), start, end, switch, step.forbidden, note, switched_to)
    peak, settled = rss_summary(sampler.samples, start, end, end - min(settle, 2.0))
    return StepSummary(**{**asdict(summary), "rss_peak_mb": peak, "rss_settled_mb": settled})


def _span(result: StepSummary) -> str:
    return f" sent {result.failed_s[0]:.2f}-{result.failed_s[1]:.2f} s after the change" if result.failed_s else ""


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    """Build the versions, serve, load, roll out and back, print the table and targets, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of steady load measured first")
    parser.add_argument("--hidden", type=int, default=MLP_HIDDEN, help="width of the MLP's hidden layer (a "
                        "wider one makes a version's memory visible in RSS: 4096 is 4.4 MB of weights)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    began, load_before = time.monotonic(), _loadavg()
    work = Path(tempfile.mkdtemp(prefix="keras-rollout-"))
    models, staged = work / "models", work / "staging" / "2"
    print(f"building versions 1 and 2 of {MODEL} in {work} ...", flush=True)
    build_versions({1: models / MODEL / "1" / "model.keras", 2: staged / "model.keras"}, servers.ROOT, args.hidden)
    write_json(models / MODEL / "serving.json", {"default_version": 1, "labels": {"stable": 1}})
    env = {"WEB_CONCURRENCY": "2", "SERVING_POLL_SECONDS": "1", "SERVING_API_TOKENS": TOKEN,
           "SERVING_GRPC_PORT": "0"}
    body = predict_body(Scenario("mlp-1", MODEL, 1))
    with servers.serve("service", models, work / "logs", env=env) as (base, master):
        host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
        deadline = time.monotonic() + TOTAL_LIMIT_S
        probes: list[Load] = []
        with Load(host, port, "/predict", body, args.connections, deadline) as load, \
                Sampler(master, port, lambda: load.ports() + [p for x in probes for p in x.ports()]) as sampler:
            print(f"[{time.monotonic() - began:4.0f}s] {args.connections} connections on {base}; warming up",
                  flush=True)
            time.sleep(3)
            steady_start = time.monotonic()
            time.sleep(args.steady)
            steady = summarize("steady", load.answers(), steady_start, time.monotonic(), {}, 2)
            steady_rss = rss_summary(sampler.samples, steady_start, time.monotonic(), steady_start)[1]
            print(f"steady: {steady.answers} answers, non-2xx {steady.non_2xx}, p99 {steady.p99_ms:.1f} ms, "
                  f"RSS per worker {({p: round(v) for p, v in steady_rss.items()})} MB", flush=True)
            results = []
            for step in steps(base, models, staged):
                settle = SETTLE_S + (2.0 if step.version is None else 0.0)
                result = run_step(step, load, probes, sampler, host, port, deadline, settle)
                results.append(result)
                print(f"[{time.monotonic() - began:4.0f}s] {step.name}: {result.note}; switch per worker "
                      f"{result.switch_s}; non-2xx {result.non_2xx} {result.statuses or ''}{_span(result)}; "
                      f"p99 {result.p99_ms:.1f} ms", flush=True)
            workers = sorted(sampler.workers_seen)
            transport = load.errors()
    print(f"\nload average (1, 5, 15 min) before: {load_before}, after: {_loadavg()} (a shared machine: other "
          "jobs' CPU shows up as p99 and 429s)")
    print(f"transport errors (status 0) by kind: {transport or 'none'}; server log: {work / 'logs'}")
    print(f"workers seen: {workers} (a new pid means gunicorn restarted one); switch s: max over each worker's "
          "connections of the time from the change to its first answer from the new version")
    print(table(results, steady.p99_ms, steady_rss))
    checks = targets(results, steady.p99_ms, steady_rss)
    if steady.non_2xx:
        checks.insert(0, ("steady: 0 non-2xx", False, str(steady.non_2xx)))
    print("\n" + targets_text(checks))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"steady": asdict(steady), "steady_rss_mb": steady_rss, "steps": [asdict(r) for r in results],
               "targets": [{"target": n, "pass": ok, "detail": d} for n, ok, d in checks], "workers": workers,
               "elapsed_s": round(time.monotonic() - began), "loadavg": [load_before, _loadavg()]}
    (args.out / "rollout.json").write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {args.out / 'rollout.json'}; the whole run took {time.monotonic() - began:.0f}s")


if __name__ == "__main__":
    main()
