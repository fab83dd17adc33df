"""The built-in tiny model and offline loading of base models (diffusers folders and single files).

Every test runs with HF_HUB_OFFLINE=1 and with outbound network connections made to fail, so a code
path that reaches for the Hugging Face Hub fails here instead of in production.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from mimicsafe.models import (
    MODEL_MAX_LENGTH,
    ModelLoadError,
    build_random_sd15_pipeline,
    build_tiny_components,
    build_tiny_pipeline,
    build_tiny_tokenizer,
    check_tokenizer,
    configs_dir,
    detect_checkpoint_kind,
    load_base_pipeline,
    training_noise_scheduler,
)
from mimicsafe.models.tiny_vocab import WORDS, merges_txt, tiny_vocab_and_merges

PROMPT = "A watercolor portrait of a girl with a cat, cherry blossom background"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real_connect = socket.socket.connect

    def refuse_network(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"test tried to reach the network: {address!r}")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", refuse_network)


def generate(pipe: StableDiffusionPipeline, seed: int = 0) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(seed)
    image = pipe(PROMPT, num_inference_steps=2, height=64, width=64, generator=generator).images[0]
    assert image.size == (64, 64)
    return np.asarray(image)


def write_tiny_vocab_folder(folder: Path) -> Path:
    """A tokenizer folder in the layout real SD models ship: vocab.json + merges.txt + configs."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(merges_txt(merges), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(configs_dir() / "models" / "sd15" / "tokenizer" / name, folder / name)
    return folder


# The tiny model -------------------------------------------------------------------------------------


def test_tiny_components_are_deterministic_for_a_seed() -> None:
    first, again, other = build_tiny_components(0), build_tiny_components(0), build_tiny_components(1)
    for name in ("unet", "vae", "text_encoder"):
        a, b, c = first[name].state_dict(), again[name].state_dict(), other[name].state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs between two builds with seed 0"
        assert not all(torch.equal(a[k], c[k]) for k in a), f"{name} ignores the seed"
    assert first["safety_checker"] is None and first["feature_extractor"] is None
    assert first["image_encoder"] is None


def test_tokenizer_gives_real_tokens_for_ordinary_words() -> None:
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer(PROMPT).input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<|startoftext|>" and tokens[-1] == "<|endoftext|>"
    assert tokens[1:-1] == [
        "a</w>", "watercolor</w>", "portrait</w>", "of</w>", "a</w>", "girl</w>", "with</w>", "a</w>",
        "cat</w>", ",</w>", "cherry</w>", "blossom</w>", "background</w>",
    ]  # fmt: skip
    # Every listed word is one token: the merges really were learned, not just the byte alphabet.
    for word in WORDS:
        assert len(tokenizer(word).input_ids) == 3, word


def test_tokenizer_never_falls_back_to_unknown_tokens() -> None:
    tokenizer = build_tiny_tokenizer()
    assert tokenizer.unk_token_id == tokenizer.eos_token_id
    ids = tokenizer("zyxwv qoph 1987 café 漢字 🙂").input_ids
    content = ids[1:-1]
    assert len(content) > 10
    assert tokenizer.unk_token_id not in content
    # Byte-level fallback keeps the text; CLIP splits numbers into digits, as the real tokenizer does.
    assert tokenizer.decode(content) == "zyxwv qoph 1 9 8 7 café 漢字 🙂"


