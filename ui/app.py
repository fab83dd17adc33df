"""The Gradio app: layout and thin callbacks only. Every rule lives in mimicsafe/ and ownership/.

Two pages: the logged-in app (artist or admin tabs, by role) and the public page anyone may open.
`build_app` puts them behind one web server with the login routes (see ui/server.py, docs/ui.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
from sqlalchemy import func, select

from mimicsafe.context import Instance
from mimicsafe.db import migrate
from mimicsafe.db.models import User
from ui.guard import caller
from ui.markup import plain
from ui.public import DELETE_CACHE, DEMO_BANNER, build_public
from ui.server import LOGOUT_EVERYWHERE_PATH, LOGOUT_PATH, WebApp
from ui.tabs import (
    Panel,
    admin_audit,
    admin_disputes,
    admin_lineage,
    admin_optout,
    admin_portfolio,
    admin_review,
    admin_users,
    consent,
    disputes,
    generate,
    keys,
    portfolio,
    training,
    uploads,
)


def status_markdown(instance: Instance) -> str:
    """What the admin page says about the instance: database reachable, schema revision, accounts."""
    with instance.reading() as session:
        users = session.scalar(select(func.count()).select_from(User)) or 0
    revision = migrate.current_revision(instance.engine)
    backend = instance.engine.url.get_backend_name()
    return f"Database: **up** ({backend}, schema revision `{revision}`) · accounts: **{users}**"


# Handlers that decode images or run models: they share one concurrency group of
# `heavy_concurrency` on the queue (the only way in: ui/server.py closes `/run`). Generation keeps
# its own limit of one (ui/tabs/generate.py).
HEAVY = {"artist_uploads_submit", "artist_portfolio_submit", "artist_upload_show", "admin_optout_add",
         "admin_optout_import", "admin_review_show", "admin_portfolio_show", "admin_dispute_show",
         "artist_dispute_open"}


def bound_heavy_work(blocks: gr.Blocks, limit: int) -> None:
    """Put the HEAVY handlers in one concurrency group of `limit` (before the queue first runs)."""
    for fn in blocks.fns.values():
        if fn.api_name in HEAVY:
            fn.concurrency_id, fn.concurrency_limit = "heavy", limit


def build_main(instance: Instance) -> gr.Blocks:
    """The logged-in app. The page shows the caller's tabs; every callback checks the role again."""
    with gr.Blocks(title="MimicSafe", delete_cache=DELETE_CACHE) as blocks:
        with gr.Row(equal_height=True):
            header = gr.Markdown(elem_id="header")
            # A plain POST form to the server's route, not a Gradio event: the answer ends this session too.
            gr.HTML(f'<form method="post" action="{LOGOUT_EVERYWHERE_PATH}"><button type="submit" '
                    'class="lg secondary sm" title="End every session of this account, in every browser">'
                    "Log out everywhere</button></form>", elem_id="logout-everywhere", min_width=180)
        if instance.settings.uses_demo_model:
            gr.Markdown(DEMO_BANNER, elem_id="demo-banner")
        with gr.Column(visible=False, elem_id="artist-area") as artist_area, gr.Tabs():
            artist_panels = [keys.build(instance), portfolio.build(instance), uploads.build(instance),
                             training.build(instance), generate.build(instance), disputes.build(instance),
                             consent.build(instance)]
        with gr.Column(visible=False, elem_id="admin-area") as admin_area:
            status = gr.Markdown(elem_id="status")
            with gr.Tabs():
                admin_panels = [admin_portfolio.build(instance), admin_review.build(instance),
                                admin_optout.build(instance), admin_users.build(instance), admin_audit.build(instance),
                                admin_disputes.build(instance), admin_lineage.build(instance)]

        def load_page(request: gr.Request) -> list[Any]:
            who = caller(instance, request)
            if who is None:
                raise gr.Error("Please log in again.", print_exception=False)
            is_artist, is_admin = who.role == "artist", who.role == "admin"
            values: list[Any] = [
                f"### MimicSafe · signed in as **{plain(who.username)}** ({plain(who.role)}) · "
                f"[Log out]({LOGOUT_PATH})",
                gr.update(visible=is_artist), gr.update(visible=is_admin),
                status_markdown(instance) if is_admin else gr.skip(),
            ]
            values += _fill(artist_panels, who) if is_artist else _skip(artist_panels)
            values += _fill(admin_panels, who) if is_admin else _skip(admin_panels)
            return values

        outputs = [header, artist_area, admin_area, status, *_outputs(artist_panels), *_outputs(admin_panels)]
        blocks.load(load_page, None, outputs, api_name="page_load")
    bound_heavy_work(blocks, instance.settings.heavy_concurrency)
    return blocks


def build_app(instance: Instance) -> WebApp:
    """What `mimicsafe serve` runs: both pages and the login routes on one server."""
    return WebApp(instance, main=build_main(instance), public=build_public(instance))


def _outputs(panels: Sequence[Panel]) -> list[gr.components.Component]:
    return [component for panel in panels for component in panel.outputs]


def _fill(panels: Sequence[Panel], who: Any) -> list[Any]:
    return [value for panel in panels for value in panel.fill(who)]


def _skip(panels: Sequence[Panel]) -> list[Any]:
    return [gr.skip() for _ in _outputs(panels)]
