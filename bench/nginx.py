"""Throughput through nginx: 1 instance direct, 1 behind nginx, 2 behind nginx (deploy/nginx/run.sh).

    .venv/bin/python -m bench.nginx [--seconds 10] [--connections 32]

Each instance is the service with the layout from the environment (WEB_CONCURRENCY x GUNICORN_THREADS,
2 x 4 by default) serving the demo model; wrk POSTs one row to /predict over kept-alive connections.
On a machine with as many cores as one instance has workers (2 here), the second instance gets no
core of its own: "2 behind nginx" then shows what a second instance and the proxy cost, not scaling.
Scale-out needs one instance's worth of cores per instance (docs/operations.md, "Scaling").
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

from bench import wrk
from bench.servers import ROOT, serve
from tests.support import free_port

ROW = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


@contextmanager
def nginx_in_front(ports: list[int], folder: Path) -> Iterator[str]:
    """deploy/nginx/run.sh on a free loopback port in front of `ports`; yields its base URL."""
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        raise SystemExit("nginx is not installed: `apt-get install -y nginx`, then re-run")
    port = free_port()
    proc = subprocess.Popen(["deploy/nginx/run.sh", str(port), *map(str, ports)], cwd=ROOT,
                            env={**os.environ, "PREFIX": str(folder)}, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(base + "/health/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(30)
        temp = re.search(r"client_body_temp_path (\S+)/client_body;", (folder / "nginx.conf").read_text())
        if temp and Path(temp.group(1)) != folder:  # as root, run.sh makes the workers' temp folders elsewhere
            shutil.rmtree(temp.group(1), ignore_errors=True)


def with_host(script: Path) -> Path:
    """bench.wrk's script with a Host header: wrk.format sends none when given headers, and nginx answers
    an HTTP/1.1 request without one 400 (gunicorn lets it through)."""
    plain = '{["Content-Type"] = "application/json"}'
    text = script.read_text()
    assert plain in text, "bench/wrk.py's request headers changed"
    script.write_text(text.replace(plain, '{["Content-Type"] = "application/json", ["Host"] = "127.0.0.1"}'))
    return script


def measure(base: str, script: Path, connections: int, seconds: float) -> dict:
    """A short warm-up, then one wrk run."""
    wrk.run(base, script, connections, 1)
    return wrk.run(base, script, connections, seconds)


def main() -> None:
    """Run the three set-ups one after the other and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    wrk.require_wrk()
    models = ROOT / "models"
    results: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        script = with_host(wrk.write_script(folder, "row", ROW))
        for name, instances, proxied in (("1 instance, direct", 1, False), ("1 instance behind nginx", 1, True),
                                         ("2 instances behind nginx", 2, True)):
            with ExitStack() as stack:
                bases = [stack.enter_context(serve("service", models, folder / "logs"))[0] for _ in range(instances)]
                if proxied:
                    nginx_folder = folder / f"nginx-{instances}"
                    nginx_folder.mkdir()
                    base = stack.enter_context(nginx_in_front([int(b.rsplit(":", 1)[1]) for b in bases],
                                                              nginx_folder))
                else:
                    base = bases[0]
                results.append((name, measure(base, script, args.connections, args.seconds)))
    layout = f"{os.environ.get('WEB_CONCURRENCY', '2')} x {os.environ.get('GUNICORN_THREADS', '4')}"
    print(f"\nPOST /predict, 1 row, {args.connections} connections, {args.seconds:.0f} s; each instance "
          f"{layout}; {os.cpu_count()} cores\n")
    print("| set-up | req/s | p50 ms | p99 ms | statuses | socket errors |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for name, result in results:
        print(f"| {name} | {result['rps']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | "
              f"{result['statuses']} | {sum(result['socket_errors'].values())} |")
    if (os.cpu_count() or 1) <= int(os.environ.get("WEB_CONCURRENCY", "2")):
        print("\nOne instance already has a worker per core here: the 2-instance row shows the cost of a second "
              "instance and the proxy on the same cores, not scaling.")


if __name__ == "__main__":
    main()
