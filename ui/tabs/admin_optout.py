"""Admin tab: the do-not-train registry — add works (their fingerprints), import hash lists."""

from __future__ import annotations

import gradio as gr

from mimicsafe import optout as optout_service
from mimicsafe.context import Instance
from mimicsafe.trust import rescan
from ui import queries
from ui.files import IMAGE_TYPES, read_uploads, required_uploads
from ui.guard import refusals, require_admin
from ui.tabs import Panel, table, when

HEADERS = ["#", "SHA-256", "PDQ", "Source", "Added"]
MAX_HASH_LIST_BYTES = 16 * 1024 * 1024

EXPLAIN = """
Works whose authors asked that they never be used for training — they need not use MimicSafe. Only
fingerprints are kept, never the images. A **SHA-256** catches the identical file; a **PDQ** hash (and
an added file) also catches resized, recoloured and re-encoded copies. Hash lists hold one
`sha256:<64 hex>` or `pdq:<64 hex>` per line; `#` starts a comment.
"""


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Opt-out registry", id="admin-optout") as tab:
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                files = gr.File(label="Works to protect", file_count="multiple", type="filepath",
                                file_types=IMAGE_TYPES, height=140)
                file_source = gr.Textbox(label="Source (who asked, how to reach them)")
                add = gr.Button("Add to registry", variant="primary")
            with gr.Column(min_width=320):
                hash_file = gr.File(label="Hash list file", type="filepath", file_types=[".txt", ".csv"])
                hash_text = gr.Textbox(label="…or paste hashes", lines=4)
                list_source = gr.Textbox(label="Source of the list")
                do_import = gr.Button("Import hashes", variant="primary")
        message = gr.Markdown()
        summary = gr.Markdown()
        registry_table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)

    def view() -> tuple:
        with instance.reading() as session:
            total, items = queries.optout_items(session)
            rows = [[i.id, i.sha256 or "", (i.pdq or b"").hex(), i.source, when(i.created_at)] for i in items]
        text = (f"**{total}** work(s) registered" + (f"; showing the newest {len(items)}" if total > len(items) else "")
                if total else "_The registry is empty. Add works or import a hash list above._")
        return text, table(rows, HEADERS)

    @refusals
    def list_registry(request: gr.Request) -> tuple:
        require_admin(instance, request)
        return view()

    @refusals
    def add_files(paths: list[str] | None, source: str, request: gr.Request,
                  progress: gr.Progress = gr.Progress()) -> tuple:
        who = require_admin(instance, request)
        uploaded = required_uploads(paths, max_bytes=settings.max_upload_bytes, missing="Choose the works to add.")
        progress(0, desc="Fingerprinting")
        with instance.transaction() as session:
            count = len(optout_service.add_files(session=session, settings=settings, files=uploaded,
                                                 source=(source or "").strip(), actor=who.username))
        rescan.start(instance)  # after the commit: the accepted uploads are checked in the background
        return (f"Added {count} work(s) to the do-not-train registry; the accepted uploads are re-scanned "
                "against them in the background.", None, *view())

    @refusals
    def import_hashes(path: str | None, text: str, source: str, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        uploaded = read_uploads(path, max_bytes=MAX_HASH_LIST_BYTES)
        content = uploaded[0].data.decode("utf-8", errors="replace") if uploaded else (text or "")
        label = (source or "").strip() or (uploaded[0].name if uploaded else "pasted list")
        with instance.transaction() as session:
            count = len(optout_service.import_hashes(session=session, text=content, source=label, actor=who.username))
        rescan.start(instance)
        return (f"Imported {count} hash(es); the accepted uploads are re-scanned against them in the background.",
                None, "", *view())

    outputs = [summary, registry_table]
    add.click(add_files, [files, file_source], [message, files, *outputs], api_name="admin_optout_add")
    do_import.click(import_hashes, [hash_file, hash_text, list_source], [message, hash_file, hash_text, *outputs],
                    api_name="admin_optout_import")
    tab.select(list_registry, None, outputs, api_name="admin_optout_list")
    return Panel(outputs=outputs, fill=lambda who: view())
