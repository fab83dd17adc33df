"""CLI commands of generation and provenance: generate, watermark embed/detect, verify.

Heavy imports (torch, diffusers) happen inside the commands, so `mimicsafe --help` stays fast.
`detect` and `verify` exit 1 when they find nothing, so scripts can branch on the status.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image

from mimicsafe.cli import EXIT_BAD_INPUT, EXIT_REFUSED, CliState, app, emit, fail, state_of
from mimicsafe.generation.config import SHEET_KINDS, GenerationConfig
from mimicsafe.trust.regurgitation import FOR_ARTIST

watermark_app = typer.Typer(help="The invisible watermark on its own (no records are read or written).",
                            no_args_is_help=True)
app.add_typer(watermark_app, name="watermark")

ImageArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A PNG, JPEG or WebP file.")]


def _read_rgb(path: Path, state: CliState) -> np.ndarray:
    from mimicsafe.imaging import decode_limits
    from ownership.decode import decode_image
    from ownership.errors import DecodeError

    try:
        return decode_image(path.read_bytes(), decode_limits(state.settings)).rgb
    except DecodeError as exc:
        fail(f"{path}: {exc.code}: {exc.detail}", EXIT_BAD_INPUT)


# generate ----------------------------------------------------------------------------------------------
@app.command("generate")
def generate_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The artist whose style model is used.")],
    prompt: Annotated[str, typer.Option("--prompt", help="What to draw.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNG files (created if missing).",
                                      file_okay=False)],
    sheet: Annotated[str | None, typer.Option("--sheet", help=f"A reference sheet: {', '.join(SHEET_KINDS)}.")] = None,
    model: Annotated[int | None, typer.Option("--model", help="Model id (default: the artist's latest).")] = None,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks: the artist (default) or an admin.")] = None,
    negative: Annotated[str, typer.Option("--negative", help="Negative prompt.")] = "",
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: random, recorded).")] = None,
    steps: Annotated[int, typer.Option("--steps")] = 25,
    guidance: Annotated[float, typer.Option("--guidance")] = 7.0,
    width: Annotated[int | None, typer.Option("--width", help="Default: the base model's own size.")] = None,
    height: Annotated[int | None, typer.Option("--height", help="Default: the base model's own size.")] = None,
    lora_scale: Annotated[float, typer.Option("--lora-scale", help="LoRA strength, 0-2.")] = 1.0,
    batch: Annotated[int, typer.Option("--batch", help="Number of outputs.")] = 1,
    label: Annotated[bool | None, typer.Option("--label/--no-label",
                                               help="Visible 'AI reference' label (default: on for sheets).")] = None,
) -> None:
    """Generate reference images (or a sheet) in USERNAME's style; every file is watermarked, fingerprinted,
    signed (C2PA) and recorded."""
    from mimicsafe.generation import generate, latest_model_id

    state = state_of(ctx)
    try:
        config = GenerationConfig(prompt=prompt, negative=negative, seed=seed, steps=steps, guidance=guidance,
                                  width=width, height=height, lora_scale=lora_scale, batch=batch,
                                  sheet=sheet, label=label)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    instance = state.instance()
    if model is None:
        with instance.reading() as session:
            model = latest_model_id(session=session, username=username)

    def progress(done: int, total: int) -> None:
        if not state.as_json:
            typer.echo(f"\rstep {done}/{total}", nl=done == total, err=True)

    def withheld(count: int) -> None:
        typer.echo(f"note: {count} output(s) withheld: {FOR_ARTIST}", err=True)

    outputs = generate(instance=instance, actor=actor or username, username=username, model_id=model, config=config,
                       progress=progress, withheld=withheld)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for output in outputs:
        path = out / f"mimicsafe-{output.public_id}.png"
        path.write_bytes(output.png)
        rows.append({**output.to_json(), "file": str(path)})
    lines = [f"{r['file']}: generation {r['public_id']} ({r['kind']}, {r['width']}x{r['height']}, seed {r['seed']})"
             + ("" if r["watermark_reads_back"] else "\n  note: the image is too busy for its watermark to be read; "
                "it is recognised by its C2PA manifest and fingerprint") for r in rows]
    emit(state, {"outputs": rows} if len(rows) != 1 else rows[0], "\n".join(lines))


# watermark ---------------------------------------------------------------------------------------------
@watermark_app.command("embed")
def watermark_embed(
    ctx: typer.Context,
    source: ImageArg,
    target: Annotated[Path, typer.Argument(dir_okay=False, help="Output file; PNG keeps the mark best.")],
    payload: Annotated[str, typer.Option("--payload", help="16 hex digits (64 bits).")],
) -> None:
    """Embed a 64-bit PAYLOAD invisibly into SOURCE and write TARGET (format from its suffix)."""
    from mimicsafe.provenance.watermark import embed

    state = state_of(ctx)
    try:
        data = bytes.fromhex(payload)
    except ValueError:
        data = b""
    if len(data) != 8:
        fail(f"--payload: expected 16 hex digits (64 bits), got {payload!r}", EXIT_BAD_INPUT)
    rgb = _read_rgb(source, state)
    try:
        marked = embed(rgb, data)
    except ValueError as exc:
        fail(f"{source}: {exc}", EXIT_BAD_INPUT)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(target.suffix.lower(), "PNG")
    buffer = io.BytesIO()
    Image.fromarray(marked).save(buffer, fmt, **({"quality": 95} if fmt != "PNG" else {}))
    target.write_bytes(buffer.getvalue())
    emit(state, {"file": str(target), "payload": data.hex(), "format": fmt},
         f"wrote {target} carrying {data.hex()}")


@watermark_app.command("detect")
def watermark_detect(ctx: typer.Context, image: ImageArg) -> None:
    """Look for the watermark in IMAGE; exit 1 if there is none."""
    from mimicsafe.provenance.watermark import detect

    state = state_of(ctx)
    found = detect(_read_rgb(image, state))
    payload: dict[str, Any] = {"file": str(image), "found": found.found,
                               "payload": None if found.payload is None else found.payload.hex(),
                               "version": found.version, "bit_accuracy": round(found.bit_accuracy, 4),
                               "confidence": round(found.confidence, 4), "transform": found.transform,
                               "attempts": found.attempts}
    text = (f"{image}: watermark {payload['payload']} (bit accuracy {found.bit_accuracy:.1%}, {found.transform})"
            if found.found else f"{image}: no watermark")
    emit(state, payload, text)
    if not found.found:
        raise typer.Exit(EXIT_REFUSED)


# verify ------------------------------------------------------------------------------------------------
@app.command("verify")
def verify_command(ctx: typer.Context, image: ImageArg) -> None:
    """Was IMAGE generated here? Reads C2PA, decodes the watermark, looks up the fingerprint; exit 1 if
    none of them knows it."""
    from mimicsafe.provenance.verify import verify_image

    state = state_of(ctx)
    report = verify_image(instance=state.instance(), data=image.read_bytes())
    payload = {"file": str(image), **report.to_json()}
    if report.generation is not None:
        g = report.generation
        text = (f"{image}: generated by MimicSafe — generation {g.public_id} in @{g.artist}'s style "
                f"(model {g.model_name or g.model_id}, {g.created_at:%Y-%m-%d %H:%M} UTC, prompt sha256 "
                f"{g.prompt_sha256[:16]}…)\n  recognised by: {', '.join(report.methods)}")
        if g.suspension:
            text += f"\n  SUSPENDED: {g.suspension}"
    else:
        text = f"{image}: not recognised (no trusted C2PA manifest, no watermark, no fingerprint match)"
    text += "".join(f"\n  note: {n}" for n in report.notes)
    emit(state, json.loads(json.dumps(payload, default=str)), text)
    if not report.found:
        raise typer.Exit(EXIT_REFUSED)
