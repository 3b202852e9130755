"""Keep-alive connections end up shared between gunicorn's workers (app/gunicorn/worker.py)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.support import ROOT, children, running_server

pytestmark = pytest.mark.e2e


def _established_on(port: int, states: tuple[str, ...] = ("01",)) -> set[str]:
    """Socket inodes of the server side of connections to `port` (01: established, 08: close wait)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] in states:
            inodes.add(fields[9])
    return inodes


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _wait_until_idle(pids: list[int], timeout: float = 120) -> None:
    """Until no worker is still loading (a loading worker holds its GIL and accepts late, and
    then the others rightly take the connections): no CPU tick in 0.3 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [_cpu_ticks(pid) for pid in pids]
        time.sleep(0.3)
        if [_cpu_ticks(pid) for pid in pids] == before:
            return
    raise AssertionError("the workers never went idle")


def _held_by(pid: int, inodes: set[str]) -> int:
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def test_a_burst_of_keep_alive_connections_is_shared_between_the_workers():
    with running_server(ROOT / "models", {"WEB_CONCURRENCY": "2"}) as base:
        port = int(base.rsplit(":", 1)[1])
        workers = children(base.pid)
        assert len(workers) == 2
        _wait_until_idle(workers)
        for _ in range(3):  # without the balancing, one worker now and then took every connection
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
            try:
                for client in clients:  # one request each: every connection has been accepted
                    client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                for client in clients:
                    assert client.recv(4096).startswith(b"HTTP/1.1 200")
                established = _established_on(port)
                held = [_held_by(pid, established) for pid in workers]
                assert sum(held) == 16 and min(held) >= 6, held
            finally:
                for client in clients:
                    client.close()
            deadline = time.monotonic() + 5  # until the workers have closed their side (their counts drop)
            while (sum(_held_by(pid, _established_on(port, ("01", "08"))) for pid in workers)
                   and time.monotonic() < deadline):
                time.sleep(0.05)
