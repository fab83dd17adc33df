"""The load test's core at a small size: concurrent uploads through the running app lose nothing.

Timings are printed by the benchmark, never asserted here; only the no-loss invariants are.
"""

from __future__ import annotations

import pytest

from benchmarks.load_test import Call, LoadConfig, check_store, run_load
from mimicsafe.context import open_instance
from mimicsafe.settings import load_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    home = tmp_path_factory.mktemp("load") / "home"
    config = LoadConfig(clients=4, requests=2, mix=("upload",), time_cap=120, in_process=True)
    return home, run_load(config, home)


def test_concurrent_uploads_each_have_one_verdict_and_one_audit_entry(small_run) -> None:
    _, result = small_run
    assert result.errors == [] and result.skipped == 0
    uploads = [c for c in result.calls if c.kind == "upload"]
    assert len(uploads) == 8
    decisions = {c.decision for c in uploads}
    assert decisions == {"accepted", "rejected"}  # signed and unsigned works, both paths taken
    assert result.problems == []
    assert result.checks["Upload rows"] == 8 and result.checks["upload audit entries"] == 8
    assert str(result.checks["mimicsafe audit verify"]).startswith("exit 0")


def test_the_check_notices_an_upload_that_was_answered_but_not_stored(small_run) -> None:
    home, result = small_run
    result.calls.append(Call("upload", 0.1, decision="accepted", file_name="never-stored.png"))
    result.problems.clear()
    instance = open_instance(load_settings(home=home))
    try:
        check_store(instance, result, home, None)
    finally:
        instance.close()
    assert "8 Upload rows for 9 answered uploads" in result.problems
    assert "never-stored.png: answered 1 time(s), stored 0" in result.problems
