"""Load the base model offline: the built-in tiny model, a diffusers folder, or a single-file checkpoint.

Why every path here is local-only: the product must never fetch weights at run time (DESIGN.md), and
diffusers' single-file loader quietly reaches for the Hugging Face Hub when it lacks component configs
or a tokenizer. So single files are loaded with the component configs shipped in `configs/models/KIND`
(`config=`), with `local_files_only=True`, and with tokenizers that we load ourselves from a folder the
operator names: a `.safetensors` checkpoint holds no tokenizer, and the CLIP BPE vocabulary (~1.6 MB) is
not part of this repository.

Every failure is a `ModelLoadError` that says what is missing and which setting to change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

# From their modules, not `diffusers`: the package root's lazy imports show type checkers dummy classes.
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from safetensors import SafetensorError, safe_open
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, PreTrainedModel

from mimicsafe.errors import MimicSafeError
from mimicsafe.models.tiny import build_tiny_pipeline, build_tiny_tokenizer
from mimicsafe.settings import Settings

Kind = Literal["sd15", "sdxl"]

TINY_MODEL_NAME = "mimicsafe-tiny-seed0"
"""The built-in tiny model (`build_tiny_pipeline(seed=0)`), as training and generation record it."""

# Names the operator sees in error messages. The settings object maps them to MIMICSAFE_* variables.
BASE_MODEL_SETTING = "base_model (MIMICSAFE_BASE_MODEL)"
KIND_SETTING = "base_model_kind (MIMICSAFE_BASE_MODEL_KIND)"
TOKENIZER_SETTING = "base_model_tokenizer (MIMICSAFE_BASE_MODEL_TOKENIZER)"

_PIPELINE_KINDS: dict[str, Kind] = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
}
_PIPELINE_CLASSES: dict[Kind, Any] = {
    "sd15": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}
_TOKENIZER_NAMES: dict[Kind, tuple[str, ...]] = {"sd15": ("tokenizer",), "sdxl": ("tokenizer", "tokenizer_2")}
_VOCAB_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))
_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
_PROBE_TEXT = "a portrait of a cat in the garden"


class ModelLoadError(MimicSafeError, ValueError):
    """The base model could not be loaded; the message names what is missing and what to set."""


# Where the component configs live ---------------------------------------------------------------------


def base_model_name(settings: Settings) -> str:
    """The configured base model as outputs and LoRA files record it: a model name, never a path (the
    server's directories stay on the server): the tiny model's name, a folder's or a file's own name."""
    if settings.base_model is None:
        return TINY_MODEL_NAME
    return Path(settings.base_model).expanduser().name


def configs_dir() -> Path:
    """The repository's `configs/` folder, next to the `mimicsafe/` package.

    A non-editable install does not carry it; then the caller must name the folder explicitly
    (`config_dir=` of `load_base_pipeline`).
    """
    path = Path(__file__).resolve().parents[2] / "configs"
    if not (path / "models").is_dir():
        raise ModelLoadError(
            f"the configs folder was not found at {path}: mimicsafe seems to be installed without the "
            "repository's configs/ folder. Run from a checkout (pip install -e .) or pass the folder "
            "holding models/sd15 and models/sdxl explicitly."
        )
    return path


def model_config_dir(kind: Kind) -> Path:
    """`configs/models/KIND`: the component configs (no weights) of a real SD 1.5 or SDXL model."""
    if kind not in _PIPELINE_CLASSES:
        raise ModelLoadError(f"unknown model kind {kind!r}: set {KIND_SETTING} to 'sd15' or 'sdxl'")
    return configs_dir() / "models" / kind


# The entry point -----------------------------------------------------------------------------------


def load_base_pipeline(
    base_model: str | Path | None,
    *,
    kind: Kind | None = None,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    tokenizer_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
) -> DiffusionPipeline:
    """The base text-to-image pipeline, loaded without any network access.

    - `base_model=None`: the built-in tiny model (seed 0), whatever `kind` says.
    - a diffusers folder (with `model_index.json`): its own `model_index.json` decides SD 1.x or SDXL;
      `kind`, `tokenizer_dir` and `config_dir` are not used.
    - a `.safetensors` file (an original Stable Diffusion / SDXL checkpoint): `kind` is read from the
      file's tensor names when not given (and must agree when given); components are configured from
      `config_dir` (default `configs/models/KIND`); tokenizers come from `tokenizer_dir`, a diffusers
      folder of the same kind (its `tokenizer/`, and `tokenizer_2/` for SDXL) or, for SD 1.5, a
      tokenizer folder itself.

    The safety checker of SD 1.x folders is not loaded.
    """
    pipe: Any
    if base_model is None:
        pipe = build_tiny_pipeline(seed=0, device=device)
        return pipe.to(dtype=torch_dtype) if torch_dtype != torch.float32 else pipe
    path = Path(base_model).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"the base model {str(path)!r} does not exist: set {BASE_MODEL_SETTING} to a diffusers folder or "
            "a .safetensors checkpoint on this machine, or leave it empty for the built-in tiny model"
        )
    if path.is_dir():
        pipe = _load_diffusers_folder(path, torch_dtype=torch_dtype)
    else:
        pipe = _load_single_file(
            path, kind=kind, torch_dtype=torch_dtype, tokenizer_dir=tokenizer_dir, config_dir=config_dir
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_diffusers_folder(path: Path, *, torch_dtype: torch.dtype) -> DiffusionPipeline:
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(
            f"{path} is a folder but not a diffusers model (it has no model_index.json): set "
            f"{BASE_MODEL_SETTING} to the folder that holds model_index.json, unet/, vae/, text_encoder/…"
        )
    try:
        class_name = json.loads(index_file.read_text(encoding="utf-8"))["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{index_file} is not a readable diffusers model index: {exc}") from exc
    if class_name not in _PIPELINE_KINDS:
        raise ModelLoadError(
            f"{path} holds a {class_name}; only Stable Diffusion 1.x/2.x (StableDiffusionPipeline) and "
            f"SDXL (StableDiffusionXLPipeline) text-to-image models are supported: set {BASE_MODEL_SETTING} "
            "to one of those"
        )
    extra: dict[str, object] = {}
    if class_name == "StableDiffusionPipeline":
        extra = {"safety_checker": None, "requires_safety_checker": False}
    try:
        pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True, dtype=torch_dtype, **extra)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"could not load the diffusers folder {path}: {exc}. Check that every component folder named "
            "in model_index.json is present with its config and weights (nothing is downloaded)."
        ) from exc
    for name in _TOKENIZER_NAMES[_PIPELINE_KINDS[class_name]]:
        encoder_name = name.replace("tokenizer", "text_encoder")
        check_tokenizer(getattr(pipe, name), text_encoder=getattr(pipe, encoder_name), where=path / name)
    return pipe


# Single-file checkpoints ---------------------------------------------------------------------------


def detect_checkpoint_kind(path: str | Path) -> Kind | None:
    """'sd15' or 'sdxl' from the tensor names of an original-format `.safetensors` checkpoint.

    Reads only the file header. None when the file has no text encoder that tells (e.g. a UNet-only
    file). Raises `ModelLoadError` for unreadable files and for families this product does not load
    (SD 2.x, the SDXL refiner).
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except (OSError, SafetensorError) as exc:
        raise ModelLoadError(f"{path} is not a readable .safetensors file: {exc}") from exc
    if any(key.startswith("conditioner.embedders.1.model.") for key in keys):
        return "sdxl"
    if any(key.startswith("conditioner.embedders.0.model.") for key in keys):
        raise ModelLoadError(f"{path} is an SDXL refiner checkpoint; use an SDXL base checkpoint")
    if any(key.startswith("cond_stage_model.transformer.") for key in keys):
        return "sd15"
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        raise ModelLoadError(
            f"{path} is a Stable Diffusion 2.x checkpoint; single files of SD 1.5 and SDXL are supported, "
            "SD 2.x only as a diffusers folder"
        )
    return None


def _load_single_file(
    path: Path,
    *,
    kind: Kind | None,
    torch_dtype: torch.dtype,
    tokenizer_dir: str | Path | None,
    config_dir: str | Path | None,
) -> DiffusionPipeline:
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"{path.name} is a pickle checkpoint, which can run arbitrary code when loaded: convert it to "
            f".safetensors (or a diffusers folder) and point {BASE_MODEL_SETTING} at that"
        )
    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(
            f"{path.name} is neither a diffusers folder nor a .safetensors checkpoint: "
            f"set {BASE_MODEL_SETTING} to one of those"
        )
    detected = detect_checkpoint_kind(path)
    if kind is None and detected is None:
        raise ModelLoadError(
            f"cannot tell whether {path.name} is SD 1.5 or SDXL (it holds no text encoder): set {KIND_SETTING}"
        )
    if kind is not None and detected is not None and kind != detected:
        raise ModelLoadError(
            f"{path.name} is an {detected} checkpoint but {KIND_SETTING} is {kind!r}: set it to {detected!r}"
        )
    resolved: Kind = kind or detected  # type: ignore[assignment]
    configs = Path(config_dir) if config_dir is not None else model_config_dir(resolved)
    if not (configs / "model_index.json").is_file():
        raise ModelLoadError(f"no component configs for {resolved} at {configs} (model_index.json is missing)")
    tokenizers = _load_tokenizers(resolved, tokenizer_dir)
    extra: dict[str, object] = {}
    if resolved == "sd15":
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    try:
        pipe = _PIPELINE_CLASSES[resolved].from_single_file(
            str(path),
            config=str(configs),
            local_files_only=True,
            dtype=torch_dtype,
            **tokenizers,
            **extra,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"could not load {path.name} as an {resolved} checkpoint with the configs in {configs}: {exc}"
        ) from exc
    for name, tokenizer in tokenizers.items():
        check_tokenizer(tokenizer, text_encoder=getattr(pipe, name.replace("tokenizer", "text_encoder")), where=name)
    return pipe


