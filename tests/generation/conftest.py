"""Fixtures for generation tests: one studio (instance, artists, admin, LoRAs, two outputs) for the session.

Tests may add to it (generations, uploads, models) but restore anything they change, and count rows
as differences, never absolutes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.generation.studio import Studio, open_studio


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    yield from open_studio(tmp_path_factory.mktemp("studio") / "home")
