"""Outside tools the tests drive: the npm conformance packages (tests/node), real HTTP servers
(uvicorn in a thread; ``ketenpoort serve`` as a process), the typed-client example's environment.

The npm packages are installed by the test set-up into ``tests/node/node_modules`` (gitignored)
from the committed ``package-lock.json``, once per lock file; after that nothing goes to the
network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.http.app import server_options

NODE_DIR = Path(__file__).resolve().parent / "node"
_STAMP = NODE_DIR / "node_modules" / ".ketenpoort-lock-sha256"
_lock = threading.Lock()


def node_tools() -> Path:
    """``tests/node`` with its packages installed (``npm ci`` when the lock file changed)."""
    with _lock:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            raise AssertionError("node and npm are test prerequisites (Node 20 or later)")
        digest = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
        if not _STAMP.exists() or _STAMP.read_text().strip() != digest:
            done = subprocess.run(  # noqa: S603 - fixed arguments
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                raise AssertionError(f"npm ci in {NODE_DIR} failed:\n{done.stderr[-2000:]}")
            _STAMP.write_text(digest)
        return NODE_DIR


def run_node(
    script: str,
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/node/<script>`` with node; the caller judges the exit code."""
    directory = node_tools()
    node = shutil.which("node")
    assert node is not None
    return subprocess.run(  # noqa: S603 - our own scripts
        [node, str(directory / script), *args],
        cwd=directory,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextmanager
def serve(app: Any, *, start_timeout: float = 30) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **server_options()
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise AssertionError("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ketenpoort(*args: str, env: Mapping[str, str], timeout: float = 60) -> str:
    """Run the ``ketenpoort`` command line; its stdout. Fails with its stderr."""
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "gateway.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"ketenpoort {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


@contextmanager
def ketenpoort_serve(env: Mapping[str, str], *, start_timeout: float = 60) -> Iterator[str]:
    """``ketenpoort serve`` as its own process on a free loopback port; yield its base URL.

    ``env`` holds its settings (``KETENPOORT_STATE`` at least); waits for ``/readyz``.
    """
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KETENPOORT_HOST": "127.0.0.1", **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise AssertionError(f"ketenpoort serve exited:\n{log.read().decode()[-2000:]}")
                try:
                    if client.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("ketenpoort serve was not ready in time")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


EXAMPLE_CLIENT = Path(__file__).resolve().parent.parent / "examples" / "typed_client"


def example_client_tools() -> Path:
    """The ``bin`` folder of the typed-client example's own environment (``.venv`` in the
    example, gitignored), installed from its ``requirements.txt`` once per version of it."""
    venv = EXAMPLE_CLIENT / ".venv"
    requirements = EXAMPLE_CLIENT / "requirements.txt"
    stamp = venv / ".ketenpoort-requirements-sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    with _lock:
        if not stamp.exists() or stamp.read_text().strip() != digest:
            for command in (
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    str(requirements),
                ],
            ):
                done = subprocess.run(  # noqa: S603 - fixed arguments
                    command, capture_output=True, text=True, timeout=600, check=False
                )
                if done.returncode != 0:
                    raise AssertionError(f"{command[:3]} failed:\n{done.stderr[-2000:]}")
            stamp.write_text(digest)
    return venv / "bin"
