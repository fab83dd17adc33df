"""Domain exceptions. The CLI turns them into a message and exit status; ui/ into gr.Error."""

from __future__ import annotations


class MimicSafeError(Exception):
    """Base of every refusal the product explains to a person."""


class NotFoundError(MimicSafeError):
    pass


class PermissionDenied(MimicSafeError):
    pass


class AuthError(MimicSafeError):
    """Wrong username or password, or a disabled account. Deliberately does not say which."""


class ValidationFailed(MimicSafeError):
    """A request that is well-formed but not acceptable (bad username, empty note, …)."""


class BlobError(MimicSafeError):
    pass


class BlobCorrupted(BlobError):
    """A stored blob no longer hashes to its name."""


class RateLimited(MimicSafeError):
    pass


class DatabaseUnavailable(MimicSafeError):
    """The database could not be reached or could not finish a request (connection lost, locked, full)."""
