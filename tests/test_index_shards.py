"""Shards on a local Ray cluster (2 CPUs, 2 shards) answer as the single index does."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks import synthetic_art as art
from mimicsafe.index_shards import ShardedIndex, shard_of, write_shards
from ownership.fingerprint import Fingerprint, compute_fingerprint
from ownership.index import MatchIndex
from ownership.types import DecodedImage

ray = pytest.importorskip("ray")


def _fp(rgb: np.ndarray) -> Fingerprint:
    return compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(rgb), format="PNG"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_two_shards_give_the_single_index_verdicts(cluster: None, tmp_path: Path) -> None:
    works = [(f"artist{a}", art.make_artwork(art.make_artist(a), k)) for a in (1, 2, 3) for k in range(8)]
    rows = [
        (hashlib.sha256(w.tobytes()).hexdigest(), owner, Fingerprint.from_bytes(_fp(w).to_bytes()))
        for owner, w in works
    ]
    assert {shard_of(key, 2) for key, _, _ in rows} == {0, 1}  # both shards hold works
    single = MatchIndex()
    for key, owner, fp in rows:
        single.add(item_sha256=key, owner=owner, fingerprint=fp)
    sharded = ShardedIndex(write_shards(rows, tmp_path, 2))
    assert len(sharded) == len(single) == len(rows)

    queries = []
    for a in (1, 2, 3):
        ws = [w for owner, w in works if owner == f"artist{a}"]
        queries += [
            (art.crop(ws[0], 0.2, "tl"), None),
            (ws[1][:, ::-1].copy(), None),
            (ws[2], rows[0][0]),
            (art.rotate(ws[3], 8, crop_inside=True), None),
            (art.make_artwork(art.make_artist(a), 60), None),
        ]
    caught = 0
    for image, sha in queries:
        fp = _fp(image)
        expected = single.search(fp, sha256=sha)
        assert sharded.search(fp, sha256=sha) == expected
        caught += bool(expected)
    assert caught >= 12  # copies were caught: the comparison is not between two empty answers

    key, owner, fp = rows[5]
    sharded.remove(key)
    single.remove(key)
    probe = _fp(works[5][1])
    assert sharded.search(probe) == single.search(probe)
    sharded.add(item_sha256=key, owner="someone", fingerprint=fp)
    assert [m.owner for m in sharded.search(probe, sha256=key)][:1] == ["someone"]


def test_merged_answers_keep_one_index_order_copies_before_variants_before_elements() -> None:
    """`MatchIndex.search` lists a copy before a variant before a shared element (what the admin sees
    first); the union of the shards' answers must too."""
    from mimicsafe.index_shards import merge
    from ownership.types import Match

    element = Match("bob", "a" * 64, "local_features", 40.0, "shared_element")
    variant = Match("bob", "b" * 64, "local_features", 12.0, "variant")
    copy = Match("carol", "c" * 64, "local_features", 9.0, "copy")
    pdq = Match("dan", "d" * 64, "pdq", 3.0)
    assert merge([[element, variant], [copy], [pdq]]) == [pdq, copy, variant, element]