def _load_tokenizers(kind: Kind, tokenizer_dir: str | Path | None) -> dict[str, CLIPTokenizer]:
    """The tokenizer(s) for a single-file checkpoint, from an operator-named local folder."""
    names = _TOKENIZER_NAMES[kind]
    if tokenizer_dir is None:
        raise ModelLoadError(
            f"a single-file checkpoint carries no tokenizer and none is bundled: set {TOKENIZER_SETTING} "
            f"to a diffusers {kind} folder that has {' and '.join(n + '/' for n in names)} (vocab.json + "
            "merges.txt or tokenizer.json), e.g. a downloaded copy of the matching diffusers model"
        )
    root = Path(tokenizer_dir).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"the tokenizer folder {str(root)!r} does not exist: fix {TOKENIZER_SETTING}")
    folders = {name: root / name for name in names}
    if kind == "sd15" and not folders["tokenizer"].is_dir():
        folders["tokenizer"] = root  # a tokenizer folder itself
    loaded: dict[str, CLIPTokenizer] = {}
    for name, folder in folders.items():
        if not any(all((folder / f).is_file() for f in files) for files in _VOCAB_FILES):
            raise ModelLoadError(
                f"{folder} has no tokenizer vocabulary (vocab.json + merges.txt, or tokenizer.json): set "
                f"{TOKENIZER_SETTING} to a diffusers {kind} folder whose {name}/ holds them"
            )
        try:
            loaded[name] = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load the tokenizer in {folder}: {exc}") from exc
    return loaded


