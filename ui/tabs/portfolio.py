"""Artist tab: submit works with evidence for an admin to verify; see each work's status."""

from __future__ import annotations

import gradio as gr

from mimicsafe import portfolio as portfolio_service
from mimicsafe.context import Instance
from ui import queries
from ui.files import IMAGE_TYPES, required_uploads
from ui.guard import refusals, require_artist
from ui.images import stored_thumbnail
from ui.tabs import Panel, table, when

HEADERS = ["#", "File", "Status", "Evidence", "Submitted", "Admin's note"]
STATUS_WORDS = {"pending": "waiting for an admin", "verified": "verified — protected", "denied": "denied"}
GALLERY_LIMIT = 24

EXPLAIN = """
Works you **first published elsewhere** prove your other uploads and, once an admin has verified them,
are **protected for everyone**: nobody else can train on them, even cropped, recoloured or re-encoded.
Give a link to where each work was first published (your site, a post, a shop page) so the admin can check.
"""


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Portfolio", id="portfolio") as tab:
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                files = gr.File(label="Works (PNG, JPEG, WebP)", file_count="multiple", type="filepath",
                                file_types=IMAGE_TYPES, height=140)
                evidence = gr.Textbox(label="Evidence link", placeholder="https://… where they were first published")
                submit = gr.Button("Submit for verification", variant="primary")
                message = gr.Markdown()
            with gr.Column(min_width=320):
                empty = gr.Markdown()
                items_table = gr.Dataframe(headers=HEADERS, label="Your portfolio", interactive=False, wrap=True)
                gallery = gr.Gallery(label="Your works", columns=4, height="auto", object_fit="contain")

    def view(username: str) -> tuple:
        with instance.reading() as session:
            items = queries.my_portfolio(session, username)
            rows = [[i.id, i.file_name, STATUS_WORDS.get(i.status, i.status), i.evidence_url or "",
                     when(i.submitted_at), i.note] for i in items]
            shown = [(i.sha256, f"#{i.id} {i.file_name}") for i in items[:GALLERY_LIMIT]]
        # Decoded after the session closes, as training's job view does: no transaction held meanwhile.
        pictures = [(stored_thumbnail(instance.blobs, sha, settings), caption) for sha, caption in shown]
        hint = "" if items else "_No works yet. Add a few of your published works on the left._"
        return table(rows, HEADERS), [p for p in pictures if p[0] is not None], hint

    @refusals
    def list_items(request: gr.Request) -> tuple:
        return view(require_artist(instance, request).username)

    @refusals
    def submit_items(paths: list[str] | None, link: str, request: gr.Request,
                     progress: gr.Progress = gr.Progress()) -> tuple:
        who = require_artist(instance, request)
        uploaded = required_uploads(paths, max_bytes=settings.max_upload_bytes,
                                    missing="Choose one or more works to submit.")
        progress(0, desc="Fingerprinting your works")
        with instance.transaction() as session:
            items = portfolio_service.add_items(session=session, blobs=instance.blobs, settings=settings,
                                                username=who.username, files=uploaded,
                                                evidence_url=(link or "").strip() or None, actor=who.username)
            count = len(items)
        progress(1)
        return (f"Submitted {count} work(s). An admin will check the evidence and verify them.",
                None, *view(who.username))

    outputs = [items_table, gallery, empty]
    submit.click(submit_items, [files, evidence], [message, files, *outputs], api_name="artist_portfolio_submit")
    tab.select(list_items, None, outputs, api_name="artist_portfolio_list")
    return Panel(outputs=outputs, fill=lambda who: view(who.username))
