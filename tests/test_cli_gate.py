"""The gate through the command line, as people script it: JSON shapes and exit statuses."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from benchmarks import synthetic_art as art
from mimicsafe.cli import exit_status_for
from tests.gate_helpers import artwork, jpeg_bytes, png_bytes
from ui.cli import app

runner = CliRunner()


@dataclass
class Ran:
    exit_code: int
    output: str


def _run(home: Path, *args: str, input: str | None = None) -> Ran:
    """Invoke like the console script does: domain errors become exit statuses, not tracebacks."""
    result = runner.invoke(app, ["--home", str(home), "--json", *args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        status = exit_status_for(result.exception)
        assert status is not None, f"unexplained error: {result.exception!r}"
        return Ran(status, result.output)
    return Ran(result.exit_code, result.output)


def test_gate_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name, role in [("alice", "artist"), ("bob", "artist"), ("root", "admin")]:
        result = _run(home, "user", "create", name, "--role", role, "--password-stdin", input="a long password\n")
        assert result.exit_code == 0

    bob_work = tmp_path / "bob.png"
    bob_work.write_bytes(png_bytes(artwork(2, 0)))
    assert _run(home, "portfolio", "add", "bob", str(bob_work), "--evidence", "https://example.org/b").exit_code == 0
    verified = _run(home, "portfolio", "verify", "bob", "--admin", "root", "--note", "gallery checked")
    assert verified.exit_code == 0, verified.output
    refused = _run(home, "portfolio", "verify", "bob", "--admin", "alice")
    assert refused.exit_code == 1  # not an admin: a refused request

    keydir = tmp_path / "keys"
    assert _run(home, "keys", "generate", "--out", str(keydir)).exit_code == 0
    assert _run(home, "keys", "register", "alice", str(keydir / "mimicsafe_ed25519.pub")).exit_code == 0

    mine = tmp_path / "mine.png"
    mine.write_bytes(png_bytes(artwork(1, 5)))
    stolen = tmp_path / "stolen.jpg"
    stolen.write_bytes(jpeg_bytes(art.crop(artwork(2, 0), 0.15, "corner"), 80))
    manifest = tmp_path / "batch.json"
    signed = _run(home, "sign", "--key", str(keydir / "mimicsafe_ed25519"), "--artist", "alice", str(mine),
                  str(stolen), "--out", str(manifest))
    assert signed.exit_code == 0, signed.output

    ok = _run(home, "check", "alice", str(mine), "--signature", str(manifest))
    assert ok.exit_code == 0, ok.output
    verdict = json.loads(ok.output)
    assert verdict["decision"] == "accepted" and verdict["reasons"][0]["code"] == "valid_signature"
    assert set(verdict) == {"file", "sha256", "decision", "reasons", "matches"}

    rejected = _run(home, "upload", "alice", str(mine), str(stolen), "--signature", str(manifest))
    assert rejected.exit_code == 1
    results = json.loads(rejected.output)
    assert [r["decision"] for r in results] == ["accepted", "rejected"]
    match = results[1]["matches"][0]
    assert match["owner"] == "bob" and match["method"] in ("pdq", "local_features")
    assert results[1]["review"] == "pending"

    queue = json.loads(_run(home, "review", "list", "--admin", "root").output)
    (item,) = queue["items"]
    no_confirm = _run(home, "review", "approve", str(item["upload_id"]), "--admin", "root", "--note", "ok")
    assert no_confirm.exit_code == 2
    upheld = _run(home, "review", "uphold", str(item["upload_id"]), "--admin", "root", "--note", "bob's work")
    assert upheld.exit_code == 0 and json.loads(upheld.output)["state"] == "upheld"
    assert _run(home, "audit", "verify").exit_code == 0


def test_openssh_signature_from_the_real_ssh_keygen(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _run(home, "user", "create", "alice", "--password-stdin", input="a long password\n").exit_code == 0
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert _run(home, "keys", "register", "alice", f"{key}.pub").exit_code == 0
    work = tmp_path / "work.png"
    work.write_bytes(png_bytes(artwork(1, 7)))
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "mimicsafe-upload", "-f", str(key), str(work)], check=True,
                   capture_output=True)
    result = _run(home, "check", "alice", str(work), "--signature", f"{work}.sig")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reasons"][0]["code"] == "valid_signature"
