"""A real worker process consumes the SQLite-backed queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mimicsafe.context import Instance
from mimicsafe.jobs import build_queue
from tests.servers import stop


def test_worker_runs_a_queued_job(instance: Instance) -> None:
    queue = build_queue(instance)
    result = queue.enqueue("ping", "hello")
    assert queue.pending_count() == 1
    env = {**os.environ, "MIMICSAFE_HOME": str(instance.settings.home_dir)}
    worker = subprocess.Popen([sys.executable, "-m", "ui", "worker"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        value = None
        deadline = time.monotonic() + 120  # a wait loop, not a speed assertion
        while value is None and time.monotonic() < deadline and worker.poll() is None:
            value = result.get()
            time.sleep(0.2)
        assert value is not None, "the worker did not run the job"
        assert value["token"] == "hello"
        assert str(worker.pid) in value["worker"]
        assert queue.pending_count() == 0
    finally:
        stop(worker)
