"""Fingerprints: fields, serialisation, determinism, low detail, PDQ under re-encoding, verification.

Images are synthetic illustrations from `benchmarks.synthetic_art` (seeded); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import synthetic_art as art
from ownership.fingerprint import Fingerprint, compute_fingerprint
from ownership.local_features import (
    ORB_FEATURES,
    QUERY_GRAY_SIDE,
    WORK_SIDE,
    LocalFeatures,
    registered_from,
    verify,
)
from ownership.types import DecodedImage


def fingerprint(rgb: np.ndarray) -> Fingerprint:
    return compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(rgb), format="PNG"))


def pdq_distance(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))).sum())


@pytest.fixture(scope="module")
def works() -> list[np.ndarray]:
    style = art.make_artist(1)  # a "character" artist: the same figure recurs in every work
    return [art.make_artwork(style, k) for k in range(3)]


@pytest.fixture(scope="module")
def fp(works: list[np.ndarray]) -> Fingerprint:
    return fingerprint(works[0])


def test_fields_and_shapes(fp: Fingerprint, works: list[np.ndarray]) -> None:
    assert isinstance(fp.pdq, bytes) and len(fp.pdq) == 32
    assert 0 <= fp.pdq_quality <= 100
    assert len(fp.pdq_dihedral) == 8 and all(len(h) == 32 for h in fp.pdq_dihedral)
    assert fp.pdq_dihedral[0] == fp.pdq
    assert len(set(fp.pdq_dihedral)) == 8  # the rotations and flips of an artwork differ
    assert not fp.low_detail

    robust = fp.robust
    h, w = works[0].shape[:2]
    assert max(robust.width, robust.height) == min(WORK_SIDE, max(h, w))
    for kp in (robust.view, robust.mirror):
        assert 100 <= len(kp) <= ORB_FEATURES
        assert kp.descriptors.dtype == np.uint8 and kp.descriptors.shape == (len(kp), 32)
        assert kp.points.dtype == np.float32 and kp.points.shape == (len(kp), 2)
        assert (kp.points >= 0).all() and (kp.points[:, 0] < robust.width).all()
        assert (kp.points[:, 1] < robust.height).all()
    assert robust.gray.dtype == np.uint8 and max(robust.gray.shape) == QUERY_GRAY_SIDE


def test_mirror_view_describes_the_mirror_image(works: list[np.ndarray]) -> None:
    """The mirror view must be what the image's mirror would give as its own view."""
    original = fingerprint(works[0]).robust
    mirrored = fingerprint(np.ascontiguousarray(works[0][:, ::-1])).robust
    seen = {tuple(d) for d in mirrored.view.descriptors.tolist()}
    as_mirror = seen & {tuple(d) for d in original.mirror.descriptors.tolist()}
    as_is = seen & {tuple(d) for d in original.view.descriptors.tolist()}
    # identical descriptors for most keypoints (resampling moves a few at the margin of selection)
    assert len(as_mirror) >= 0.7 * len(original.mirror)
    assert len(as_is) <= 0.1 * len(original.view)


def test_round_trip_and_determinism(fp: Fingerprint, works: list[np.ndarray]) -> None:
    blob = fp.to_bytes()
    back = Fingerprint.from_bytes(blob)
    assert back.pdq == fp.pdq and back.pdq_quality == fp.pdq_quality
    assert back.pdq_dihedral == fp.pdq_dihedral and back.low_detail == fp.low_detail
    for a, b in ((back.robust.view, fp.robust.view), (back.robust.mirror, fp.robust.mirror)):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
    np.testing.assert_array_equal(back.robust.gray, fp.robust.gray)
    assert back.to_bytes() == blob
    assert fingerprint(works[0]).to_bytes() == blob  # same pixels, same bytes
    robust = Fingerprint.robust_from_bytes(fp.robust_to_bytes())
    np.testing.assert_array_equal(robust.view.descriptors, fp.robust.view.descriptors)


def test_screenshot_has_an_inset_that_round_trips(works: list[np.ndarray]) -> None:
    shot = art.screenshot(works[0], np.random.default_rng(0), scale=0.6)
    fp = fingerprint(shot)
    assert fp.robust.inset is not None and len(fp.robust.inset.view) >= 100
    back = LocalFeatures.from_bytes(fp.robust.to_bytes())
    assert back.inset is not None
    np.testing.assert_array_equal(back.inset.view.descriptors, fp.robust.inset.view.descriptors)


@pytest.mark.parametrize("blob", [b"", b"MSFP", b"\x00" * 400])
def test_garbage_blobs_are_refused_with_advice(blob: bytes) -> None:
    with pytest.raises(ValueError, match="recompute"):
        Fingerprint.from_bytes(blob)


def test_truncated_robust_blob_is_refused(fp: Fingerprint) -> None:
    with pytest.raises(ValueError, match="recompute"):
        LocalFeatures.from_bytes(fp.robust.to_bytes()[:-50])


def test_flat_images_are_low_detail() -> None:
    assert fingerprint(art.flat_image()).low_detail
    grain = np.random.default_rng(0).normal(0, 1.0, (400, 600, 1))
    almost_flat = np.clip(art.flat_image(400, 600).astype(np.float64) + grain, 0, 255).astype(np.uint8)
    assert fingerprint(almost_flat).low_detail


def test_pdq_survives_jpeg_but_separates_distinct_works(works: list[np.ndarray], fp: Fingerprint) -> None:
    for quality in (30, 70):
        assert pdq_distance(fingerprint(art.jpeg(works[0], quality)).pdq, fp.pdq) <= 31
    for other in works[1:]:
        assert pdq_distance(fingerprint(other).pdq, fp.pdq) > 31


@pytest.mark.parametrize(
    "attack",
    [
        lambda im, rng: art.crop(im, 0.20, "tl"),
        lambda im, rng: art.rotate(im, 10, crop_inside=True),
        lambda im, rng: art.screenshot(im, rng),
        lambda im, rng: art.caption_bar(im, rng, 0.15),
        lambda im, rng: art.grayscale(art.crop(np.ascontiguousarray(im[:, ::-1]), 0.15)),
    ],
    ids=["crop20", "rotate10", "screenshot", "caption_bar", "mirror+crop+gray"],
)
def test_verification_accepts_attacked_copies(attack, works: list[np.ndarray], fp: Fingerprint) -> None:
    query = fingerprint(attack(works[0], np.random.default_rng(3)))
    result = verify(query.robust, registered_from(fp.robust))
    assert result.matched, result
    assert result.coverage >= 0.8


def test_verification_rejects_distinct_works_of_the_same_artist(works: list[np.ndarray]) -> None:
    fps = [fingerprint(w) for w in works]
    for i, a in enumerate(fps):
        for j, b in enumerate(fps):
            if i != j:
                result = verify(a.robust, registered_from(b.robust))
                assert not result.matched, (i, j, result)
