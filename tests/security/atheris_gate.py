"""Coverage-guided fuzzing of the gate's parsers with atheris (libFuzzer), beside the hypothesis tests.

CI runs it for a bounded number of inputs (tests/security/test_atheris.py). A long run by hand:

    .venv/bin/python tests/security/atheris_gate.py -max_total_time=3600 -rss_limit_mb=2048 CORPUS_DIR

The first byte of each input picks the target, the rest is that target's input. Each target states its
contract; anything else (another exception, a "last resort" note) is a finding, which libFuzzer
reports with the input that caused it (crash-… file) and a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["ownership"]):
    from ownership.decode import decode_image
    from ownership.errors import DecodeError, SignatureError
    from ownership.signals import read_signals
    from ownership.signatures import (
        RegisteredKey,
        check_signature,
        generate_keypair,
        load_public_key,
        parse_manifest,
    )
    from ownership.sshsig import parse_sshsig
    from ownership.types import DecodeLimits

LIMITS = DecodeLimits(max_bytes=1 << 20, max_pixels=1 << 20)
ARTIST_KEY = RegisteredKey.from_info(load_public_key(generate_keypair()[1]))


def _decode(data: bytes) -> None:
    try:
        image = decode_image(data, LIMITS)
    except DecodeError:
        return
    assert image.rgb.ndim == 3 and image.rgb.shape[2] == 3 and image.rgb.dtype.name == "uint8"


def _signals(data: bytes) -> None:
    notes = read_signals(data).notes
    assert not any(n.startswith("metadata reading stopped early") for n in notes), notes


def _parser(parse):  # type: ignore[no-untyped-def]
    def run(data: bytes) -> None:
        with contextlib.suppress(SignatureError):
            parse(data)

    return run


def _check(data: bytes) -> None:
    result = check_signature(file_bytes=b"art", file_name="art.png", artist="alice", signature=data,
                             registered_keys=[ARTIST_KEY])
    assert result is not None and not result.ok


TARGETS = (_decode, _signals, _parser(parse_manifest), _parser(parse_sshsig), _parser(load_public_key), _check)


def fuzz_one(data: bytes) -> None:
    if data:
        TARGETS[data[0] % len(TARGETS)](data[1:])


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
