"""The typed generation config: what one request asks for, checked before any model is loaded."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

SheetKind = Literal["turnaround", "expressions", "poses", "palette"]
SHEET_KINDS: tuple[str, ...] = get_args(SheetKind)

MAX_PROMPT_CHARS = 1000
MIN_SIDE, MAX_SIDE = 64, 2048
MAX_BATCH = 8
OUTPUT_MIN_SIDE = 256
"""Outputs are delivered at least this many pixels on the short side: a smaller render (the built-in
demo model draws 64 px) is upscaled before marking, because a watermark needs room to survive crops
and re-encoding."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class GenerationConfig:
    """One generation request. Invalid values raise ValueError naming the parameter."""

    prompt: str = field(metadata=_help("What to draw; the LoRA adds the artist's style."))
    negative: str = field(default="", metadata=_help("What to steer away from (classifier-free guidance)."))
    seed: int | None = field(default=None, metadata=_help(
        "Random seed; None picks one at random. It is recorded, so any output can be made again."))
    steps: int = field(default=25, metadata=_help("Denoising steps."))
    guidance: float = field(default=7.0, metadata=_help("Classifier-free guidance scale; 1 turns it off."))
    width: int | None = field(default=None, metadata=_help(
        "Render width in pixels (a multiple of 8); None: the base model's own size (SD 1.5: 512, SDXL: 1024, "
        "the demo model: 64)."))
    height: int | None = field(default=None, metadata=_help("Render height in pixels; None: the model's own size."))
    lora_scale: float = field(default=1.0, metadata=_help("LoRA strength: 0 is the base model, 1 the trained style."))
    batch: int = field(default=1, metadata=_help("Outputs to make (seeds seed, seed+1, …)."))
    sheet: SheetKind | None = field(default=None, metadata=_help(
        "Compose a reference sheet instead of single images: turnaround, expressions, poses or palette."))
    label: bool | None = field(default=None, metadata=_help(
        "Draw the visible label 'AI reference · @artist'. Default: on for sheets, off for single images."))
    palette_colours: int = field(default=8, metadata=_help("Swatches on a palette sheet."))

    def __post_init__(self) -> None:
        self.check_inputs()

    def check_inputs(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError("prompt: must not be empty")
        if len(self.prompt) > MAX_PROMPT_CHARS or len(self.negative) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt/negative: at most {MAX_PROMPT_CHARS} characters each")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: must be in [0, 2**63), got {self.seed}")
        if not 1 <= self.steps <= 150:
            raise ValueError(f"steps: must be in [1, 150], got {self.steps}")
        if not 1.0 <= self.guidance <= 30.0:
            raise ValueError(f"guidance: must be in [1, 30], got {self.guidance}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (not MIN_SIDE <= value <= MAX_SIDE or value % 8):
                raise ValueError(f"{name}: must be a multiple of 8 in [{MIN_SIDE}, {MAX_SIDE}], got {value}")
        if not 0.0 <= self.lora_scale <= 2.0:
            raise ValueError(f"lora_scale: must be in [0, 2], got {self.lora_scale}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch: must be in [1, {MAX_BATCH}], got {self.batch}")
        if self.sheet is not None and self.sheet not in SHEET_KINDS:
            raise ValueError(f"sheet: choose one of {', '.join(SHEET_KINDS)}, got {self.sheet!r}")
        if not 2 <= self.palette_colours <= 16:
            raise ValueError(f"palette_colours: must be in [2, 16], got {self.palette_colours}")

    @property
    def visible_label(self) -> bool:
        return self.sheet is not None if self.label is None else self.label

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
