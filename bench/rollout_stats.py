"""bench.rollout's pure parts: answers, percentiles, switch times, per-step summaries, the table."""
from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    """One answer on one connection: when it was sent and answered (monotonic s), its status, the version
    that computed it (None when the answer named none) and the client port of the connection it used."""

    sent: float
    done: float
    status: int
    version: int | None
    port: int


@dataclass(frozen=True)
class StepSummary:
    """What one step of the rollout measured."""

    name: str
    answers: int
    non_2xx: int
    p99_ms: float
    switch_s: dict[str, float | None]  # worker (pid or "?") -> max over its connections; None: never switched
    unexpected: int  # answers from a version the step must not serve on that traffic
    statuses: dict[int, int] = field(default_factory=dict)  # the non-2xx answers by status (0: transport error)
    failed_s: tuple[float, float] | None = None  # when the first and last non-2xx were sent, s after the change
    rss_peak_mb: dict[int, float] = field(default_factory=dict)
    rss_settled_mb: dict[int, float] = field(default_factory=dict)
    note: str = ""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def window(answers: Sequence[Answer], start: float, end: float) -> list[Answer]:
    """The answers sent in [start, end) (answers are in the order they were sent, per connection)."""
    lo = bisect.bisect_left(answers, start, key=lambda a: a.sent)
    hi = bisect.bisect_left(answers, end, key=lambda a: a.sent)
    return list(answers[lo:hi])


def first_from(answers: Sequence[Answer], since: float, version: int) -> float | None:
    """Seconds from `since` to the first 2xx answer from `version` answered after it; None if none was."""
    lo = bisect.bisect_left(answers, since, key=lambda a: a.done)
    for answer in answers[lo:]:
        if answer.version == version and 200 <= answer.status < 300 and answer.done >= since:
            return answer.done - since
    return None


def switch_by_worker(connections: Sequence[Sequence[Answer]], since: float, version: int,
                     worker_of: Mapping[int, int]) -> dict[str, float | None]:
    """Per worker (pid, or "?" for connections not mapped to one): the latest of its connections' first
    answers from `version` after `since`; None when one of its connections never got one."""
    out: dict[str, float | None] = {}
    for answers in connections:
        later = [a for a in answers if a.done >= since]
        if not later:
            continue
        key = str(worker_of.get(later[-1].port, "?"))
        seconds = first_from(answers, since, version)
        if key in out and (out[key] is None or seconds is None):
            out[key] = None
        else:
            out[key] = seconds if key not in out else max(out[key], seconds)  # type: ignore[type-var]
    return out


def switched_back(answers: Sequence[Answer], since: float, version: int) -> int:
    """Answers after the connection's first answer from `version` (after `since`) that another version gave."""
    lo = bisect.bisect_left(answers, since, key=lambda a: a.done)
    later = [a for a in answers[lo:] if a.done >= since]
    first = next((i for i, a in enumerate(later) if a.version == version), len(later))
    return sum(a.version is not None and a.version != version for a in later[first:])


def summarize(name: str, connections: Sequence[Sequence[Answer]], start: float, end: float,
              switch: dict[str, float | None], forbidden: int | None, note: str = "",
              switched_to: int | None = None) -> StepSummary:
    """The step's answers sent in [start, end): non-2xx, p99, and the unexpected ones: from the `forbidden`
    version, or from another version than `switched_to` once the connection had had an answer from it."""
    answers = [a for c in connections for a in window(c, start, end)]
    latencies = [(a.done - a.sent) * 1000 for a in answers if 200 <= a.status < 300]
    unexpected = sum(a.version == forbidden for a in answers) if forbidden is not None else 0
    if switched_to is not None:
        unexpected += sum(switched_back(window(c, start, end), start, switched_to) for c in connections)
    failed = [a for a in answers if not 200 <= a.status < 300]
    codes = [a.status for a in failed]
    return StepSummary(name=name, answers=len(answers), non_2xx=len(failed), p99_ms=percentile(latencies, 99),
                       switch_s=switch, unexpected=unexpected, note=note,
                       statuses={status: codes.count(status) for status in sorted(set(codes))},
                       failed_s=(min(a.sent for a in failed) - start, max(a.sent for a in failed) - start)
                       if failed else None)


