"""The bench's table, targets (PASS/FAIL), JSON results and PNG chart."""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

Row = dict[str, Any]


COLUMNS = ("server", "scenario", "conns", "req/s", "x ceiling", "p50 ms", "p90 ms", "p99 ms", "non-2xx",
           "sock err", "RSS MB")


def _cells(rows: list[Row]) -> list[list[str]]:
    """Each wrk run as the table's cells (x ceiling: req/s over the ceiling's at the same point)."""
    out = []
    for r in rows:
        ceiling = find(rows, "ceiling", r["scenario"], r["connections"])
        ratio = f"{r['rps'] / ceiling['rps']:.2f}" if ceiling and ceiling["rps"] and r["server"] != "ceiling" else ""
        out.append([r["server"], r["scenario"], str(r["connections"]), f"{r['rps']:.0f}", ratio, f"{r['p50_ms']:.2f}",
                    f"{r['p90_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["non_2xx"]),
                    str(sum(r["socket_errors"].values())), f"{r['rss_mb']:.0f}"])
    return out


def table(rows: list[Row]) -> str:
    """One fixed-width table of every wrk run."""
    widths = (8, 12, 5, 8, 9, 8, 8, 8, 8, 8, 7)

    def line(cells: list[str]) -> str:
        return " ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    head = line(list(COLUMNS))
    return "\n".join([head, "-" * len(head), *(line(cells) for cells in _cells(rows))])


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in _cells(rows)])


def short_numbers_text(rows: list[Row]) -> str:
    """The service on 32-row requests with full-precision against 4-decimal numbers, where both ran."""
    lines = []
    for conns in sorted({r["connections"] for r in rows}):
        full, short = find(rows, "service", "mlp-32", conns), find(rows, "service", "mlp-32-short", conns)
        if full and short:
            lines.append(f"MLP 32-row, {conns} conns: full precision {full['rps']:.0f} req/s (p99 {full['p99_ms']:.1f} "
                         f"ms), 4 decimals {short['rps']:.0f} req/s (p99 {short['p99_ms']:.1f} ms): "
                         f"{full['rps'] / short['rps']:.2f}x")
    return "\n".join(lines)


def overload_text(overload: Row) -> str:
    """One line on the overload scenario."""
    return (f"overload: {overload['rps']:.0f} answers/s, statuses {overload['statuses']}, socket errors "
            f"{overload['socket_errors']}, 200s p50 {overload['ok_p50_ms']} ms p99 {overload['ok_p99_ms']} ms "
            f"(median of {', '.join(str(p99) for p99 in overload['ok_p99_runs_ms'])})")


def find(rows: list[Row], server: str, scenario: str, conns: int) -> Row | None:
    """The run of `server` on `scenario` at `conns` connections, if it ran."""
    return next((r for r in rows if (r["server"], r["scenario"], r["connections"]) == (server, scenario, conns)), None)


def targets(rows: list[Row], overload: Row | None) -> list[tuple[str, bool | None, str]]:
    """(target, passed or None when not measured, the numbers behind it) for each issue-3 target."""
    out: list[tuple[str, bool | None, str]] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append((name, ok, detail))

    svc, ceil, tut = (find(rows, s, "mlp-1", 32) for s in ("service", "ceiling", "tutorial"))
    if svc and ceil:
        add("32 conns, MLP 1-row: >= 0.7x ceiling req/s", svc["rps"] >= 0.7 * ceil["rps"],
            f"{svc['rps']:.0f} vs {ceil['rps']:.0f} = {svc['rps'] / ceil['rps']:.2f}x")
        add("32 conns, MLP 1-row: p99 <= 50 ms", svc["p99_ms"] <= 50, f"p99 {svc['p99_ms']:.1f} ms")
        add("32 conns, MLP 1-row: zero non-2xx", svc["non_2xx"] == 0 and not any(svc["socket_errors"].values()),
            f"non-2xx {svc['non_2xx']}, socket errors {svc['socket_errors']}")
    if svc and tut:
        ratio = svc["rps"] / tut["rps"] if tut["rps"] else float("inf")
        add("32 conns, MLP 1-row: >= 50x tutorial req/s", ratio >= 50,
            f"{svc['rps']:.0f} vs {tut['rps']:.0f} = {ratio:.0f}x")
    for scenario in ("mlp-1", "mlp-32", "cnn-1"):  # mlp-32-short is there for comparison, not a target
        s1, c1 = find(rows, "service", scenario, 1), find(rows, "ceiling", scenario, 1)
        if s1 and c1:
            add(f"1 conn, {scenario}: p50 <= ceiling p50 + 1 ms", s1["p50_ms"] <= c1["p50_ms"] + 1.0,
                f"p50 {s1['p50_ms']:.2f} vs ceiling {c1['p50_ms']:.2f} ms")
    s8, c8 = find(rows, "service", "mlp-32", 8), find(rows, "ceiling", "mlp-32", 8)
    if s8 and c8:
        add("8 conns, MLP 32-row: >= 0.6x ceiling req/s", s8["rps"] >= 0.6 * c8["rps"],
            f"{s8['rps']:.0f} vs {c8['rps']:.0f} = {s8['rps'] / c8['rps']:.2f}x")
    if overload:
        statuses = set(overload["statuses"]) - {"200", "429"}
        errors = sum(overload["socket_errors"].values())
        add("overload (64 queue rows, 256 conns): only 200/429, no socket errors", not statuses and errors == 0,
            f"statuses {overload['statuses']}, socket errors {overload['socket_errors']}")
        ok_p99 = overload.get("ok_p99_ms")
        add("overload: p99 of the 200s <= 100 ms", ok_p99 is not None and ok_p99 <= 100, f"200s' p99 {ok_p99} ms")
    return out