def test_tokenizer_pads_and_truncates_to_77() -> None:
    tokenizer = build_tiny_tokenizer()
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH == 77
    short = tokenizer("a cat", padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    assert len(short.input_ids) == 77
    assert short.input_ids[3:] == [tokenizer.pad_token_id] * 74
    long = tokenizer(" ".join(["cat"] * 200), padding="max_length", truncation=True)
    assert len(long.input_ids) == 77 and long.input_ids[-1] == tokenizer.eos_token_id


def test_tokenizer_loads_from_vocab_files_like_a_real_model_folder(tmp_path: Path) -> None:
    folder = write_tiny_vocab_folder(tmp_path / "tokenizer")
    loaded = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    assert loaded(PROMPT).input_ids == build_tiny_tokenizer()(PROMPT).input_ids
    assert len(loaded) == len(build_tiny_tokenizer())


def test_check_tokenizer_refuses_a_folder_without_vocabulary(tmp_path: Path) -> None:
    # transformers builds this without complaint: a 3-token vocabulary that maps every word to unknown.
    shutil.copytree(configs_dir() / "models" / "sd15" / "tokenizer", tmp_path / "tokenizer")
    empty = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer", local_files_only=True)
    encoder = build_tiny_components()["text_encoder"]
    with pytest.raises(ModelLoadError, match="unknown token"):
        check_tokenizer(empty, text_encoder=encoder, where=tmp_path)
    check_tokenizer(build_tiny_tokenizer(), text_encoder=encoder, where="tiny")  # the good one passes


def test_transformer_blocks_have_the_lora_target_layers() -> None:
    unet = build_tiny_components()["unet"]
    modules = dict(unet.named_modules())
    blocks = [name for name in modules if name.endswith(".transformer_blocks.0")]
    assert len(blocks) == 4  # one in the down level, one in the mid block, two in the up level
    for block in blocks:
        for leaf in (
            "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
            "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
            "ff.net.0.proj", "ff.net.2",
        ):  # fmt: skip
            assert isinstance(modules[f"{block}.{leaf}"], torch.nn.Linear), f"{block}.{leaf}"
    assert modules[f"{blocks[0]}.attn2.to_k"].in_features == 32  # cross-attends to the text encoder


def test_tiny_pipeline_generates_64px_offline_and_reproducibly() -> None:
    pipe = build_tiny_pipeline(seed=0)
    assert pipe.vae_scale_factor == 2 and pipe.unet.config.sample_size == 32
    first = generate(pipe, seed=0)
    assert np.array_equal(first, generate(build_tiny_pipeline(seed=0), seed=0))
    assert not np.array_equal(first, generate(pipe, seed=1))
    assert first.std() > 0  # not a blank image


def test_training_noise_scheduler_shares_the_noise_schedule() -> None:
    inference = build_tiny_pipeline().scheduler
    training: Any = training_noise_scheduler(inference)
    assert training.config.num_train_timesteps == 1000
    assert torch.allclose(training.alphas_cumprod, inference.alphas_cumprod)
    assert isinstance(training, DDPMScheduler)


# The real model configs -----------------------------------------------------------------------------


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("kind", "pipeline_class", "scheduler_class", "unet_params"),
    [
        ("sd15", "StableDiffusionPipeline", PNDMScheduler, 859_520_964),
        ("sdxl", "StableDiffusionXLPipeline", EulerDiscreteScheduler, 2_567_463_684),
    ],
)
def test_real_model_configs_construct_without_weights(
    kind: str, pipeline_class: str, scheduler_class: Any, unet_params: int
) -> None:
    folder = configs_dir() / "models" / kind
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == pipeline_class
    with init_empty_weights():  # parameters on the meta device: no memory for the weights
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))
    assert next(unet.parameters()).device.type == "meta"
    assert _count(unet) == unet_params  # SD 1.5 ≈ 860 M, SDXL ≈ 2.6 B
    assert _count(vae) == 83_653_863
    assert _count(text_encoder) == 123_060_480  # CLIP ViT-L/14 text tower
    scheduler = scheduler_class.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    assert scheduler.config.beta_schedule == "scaled_linear"
    for name in ("tokenizer", "tokenizer_2") if kind == "sdxl" else ("tokenizer",):
        config = json.loads((folder / name / "tokenizer_config.json").read_text())
        assert config["model_max_length"] == 77 and config["tokenizer_class"] == "CLIPTokenizer"
    if kind == "sdxl":
        with init_empty_weights():
            text_encoder_2 = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder_2")
            )
        assert _count(text_encoder_2) == 694_659_840  # OpenCLIP ViT-bigG/14 text tower
        assert unet.config.cross_attention_dim == 768 + 1280


# load_base_pipeline ---------------------------------------------------------------------------------


def test_no_base_model_gives_the_tiny_pipeline() -> None:
    pipe = load_base_pipeline(None)
    reference = build_tiny_pipeline(seed=0)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert np.array_equal(generate(pipe), generate(reference))


def test_diffusers_folder_loads_back_offline(tmp_path: Path) -> None:
    original = build_tiny_pipeline(seed=3)
    original.save_pretrained(tmp_path / "model")
    loaded = load_base_pipeline(tmp_path / "model", kind="sdxl")  # a folder's own index decides the kind
    assert isinstance(loaded, StableDiffusionPipeline)
    assert loaded.safety_checker is None
    assert type(loaded.scheduler) is type(original.scheduler)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert loaded.tokenizer(PROMPT).input_ids == original.tokenizer(PROMPT).input_ids
    assert np.array_equal(generate(loaded), generate(original))


