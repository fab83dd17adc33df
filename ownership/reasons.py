"""Stable reason codes. These names are part of the public API (CLI JSON, database, UI)."""

from __future__ import annotations

from typing import Final

# Accepted because …
PORTFOLIO_MATCH: Final = "portfolio_match"
VALID_SIGNATURE: Final = "valid_signature"

# Rejected because …
UNDECODABLE: Final = "undecodable"
TOO_LARGE: Final = "too_large"
UNSUPPORTED_FORMAT: Final = "unsupported_format"
NO_PROOF: Final = "no_proof"
BAD_SIGNATURE: Final = "bad_signature"
KEY_REVOKED: Final = "key_revoked"
MATCHES_OTHER_ARTIST: Final = "matches_other_artist"
MATCHES_OPTOUT: Final = "matches_optout"
METADATA_PROHIBITS_TRAINING: Final = "metadata_prohibits_training"
AI_GENERATED: Final = "ai_generated"
DUPLICATE: Final = "duplicate"
LOW_DETAIL: Final = "low_detail"

# Suspended later because … (not a gate verdict: a re-scan's finding about an accepted upload)
MATCHES_NEWLY_PROTECTED: Final = "matches_newly_protected"

ACCEPT_REASONS: Final = {
    PORTFOLIO_MATCH: "matches the artist's own verified portfolio",
    VALID_SIGNATURE: "carries a valid signature by the artist's registered key",
}

REJECT_REASONS: Final = {
    UNDECODABLE: "the file is truncated or corrupt and cannot be decoded",
    TOO_LARGE: "the file or its pixel count exceeds the upload limits",
    UNSUPPORTED_FORMAT: "only PNG, JPEG and WebP images are accepted",
    NO_PROOF: "neither a portfolio match nor a valid signature proves the artist made it",
    BAD_SIGNATURE: "the signature does not verify for this file and artist",
    KEY_REVOKED: "the signing key has been revoked",
    MATCHES_OTHER_ARTIST: "matches another artist's verified work",
    MATCHES_OPTOUT: "matches a work in the do-not-train registry",
    METADATA_PROHIBITS_TRAINING: "the file's metadata prohibits AI training",
    AI_GENERATED: "the image is AI-generated (by this app or declared so in its metadata)",
    DUPLICATE: "the artist already uploaded this exact file",
    LOW_DETAIL: "too little detail to verify ownership reliably",
}

SUSPEND_REASONS: Final = {
    MATCHES_NEWLY_PROTECTED: "an accepted upload matches a work that became protected for someone else later",
}

ALL_REASONS: Final = {**ACCEPT_REASONS, **REJECT_REASONS, **SUSPEND_REASONS}
