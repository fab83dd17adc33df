"""Generation: reference images and sheets in an artist's style, each one marked and recorded.

`generate` reads as the steps it takes:
1. Check who asks: only the LoRA's owner or an admin; the model must exist, be the artist's, not be
   deleted or suspended (`mimicsafe.trust`), and the artist must not have withdrawn consent. Read the
   LoRA through the blob store (hash verified) and, for a palette sheet, the artist's own accepted works.
2. Render: attach the LoRA to the base pipeline and denoise, reporting every step and stopping at
   the next one when cancelled (nothing is stored then).
3. For each output: allocate its 64-bit generation id (the watermark payload), compose the sheet or
   draw the label, then mark it (watermark → fingerprint → PNG + XMP → C2PA; `provenance.marking`).
4. Withhold every output that reproduces another artist's protected work or an opt-out work (its
   fingerprint against the gate's registry; `mimicsafe.trust.regurgitation`): not stored, not shown,
   counted on the model and audited with the evidence.
5. Store each file as a blob, then in one transaction its `Generation` row (with the fingerprint) and
   the audit entry `generation.register` that puts it in the registry: from then on the gate rejects
   it as `ai_generated` and `verify_image` recognises it.
"""

from __future__ import annotations

import importlib.metadata
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.context import Instance
from mimicsafe.db.models import Generation, LoraModel, User
from mimicsafe.errors import BlobError, NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.generation.config import OUTPUT_MIN_SIDE, GenerationConfig
from mimicsafe.generation.palette import Swatch, extract_palette
from mimicsafe.generation.sheets import compose_sheet, draw_label, panel_prompts, upscale_to
from mimicsafe.imaging import decode_limits
from mimicsafe.provenance.content_credentials import SOFT_BINDING_ALG, LoraIngredient
from mimicsafe.provenance.credentials import ensure_credentials
from mimicsafe.provenance.marking import MarkedImage, mark_image
from mimicsafe.provenance.metadata import GenerationFacts
from mimicsafe.registry import GENERATION_REGISTERED
from mimicsafe.training.config import library_versions
from mimicsafe.trust import regurgitation, suspension
from mimicsafe.uploads import eligible_uploads
from ownership.decode import decode_image
from ownership.errors import DecodeError

Progress = Callable[[int, int], None]
"""Called as progress(steps_done, steps_total) after every denoising step."""
Cancel = Callable[[], bool]
"""Polled after every step; returning True stops the generation (GenerationCancelled)."""
Withheld = Callable[[int], None]
"""Called with how many outputs were withheld for reproducing a protected work (when some were)."""

MAX_PALETTE_WORKS = 64
_VERSIONED = ("mimicsafe", "torch", "diffusers", "transformers", "peft", "c2pa-python")


@dataclass(frozen=True)
class GeneratedImage:
    """One stored output."""

    generation_id: int
    """Row id of the `Generation` record."""
    public_id: str
    """16 hex digits: the watermark payload, printed on sheets and in the metadata."""
    image_sha256: str
    png: bytes
    width: int
    height: int
    kind: str
    seed: int
    watermark_reads_back: bool
    """False when the image is too busy at the watermark's scale for it to be read (see docs/generation.md);
    the output is then recognised by its C2PA manifest and fingerprint only."""

    def to_json(self) -> dict[str, Any]:
        return {"generation_id": self.generation_id, "public_id": self.public_id, "sha256": self.image_sha256,
                "width": self.width, "height": self.height, "kind": self.kind, "seed": self.seed,
                "watermark_reads_back": self.watermark_reads_back}


@dataclass(frozen=True)
class _Request:
    """Everything step 1 read from the database, so that no transaction stays open while rendering."""

    actor: str
    artist: str
    artist_id: int
    model_id: int
    model_name: str
    lora_sha256: str
    lora_file: bytes
    palette_works: tuple[np.ndarray, ...]


# 1. who asks, for what ---------------------------------------------------------------------------------


