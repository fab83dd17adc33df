"""Verify: was this image made here, and which generation is it? Three independent witnesses.

1. **C2PA**: a manifest whose signature chains to this instance's trust anchor and whose
   `org.mimicsafe.generation` assertion names a stored generation. Exact, but lost on any re-encode,
   screenshot or metadata strip.
2. **Watermark**: the 64-bit id decoded from the pixels. Survives re-encoding, resizing, colour edits,
   moderate crops and rotations; never decodes a wrong id (see docs/watermark.md).
3. **Fingerprint**: the gate's PDQ and local-feature match against the registered outputs. Survives
   what destroys the watermark (heavy crops, screenshots, overlays), at the cost of needing the
   registry.

The report names the generation (artist, model, time, prompt hash — never the prompt or the image)
and which witnesses know it, or says that none does; and, while the model that made it is suspended,
says so (`suspension`: made by a model under review). Nothing is stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe.context import Instance
from mimicsafe.db.models import Generation, LoraModel, User
from mimicsafe.errors import ValidationFailed
from mimicsafe.imaging import decode_limits, fingerprint_of
from mimicsafe.provenance.content_credentials import ContentCredentialsError, ManifestReport, read_manifest
from mimicsafe.provenance.credentials import load_credentials
from mimicsafe.provenance.metadata import prompt_sha256
from mimicsafe.provenance.watermark import MIN_SIDE, Detection, detect
from mimicsafe.trust import suspension
from ownership.decode import decode_image, sniff_format
from ownership.errors import DecodeError
from ownership.policy import GENERATED_OWNER

METHODS = ("c2pa", "watermark", "fingerprint")
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class GenerationRecord:
    """What verify reveals about a generation: enough to attribute it, nothing private."""

    generation_id: int
    public_id: str
    artist: str
    model_id: int | None
    model_name: str | None
    created_at: datetime
    prompt_sha256: str
    kind: str
    image_sha256: str
    suspension: str | None = None
    """Set while the model that made it is suspended (trained on a work now protected for someone else)."""

    def to_json(self) -> dict[str, Any]:
        return {"generation_id": self.generation_id, "public_id": self.public_id, "artist": self.artist,
                "model": {"id": self.model_id, "name": self.model_name},
                "created_at": self.created_at.isoformat(timespec="seconds"), "prompt_sha256": self.prompt_sha256,
                "kind": self.kind, "image_sha256": self.image_sha256, "suspension": self.suspension}


@dataclass(frozen=True)
class VerifyReport:
    generation: GenerationRecord | None
    """The generation the witnesses point to (the one most of them name), or None."""
    methods: tuple[str, ...]
    """Which of "c2pa", "watermark", "fingerprint" recognised `generation`."""
    c2pa: ManifestReport | None
    watermark: Detection
    fingerprint_matches: tuple[dict[str, Any], ...]
    others: tuple[GenerationRecord, ...] = ()
    """Other generations a witness named (e.g. a sheet pasted into another image)."""
    notes: tuple[str, ...] = field(default=())

    @property
    def found(self) -> bool:
        return self.generation is not None

    def to_json(self) -> dict[str, Any]:
        wm = self.watermark
        return {
            "found": self.found,
            "generation": None if self.generation is None else self.generation.to_json(),
            "methods": list(self.methods),
            "c2pa": None if self.c2pa is None else self.c2pa.to_json(),
            "watermark": {"found": wm.found, "payload": None if wm.payload is None else wm.payload.hex(),
                          "bit_accuracy": round(wm.bit_accuracy, 4), "transform": wm.transform},
            "fingerprint": list(self.fingerprint_matches),
            "others": [o.to_json() for o in self.others],
            "notes": list(self.notes),
        }


def _record(session: Session, row: Generation) -> GenerationRecord:
    artist = session.get(User, row.user_id)
    model = session.get(LoraModel, row.lora_model_id) if row.lora_model_id is not None else None
    return GenerationRecord(
        generation_id=row.id, public_id=row.watermark_payload or "", artist=artist.username if artist else "?",
        model_id=row.lora_model_id, model_name=model.name if model else None, created_at=row.created_at,
        prompt_sha256=str(row.params.get("prompt_sha256") or prompt_sha256(row.prompt)),
        kind=str(row.params.get("kind", "image")), image_sha256=row.image_sha256,
        suspension=suspension.FOR_VERIFY if model is not None and suspension.model_suspended_uploads(session, model)
        else None)


def _by_public_id(session: Session, public_id: str | None) -> Generation | None:
    if not public_id:
        return None
    return session.scalar(select(Generation).where(Generation.watermark_payload == public_id.lower()))


def _read_c2pa(instance: Instance, data: bytes, mime: str, notes: list[str]) -> ManifestReport | None:
    credentials = load_credentials(instance.settings.home_dir)
    if credentials is None:
        notes.append("this instance has never signed anything; a C2PA manifest cannot be one of ours")
        return None
    try:
        return read_manifest(data, mime=mime, trust_anchor_pem=credentials.trust_anchor_pem)
    except ContentCredentialsError as exc:
        notes.append(str(exc))
        return None


def verify_image(*, instance: Instance, data: bytes, max_pixels: int | None = None) -> VerifyReport:
    """Ask the three witnesses about `data` (PNG, JPEG or WebP bytes). Raises ValidationFailed only if
    the file is not an image we can decode (or is over `max_pixels`, when given: the public page's
    lower limit, checked before decoding)."""
    limits = decode_limits(instance.settings)
    if max_pixels is not None:
        limits = replace(limits, max_pixels=min(limits.max_pixels, max_pixels))
    try:
        image = decode_image(data, limits)
    except DecodeError as exc:
        raise ValidationFailed(f"{exc.code}: {exc.detail}") from None
    notes: list[str] = []
    fmt = sniff_format(data)

    # 1. C2PA, validated against this instance's anchor only.
    manifest = _read_c2pa(instance, data, _MIME[fmt], notes) if fmt else None
    # 2. The watermark in the pixels (an image thinner than the detector's smallest side cannot hold one).
    if min(image.rgb.shape[:2]) >= MIN_SIDE:
        detection = detect(image.rgb)
    else:
        detection = Detection(payload=None, bit_accuracy=0.0, confidence=0.0, transform="none")
        notes.append(f"too small to carry a watermark (under {MIN_SIDE} pixels on a side)")
    # 3. The fingerprint against the registered outputs.
    fingerprint = fingerprint_of(image, instance.settings)

    named: dict[int, list[str]] = {}
    rows: dict[int, Generation] = {}
    with instance.reading() as session:

        def witness(row: Generation | None, method: str) -> None:
            if row is not None:
                rows[row.id] = row
                named.setdefault(row.id, []).append(method)

        if manifest is not None and manifest.generation is not None:
            row = _by_public_id(session, str(manifest.generation.get("generation_id", "")))
            if manifest.trusted and row is not None:
                witness(row, "c2pa")
            elif manifest.trusted:
                notes.append("a manifest signed by this instance names a generation that is not stored here")
            else:
                why = ", ".join(manifest.problems) or manifest.validation_state
                notes.append(f"a MimicSafe-style C2PA manifest is present but not trusted here ({why})")
        if detection.found:
            row = _by_public_id(session, detection.payload.hex() if detection.payload else None)
            witness(row, "watermark")
            if row is None:
                notes.append(f"the watermark carries id {detection.payload.hex() if detection.payload else '?'}, "
                             "which no generation of this instance has")
        matches = [m for m in instance.registry.search(session, fingerprint, sha256=hashlib.sha256(data).hexdigest())
                   if m.owner == GENERATED_OWNER]
        match_json = []
        for match in matches:
            row = session.scalar(select(Generation).where(Generation.image_sha256 == match.item_sha256))
            if row is not None and "fingerprint" not in named.get(row.id, []):
                witness(row, "fingerprint")
            match_json.append({"method": match.method, "score": match.score, "image_sha256": match.item_sha256,
                               "public_id": row.watermark_payload if row is not None else None})

        order = sorted(named, key=lambda gid: (-len(named[gid]), min(METHODS.index(m) for m in named[gid])))
        records = [_record(session, rows[gid]) for gid in order]
    methods = tuple(m for m in METHODS if order and m in named[order[0]])
    return VerifyReport(generation=records[0] if records else None, methods=methods, c2pa=manifest,
                        watermark=detection, fingerprint_matches=tuple(match_json), others=tuple(records[1:]),
                        notes=tuple(notes))
