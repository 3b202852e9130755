"""How long /health stays unavailable while slow clients drip their bodies at 1 byte/s to a server with no
proxy in front (2 workers x 4 threads, the demo model), for a given SERVING_REQUEST_READ_TIMEOUT.

    .venv/bin/python scripts/slow_clients.py --clients 8 --timeout 5 [--reconnect] [--seconds 30]

A probe opens a new connection for `GET /health` every 0.5 s and waits up to 2 s. `--reconnect`: each
slow client connects again as soon as it is cut (a flood that keeps coming back).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]}'
HEAD = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY))
PROBE_EVERY_S, PROBE_WAIT_S = 0.5, 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slow_client(port: int, until: float, reconnect: bool, cuts: list[int]) -> None:
    """Send the headers, then the body a byte a second; count the times the server cut the connection."""
    while time.monotonic() < until:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(HEAD)
            sock.setblocking(False)
            cut = False
            for byte in BODY:
                if time.monotonic() >= until:
                    break
                try:
                    if sock.recv(65536) is not None:  # an answer (408) or EOF: the server cut us
                        cut = True
                        break
                except BlockingIOError:
                    pass
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    cut = True
                    break
                time.sleep(1.0)
            cuts.append(int(cut))
        if not (cut and reconnect):
            return


def _probe(port: int, until: float, outcomes: list[tuple[float, float | None]]) -> None:
    """(start, seconds) of each /health probe; None when it got no 200 within PROBE_WAIT_S."""
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            ok = requests.get(f"http://127.0.0.1:{port}/health", timeout=PROBE_WAIT_S).status_code == 200
        except requests.RequestException:
            ok = False
        outcomes.append((start, time.monotonic() - start if ok else None))
        time.sleep(max(0.0, start + PROBE_EVERY_S - time.monotonic()))


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not get ready")


def measure(clients: int, timeout: float, seconds: float, reconnect: bool) -> dict[str, float]:
    """Run the server, the slow clients and the probe; the probe's figures."""
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SERVING_MODEL_DIR": str(ROOT / "models"),
           "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4", "SERVING_GRPC_PORT": "0",
           "SERVING_REQUEST_READ_TIMEOUT": str(timeout)}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ready(port, server)
        start = time.monotonic()
        until = start + seconds
        cuts: list[int] = []
        outcomes: list[tuple[float, float | None]] = []
        threads = [threading.Thread(target=_slow_client, args=(port, until, reconnect, cuts)) for _ in range(clients)]
        threads.append(threading.Thread(target=_probe, args=(port, until, outcomes)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait(60)
    failed = [begin for begin, took in outcomes if took is None]
    longest, since = 0.0, None  # since: the start of the first failed probe of the current run of failures
    for begin, took in outcomes:
        if took is None and since is None:
            since = begin
        elif took is not None and since is not None:
            longest, since = max(longest, begin + took - since), None
    if since is not None:
        longest = max(longest, until - since)
    answered = [took for _, took in outcomes if took is not None]
    return {"probes": len(outcomes), "failed": len(failed), "longest_unavailable_s": longest,
            "max_answered_s": max(answered, default=float("nan")), "cuts": sum(cuts)}


def main() -> None:
    """Parse the options, measure, print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=5.0, help="SERVING_REQUEST_READ_TIMEOUT (0: off)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--reconnect", action="store_true")
    args = parser.parse_args()
    result = measure(args.clients, args.timeout, args.seconds, args.reconnect)
    print(f"clients={args.clients} timeout={args.timeout:g}s reconnect={args.reconnect} seconds={args.seconds:g}: "
          f"/health failed {result['failed']}/{result['probes']} probes, longest unavailable "
          f"{result['longest_unavailable_s']:.1f} s, slowest answered probe {result['max_answered_s']:.2f} s, "
          f"slow clients cut {result['cuts']} times")


if __name__ == "__main__":
    main()
