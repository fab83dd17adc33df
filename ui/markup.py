"""User-controlled text inside what the pages render as Markdown or HTML: shown as that text, never markup.

File names, evidence links, metadata values read from an uploaded file (IPTC `plus:DataMining`, C2PA),
the details of a gate reason (a manifest's `artist` field), notes, model names and usernames all reach
`gr.Markdown`, `gr.HTML` and `gr.Error` (whose message Gradio renders as HTML). Gradio's sanitiser
strips scripts but keeps forms, inputs, images and links, so an artist's evidence "URL" could put a
password form on an admin's page. Every such value goes through `plain` (inside Markdown) or
`html_text` (inside HTML, and a `gr.Error` message) — nothing else in ui/ escapes.

`plain` keeps the text readable in the Markdown source (API clients read it too) and inert when rendered:
* `<`, `>`, `&` and `$` become character references (no tag, entity or LaTeX can open);
* the characters that open inline Markdown — `` \\ ` * _ [ ] ~ | `` — are backslash-escaped, as
  CommonMark (and marked, Gradio's renderer) allows for any ASCII punctuation;
* a bare link cannot autolink (`https\\://…`, `www\\.…`, `name\\@host`);
* line breaks and other control characters become spaces, so a value never starts a line of its own
  (a fake heading, list item or "**Artist so far: 99 verified works**" line); and where a value begins a
  line's content (after a list marker) its first character cannot start a block (`#`, `>`, `-`, `1.`…).
"""

from __future__ import annotations

import html
import re

_REFERENCES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "$": "&#36;"}
_INLINE = frozenset("\\`*_[]~|")
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp)(:)|\b(www)(\.)")
_BLOCK_START = frozenset("#>-+=:")
_ORDERED = re.compile(r"(\d{1,9})([.)])")


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def plain(value: object) -> str:
    """`value` as Markdown that renders as exactly its text, on one line."""
    text = "".join(_REFERENCES.get(c) or ("\\" + c if c in _INLINE else c) for c in _one_line(str(value)))
    text = _AUTOLINK.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"{m[3]}\\{m[4]}", text).replace("@", "\\@")
    stripped = text.lstrip(" ")
    text = "&#32;" * (len(text) - len(stripped)) + stripped  # leading spaces would indent a code block
    if stripped[:1] in _BLOCK_START:
        return text[: len(text) - len(stripped)] + "\\" + stripped
    ordered = _ORDERED.match(stripped)
    if ordered:
        return text[: len(text) - len(stripped)] + ordered[1] + "\\" + stripped[len(ordered[1]):]
    return text


def html_text(value: object) -> str:
    """`value` as HTML text (gr.HTML, and a `gr.Error` message, which Gradio renders as HTML): `<`, `>`
    and `&` as references, line breaks as spaces. For text between tags, never inside an attribute."""
    return html.escape(_one_line(str(value)), quote=False)
