"""Artist tab: claim a protected work that is yours (a dispute), with evidence; follow your claims.

An artist never sees whose work it is: they name their own upload that was rejected for matching it
(`mimicsafe.trust.disputes.work_matched_by`), and an admin decides."""

from __future__ import annotations

import gradio as gr

from mimicsafe.context import Instance
from mimicsafe.trust import disputes
from ui.files import read_uploads
from ui.guard import refusals, require_artist
from ui.tabs import Panel, required_id, table, when

HEADERS = ["#", "Your upload matched work", "State", "Your note", "Evidence link", "Claimed", "Decided"]
STATE_WORDS = {"open": "waiting for an admin", "kept": "the owner keeps it",
               "transferred": "transferred to you: it is your verified work now"}

EXPLAIN = """
If one of your uploads was rejected because it **matches a protected work** that is in fact yours, claim
it here with evidence: a link to where you published it first, files (sketches, layered files), and a
note. The work stays protected while an admin compares both sides. If it is transferred to you, it
becomes your verified work and copies of it elsewhere are suspended.
"""


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Disputes", id="disputes") as tab:
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                upload_id = gr.Number(label="Your rejected upload #", precision=0, minimum=1)
                evidence = gr.Textbox(label="Evidence link", placeholder="https://… where you published it first")
                files = gr.File(label="Evidence files", file_count="multiple", type="filepath", height=110)
                note = gr.Textbox(label="Note (required): why it is yours", lines=2)
                claim = gr.Button("Claim the work", variant="primary")
                message = gr.Markdown()
            with gr.Column(min_width=320):
                empty = gr.Markdown()
                claims = gr.Dataframe(headers=HEADERS, label="Your claims", interactive=False, wrap=True)

    def view(username: str) -> tuple:
        with instance.reading() as session:
            rows = [[v.dispute.id, v.dispute.item_id, STATE_WORDS.get(v.dispute.state, v.dispute.state),
                     v.dispute.note, v.dispute.evidence_url or "", when(v.dispute.created_at),
                     when(v.dispute.decided_at)] for v in disputes.list_disputes(session=session, actor=username)]
        return table(rows, HEADERS), "" if rows else "_No claims._"

    @refusals
    def list_claims(request: gr.Request) -> tuple:
        return view(require_artist(instance, request).username)

    @refusals
    def open_claim(number: float | None, link: str, paths: list[str] | None, text: str,
                   request: gr.Request) -> tuple:
        who = require_artist(instance, request)
        upload_number = required_id(number, "upload", "Enter the number of your rejected upload.")
        if len(paths or []) > disputes.MAX_FILES:  # refused before any file is read
            raise gr.Error(f"Evidence: at most {disputes.MAX_FILES} files.")
        evidence_files = read_uploads(paths, max_bytes=settings.max_upload_bytes)
        with instance.transaction() as session:
            work_id = disputes.work_matched_by(session=session, username=who.username, upload_id=upload_number)
            row = disputes.open_dispute(session=session, blobs=instance.blobs, settings=settings, work_id=work_id,
                                        claimant=who.username, evidence_url=(link or "").strip() or None,
                                        note=text or "", files=evidence_files)
            text_out = f"Claim #{row.id} is open; an admin will compare both sides."
        return (text_out, None, "", None, "", *view(who.username))

    outputs = [claims, empty]
    claim.click(open_claim, [upload_id, evidence, files, note], [message, upload_id, evidence, files, note, *outputs],
                api_name="artist_dispute_open")
    tab.select(list_claims, None, outputs, api_name="artist_disputes_list")
    return Panel(outputs=outputs, fill=lambda who: view(who.username))
