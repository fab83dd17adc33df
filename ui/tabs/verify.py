"""Public tab: anyone checks an image — was it made here, by whom, with which model, when?"""

from __future__ import annotations

import gradio as gr

from mimicsafe.context import Instance
from mimicsafe.provenance.verify import VerifyReport, verify_image
from ui.files import IMAGE_TYPES, required_uploads
from ui.guard import refusals
from ui.markup import plain
from ui.throttle import Throttle, Workload
from ui.words import WITNESSES

EXPLAIN = """
### Check an image

Drop any image (PNG, JPEG, WebP). MimicSafe asks three independent witnesses whether it made it:
its **Content Credentials** (C2PA, lost when a file is re-saved), the **invisible watermark** in the
pixels (survives re-saving, resizing, colour changes and moderate crops), and the **fingerprint**
registry (survives screenshots and heavy crops). Upload the original file, not a preview: a preview
is a re-saved copy without its Content Credentials.
"""


def report_card(report: VerifyReport) -> str:
    """The report of `mimicsafe verify` as a card a person reads."""
    wm = report.watermark
    witness_lines = [
        "- Content Credentials: " + ("none in the file" if report.c2pa is None else
                                     plain(report.c2pa.validation_state.lower())
                                     + (" (signed by this service)" if report.c2pa.trusted else "")),
        "- Watermark: " + (f"found, id `{wm.payload.hex()}` ({wm.bit_accuracy:.0%} of bits read; {plain(wm.transform)})"
                           if wm.found and wm.payload is not None else "none found"),
        f"- Fingerprint: {len(report.fingerprint_matches)} match(es) among the images made here",
    ]
    if report.generation is None:
        head = ["### No record", "None of the witnesses knows this image: MimicSafe has no record of making it. "
                "(That does not prove a person drew it; it was not made here, or not recognisably.)"]
    else:
        g = report.generation
        model = f"{plain(g.model_name)} (#{g.model_id})" if g.model_name else "a model since deleted"
        head = [f"### Made with MimicSafe — generation `{g.public_id}`",
                f"**Artist:** {plain(g.artist)} · **Model:** {model} · **Made:** {g.created_at:%Y-%m-%d %H:%M} UTC · "
                f"**Kind:** {plain(g.kind)}",
                "**Recognised by:** " + ", ".join(WITNESSES[m] for m in report.methods),
                f"Prompt fingerprint (SHA-256): `{g.prompt_sha256[:16]}…`"]
        if g.suspension:
            head.insert(1, f"**Suspended:** {plain(g.suspension)}.")
    others = [f"- also contains generation `{o.public_id}` by {plain(o.artist)}" for o in report.others]
    notes = [f"- {plain(note)}" for note in report.notes]
    return "\n\n".join(["\n\n".join(head), "**Witnesses**\n" + "\n".join(witness_lines),
                        *(["**Also found**\n" + "\n".join(others)] if others else []),
                        *(["**Notes**\n" + "\n".join(notes)] if notes else [])])


def build(instance: Instance, *, checks: Throttle, work: Workload) -> None:
    """The check is anonymous work: at most `checks` per client address, `work`'s limit at once
    (whatever route calls it), and images up to `public_max_pixels`, refused before decoding."""
    with gr.Tab("Check an image", id="verify"):
        gr.Markdown(EXPLAIN)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                image = gr.File(label="Image", file_types=IMAGE_TYPES, type="filepath",
                                height=160, elem_id="verify-image")
                check = gr.Button("Check", variant="primary")
            card = gr.Markdown(elem_id="verify-card", min_height=120)

    @refusals
    def check_image(path: str | None, request: gr.Request) -> str:
        client = getattr(request, "client", None)
        checks.require(getattr(client, "host", None) or "unknown",
                       "Too many checks from your address; try again in a minute.")
        files = required_uploads(path, max_bytes=instance.settings.max_upload_bytes,
                                 missing="Choose an image to check.")
        with work.slot():
            report = verify_image(instance=instance, data=files[0].data,
                                  max_pixels=instance.settings.public_max_pixels)
        return report_card(report)

    check.click(check_image, [image], [card], api_name="verify", concurrency_limit=work.limit)
