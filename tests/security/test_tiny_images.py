"""Every image size from 1×1 up gets a verdict with a reason, never an OpenCV error (issue 17 §6).

A 1×1 PNG used to end `check` in `cv2.error` from ORB's image pyramid (`ownership/local_features.py`,
`_keypoints`). The sizes here go through every entry point that fingerprints an image: the gate without
storing (`check_files`), an upload, a portfolio submission and the public `verify`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mimicsafe import portfolio, uploads
from mimicsafe.context import Instance
from mimicsafe.errors import ValidationFailed
from mimicsafe.imaging import NamedFile
from mimicsafe.provenance.verify import verify_image
from ownership import reasons
from tests.gate_helpers import png_bytes
from tests.reliability.helpers import make_people

SIZES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _noise(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes((rng.random((height, width, 3)) * 255).astype(np.uint8))


@pytest.fixture
def tiny_world(instance: Instance) -> Instance:
    make_people(instance, {"tina": "artist"})
    return instance


@SIZES
@given(width=st.integers(1, 64), height=st.integers(1, 64), flat=st.booleans())
@example(width=1, height=1, flat=True)
@example(width=1, height=1, flat=False)
@example(width=1, height=4000, flat=False)
@example(width=4000, height=1, flat=False)
@example(width=2, height=3000, flat=True)
def test_every_size_gets_a_verdict_everywhere(tiny_world: Instance, width: int, height: int, flat: bool) -> None:
    instance = tiny_world
    data = png_bytes(np.full((height, width, 3), 128, np.uint8)) if flat else _noise(width, height, width * 97 + height)
    file = NamedFile(f"tiny-{width}x{height}.png", data)

    with instance.reading() as session:
        (checked,) = uploads.check_files(session=session, registry=instance.registry, settings=instance.settings,
                                         username="tina", files=[file])
    verdict = checked.to_json()
    codes = {r["code"] for r in verdict["reasons"]}
    assert verdict["decision"] == "rejected" and codes and codes <= set(reasons.REJECT_REASONS), verdict
    assert codes & {reasons.LOW_DETAIL, reasons.NO_PROOF}, verdict
    if flat or width * height < 16:  # nothing in it to compare: a human must look
        assert reasons.LOW_DETAIL in codes, verdict

    (stored,) = uploads.upload(instance=instance, username="tina", files=[file])
    assert stored.to_json()["reasons"] == verdict["reasons"]

    try:
        with instance.transaction() as session:
            portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings, username="tina",
                                files=[file], evidence_url=None, actor="tina")
    except ValidationFailed as refused:  # a refusal with words is a verdict too; an OpenCV error is not
        assert file.name in str(refused)

    report = verify_image(instance=instance, data=data)
    assert report.generation is None and not report.fingerprint_matches
