"""`make bench`: this service vs. the HTTP ceiling vs. the tutorial app, driven by wrk.

.venv/bin/python -m bench [--quick] [--scenarios mlp-32@8,mlp-1@32,...] [--server-root DIR] [--out DIR]
Starts each server in turn on 127.0.0.1, runs wrk at 1/8/32/64 connections for an MLP (1-row and
32-row requests with full-precision numbers, 32-row with 4-decimal numbers) and a small CNN (1-row),
then an overload run and the payload comparison; prints one table and PASS/FAIL per target, writes
OUT/latest.json, OUT/latest.md (table, targets, machine, command) and OUT/latest.png.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report, servers, wrk
from bench.models import SCENARIOS, predict_body

CONNECTIONS = (1, 8, 32, 64)
QUICK_CONNECTIONS = (1, 32)
SERVERS = ("service", "ceiling", "tutorial")
SECTIONS = ("overload", "payloads")  # besides the wrk scenarios, for --scenarios
TUTORIAL_PLAN = {"mlp-1": CONNECTIONS, "mlp-32": (1, 32), "cnn-1": (1, 32)}
OVERLOAD_ENV = {"SERVING_MAX_QUEUE_ROWS": "64"}
OVERLOAD_CONNECTIONS = 256
# The runs the targets (and the before/after figures) read are repeated and the median run (by req/s)
# kept, for the service and the ceiling alike: on a shared 2-core machine about one 5 s run in ten
# comes out 2-3x slow, and with three runs two slow ones had decided a target.
REPEATED_RUNS = {("mlp-1", 1), ("mlp-1", 32), ("mlp-32", 1), ("mlp-32", 8), ("mlp-32-short", 1),
                 ("mlp-32-short", 8), ("cnn-1", 1)}


def parse_plan(text: str | None, default: tuple[int, ...]) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """`mlp-32@8,mlp-1@1+32,overload` -> ({scenario: connections}, {sections}); None means everything."""
    names = [s.name for s in SCENARIOS]
    if text is None:
        return {name: default for name in names}, set(SECTIONS)
    plan: dict[str, tuple[int, ...]] = {}
    sections: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, conns = item.partition("@")
        if name in SECTIONS and not conns:
            sections.add(name)
        elif name in names:
            plan[name] = tuple(int(c) for c in conns.split("+")) if conns else default
        else:
            raise SystemExit(f"unknown scenario {item!r}: choose from {', '.join([*names, *SECTIONS])}, "
                             f"each wrk scenario optionally with @connections (e.g. mlp-32@8, mlp-1@1+32)")
    return {name: plan[name] for name in names if name in plan}, sections  # in the table's order


def main() -> None:
    """Run the chosen servers and scenarios; print the table and targets; write the results."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk run length for service and ceiling")
    parser.add_argument("--tutorial-seconds", type=float, default=4.0, help="wrk run length for the tutorial app")
    parser.add_argument("--quick", action="store_true", help="1-second runs, 1 and 32 connections (smoke test)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each target scenario (the median is kept)")
    parser.add_argument("--overload-repeats", type=int, default=3, help="overload runs (the median p99 is kept)")
    parser.add_argument("--scenarios", help=f"comma-separated, from {', '.join(s.name for s in SCENARIOS)}, "
                        f"{', '.join(SECTIONS)}; a wrk scenario may name its connections: mlp-32@8, mlp-1@1+32 "
                        "(default: all, at 1/8/32/64 connections)")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, from {', '.join(SERVERS)}")
    parser.add_argument("--server-root", type=Path, default=servers.ROOT,
                        help="serve the service from this checkout (its gunicorn.conf.py and wsgi.py, as cwd) "
                             "with this interpreter; the ceiling and the tutorial app stay this checkout's")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    wrk.require_wrk()
    chosen_servers = [name for name in SERVERS if name in args.servers.split(",")]
    plan, sections = parse_plan(args.scenarios, QUICK_CONNECTIONS if args.quick else CONNECTIONS)
    seconds = 1.0 if args.quick else args.seconds
    root = args.server_root.resolve()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="keras-bench-"))
    model_dir = work / "models"
    print(f"building bench models in {model_dir} ...", flush=True)
    subprocess.run([sys.executable, "-c", f"from bench.models import build_models; build_models(__import__('pathlib')"
                    f".Path({str(model_dir)!r}))"], check=True, cwd=servers.ROOT, capture_output=True)
    scripts = {s.name: wrk.write_script(work / "wrk", s.name, predict_body(s)) for s in SCENARIOS if s.name in plan}
    rows: list[dict] = []
    extra: dict = {}
    for server in chosen_servers:
        server_plan = plan if server != "tutorial" else \
            {name: tuple(c for c in conns if c in TUTORIAL_PLAN.get(name, ())) for name, conns in plan.items()
             if set(conns) & set(TUTORIAL_PLAN.get(name, ()))}
        if not any(server_plan.values()) and not (server == "service" and "payloads" in sections):
            continue
        run_seconds = args.tutorial_seconds if server == "tutorial" and not args.quick else seconds
        print(f"[{time.monotonic() - started:5.0f}s] {server}: starting"
              f"{f' from {root}' if server == 'service' and root != servers.ROOT else ''}", flush=True)
        with servers.serve(server, model_dir, work / "logs", root=root) as (base, pid):
            for name in server_plan:  # warm every worker and every model
                wrk.run(base, scripts[name], 4, 1 if server != "tutorial" else 2)
            for name, conns in server_plan.items():
                for c in conns:
                    repeats = args.repeats if server != "tutorial" and (name, c) in REPEATED_RUNS else 1
                    result = _median_run([wrk.run(base, scripts[name], c, run_seconds, timeout_s=5)
                                          for _ in range(repeats)])
                    result.update(server=server, scenario=name, rss_mb=servers.rss_mb(pid))
                    rows.append(result)
                    runs = f"  (median of {', '.join(f'{r:.0f}' for r in result['rps_runs'])})" if repeats > 1 else ""
                    print(f"  {name:12} c={c:<3} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.2f}  "
                          f"p99 {result['p99_ms']:8.2f} ms  non-2xx {result['non_2xx']}{runs}", flush=True)
            if server == "service":
                extra["service_stats"] = _stats(base)
                if "payloads" in sections:
                    extra["payloads"] = _payloads(base)
    overload = None
    if "overload" in sections and "service" in chosen_servers:
        print(f"[{time.monotonic() - started:5.0f}s] overload: queue limit 64 rows, {OVERLOAD_CONNECTIONS} "
              "connections", flush=True)
        overload = _overload(model_dir, work, root, 3.0 if args.quick else 8.0,
                             repeats=1 if args.quick else args.overload_repeats)
    elapsed = time.monotonic() - started
    checks = report.targets(rows, overload)
    command = shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]])
    machine = report.machine()
    print("\n" + report.table(rows))
    if overload:
        print("\n" + report.overload_text(overload))
    for item in extra.get("payloads") or []:
        print(f"payload {item}")
    if checks:
        print("\n" + report.targets_text(checks))
    if comparison := report.short_numbers_text(rows):
        print("\n" + comparison)
    print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores; service from {root}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = {"when": stamp, "command": command, "server_root": str(root), "machine": machine,
               "seconds_per_run": seconds, "elapsed_s": round(elapsed), "runs": rows, "overload": overload,
               "targets": [{"target": n, "pass": ok, "detail": d} for n, ok, d in checks], **extra}
    for name in ("latest", f"bench-{stamp}"):
        report.write_json(args.out, name, payload)
    report.write_markdown(args.out / "latest.md", payload, checks)
    written = [args.out / "latest.json", args.out / "latest.md"]
    if rows:
        written.append(report.chart(rows, args.out / "latest.png"))
    print(f"wrote {', '.join(map(str, written))}")
    print(f"the whole run took {time.monotonic() - started:.0f}s")


