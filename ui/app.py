"""The Gradio app: layout and thin callbacks only. Every rule lives in mimicsafe/ and ownership/."""

from __future__ import annotations

import gradio as gr
from sqlalchemy import func, select

from mimicsafe.context import Instance
from mimicsafe.db import migrate
from mimicsafe.db.models import User

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


def status_markdown(instance: Instance) -> str:
    """What the front page says about the instance: database reachable, schema revision, accounts."""
    with instance.transaction() as session:
        users = session.scalar(select(func.count()).select_from(User)) or 0
    revision = migrate.current_revision(instance.engine)
    backend = instance.engine.url.get_backend_name()
    return f"Database: **up** ({backend}, schema revision `{revision}`) · accounts: **{users}**"


def build_app(instance: Instance) -> gr.Blocks:
    with gr.Blocks(title="MimicSafe") as blocks:
        gr.Markdown(ABOUT)
        if instance.settings.uses_demo_model:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        status = gr.Markdown(elem_id="status")
        blocks.load(lambda: status_markdown(instance), outputs=status, api_name="status")
    return blocks
