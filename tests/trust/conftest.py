"""Fixtures for trust-over-time tests: the training tests' studio (alice, bob with keys, root) and a queue
drained in this thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimicsafe.context import Instance
from mimicsafe.jobs import Queue, build_queue
from tests.training.conftest import Studio, _make_studio


@pytest.fixture
def studio(instance: Instance, tmp_path: Path) -> Studio:
    return _make_studio(instance, tmp_path)


@pytest.fixture
def queue(instance: Instance) -> Queue:
    return build_queue(instance)
