"""`make image-test`: run the built image's own command and check it serves, on this machine (no Docker engine).

    python3 scripts/image_test.py [IMAGE] [MODEL_DIR]     # defaults: keras-serve:latest, models/ of this repo

The image's CMD runs with `podman run` where podman can start containers, else in a buildah working
container (`buildah run --isolation chroot`: no namespaces or rlimits needed; it shares the host's
network, so the server listens on a loopback port). The model folder is mounted read-only at
SERVING_MODEL_DIR. Checked: the server's user is not root, /health/ready, a prediction, the image's
HEALTHCHECK command, and that SIGTERM stops it with exit code 0; the image's size is printed.
Standard library only: it runs with the system's python3.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def sh(*args: str, check: bool = True) -> str:
    """Run a command, return its stdout."""
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inspect(image: str) -> dict:
    """The image's config: Cmd, User, Env, Healthcheck (kept by --format docker), and its size."""
    data = json.loads(sh("podman", "image", "inspect", image))[0]
    return {**data["Config"], "Healthcheck": data.get("Healthcheck") or data["Config"].get("Healthcheck"),
            "Size": data["Size"]}


def get(url: str, body: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def descendants(pid: int) -> list[int]:
    """Every process under `pid`, depth first."""
    found = []
    for child in sh("ps", "-o", "pid=", "--ppid", str(pid), check=False).split():
        found += [int(child), *descendants(int(child))]
    return found


def is_gunicorn(pid: int) -> bool:
    """A Python process running gunicorn (not buildah's helper, whose arguments name it too)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return Path(argv[0]).name.startswith(("python", "gunicorn")) and any("gunicorn" in arg for arg in argv)


def uid_of(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return int(line.split()[1])


def podman_can_run(image: str) -> bool:
    probe = subprocess.run(["podman", "run", "--rm", "--net=host", image, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"podman run cannot start containers here ({probe.stderr.strip().splitlines()[-1]}): using buildah run")
    return probe.returncode == 0


def main() -> int:
    image = sys.argv[1] if len(sys.argv) > 1 else "keras-serve:latest"
    models = Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "models").resolve()
    config = inspect(image)
    env = dict(item.split("=", 1) for item in config["Env"])
    port = free_port()
    mount = f"{models}:{env['SERVING_MODEL_DIR']}:ro"
    settings = {"PORT": str(port), "HOST": "127.0.0.1", "SERVING_GRPC_PORT": "0", "WEB_CONCURRENCY": "1"}
    container = None
    if podman_can_run(image):
        run = ["podman", "run", "--rm", "--net=host", "-v", mount,
               *(f"--env={key}={value}" for key, value in settings.items()), image]
        exec_in = ["podman", "run", "--rm", "--net=host", image]
    else:
        container = sh("buildah", "from", "--pull-never", image)
        for key, value in settings.items():
            sh("buildah", "config", "--env", f"{key}={value}", container)
        run = ["buildah", "run", "--isolation", "chroot", "-v", mount, container, "--"]
        exec_in = ["buildah", "run", "--isolation", "chroot", container, "--"]
    print(f"image {image}: CMD {config['Cmd']}, USER {config['User']}, model folder {models} read-only")
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"image-test-{port}.log", "w+")  # noqa: SIM115 - the server writes it for the whole run
    proc = subprocess.Popen([*run, *config["Cmd"]], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    failures: list[str] = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
        if not ok:
            failures.append(what)

    try:
        started = time.monotonic()
        base = f"http://127.0.0.1:{port}"
        status = 0
        while time.monotonic() - started < 180 and proc.poll() is None:
            try:
                status, _ = get(base + "/health/ready")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        check("/health/ready", status == 200, f"{status} after {time.monotonic() - started:.1f} s")
        master = next((pid for pid in descendants(proc.pid) if is_gunicorn(pid)), None)
        if master is not None:
            check("the server's user is not root", uid_of(master) != 0, f"uid {uid_of(master)}")
        else:
            check("the server's user is not root", False, "no gunicorn process found")
        status, body = get(base + "/predict", ROW)
        check("a prediction", status == 200 and b"predictions" in body, f"{status} {body[:120].decode()}")
        healthcheck = config.get("Healthcheck") or {}
        test = healthcheck.get("Test") or []
        if test[:1] == ["CMD"]:
            result = subprocess.run([*exec_in, *test[1:]], capture_output=True, text=True, timeout=60,
                                    env={**os.environ})
            check("the HEALTHCHECK command", result.returncode == 0, f"exit {result.returncode} {result.stderr[-200:]}")
        else:
            check("the HEALTHCHECK command", False, f"no HEALTHCHECK CMD in the image config ({healthcheck})")
        if master is not None:
            os.kill(master, signal.SIGTERM)  # what `docker stop` sends to the container's PID 1
        code = proc.wait(timeout=90)
        check("SIGTERM exits 0", code == 0, f"exit {code}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if container is not None:
            sh("buildah", "rm", container, check=False)
    print(f"image size: {config['Size'] / 1e9:.2f} GB ({config['Size']} bytes)")
    if failures:
        log.seek(0)
        print("server log (last lines):\n" + "".join(log.readlines()[-30:]))
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("image test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
