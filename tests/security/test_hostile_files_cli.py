"""Every hostile file through `mimicsafe check`, as a separate process under a memory limit: each gets a
stable reason, the exit status is 1 (refused), there is no traceback, and the process stays small.

The corpus: tests/ownership/hostile.py (truncations, decompression bombs, huge dimensions, polyglots,
other formats) and tests/security/hostile_more.py (metadata bombs, XXE, deeply nested XMP, malformed
and corrupted C2PA, lying chunk lengths, cyclic EXIF). The time limit is a hang guard only.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

from mimicsafe.context import Instance
from ownership.reasons import ALL_REASONS
from tests.ownership import hostile
from tests.reliability.helpers import child_env, make_people
from tests.security import hostile_more

ADDRESS_SPACE = 3 << 30  # the child's whole virtual memory, libraries included
PEAK_RSS_LIMIT = 1 << 30  # what the child may really use while judging the whole corpus
HANG_GUARD_S = 600


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _run_measured(command: list[str], env: dict[str, str], out: Path) -> tuple[int, str, str, int]:
    """Run to the end; return (exit status, stdout, stderr, peak RSS in bytes) of that child alone."""
    with open(out / "stdout", "wb") as stdout, open(out / "stderr", "wb") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, preexec_fn=_limit_memory)
    guard = threading.Timer(HANG_GUARD_S, proc.kill)
    guard.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        guard.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, (out / "stdout").read_text(), (out / "stderr").read_text(),
            usage.ru_maxrss * 1024)


def test_hostile_corpus_through_the_cli(instance: Instance, tmp_path: Path) -> None:
    make_people(instance, {"alice": "artist"})
    cases = {c.name: c.code for c in hostile.corpus()} | {c.name: c.code for c in hostile_more.corpus()}
    files = tmp_path / "files"
    files.mkdir()
    for case in [*hostile.corpus(), *hostile_more.corpus()]:
        (files / f"{case.name}.bin").write_bytes(case.data)
    env = {**child_env(instance), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "ui", "--json", "check", "alice", *sorted(map(str, files.iterdir()))]

    status, stdout, stderr, peak = _run_measured(command, env, tmp_path)

    assert "Traceback" not in stderr, stderr
    assert status == 1, stderr  # refused: every one of them is rejected
    verdicts = {Path(v["file"]).stem: v for v in json.loads(stdout)}
    assert set(verdicts) == set(cases)
    for name, expected in cases.items():
        verdict = verdicts[name]
        codes = [r["code"] for r in verdict["reasons"]]
        assert verdict["decision"] == "rejected" and codes, name
        assert set(codes) <= set(ALL_REASONS), (name, codes)
        assert all(r["detail"] for r in verdict["reasons"]), name
        if expected is not None:
            assert codes == [expected], (name, verdict["reasons"])
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
