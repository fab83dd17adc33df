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


def test_serve_keeps_gradios_temporary_files_under_home_for_its_owner_only(served) -> None:
    """Uploads (and Gradio's other temporary files) go to home/gradio-temp, not the host-wide temp folder,
    in 0700 folders as 0600 files (issue 17 §3)."""
    import httpx

    proc, home, url = served
    assert wait_for_http(url + "/", proc) == 200
    with httpx.Client(base_url=url + "/public") as http:
        stored = http.post("/gradio_api/upload", files=[("files", ("seen.png", b"\x89PNG not really", "image/png"))])
    assert stored.status_code == 200, stored.text
    (path,) = [Path(p) for p in stored.json()]
    temp = home / "gradio-temp"
    assert path.is_relative_to(temp) and path.read_bytes() == b"\x89PNG not really"
    assert stat.S_IMODE(temp.stat().st_mode) == 0o700
    for item in temp.rglob("*"):
        assert stat.S_IMODE(item.stat().st_mode) == (0o700 if item.is_dir() else 0o600), item