def _median_run(runs: list[dict], by: str = "rps", runs_field: str = "rps_runs") -> dict:
    """The run with the median `by` (its own latencies), every run's `by` as `runs_field`, and
    statuses, non-2xx answers and socket errors summed over all runs (one failure in any run counts)."""
    ordered = sorted(runs, key=lambda run: float("inf") if run[by] is None else run[by])
    statuses: collections.Counter[str] = collections.Counter()
    for run in runs:
        statuses.update(run["statuses"])
    errors = {kind: sum(run["socket_errors"].get(kind, 0) for run in runs) for kind in runs[0]["socket_errors"]}
    return {**ordered[(len(ordered) - 1) // 2], runs_field: [run[by] for run in runs], "statuses": dict(statuses),
            "non_2xx": sum(run["non_2xx"] for run in runs), "socket_errors": errors}


def _overload(model_dir: Path, work: Path, root: Path, seconds: float, repeats: int) -> dict | None:
    """256 connections against a 64-row queue: each wrk thread holds one connection and times its 200s.

    Run `repeats` times on one server; the run with the median p99 of the 200s is kept, and the
    statuses and socket errors of every run are summed (one 5xx or timeout in any run fails)."""
    body = predict_body(next(s for s in SCENARIOS if s.name == "mlp-1"))
    with servers.serve("service", model_dir, work / "logs", env=OVERLOAD_ENV, root=root) as (base, pid):
        paired = wrk.write_script(work / "wrk", "mlp-1", body, paired=True)
        wrk.run(base, paired, 32, 1, threads=32)
        runs = [wrk.run(base, paired, OVERLOAD_CONNECTIONS, seconds, threads=OVERLOAD_CONNECTIONS, timeout_s=5)
                for _ in range(repeats)]
        result = _median_run(runs, by="ok_p99_ms", runs_field="ok_p99_runs_ms")
        result.update(server="service", scenario="overload", rss_mb=servers.rss_mb(pid), stats=_stats(base))
        return result


def _stats(base: str) -> dict:
    """The batcher counters of the bench models (from one worker)."""
    import requests

    out = {}
    for model in ("mlp", "cnn"):
        try:
            out[model] = requests.get(f"{base}/models/{model}", timeout=5).json()["versions"][0].get("stats")
        except Exception as exc:  # noqa: BLE001 - the stats are informative only
            out[model] = {"error": str(exc)}
    return out


def _payloads(base: str) -> list[dict] | None:
    """bench/payloads.py's rows (another helper's module), when it exists."""
    try:
        module = importlib.import_module("bench.payloads")
    except ImportError:
        print("  (bench/payloads.py not found: payload comparison skipped)")
        return None
    if not hasattr(module, "run"):
        print("  (bench.payloads has no run(): payload comparison skipped)")
        return None
    try:
        return module.run(base, "mlp")
    except Exception as exc:  # noqa: BLE001 - one optional section must not sink the bench
        print(f"  (payload comparison failed: {type(exc).__name__}: {exc})")
        return None


if __name__ == "__main__":
    main()
