"""The near-duplicate index: add/remove/len, exact bytes, PDQ, local features, and its sub-indexes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from benchmarks import synthetic_art as art
from ownership.fingerprint import Fingerprint, compute_fingerprint
from ownership.index import DescriptorVotes, MatchIndex, PdqMultiIndex, brute_force_search, hashes_to_words
from ownership.types import DecodedImage


def fingerprint(rgb: np.ndarray) -> Fingerprint:
    return compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(rgb), format="PNG"))


def key(rgb: np.ndarray) -> str:
    return hashlib.sha256(rgb.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def portfolios() -> dict[str, list[np.ndarray]]:
    """Two artists with distinct styles: one with a recurring character, one drawing comic pages."""
    return {"alice": [art.make_artwork(art.make_artist(1, "alice"), k) for k in range(3)],
            "bob": [art.make_artwork(art.make_artist(2, "bob"), k) for k in range(3)]}


@pytest.fixture(scope="module")
def fingerprints(portfolios: dict[str, list[np.ndarray]]) -> dict[str, Fingerprint]:
    return {key(w): fingerprint(w) for works in portfolios.values() for w in works}


@pytest.fixture
def index(portfolios: dict[str, list[np.ndarray]], fingerprints: dict[str, Fingerprint]) -> MatchIndex:
    idx = MatchIndex()
    for owner, works in portfolios.items():
        for w in works:
            # through bytes, as the product stores and reloads them
            stored = fingerprints[key(w)].to_bytes()
            idx.add(item_sha256=key(w), owner=owner, fingerprint=Fingerprint.from_bytes(stored))
    return idx


def test_add_remove_len(index: MatchIndex, portfolios: dict[str, list[np.ndarray]],
                        fingerprints: dict[str, Fingerprint]) -> None:
    work = portfolios["bob"][0]
    assert len(index) == 6
    index.add(item_sha256=key(work), owner="bob", fingerprint=fingerprints[key(work)])  # same key: replaced
    assert len(index) == 6
    assert [m.item_sha256 for m in index.search(fingerprints[key(work)])] == [key(work)]
    index.remove(key(work))
    assert len(index) == 5
    assert index.search(fingerprints[key(work)]) == []
    index.remove(key(work))  # unknown keys are ignored
    index.remove("0" * 64)
    assert len(index) == 5
    index.add(item_sha256=key(work), owner="optout", fingerprint=fingerprints[key(work)])
    assert [(m.owner, m.item_sha256) for m in index.search(fingerprints[key(work)])] == [("optout", key(work))]


def test_sha256_exact_match_comes_first(index: MatchIndex, portfolios: dict[str, list[np.ndarray]],
                                        fingerprints: dict[str, Fingerprint]) -> None:
    work = portfolios["alice"][1]
    matches = index.search(fingerprints[key(work)], sha256=key(work))
    assert matches[0].method == "sha256" and matches[0].owner == "alice" and matches[0].score == 0
    assert [m.item_sha256 for m in matches] == [key(work)]  # one match per registered work


def test_pdq_finds_a_jpeg_reencode(index: MatchIndex, portfolios: dict[str, list[np.ndarray]]) -> None:
    work = portfolios["bob"][2]
    matches = index.search(fingerprint(art.jpeg(art.resize(work, 0.7), 40)))
    assert [(m.item_sha256, m.method) for m in matches] == [(key(work), "pdq")]
    assert matches[0].score <= 31


@pytest.mark.parametrize(
    "attack",
    [
        lambda im, rng: art.crop(im, 0.20, "br"),
        lambda im, rng: art.rotate(im, -10),
        lambda im, rng: art.rotate(im, 10, crop_inside=True),
        lambda im, rng: art.screenshot(im, rng),
        lambda im, rng: art.caption_bar(art.crop(im, 0.05), rng, 0.15),
    ],
    ids=["crop20", "rotate10", "rotate10_cropped", "screenshot", "caption_bar"],
)
@pytest.mark.parametrize("owner, number", [("alice", 0), ("bob", 1)])
def test_attacked_copy_is_found_by_local_features(attack, owner: str, number: int, index: MatchIndex,
                                                  portfolios: dict[str, list[np.ndarray]]) -> None:
    work = portfolios[owner][number]
    matches = index.search(fingerprint(attack(work, np.random.default_rng(number))))
    assert [(m.owner, m.item_sha256, m.method) for m in matches] == [(owner, key(work), "local_features")]
    assert matches[0].score >= 8  # verified inliers


def test_distinct_works_of_the_same_artist_do_not_match(index: MatchIndex, portfolios: dict[str, list[np.ndarray]],
                                                        fingerprints: dict[str, Fingerprint]) -> None:
    for owner, works in portfolios.items():
        for work in works:
            assert [m.item_sha256 for m in index.search(fingerprints[key(work)])] == [key(work)]
            # nor does a cropped copy of one work match the artist's other works
            cropped = fingerprint(art.crop(work, 0.2, "corner"))
            assert [(m.owner, m.item_sha256) for m in index.search(cropped)] == [(owner, key(work))]


def test_works_far_below_a_matched_work_in_votes_are_not_verified(index: MatchIndex,
                                                                  fingerprints: dict[str, Fingerprint]) -> None:
    """Beside a work PDQ matched already, the same artist's other works (4-25 votes against its 100+)
    are not verified: the vote floor is relative to the best-voted work, matched or not."""
    for k, fp in fingerprints.items():
        slot = index._by_key[k]
        assert index._candidates(fp, exclude=set())[0][0] == slot
        assert index._candidates(fp, exclude={slot}) == []


def test_hash_only_entries(portfolios: dict[str, list[np.ndarray]], fingerprints: dict[str, Fingerprint]) -> None:
    work = portfolios["alice"][2]
    fp = fingerprints[key(work)]
    idx = MatchIndex()
    idx.add_hashes(item_sha256="pdq:" + fp.pdq.hex(), owner="optout", sha256=None, pdq=fp.pdq)
    idx.add_hashes(item_sha256=key(work), owner="optout", sha256=key(work), pdq=None)
    assert len(idx) == 2
    found = {(m.item_sha256, m.method) for m in idx.search(fingerprint(art.jpeg(work, 60)), sha256=key(work))}
    assert found == {(key(work), "sha256"), ("pdq:" + fp.pdq.hex(), "pdq")}
    with pytest.raises(ValueError):
        idx.add_hashes(item_sha256="x", owner="optout", sha256=None, pdq=None)
    with pytest.raises(ValueError):
        idx.add_hashes(item_sha256="x", owner="optout", sha256=None, pdq=b"short")


def test_flat_images_do_not_match_by_pdq() -> None:
    idx = MatchIndex()
    flat = art.flat_image(color=(200, 180, 160))
    idx.add(item_sha256=key(flat), owner="alice", fingerprint=fingerprint(flat))
    assert idx.search(fingerprint(art.flat_image(color=(190, 185, 150)))) == []


def test_unknown_threshold_is_refused() -> None:
    with pytest.raises(TypeError, match="min_coverage"):
        MatchIndex(min_coverag=0.5)
    idx = MatchIndex(pdq_threshold=20, min_coverage=0.7, candidates=4)
    assert idx.verify_params.min_coverage == 0.7 and idx.candidates == 4
    with pytest.raises(ValueError):
        PdqMultiIndex(threshold=300)


def _flip(h: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(h)
    bits[rng.choice(256, d, replace=False)] ^= 1
    return np.packbits(bits)


@pytest.mark.parametrize("threshold", [31, 12, 40])
def test_pdq_multi_index_against_brute_force(threshold: int) -> None:
    """Every neighbour the pigeonhole guarantees is found (all of them for thresholds 0-21 and above 31;
    up to 21 for 22-31), every returned distance is exact, nothing beyond the threshold is returned."""
    rng = np.random.default_rng(threshold)
    db = rng.integers(0, 256, (30_000, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, (8, 32), dtype=np.uint8)
    for i, d in enumerate([0, 3, threshold, threshold + 1, threshold + 5, 10, 20, 21]):
        db[rng.integers(0, len(db))] = _flip(queries[i % 8], d, rng)
    index = PdqMultiIndex(threshold)
    assert index.exact_up_to == (21 if threshold == 31 else threshold)
    index.add(db[:27_000])
    index.seal()
    index.add(db[27_000:])  # 3,000 hashes searched as an unsealed tail (below the re-seal size)
    expected = brute_force_search(hashes_to_words(db), queries, threshold)
    found = index.search(queries)
    assert expected and set(found) <= set(expected)
    assert all(found[row] == expected[row] for row in found)  # exact distances
    assert {row for row, d in expected.items() if d <= index.exact_up_to} <= set(found)
    if threshold != 31:
        assert found == expected
    row = next(iter(found))
    index.remove(row)
    assert row not in index.search(queries) and len(index) == len(db) - 1


def test_pdq_multi_index_recall_at_the_threshold() -> None:
    """At 31 bits, beyond the pigeonhole guarantee, the sampled tables find >= 99 % of neighbours
    (0.5 % missed in a million-pair simulation); each neighbour is as far as the threshold allows."""
    rng = np.random.default_rng(5)
    queries = rng.integers(0, 256, (2_000, 32), dtype=np.uint8)
    neighbours = np.stack([_flip(q, 31, rng) for q in queries])
    index = PdqMultiIndex(31)
    index.add(np.concatenate([neighbours, rng.integers(0, 256, (20_000, 32), dtype=np.uint8)]))
    index.seal()
    found = [i in index.search(q) for i, q in enumerate(queries)]
    assert np.mean(found) >= 0.99


def test_descriptor_votes_through_the_vocabulary_tree() -> None:
    rng = np.random.default_rng(7)
    votes = DescriptorVotes(tree_from=2_000, leaf_size=64)
    works = [rng.integers(0, 256, (200, 32), dtype=np.uint8) for _ in range(60)]
    for slot, codes in enumerate(works):
        votes.add(slot, codes)
    query = np.stack([_flip(d, 12, rng) for d in works[17][:100]])
    ranked = sorted(votes.votes(query).items(), key=lambda kv: -kv[1])
    assert ranked[0][0] == 17 and ranked[0][1] >= 40  # bucketed: the tree still finds many neighbours
    assert votes._tree is not None and votes._index.ntotal == votes.ntotal
    np.testing.assert_array_equal(votes.codes(17), works[17])
    votes.add(60, works[17])  # the same work registered again: the votes are shared
    ranked = sorted(votes.votes(query).items(), key=lambda kv: -kv[1])
    assert {ranked[0][0], ranked[1][0]} == {17, 60} and abs(ranked[0][1] - ranked[1][1]) < 1e-9
    votes.remove(17)
    assert 17 not in votes.votes(query)


def test_descriptor_votes_limit_keeps_descriptors_of_uncrowded_leaves() -> None:
    rng = np.random.default_rng(8)
    votes = DescriptorVotes(tree_from=2_000, leaf_size=64)
    generic = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    # 40 works share near copies of one generic descriptor: its leaf is crowded
    for slot in range(60):
        own = rng.integers(0, 256, (150, 32), dtype=np.uint8)
        common = np.stack([_flip(generic[0], 6, rng) for _ in range(50)]) if slot < 40 else own[:50]
        votes.add(slot, np.concatenate([own, common]))
    query_own = np.stack([_flip(d, 12, rng) for d in votes.codes(17)[:60]])
    query_common = np.stack([_flip(generic[0], 6, rng) for _ in range(60)])
    query = np.concatenate([query_common, query_own])  # the generic ones first
    limited = votes.votes(query, limit=60)
    assert sum(limited.values()) <= 60 + 1e-9  # one vote per descriptor, 60 descriptors
    ranked = sorted(limited.items(), key=lambda kv: -kv[1])
    assert ranked[0][0] == 17 and ranked[0][1] >= 40  # the distinctive descriptors were the ones kept
