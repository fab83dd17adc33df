"""Artist tab: train a style model on the accepted uploads; follow the job; manage the models.

Training runs in a worker (`mimicsafe serve` runs one beside the app, or `mimicsafe worker`); this tab
queues jobs and shows what the job's record says, refreshing every few seconds while a job is active.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from mimicsafe.accounts import get_user
from mimicsafe.context import Instance
from mimicsafe.training import service as training
from mimicsafe.training.config import PRESET_NAMES
from mimicsafe.trust.retrain import retrain_without_suspended
from mimicsafe.uploads import eligible_uploads
from ui.files import file_for_download
from ui.guard import refusals, require_artist
from ui.images import stored_thumbnail
from ui.markup import html_text
from ui.tabs import Panel, as_id, required_id, table, when

MODEL_HEADERS = ["#", "Name", "Dataset manifest (SHA-256)", "Images", "Trained", "State"]
REFRESH_SECONDS = 2.0


def progress_html(view: training.JobView | None) -> str:
    """A job's state in words, with a progress bar while it runs."""
    if view is None:
        return "<p>No training yet. Start one above once some uploads are accepted.</p>"
    job = view.job
    words = {"queued": f"waiting in the queue (position {view.queue_position})",
             "running": f"training — step {job.step} of {job.total_steps}",
             "completed": f"finished: model #{view.model_id}" if view.model_id else "finished",
             "failed": f"failed: {job.error or 'see the worker log'}",
             "cancelled": f"cancelled at step {job.step}"}.get(job.status, job.status)
    parts = [f"<p><b>Job #{job.id}</b> ({html_text(job.preset)}): {html_text(words)}"]
    if job.status == "running":
        if job.loss is not None:
            parts.append(f" · loss {job.loss:.4f}")
        if job.eta_seconds:
            parts.append(f" · about {max(1, round(job.eta_seconds / 60))} min left")
        if job.cancel_requested:
            parts.append(" · stopping after this step")
    parts.append("</p>")
    if job.status in ("queued", "running"):
        parts.append(f'<progress value="{job.step}" max="{max(job.total_steps, 1)}" style="width:100%"></progress>')
    return "".join(parts)


