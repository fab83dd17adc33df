"""The policy's one promise, as a property: no verdict is `accepted` while a match with another
artist's verified work, an opt-out work or one of our outputs exists — whatever else is true."""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownership.fingerprint import Fingerprint
from ownership.policy import Upload, evaluate
from ownership.signatures import RegisteredKey, generate_keypair, load_public_key, sign_manifest
from ownership.types import DecodeLimits, Match
from tests.gate_helpers import artwork, png_bytes

OWNERS = st.sampled_from(["alice", "bob", "carol", "optout", "generated"])
MATCH = st.builds(
    Match,
    owner=OWNERS,
    item_sha256=st.sampled_from(["a" * 64, "b" * 64]),
    method=st.sampled_from(["sha256", "pdq", "local_features"]),
    score=st.floats(0, 300, allow_nan=False),
)


class FakeIndex:
    def __init__(self, matches: list[Match]) -> None:
        self.matches = matches

    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        return list(self.matches)


@cache
def _fixture() -> tuple[bytes, bytes, RegisteredKey]:
    data = png_bytes(artwork(3, 1))
    private, public = generate_keypair()
    manifest = sign_manifest(private_key_path_or_bytes=private, artist="alice", files=[("w.png", data)])
    return data, manifest, RegisteredKey.from_info(load_public_key(public))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matches=st.lists(MATCH, max_size=4), signed=st.booleans(), revoked=st.booleans(),
       duplicate=st.booleans())
def test_no_acceptance_with_a_protected_match(matches: list[Match], signed: bool, revoked: bool,
                                             duplicate: bool) -> None:
    data, manifest, key = _fixture()
    key = RegisteredKey(fingerprint=key.fingerprint, public_key=key.public_key, revoked=revoked)
    evidence = evaluate(
        Upload(file_name="w.png", data=data, artist="alice", signature=manifest if signed else None),
        index=FakeIndex(matches), artist_keys=[key], limits=DecodeLimits(),
        previous_uploads=[evidence_sha(data)] if duplicate else [],
    )
    verdict = evidence.verdict
    protected = [m for m in matches if m.owner != "alice"]
    proof = any(m.owner == "alice" for m in matches) or (signed and not revoked)
    # A signature that fails (here: by a revoked key) is a red flag even beside a portfolio match.
    bad_signature = signed and revoked
    if protected or duplicate or bad_signature or not proof:
        assert verdict.decision == "rejected"
    else:
        assert verdict.decision == "accepted"
    if verdict.decision == "accepted":
        assert all(m.owner == "alice" for m in verdict.matches)
        assert {r.code for r in verdict.reasons} <= {"portfolio_match", "valid_signature"}
    else:
        assert any(r.code not in ("portfolio_match", "valid_signature") for r in verdict.reasons)


def evidence_sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
