"""GenerationConfig refuses bad values with a message that names the parameter."""

from __future__ import annotations

import pytest

from mimicsafe.generation import GenerationConfig


@pytest.mark.parametrize(("changes", "parameter"), [
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 1001}, "prompt"),
    ({"seed": -1}, "seed"),
    ({"steps": 0}, "steps"),
    ({"guidance": 0.5}, "guidance"),
    ({"width": 100}, "width"),
    ({"height": 4096}, "height"),
    ({"lora_scale": 3.0}, "lora_scale"),
    ({"batch": 9}, "batch"),
    ({"sheet": "comic"}, "sheet"),
    ({"palette_colours": 1}, "palette_colours"),
])
def test_bad_values_name_the_parameter(changes: dict, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"^{parameter}"):
        GenerationConfig(**{"prompt": "a cat", **changes})


def test_defaults_and_the_visible_label_rule() -> None:
    single = GenerationConfig(prompt="a cat")
    assert single.width is None and single.height is None  # the base model's own size
    assert single.visible_label is False
    assert GenerationConfig(prompt="a cat", sheet="turnaround").visible_label is True
    assert GenerationConfig(prompt="a cat", sheet="poses", label=False).visible_label is False
    assert GenerationConfig(prompt="a cat", label=True).visible_label is True
    assert GenerationConfig(prompt="a cat", seed=3).to_json()["seed"] == 3
