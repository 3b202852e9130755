"""`GET /metrics`: the instance's metrics in Prometheus' text format (or OpenMetrics when asked).

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py) the answer sums the files
of every worker, whichever worker takes the scrape, and adds the process metrics (CPU, memory, file
descriptors, start time) of the master and of each live worker, labelled `pid` and `role`, read from
/proc. Without it (one process: a test, `flask run`) it is this process's own registry.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, request
from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.observability.metrics import TALLY

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """The instance's Prometheus metrics, summed over every gunicorn worker."""
    TALLY.flush()  # this worker's latest counts; the others' are at most FLUSH_S old
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    under_gunicorn = request.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")
    return Response(encoder(instance_registry(under_gunicorn)), headers={"Content-Type": content_type})


def instance_registry(under_gunicorn: bool) -> CollectorRegistry:
    """A registry of every worker's metrics (multiprocess mode), else this process's own."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or not os.path.isdir(folder):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)
    registry.register(InstanceProcesses(os.getppid() if under_gunicorn else None))
    return registry


class InstanceProcesses(Collector):
    """prometheus-client's process metrics for the master and every worker, labelled `pid` and `role`."""

    def __init__(self, master: int | None):
        self.master = master

    def collect(self) -> Iterator[Metric]:
        """One family per process metric, one sample per process."""
        processes = [(os.getpid(), "worker")] if self.master is None else [
            (self.master, "master"), *((pid, "worker") for pid in children(self.master))]
        families: dict[str, Metric] = {}
        for pid, role in processes:
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid), "role": role}, sample.value)
        yield from families.values()


def children(pid: int) -> list[int]:
    """The child processes of `pid` (the gunicorn workers of the master)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return [os.getpid()]
