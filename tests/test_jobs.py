"""A real worker process consumes the SQLite-backed queue."""

from __future__ import annotations

import os
import subprocess
import sys

from mimicsafe.context import Instance
from mimicsafe.jobs import build_queue
from tests.servers import stop
from tests.waiting import wait_until


def test_worker_runs_a_queued_job(instance: Instance) -> None:
    queue = build_queue(instance)
    result = queue.enqueue("ping", "hello")
    assert queue.pending_count() == 1
    env = {**os.environ, "MIMICSAFE_HOME": str(instance.settings.home_dir)}
    worker = subprocess.Popen([sys.executable, "-m", "ui", "worker"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def ran() -> dict | None:
            assert worker.poll() is None, f"the worker exited: {worker.communicate()[0]}"
            return result.get()

        value = wait_until(ran, seconds=120, what="the worker to run the job", poll=0.2)
        assert value["token"] == "hello"
        assert str(worker.pid) in value["worker"]
        assert queue.pending_count() == 0
    finally:
        stop(worker)
