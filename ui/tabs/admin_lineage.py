"""Admin tab: lineage — from a work, upload, dataset, model or generation, everything upstream and
downstream with its state (`mimicsafe.trust.lineage`)."""

from __future__ import annotations

import gradio as gr

from mimicsafe.context import Instance
from mimicsafe.trust.lineage import KINDS, lineage
from ui.guard import refusals, require_admin
from ui.tabs import Panel, required_id, table

HEADERS = ["Step", "State", "What", "Built on"]


def build(instance: Instance) -> Panel:
    with gr.Tab("Lineage", id="admin-lineage"):
        gr.Markdown("What did this image touch? Start anywhere: the chain is shown both ways, "
                    "work → upload → dataset → model → generation, with the state of each step.")
        with gr.Row(equal_height=False):
            kind = gr.Dropdown(list(KINDS), value="upload", label="Start from", min_width=160)
            number = gr.Number(label="#", precision=0, minimum=1, min_width=120)
            show = gr.Button("Show lineage", variant="primary", min_width=140)
        summary = gr.Markdown()
        steps = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)

    @refusals
    def show_lineage(kind_value: str, item: float | None, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        item_id = required_id(item, kind_value, "Enter the number to start from.")
        with instance.reading() as session:
            found = lineage(session=session, admin=who.username, kind=kind_value, item_id=item_id).to_json()
        ups: dict[str, list[str]] = {}
        for edge in found["edges"]:
            ups.setdefault(edge["to"], []).append(edge["from"])
        rows = [[f"{n['kind']} #{n['id']}", n["state"], n["label"],
                 ", ".join(ups.get(f"{n['kind']}:{n['id']}", []))] for n in found["nodes"]]
        flagged = sum(1 for n in found["nodes"] if n["state"].startswith(("suspended", "tainted", "from a suspended")))
        text = f"**{found['subject']}**: {len(rows)} step(s) in its lineage, {flagged} suspended or tainted."
        return text, table(rows, HEADERS)

    show.click(show_lineage, [kind, number], [summary, steps], api_name="admin_lineage_show")
    return Panel(outputs=[], fill=lambda who: [])
