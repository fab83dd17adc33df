"""Artist tab: generate reference images and sheets with one of your models; each output is marked,
recorded, and checked with `verify` before it is shown."""

from __future__ import annotations

import io
import threading
from typing import Any

import gradio as gr
from PIL import Image

from mimicsafe.context import Instance
from mimicsafe.generation import service as generation
from mimicsafe.generation.config import MAX_BATCH, SHEET_KINDS, GenerationConfig
from mimicsafe.provenance.verify import verify_image
from mimicsafe.training import service as training
from mimicsafe.trust import regurgitation
from ui.files import file_for_download
from ui.guard import refusals, require_artist
from ui.tabs import Panel, as_id, required_id
from ui.words import WITNESSES

SINGLE = "single images"


def verification_line(instance: Instance, image: generation.GeneratedImage) -> str:
    """What `mimicsafe verify` says about the file as it will be downloaded."""
    report = verify_image(instance=instance, data=image.png)
    if report.generation is None or report.generation.public_id != image.public_id:
        return f"- `{image.public_id}` ({image.kind}, seed {image.seed}): **not recognised** by verify"
    found = ", ".join(WITNESSES[m] for m in report.methods)
    return f"- `{image.public_id}` ({image.kind}, seed {image.seed}): verified by {found}"


def build(instance: Instance) -> Panel:
    stops: dict[str, threading.Event] = {}  # one per logged-in session that is generating
    with gr.Tab("Generate", id="generate"), gr.Row(equal_height=False):
        with gr.Column(min_width=320):
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a girl with a red scarf, standing")
            negative = gr.Textbox(label="Avoid", lines=1)
            model = gr.Dropdown(label="Your model", choices=[], allow_custom_value=True)
            kind = gr.Dropdown([SINGLE, *SHEET_KINDS], value=SINGLE, label="Make")
            with gr.Row():
                batch = gr.Slider(1, MAX_BATCH, value=1, step=1, label="How many", min_width=120)
                steps = gr.Slider(1, 100, value=25, step=1, label="Steps", min_width=120)
            with gr.Row():
                strength = gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Style strength", min_width=120)
                seed = gr.Number(label="Seed (empty: random)", precision=0, min_width=120)
            with gr.Row():
                run = gr.Button("Generate", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(min_width=320):
            empty = gr.Markdown()
            gallery = gr.Gallery(label="Results", columns=2, height="auto", object_fit="contain")
            summary = gr.Markdown()
            files = gr.File(label="Download (PNG with watermark and Content Credentials)", file_count="multiple",
                            interactive=False)

    def choices_for(username: str) -> tuple:
        with instance.reading() as session:
            models = training.list_models(session=session, username=username, actor=username)
            choices = [(f"#{m.id} {m.name}", m.id) for m in reversed(models)]
        hint = "" if choices else "_Train a model on the **Training** tab first; then generate here._"
        return gr.update(choices=choices, value=choices[0][1] if choices else None), hint

    def session_key(request: gr.Request, username: str) -> str:
        return f"{username}:{getattr(request, 'session_hash', '') or ''}"

    @refusals
    def run_generation(text: str, avoid: str, model_id: Any, make: str, count: float, step_count: float,
                       scale: float, seed_value: float | None, request: gr.Request,
                       progress: gr.Progress = gr.Progress()) -> tuple:
        who = require_artist(instance, request)
        number = required_id(model_id, "model", "Choose one of your models (train one first).")
        try:
            config = GenerationConfig(prompt=text or "", negative=avoid or "", seed=as_id(seed_value, "seed"),
                                      steps=int(step_count), batch=int(count), lora_scale=float(scale),
                                      sheet=None if make == SINGLE else make)  # type: ignore[arg-type]
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        key = session_key(request, who.username)
        stop_event = stops.setdefault(key, threading.Event())
        stop_event.clear()
        withheld_counts: list[int] = []

        def drawn(done: int, total: int) -> None:
            progress((done, total), desc="Drawing")

        try:
            progress(0, desc="Loading the model")
            images = generation.generate(instance=instance, actor=who.username, username=who.username,
                                         model_id=number, config=config, progress=drawn, cancel=stop_event.is_set,
                                         withheld=withheld_counts.append)
        finally:
            stops.pop(key, None)  # the session's entry lives only while it generates
        progress(1, desc="Checking each output with verify")
        notes = [f"**{count} output(s) not shown: {regurgitation.FOR_ARTIST}.**" for count in withheld_counts]
        lines = [*notes, *(verification_line(instance, image) for image in images)]
        pictures = [(Image.open(io.BytesIO(image.png)), image.public_id) for image in images]
        downloads = [file_for_download(f"mimicsafe-{image.public_id}.png", image.png) for image in images]
        return pictures, "\n".join(lines), downloads

    @refusals
    def stop_generation(request: gr.Request) -> str:
        who = require_artist(instance, request)
        event = stops.get(session_key(request, who.username))
        if event is not None:
            event.set()
        return "Stopping after the current step…"

    run.click(run_generation, [prompt, negative, model, kind, batch, steps, strength, seed], [gallery, summary, files],
              api_name="artist_generate", concurrency_limit=1)
    stop.click(stop_generation, None, [summary], api_name="artist_generate_stop", queue=False)
    return Panel(outputs=[model, empty], fill=lambda who: choices_for(who.username))
