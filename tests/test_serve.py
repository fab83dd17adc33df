"""`mimicsafe serve` starts, migrates, creates the first admin, answers HTTP 200, and lets that admin in."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import stop, wait_for_http


@pytest.fixture
def served(tmp_path: Path, free_port: int):
    home = tmp_path / "home"
    env = {**os.environ, "MIMICSAFE_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ui", "serve", "--port", str(free_port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, home, f"http://127.0.0.1:{free_port}"
    finally:
        stop(proc)


def test_serve_answers_and_lets_the_first_admin_in(served) -> None:
    proc, home, url = served
    assert wait_for_http(url + "/", proc) == 200  # the login page, after a redirect
    password_file = home / "initial-admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    from gradio_client import Client

    assert Client(url + "/public/", verbose=False).predict(api_name="/status") == "Database: **up**"
    admin = Client(url + "/", auth=("admin", password_file.read_text().strip()), verbose=False)
    header, status, *_ = admin.predict(api_name="/page_load")
    assert "signed in as **admin** (admin)" in header
    assert "Database: **up**" in status and "accounts: **1**" in status
