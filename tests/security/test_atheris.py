"""A bounded atheris (libFuzzer) run over the gate's parsers: no input may break a parser's contract.

atheris installs on Linux x86-64 with Python 3.11 (a dev dependency there); elsewhere this is skipped.
The run is bounded by a count of inputs (and a time cap as a hang guard); seeds are real files and
signatures, so the fuzzer starts from valid structure. See tests/security/atheris_gate.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ownership.signatures import generate_keypair, load_private_key, sign_manifest
from ownership.sshsig import sign_sshsig
from tests.security.test_fuzz_gate import seeds

HARNESS = Path(__file__).with_name("atheris_gate.py")
RUNS = 20_000


def _seed_corpus(where: Path) -> None:
    """Inputs for every target: the first byte selects it (see TARGETS in the harness)."""
    private, public = generate_keypair()
    manifest = sign_manifest(private_key_path_or_bytes=private, artist="alice", files=[("art.png", b"art")])
    sshsig = sign_sshsig(load_private_key(private), b"art")
    inputs = [bytes([target]) + image for image in seeds() for target in (0, 1)]
    inputs += [b"\x02" + manifest, b"\x03" + sshsig, b"\x04" + public, b"\x05" + manifest, b"\x05" + sshsig]
    where.mkdir()
    for number, data in enumerate(inputs):
        (where / f"seed-{number}").write_bytes(data)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (Linux x86-64 only)")
def test_atheris_finds_nothing_in_a_bounded_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _seed_corpus(corpus)
    command = [sys.executable, str(HARNESS), f"-runs={RUNS}", "-max_total_time=120", "-seed=1", "-max_len=65536",
               "-rss_limit_mb=2048", "-timeout=30", f"-artifact_prefix={tmp_path}/", str(corpus)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-")))
    assert result.returncode == 0 and not findings, f"{findings}\n{result.stderr[-4000:]}"
    assert "Done" in result.stderr  # libFuzzer's own summary line: the run really happened
