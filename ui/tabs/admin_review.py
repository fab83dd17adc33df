"""Admin tab: the review queue of rejected uploads (and of accepted ones a re-scan suspended) — side by
side with what they matched; uphold or override with a required note."""

from __future__ import annotations

import gradio as gr

from mimicsafe import review as review_service
from mimicsafe.context import Instance
from mimicsafe.errors import MimicSafeError
from ownership import reasons
from ownership.signals import read_signals
from ui import queries
from ui.guard import refusals, require_admin
from ui.images import stored_thumbnail, thumbnail
from ui.markup import plain
from ui.tabs import Panel, as_id, required_id, table, when

HEADERS = ["#", "Artist", "File", "Reasons", "Best match", "State", "Uploaded", "Times sent"]
STATES = ["pending", "upheld", "overridden", "all"]
SORTS = ["oldest first", "newest first", "artist"]
ANY_REASON = "any reason"


def signature_status(verdict: dict) -> str:
    found = {r["code"]: r["detail"] for r in verdict.get("reasons", [])}
    for code, label in ((reasons.VALID_SIGNATURE, "valid"), (reasons.KEY_REVOKED, "signed with a revoked key"),
                        (reasons.BAD_SIGNATURE, "does not verify")):
        if code in found:
            return f"{label} — {plain(found[code])}"
    return "no signature given"


def code_of(reason: dict) -> str:
    """A reason's code for a code span: one of the gate's stable names (anything else is not shown as is)."""
    code = str(reason.get("code", ""))
    return code if code in reasons.ALL_REASONS else "unknown"


def best_match(verdict: dict) -> str:
    matches = verdict.get("matches", [])
    if not matches:
        return ""
    m = matches[0]
    return (f"{m['owner']} ({m['method']}, {m['score']:g}, {m.get('kind', 'copy')})"
            + (f" +{len(matches) - 1}" if len(matches) > 1 else ""))


