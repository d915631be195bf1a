"""Outside tools the tests drive: the npm conformance packages (tests/node) and a real HTTP
server (uvicorn on a free loopback port, in a thread).

The npm packages are installed by the test set-up into ``tests/node/node_modules`` (gitignored)
from the committed ``package-lock.json``, once per lock file; after that nothing goes to the
network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
