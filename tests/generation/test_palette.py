"""The palette comes from the artist's works: k-means in CIELAB finds their colours and how much of each."""

from __future__ import annotations

import numpy as np
import pytest

from mimicsafe.generation.palette import extract_palette, lab_to_rgb, rgb_to_lab

RED, TEAL, CREAM = (200, 40, 50), (20, 140, 150), (245, 235, 210)


def blocks(shares: list[tuple[tuple[int, int, int], int]], height: int = 60) -> np.ndarray:
    """An image of vertical colour bands, each `width` pixels wide."""
    return np.concatenate([np.full((height, width, 3), colour, np.uint8) for colour, width in shares], axis=1)


def test_finds_each_colour_and_its_share() -> None:
    works = [blocks([(CREAM, 60), (RED, 30), (TEAL, 10)]), blocks([(CREAM, 50), (RED, 30), (TEAL, 20)])]
    palette = extract_palette(works, colours=3)
    assert [s.rgb for s in palette] == [CREAM, RED, TEAL]  # most used first
    assert [s.hex for s in palette] == ["#f5ebd2", "#c82832", "#148c96"]
    assert palette[0].share == pytest.approx(0.55, abs=0.03)
    assert palette[2].share == pytest.approx(0.15, abs=0.03)


def test_fewer_colours_than_asked_gives_fewer_swatches() -> None:
    palette = extract_palette([blocks([(RED, 40), (TEAL, 40)])], colours=8)
    assert sorted(s.rgb for s in palette) == sorted([RED, TEAL])


def test_same_works_same_palette_and_lab_round_trip() -> None:
    rng = np.random.default_rng(0)
    works = [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(3)]
    assert extract_palette(works, colours=5) == extract_palette(works, colours=5)
    colours = np.array([RED, TEAL, CREAM, (0, 0, 0), (255, 255, 255)], np.uint8)
    assert np.abs(lab_to_rgb(rgb_to_lab(colours)).astype(int) - colours).max() <= 1


def test_no_works_is_an_error() -> None:
    with pytest.raises(ValueError, match="images"):
        extract_palette([], colours=4)
