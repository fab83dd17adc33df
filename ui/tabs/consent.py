"""Artist tab: withdraw consent — delete uploads, models, generated images and caches."""

from __future__ import annotations

import gradio as gr

from mimicsafe import consent
from mimicsafe.context import Instance
from ui.guard import refusals, require_artist
from ui.tabs import Panel

EXPLAIN = """
### Withdraw consent

This **deletes** everything MimicSafe keeps of your training material: your uploaded images, your
trained models (with their samples and checkpoints), the images you generated, and the training
caches; it cancels any training still queued or running. It cannot be undone,
and you can no longer upload with this account.

**What stays:** the audit log's facts (what was uploaded and decided, by hashes — never the images);
the records of generated images, so copies are still recognised as AI-generated; and your **verified
portfolio**, which keeps protecting your work from everybody else (ask an admin if you want it removed).
"""


def build(instance: Instance) -> Panel:
    with gr.Tab("Consent", id="consent"):
        gr.Markdown(EXPLAIN)
        status = gr.Markdown()
        understood = gr.Checkbox(label="I understand that this deletes my uploads and models for good")
        typed = gr.Textbox(label="Type your username to confirm", max_lines=1)
        withdraw = gr.Button("Withdraw consent and delete", variant="stop")
        message = gr.Markdown()

    @refusals
    def withdraw_consent(confirmed: bool, confirmation: str, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        if not confirmed:
            raise gr.Error("Tick the box to confirm that you understand.", print_exception=False)
        done = consent.withdraw_consent(instance=instance, username=who.username, actor=who.username,
                                        confirmation=confirmation or "")
        summary = (f"Consent withdrawn. Deleted {done.uploads_deleted} upload(s), {done.models_deleted} model(s) "
                   f"and the images of {done.generations_deleted} generation(s); cancelled {done.jobs_cancelled} "
                   f"training job(s); removed {done.files_deleted} stored file(s) and {done.cache_entries_deleted} "
                   "cache entries.")
        return summary, False, "", status_line(True)

    withdraw.click(withdraw_consent, [understood, typed], [message, understood, typed, status],
                   api_name="artist_consent_withdraw")
    return Panel(outputs=[status], fill=lambda who: (status_line(who.consent_withdrawn),))


def status_line(withdrawn: bool) -> str:
    return ("**You have withdrawn consent.** Your material is deleted and uploads are closed; running the "
            "withdrawal again removes anything left behind." if withdrawn else
            "You currently consent to training on the works you upload.")
