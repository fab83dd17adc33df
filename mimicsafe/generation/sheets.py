"""Reference sheets: which panels each kind has, and how panels are composed into one labelled sheet.

A sheet is one image: a header (title, artist, model, prompt, generation id), the panels in a grid,
each with its caption, colour swatches with hex codes on a palette sheet, and a footer with the
visible label "AI reference · @artist". The composed sheet is what gets watermarked, fingerprinted
and signed, so the label and the id are part of the marked pixels. `Sheet.panels` records where each
panel is, so the layout can be checked and shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mimicsafe.generation.config import OUTPUT_MIN_SIDE
from mimicsafe.generation.palette import Swatch

# ---------------------------------------------------------------------------------------- the panels


@dataclass(frozen=True)
class PanelSpec:
    caption: str
    prompt_suffix: str  # appended to the artist's prompt for this panel


SHEET_TITLES = {
    "turnaround": "Character turnaround",
    "expressions": "Expression sheet",
    "poses": "Pose variations",
    "palette": "Colour palette",
}

SHEET_PANELS: dict[str, tuple[PanelSpec, ...]] = {
    "turnaround": (
        PanelSpec("front", "full body, front view, plain background"),
        PanelSpec("three-quarter", "full body, three-quarter view, plain background"),
        PanelSpec("side", "full body, side view, profile, plain background"),
        PanelSpec("back", "full body, back view, from behind, plain background"),
    ),
    "expressions": (
        PanelSpec("neutral", "portrait, neutral expression"),
        PanelSpec("happy", "portrait, smiling, happy expression"),
        PanelSpec("laughing", "portrait, laughing"),
        PanelSpec("sad", "portrait, sad expression"),
        PanelSpec("angry", "portrait, angry expression"),
        PanelSpec("surprised", "portrait, surprised expression"),
    ),
    "poses": (
        PanelSpec("standing", "full body, standing pose"),
        PanelSpec("walking", "full body, walking"),
        PanelSpec("running", "full body, running, dynamic pose"),
        PanelSpec("sitting", "full body, sitting"),
        PanelSpec("jumping", "full body, jumping"),
        PanelSpec("reaching", "full body, reaching up, arms raised"),
    ),
    # One image in the style, beside the swatches taken from the artist's own accepted works.
    "palette": (PanelSpec("in your style", "colour study"),),
}


def panel_prompts(kind: str, prompt: str) -> list[tuple[str, str]]:
    """(caption, full prompt) for every generated panel of a sheet kind."""
    return [(p.caption, f"{prompt}, {p.prompt_suffix}") for p in SHEET_PANELS[kind]]


# ------------------------------------------------------------------------------------- composition

MARGIN = 24
GAP = 16
CAPTION_HEIGHT = 30
SWATCH = 96
MIN_SHEET_WIDTH = 720
INK = (28, 28, 34)
MUTED = (96, 96, 110)
PAPER = (250, 250, 247)
LABEL_BAND = (34, 36, 46)


@dataclass(frozen=True)
class PanelBox:
    caption: str
    box: tuple[int, int, int, int]  # x, y, width, height in the sheet
    kind: str  # "image" or "swatch"


@dataclass(frozen=True)
class Sheet:
    rgb: np.ndarray
    panels: tuple[PanelBox, ...]

    def layout_json(self) -> list[dict[str, object]]:
        return [{"caption": p.caption, "box": list(p.box), "kind": p.kind} for p in self.panels]


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` (needs FreeType, which Pillow's wheels include)."""
    return ImageFont.load_default(size=size)


