"""Secrets never reach the output or the logs, even at MIMICSAFE_LOG_LEVEL=DEBUG.

The CLI, `mimicsafe worker` and `mimicsafe serve` run as real processes with every secret set: the
session-signing key, the first admin's password, the database (and queue) URL with its password, a
user's password and a wrong one typed at the login form. Afterwards neither their output nor any file
they wrote outside the database holds a secret — nor a password hash or a session token, which the
database logs (SQL parameters) would otherwise show at DEBUG.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sqlalchemy import select

from mimicsafe.context import Instance
from mimicsafe.db.models import User
from tests.servers import SERVER_ONLY, wait_for_http


def _run(command: list[str], env: dict[str, str], stdin: str = "") -> str:
    result = subprocess.run([sys.executable, "-m", "ui", *command], env=env, input=stdin, capture_output=True,
                            text=True, timeout=300)
    return result.stdout + result.stderr


def _post_login(url: str, username: str, password: str) -> tuple[int, str]:
    body = urllib.parse.urlencode({"username": username, "password": password}).encode()
    request = urllib.request.Request(url + "/login", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("set-cookie", "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _interrupt(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C a server or worker we started (SIGKILL if it does not stop); return all it printed."""
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output


def _serve(env: dict[str, str], port: int, alice_password: str) -> tuple[str, str]:
    """Start `serve`, log in once wrongly and once rightly, stop it; return (output, session cookie)."""
    proc = subprocess.Popen([sys.executable, "-m", "ui", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/login", proc)
        assert _post_login(url, "alice", "the-WRONG-password-" + secrets.token_hex(4))[0] == 401
        status, cookie = _post_login(url, "alice", alice_password)
        assert status == 200 and cookie
    finally:
        output = _interrupt(proc)
    return output, cookie.split(";")[0].split("=", 1)[-1]


def _worker(env: dict[str, str]) -> str:
    proc = subprocess.Popen([sys.executable, "-m", "ui", "worker"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(3)  # let it start and log its configuration
    return _interrupt(proc)


def test_no_secret_in_any_output(instance: Instance, free_port: int) -> None:
    settings = instance.settings
    secret_key, admin_password, alice_password = (secrets.token_urlsafe(24) for _ in range(3))
    env = {**os.environ, "MIMICSAFE_HOME": str(settings.home_dir), "MIMICSAFE_LOG_LEVEL": "DEBUG",
           "MIMICSAFE_SECRET_KEY": secret_key, "MIMICSAFE_ADMIN_PASSWORD": admin_password,
           "MIMICSAFE_ENVIRONMENT": "production"}
    outputs = [
        _run(["user", "create", "alice", "--password-stdin"], env, alice_password + "\n"),
        _run(["user", "create", "alice", "--password-stdin"], env, alice_password + "\n"),  # fails: taken
    ]
    serve_output, session_token = _serve(env, free_port, alice_password)
    outputs += [serve_output, _worker(env)]

    with instance.transaction() as session:
        hashes = list(session.scalars(select(User.password_hash)))
    forbidden = {"secret key": secret_key, "admin password": admin_password, "alice's password": alice_password,
                 "session token": session_token, "wrong password": "the-WRONG-password-"}
    forbidden |= {f"password hash {i}": h for i, h in enumerate(hashes)}
    written = [p for p in Path(settings.home_dir).rglob("*") if p.is_file() and "blobs" not in p.parts
               and not p.name.startswith(("mimicsafe.db", "queue.db"))]
    texts = {f"output {i}": text for i, text in enumerate(outputs)}
    texts |= {str(p): p.read_bytes().decode("utf-8", "replace") for p in written}
    assert "MimicSafe is serving" in serve_output  # the logs were really captured
    leaks = [f"{what} in {where}" for what, value in forbidden.items() for where, text in texts.items()
             if value and value in text]
    assert leaks == []


@SERVER_ONLY
def test_no_database_password_in_any_output(instance: Instance) -> None:
    """With PostgreSQL and Redis URLs that carry passwords: migrations, a refusal, a worker at DEBUG."""
    settings = instance.settings
    assert settings.database_url is not None
    passwords = {urllib.parse.urlsplit(url).password for url in (settings.database_url, settings.queue_url) if url}
    passwords.discard(None)
    assert passwords, "the test servers should require a password"
    env = {**os.environ, "MIMICSAFE_HOME": str(settings.home_dir), "MIMICSAFE_LOG_LEVEL": "DEBUG"}
    outputs = [_run(["db", "upgrade"], env), _run(["user", "enable", "nobody"], env), _worker(env)]
    assert "nobody" in outputs[1]  # the refusal was printed
    assert [p for p in passwords for text in outputs if p and p in text] == []