def test_requested_dtype_is_applied(tmp_path: Path) -> None:
    assert load_base_pipeline(None, torch_dtype=torch.bfloat16).unet.dtype == torch.bfloat16
    build_tiny_pipeline().save_pretrained(tmp_path / "model")
    loaded = load_base_pipeline(tmp_path / "model", torch_dtype=torch.bfloat16)
    assert loaded.unet.dtype == loaded.text_encoder.dtype == torch.bfloat16


def test_diffusers_folder_without_tokenizer_vocabulary_is_refused(tmp_path: Path) -> None:
    build_tiny_pipeline().save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="unknown token"):
        load_base_pipeline(tmp_path / "model")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "no model_index.json"),
        (lambda root: _touch(root / "model.ckpt"), "pickle"),
        (lambda root: _touch(root / "model.gguf"), "neither a diffusers folder nor a .safetensors"),
        (lambda root: _touch(root / "broken.safetensors"), "not a readable .safetensors"),
    ],
)
def test_bad_base_model_paths_raise_model_load_error(tmp_path: Path, make: object, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as caught:
        load_base_pipeline(make(tmp_path))  # type: ignore[operator]
    assert isinstance(caught.value, ValueError)


def _touch(path: Path) -> Path:
    path.write_bytes(b"not a model")
    return path


# Single-file checkpoints, end to end with a miniature SD 1.5 ---------------------------------------
#
# A real SD 1.5 checkpoint is 2–4 GB. The same code path is exercised with an SD 1.5-*layout* model of
# tiny width: its diffusers weights are renamed to the original (CompVis/LDM) key names — the inverse
# of what diffusers' single-file loader does — saved as one .safetensors file, and loaded back through
# `load_base_pipeline` with a config folder and a tokenizer folder, as an operator would.


def _ldm_unet_renames() -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) for the SD 1.5 UNet layout: 4 levels, 2 resnets each."""
    renames = [
        ("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
        ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.0.", "middle_block.0."), ("mid_block.resnets.1.", "middle_block.2."),
    ]  # fmt: skip
    for i in range(4):
        for j in range(2):
            renames.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{3 * i + j + 1}.0."))
            if i < 3:
                renames.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{3 * i + j + 1}.1."))
        for j in range(3):
            renames.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{3 * i + j}.0."))
            if i > 0:
                renames.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{3 * i + j}.1."))
        if i < 3:
            renames.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{3 * (i + 1)}.0.op."))
            renames.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}."))
    return renames


_LDM_RESNET_PARTS = [
    ("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection."),
]  # fmt: skip


def _to_ldm_unet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = key
        for hf, ldm in _ldm_unet_renames():
            if new.startswith(hf):
                new = ldm + new[len(hf) :]
                if ".resnets." in key or key.startswith("mid_block.resnets"):
                    for hf_part, ldm_part in _LDM_RESNET_PARTS:
                        new = new.replace(hf_part, ldm_part)
                break
        out["model.diffusion_model." + new] = value
    return out


def _to_ldm_vae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renames = [("mid_block.attentions.0.", "mid.attn_1."), ("mid_block.resnets.0.", "mid.block_1."),
               ("mid_block.resnets.1.", "mid.block_2."), ("conv_norm_out.", "norm_out.")]  # fmt: skip
    for i in range(4):
        renames.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."))
        renames.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        renames.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{3 - i}.block."))
        renames.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{3 - i}.upsample."))
    attention = [
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ]
    out = {}
    for key, value in state.items():
        new = key
        for hf, ldm in renames:
            new = new.replace(hf, ldm)
        new = new.replace("conv_shortcut.", "nin_shortcut.")
        if ".attn_1." in new:
            for hf, ldm in attention:
                new = new.replace(hf, ldm)
            if new.endswith(".weight") and value.ndim == 2:
                value = value[:, :, None, None]  # LDM's attention uses 1×1 convolutions
        out["first_stage_model." + new] = value
    return out


def _mini_sd15_configs(folder: Path) -> Path:
    """configs/models/sd15 with the same layout but tiny widths, so the checkpoint is a few MB."""
    shutil.copytree(configs_dir() / "models" / "sd15", folder)

    def patch(name: str, **changes: object) -> None:
        path = folder / name / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    patch("unet", block_out_channels=[32, 32, 64, 64], norm_num_groups=8, cross_attention_dim=32, sample_size=8)
    patch("vae", block_out_channels=[32, 32, 64, 64], norm_num_groups=8, sample_size=64, layers_per_block=1)
    tokens = len(build_tiny_tokenizer())
    patch("text_encoder", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
          projection_dim=32, vocab_size=tokens, bos_token_id=tokens - 2, eos_token_id=tokens - 1)  # fmt: skip
    return folder


def test_single_file_checkpoint_loads_offline_with_configs_and_tokenizer_folder(tmp_path: Path) -> None:
    configs = _mini_sd15_configs(tmp_path / "configs")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs, subfolder="unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs, subfolder="vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(configs, subfolder="text_encoder"))
    checkpoint = {
        **_to_ldm_unet(unet.state_dict()),
        **_to_ldm_vae(vae.state_dict()),
        **{"cond_stage_model.transformer.text_model." + k: v for k, v in text_encoder.state_dict().items()},
    }
    file = tmp_path / "mini-sd15.safetensors"
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, file)
    assert detect_checkpoint_kind(file) == "sd15"

    with pytest.raises(ModelLoadError, match="base_model_tokenizer"):
        load_base_pipeline(file, config_dir=configs)
    with pytest.raises(ModelLoadError, match="is an sd15 checkpoint"):
        load_base_pipeline(file, kind="sdxl", config_dir=configs)
    with pytest.raises(ModelLoadError, match="no tokenizer vocabulary"):
        load_base_pipeline(file, config_dir=configs, tokenizer_dir=configs / "tokenizer")

    tokenizer_dir = write_tiny_vocab_folder(tmp_path / "tokenizer")
    pipe = load_base_pipeline(file, config_dir=configs, tokenizer_dir=tokenizer_dir)
    assert isinstance(pipe, StableDiffusionPipeline) and pipe.safety_checker is None
    assert isinstance(pipe.scheduler, PNDMScheduler)
    for name, original in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        a, b = original.state_dict(), getattr(pipe, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} weights changed on the way through the file"
    assert pipe.tokenizer(PROMPT).input_ids == build_tiny_tokenizer()(PROMPT).input_ids
    image = pipe(PROMPT, num_inference_steps=2, height=64, width=64).images[0]
    assert image.size == (64, 64)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("conditioner.embedders.1.model.positional_embedding", "sdxl"),
        ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight", "sd15"),
        ("conditioner.embedders.0.model.text_projection", "SDXL refiner"),
        ("cond_stage_model.model.token_embedding.weight", "Stable Diffusion 2.x"),
    ],
)
def test_checkpoint_kind_is_read_from_tensor_names(tmp_path: Path, key: str, expected: str) -> None:
    file = tmp_path / "model.safetensors"
    save_file({key: torch.zeros(1), "model.diffusion_model.conv_in.weight": torch.zeros(1)}, file)
    if expected in ("sd15", "sdxl"):
        assert detect_checkpoint_kind(file) == expected
    else:
        with pytest.raises(ModelLoadError, match=expected):
            detect_checkpoint_kind(file)


def test_sdxl_single_file_asks_for_both_tokenizers(tmp_path: Path) -> None:
    file = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.1.model.positional_embedding": torch.zeros(1)}, file)
    with pytest.raises(ModelLoadError, match="tokenizer/ and tokenizer_2/"):
        load_base_pipeline(file)
    write_tiny_vocab_folder(tmp_path / "sdxl-folder" / "tokenizer")  # tokenizer_2/ missing
    with pytest.raises(ModelLoadError, match="tokenizer_2 has no tokenizer vocabulary"):
        load_base_pipeline(file, tokenizer_dir=tmp_path / "sdxl-folder")


def test_single_file_without_text_encoder_needs_a_kind(tmp_path: Path) -> None:
    file = tmp_path / "unet-only.safetensors"
    save_file({"model.diffusion_model.conv_in.weight": torch.zeros(1)}, file)
    assert detect_checkpoint_kind(file) is None
    with pytest.raises(ModelLoadError, match="base_model_kind"):
        load_base_pipeline(file)


@pytest.mark.slow
def test_random_sd15_pipeline_has_the_real_shape_and_runs() -> None:
    pipe = build_random_sd15_pipeline(seed=0)  # ≈1.07 B parameters, ≈4.3 GB, ~15 s on a laptop CPU
    assert _count(pipe.unet) == 859_520_964
    assert len(pipe.tokenizer) <= pipe.text_encoder.config.vocab_size == 49_408
    generator = torch.Generator("cpu").manual_seed(0)
    image = pipe(PROMPT, num_inference_steps=1, height=64, width=64, generator=generator).images[0]
    assert image.size == (64, 64)


def test_configs_dir_is_the_repository_configs_folder() -> None:
    assert configs_dir() == Path(__file__).resolve().parents[1] / "configs"
