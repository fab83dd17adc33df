"""One module per tab. Each `build(instance)` lays out its tab inside the current `gr.Tabs` and wires
its events; it returns a `Panel` so the page can fill the tab when it loads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from ui.guard import Caller


@dataclass(frozen=True)
class Panel:
    """What a tab shows on page load: `fill(caller)` gives one value per output. The page calls it
    only after checking the caller's role."""

    outputs: Sequence[gr.components.Component]
    fill: Callable[[Caller], Sequence[Any]]


def table(rows: list[list[Any]], headers: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(headers))


def when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else ""


def as_id(value: Any, what: str) -> int | None:
    """A row number typed or chosen on the page: None when empty, gr.Error when not a whole number."""
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what}: give a number such as 12.", print_exception=False) from None
    if number != value and str(number) != str(value).strip():
        raise gr.Error(f"{what}: give a whole number.", print_exception=False)
    return number


def required_id(value: Any, what: str, missing: str) -> int:
    """Like `as_id`, but an empty value is a gr.Error saying `missing` (such as "Choose a model.")."""
    number = as_id(value, what)
    if number is None:
        raise gr.Error(missing, print_exception=False)
    return number