def build(instance: Instance) -> Panel:
    settings = instance.settings
    queue: list[Any] = []  # the job queue, made on first use (the same storage the worker reads)

    def job_queue() -> Any:
        if not queue:
            from mimicsafe.jobs import build_queue

            queue.append(build_queue(instance))
        return queue[0]

    default_preset = "tiny" if settings.uses_demo_model else settings.base_model_kind
    with gr.Tab("Training", id="training") as tab:
        eligible = gr.Markdown()
        with gr.Row(equal_height=False):
            preset = gr.Dropdown(list(PRESET_NAMES), value=default_preset, label="Preset", min_width=140)
            steps = gr.Number(label="Steps (empty: the preset's)", precision=0, minimum=1, min_width=140)
            start = gr.Button("Start training", variant="primary", min_width=140)
        job_id = gr.Number(label="Job #", precision=0, interactive=False, visible=False)
        status = gr.HTML(elem_id="training-status")
        samples = gr.Gallery(label="Samples so far", columns=4, height="auto", object_fit="contain")
        cancel = gr.Button("Cancel training", variant="stop")
        timer = gr.Timer(REFRESH_SECONDS, active=False)
        gr.Markdown("### Your models")
        models_empty = gr.Markdown()
        models_table = gr.Dataframe(headers=MODEL_HEADERS, interactive=False, wrap=True)
        with gr.Row(equal_height=False):
            model = gr.Dropdown(label="Model", choices=[], allow_custom_value=True, min_width=160)
            fmt = gr.Radio(["diffusers", "kohya"], value="diffusers", label="Format", min_width=200)
            download = gr.Button("Download", min_width=120)
            delete = gr.Button("Delete model", variant="stop", min_width=120)
            retrain = gr.Button("Retrain without suspended uploads", min_width=160)
        exported = gr.File(label="Download", interactive=False)
        message = gr.Markdown()

    def job_state(username: str, number: int | None) -> tuple[tuple, bool]:
        """The job outputs (the newest job when `number` is None), and whether the job is still active."""
        with instance.reading() as session:
            if number is None:
                view = training.latest_job(session=session, username=username, actor=username)
            else:
                view = training.get_job(session=session, job_id=number, actor=username)
            shas = view.sample_sha256s if view else []
            active = view is not None and view.job.status in training.ACTIVE
            result_id = view.job.id if view else None
            text = progress_html(view)
        pictures = [(stored_thumbnail(instance.blobs, sha, settings), f"sample {i + 1}") for i, sha in enumerate(shas)]
        return (result_id, text, [p for p in pictures if p[0] is not None], gr.Timer(active=active)), active

    def job_view(username: str, number: int | None) -> tuple:
        return job_state(username, number)[0]

    def models_view(username: str) -> tuple:
        with instance.reading() as session:
            models = training.list_models(session=session, username=username, actor=username)
            states = training.model_states(session=session, models=models)
            rows = [[m.id, m.name, m.provenance.get("mimicsafe.dataset_manifest_sha256", ""),
                     m.provenance.get("mimicsafe.item_count", ""), when(m.created_at), states[m.id]] for m in models]
            choices = [(f"#{m.id} {m.name}", m.id) for m in models]
            user = get_user(session=session, username=username)
            count = len(eligible_uploads(session=session, user_id=user.id))
        hint = "" if rows else "_No models yet. When a training finishes, its model appears here._"
        ready = (f"**{count}** accepted upload(s) are ready to train on." if count else
                 "_No accepted uploads yet: upload your signed or portfolio-verified images on **Uploads** first._")
        return table(rows, MODEL_HEADERS), gr.update(choices=choices), hint, ready

    def everything(username: str) -> tuple:
        return (*job_view(username, None), *models_view(username))

    @refusals
    def show_training(request: gr.Request) -> tuple:
        return everything(require_artist(instance, request).username)

    @refusals
    def show_job(number: float | None, request: gr.Request) -> tuple:
        """The timer's tick: the job every time; the models only on the tick where the job stops (the
        timer turns itself off then), so an active job does not reload them every few seconds."""
        who = require_artist(instance, request)
        job, still_active = job_state(who.username, as_id(number, "job"))
        models = [gr.skip() for _ in model_outputs] if still_active else models_view(who.username)
        return (*job, *models)

    @refusals
    def start_training(preset_name: str, step_count: float | None, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        job = training.submit_training(instance=instance, queue=job_queue(), username=who.username,
                                       actor=who.username, preset=preset_name, steps=as_id(step_count, "steps"))
        return (f"Training job #{job.id} is queued.", *job_view(who.username, job.id))

    @refusals
    def cancel_training(number: float | None, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        job_number = required_id(number, "job", "There is no training to cancel.")
        with instance.transaction() as session:
            training.cancel_job(session=session, job_id=job_number, actor=who.username)
        return (f"Job #{job_number}: cancel requested.", *job_view(who.username, job_number))

    @refusals
    def download_model(model_id: Any, key_format: str, request: gr.Request) -> str:
        who = require_artist(instance, request)
        number = required_id(model_id, "model", "Choose a model.")
        name, data = training.export_model(instance=instance, model_id=number, actor=who.username, fmt=key_format)  # type: ignore[arg-type]
        return file_for_download(name, data)

    @refusals
    def delete_model(model_id: Any, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        number = required_id(model_id, "model", "Choose a model.")
        with instance.transaction() as session:
            training.delete_model(session=session, model_id=number, actor=who.username)
        return (f"Model #{number} deleted.", None, *models_view(who.username))

    @refusals
    def retrain_model(model_id: Any, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        number = required_id(model_id, "model", "Choose a suspended model.")
        job = retrain_without_suspended(instance=instance, queue=job_queue(), model_id=number, actor=who.username)
        return (f"Training job #{job.id} is queued: model #{number} again, without its suspended uploads.",
                *job_view(who.username, job.id))

    job_outputs = [job_id, status, samples, timer]
    model_outputs = [models_table, model, models_empty, eligible]
    start.click(start_training, [preset, steps], [message, *job_outputs], api_name="artist_training_start")
    cancel.click(cancel_training, [job_id], [message, *job_outputs], api_name="artist_training_cancel")
    timer.tick(show_job, [job_id], [*job_outputs, *model_outputs], api_name="artist_training_job",
               show_progress="hidden")
    download.click(download_model, [model, fmt], [exported], api_name="artist_model_download")
    delete.click(delete_model, [model], [message, exported, *model_outputs], api_name="artist_model_delete")
    retrain.click(retrain_model, [model], [message, *job_outputs], api_name="artist_model_retrain")
    tab.select(show_training, None, [*job_outputs, *model_outputs], api_name="artist_training_list")
    return Panel(outputs=[*job_outputs, *model_outputs], fill=lambda who: everything(who.username))
