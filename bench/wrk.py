"""Drive a server with wrk: a Lua script POSTs one JSON body and reports statuses and latencies as JSON."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

MARK = "BENCHJSON "

# Statuses are counted in the `response` hook. In `paired` mode each wrk thread holds one
# connection, so request()/response() pair up and the Lua side times 200s on their own.
LUA = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_ts; int clock_gettime(int, bench_ts *); ]]
local ts = ffi.new("bench_ts")
local function now_us() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3 end
local f = assert(io.open("__BODY__", "rb")); local body = f:read("*a"); f:close()
local req = wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)
local paired = __PAIRED__
local threads = {}
statuses = {}
ok_us = {}
local sent = 0
function setup(thread) table.insert(threads, thread) end
function request() if paired then sent = now_us() end return req end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if paired and status == 200 then ok_us[#ok_us + 1] = now_us() - sent end
end
function done(summary, latency, requests)
  local counts, ok = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do counts[tostring(k)] = (counts[tostring(k)] or 0) + v end
    if paired then for _, v in ipairs(t:get("ok_us")) do ok[#ok + 1] = v end end
  end
  table.sort(ok)
  local function okp(p) if #ok == 0 then return 0 end return ok[math.max(1, math.ceil(#ok * p / 100))] end
  local parts = {}
  for k, v in pairs(counts) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  local e = summary.errors
  io.write(string.format('__MARK__{"requests": %d, "duration_us": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "ok_p50_us": %d, "ok_p99_us": %d}\n',
    summary.requests, summary.duration, table.concat(parts, ", "), e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    okp(50), okp(99)))
end
"""


def require_wrk() -> str:
    """The wrk binary, or SystemExit telling how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu), then re-run `make bench`")
    return path


def write_script(folder: Path, name: str, body: bytes, *, paired: bool = False) -> Path:
    """Write the body and a Lua script that POSTs it to /predict."""
    folder.mkdir(parents=True, exist_ok=True)
    body_path = folder / f"{name}.json"
    body_path.write_bytes(body)
    script = LUA.replace("__BODY__", str(body_path)).replace("__PAIRED__", "true" if paired else "false")
    script_path = folder / f"{name}{'-paired' if paired else ''}.lua"
    script_path.write_text(script.replace("__MARK__", MARK))
    return script_path


def run(url: str, script: Path, connections: int, seconds: float, *, threads: int | None = None,
        timeout_s: int = 5) -> dict:
    """One wrk run; returns req/s, latency percentiles (ms), status counts and socket errors."""
    threads = threads or min(connections, 2)
    cmd = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           f"--timeout={timeout_s}s", "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    raw = json.loads(line[len(MARK):])
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["statuses"].get("200", 0)
    return {
        "connections": connections,
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds_run, 1),
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "ok_p50_ms": raw["ok_p50_us"] / 1000 if raw["ok_p50_us"] else None,
        "ok_p99_ms": raw["ok_p99_us"] / 1000 if raw["ok_p99_us"] else None,
        "statuses": raw["statuses"],
        "non_2xx": raw["requests"] - sum(v for k, v in raw["statuses"].items() if k.startswith("2")),
        "ok": ok,
        # wrk counts every non-2xx/3xx answer as a "status" error; those are in `statuses` already.
        "socket_errors": {k: v for k, v in raw["errors"].items() if k != "status"},
    }
