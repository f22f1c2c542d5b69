"""`make lab` really serves JupyterLab on localhost behind a token."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="run through `make test` (needs .venv)")
def test_make_lab_serves_jupyterlab_with_token() -> None:
    port, token = _free_port(), "metalearn-test-token"
    flags = f"--no-browser --ServerApp.port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_FLAGS={flags}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        status = None
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/api/contents?token={token}"
                with urllib.request.urlopen(url, timeout=2) as r:
                    status = json.load(r)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert status is not None, "JupyterLab did not answer: " + (proc.stdout.read().decode() if proc.poll() else "")
        names = {item["name"] for item in status["content"]}
        assert "00_start_here.ipynb" in names  # served from notebooks/
        with pytest.raises(urllib.error.HTTPError) as err:  # no token, no access
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5)
        assert err.value.code == 403
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=5) as r:
            assert r.status == 200
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
