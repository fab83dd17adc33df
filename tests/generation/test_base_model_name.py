"""A configured base model is recorded by its name, never by the path it has on the server: the name goes
into every generated image (XMP, PNG text, C2PA) and into every trained LoRA, which leave the server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from mimicsafe import accounts
from mimicsafe.context import Instance, open_instance
from mimicsafe.db.models import Generation
from mimicsafe.generation import GenerationConfig, generate
from mimicsafe.models.loading import TINY_MODEL_NAME, base_model_name
from mimicsafe.models.tiny import build_tiny_pipeline
from mimicsafe.provenance.content_credentials import read_manifest
from mimicsafe.provenance.credentials import load_credentials
from mimicsafe.settings import Settings, load_settings
from tests.generation.studio import PASSWORD, QUICK, add_lora, make_lora_file

SECRET_DIR = "private-server-models-7f3a"  # a directory name that must not leave the server
MODEL_NAME = "house-style-base"


def test_the_name_is_the_last_part_of_the_path(tmp_path: Path) -> None:
    folder = tmp_path / SECRET_DIR / MODEL_NAME
    assert base_model_name(Settings(home=tmp_path, base_model=str(folder))) == MODEL_NAME
    single = tmp_path / SECRET_DIR / "model.safetensors"
    assert base_model_name(Settings(home=tmp_path, base_model=str(single))) == "model.safetensors"
    assert base_model_name(Settings(home=tmp_path, base_model=None)) == TINY_MODEL_NAME


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Instance, Path]]:
    """An instance whose base model is the tiny model saved as a diffusers folder deep in a directory."""
    import os

    folder = tmp_path / SECRET_DIR / MODEL_NAME
    build_tiny_pipeline(seed=0).save_pretrained(folder)
    for variable in [v for v in os.environ if v.startswith("MIMICSAFE_")]:
        monkeypatch.delenv(variable)
    instance = open_instance(load_settings(home=tmp_path / "home", base_model=str(folder)))
    try:
        yield instance, folder
    finally:
        instance.close()


def test_a_configured_base_model_path_never_appears_in_an_output(configured: tuple[Instance, Path]) -> None:
    instance, folder = configured
    assert not instance.settings.uses_demo_model
    with instance.transaction() as session:
        accounts.create_user(session=session, username="carol", role="artist", password=PASSWORD)
    model_id = add_lora(instance, "carol", name="carol-style", lora_file=make_lora_file())
    [output] = generate(instance=instance, actor="carol", username="carol", model_id=model_id,
                        config=GenerationConfig(prompt="a lighthouse", seed=3, **QUICK))

    # The file, byte for byte (C2PA store and XMP included), and its decoded PNG text chunks.
    assert SECRET_DIR.encode() not in output.png and str(folder.parent).encode() not in output.png
    text = Image.open(io.BytesIO(output.png)).text  # type: ignore[attr-defined]
    assert not any(SECRET_DIR in value for value in text.values())
    assert f"on {MODEL_NAME};" in text["Source"]
    assert f"<mimicsafe:baseModel>{MODEL_NAME}</mimicsafe:baseModel>".encode() in output.png
    # The C2PA generation assertion, read back and validated.
    anchor = load_credentials(instance.settings.home_dir)
    assert anchor is not None
    manifest = read_manifest(output.png, mime="image/png", trust_anchor_pem=anchor.trust_anchor_pem)
    assert manifest is not None and manifest.generation is not None
    assert manifest.generation["base_model"] == MODEL_NAME
    assert SECRET_DIR not in json.dumps(manifest.generation)
    # The stored record.
    with instance.reading() as session:
        row = session.scalar(select(Generation).where(Generation.id == output.generation_id))
        assert row is not None
        assert row.params["base_model"] == MODEL_NAME and SECRET_DIR not in json.dumps(row.params)
