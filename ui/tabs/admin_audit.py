"""Admin tab: the audit log, filterable, with a check that its hash chain is intact."""

from __future__ import annotations

import json

import gradio as gr

from mimicsafe import audit
from mimicsafe.context import Instance
from ui import queries
from ui.guard import refusals, require_admin
from ui.markup import plain
from ui.tabs import Panel, table, when

HEADERS = ["#", "When", "Actor", "Action", "Subject", "Details"]


def build(instance: Instance) -> Panel:
    with gr.Tab("Audit log", id="admin-audit") as tab:
        with gr.Row(equal_height=False):
            action = gr.Textbox(label="Action contains", placeholder="e.g. review", min_width=160)
            actor = gr.Textbox(label="Actor", min_width=140)
            limit = gr.Number(label="Newest entries", value=200, precision=0, minimum=1, maximum=5000, min_width=120)
            refresh = gr.Button("Show", min_width=100)
            verify = gr.Button("Verify chain", variant="primary", min_width=120)
        chain = gr.Markdown()
        log_table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)

    def view(action_text: str, actor_text: str, count: float | None) -> object:
        with instance.reading() as session:
            entries = queries.audit_entries(session, action=(action_text or "").strip(),
                                            actor=(actor_text or "").strip(), limit=int(count or 200))
            rows = [[e.seq, when(e.created_at), e.actor, e.action, e.subject,
                     json.dumps(e.details, sort_keys=True, ensure_ascii=False)[:500]] for e in entries]
        return table(rows, HEADERS)

    @refusals
    def list_entries(action_text: str, actor_text: str, count: float | None, request: gr.Request) -> object:
        require_admin(instance, request)
        return view(action_text, actor_text, count)

    @refusals
    def verify_chain(request: gr.Request) -> str:
        require_admin(instance, request)
        with instance.reading() as session:
            report = audit.verify_chain(session)
        if report.ok:
            return f"**The chain is intact**: {report.entries} entries, none edited, deleted or reordered."
        return f"**The chain is BROKEN** at entry {report.first_bad_seq}: {plain(report.problem)}"

    filters = [action, actor, limit]
    refresh.click(list_entries, filters, [log_table], api_name="admin_audit_list")
    tab.select(list_entries, filters, [log_table], api_visibility="private")
    verify.click(verify_chain, None, [chain], api_name="admin_audit_verify")
    return Panel(outputs=[log_table], fill=lambda who: (view("", "", 200),))
