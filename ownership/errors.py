"""Exceptions raised by the gate. Each carries a stable reason code from `ownership.reasons`."""

from __future__ import annotations


class OwnershipError(Exception):
    """A refusal with a stable reason code and a human-readable detail."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class DecodeError(OwnershipError):
    """The bytes are not an image the gate can safely decode (undecodable, too_large, unsupported_format)."""


class SignatureError(OwnershipError):
    """A signature or manifest is malformed, does not verify, or names a revoked key."""
