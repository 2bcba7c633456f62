#!/usr/bin/env python3
"""The two README commands, with nothing but Python 3.11+ on the machine.

    python3 scripts/dev.py run    # virtualenv, install, migrate, demo fleet, web + worker + beat on :8000
    python3 scripts/dev.py test   # virtualenv, install, the whole test suite (extra args go to pytest)

The virtualenv lives in .venv and is reinstalled only when the requirements files or pyproject.toml change; the
project itself is installed into it (editable), which puts the `provenance` command in .venv/bin.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("PROVENANCE_VENV", ROOT / ".venv"))
BIN = VENV / "bin"
PY = BIN / "python"
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "pyproject.toml")  # a change to any reinstalls


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def _bootstrap_pip() -> None:
    # Debian's python3 ships without ensurepip unless python3-venv is installed: fetch pip's wheel from PyPI
    # and run it from the wheel itself (a wheel is an importable zip).
    index = "https://pypi.org/pypi/pip/json"
    with urllib.request.urlopen(index, timeout=60) as response:
        urls = json.load(response)["urls"]
    wheel = next(u for u in urls if u["filename"].endswith(".whl"))
    wheel_url = urllib.parse.urljoin(index, wheel["url"])  # mirrors answer with relative links
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        with urllib.request.urlopen(wheel_url, timeout=120) as response:  # noqa: S310 - https from PyPI JSON
            data = response.read()
        if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
            sys.exit("pip wheel digest mismatch; refusing to install it")
        path.write_bytes(data)
        subprocess.run([str(PY), f"{path}/pip", "install", "--quiet", str(path)], check=True)


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs under whatever python3 the user has
        sys.exit(f"Python 3.11 or newer is required (this is {sys.version.split()[0]})")
    if not PY.exists():
        log(f"creating virtualenv {VENV}")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(VENV)], check=True)
            _bootstrap_pip()
    stamp = VENV / ".requirements.sha256"
    digest = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in REQUIREMENTS)).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        log("installing dependencies (requirements-dev.txt)")
        subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(ROOT / "requirements-dev.txt")], check=True)
        # The project itself, editable and without dependencies (they are pinned above): the `provenance`
        # command in .venv/bin, running this checkout's code.
        log("installing the provenance command")
        subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--editable", str(ROOT)], check=True)
        stamp.write_text(digest)


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(PY), str(ROOT / "manage.py"), *args], check=True, env=env, cwd=ROOT)


def run() -> int:
    ensure_venv()
    env = {**os.environ, "PROVENANCE_DEMO": os.environ.get("PROVENANCE_DEMO", "1")}
    log("migrating the database")
    manage("migrate", "--no-input", env=env)
    manage("collectstatic", "--no-input", "--verbosity", "0", env=env)
    log("building the demo fleet and demo admin")
    manage("demo", env=env)
    data_dir = Path(env.get("PROVENANCE_DATA_DIR") or ROOT / "var")
    port = env.get("PROVENANCE_PORT", "8000")
    processes = {
        "web": [str(BIN / "gunicorn"), "provenance.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "--access-logfile", "-"],
        "worker": [str(BIN / "celery"), "-A", "provenance", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [str(BIN / "celery"), "-A", "provenance", "beat", "--loglevel", "INFO",
                 "--schedule", str(data_dir / "celerybeat-schedule")],
    }
    children = {name: subprocess.Popen(cmd, env=env, cwd=ROOT) for name, cmd in processes.items()}
    log(f"Provenance is running at http://127.0.0.1:{port}  (Ctrl-C stops web, worker and beat)")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; stopping the rest", file=sys.stderr)
                status, stopping = 1, True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return status


def test(args: list[str]) -> int:
    ensure_venv()
    result = subprocess.run([str(PY), "-m", "pytest", *args], cwd=ROOT)
    if result.returncode == 5:
        print("pytest collected no tests: that is a failure, not a pass", file=sys.stderr)
        return 1
    return result.returncode


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "run":
        return run()
    if command == "test":
        return test(sys.argv[2:])
    if command == "venv":
        ensure_venv()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
