"""Starts one signalroom server per test module on 127.0.0.1 and a random port.

The binary comes from env SIGNALROOM_BIN (default <repo>/target/release/signalroom);
SIGNALROOM_REFERENCE=/path/to/node-reference/server.js runs the Node reference server instead.
"""

import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SIGNALROOM_BIN", str(REPO / "target" / "release" / "signalroom"))
START_TIMEOUT_S = 15


@pytest.fixture(scope="module")
def server_url():
    reference = os.environ.get("SIGNALROOM_REFERENCE")
    if reference:
        cmd = ["node", reference]
        pattern = re.compile(r"http://127\.0\.0\.1:(\d+)")
    else:
        cmd = [BIN, "--host", "127.0.0.1", "--port", "0"]
        pattern = re.compile(r"^signalroom listening on http://127\.0\.0\.1:(\d+)$")
    env = {**os.environ, "PORT": "0", "HOST": "127.0.0.1", "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    port = None
    try:
        while port is None:
            line = lines.get(timeout=START_TIMEOUT_S)
            if line is None:
                raise RuntimeError(f"server exited early: {cmd}")
            m = pattern.search(line)
            if m:
                port = int(m.group(1))
    except queue.Empty:
        proc.kill()
        raise RuntimeError(f"server did not print its listening line within {START_TIMEOUT_S} s: {cmd}")
    yield f"http://127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if not reference:
        assert code == 0, f"signalroom exited with {code} on SIGTERM"