def latest_model_id(*, session: Session, username: str) -> int:
    """The artist's most recent model that is not deleted."""
    user = get_user(session=session, username=username)
    model_id = session.scalar(select(LoraModel.id).where(LoraModel.user_id == user.id, LoraModel.deleted_at.is_(None))
                              .order_by(LoraModel.created_at.desc(), LoraModel.id.desc()).limit(1))
    if model_id is None:
        raise NotFoundError(f"{username} has no trained model yet; train one first (mimicsafe train {username})")
    return int(model_id)


def _authorise(session: Session, *, actor: str, username: str, model_id: int) -> tuple[User, LoraModel]:
    requester = get_user(session=session, username=actor)
    if requester.disabled:
        raise PermissionDenied(f"account {actor} is disabled")
    artist = get_user(session=session, username=username)
    if requester.id != artist.id and requester.role != "admin":
        raise PermissionDenied(f"only {username} or an admin can generate with {username}'s models")
    model = session.get(LoraModel, model_id)
    if model is None or model.user_id != artist.id or model.deleted_at is not None:
        raise NotFoundError(f"{username} has no model #{model_id}")
    if artist.consent_withdrawn_at is not None:
        raise PermissionDenied(f"{username} withdrew consent; their models are no longer used")
    suspension.require_usable(session, model)  # trained on a work protected for someone else since
    return artist, model


def _palette_works(session: Session, instance: Instance, artist: User) -> tuple[np.ndarray, ...]:
    uploads = eligible_uploads(session=session, user_id=artist.id)
    if not uploads:
        raise ValidationFailed(f"{artist.username} has no accepted uploads to take a palette from")
    picks = np.linspace(0, len(uploads) - 1, min(len(uploads), MAX_PALETTE_WORKS)).round().astype(int)
    works = []
    for index in sorted(set(picks.tolist())):
        try:
            works.append(decode_image(instance.blobs.get(uploads[index].sha256), decode_limits(instance.settings)).rgb)
        except (DecodeError, BlobError, NotFoundError):
            continue  # an accepted upload decoded once; if it no longer does, the palette does without it
    if not works:
        raise ValidationFailed(f"none of {artist.username}'s accepted uploads could be read for a palette")
    return tuple(works)


def _prepare(instance: Instance, *, actor: str, username: str, model_id: int, config: GenerationConfig) -> _Request:
    with instance.reading() as session:
        artist, model = _authorise(session, actor=actor, username=username, model_id=model_id)
        works = _palette_works(session, instance, artist) if config.sheet == "palette" else ()
        return _Request(actor=actor, artist=artist.username, artist_id=artist.id, model_id=model.id,
                        model_name=model.name, lora_sha256=model.blob_sha256,
                        lora_file=instance.blobs.get(model.blob_sha256), palette_works=works)


# 2. render --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendered:
    seed: int
    panels: tuple[tuple[str, str, np.ndarray], ...]  # (caption, prompt, RGB); one entry for a single image


def _render(instance: Instance, request: _Request, config: GenerationConfig, seed: int,
            progress: Progress | None, cancel: Cancel | None) -> list[_Rendered]:
    from mimicsafe.generation.pipeline import DEFAULT_PIPELINES, denoise, lora_attached

    # One pipeline call for all single images (one seed each), or one per sheet: a sheet's panels share
    # their seed, so that they show one character.
    if config.sheet is None:
        calls = [[(f"image {i + 1}", config.prompt, seed + i) for i in range(config.batch)]]
    else:
        calls = [[(caption, text, seed + i) for caption, text in panel_prompts(config.sheet, config.prompt)]
                 for i in range(config.batch)]
    total = config.steps * len(calls)
    done = 0

    def on_step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    outputs: list[_Rendered] = []
    with DEFAULT_PIPELINES.borrow(instance.settings) as pipe, \
            lora_attached(pipe, request.lora_file, scale=config.lora_scale, adapter_name=f"lora_{request.model_id}"):
        for call in calls:
            images = denoise(pipe, prompts=[text for _, text, _ in call], negative=config.negative,
                             seeds=[s for _, _, s in call], steps=config.steps, guidance=config.guidance,
                             width=config.width, height=config.height, on_step=on_step,
                             cancelled=cancel or (lambda: False))
            panels = [(caption, text, image) for (caption, text, _), image in zip(call, images, strict=True)]
            if config.sheet is None:
                outputs.extend(_Rendered(s, (panel,)) for (_, _, s), panel in zip(call, panels, strict=True))
            else:
                outputs.append(_Rendered(call[0][2], tuple(panels)))
    if progress is not None:
        progress(total, total)
    return outputs


