"""Starts one signalroom server per test module on 127.0.0.1 and a random port.

The binary comes from env SIGNALROOM_BIN (default <repo>/target/release/signalroom);
SIGNALROOM_REFERENCE=/path/to/node-reference/server.js runs the Node reference server instead.
With SIGNALROOM_TEST_CLUSTER=N the server is node 1 of N nodes of SIGNALROOM_CLUSTER_BIN
(default: SIGNALROOM_BIN) on a private Redis (SIGNALROOM_REDIS_BIN), as tests/lib/server.mjs
does for the Node suite.
"""

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SIGNALROOM_BIN", str(REPO / "target" / "release" / "signalroom"))
START_TIMEOUT_S = 15
TEST_CLUSTER = int(os.environ.get("SIGNALROOM_TEST_CLUSTER") or 0)
CLUSTER_BIN = os.environ.get("SIGNALROOM_CLUSTER_BIN") or (BIN if TEST_CLUSTER else None)
REDIS_BIN = os.environ.get("SIGNALROOM_REDIS_BIN", "redis-server")


LISTENING = re.compile(r"^signalroom listening on http://127\.0\.0\.1:(\d+)$")


@contextlib.contextmanager
def running(cmd, pattern=LISTENING, env=None):
    """Runs `cmd` while the block runs; yields `http://127.0.0.1:PORT` from its listening line.

    At the end the process gets SIGTERM (then SIGKILL after 10 s); `proc.returncode` on the
    yielded handle's `.proc` tells how it ended.
    """
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **(env or {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    handle = Running(proc)
    try:
        while handle.url is None:
            try:
                line = lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                raise RuntimeError(f"no listening line within {START_TIMEOUT_S} s: {cmd}") from None
            if line is None:
                raise RuntimeError(f"exited early: {cmd}")
            m = pattern.search(line)
            if m:
                handle.url = f"http://127.0.0.1:{m.group(1)}"
        yield handle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Running:
    """A process started by `running`: its URL once it listens, and the process."""

    def __init__(self, proc):
        self.proc = proc
        self.url = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cluster(n, flags=(), prefix="n"):
    """A private Redis and `n` nodes of SIGNALROOM_CLUSTER_BIN on it, each with `flags`;
    yields the nodes' `Running` handles (node ids `{prefix}1`, `{prefix}2`, ...)."""
    if not CLUSTER_BIN:
        raise RuntimeError("SIGNALROOM_CLUSTER_BIN (the server binary for the nodes) is not set")
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="signalroom-redis-"))
        port = free_port()
        redis = [REDIS_BIN, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", workdir]
        stack.enter_context(running(redis, re.compile(r"Ready to accept connections()")))
        nodes = []
        for i in range(1, n + 1):
            cmd = [CLUSTER_BIN, "--host", "127.0.0.1", "--port", "0", *flags,
                   "--redis-url", f"redis://127.0.0.1:{port}", "--node-id", f"{prefix}{i}"]
            nodes.append(stack.enter_context(running(cmd, env={"PORT": "0", "HOST": "127.0.0.1"})))
        yield nodes


@pytest.fixture(scope="module")
def server_url():
    reference = os.environ.get("SIGNALROOM_REFERENCE")
    if TEST_CLUSTER and not reference:
        # Every client of the module on node 1 (the "every client on one node").
        with cluster(TEST_CLUSTER) as nodes:
            yield nodes[0].url
        for node in nodes:
            assert node.proc.returncode == 0, f"a node exited with {node.proc.returncode} on SIGTERM"
        return
    if reference:
        cmd, pattern = ["node", reference], re.compile(r"http://127\.0\.0\.1:(\d+)")
    else:
        cmd, pattern = [BIN, "--host", "127.0.0.1", "--port", "0"], LISTENING
    with running(cmd, pattern, env={"PORT": "0", "HOST": "127.0.0.1"}) as server:
        yield server.url
    if not reference:
        assert server.proc.returncode == 0, f"signalroom exited with {server.proc.returncode} on SIGTERM"
