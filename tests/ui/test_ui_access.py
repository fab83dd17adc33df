"""Who may call what, checked on the server: every artist endpoint against another artist's data,
every admin endpoint as an artist, and the public surface as an anonymous visitor.

Each test first compares the app's endpoint list with the cases it knows, so an endpoint added later
without an access case fails here instead of going unchecked.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mimicsafe import accounts, keys
from mimicsafe.db.models import LoraModel, TrainingJob, Upload, User
from ui.server import PUBLIC_PATH

ARTIST_REFUSAL = "This page is for artist accounts."
ADMIN_REFUSAL = "Only admins may do this."
SKIPPED = {"__type__": "update"}  # gr.skip() (an output left as it was), as gradio_client returns it


def skipped(value: object) -> bool:
    """Whether a page-load output was gr.skip() (gr.HTML wraps the empty update in "props")."""
    return value in (SKIPPED, {**SKIPPED, "props": SKIPPED})


def named_endpoints(client: Client) -> set[str]:
    return set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])


def refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(AppError) as caught:
        call()
    assert message in str(caught.value)


def all_refused(client: Client, calls: dict[str, tuple], message: str) -> None:
    """Send every call at once (gradio_client runs them as concurrent jobs); each must be refused."""
    jobs = {endpoint: client.submit(*args, api_name=endpoint) for endpoint, args in calls.items()}
    for endpoint, job in jobs.items():
        with pytest.raises(AppError) as caught:
            job.result()
        assert message in str(caught.value), endpoint


def table_text(value: dict) -> str:
    return repr(value["data"])


# --- artist B on artist A's data ---------------------------------------------------------------------


def bob_lists_keys(world, bob: Client) -> None:
    listed, revocable, _ = bob.predict(api_name="/artist_keys_list")
    assert world.alice_fingerprint not in repr(listed) + repr(revocable)


def bob_registers_alices_key(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_public_key.decode(), None, api_name="/artist_keys_register"),
            "already registered by another account")


def bob_revokes_alices_key(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_fingerprint, api_name="/artist_keys_revoke"), "bob has no key")


def bob_lists_portfolio(world, bob: Client) -> None:
    listed, gallery, _ = bob.predict(api_name="/artist_portfolio_list")
    assert world.alice_portfolio_id not in [row[0] for row in listed["data"]]
    assert not any(picture["caption"].startswith(f"#{world.alice_portfolio_id} ") for picture in gallery)


def bob_submits_alices_work(world, bob: Client) -> None:
    message, _, listed, *_ = bob.predict([handle_file(str(world.alice_portfolio_png))], "https://example.org/bob",
                                         api_name="/artist_portfolio_submit")
    assert "Submitted 1 work" in message  # a claim only: verifying it is refused (test_ui_flows)
    claim = next(row for row in listed["data"] if row[1] == world.alice_portfolio_png.name)
    assert claim[0] != world.alice_portfolio_id and claim[2] == "waiting for an admin"


def bob_lists_uploads(world, bob: Client) -> None:
    listed, _ = bob.predict(api_name="/artist_uploads_list")
    ids = {row[0] for row in listed["data"]}
    assert not ids & {world.alice_upload_id, world.alice_rejected_id}


def bob_uploads_alices_work(world, bob: Client) -> None:
    found = world.files / "found-online.png"
    found.write_bytes(world.alice_portfolio_png.read_bytes())
    cards, matched, *_ = bob.predict([handle_file(str(found))], [], api_name="/artist_uploads_submit")
    assert "found-online.png — REJECTED" in cards and "matches a protected work" in cards
    assert "alice" not in cards and matched["value"] == []  # neither her name nor her picture


def bob_shows_alices_upload(world, bob: Client) -> None:
    for upload_id in (world.alice_upload_id, world.alice_rejected_id):
        refused(lambda upload_id=upload_id: bob.predict(upload_id, api_name="/artist_upload_show"),
                f"you have no upload #{upload_id}")


def bob_withdraws_alices_consent(world, bob: Client) -> None:
    refused(lambda: bob.predict(True, "alice", api_name="/artist_consent_withdraw"), "type your username (bob)")


def bob_lists_training(world, bob: Client) -> None:
    job_id, status, samples, *_, models, model_choices, _, _ = bob.predict(api_name="/artist_training_list")
    assert job_id != world.alice_job_id and f"#{world.alice_job_id}" not in status
    assert world.alice_model_id not in [row[0] for row in models["data"]] and "alice" not in repr(model_choices)


def bob_trains(world, bob: Client) -> None:
    refused(lambda: bob.predict("tiny", 5, api_name="/artist_training_start"), "bob has no accepted uploads")


def bob_follows_alices_job(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_job_id, api_name="/artist_training_job"),
            f"training job {world.alice_job_id} does not exist")


def bob_cancels_alices_job(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_job_id, api_name="/artist_training_cancel"),
            f"training job {world.alice_job_id} does not exist")


def bob_downloads_alices_model(world, bob: Client) -> None:
    for fmt in ("diffusers", "kohya"):
        refused(lambda fmt=fmt: bob.predict(world.alice_model_id, fmt, api_name="/artist_model_download"),
                f"model {world.alice_model_id} does not exist")


def bob_deletes_alices_model(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_model_id, api_name="/artist_model_delete"),
            f"model {world.alice_model_id} does not exist")


def bob_retrains_alices_model(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_model_id, api_name="/artist_model_retrain"),
            f"model {world.alice_model_id} does not exist")


def bob_lists_disputes(world, bob: Client) -> None:
    claims, _ = bob.predict(api_name="/artist_disputes_list")  # only claims bob opened: none
    assert [row for row in claims["data"] if any(row)] == []


def bob_claims_through_alices_upload(world, bob: Client) -> None:
    refused(lambda: bob.predict(world.alice_rejected_id, "https://example.org/x", None, "mine",
                                api_name="/artist_dispute_open"), f"you have no upload #{world.alice_rejected_id}")


def bob_generates_with_alices_model(world, bob: Client) -> None:
    refused(lambda: bob.predict("a cat", "", world.alice_model_id, "single images", 1, 2, 1.0, None,
                                api_name="/artist_generate"), f"bob has no model #{world.alice_model_id}")


def bob_stops_generating(world, bob: Client) -> None:
    # No target to name: it stops only the caller's own generation in the caller's own session.
    assert bob.predict(api_name="/artist_generate_stop").startswith("Stopping")


BOB_ON_ALICE = {
    "/artist_keys_list": [bob_lists_keys],
    "/artist_keys_register": [bob_registers_alices_key],
    "/artist_keys_revoke": [bob_revokes_alices_key],
    "/artist_portfolio_list": [bob_lists_portfolio],
    "/artist_portfolio_submit": [bob_submits_alices_work],
    "/artist_uploads_list": [bob_lists_uploads],
    "/artist_uploads_submit": [bob_uploads_alices_work],
    "/artist_upload_show": [bob_shows_alices_upload],
    "/artist_consent_withdraw": [bob_withdraws_alices_consent],
    "/artist_training_list": [bob_lists_training],
    "/artist_training_start": [bob_trains],
    "/artist_training_job": [bob_follows_alices_job],
    "/artist_training_cancel": [bob_cancels_alices_job],
    "/artist_model_download": [bob_downloads_alices_model],
    "/artist_model_delete": [bob_deletes_alices_model],
    "/artist_model_retrain": [bob_retrains_alices_model],
    "/artist_generate": [bob_generates_with_alices_model],
    "/artist_disputes_list": [bob_lists_disputes],
    "/artist_dispute_open": [bob_claims_through_alices_upload],
    "/artist_generate_stop": [bob_stops_generating],
}


def test_an_artist_never_reaches_another_artists_data(world) -> None:
    bob = world.client("bob")
    assert {e for e in named_endpoints(bob) if e.startswith("/artist_")} == set(BOB_ON_ALICE)
    for cases in BOB_ON_ALICE.values():
        for case in cases:
            case(world, bob)
    with world.instance.transaction() as session:  # alice's things are as they were
        alice = accounts.get_user(session=session, username="alice")
        assert alice.consent_withdrawn_at is None
        assert [k.revoked_at for k in keys.list_keys(session=session, username="alice")] == [None]
        for upload_id in (world.alice_upload_id, world.alice_rejected_id):
            assert session.get(Upload, upload_id).deleted_at is None
        assert session.get(LoraModel, world.alice_model_id).deleted_at is None
        assert session.get(TrainingJob, world.alice_job_id).status == "completed"


# --- an artist on the admin pages -------------------------------------------------------------------


def admin_calls(world) -> dict[str, tuple]:
    return {
        "/admin_portfolio_queue": (),
        "/admin_portfolio_show": (1,),
        "/admin_portfolio_verify": (1, "looks fine"),
        "/admin_portfolio_deny": (1, "no evidence"),
        "/admin_review_list": ("all", "any reason", "oldest first"),
        "/admin_review_show": (world.alice_rejected_id,),
        "/admin_review_uphold": (world.alice_rejected_id, "because", False, "pending", "any reason", "oldest first"),
        "/admin_review_override": (world.alice_rejected_id, "because", True, "pending", "any reason", "oldest first"),
        "/admin_optout_add": ([handle_file(str(world.alice_signed_png))], "mallory"),
        "/admin_optout_import": (None, "sha256:" + "a" * 64, "mallory"),
        "/admin_optout_list": (),
        "/admin_users_list": (),
        "/admin_users_create": ("mallory", "admin", "mallory-password-1"),
        "/admin_users_disable": ("root",),
        "/admin_users_enable": ("alice",),
        "/admin_users_reset_password": ("root", "taken-over-password"),
        "/admin_users_logout": ("root",),
        "/admin_audit_list": ("", "", 50),
        "/admin_audit_verify": (),
        "/admin_lineage_show": ("upload", world.alice_upload_id),
        "/admin_disputes_list": (),
        "/admin_dispute_show": (1,),
        "/admin_dispute_keep": (1, "no"),
        "/admin_dispute_transfer": (1, "yes"),
    }


def test_an_artist_is_refused_every_admin_endpoint(world) -> None:
    alice = world.client("alice")
    calls = admin_calls(world)
    assert {e for e in named_endpoints(alice) if e.startswith("/admin_")} == set(calls)
    all_refused(alice, calls, ADMIN_REFUSAL)
    with world.instance.transaction() as session:  # and nothing happened
        assert session.query(User).filter_by(username="mallory").first() is None
        assert accounts.get_user(session=session, username="root").disabled is False
        assert session.get(Upload, world.alice_rejected_id).review_state == "pending"
    world.client("root")  # root's password still works


# Endpoints every logged-in account may call, each about the caller only (test_ui_flows has their cases).
EVERY_ACCOUNT = {"/page_load"}


def test_every_endpoint_of_the_logged_in_app_has_a_rule(world) -> None:
    """Nothing outside the artist cases, the admin cases and the caller-only endpoints."""
    endpoints = named_endpoints(world.client("root"))
    assert endpoints == set(BOB_ON_ALICE) | set(admin_calls(world)) | EVERY_ACCOUNT


def test_an_admin_is_refused_the_artist_pages(world) -> None:
    root = world.client("root")
    calls = {
        "/artist_keys_list": (), "/artist_keys_register": ("ssh-ed25519 AAAA", None),
        "/artist_keys_revoke": (world.alice_fingerprint,), "/artist_portfolio_list": (),
        "/artist_portfolio_submit": ([handle_file(str(world.alice_signed_png))], ""),
        "/artist_uploads_list": (), "/artist_uploads_submit": ([handle_file(str(world.alice_signed_png))], []),
        "/artist_upload_show": (world.alice_upload_id,), "/artist_consent_withdraw": (True, "root"),
        "/artist_training_list": (), "/artist_training_start": ("tiny", 5),
        "/artist_training_job": (world.alice_job_id,), "/artist_training_cancel": (world.alice_job_id,),
        "/artist_model_download": (world.alice_model_id, "kohya"), "/artist_model_delete": (world.alice_model_id,),
        "/artist_model_retrain": (world.alice_model_id,),
        "/artist_generate": ("a cat", "", world.alice_model_id, "single images", 1, 2, 1.0, None),
        "/artist_generate_stop": (),
        "/artist_disputes_list": (), "/artist_dispute_open": (world.alice_rejected_id, "https://e.org", None, "x"),
    }
    assert {e for e in named_endpoints(root) if e.startswith("/artist_")} == set(calls)
    all_refused(root, calls, ARTIST_REFUSAL)


def test_the_page_shows_each_role_only_its_own_tabs(world) -> None:
    """The page load fills only the caller's own area: every output one role gets filled, the other gets
    skipped (gr.skip(), an empty update). The areas' visibility updates are layout outputs, which
    gradio_client does not return; the admin status line and the admin tabs' data are what an artist must
    never receive."""
    alice = world.client("alice").predict(api_name="/page_load")
    root = world.client("root").predict(api_name="/page_load")
    assert "signed in as **alice** (artist)" in alice[0]
    with world.instance.transaction() as session:
        count = session.query(User).count()
    assert "signed in as **root** (admin)" in root[0] and f"accounts: **{count}**" in root[1]
    assert skipped(alice[1])  # the admin status line
    assert len(alice) == len(root)
    alice_filled = {i for i, value in enumerate(alice) if not skipped(value)}
    root_filled = {i for i, value in enumerate(root) if not skipped(value)}
    assert alice_filled & root_filled == {0}  # only the header is filled for both
    assert len(alice_filled) > 1 and len(root_filled) > 2  # each role got its own tabs' data


# --- anonymous ----------------------------------------------------------------------------------------


def test_anonymous_visitors_reach_only_the_public_page(world) -> None:
    with pytest.raises(Exception, match="(?i)login|credentials|401"):
        Client(world.url + "/", verbose=False)
    with httpx.Client(base_url=world.url) as http:
        page = http.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert http.get("/login").status_code == 200
        for path in ("/config", "/gradio_api/info", "/gradio_api/file=/etc/hostname"):
            assert http.get(path).status_code == 401, path
        for endpoint in ("artist_uploads_list", "admin_users_list", "page_load"):
            assert http.post(f"/gradio_api/call/{endpoint}", json={"data": []}).status_code == 401
    with httpx.Client(base_url=world.url, cookies={"mimicsafe_session": "alice.forged"}) as forged:
        assert forged.get("/config").status_code == 401
    public = Client(world.url + PUBLIC_PATH + "/", verbose=False)
    assert named_endpoints(public) == {"/status", "/verify"}
    assert public.predict(api_name="/status") == "Database: **up**"
