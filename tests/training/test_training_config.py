"""Training settings a user can get wrong are refused with the setting's name and what to use."""

from __future__ import annotations

import pytest

from mimicsafe.training.config import load_preset


def test_prodigy_with_an_adamw_learning_rate_is_refused() -> None:
    # The sd15 preset's AdamW rate would scale Prodigy's own step size down 10,000-fold.
    with pytest.raises(ValueError, match=r"learning_rate: Prodigy .* use 1\.0"):
        load_preset("sd15", optimizer="prodigy")
    assert load_preset("sd15", optimizer="prodigy", learning_rate=1.0).optimizer == "prodigy"
    # The text encoder's rate counts only when the text encoder trains.
    with pytest.raises(ValueError, match="text_encoder_lr: Prodigy"):
        load_preset("tiny", optimizer="prodigy", learning_rate=1.0, train_text_encoder=True,
                    cache_text_embeddings=False)
    assert load_preset("tiny", optimizer="prodigy", learning_rate=1.0, train_text_encoder=True,
                       cache_text_embeddings=False, text_encoder_lr=1.0).train_text_encoder
