"""Waiting in tests: poll a condition under a hang guard. The only place tests read the clock.

The guard is generous on purpose: it stops a hung test on a busy, shared machine. It is never a speed
assertion; speeds are measured in benchmarks/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, seconds: float, what: str, poll: float = 0.05) -> T:
    """The first truthy value of `condition()`, polled every `poll` seconds. Past `seconds` the test fails,
    saying what it waited for. `condition` may raise to fail at once (a process that died, say)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        time.sleep(poll)