def upscale_to(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Enlarge so the short side is at least `min_side` (Lanczos); never shrink."""
    height, width = rgb.shape[:2]
    factor = min_side / min(height, width)
    if factor <= 1:
        return rgb
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def wrap(text: str, width: int, face: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; the last line ends with an ellipsis if text was left over."""
    lines: list[str] = []
    current = ""
    words = text.split()
    for index, word in enumerate(words):
        candidate = f"{current} {word}".strip()
        if face.getlength(candidate) <= width or not current:
            current = candidate
            continue
        lines.append(current)
        current = word
        if len(lines) == max_lines:
            lines[-1] = _ellipsize(lines[-1] + " " + " ".join(words[index:]), width, face)
            return lines
    if current:
        lines.append(current)
    # A single word wider than the line (a long URL, say) is cut rather than drawn off the sheet.
    return [line if face.getlength(line) <= width else _ellipsize(line, width, face) for line in lines]


def _ellipsize(text: str, width: int, face: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    while text and face.getlength(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


def compose_sheet(*, kind: str, artist: str, model_name: str, prompt: str, generation_id: str,
                  panels: Sequence[tuple[str, np.ndarray]], swatches: Sequence[Swatch] = (),
                  label: str | None) -> Sheet:
    """Lay out the generated panels (caption, RGB) and swatches under a header; footer label if given."""
    if not panels:
        raise ValueError("panels: a sheet needs at least one panel")
    cells = [(caption, upscale_to(rgb, OUTPUT_MIN_SIDE)) for caption, rgb in panels]
    cell_h, cell_w = cells[0][1].shape[:2]
    columns = len(cells) if len(cells) <= 4 else 3
    rows = -(-len(cells) // columns)
    grid_width = columns * cell_w + (columns - 1) * GAP
    width = max(MIN_SHEET_WIDTH, grid_width + 2 * MARGIN)
    text_width = width - 2 * MARGIN

    # 1. Measure the header, the grid, the swatches and the footer.
    title_font, body_font, caption_font = font(30), font(17), font(18)
    prompt_lines = wrap(f"prompt: {prompt}", text_width, body_font, max_lines=3)
    header_height = 42 + 26 + 24 * len(prompt_lines) + 26 + GAP
    grid_height = rows * (cell_h + CAPTION_HEIGHT) + (rows - 1) * GAP
    per_row = max(1, (text_width + GAP) // (SWATCH + GAP))
    swatch_rows = -(-len(swatches) // per_row)
    swatch_height = swatch_rows * (SWATCH + 2 * CAPTION_HEIGHT) + max(swatch_rows - 1, 0) * GAP
    footer_height = 44 if label else 0
    height = MARGIN + header_height + grid_height + (GAP + swatch_height if swatches else 0) + MARGIN + footer_height

    sheet = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(sheet)

    # 2. Header: what this is, whose style, which model, the prompt, the generation id.
    y = MARGIN
    draw.text((MARGIN, y), f"{SHEET_TITLES[kind]} · @{artist}", font=title_font, fill=INK)
    y += 42
    draw.text((MARGIN, y), f"model: {model_name}", font=body_font, fill=MUTED)
    y += 26
    for line in prompt_lines:
        draw.text((MARGIN, y), line, font=body_font, fill=INK)
        y += 24
    draw.text((MARGIN, y), f"generation {generation_id}", font=body_font, fill=MUTED)
    y += 26 + GAP

    # 3. The panels, centred, each with its caption underneath.
    boxes: list[PanelBox] = []
    left = (width - grid_width) // 2
    for index, (caption, rgb) in enumerate(cells):
        row, column = divmod(index, columns)
        x = left + column * (cell_w + GAP)
        top = y + row * (cell_h + CAPTION_HEIGHT + GAP)
        sheet.paste(Image.fromarray(rgb), (x, top))
        _centred(draw, caption, x + cell_w // 2, top + cell_h + 6, caption_font, INK)
        boxes.append(PanelBox(caption, (x, top, cell_w, cell_h), "image"))
    y += grid_height

    # 4. Swatches: colour, hex code and share of the artist's works.
    if swatches:
        y += GAP
        for index, swatch in enumerate(swatches):
            row, column = divmod(index, per_row)
            x = MARGIN + column * (SWATCH + GAP)
            top = y + row * (SWATCH + 2 * CAPTION_HEIGHT + GAP)
            draw.rectangle([x, top, x + SWATCH - 1, top + SWATCH - 1], fill=swatch.rgb, outline=MUTED)
            _centred(draw, swatch.hex, x + SWATCH // 2, top + SWATCH + 4, caption_font, INK)
            _centred(draw, f"{swatch.share:.0%}", x + SWATCH // 2, top + SWATCH + CAPTION_HEIGHT, body_font, MUTED)
            boxes.append(PanelBox(swatch.hex, (x, top, SWATCH, SWATCH), "swatch"))

    # 5. Footer: the visible label.
    if label:
        draw.rectangle([0, height - footer_height, width, height], fill=LABEL_BAND)
        label_font = font(20)
        text_y = height - footer_height + (footer_height - 20) // 2 - 2
        draw.text((width - MARGIN - label_font.getlength(label), text_y), label, font=label_font, fill=(255, 255, 255))
        draw.text((MARGIN, text_y), f"MimicSafe · {generation_id}", font=body_font, fill=(200, 200, 210))
    return Sheet(np.asarray(sheet).copy(), tuple(boxes))


def _centred(draw: ImageDraw.ImageDraw, text: str, centre_x: int, top: int,
             face: ImageFont.FreeTypeFont | ImageFont.ImageFont, fill: tuple[int, int, int]) -> None:
    draw.text((centre_x - face.getlength(text) / 2, top), text, font=face, fill=fill)


def draw_label(rgb: np.ndarray, text: str) -> np.ndarray:
    """A single image with the visible label in a dark badge at its bottom-left corner."""
    image = Image.fromarray(rgb).convert("RGBA")
    size = max(12, min(image.size) // 24)
    face = font(size)
    pad = max(4, size // 3)
    box_w, box_h = int(face.getlength(text)) + 2 * pad, size + 2 * pad
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    x0, y0 = pad, image.height - box_h - pad
    draw.rectangle([x0, y0, x0 + box_w, y0 + box_h], fill=(*LABEL_BAND, 200))
    draw.text((x0 + pad, y0 + pad - size // 8), text, font=face, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(image, overlay).convert("RGB")).copy()
