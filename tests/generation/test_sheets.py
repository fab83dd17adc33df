"""Sheet composition: every panel of every kind is on the sheet, with its caption; label and swatches."""

from __future__ import annotations

import numpy as np
import pytest

from mimicsafe.generation.config import OUTPUT_MIN_SIDE
from mimicsafe.generation.palette import Swatch
from mimicsafe.generation.sheets import SHEET_PANELS, compose_sheet, draw_label, font, panel_prompts, upscale_to, wrap

EXPECTED = {
    "turnaround": ["front", "three-quarter", "side", "back"],
    "expressions": ["neutral", "happy", "laughing", "sad", "angry", "surprised"],
    "poses": ["standing", "walking", "running", "sitting", "jumping", "reaching"],
    "palette": ["in your style"],
}


def panel(index: int, size: int = 64) -> np.ndarray:
    """A distinct flat panel per index, so the test can find each one on the sheet."""
    colour = ((37 * index) % 200 + 30, (91 * index) % 200 + 30, (53 * index) % 200 + 30)
    return np.full((size, size, 3), colour, np.uint8)


@pytest.mark.parametrize("kind", list(SHEET_PANELS))
def test_every_panel_is_on_the_sheet(kind: str) -> None:
    prompts = panel_prompts(kind, "a fox knight")
    assert [caption for caption, _ in prompts] == EXPECTED[kind]
    assert all(text.startswith("a fox knight, ") for _, text in prompts)
    swatches = [Swatch((200, 40, 50), (0.0, 0.0, 0.0), 0.6), Swatch((20, 140, 150), (0.0, 0.0, 0.0), 0.4)]
    sheet = compose_sheet(kind=kind, artist="alice", model_name="alice-style", prompt="a fox knight",
                          generation_id="0123456789abcdef",
                          panels=[(caption, panel(i)) for i, (caption, _) in enumerate(prompts)],
                          swatches=swatches if kind == "palette" else (), label="AI reference · @alice")
    images = [p for p in sheet.panels if p.kind == "image"]
    assert [p.caption for p in images] == EXPECTED[kind]
    height, width = sheet.rgb.shape[:2]
    for index, box in enumerate(images):
        x, y, w, h = box.box
        assert min(w, h) >= OUTPUT_MIN_SIDE and x + w <= width and y + h <= height
        assert np.array_equal(sheet.rgb[y + h // 2, x + w // 2], panel(index)[0, 0])  # this panel, not another
    for a in images:
        for b in images:
            if a is not b:
                ax, ay, aw, ah = a.box
                bx, by, bw, bh = b.box
                assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, "panels overlap"
    swatch_boxes = [p for p in sheet.panels if p.kind == "swatch"]
    if kind == "palette":
        assert [p.caption for p in swatch_boxes] == ["#c82832", "#148c96"]
        x, y, w, h = swatch_boxes[0].box
        assert tuple(sheet.rgb[y + h // 2, x + w // 2]) == (200, 40, 50)
    else:
        assert swatch_boxes == []
    # The footer band with the visible label spans the bottom of the sheet.
    assert (sheet.rgb[-3, :, :].astype(int).sum(axis=1) < 200).mean() > 0.8


def test_no_label_no_footer_and_single_image_label() -> None:
    sheet = compose_sheet(kind="turnaround", artist="alice", model_name="m", prompt="p", generation_id="00" * 8,
                          panels=[("front", panel(1))], label=None)
    assert sheet.rgb[-3].min() > 200  # paper, no band
    plain = upscale_to(panel(2), OUTPUT_MIN_SIDE)
    labelled = draw_label(plain, "AI reference · @alice")
    assert labelled.shape == plain.shape
    changed = np.argwhere((labelled != plain).any(axis=2))
    assert len(changed) > 0
    assert changed[:, 0].min() > plain.shape[0] // 2 and changed[:, 1].max() < plain.shape[1] * 0.9  # bottom-left badge


def test_long_prompts_are_wrapped_and_cut_to_the_sheet() -> None:
    face = font(17)
    lines = wrap("a fox knight " * 60, 400, face, max_lines=3)
    assert len(lines) == 3 and lines[-1].endswith("...")
    assert all(face.getlength(line) <= 400 for line in lines)
    assert wrap("https://example.org/" + "x" * 300, 400, face, max_lines=3)[0].endswith("...")
