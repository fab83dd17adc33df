"""Plain data passed between the gate's parts. No behaviour beyond trivial helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MatchMethod = Literal["sha256", "pdq", "local_features"]
# What a match shows: the registered work itself (however edited), a variant of the drawing (a
# black-and-white version, an edit of it), or an element it shares with the registered work.
EvidenceKind = Literal["copy", "variant", "shared_element"]
EVIDENCE_KINDS: tuple[EvidenceKind, ...] = ("copy", "variant", "shared_element")


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded safely to 8-bit RGB, EXIF orientation applied."""

    rgb: np.ndarray  # (H, W, 3) uint8, C-contiguous
    format: Literal["PNG", "JPEG", "WEBP"]
    notes: tuple[str, ...] = ()  # what decoding did deliberately, e.g. "16-bit reduced to 8-bit"

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass(frozen=True)
class Match:
    """One registered item that an image matched."""

    owner: str  # a username, or "optout" / "generated" for the registries without an artist
    item_sha256: str
    method: MatchMethod
    score: float  # pdq: Hamming distance (lower is closer); local_features: verified inliers; sha256: 0
    kind: EvidenceKind = "copy"  # sha256 and pdq matches are whole-image copies


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str


@dataclass
class Verdict:
    file: str
    sha256: str
    decision: Literal["accepted", "rejected"]
    reasons: list[Reason] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "decision": self.decision,
            "reasons": [{"code": r.code, "detail": r.detail} for r in self.reasons],
            "matches": [
                {"owner": m.owner, "item_sha256": m.item_sha256, "method": m.method, "score": m.score,
                 "kind": m.kind}
                for m in self.matches
            ],
        }
