"""Server-side checks every callback makes, and the translation of domain refusals into `gr.Error`.

Hiding a tab is not a check: each callback asks `require_artist` or `require_admin` who is calling
(the username the session cookie proved, via `gr.Request`) and what they may do, reading the account
from the database each time, so a role change or a disabled account counts at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import gradio as gr
from sqlalchemy import select

from mimicsafe.context import Instance
from mimicsafe.db.models import User
from mimicsafe.errors import MimicSafeError
from ui.markup import html_text

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Caller:
    username: str
    role: str
    consent_withdrawn: bool


def refusals(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the product's refusals (MimicSafeError) into a `gr.Error` the person sees."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MimicSafeError as exc:
            raise gr.Error(html_text(exc), print_exception=False) from None  # Gradio renders it as HTML

    return wrapper


def caller(instance: Instance, request: gr.Request | None) -> Caller | None:
    """Who is calling: an enabled account, or None for anyone not logged in."""
    username = getattr(request, "username", None)
    if not username:
        return None
    with instance.reading() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None or user.disabled:
            return None
        return Caller(user.username, user.role, user.consent_withdrawn_at is not None)


def _require(instance: Instance, request: gr.Request | None, role: str, refusal: str) -> Caller:
    who = caller(instance, request)
    if who is None:
        raise gr.Error("Please log in first.", print_exception=False)
    if who.role != role:
        raise gr.Error(refusal, print_exception=False)
    return who


def require_artist(instance: Instance, request: gr.Request | None) -> Caller:
    return _require(instance, request, "artist", "This page is for artist accounts.")


def require_admin(instance: Instance, request: gr.Request | None) -> Caller:
    return _require(instance, request, "admin", "Only admins may do this.")
