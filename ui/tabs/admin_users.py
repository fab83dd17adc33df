"""Admin tab: accounts — create, disable or enable, reset a password, end an account's sessions."""

from __future__ import annotations

import secrets

import gradio as gr

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.db.models import User
from ui.guard import refusals, require_admin
from ui.markup import plain
from ui.tabs import Panel, table, when

HEADERS = ["Username", "Role", "Status", "Sessions", "Created"]


def status_of(user: User) -> str:
    if user.disabled:
        return "disabled"
    return "consent withdrawn" if user.consent_withdrawn_at else "active"


def build(instance: Instance) -> Panel:
    with gr.Tab("Users", id="admin-users") as tab:
        users_table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True)
        with gr.Row(equal_height=False):
            with gr.Column(min_width=300):
                gr.Markdown("**New account**")
                new_name = gr.Textbox(label="Username", max_lines=1)
                new_role = gr.Radio(list(accounts.ROLES), value="artist", label="Role")
                new_password = gr.Textbox(label="Password (leave empty to generate one)", type="password", max_lines=1)
                create = gr.Button("Create account", variant="primary")
            with gr.Column(min_width=300):
                gr.Markdown("**Existing account**")
                target = gr.Dropdown(label="Account", choices=[], allow_custom_value=True)
                with gr.Row():
                    disable = gr.Button("Disable", variant="stop", min_width=100)
                    enable = gr.Button("Enable", min_width=100)
                reset_password = gr.Textbox(label="New password (leave empty to generate one)", type="password",
                                            max_lines=1)
                reset = gr.Button("Reset password")
                end_sessions = gr.Button("End all its sessions (log it out everywhere)")
        message = gr.Markdown()

    def view() -> tuple:
        with instance.reading() as session:
            users = accounts.list_users(session=session)
            rows = [[u.username, u.role, status_of(u), accounts.open_sessions(session=session, username=u.username),
                     when(u.created_at)] for u in users]
            names = [u.username for u in users]
        return table(rows, HEADERS), gr.update(choices=names, value=None)

    def password_or_new(typed: str) -> tuple[str, str]:
        if typed:
            return typed, ""
        generated = secrets.token_urlsafe(12)
        return generated, f" Their password is `{generated}` — pass it on privately; it is not shown again."

    @refusals
    def list_users(request: gr.Request) -> tuple:
        require_admin(instance, request)
        return view()

    @refusals
    def create_user(username: str, role: str, password: str, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        password, shown = password_or_new(password or "")
        with instance.transaction() as session:
            accounts.create_user(session=session, username=(username or "").strip(), role=role,  # type: ignore[arg-type]
                                 password=password, actor=who.username)
        return (f"Created {plain(role)} account **{plain(username.strip())}**.{shown}", "", "", *view())

    def set_disabled(username: str | None, disabled: bool, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        if not username:
            raise gr.Error("Choose an account.", print_exception=False)
        if disabled and username == who.username:
            raise gr.Error("You cannot disable your own account; ask another admin.", print_exception=False)
        with instance.transaction() as session:
            accounts.set_disabled(session=session, username=username, disabled=disabled, actor=who.username)
        state = "disabled: its sessions have ended" if disabled else "enabled"
        return (f"**{plain(username)}** is now {state}.", *view())

    @refusals
    def disable_user(username: str | None, request: gr.Request) -> tuple:
        return set_disabled(username, True, request)

    @refusals
    def enable_user(username: str | None, request: gr.Request) -> tuple:
        return set_disabled(username, False, request)

    @refusals
    def reset_user_password(username: str | None, password: str, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        if not username:
            raise gr.Error("Choose an account.", print_exception=False)
        password, shown = password_or_new(password or "")
        with instance.transaction() as session:
            accounts.set_password(session=session, username=username, password=password, actor=who.username)
        return (f"Password of **{plain(username)}** reset; its sessions have ended.{shown}", "", *view())

    @refusals
    def end_user_sessions(username: str | None, request: gr.Request) -> tuple:
        who = require_admin(instance, request)
        if not username:
            raise gr.Error("Choose an account.", print_exception=False)
        with instance.transaction() as session:
            ended = accounts.end_sessions(session=session, username=username, actor=who.username,
                                          why="ended by an admin")
        return (f"Ended {ended} session(s) of {plain(username)}: it must log in again.", *view())

    outputs = [users_table, target]
    create.click(create_user, [new_name, new_role, new_password], [message, new_name, new_password, *outputs],
                 api_name="admin_users_create")
    disable.click(disable_user, [target], [message, *outputs], api_name="admin_users_disable")
    enable.click(enable_user, [target], [message, *outputs], api_name="admin_users_enable")
    reset.click(reset_user_password, [target, reset_password], [message, reset_password, *outputs],
                api_name="admin_users_reset_password")
    end_sessions.click(end_user_sessions, [target], [message, *outputs], api_name="admin_users_logout")
    tab.select(list_users, None, outputs, api_name="admin_users_list")
    return Panel(outputs=outputs, fill=lambda who: view())