# Checks and benchmark helpers ------------------------------------------------------------------------


def check_tokenizer(tokenizer: CLIPTokenizer, *, text_encoder: PreTrainedModel, where: object) -> None:
    """Refuse a tokenizer that would silently turn prompts into unknown tokens or overflow the encoder.

    transformers builds a CLIPTokenizer from a folder with only tokenizer_config.json without complaint,
    with a 3-token vocabulary: every prompt then encodes to the unknown token and generation ignores it.
    """
    ids = tokenizer(_PROBE_TEXT).input_ids
    content = [i for i in ids if i not in (tokenizer.bos_token_id, tokenizer.eos_token_id)]
    if not content or all(i == tokenizer.unk_token_id for i in content):
        raise ModelLoadError(
            f"the tokenizer from {where} maps ordinary words to the unknown token (its vocabulary has "
            f"{len(tokenizer)} entries): its folder lacks vocab.json/merges.txt or tokenizer.json"
        )
    vocab_size = text_encoder.config.vocab_size
    if len(tokenizer) > vocab_size:
        raise ModelLoadError(
            f"the tokenizer from {where} has {len(tokenizer)} tokens but the text encoder only {vocab_size}: "
            "they belong to different models"
        )


def build_random_sd15_pipeline(
    seed: int = 0, *, torch_dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> StableDiffusionPipeline:
    """An SD 1.5-shaped pipeline (≈1.07 B parameters) with seeded random weights, for benchmarks.

    UNet, VAE, text encoder and scheduler come from `configs/models/sd15`. The real CLIP vocabulary is
    not bundled, so the tokenizer is the tiny one (1,344 tokens, 77 positions); the text encoder keeps
    the real 49,408-entry embedding table, which covers every tiny id. Speed and memory match the real
    model; the images are noise. Needs ≈4.3 GB of memory in float32.
    """
    configs = model_config_dir("sd15")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs, subfolder="unet"))
    torch.manual_seed(seed)
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs, subfolder="vae"))
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig.from_pretrained(configs, subfolder="text_encoder", local_files_only=True)
    )
    scheduler = PNDMScheduler.from_pretrained(configs, subfolder="scheduler", local_files_only=True)
    absent: dict[str, Any] = {"safety_checker": None, "feature_extractor": None, "image_encoder": None}
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tiny_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        requires_safety_checker=False,
        **absent,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    return pipe.to(dtype=torch_dtype) if torch_dtype != torch.float32 else pipe
