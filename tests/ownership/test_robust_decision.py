"""The robust match decision (issue 15): an a-contrario test that scales with the registry, and the
evidence kind (copy, variant, shared element) a match is reported with."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from benchmarks import synthetic_art as art
from benchmarks.flat_art import black_and_white
from ownership.fingerprint import compute_fingerprint
from ownership.index import MatchIndex
from ownership.local_features import VerifyParams, log10_binomial_tail, registered_from, verify
from ownership.policy import Upload, evaluate
from ownership.types import DecodedImage, DecodeLimits

INK = (25, 25, 25)
OLD_RULE = replace(VerifyParams(), max_nfa=math.inf)  # the fixed thresholds alone, the rule before issue 15


def fingerprint(rgb: np.ndarray):
    return compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(rgb), format="PNG"))


def canvas() -> np.ndarray:
    return np.full((512, 512, 3), 255, np.uint8)


def stick_figure(seed: int = 0) -> np.ndarray:
    """A pictogram stick figure: round flat-filled head, straight limbs in one ink, pose from the seed."""
    rng = np.random.default_rng(seed)
    img = canvas()
    s, (ox, oy), stroke = rng.uniform(0.7, 1.1), rng.uniform(-40, 40, 2), int(rng.integers(6, 14))

    def at(x: float, y: float) -> tuple[int, int]:
        return int(256 + ox + (x - 256) * s), int(256 + oy + (y - 256) * s)

    head = int(rng.uniform(35, 60) * s)
    cv2.circle(img, at(256, 120), head, tuple(int(c) for c in rng.integers(120, 255, 3)), -1, cv2.LINE_AA)
    cv2.circle(img, at(256, 120), head, INK, stroke, cv2.LINE_AA)
    hip, shoulder = at(256, 330), at(256, 215)
    cv2.line(img, at(256, 175), hip, INK, stroke, cv2.LINE_AA)
    for base, (lo, hi), length in ((shoulder, (100, 260), 110), (shoulder, (-80, 80), 110), (hip, (100, 150), 140),
                                   (hip, (30, 80), 140)):
        a = math.radians(rng.uniform(lo, hi))
        end = (int(base[0] + length * s * math.cos(a)), int(base[1] + length * s * math.sin(a)))
        cv2.line(img, base, end, INK, stroke, cv2.LINE_AA)
    return img


def pepper(seed: int = 1018) -> np.ndarray:
    """A bell pepper in the same flat style: lobes filled with one colour, a green stem, the same ink."""
    rng = np.random.default_rng(seed)
    img = canvas()
    body = np.zeros((512, 512), np.uint8)
    lobes, w, h = int(rng.integers(2, 4)), rng.uniform(60, 95), rng.uniform(110, 160)
    cy, stroke = int(rng.uniform(270, 320)), int(rng.integers(6, 14))
    for i in range(lobes):
        cx = int(256 + (i - (lobes - 1) / 2) * rng.uniform(40, 65))
        cv2.ellipse(body, (cx, cy), (int(w), int(h)), rng.uniform(-10, 10), 0, 360, 255, -1, cv2.LINE_AA)
    img[body > 127] = tuple(int(c) for c in rng.integers(0, 255, 3))
    contours, _ = cv2.findContours((body > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, INK, stroke, cv2.LINE_AA)
    top = cy - int(h)
    stem = np.array([[246, top + 10], [266, top + 10], [280, top - 60], [262, top - 66]], np.int32)
    cv2.fillPoly(img, [stem], (60, 150, 60), cv2.LINE_AA)
    cv2.polylines(img, [stem], True, INK, stroke // 2, cv2.LINE_AA)
    return img


def one_work_index(rgb: np.ndarray, owner: str = "bob", **params) -> MatchIndex:
    index = MatchIndex(**params)
    index.add(item_sha256="b" * 64, owner=owner, fingerprint=fingerprint(rgb))
    return index


# ---------------------------------------------------------------------------------------------
# The number of false alarms


def test_binomial_tail_is_exact() -> None:
    for n, k, p in ((10, 0, 0.3), (10, 3, 0.3), (40, 31, 0.35), (200, 180, 0.35), (12, 12, 0.5)):
        exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert log10_binomial_tail(n, k, p) == pytest.approx(math.log10(exact), abs=1e-9)
    assert log10_binomial_tail(5, 6, 0.3) == -math.inf


def needed(params: VerifyParams, cells: int, compared: int) -> int | None:
    """The fewest agreeing cells (of `cells`) that pass the a-contrario test at this registry size."""
    for agree in range(cells + 1):
        if params.log10_nfa(cells=cells, agree=agree, compared=compared) <= math.log10(params.max_nfa):
            return agree
    return None


def test_more_registered_works_demand_more_agreeing_cells() -> None:
    p = VerifyParams()
    needs = [needed(p, 40, n) for n in (1, 1_000, 100_000, 10_000_000)]
    assert all(x is not None for x in needs)
    assert needs == sorted(needs) and needs[0] < needs[-1], needs
    # the bound is the registry's: each tenfold of works compared adds exactly 1 to log10 NFA
    assert p.log10_nfa(cells=40, agree=30, compared=10_000) - p.log10_nfa(cells=40, agree=30, compared=1_000) \
        == pytest.approx(1.0)


def test_low_texture_cannot_reach_a_small_nfa() -> None:
    """A drawing with few detailed cells does not match a large registry even if every cell agrees."""
    p = VerifyParams()
    assert needed(p, 10, 100_000) is None
    assert needed(p, 60, 100_000) is not None


def test_verify_uses_the_number_of_works_compared() -> None:
    """The same evidence matches against a small registry and not against a large one."""
    work = art.make_artwork(art.make_artist(0), 1)
    copy = art.crop(art.rotate(work, 7), 0.2)
    reg = registered_from(fingerprint(work).robust)
    query = fingerprint(copy).robust
    small = verify(query, reg, VerifyParams(), compared=1)
    assert small.matched and small.cells > 0
    # a bound just above this match's NFA at one work: a registry 1000 times larger is refused
    strict = replace(VerifyParams(), max_nfa=10 ** (small.log10_nfa + 1))
    assert verify(query, reg, strict, compared=1).matched
    assert not verify(query, reg, strict, compared=1000).matched
    assert verify(query, reg, strict, compared=1000).log10_nfa == pytest.approx(small.log10_nfa + 3)


def test_the_index_passes_its_size_to_verify() -> None:
    work = art.make_artwork(art.make_artist(0), 1)
    copy = art.crop(art.rotate(work, 7), 0.2)
    index = one_work_index(work)
    found = index.search(fingerprint(copy))
    assert [m.method for m in found] == ["local_features"]
    reg = registered_from(fingerprint(work).robust)
    one = verify(fingerprint(copy).robust, reg, VerifyParams(), compared=1)
    # a bound that one work meets and a registry of 1000 does not: the index with 1000 entries refuses
    index.verify_params = replace(VerifyParams(), max_nfa=10 ** (one.log10_nfa + 1))
    assert index.search(fingerprint(copy))
    for i in range(999):
        index.add_hashes(item_sha256=f"pdq:{i:060d}", owner="optout", sha256=None, pdq=bytes([i % 256]) * 32)
    assert len(index) == 1000
    assert not index.search(fingerprint(copy))


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="cell_chance"):
        VerifyParams(cell_chance=1.0)
    with pytest.raises(ValueError, match="max_nfa"):
        VerifyParams(max_nfa=0.0)
    assert VerifyParams(max_nfa=math.inf).accepts(inliers=8, cells=8, coverage=0.6, area=0.05, log10_nfa=50.0)


# ---------------------------------------------------------------------------------------------
# Flat drawings and variants


def test_stick_figure_does_not_match_a_pepper_in_the_same_flat_style() -> None:
    """This pair passed the fixed thresholds (12 inliers, 19 cells, coverage 0.63): a chance alignment of
    a few strokes. Its number of false alarms is ~0.03 even against a registry of one work."""
    stick = fingerprint(stick_figure())
    assert verify(stick.robust, registered_from(fingerprint(pepper()).robust), OLD_RULE).matched
    assert one_work_index(pepper()).search(stick) == []
    assert one_work_index(pepper(), max_nfa=math.inf).search(stick) != []  # what the old rule did
    assert one_work_index(stick_figure()).search(fingerprint(pepper())) == []


def test_the_flat_drawings_are_still_recognised_when_copied() -> None:
    """The test above is not passed by drawings the gate cannot see at all."""
    for drawing in (pepper(), stick_figure()):
        found = one_work_index(drawing).search(fingerprint(art.jpeg(art.resize(drawing, 0.8), 85)))
        assert [m.item_sha256 for m in found] == ["b" * 64]


def test_black_and_white_version_matches_as_a_variant() -> None:
    work = art.make_artwork(art.make_artist(0), 1)
    found = one_work_index(work).search(fingerprint(black_and_white(work)))
    assert [(m.method, m.kind) for m in found] == [("local_features", "variant")]


def test_a_plain_copy_is_reported_as_a_copy() -> None:
    work = art.make_artwork(art.make_artist(0), 1)
    found = one_work_index(work).search(fingerprint(art.crop(work, 0.1, "tl")))
    assert [(m.method, m.kind) for m in found] == [("local_features", "copy")]


def test_the_verdict_shows_the_evidence_kind_and_still_rejects() -> None:
    work = art.make_artwork(art.make_artist(0), 1)
    ok, png = cv2.imencode(".png", cv2.cvtColor(black_and_white(work), cv2.COLOR_RGB2BGR))
    assert ok
    evidence = evaluate(Upload("bw.png", png.tobytes(), "alice"), index=one_work_index(work), artist_keys=[],
                        limits=DecodeLimits())
    verdict = evidence.verdict.to_json()
    assert verdict["decision"] == "rejected"
    assert [(m["owner"], m["kind"]) for m in verdict["matches"]] == [("bob", "variant")]
    other = next(r for r in verdict["reasons"] if r["code"] == "matches_other_artist")
    assert "variant" in other["detail"]


def test_kinds() -> None:
    p = VerifyParams()
    assert p.kind(coverage=0.95, area=0.8, query_area=0.9) == "copy"
    assert p.kind(coverage=0.65, area=0.8, query_area=0.9) == "variant"
    assert p.kind(coverage=0.95, area=0.1, query_area=0.1) == "shared_element"
    # a small copy pasted into a collage spans little of the query but most of the work: a copy
    assert p.kind(coverage=0.95, area=0.8, query_area=0.1) == "copy"
