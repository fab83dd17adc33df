"""Why a training did not start or did not finish, in words a person can act on."""

from __future__ import annotations

from mimicsafe.errors import MimicSafeError, ValidationFailed


class DatasetRefused(MimicSafeError):
    """The dataset cannot be trained on: an item's bytes changed, or it is no longer eligible.

    `item` names the upload (id and file name) so the artist knows which one to look at.
    """

    def __init__(self, message: str, *, item: str | None = None) -> None:
        super().__init__(message)
        self.item = item


class JobConflict(ValidationFailed):
    """The artist already has a queued or running training job."""


class TrainingFailed(MimicSafeError):
    """The training loop stopped with an error that it explains."""


class TrainingDiverged(TrainingFailed):
    """The loss or the gradients became NaN or infinite."""


class TrainingCancelled(Exception):  # noqa: N818  (control flow, not an error shown as one)
    """Raised inside the loop when a cancel was requested; the last checkpoint is kept."""