def rss_summary(samples: Sequence[tuple[float, int, float]], start: float, end: float,
                settle_from: float) -> tuple[dict[int, float], dict[int, float]]:
    """(peak, settled) RSS per worker pid from (time, pid, MB) samples: peak over [start, end), settled
    the median of the samples in [settle_from, end)."""
    peak: dict[int, float] = {}
    settled: dict[int, list[float]] = {}
    for when, pid, mb in samples:
        if start <= when < end:
            peak[pid] = max(peak.get(pid, 0.0), mb)
            if when >= settle_from:
                settled.setdefault(pid, []).append(mb)
    return peak, {pid: percentile(values, 50) for pid, values in settled.items()}


def _switch_cell(switch: dict[str, float | None]) -> str:
    if not switch:
        return "-"
    if any(v is None for v in switch.values()):
        return "never"
    return f"{max(v for v in switch.values() if v is not None):.2f}"


def _rss_cell(values: Mapping[int, float], steady: Mapping[int, float]) -> str:
    return " ".join(f"{values[pid]:.0f}" + (f"({values[pid] / steady[pid]:.2f}x)" if steady.get(pid) else "")
                    for pid in sorted(values)) or "-"


COLUMNS = ("step", "answers", "non-2xx", "p99 ms", "x steady", "switch s", "other v", "peak RSS MB",
           "settled RSS MB")


def table_rows(steps: Sequence[StepSummary], steady_p99: float, steady_rss: Mapping[int, float]) -> list[list[str]]:
    """Each step as the table's cells (RSS per worker, lowest pid first, with its ratio to the steady RSS)."""
    return [[s.name, str(s.answers), str(s.non_2xx), f"{s.p99_ms:.1f}",
             f"{s.p99_ms / steady_p99:.2f}" if steady_p99 and not math.isnan(s.p99_ms) else "-",
             _switch_cell(s.switch_s), str(s.unexpected), _rss_cell(s.rss_peak_mb, steady_rss),
             _rss_cell(s.rss_settled_mb, steady_rss)] for s in steps]


def table(steps: Sequence[StepSummary], steady_p99: float, steady_rss: Mapping[int, float]) -> str:
    """The fixed-width table of every step."""
    rows = [list(COLUMNS), *table_rows(steps, steady_p99, steady_rss)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def markdown(steps: Sequence[StepSummary], steady_p99: float, steady_rss: Mapping[int, float]) -> str:
    """The same table in Markdown."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in table_rows(steps, steady_p99, steady_rss)])


def targets(steps: Sequence[StepSummary], steady_p99: float, steady_rss: Mapping[int, float],
            ) -> list[tuple[str, bool, str]]:
    """(target, pass, detail): 0 non-2xx, p99 <= 2x steady in every step, RSS after the unload within 10%."""
    checks = []
    for s in steps:
        checks.append((f"{s.name}: 0 non-2xx", s.non_2xx == 0, f"{s.non_2xx} of {s.answers}"
                                                                 + (f", by status {s.statuses}" if s.statuses else "")))
        ratio = s.p99_ms / steady_p99 if steady_p99 else math.inf
        checks.append((f"{s.name}: p99 <= 2x steady", ratio <= 2, f"{s.p99_ms:.1f} ms = {ratio:.2f}x "
                                                                     f"{steady_p99:.1f} ms"))
        if s.unexpected:
            checks.append((f"{s.name}: no answer from the version it must not serve", False, f"{s.unexpected}"))
        if any(v is None for v in s.switch_s.values()):
            checks.append((f"{s.name}: the new version answered on every connection", False, str(s.switch_s)))
    if steps:
        last = steps[-1]
        worst = max((last.rss_settled_mb[p] / steady_rss[p] - 1 for p in last.rss_settled_mb if p in steady_rss),
                    default=math.inf)
        checks.append((f"{last.name}: settled RSS within 10% of steady in every worker", worst <= 0.10,
                       f"worst {worst * 100:+.1f}%" if worst != math.inf else "no common worker"))
    return checks


def targets_text(checks: Sequence[tuple[str, bool, str]]) -> str:
    """One PASS/FAIL line per target."""
    return "\n".join(f"{'PASS' if ok else 'FAIL'}  {name}  ({detail})" for name, ok, detail in checks)
