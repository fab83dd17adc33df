"""Why a generation did not finish, in words a person can act on."""

from __future__ import annotations

from mimicsafe.errors import MimicSafeError


class GenerationCancelled(MimicSafeError):
    """The person who asked for the generation cancelled it; nothing was stored."""
