"""The watermark's message: a 64-bit payload, a version byte and a keyed MAC, protected by a BCH code.

Why this layout: an image that was never marked must read as "no watermark", never as a wrong id.
Three independent checks stand between random noise and a reported id:

1. the BCH(t=22) decoder must succeed — a random 244-bit word is within 22 bit flips of a codeword
   with probability about 2**-44.7;
2. the version byte must be the one this code writes (2**-8);
3. a 24-bit keyed BLAKE2b MAC over version and payload must match (2**-24).

Together about 2**-77 per decoding attempt (docs/watermark.md counts the attempts per image).

Message (12 bytes = 96 bits, big-endian bit order): version (1 byte) | payload (8 bytes) | MAC (3 bytes),
followed by the 148 BCH parity bits: 244 coded bits in all.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import bchlib
import numpy as np

VERSION: Final = 1
PAYLOAD_BYTES: Final = 8
MAC_BYTES: Final = 3
MESSAGE_BYTES: Final = 1 + PAYLOAD_BYTES + MAC_BYTES
BCH_T: Final = 22
BCH_M: Final = 8


@lru_cache(maxsize=1)
def _bch() -> bchlib.BCH:
    return bchlib.BCH(BCH_T, m=BCH_M)


def ecc_bits() -> int:
    """Number of BCH parity bits actually transmitted (148 for t=22, m=8)."""
    return int(_bch().ecc_bits)


def code_bits() -> int:
    """Length of the coded word carried by the watermark: 96 message bits + parity."""
    return MESSAGE_BYTES * 8 + ecc_bits()


def _mac(key: bytes, version: int, payload: bytes) -> bytes:
    digest = hashlib.blake2b(bytes([version]) + payload, key=key[:64], digest_size=16, person=b"mimicsafe-wm-mac")
    return digest.digest()[:MAC_BYTES]


def payload_to_bytes(payload: int | bytes) -> bytes:
    """Normalise a payload given as an int in [0, 2**64) or as exactly 8 bytes."""
    if isinstance(payload, bool):
        raise ValueError("payload must be an int in [0, 2**64) or 8 bytes, not a bool")
    if isinstance(payload, int):
        if not 0 <= payload < 2**64:
            raise ValueError(f"payload must be an int in [0, 2**64), got {payload}")
        return payload.to_bytes(PAYLOAD_BYTES, "big")
    if isinstance(payload, bytes | bytearray):
        if len(payload) != PAYLOAD_BYTES:
            raise ValueError(f"payload must be exactly {PAYLOAD_BYTES} bytes, got {len(payload)}")
        return bytes(payload)
    raise ValueError(f"payload must be an int or bytes, got {type(payload).__name__}")


def encode(payload: bytes, key: bytes) -> np.ndarray:
    """Return the coded word as a uint8 array of 0/1 bits, length `code_bits()`."""
    message = bytes([VERSION]) + payload + _mac(key, VERSION, payload)
    parity = _bch().encode(message)
    bits = np.unpackbits(np.frombuffer(message + parity, dtype=np.uint8))
    return bits[: code_bits()].copy()


@dataclass(frozen=True)
class Decoded:
    """A payload that passed BCH, version and MAC checks."""

    payload: bytes
    version: int
    bit_errors: int
    """Coded bits corrected (BCH corrections plus Chase flips: an upper bound on the hard-decision errors)."""


def _try_hard(bits: np.ndarray, key: bytes) -> Decoded | None:
    bch = _bch()
    padded = np.zeros((MESSAGE_BYTES + bch.ecc_bytes) * 8, dtype=np.uint8)
    padded[: bits.size] = bits
    raw = np.packbits(padded).tobytes()
    data = bytearray(raw[:MESSAGE_BYTES])
    parity = bytearray(raw[MESSAGE_BYTES:])
    nerr = bch.decode(data, parity)
    if nerr < 0:
        return None
    bch.correct(data, parity)
    version, payload, mac = data[0], bytes(data[1 : 1 + PAYLOAD_BYTES]), bytes(data[1 + PAYLOAD_BYTES :])
    if version != VERSION or mac != _mac(key, version, payload):
        return None
    return Decoded(payload=payload, version=version, bit_errors=int(nerr))


def decode(soft: np.ndarray, key: bytes, *, chase_bits: int) -> tuple[Decoded | None, int]:
    """Decode soft bit values (positive means 1). Returns (decoded or None, attempts made).

    Chase-II decoding: when the hard decision does not decode, flip every combination of the
    `chase_bits` least reliable bits and try again. Each attempt is one more chance for noise to pass
    the checks, so the attempt count is returned for the false-positive budget.
    """
    hard = (soft > 0).astype(np.uint8)
    found = _try_hard(hard, key)
    attempts = 1
    if found is not None or chase_bits <= 0:
        return found, attempts
    weakest = np.argsort(np.abs(soft))[:chase_bits]
    for weight in range(1, chase_bits + 1):
        for flip in itertools.combinations(weakest, weight):
            trial = hard.copy()
            trial[list(flip)] ^= 1
            attempts += 1
            found = _try_hard(trial, key)
            if found is not None:
                return Decoded(found.payload, found.version, found.bit_errors + weight), attempts
    return None, attempts
