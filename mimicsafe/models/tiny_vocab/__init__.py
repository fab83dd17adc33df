"""A small CLIP-style BPE vocabulary for the built-in tiny model, made in code.

Why in code and not as vocab.json/merges.txt files: the vocabulary is a pure function of the word list
below, so there is nothing to keep in sync, nothing to ship as package data, and no way for a missing
file to turn every prompt into unknown tokens. `tiny_vocab_and_merges()` is cached per process.

Layout, the same as OpenAI CLIP's (so ids behave alike): the 256 byte-level symbols, the same 256
with the end-of-word suffix ``</w>``, then one entry per merge in merge order, then
``<|startoftext|>`` and ``<|endoftext|>`` as the last two ids. Every byte is in the base alphabet, so
any text tokenizes to real tokens; the learned merges make the words below single tokens.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

END_OF_WORD = "</w>"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"

# Frequent English words and the vocabulary of art prompts, most frequent first (the order weights
# the merge learning, so common pieces are merged first). Lower case: the CLIP normalizer lowercases.
_WORD_TEXT = """
    a the of and in with on to is for at by an from as or it this that be are was were his her
    their its my your our one two three four five six seven eight nine ten no not but all some
    portrait landscape style art artwork painting drawing sketch illustration digital ink watercolor
    oil pencil charcoal pastel gouache acrylic lineart line lines color colors colour colorful
    monochrome black white red blue green yellow orange purple pink brown gray grey gold silver
    light dark bright soft warm cool pale deep vivid muted detailed simple clean flat shading shadow
    shadows highlight texture textured brush brushstroke strokes paper canvas background foreground
    girl boy woman man person people child character characters face faces eyes eye hair smile
    hand hands body figure pose standing sitting walking running looking holding wearing dress
    shirt hat coat uniform armor cape sword flower flowers tree trees forest garden grass leaf
    leaves sky cloud clouds sun moon star stars night day morning evening sunset sunrise rain snow
    winter summer spring autumn sea ocean river lake water beach mountain mountains hill field city
    street town house room window door road bridge castle tower village cat dog bird fish horse
    fox rabbit dragon wolf bear owl butterfly animal animals creature robot car train ship boat
    food cake fruit apple tea coffee cup book table chair lamp sheet reference turnaround front
    side back view views angle close up full half upper lower head shoulders expression expressions
    happy sad angry calm quiet cute beautiful small large big little tall short long round old
    young new high low best quality masterpiece anime manga comic cartoon chibi realistic
    photorealistic fantasy magic magical medieval modern futuristic scifi vintage retro japanese
    traditional ukiyo woodblock print poster cover concept design studio lighting cinematic
    atmosphere mood scene composition perspective minimal pattern geometric abstract sketchy rough
    smooth sharp blurry glow glowing sparkle rainbow neon pastel cherry blossom sakura kimono
    school student friends family together alone inside outside under over near far above below
    very more most much many few each every other another same different like made make drawn
    painted by artist artists own my
"""
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode symbols.

    The ByteLevel pre-tokenizer that transformers' CLIPTokenizer installs emits these symbols, so the
    base alphabet of the vocabulary must be written in them.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def _learn_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Classic BPE learning until every word is one symbol; ties broken by the pair's text.

    Words are weighted by their position in `words` (earlier = more frequent). Deterministic: no
    randomness and no dependence on dict or set iteration order for the choice of a merge.
    """
    weights = {word: len(words) - rank for rank, word in enumerate(dict.fromkeys(words))}
    splits = {word: [*word[:-1], word[-1] + END_OF_WORD] for word in weights}
    merges: list[tuple[str, str]] = []
    while True:
        pair_counts: Counter[tuple[str, str]] = Counter()
        for word, symbols in splits.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pair_counts[pair] += weights[word]
        if not pair_counts:
            return merges
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        merged = best[0] + best[1]
        for word, symbols in splits.items():
            if len(symbols) < 2:
                continue
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            splits[word] = out


@lru_cache(maxsize=1)
def _cached() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [symbol + END_OF_WORD for symbol in alphabet]
    merges = _learn_merges(WORDS)
    for left, right in merges:
        token = left + right
        if token not in tokens:
            tokens.append(token)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return tuple((token, index) for index, token in enumerate(tokens)), tuple(merges)


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary (token → id) and the ranked merges; fresh containers on every call."""
    vocab, merges = _cached()
    return dict(vocab), list(merges)


def merges_txt(merges: list[tuple[str, str]]) -> str:
    """The merges in the `merges.txt` format that CLIP folders ship (a header line, then "a b")."""
    return "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges)
