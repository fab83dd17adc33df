"""What artists and admins do on the page, driven through the running app with gradio_client."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from mimicsafe import accounts
from ownership.signatures import generate_keypair, sign_manifest
from tests.gate_helpers import artwork, png_bytes
from tests.ui.conftest import PASSWORDS, add_model, write_png


def refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AppError) as caught:
        call()
    assert message in str(caught.value)


def test_a_signed_upload_is_accepted_and_shown_as_an_image(world) -> None:
    alice = world.client("alice")
    picture = write_png(world.files, "sketch.png", 1, 10)
    manifest = world.files / "sketch-manifest.json"
    manifest.write_bytes(sign_manifest(private_key_path_or_bytes=world.alice_key_private, artist="alice",
                                       files=[picture]))
    cards, matched, _, _, listed, empty = alice.predict([handle_file(str(picture))], [handle_file(str(manifest))],
                                                        api_name="/artist_uploads_submit")
    assert "sketch.png — ACCEPTED" in cards and "valid signature" in cards and "ready for training" in cards
    assert matched["value"] == [] and empty == ""
    upload_id = next(row[0] for row in listed["data"] if row[1] == "sketch.png")
    shown, match_picture, detail = alice.predict(upload_id, api_name="/artist_upload_show")
    assert Image.open(shown).size[0] > 0 and match_picture is None
    assert f"upload #{upload_id}" in detail


def test_a_copy_of_your_own_verified_work_shows_what_it_matched(world) -> None:
    alice = world.client("alice")
    copy = world.files / "repost.jpg"
    buffer = io.BytesIO()
    Image.open(world.alice_portfolio_png).convert("RGB").save(buffer, format="JPEG", quality=80)
    copy.write_bytes(buffer.getvalue())
    cards, matched, *_ = alice.predict([handle_file(str(copy))], [], api_name="/artist_uploads_submit")
    assert "repost.jpg — ACCEPTED" in cards and "your verified portfolio works" in cards
    (shown,) = matched["value"]
    assert "your verified work" in shown["caption"] and Image.open(shown["image"]).size[0] > 0


def test_a_rejected_upload_goes_to_review_and_the_admin_decides(world) -> None:
    bob, root = world.client("bob"), world.client("root")
    copy = world.files / "nice-picture.png"  # the same pixels in other bytes: a new file, not a repeat
    Image.open(world.alice_portfolio_png).save(copy, compress_level=1)
    cards, *_ = bob.predict([handle_file(str(copy))], [], api_name="/artist_uploads_submit")
    assert "matches a protected work" in cards and "sent to an admin for review" in cards and "alice" not in cards

    listed, choices, _ = root.predict("pending", "matches_other_artist", "newest first", api_name="/admin_review_list")
    row = next(r for r in listed["data"] if r[1] == "bob" and r[2] == "nice-picture.png")
    upload_id = row[0]
    assert "alice" in row[4]  # the admin sees whose work it matched
    upload_picture, match_picture, evidence = root.predict(upload_id, api_name="/admin_review_show")
    assert Image.open(upload_picture).size == Image.open(match_picture).size  # side by side, both shown
    for part in ("matches_other_artist", "verified work of alice", "**Signature:** no signature given",
                 "**Metadata signals**", "**Artist history:**"):
        assert part in evidence

    filters = ("pending", "any reason", "oldest first")
    refused(lambda: root.predict(upload_id, "", False, *filters, api_name="/admin_review_uphold"), "needs a note")
    refused(lambda: root.predict(upload_id, "artist says so", False, *filters, api_name="/admin_review_override"),
            "matches protected work")
    message, *_ = root.predict(upload_id, "it is alice's published work", False, *filters,
                               api_name="/admin_review_uphold")
    assert message == f"Upload #{upload_id}: upheld."

    listed, _ = bob.predict(api_name="/artist_uploads_list")
    assert next(r for r in listed["data"] if r[0] == upload_id)[4].startswith("an admin reviewed it and kept")
    _, _, detail = bob.predict(upload_id, api_name="/artist_upload_show")
    assert "rejection kept" in detail and "alice" not in detail  # the decision, not the admin's note

    cards, *_ = bob.predict([handle_file(str(copy))], [], api_name="/artist_uploads_submit")  # the same file again
    assert "kept the rejection" in cards
    again = int(cards.split("(upload #")[1].split(")")[0])
    _, _, detail = bob.predict(again, api_name="/artist_upload_show")
    assert "rejection kept" in detail  # a copy reads its item's decision
    listed, _, _ = root.predict("all", "any reason", "oldest first", api_name="/admin_review_list")
    assert again not in [r[0] for r in listed["data"]]
    assert next(r for r in listed["data"] if r[0] == upload_id)[7] == 2  # one item, sent twice

    entries = root.predict("review.uphold", "root", 10, api_name="/admin_audit_list")
    assert any(str(upload_id) in row[5] and "alice's published work" in row[5] for row in entries["data"])
    assert "intact" in root.predict(api_name="/admin_audit_verify")


def test_portfolio_works_wait_for_an_admin_who_verifies_or_denies_them(world) -> None:
    bob, root = world.client("bob"), world.client("root")
    own = write_png(world.files, "bob-comic.png", 2, 1)
    claimed = world.files / "bob-claims.jpg"  # alice's verified work, re-encoded
    Image.open(world.alice_portfolio_png).convert("RGB").save(claimed, format="JPEG", quality=70)
    bob.predict([handle_file(str(own)), handle_file(str(claimed))], "https://example.org/bob/comic",
                api_name="/artist_portfolio_submit")

    queue, gallery, choices, _ = root.predict(api_name="/admin_portfolio_queue")
    ids = {row[2]: row[0] for row in queue["data"] if row[1] == "bob"}
    assert len(gallery) >= 2 and "https://example.org/bob/comic" in repr(queue["data"])
    picture, evidence = root.predict(ids["bob-comic.png"], api_name="/admin_portfolio_show")
    assert Image.open(picture).size[0] > 0 and "https\\://example.org/bob/comic" in evidence  # shown, not a link

    refused(lambda: root.predict(ids["bob-comic.png"], "", api_name="/admin_portfolio_deny"), "say why")
    message, *_ = root.predict(ids["bob-comic.png"], "post dated 2021 checked", api_name="/admin_portfolio_verify")
    assert message == (f"Verified #{ids['bob-comic.png']}: it is now protected; the accepted uploads are "
                       "re-scanned against it in the background.")
    message, *_ = root.predict(ids["bob-claims.jpg"], "", api_name="/admin_portfolio_verify")
    assert message.startswith("Not verified: matches a protected work of alice")

    listed, _, _ = bob.predict(api_name="/artist_portfolio_list")
    statuses = {row[1]: row[2] for row in listed["data"]}
    assert statuses["bob-comic.png"] == "verified — protected" and statuses["bob-claims.jpg"] == "waiting for an admin"


def test_keys_are_registered_and_revoked(world) -> None:
    bob = world.client("bob")
    _, public = generate_keypair()
    message, *_ = bob.predict("", handle_file(_write(world.files / "bob.pub", public)),
                              api_name="/artist_keys_register")
    fingerprint = message.split("`")[1]
    listed, revocable, _ = bob.predict(api_name="/artist_keys_list")
    assert next(row for row in listed["data"] if row[0] == fingerprint)[3] == "active"
    assert fingerprint in repr(revocable)
    refused(lambda: bob.predict("ssh-rsa AAAAB3Nza not-ed25519", None, api_name="/artist_keys_register"),
            "public key")
    message, listed, *_ = bob.predict(fingerprint, api_name="/artist_keys_revoke")
    assert "no longer count" in message
    assert next(row for row in listed["data"] if row[0] == fingerprint)[3].startswith("revoked")


def test_admins_manage_accounts_and_sessions_end_when_they_should(world) -> None:
    root = world.client("root")
    message, *_ = root.predict("carol", "artist", "", api_name="/admin_users_create")
    generated = message.split("`")[1]
    carol = Client(world.url + "/", auth=("carol", generated), verbose=False)
    assert "carol" in carol.predict(api_name="/page_load")[0]

    refused(lambda: root.predict("root", api_name="/admin_users_disable"), "your own account")
    root.predict("carol", api_name="/admin_users_disable")
    with pytest.raises(Exception, match="(?i)401|unauthori"):
        carol.predict(api_name="/artist_keys_list")
    root.predict("carol", api_name="/admin_users_enable")
    carol = Client(world.url + "/", auth=("carol", generated), verbose=False)

    root.predict("carol", PASSWORDS["carol"], api_name="/admin_users_reset_password")
    with pytest.raises(Exception, match="(?i)401|unauthori"):
        carol.predict(api_name="/artist_keys_list")
    carol_again = Client(world.url + "/", auth=("carol", PASSWORDS["carol"]), verbose=False)
    carol_again.predict(api_name="/artist_keys_list")
    users, _ = root.predict(api_name="/admin_users_list")
    assert next(r for r in users["data"] if r[0] == "carol")[:4] == ["carol", "artist", "active", 1]
    message, *_ = root.predict("carol", api_name="/admin_users_logout")  # an admin ends its sessions
    assert message.startswith("Ended 1 session(s)")
    with pytest.raises(Exception, match="(?i)401|unauthori"):
        carol_again.predict(api_name="/artist_keys_list")


def test_the_opt_out_registry_blocks_works_of_people_who_never_signed_up(world) -> None:
    root, bob = world.client("root"), world.client("bob")
    stranger = world.files / "stranger.png"
    stranger.write_bytes(png_bytes(artwork(9, 9)))
    message, *_ = root.predict([handle_file(str(stranger))], "asked by mail, 2024-05-01", api_name="/admin_optout_add")
    assert message == ("Added 1 work(s) to the do-not-train registry; the accepted uploads are re-scanned against "
                       "them in the background.")
    cards, *_ = bob.predict([handle_file(str(stranger))], [], api_name="/artist_uploads_submit")
    assert "never be used for training" in cards

    refused(lambda: root.predict(None, "sha256:nothex", "list", api_name="/admin_optout_import"), "line 1")
    message, _, _, summary, table = root.predict(None, "# two works\nsha256:" + "ab" * 32 + "\npdq:" + "cd" * 32,
                                                 "registry.example", api_name="/admin_optout_import")
    assert message == "Imported 2 hash(es); the accepted uploads are re-scanned against them in the background."
    assert "**3** work(s) registered" in summary


def test_login_form_redirects_and_logout_ends_the_browser_session(world) -> None:
    with httpx.Client(base_url=world.url) as http:
        wrong = http.post("/login", data={"username": "alice", "password": "nope-nope-nope", "next": "/"})
        assert wrong.status_code == 401 and "wrong username or password" in wrong.text
        good = http.post("/login", data={"username": "alice", "password": PASSWORDS["alice"], "next": "//evil.example"})
        assert good.status_code == 303 and good.headers["location"] == "/"
        assert http.get("/").status_code == 200 and http.get("/config").status_code == 200
        assert http.get("/login").headers["location"] == "/"  # already logged in
        assert http.get("/logout").status_code == 303
        assert http.get("/").headers["location"] == "/login"


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_withdrawing_consent_deletes_the_uploads_and_closes_uploads(world) -> None:
    with world.instance.transaction() as session:
        accounts.create_user(session=session, username="gina", role="artist", password="gina-password-1")
    gina = Client(world.url + "/", auth=("gina", "gina-password-1"), verbose=False)
    picture = write_png(world.files, "gina.png", 7, 1)
    gina.predict([handle_file(str(picture))], [], api_name="/artist_uploads_submit")
    sha256 = hashlib.sha256(picture.read_bytes()).hexdigest()
    assert world.instance.blobs.exists(sha256)

    refused(lambda: gina.predict(False, "gina", api_name="/artist_consent_withdraw"), "Tick the box")
    refused(lambda: gina.predict(True, "gin", api_name="/artist_consent_withdraw"), "type your username (gina)")
    message, _, _, status = gina.predict(True, "gina", api_name="/artist_consent_withdraw")
    assert message.startswith("Consent withdrawn. Deleted 1 upload(s)") and "You have withdrawn consent" in status
    assert not world.instance.blobs.exists(sha256)
    listed, empty = gina.predict(api_name="/artist_uploads_list")
    assert listed["data"] == [] and "No uploads yet" in empty
    refused(lambda: gina.predict([handle_file(str(picture))], [], api_name="/artist_uploads_submit"),
            "withdrew consent")
    entries = world.client("root").predict("consent", "gina", 5, api_name="/admin_audit_list")
    assert [row[3] for row in entries["data"]] == ["consent.withdraw"]


def test_training_is_queued_followed_and_cancelled(world) -> None:
    alice = world.client("alice")
    message, job_id, status, *_ = alice.predict("tiny", 5, api_name="/artist_training_start")
    assert message == f"Training job #{job_id} is queued." and "waiting in the queue (position 1)" in status
    assert "<progress" in status
    job, status, *_ = alice.predict(job_id, api_name="/artist_training_job")
    assert job == job_id and f"Job #{job_id}" in status
    refused(lambda: alice.predict("tiny", 5, api_name="/artist_training_start"), "already has training job")
    message, _, status, *_ = alice.predict(job_id, api_name="/artist_training_cancel")
    assert message == f"Job #{job_id}: cancel requested." and "cancelled at step 0" in status


def test_models_are_listed_downloaded_and_deleted(world) -> None:
    _, model_id = add_model(world.instance, "alice", weights=b"second weights", kohya=b"second kohya weights")
    alice = world.client("alice")
    *_, models, choices, _, ready = alice.predict(api_name="/artist_training_list")
    row = next(r for r in models["data"] if r[0] == model_id)
    assert row[3] == "1" and len(row[2]) == 64 and "accepted upload(s) are ready" in ready
    path = alice.predict(model_id, "kohya", api_name="/artist_model_download")
    assert Path(path).read_bytes() == b"second kohya weights" and path.endswith("-kohya.safetensors")
    message, _, models, *_ = alice.predict(model_id, api_name="/artist_model_delete")
    assert message == f"Model #{model_id} deleted." and model_id not in [r[0] for r in models["data"]]


def test_generation_requests_are_checked_before_any_model_loads(world) -> None:
    alice = world.client("alice")
    refused(lambda: alice.predict("", "", world.alice_model_id, "single images", 1, 2, 1.0, None,
                                  api_name="/artist_generate"), "prompt: must not be empty")
    refused(lambda: alice.predict("a cat", "", None, "single images", 1, 2, 1.0, None, api_name="/artist_generate"),
            "Choose one of your models")
    refused(lambda: alice.predict("a cat", "", 10_000, "single images", 1, 2, 1.0, None, api_name="/artist_generate"),
            "alice has no model #10000")


@pytest.mark.slow  # renders with the tiny model, marks, signs and verifies: ~15-40 s on a laptop CPU
def test_generated_images_are_marked_checked_and_known_to_the_gate(world) -> None:
    from tests.generation.studio import make_lora_file

    _, model_id = add_model(world.instance, "alice", weights=make_lora_file())
    alice = world.client("alice")
    gallery, summary, files = alice.predict("a cat in a hat", "", model_id, "single images", 1, 2, 1.0, 7,
                                            api_name="/artist_generate")
    assert len(gallery) == 1 and len(files) == 1 and "verified by Content Credentials (C2PA)" in summary
    public_id = gallery[0]["caption"]
    card = world.public_client().predict(handle_file(files[0]), api_name="/verify")
    assert f"Made with MimicSafe — generation `{public_id}`" in card and "**Artist:** alice" in card
    cards, *_ = alice.predict([handle_file(files[0])], [], api_name="/artist_uploads_submit")
    assert "REJECTED" in cards and "it is an AI-generated image" in cards
    card = world.public_client().predict(handle_file(str(world.alice_portfolio_png)), api_name="/verify")
    assert card.startswith("### No record")
