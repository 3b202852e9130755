"""bench.rollout's pure parts: percentiles, switch times per worker, step summaries, targets, /proc parsing."""
from __future__ import annotations

import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.rollout_load import Load, answered_version
from bench.rollout_procs import client_inodes, map_ports
from bench.rollout_stats import (
    Answer,
    StepSummary,
    percentile,
    rss_summary,
    summarize,
    switch_by_worker,
    table,
    targets,
)

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0
   3: 0100007F:1F90 0100007F:C351 08 00000000:00000000 00:00000000 00000000  1000        0 444 1 0
"""


def _answers(port: int, versions: list[int], start: float = 0.0, status: int = 200) -> list[Answer]:
    return [Answer(start + i, start + i + 0.5, status, v, port) for i, v in enumerate(versions)]


def test_percentile_is_the_nearest_rank_and_nan_for_nothing():
    values = list(range(1, 101))
    assert percentile(values, 99) == 99
    assert percentile(values, 50) == 50
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 99))


def test_the_switch_of_a_worker_is_its_slowest_connection_and_none_when_one_never_switched():
    connections = [_answers(1, [1, 1, 2, 2]), _answers(2, [1, 2, 2, 2]), _answers(3, [1, 1, 1, 1])]
    switch = switch_by_worker(connections, 0.2, 2, {1: 100, 2: 100, 3: 200})
    assert switch == {"100": 2.5 - 0.2, "200": None}
    assert switch_by_worker(connections[:2], 0.2, 2, {}) == {"?": 2.3}


def test_a_summary_counts_non_2xx_answers_from_a_forbidden_version_and_switches_back():
    fine = _answers(1, [1, 2, 2])
    failed = _answers(2, [1, 1], status=503)
    flapping = _answers(3, [1, 2, 1])
    summary = summarize("step", [fine, failed, flapping], 0.0, 10.0, {}, None, switched_to=2)
    assert (summary.answers, summary.non_2xx, summary.unexpected, summary.statuses) == (8, 2, 1, {503: 2})
    assert summary.failed_s == (0.0, 1.0)
    assert summarize("step", [fine], 0.0, 10.0, {}, forbidden=2).unexpected == 2
    assert summarize("step", [fine], 1.0, 10.0, {}, None).answers == 2  # sent before the step: not its own


def test_rss_summary_gives_the_peak_and_the_median_of_the_settling_samples():
    samples = [(0.0, 7, 100.0), (1.0, 7, 180.0), (2.0, 7, 104.0), (3.0, 7, 102.0), (4.0, 7, 103.0), (9.0, 7, 999.0)]
    peak, settled = rss_summary(samples, 0.0, 5.0, 2.0)
    assert peak == {7: 180.0}
    assert settled == {7: 103.0}


def _step(non_2xx: int = 0, p99: float = 10.0, settled: float = 105.0) -> StepSummary:
    return StepSummary("unload", 100, non_2xx, p99, {"7": 0.5}, 0, statuses={503: non_2xx} if non_2xx else {},
                       rss_peak_mb={7: 150.0}, rss_settled_mb={7: settled})


def test_targets_pass_within_the_bounds_and_fail_beyond_them():
    assert all(ok for _, ok, _ in targets([_step()], 10.0, {7: 100.0}))
    failed = {name for name, ok, _ in targets([_step(non_2xx=1, p99=20.1, settled=111.0)], 10.0, {7: 100.0})
              if not ok}
    assert failed == {"unload: 0 non-2xx", "unload: p99 <= 2x steady",
                      "unload: settled RSS within 10% of steady in every worker"}


def test_the_table_shows_each_worker_rss_with_its_ratio_to_the_steady_rss():
    text = table([_step()], 10.0, {7: 100.0})
    assert "150(1.50x)" in text and "105(1.05x)" in text and "0.50" in text


def test_client_ports_map_to_the_server_side_inode_of_established_connections_only():
    assert client_inodes(TCP, 0x1F90) == {0xC350: "222"}


class _Versioned(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"version": 3}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/header":
            self.send_header("X-Model-Version", "5")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_load_records_the_answered_version_and_maps_its_connections_to_this_process():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Versioned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for path, version in (("/header", 5), ("/body", 3)):
            with Load("127.0.0.1", port, path, b"{}", 2, time.monotonic() + 30, pause=0.01) as load:
                load.add(1)
                deadline = time.monotonic() + 30
                while min(len(a) for a in load.answers()) < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert map_ports(port, [os.getpid()], set(load.ports())) == {p: os.getpid() for p in load.ports()}
            assert len(load.answers()) == 3
            assert {a.version for c in load.answers() for a in c} == {version}
            assert {a.status for c in load.answers() for a in c} == {200}
    finally:
        server.shutdown()


def test_a_version_is_read_from_the_header_first_then_the_body():
    assert answered_version({"X-Model-Version": "4"}.get, b'{"version": 2}') == 4
    assert answered_version({}.get, b'{"version": 2}') == 2
    assert answered_version({}.get, b"not json") is None
