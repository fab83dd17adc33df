"""Fixtures for trust-over-time tests: the training tests' studio (alice, bob with keys, root) and a queue
drained in this thread."""

from __future__ import annotations

from tests.training.conftest import queue, studio  # noqa: F401  (the same fixtures, shared)
