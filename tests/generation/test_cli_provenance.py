"""generate, watermark embed/detect and verify from the command line: files, JSON and exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from mimicsafe.cli import exit_status_for
from tests.gate_helpers import artwork, jpeg_bytes, png_bytes
from tests.generation.studio import Studio
from ui.cli import app

runner = CliRunner()


def run(home: Path | None, *args: str) -> tuple[int, str]:
    """Invoke like the console script does: domain errors become exit statuses, not tracebacks."""
    prefix = ["--home", str(home)] if home is not None else []
    result = runner.invoke(app, [*prefix, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        status = exit_status_for(result.exception)
        assert status is not None, f"unexplained error: {result.exception!r}"
        return status, result.output + str(result.exception)
    return result.exit_code, result.output


def test_watermark_embed_and_detect(tmp_path: Path) -> None:
    source, marked, clean = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "clean.png"
    source.write_bytes(png_bytes(artwork(1, 3)))
    clean.write_bytes(png_bytes(artwork(2, 3)))
    code, _ = run(tmp_path / "h", "watermark", "embed", str(source), str(marked), "--payload", "00112233445566ff")
    assert code == 0 and marked.is_file()
    code, out = run(tmp_path / "h", "watermark", "detect", str(marked), "--json")
    assert code == 0 and json.loads(out)["payload"] == "00112233445566ff"
    code, out = run(tmp_path / "h", "watermark", "detect", str(clean), "--json")
    assert code == 1 and json.loads(out)["found"] is False
    code, out = run(tmp_path / "h", "watermark", "embed", str(source), str(marked), "--payload", "xyz")
    assert code == 2 and "16 hex digits" in out
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    code, out = run(tmp_path / "h", "watermark", "detect", str(not_image))
    assert code == 2 and "unsupported_format" in out


def test_generate_then_verify(studio: Studio, tmp_path: Path) -> None:
    home = studio.instance.settings.home_dir
    out_dir = tmp_path / "out"
    code, out = run(home, "--json", "generate", "alice", "--prompt", "a heron", "--sheet", "poses", "--out",
                    str(out_dir), "--steps", "1", "--guidance", "1", "--seed", "4")
    assert code == 0, out
    made = json.loads(out[out.index("{"):])
    path = Path(made["file"])
    assert path.parent == out_dir and made["kind"] == "sheet:poses" and made["watermark_reads_back"] is True

    code, out = run(home, "verify", str(path), "--json")
    report = json.loads(out)
    assert code == 0 and report["generation"]["public_id"] == made["public_id"]
    assert report["methods"] == ["c2pa", "watermark", "fingerprint"] and report["c2pa"]["trusted"] is True

    reencoded = tmp_path / "copy.jpg"
    reencoded.write_bytes(jpeg_bytes(np.asarray(Image.open(path).convert("RGB"))))
    code, out = run(home, "verify", str(reencoded))
    assert code == 0 and made["public_id"] in out and "c2pa" not in out.split("recognised by:")[1].splitlines()[0]

    stranger = tmp_path / "stranger.png"
    stranger.write_bytes(png_bytes(artwork(6, 0)))
    code, out = run(home, "verify", str(stranger), "--json")
    assert code == 1 and json.loads(out)["found"] is False


def test_generate_refusals(studio: Studio, tmp_path: Path) -> None:
    home = studio.instance.settings.home_dir
    code, out = run(home, "generate", "alice", "--prompt", "a heron", "--out", str(tmp_path), "--as", "bob",
                    "--steps", "1")
    assert code == 1 and "only alice or an admin" in out
    code, out = run(home, "generate", "alice", "--prompt", "a heron", "--out", str(tmp_path), "--steps", "0")
    assert code == 2 and "steps" in out
    code, out = run(home, "generate", "alice", "--prompt", "a heron", "--out", str(tmp_path), "--sheet", "comic")
    assert code == 2 and "sheet" in out
    assert list(tmp_path.iterdir()) == []
