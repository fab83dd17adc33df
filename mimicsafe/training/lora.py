"""LoRA layers (peft) on the UNet and text encoder, and the two file layouts we export.

Targets, as kohya's sd-scripts (`networks/lora.py`) chooses them for Stable Diffusion:
- `kohya`: every `nn.Linear` and 1×1 `nn.Conv2d` inside a `Transformer2DModel` — attention
  q/k/v/out, the feed-forward `ff.net.0.proj`/`ff.net.2`, and `proj_in`/`proj_out`;
- `attention`: only `to_q`/`to_k`/`to_v`/`to_out.0`, as diffusers' `train_text_to_image_lora.py`;
- LoCon (`conv_rank > 0`): the 3×3 convolutions of the ResNet blocks and of the down/upsamplers;
- text encoder: the linear layers of each CLIP attention and MLP.

Layouts (both load with diffusers' `pipe.load_lora_weights`):
- diffusers: `unet.<module>.lora_A.weight` / `.lora_B.weight` (and `text_encoder.`), with each module's
  scale alpha/rank folded into `lora_B`, so every loader — from a file or from a dict — applies it
  the same way (diffusers' convention is scale 1 when no alphas are given);
- kohya: `lora_unet_<module_with_underscores>.lora_down.weight` / `.lora_up.weight` / `.alpha`
  (`lora_te_` for the text encoder).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from diffusers.models.modeling_utils import ModelMixin
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from torch import nn

from mimicsafe.training.config import Targets

ATTENTION_LEAVES = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_LEAVES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


@dataclass(frozen=True)
class LoraLayout:
    """Which modules of one model carry LoRA, and at what rank and alpha."""

    prefix: str  # "unet" | "text_encoder"
    ranks: dict[str, int]  # module name → rank
    alphas: dict[str, float]  # module name → alpha

    def scale(self, module: str) -> float:
        return self.alphas[module] / self.ranks[module]


def unet_linear_targets(unet: nn.Module, targets: Targets) -> list[str]:
    names = []
    for name, module in unet.named_modules():
        if targets == "attention":
            if isinstance(module, nn.Linear) and name.endswith(ATTENTION_LEAVES) and ".attn" in name:
                names.append(name)
            continue
        in_transformer = ".attentions." in name and (".transformer_blocks." in name or name.endswith(
            ("proj_in", "proj_out")))
        is_1x1 = isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
        if in_transformer and (isinstance(module, nn.Linear) or is_1x1):
            names.append(name)
    return names


def unet_conv_targets(unet: nn.Module) -> list[str]:
    names = []
    for name, module in unet.named_modules():
        if not isinstance(module, nn.Conv2d) or module.kernel_size != (3, 3):
            continue
        if ".resnets." in name and name.endswith(("conv1", "conv2")) or ("samplers." in name and name.endswith("conv")):
            names.append(name)
    return names


def text_encoder_targets(text_encoder: nn.Module) -> list[str]:
    return [name for name, module in text_encoder.named_modules()
            if isinstance(module, nn.Linear) and name.endswith(TEXT_ENCODER_LEAVES) and ".layers." in name]


def add_lora(model: nn.Module, *, prefix: str, linear: Iterable[str], rank: int, alpha: float,
             conv: Iterable[str] = (), conv_rank: int = 0, conv_alpha: float = 1.0) -> LoraLayout:
    """Add a trainable LoRA adapter; lora_A kaiming-uniform, lora_B zero (as kohya and peft initialise)."""
    linear, conv = list(linear), list(conv) if conv_rank > 0 else []
    if not linear:
        raise ValueError(f"{prefix}: no layers to put LoRA on (is this a Stable Diffusion model?)")
    # peft annotates lora_alpha as int, but only uses it as alpha / r (or / sqrt(r)): a float alpha works.
    config = LoraConfig(r=rank, lora_alpha=alpha,  # type: ignore[arg-type]
                        target_modules=linear + conv, init_lora_weights=True,
                        rank_pattern={name: conv_rank for name in conv},
                        alpha_pattern={name: conv_alpha for name in conv})
    if isinstance(model, ModelMixin):
        model.add_adapter(config)  # diffusers' PEFT mixin (what its own training scripts call)
    else:
        # transformers' `add_adapter` wants a newer peft than diffusers does; peft's own injection is the
        # same layers without that check.
        inject_adapter_in_model(config, model)
    ranks = {name: rank for name in linear} | {name: conv_rank for name in conv}
    alphas = {name: float(alpha) for name in linear} | {name: float(conv_alpha) for name in conv}
    return LoraLayout(prefix, ranks, alphas)


def lora_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """`<module>.lora_A.weight` / `<module>.lora_B.weight`, float32 on the CPU."""
    state = get_peft_model_state_dict(model)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def _modules(weights: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k.removesuffix(".lora_A.weight") for k in weights if k.endswith(".lora_A.weight"))


def to_diffusers(parts: Iterable[tuple[LoraLayout, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for layout, weights in parts:
        for module in _modules(weights):
            out[f"{layout.prefix}.{module}.lora_A.weight"] = weights[f"{module}.lora_A.weight"].clone()
            out[f"{layout.prefix}.{module}.lora_B.weight"] = weights[f"{module}.lora_B.weight"] * layout.scale(module)
    return out


_KOHYA_PREFIX = {"unet": "lora_unet_", "text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}


def to_kohya(parts: Iterable[tuple[LoraLayout, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for layout, weights in parts:
        for module in _modules(weights):
            if layout.prefix.startswith("text_encoder") and not module.startswith("text_model."):
                module_path = f"text_model.{module}"  # transformers 5 dropped the wrapper kohya's names keep
            else:
                module_path = module
            name = _KOHYA_PREFIX[layout.prefix] + module_path.replace(".", "_")
            out[f"{name}.lora_down.weight"] = weights[f"{module}.lora_A.weight"].clone()
            out[f"{name}.lora_up.weight"] = weights[f"{module}.lora_B.weight"].clone()
            out[f"{name}.alpha"] = torch.tensor(layout.alphas[module], dtype=torch.float32)
    return out


def load_lora_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Put saved adapter weights (from `lora_weights`) back into a model that has the same adapter."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, weights)
    # peft annotates the result as a bare `namedtuple`; it is torch's `load_state_dict` result.
    unexpected: list[str] = result.unexpected_keys  # type: ignore[attr-defined]
    if unexpected:
        raise ValueError(f"checkpoint has LoRA weights this model lacks: {unexpected[:3]}")
