"""Admin tab: disputes — the claim beside the owner's evidence and work; keep or transfer, with a note."""

from __future__ import annotations

from typing import Any

import gradio as gr

from mimicsafe.context import Instance
from mimicsafe.trust import disputes, rescan
from ui.guard import refusals, require_admin
from ui.images import stored_thumbnail
from ui.tabs import Panel, as_id, required_id, table, when

HEADERS = ["#", "Work", "Owner", "Claimant", "State", "Claimed"]
SIDES = ["", "Claimant", "Owner"]


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Disputes", id="admin-disputes") as tab:
        empty = gr.Markdown()
        listing = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)
        item = gr.Dropdown(label="Dispute", choices=[], allow_custom_value=True)
        with gr.Row(equal_height=False):
            work_picture = gr.Image(label="The work (owner's verified copy)", type="pil", interactive=False,
                                    height=320)
            claim_picture = gr.Image(label="The claimant's first evidence file", type="pil", interactive=False,
                                     height=320)
        sides = gr.Dataframe(headers=SIDES, label="Both sides", interactive=False, wrap=True)
        note = gr.Textbox(label="Note (required; audited)", lines=2)
        with gr.Row():
            keep = gr.Button("Keep with the owner", variant="secondary")
            transfer = gr.Button("Transfer to the claimant", variant="stop")
        message = gr.Markdown()

    def view(admin: str) -> tuple:
        with instance.reading() as session:
            found = disputes.list_disputes(session=session, actor=admin)
            rows = [[v.dispute.id, v.dispute.item_id, v.owner, v.claimant, v.dispute.state, when(v.dispute.created_at)]
                    for v in found]
            choices = [(f"#{v.dispute.id} work #{v.dispute.item_id} ({v.dispute.state})", v.dispute.id) for v in found]
        return table(rows, HEADERS), gr.update(choices=choices, value=None), "" if rows else "_No disputes._"

    @refusals
    def list_all(request: gr.Request) -> tuple:
        return view(require_admin(instance, request).username)

    @refusals
    def show(number: Any, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        dispute_id = as_id(number, "dispute")
        if dispute_id is None:
            return None, None, table([], SIDES)
        with instance.reading() as session:
            found = disputes.show_dispute(session=session, actor=who.username, dispute_id=dispute_id)
            d = found.to_json(for_admin=True)
        claim, work = d["claim"], d["work"]
        rows = [["who", d["claimant"], d["owner"]],
                ["evidence link", claim["evidence_url"] or "", work["evidence_url"] or ""],
                ["note", claim["note"], work["note"] or ""],
                ["when", f"claimed {claim['at']}", f"submitted {work['submitted_at']}, verified {work['verified_at']}"],
                ["files", ", ".join(f"{f['name']} ({f['bytes']} bytes)" for f in claim["files"]), work["file"]],
                ["state", d["state"], d["decision_note"]]]
        first = claim["files"][0]["sha256"] if claim["files"] else None
        return (stored_thumbnail(instance.blobs, work["sha256"], settings),
                stored_thumbnail(instance.blobs, first, settings) if first else None, table(rows, SIDES))

    def decide(number: Any, text: str, request: gr.Request, action: str) -> tuple:
        who = require_admin(instance, request)
        dispute_id = required_id(number, "dispute", "Choose a dispute first.")
        with instance.transaction() as session:
            done = disputes.decide(session=session, admin=who.username, dispute_id=dispute_id, action=action,  # type: ignore[arg-type]
                                   note=text or "")
            state = done.dispute.state
        if state == "transferred":
            rescan.start(instance)  # after the commit: the former owner's copies are re-scanned
        return (f"Dispute #{dispute_id}: {state}.", "", *view(who.username))

    @refusals
    def keep_work(number: Any, text: str, request: gr.Request) -> tuple:
        return decide(number, text, request, "keep")

    @refusals
    def transfer_work(number: Any, text: str, request: gr.Request) -> tuple:
        return decide(number, text, request, "transfer")

    outputs = [listing, item, empty]
    tab.select(list_all, None, outputs, api_name="admin_disputes_list")
    item.change(show, [item], [work_picture, claim_picture, sides], api_name="admin_dispute_show")
    keep.click(keep_work, [item, note], [message, note, *outputs], api_name="admin_dispute_keep")
    transfer.click(transfer_work, [item, note], [message, note, *outputs], api_name="admin_dispute_transfer")
    return Panel(outputs=outputs, fill=lambda who: view(who.username))
