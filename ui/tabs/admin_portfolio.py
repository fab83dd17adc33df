"""Admin tab: the portfolio verification queue — evidence, works, approve or deny with a note."""

from __future__ import annotations

import gradio as gr

from mimicsafe import portfolio as portfolio_service
from mimicsafe.context import Instance
from mimicsafe.trust import rescan
from ui import queries
from ui.guard import refusals, require_admin
from ui.images import stored_thumbnail
from ui.markup import plain
from ui.tabs import Panel, as_id, required_id, table, when

HEADERS = ["#", "Artist", "File", "Evidence", "Submitted"]
GALLERY_LIMIT = 48


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Portfolio queue", id="admin-portfolio") as tab:
        gr.Markdown("Works artists claim as theirs. **Verify** only when the evidence shows the artist "
                    "published the work first: verified works prove the artist's uploads and are protected "
                    "for everyone. A work that matches someone else's verified work is never verified.")
        empty = gr.Markdown()
        queue_table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)
        gallery = gr.Gallery(label="Pending works", columns=6, height="auto", object_fit="contain")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                item = gr.Dropdown(label="Work", choices=[], allow_custom_value=True)
                evidence = gr.Markdown()
                note = gr.Textbox(label="Note (what you checked; required to deny)", lines=2)
                with gr.Row():
                    approve = gr.Button("Verify", variant="primary", min_width=100)
                    deny = gr.Button("Deny", variant="stop", min_width=100)
                message = gr.Markdown()
            picture = gr.Image(label="The work", type="pil", interactive=False, height=360, min_width=320)

    def view() -> tuple:
        with instance.reading() as session:
            pending = queries.pending_portfolio(session)
            rows = [[i.id, artist, i.file_name, i.evidence_url or "(none given)", when(i.submitted_at)]
                    for i, artist in pending]
            choices = [(f"#{i.id} {artist} — {i.file_name}", i.id) for i, artist in pending]
            thumbs = [(i.sha256, f"#{i.id} {artist}") for i, artist in pending[:GALLERY_LIMIT]]
        # Decoded after the session closes: no transaction held while images are read and resized.
        pictures = [(stored_thumbnail(instance.blobs, sha, settings, 256), caption) for sha, caption in thumbs]
        hint = "" if pending else "_Nothing to verify. New portfolio submissions appear here._"
        shown = [p for p in pictures if p[0] is not None]
        return table(rows, HEADERS), shown, gr.update(choices=choices, value=None), hint

    @refusals
    def list_queue(request: gr.Request) -> tuple:
        require_admin(instance, request)
        return view()

    @refusals
    def show_item(item_id: int | None, request: gr.Request) -> tuple:
        require_admin(instance, request)
        number = as_id(item_id, "work")
        if number is None:
            return None, ""
        with instance.reading() as session:
            work, artist = queries.portfolio_item(session, number)
            history = queries.artist_history(session, artist)
            evidence = plain(work.evidence_url) if work.evidence_url else "_none given_"
            text = (f"**#{work.id} {plain(work.file_name)}** by **{plain(artist)}**, submitted "
                    f"{when(work.submitted_at)} — status {plain(work.status)}\n\nEvidence: {evidence}\n\n"
                    f"Artist so far: {history.verified_works} verified work(s), {history.uploads} upload(s) "
                    f"({history.accepted} accepted, {history.rejected} rejected).")
            sha256 = work.sha256
        return stored_thumbnail(instance.blobs, sha256, settings), text

    def decide(item_id: int | None, note: str, request: gr.Request, *, verify: bool) -> tuple:
        who = require_admin(instance, request)
        number = required_id(item_id, "work", "Choose a work first.")
        with instance.transaction() as session:
            work, artist = queries.portfolio_item(session, number)
            if verify:
                verified, refused = portfolio_service.verify_items(
                    session=session, registry=instance.registry, username=artist, admin=who.username,
                    note=note or "", item_ids=[work.id])
                text = (f"Verified #{work.id}: it is now protected; the accepted uploads are re-scanned "
                        "against it in the background." if verified else
                        "Not verified: " + "; ".join(plain(why) for _, why in refused) if refused else
                        f"#{work.id} is not pending any more.")
            else:
                denied = portfolio_service.deny_items(session=session, username=artist, admin=who.username,
                                                      note=note or "", item_ids=[work.id])
                text = f"Denied #{work.id}." if denied else f"#{work.id} is not pending any more."
        if verify:
            rescan.start(instance)  # after the commit; the page does not wait for it
        return (text, "", None, "", *view())

    @refusals
    def verify_item(item_id: int | None, note: str, request: gr.Request) -> tuple:
        return decide(item_id, note, request, verify=True)

    @refusals
    def deny_item(item_id: int | None, note: str, request: gr.Request) -> tuple:
        return decide(item_id, note, request, verify=False)

    outputs = [queue_table, gallery, item, empty]
    after = [message, note, picture, evidence, *outputs]
    item.change(show_item, [item], [picture, evidence], api_name="admin_portfolio_show")
    approve.click(verify_item, [item, note], after, api_name="admin_portfolio_verify")
    deny.click(deny_item, [item, note], after, api_name="admin_portfolio_deny")
    tab.select(list_queue, None, outputs, api_name="admin_portfolio_queue")
    return Panel(outputs=outputs, fill=lambda who: view())