def targets_text(results: list[tuple[str, bool | None, str]]) -> str:
    """PASS/FAIL lines."""
    return "\n".join(f"{'PASS' if ok else 'FAIL' if ok is False else 'N/A '}  {name}  ({detail})"
                     for name, ok, detail in results)


def machine() -> dict[str, Any]:
    """What the bench ran on."""
    import contextlib
    import os

    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "kernel": platform.release()}


def write_markdown(path: Path, payload: dict[str, Any], checks: list[tuple[str, bool | None, str]]) -> Path:
    """The run as Markdown: command, machine, table, overload, targets (for bench/RESULTS.md)."""
    m = payload["machine"]
    parts = [f"Command: `{payload['command']}` (service from `{payload['server_root']}`; {payload['elapsed_s']} s)",
             f"Machine: {m['cpu']}, {m['cores']} cores (nproc), Python {m['python']}, Linux {m['kernel']}; "
             f"{payload['seconds_per_run']:g} s per wrk run; run {payload['when']}", markdown_table(payload["runs"])]
    if payload["overload"]:
        parts.append(overload_text(payload["overload"]))
    if comparison := short_numbers_text(payload["runs"]):
        parts.append(comparison.replace("\n", "  \n"))
    if payload.get("payloads"):
        parts.append(_payloads_markdown(payload["payloads"]))
    if checks:
        parts.append("\n".join(f"- {line}" for line in targets_text(checks).splitlines()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(parts) + "\n")
    return path


def _payloads_markdown(rows: list[Row]) -> str:
    """bench/payloads.py's rows as a Markdown table."""
    lines = ["| payload path | req/s | MB/s | p50 ms | p99 ms | body MB |", "|---|---|---|---|---|---|"]
    return "\n".join(lines + [f"| {r['path']} | {r['req_per_s']} | {r['mb_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                              f"{r['request_bytes'] / 1e6:.2f} |" for r in rows])


def write_json(folder: Path, name: str, payload: Any) -> Path:
    """Write `payload` as `folder/name.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=str))
    return path


def chart(rows: list[Row], path: Path) -> Path:
    """Throughput and p99 against connections, one line per server and scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scenarios = sorted({r["scenario"] for r in rows})
    fig, axes = plt.subplots(2, len(scenarios), figsize=(5 * len(scenarios), 8), squeeze=False)
    for col, scenario in enumerate(scenarios):
        for server in ("service", "ceiling", "tutorial"):
            points = sorted((r["connections"], r["rps"], r["p99_ms"]) for r in rows
                            if r["server"] == server and r["scenario"] == scenario)
            if not points:
                continue
            conns = [p[0] for p in points]
            axes[0][col].plot(conns, [p[1] for p in points], marker="o", label=server)
            axes[1][col].plot(conns, [p[2] for p in points], marker="o", label=server)
        axes[0][col].set_title(f"{scenario}: throughput")
        axes[0][col].set_ylabel("req/s")
        axes[1][col].set_title(f"{scenario}: p99 latency")
        axes[1][col].set_ylabel("ms")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r["connections"] for r in rows}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_yscale("log")
            ax.set_xlabel("connections")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
