"""The provenance a LoRA file carries in its `.safetensors` header, and the file itself.

Three families of keys, all strings (the format allows nothing else):
- `ss_*`: those of kohya's sd-scripts that apply, so existing tools show them (never a file path:
  datasets and models are named, not located);
- `modelspec.*`: the Stability AI model-spec fields (title, author = the artist, architecture,
  trigger phrase, date, resolution);
- `mimicsafe.*`: what this product vouches for — the dataset manifest's SHA-256, item count, gate
  policy version, job id, instance id, the training config and library versions.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
from safetensors.torch import save

from mimicsafe.training.base import ARCHITECTURES, KOHYA_BASE_VERSIONS
from mimicsafe.training.captions import tag_frequency
from mimicsafe.training.config import TrainingConfig, library_versions

KeyFormat = Literal["diffusers", "kohya"]

# Anything that looks like a filesystem path in a metadata value is refused (tests assert the same).
_PATH_LIKE = re.compile(r"(^|[\s\"'(=:,\[])(/[^\s\"']+/|~/|[A-Za-z]:\\|\.\.?/)")


@dataclass(frozen=True)
class Provenance:
    """Who and what a LoRA came from (everything the metadata needs besides the trained weights)."""

    artist: str
    job_id: int
    instance_id: str
    dataset_sha256: str
    item_count: int
    policy_version: str
    base_model_name: str
    base_model_sha256: str
    title: str


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def build_metadata(*, config: TrainingConfig, provenance: Provenance, result: Any, key_format: KeyFormat,
                   tensor_hash: str) -> dict[str, str]:
    """The header of one exported file. `result` is the trainer's `TrainingResult`."""
    trigger = config.trigger_word.replace("{artist}", provenance.artist)
    resolution = f"{config.resolution}x{config.resolution}"
    network_args = {"conv_dim": str(config.conv_rank), "conv_alpha": str(config.conv_alpha)} if config.conv_rank else {}
    kohya = {
        "ss_session_id": str(provenance.job_id),
        "ss_training_started_at": str(result.started_at.timestamp()),
        "ss_training_finished_at": str(result.finished_at.timestamp()),
        "ss_output_name": provenance.title,
        "ss_sd_model_name": provenance.base_model_name,
        "ss_new_sd_model_hash": provenance.base_model_sha256,
        "ss_base_model_version": KOHYA_BASE_VERSIONS[config.model_family],
        "ss_v2": "False",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.rank),
        "ss_network_alpha": str(config.alpha),
        "ss_network_args": _json(network_args),
        "ss_network_train_unet_only": str(not config.train_text_encoder),
        "ss_num_train_images": str(provenance.item_count),
        "ss_num_reg_images": "0",
        "ss_num_batches_per_epoch": str(-(-provenance.item_count // config.batch_size)),
        "ss_num_epochs": str(result.epochs),
        "ss_epoch": str(result.epochs),
        "ss_steps": str(result.steps),
        "ss_max_train_steps": str(config.max_train_steps),
        "ss_batch_size_per_device": str(config.batch_size),
        "ss_gradient_accumulation_steps": str(config.gradient_accumulation_steps),
        "ss_learning_rate": str(config.learning_rate),
        "ss_unet_lr": str(config.learning_rate),
        "ss_text_encoder_lr": str(config.text_encoder_lr if config.train_text_encoder else 0.0),
        "ss_lr_scheduler": config.lr_scheduler,
        "ss_lr_warmup_steps": str(config.lr_warmup_steps),
        "ss_optimizer": {"adamw": "torch.optim.AdamW", "adamw8bit": "bitsandbytes.optim.AdamW8bit",
                         "prodigy": "prodigyopt.Prodigy"}[config.optimizer],
        "ss_max_grad_norm": str(config.max_grad_norm),
        "ss_mixed_precision": result.precision,
        "ss_full_fp16": "False",
        "ss_gradient_checkpointing": str(config.gradient_checkpointing),
        "ss_seed": str(config.seed),
        "ss_noise_offset": str(config.noise_offset),
        "ss_min_snr_gamma": str(config.min_snr_gamma),
        "ss_clip_skip": str(config.clip_skip),
        "ss_resolution": f"({config.resolution}, {config.resolution})",
        "ss_enable_bucket": "True",
        "ss_bucket_no_upscale": "True",
        "ss_bucket_info": _json({"buckets": result.buckets}),
        "ss_shuffle_caption": str(config.shuffle_tags),
        "ss_keep_tokens": str(config.keep_tokens),
        "ss_caption_dropout_rate": str(config.caption_dropout_rate),
        "ss_cache_latents": str(config.cache_latents),
        "ss_dataset_dirs": _json({"mimicsafe-dataset": {"n_repeats": 1, "img_count": provenance.item_count}}),
        "ss_tag_frequency": _json({"mimicsafe-dataset": tag_frequency(result.captions)}),
        "ss_sshs_model_hash": tensor_hash,
    }
    modelspec = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": ARCHITECTURES[config.model_family],
        "modelspec.implementation": "diffusers",
        "modelspec.title": provenance.title,
        "modelspec.author": provenance.artist,
        "modelspec.description": f"Style LoRA of {provenance.artist}, trained only on their own accepted uploads",
        "modelspec.date": result.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "modelspec.resolution": resolution,
        "modelspec.trigger_phrase": trigger,
        "modelspec.prediction_type": "epsilon",
    }
    ours = {
        "mimicsafe.format": key_format,
        "mimicsafe.dataset_manifest_sha256": provenance.dataset_sha256,
        "mimicsafe.item_count": str(provenance.item_count),
        "mimicsafe.gate_policy_version": provenance.policy_version,
        "mimicsafe.job_id": str(provenance.job_id),
        "mimicsafe.instance_id": provenance.instance_id,
        "mimicsafe.artist": provenance.artist,
        "mimicsafe.base_model": provenance.base_model_name,
        "mimicsafe.base_model_sha256": provenance.base_model_sha256,
        "mimicsafe.training_config": _json(config.to_dict()),
        "mimicsafe.library_versions": _json(library_versions()),
        "mimicsafe.final_loss": f"{sum(result.losses[-10:]) / len(result.losses[-10:]):.6f}",
    }
    metadata = {**kohya, **modelspec, **ours}
    check_path_free(metadata)
    return metadata


def check_path_free(metadata: dict[str, str]) -> None:
    for key, value in metadata.items():
        if _PATH_LIKE.search(value):
            raise ValueError(f"metadata {key} looks like it holds a file path; refusing to write it: {value[:80]!r}")


def tensor_data_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the file's tensor data (what kohya's `ss_sshs_model_hash` hashes): the header is left
    out, so the hash does not depend on the metadata that records it."""
    data = save(tensors)
    header_length = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + header_length:]).hexdigest()


def lora_file(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The `.safetensors` bytes, written by us so that nothing drops the header."""
    return save(tensors, metadata={"format": "pt", **metadata})
