"""Every hostile file through the running app (`mimicsafe serve`, gradio_client): the public check and an
artist's upload. Each gets a reason the person can read — no traceback, no bare "Error", no HTTP 500 —
the server stays up and answers a normal request afterwards, and its peak memory stays bounded.

The corpus is the CLI test's (tests/ownership/hostile.py and tests/security/hostile_more.py): bombs,
polyglots, malformed chunks, huge dimensions, nested XMP, malformed C2PA. Files are named `*.png`, the
extension the page accepts, whatever they really hold.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from sqlalchemy import select

from mimicsafe.context import Instance
from mimicsafe.db.models import Upload
from ownership.reasons import ALL_REASONS
from tests.ownership import hostile
from tests.reliability.app_server import AppServer
from tests.reliability.helpers import PASSWORD, make_people, work
from tests.security import hostile_more
from ui.markup import plain

# Above what the server holds once it has answered ordinary requests. Every file here is refused by a
# limit checked before decoding, so a real bound is far below this; an unbounded one is far above.
PEAK_GROWTH_LIMIT = 512 << 20
CALL_GUARD_S = 300  # a hang guard, not a speed assertion
GENERIC = {"", "None", "Error", "error"}


def _write_corpus(directory: Path) -> dict[str, str | None]:
    directory.mkdir()
    cases = {}
    for case in [*hostile.corpus(), *hostile_more.corpus()]:
        (directory / f"{case.name}.png").write_bytes(case.data)
        cases[case.name] = case.code
    return cases


def _cards_by_file(markdown: str) -> dict[str, str]:
    """The upload answer's verdict cards, by file name (each card starts `#### NAME — DECISION`)."""
    cards = {}
    for card in markdown.split("#### ")[1:]:
        title, _, body = card.partition("\n")
        cards[title.split(" — ")[0]] = title + "\n" + body
    return cards


def test_hostile_corpus_through_the_app(instance: Instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every file from this one client: above the public page's per-address limit (tested on its own in
    # tests/security/test_public_limits.py).
    monkeypatch.setenv("MIMICSAFE_PUBLIC_CHECKS_PER_MINUTE", "10000")
    make_people(instance, {"alice": "artist"})
    cases = _write_corpus(tmp_path / "corpus")
    normal = tmp_path / "normal.png"
    normal.write_bytes(work(31, 1))
    instance.engine.dispose()

    server = AppServer(instance, tmp_path / "server").start()
    try:
        public = Client(server.url + "/public/", verbose=False, httpx_kwargs={"timeout": CALL_GUARD_S})
        artist = Client(server.url + "/", auth=("alice", PASSWORD), verbose=False,
                        httpx_kwargs={"timeout": CALL_GUARD_S})
        # Warm up with ordinary requests, so that the baseline holds what any server holds.
        assert "No record" in public.predict(handle_file(str(normal)), api_name="/verify")
        baseline = server.peak_rss_bytes()

        # The public check, each file on its own (the server judges two at a time).
        jobs = {name: public.submit(handle_file(str(tmp_path / "corpus" / f"{name}.png")), api_name="/verify")
                for name in cases}
        problems = []
        for name, job in jobs.items():
            try:
                card = job.result(timeout=CALL_GUARD_S)
            except Exception as exc:  # noqa: BLE001 - a refusal shown to the person is a fine answer
                message = str(exc).strip()
                if message in GENERIC or "Traceback" in message or "Internal Server Error" in message:
                    problems.append(f"check {name}: no reason shown ({type(exc).__name__}: {message!r})")
                continue
            if not isinstance(card, str) or not card.strip() or "Traceback" in card:
                problems.append(f"check {name}: answer {card!r}")
        assert problems == []
        assert server.alive(), server.log()

        # The upload: the whole corpus as one batch; every file gets its own verdict card with a reason.
        paths = [handle_file(str(tmp_path / "corpus" / f"{name}.png")) for name in cases]
        answer, *_ = artist.predict(paths, [], api_name="/artist_uploads_submit")
        assert "Traceback" not in answer
        cards = _cards_by_file(answer)
        for name in cases:
            card = cards.get(plain(f"{name}.png"), "")  # the card writes the name as Markdown text
            assert " — REJECTED" in card and "\n- " in card, (name, card)
        assert server.alive(), server.log()

        # Still serving, ordinarily: a normal upload is judged and the public check answers.
        cards_after, *_ = artist.predict([handle_file(str(normal))], [], api_name="/artist_uploads_submit")
        assert "normal.png — REJECTED" in cards_after  # unsigned, not in a portfolio: no proof, a normal verdict
        assert "No record" in public.predict(handle_file(str(normal)), api_name="/verify")
        assert httpx.get(server.url + "/login", timeout=30).status_code == 200
        growth = server.peak_rss_bytes() - baseline
    finally:
        server.stop()
    assert growth < PEAK_GROWTH_LIMIT, f"peak RSS grew by {growth / 2**20:.0f} MiB over {baseline / 2**20:.0f} MiB"

    # What was stored: one rejected row per hostile file, with the gate's stable reason codes.
    with instance.transaction() as session:
        rows = {Path(r.file_name).stem: r for r in session.scalars(select(Upload)) if r.file_name != "normal.png"}
    assert set(rows) == set(cases)
    for name, expected in cases.items():
        codes = [r["code"] for r in rows[name].verdict["reasons"]]
        assert rows[name].decision == "rejected" and codes and set(codes) <= set(ALL_REASONS), (name, codes)
        if expected is not None:
            assert codes == [expected], (name, codes)
