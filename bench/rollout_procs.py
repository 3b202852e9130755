"""bench.rollout's view of the server's processes: worker RSS, which worker holds which connection, the models.

A connection is mapped to the worker that holds its server-side socket: /proc/net/tcp gives the inode of
the socket whose local port is the server's and whose remote port is the client's, /proc/<pid>/fd of
each worker names the inodes it holds.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.models import MLP_HIDDEN
from tests.support import children

ESTABLISHED = "01"
BUILD = """\
import os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
from bench.models import MLP_INPUTS, MLP_OUTPUTS
for seed, path in zip(sys.argv[2::2], sys.argv[3::2]):
    keras.utils.set_random_seed(int(seed))
    x = keras.Input((MLP_INPUTS,), name="features")
    h = keras.layers.Dense(int(sys.argv[1]), activation="relu")(x)
    model = keras.Model(x, keras.layers.Dense(MLP_OUTPUTS, activation="softmax", name="probs")(h))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
"""


def build_versions(paths: dict[int, Path], cwd: Path, hidden: int = MLP_HIDDEN) -> None:
    """Save the bench MLP (256 -> `hidden` -> 10) at each path, seeded by its version: their outputs differ."""
    args = [str(a) for version, path in paths.items() for a in (version, path)]
    subprocess.run([sys.executable, "-c", BUILD, str(hidden), *args], check=True, cwd=cwd, capture_output=True,
                   timeout=300)


def write_json(path: Path, document: dict) -> None:
    """Write `document` to `path` atomically (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB; None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def client_inodes(tcp_text: str, server_port: int) -> dict[int, str]:
    """From /proc/net/tcp's text: client port -> inode of the server side of each established connection."""
    found = {}
    for line in tcp_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != ESTABLISHED:
            continue
        local_port, remote_port = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local_port == server_port:
            found[remote_port] = fields[9]
    return found


def socket_owners(pids: list[int]) -> dict[str, int]:
    """Socket inode -> the pid holding it, over `pids`."""
    owners = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = pid
    return owners


def map_ports(server_port: int, pids: list[int], ports: set[int]) -> dict[int, int]:
    """Client port -> worker pid for each of `ports` whose connection is established now."""
    inodes = client_inodes(Path("/proc/net/tcp").read_text(), server_port)
    owners = socket_owners(pids)
    return {port: owners[inodes[port]] for port in ports if port in inodes and inodes[port] in owners}


class Sampler:
    """A thread sampling every worker's RSS every `interval` s (bounded by `max_samples`) and mapping the
    client ports `ports()` names to the workers holding them."""

    def __init__(self, master: int, server_port: int, ports, interval: float = 0.2, max_samples: int = 20_000):
        self.master, self.server_port, self.ports, self.interval = master, server_port, ports, interval
        self.samples: list[tuple[float, int, float]] = []
        self.worker_of: dict[int, int] = {}
        self.workers_seen: set[int] = set()
        self._max = max_samples
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def workers(self) -> list[int]:
        """The master's worker pids now."""
        return sorted(children(self.master))

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and len(self.samples) < self._max:
            pids = self.workers()
            self.workers_seen.update(pids)
            now = time.monotonic()
            for pid in pids:
                if (mb := rss_mb(pid)) is not None:
                    self.samples.append((now, pid, mb))
            unmapped = set(self.ports()) - self.worker_of.keys()
            if unmapped:
                with contextlib.suppress(OSError):
                    self.worker_of.update(map_ports(self.server_port, pids, unmapped))
