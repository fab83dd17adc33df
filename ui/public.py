"""The public page, no login needed: what MimicSafe is, whether it is up, the way in, and a check of
any image ("was this made here, by whom, with which model?")."""

from __future__ import annotations

import gradio as gr
from sqlalchemy import text

from mimicsafe.context import Instance
from ui.tabs import verify
from ui.throttle import Throttle, Workload, counter_storage

# Files Gradio made for the page (previews, uploads) are deleted an hour after they were made.
DELETE_CACHE = (600, 3600)

DEMO_BANNER = (
    "**Demo model:** images are placeholders — set `MIMICSAFE_BASE_MODEL` to a local Stable Diffusion "
    "1.5 or SDXL checkpoint."
)

ABOUT = """
# MimicSafe

Train a personal style model **only on your own art**, then generate watermarked reference sheets in
your style. Every upload passes an ownership check against verified portfolios and signed uploads;
anything it rejects goes to an admin for review. Every generated image carries an invisible
watermark, a fingerprint and Content Credentials.
"""


def public_status(instance: Instance) -> str:
    """Whether the service can reach its database — nothing more to anonymous visitors."""
    try:
        with instance.reading() as session:
            session.execute(text("SELECT 1"))
    except Exception:  # any failure to reach the database is the answer, not an error of this page
        return "Database: **down** — the service cannot reach its database."
    return "Database: **up**"


def build_public(instance: Instance, *, login_path: str = "/login") -> gr.Blocks:
    with gr.Blocks(title="MimicSafe", delete_cache=DELETE_CACHE) as blocks:
        gr.Markdown(ABOUT)
        if instance.settings.uses_demo_model:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        gr.Markdown(f"**Artists and admins:** [log in]({login_path}).")
        status = gr.Markdown(elem_id="status")
        settings = instance.settings
        with gr.Tabs():
            verify.build(instance,
                         checks=Throttle.per_minute("public-check", settings.public_checks_per_minute,
                                                    counter_storage(settings)),
                         work=Workload("The image check", settings.public_concurrency))
        blocks.load(lambda: public_status(instance), None, status, api_name="status")
    return blocks