# 3. compose and mark ----------------------------------------------------------------------------------


def _new_public_id(session: Session, taken: set[str]) -> str:
    """A random 64-bit id no stored generation has (a clash is a 2**-64 event, checked anyway)."""
    while True:
        candidate = secrets.token_bytes(8).hex()
        if candidate in taken:
            continue
        if session.scalar(select(Generation.id).where(Generation.watermark_payload == candidate)) is None:
            taken.add(candidate)
            return candidate


def _base_model_name(instance: Instance) -> str:
    from mimicsafe.models.loading import base_model_name

    return base_model_name(instance.settings)


def _compose(request: _Request, config: GenerationConfig, rendered: _Rendered, facts: GenerationFacts,
             swatches: list[Swatch]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    label = facts.visible_label if config.visible_label else None
    if config.sheet is None:
        image = upscale_to(rendered.panels[0][2], OUTPUT_MIN_SIDE)
        return (draw_label(image, label) if label else image), []
    sheet = compose_sheet(kind=config.sheet, artist=request.artist, model_name=request.model_name,
                          prompt=config.prompt, generation_id=facts.generation_id,
                          panels=[(caption, rgb) for caption, _, rgb in rendered.panels],
                          swatches=swatches, label=label)
    prompts = {caption: text for caption, text, _ in rendered.panels}
    layout = [{**box, "prompt": prompts.get(str(box["caption"]))} for box in sheet.layout_json()]
    return sheet.rgb, layout


def _params(instance: Instance, request: _Request, config: GenerationConfig, facts: GenerationFacts,
            output: _Rendered, image: np.ndarray, layout: list[dict[str, Any]], swatches: list[Swatch],
            marked: MarkedImage, *, signer: str, versions: dict[str, str]) -> dict[str, Any]:
    """Everything about an output that has no column of its own (Generation.params)."""
    render_h, render_w = output.panels[0][2].shape[:2]
    return {
        "config": config.to_json(), "kind": facts.kind, "public_id": facts.generation_id,
        "requested_by": request.actor, "base_model": facts.base_model,
        "demo_model": instance.settings.uses_demo_model,
        "model": {"id": request.model_id, "name": request.model_name, "lora_sha256": request.lora_sha256},
        "negative": config.negative, "prompt_sha256": facts.prompt_sha256, "label": config.visible_label,
        "render": {"width": render_w, "height": render_h},
        "output": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "panels": layout, "palette": [s.to_json() for s in swatches],
        "c2pa": {"signer": signer},
        "watermark": {"alg": SOFT_BINDING_ALG, "reads_back": marked.watermark_reads_back},
        "timings_ms": {k: round(v, 1) for k, v in marked.timings_ms.items()},
        "versions": versions,
    }


# 4. withhold reproductions ----------------------------------------------------------------------------


def _withhold_reproductions(instance: Instance, request: _Request,
                            items: list[tuple[GenerationFacts, MarkedImage, dict[str, Any]]]
                            ) -> list[tuple[GenerationFacts, MarkedImage, dict[str, Any]]]:
    kept, withheld = [], []
    with instance.reading() as session:
        for facts, marked, params in items:
            found = regurgitation.reproduced(session, instance.registry, marked.fingerprint, artist=request.artist)
            if found:
                withheld.append(regurgitation.Withheld(facts.seed, facts.kind, tuple(found)))
            else:
                kept.append((facts, marked, params))
    if withheld:
        with instance.transaction() as session:
            regurgitation.record(session, actor=request.actor, artist=request.artist, model_id=request.model_id,
                                 withheld=withheld)
    return kept


# 5. store ---------------------------------------------------------------------------------------------


def _store(instance: Instance, request: _Request, items: list[tuple[GenerationFacts, MarkedImage, dict[str, Any]]]
           ) -> list[GeneratedImage]:
    for _, marked, _ in items:
        instance.blobs.put(marked.png)  # before the rows: a crash in between leaves only an unused blob
    results = []
    with instance.transaction() as session:
        for facts, marked, params in items:
            row = Generation(user_id=request.artist_id, lora_model_id=request.model_id, prompt=facts.prompt,
                             params=params, seed=facts.seed, image_sha256=marked.sha256,
                             watermark_payload=facts.generation_id, pdq=marked.fingerprint.pdq,
                             fingerprint=marked.fingerprint.to_bytes(), created_at=facts.created_at)
            session.add(row)
            session.flush()
            audit.append(session, actor=request.actor, action=GENERATION_REGISTERED, subject=request.artist,
                         details={"generation_id": row.id, "public_id": facts.generation_id,
                                  "model_id": request.model_id, "image_sha256": marked.sha256, "kind": facts.kind})
            height, width = marked.rgb.shape[:2]
            results.append(GeneratedImage(row.id, facts.generation_id, marked.sha256, marked.png, width, height,
                                          facts.kind, facts.seed, marked.watermark_reads_back))
    return results


def generate(*, instance: Instance, actor: str, username: str, model_id: int, config: GenerationConfig,
             progress: Progress | None = None, cancel: Cancel | None = None,
             withheld: Withheld | None = None) -> list[GeneratedImage]:
    """Generate with `username`'s model `model_id` as `actor` (that artist or an admin); store and return
    every output, each watermarked, fingerprinted, credentialed and registered — except outputs that
    reproduce a protected work of someone else: those are withheld (`withheld(count)` is told how many;
    `OutputWithheld` is raised when that is all of them)."""
    # 1. Authorise and read what the run needs.
    request = _prepare(instance, actor=actor, username=username, model_id=model_id, config=config)
    seed = config.seed if config.seed is not None else secrets.randbelow(2**62)
    config = replace(config, seed=seed)
    credentials = ensure_credentials(instance.settings.home_dir)
    swatches = (extract_palette(request.palette_works, colours=config.palette_colours)
                if config.sheet == "palette" else [])

    # 2. Render.
    rendered = _render(instance, request, config, seed, progress, cancel)

    # 3. Give each output its id, compose it, mark it.
    base_model = _base_model_name(instance)
    kind = "image" if config.sheet is None else f"sheet:{config.sheet}"
    software = f"MimicSafe {importlib.metadata.version('mimicsafe')}"
    versions = library_versions(_VERSIONED)  # once per call, shared by its outputs
    lora = LoraIngredient(name=request.model_name, sha256=request.lora_sha256, model_id=request.model_id,
                          artist=request.artist)
    with instance.reading() as session:
        taken: set[str] = set()
        public_ids = [_new_public_id(session, taken) for _ in rendered]
    items = []
    for output, public_id in zip(rendered, public_ids, strict=True):
        facts = GenerationFacts(generation_id=public_id, artist=request.artist, model_id=request.model_id,
                                model_name=request.model_name, lora_sha256=request.lora_sha256, base_model=base_model,
                                prompt=config.prompt, seed=output.seed, kind=kind,
                                created_at=datetime.now(UTC).replace(microsecond=0), software=software)
        image, layout = _compose(request, config, output, facts, swatches)
        marked = mark_image(image, facts=facts, lora=lora, credentials=credentials, settings=instance.settings)
        params = _params(instance, request, config, facts, output, image, layout, swatches, marked,
                         signer=credentials.signer_subject, versions=versions)
        items.append((facts, marked, params))

    # 4. Withhold what reproduces someone else's protected work.
    kept = _withhold_reproductions(instance, request, items)
    if not kept:
        raise regurgitation.OutputWithheld(f"{regurgitation.FOR_ARTIST}; nothing was stored. Try another prompt "
                                           "or seed.")
    if len(kept) < len(items) and withheld is not None:
        withheld(len(items) - len(kept))

    # 5. Store and register.
    return _store(instance, request, kept)
