"""Artist tab: upload images (with signature files) through the gate; verdicts in plain words."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from mimicsafe import uploads as upload_service
from mimicsafe.context import Instance
from mimicsafe.trust import suspension
from ui import queries
from ui.files import IMAGE_TYPES, read_uploads, required_uploads
from ui.guard import Caller, refusals, require_artist
from ui.images import stored_thumbnail
from ui.markup import plain
from ui.tabs import Panel, required_id, table, when
from ui.words import reason_line, review_line

HEADERS = ["#", "File", "Verdict", "Why", "What happens next", "Uploaded"]

EXPLAIN = """
Each image you upload passes the **ownership check**: it must match one of your verified portfolio
works or carry your signature (see **Keys**), and it must not match anyone else's protected work.
Accepted images become your training set. Rejected ones go to an admin, who can still accept them.
Add the signature files with the images: the `manifest.json` from `mimicsafe sign`, or a `.sig` per image.
"""


def verdict_card(payload: dict, review_state: str, *, suspended: bool = False) -> str:
    decision = payload["decision"]
    upload_id = payload.get("upload_id")
    title = f"#### {plain(payload['file'])} — {decision.upper()}" + (f" (upload #{upload_id})" if upload_id else "")
    lines = [title, *[f"- {plain(reason_line(r))}" for r in payload["reasons"]],
             f"\n**Next:** {review_line(decision, review_state, suspended=suspended)}."]
    return "\n".join(lines)


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Uploads", id="uploads") as tab:
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                images = gr.File(label="Images (PNG, JPEG, WebP)", file_count="multiple", type="filepath",
                                 file_types=IMAGE_TYPES, height=140, elem_id="upload-images")
                signatures = gr.File(label="Signature files (manifest.json or .sig)", file_count="multiple",
                                     type="filepath", file_types=[".json", ".sig"], height=110,
                                     elem_id="upload-signatures")
                submit = gr.Button("Check and upload", variant="primary", elem_id="upload-submit")
            with gr.Column(min_width=320):
                verdicts = gr.Markdown(elem_id="upload-verdicts")
                matched = gr.Gallery(label="Your works these uploads matched", columns=3, height="auto",
                                     object_fit="contain", visible=False)
        gr.Markdown("### Your uploads")
        empty = gr.Markdown()
        uploads_table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, elem_id="uploads-table")
        with gr.Row(equal_height=False):
            upload_id = gr.Number(label="Upload #", precision=0, minimum=1, min_width=120)
            show = gr.Button("Show upload", min_width=120)
        with gr.Row(equal_height=False):
            picture = gr.Image(label="Your upload", type="pil", interactive=False, height=320)
            match_picture = gr.Image(label="What it matched", type="pil", interactive=False, height=320)
            detail = gr.Markdown()

    def view(username: str) -> tuple:
        with instance.reading() as session:
            mine = queries.my_uploads(session, username)
            states = upload_service.review_states(session, mine)
            rows = [[u.id, u.file_name, "suspended" if u.suspended_at else u.decision,
                     "; ".join(reason_line(r) for r in u.verdict["reasons"]),
                     review_line(u.decision, states[u.id], suspended=u.suspended_at is not None), when(u.created_at)]
                    for u in mine]
        hint = "" if rows else "_No uploads yet. Sign your images (see **Keys**) and drop them above._"
        return table(rows, HEADERS), hint

    def pictures_of_matches(who: Caller, payloads: list[dict]) -> list[tuple[Image.Image, str]]:
        shown = []
        with instance.reading() as session:
            for payload in payloads:
                for match in payload["matches"]:
                    seen = queries.match_view(session, match, viewer=who.username, viewer_is_admin=False)
                    if seen.picture_sha256 is None:
                        continue
                    image = stored_thumbnail(instance.blobs, seen.picture_sha256, settings)
                    if image is not None:
                        shown.append((image, f"{payload['file']}: {seen.caption}"))
        return shown

    @refusals
    def list_uploads(request: gr.Request) -> tuple:
        return view(require_artist(instance, request).username)

    @refusals
    def submit_uploads(image_paths: list[str] | None, signature_paths: list[str] | None, request: gr.Request,
                       progress: gr.Progress = gr.Progress()) -> tuple:
        who = require_artist(instance, request)
        files = required_uploads(image_paths, max_bytes=settings.max_upload_bytes,
                                 missing="Choose one or more images to upload.")
        sigs = read_uploads(signature_paths, max_bytes=settings.max_upload_bytes)
        with instance.reading() as session:  # the whole batch, before the first file is judged
            upload_service.require_upload_allowance(session, settings, who.username, len(files))
        payloads, cards = [], []
        for file in progress.tqdm(files, desc="Checking ownership"):
            # One file, one transaction: a crash loses nothing done. The gate runs before the write lock.
            (outcome,) = upload_service.upload(instance=instance, username=who.username, files=[file],
                                               signatures=sigs)
            payload = outcome.to_json()
            payloads.append(payload)
            cards.append(verdict_card(payload, outcome.review_state))
        shown = pictures_of_matches(who, payloads)
        return ("\n\n".join(cards), gr.update(value=shown, visible=bool(shown)), None, None, *view(who.username))

    @refusals
    def show_upload(number: float | None, request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        upload_number = required_id(number, "upload", "Enter the number of one of your uploads.")
        with instance.reading() as session:
            upload = queries.my_upload(session, who.username, upload_number)
            payload = {**upload.verdict, "upload_id": upload.id}
            state = upload_service.review_states(session, [upload])[upload.id]
            lines = [verdict_card(payload, state, suspended=upload.suspended_at is not None)]
            later = suspension.for_artist(session, upload.id)  # general words only: never whose work
            if later is not None:
                lines.append(f"\n**Since then:** {plain(later['message'])}.")
            match_image, captions = None, []
            for match in upload.verdict.get("matches", []):
                seen = queries.match_view(session, match, viewer=who.username, viewer_is_admin=False)
                captions.append(f"- {plain(seen.caption)}" if seen.caption == queries.PROTECTED
                                else f"- matched {plain(seen.caption)}")
                if match_image is None and seen.picture_sha256 is not None:
                    match_image = stored_thumbnail(instance.blobs, seen.picture_sha256, settings)
            decisions = [f"- {when(d.created_at)}: {'accepted' if d.action == 'approve' else 'rejection kept'}"
                         for d, _admin in queries.decisions_for(session, upload.repeat_of_id or upload.id)]
            sha256 = upload.sha256
        if captions:
            lines += ["\n**Matches**", *sorted(set(captions))]
        if decisions:
            lines += ["\n**Review decisions**", *decisions]
        return stored_thumbnail(instance.blobs, sha256, settings), match_image, "\n".join(lines)

    outputs = [uploads_table, empty]
    submit.click(submit_uploads, [images, signatures], [verdicts, matched, images, signatures, *outputs],
                 api_name="artist_uploads_submit")
    show.click(show_upload, [upload_id], [picture, match_picture, detail], api_name="artist_upload_show")
    tab.select(list_uploads, None, outputs, api_name="artist_uploads_list")
    return Panel(outputs=outputs, fill=lambda who: view(who.username))
