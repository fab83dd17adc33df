"""Captions as kohya's sd-scripts treat them: comma-separated tags, a trigger word, shuffling, dropout.

Every random choice takes a `random.Random` the caller seeds from (seed, step, item), so a resumed run
draws exactly the captions an uninterrupted one would.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable


def trigger_for(template: str, artist: str) -> str:
    return template.replace("{artist}", artist).strip()


def base_caption(caption: str | None, *, trigger: str, default_caption: str) -> str:
    """`trigger, caption` — or `trigger, default_caption` for an image without a caption of its own."""
    body = (caption or "").strip() or default_caption.strip()
    return ", ".join(part for part in (trigger, body) if part)


def split_tags(caption: str) -> list[str]:
    return [tag.strip() for tag in caption.split(",") if tag.strip()]


def training_caption(caption: str, *, rng: random.Random, shuffle: bool, keep_tokens: int,
                     dropout_rate: float) -> str:
    """The caption one step trains with: maybe empty (dropout), else tags after `keep_tokens` shuffled."""
    if dropout_rate > 0 and rng.random() < dropout_rate:
        return ""
    tags = split_tags(caption)
    if shuffle and len(tags) > keep_tokens + 1:
        head, tail = tags[:keep_tokens], tags[keep_tokens:]
        rng.shuffle(tail)
        tags = head + tail
    return ", ".join(tags)


def caption_variants(caption: str, *, shuffle: bool, keep_tokens: int, dropout_rate: float) -> set[str] | None:
    """Every caption `training_caption` can return for `caption`; None when shuffling makes many."""
    tags = split_tags(caption)
    if shuffle and len(tags) > keep_tokens + 1:
        return None
    return {", ".join(tags)} | ({""} if dropout_rate > 0 else set())


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """How often each tag occurs (kohya's `ss_tag_frequency`, for one dataset)."""
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(split_tags(caption))
    return dict(sorted(counts.items()))