def build(instance: Instance) -> Panel:
    settings = instance.settings
    with gr.Tab("Review queue", id="admin-review") as tab:
        with gr.Row(equal_height=False):
            state = gr.Dropdown(STATES, value="pending", label="State", min_width=140)
            reason = gr.Dropdown([ANY_REASON, *reasons.REJECT_REASONS, *reasons.SUSPEND_REASONS], value=ANY_REASON,
                                 label="Reason", min_width=180)
            order = gr.Dropdown(SORTS, value="oldest first", label="Sort", min_width=140)
            refresh = gr.Button("Refresh", min_width=100)
        empty = gr.Markdown()
        queue_table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)
        item = gr.Dropdown(label="Upload to review", choices=[], allow_custom_value=True)
        with gr.Row(equal_height=False):
            upload_picture = gr.Image(label="The upload", type="pil", interactive=False, height=360, min_width=280)
            match_picture = gr.Image(label="The registered work it matched", type="pil", interactive=False,
                                     height=360, min_width=280)
        evidence = gr.Markdown()
        with gr.Row(equal_height=False):
            with gr.Column(min_width=320):
                note = gr.Textbox(label="Note (required: why; it goes into the audit log, the artist sees "
                                        "only the decision)", lines=2)
                override_match = gr.Checkbox(label="I compared the match and still accept it (needed to override "
                                                   "a match with protected work)")
            with gr.Column(min_width=200):
                uphold = gr.Button("Uphold rejection", variant="stop")
                override = gr.Button("Override: accept for training", variant="secondary")
                message = gr.Markdown()

    def view(state_value: str, reason_value: str, order_value: str, admin: str) -> tuple:
        with instance.reading() as session:
            items = review_service.list_items(session=session, admin=admin,
                                              state=None if state_value == "all" else state_value)  # type: ignore[arg-type]
            if reason_value and reason_value != ANY_REASON:
                items = [i for i in items if reason_value in i.reason_codes]
            if order_value == "newest first":
                items.reverse()
            elif order_value == "artist":
                items.sort(key=lambda i: (i.artist, i.upload.id))
            rows = [[i.upload.id, i.artist, i.upload.file_name,
                     ", ".join(i.reason_codes), best_match(i.upload.verdict),
                     i.upload.review_state + (" (deleted)" if i.upload.deleted_at else ""), when(i.upload.created_at),
                     i.count]
                    for i in items]
            choices = [(f"#{i.upload.id} {i.artist} — {i.upload.file_name}", i.upload.id) for i in items]
        hint = "" if rows else "_Nothing here. Uploads the gate rejects (and an admin can judge) appear here._"
        return table(rows, HEADERS), gr.update(choices=choices, value=None), hint

    @refusals
    def list_queue(state_value: str, reason_value: str, order_value: str, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        return view(state_value, reason_value, order_value, who.username)

    @refusals
    def show_item(upload_id: int | None, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        number = as_id(upload_id, "upload")
        if number is None:
            return None, None, ""
        with instance.reading() as session:
            found = review_service.show_item(session=session, admin=who.username, upload_id=number)
            upload, verdict = found.upload, found.upload.verdict
            later = [{**m, "owner": s["protected"]["owner"]} for s in found.suspensions for m in s["matches"]]
            views = [queries.match_view(session, m, viewer=who.username, viewer_is_admin=True)
                     for m in [*verdict.get("matches", []), *later]]
            suspended = [f"- `{code_of({'code': s['reason']})}` ({plain(s['state'])}): {plain(s['protected']['kind'])} "
                         f"#{s['protected']['id']} of {plain(s['protected']['owner'])}, found by re-scan "
                         f"#{s['rescan_id']} on {plain(str(s['created_at']))}"
                         for s in found.suspensions]
            history = queries.artist_history(session, found.artist)
            decisions = [f"- {when(d.created_at)} **{plain(d.action)}** by {plain(admin)}: {plain(d.note)}"
                         for d, admin in queries.decisions_for(session, upload.id)]
            sha256, deleted = upload.sha256, upload.deleted_at is not None
        picture_sha = next((v.picture_sha256 for v in views if v.picture_sha256), None)
        data = stored_bytes(sha256)  # read once: the preview and the metadata signals both use it
        lines = [f"### Upload #{upload.id} by {plain(found.artist)}: {plain(upload.file_name)} — "
                 f"{plain(upload.review_state)}" + (f" · sent {found.count} times" if found.count > 1 else ""),
                 f"SHA-256 `{sha256}`" + (" · **image deleted (the artist withdrew consent)**" if deleted else ""),
                 "\n**Reasons**", *[f"- `{code_of(r)}`: {plain(r['detail'])}" for r in verdict["reasons"]],
                 *(["\n**Suspended later** (the gate accepted it; a work protected afterwards matches it; "
                    "its datasets are tainted and the models trained on them suspended)", *suspended]
                   if suspended else []),
                 "\n**Matches** (method, score: PDQ distance — lower is closer; local features — verified points)",
                 *([f"- {plain(v.caption)}" for v in views] or ["- none"]),
                 f"\n**Signature:** {signature_status(verdict)}",
                 "\n**Metadata signals**", *signal_lines(data),
                 f"\n**Artist history:** {history.uploads} upload(s), {history.accepted} accepted, "
                 f"{history.rejected} rejected, {history.overridden} overridden, {history.upheld} upheld; "
                 f"{history.verified_works} verified portfolio work(s)",
                 "\n**Decisions**", *(decisions or ["- none yet"])]
        return (thumbnail(data, settings) if data is not None else None,
                stored_thumbnail(instance.blobs, picture_sha, settings) if picture_sha else None, "\n".join(lines))

    def stored_bytes(sha256: str) -> bytes | None:
        """The upload's stored bytes, or None once deleted (consent withdrawn) or unreadable."""
        try:
            return instance.blobs.get(sha256)
        except MimicSafeError:
            return None

    def signal_lines(data: bytes | None) -> list[str]:
        if data is None:
            return ["- (the image is no longer stored)"]
        found = read_signals(data)
        lines = [f"- {plain(s.kind)} ({plain(s.source)}): {plain(s.detail)}" for s in found.signals] or ["- none found"]
        return lines + [f"- note: {plain(n)}" for n in found.notes]

    def decide(upload_id: int | None, note_text: str, confirm: bool, filters: tuple[str, str, str],
               request: gr.Request, *, action: str) -> tuple:
        who = require_admin(instance, request)
        number = required_id(upload_id, "upload", "Choose an upload first.")
        with instance.transaction() as session:
            done = review_service.decide(session=session, admin=who.username, upload_id=number,
                                         action=action, note=note_text or "", override_match=bool(confirm))  # type: ignore[arg-type]
            text = f"Upload #{done.upload.id}: {plain(done.upload.review_state)}."
        state_value, reason_value, order_value = filters
        return (text, "", False, *view(state_value, reason_value, order_value, who.username))

    @refusals
    def uphold_item(upload_id: int | None, note_text: str, confirm: bool, state_value: str, reason_value: str,
                    order_value: str, request: gr.Request) -> tuple:
        return decide(upload_id, note_text, confirm, (state_value, reason_value, order_value), request,
                      action="uphold")

    @refusals
    def override_item(upload_id: int | None, note_text: str, confirm: bool, state_value: str, reason_value: str,
                      order_value: str, request: gr.Request) -> tuple:
        return decide(upload_id, note_text, confirm, (state_value, reason_value, order_value), request,
                      action="approve")

    filters = [state, reason, order]
    outputs = [queue_table, item, empty]
    decision_inputs = [item, note, override_match, *filters]
    after = [message, note, override_match, *outputs]
    refresh.click(list_queue, filters, outputs, api_name="admin_review_list")
    for control in filters:
        control.input(list_queue, filters, outputs, api_visibility="private")
    tab.select(list_queue, filters, outputs, api_visibility="private")
    item.change(show_item, [item], [upload_picture, match_picture, evidence], api_name="admin_review_show")
    uphold.click(uphold_item, decision_inputs, after, api_name="admin_review_uphold")
    override.click(override_item, decision_inputs, after, api_name="admin_review_override")
    return Panel(outputs=outputs, fill=lambda who: view("pending", ANY_REASON, "oldest first", who.username))
