"""The LoRA training loop (diffusers + peft + accelerate), as numbered steps.

Determinism: every random draw of micro-batch `m` — caption dropout and shuffling, the latent sample,
the noise, the timesteps — comes from generators seeded with (seed, m), and the data order is a pure
function of (seed, epoch). A run resumed from a checkpoint at step k therefore computes exactly the
steps k+1… an uninterrupted run computes (the checkpoint restores LoRA weights, optimizer, scheduler,
grad scaler and global RNG states).

Several processes (`accelerate launch`, see `launch.py`): process r of W trains micro-batch m on the
data order's batch m·W + r, so each optimizer step sees W different batches, whose gradients
accelerate's DDP wrapper averages. With one process this is the plain loop above. Only the main
process reports progress, writes checkpoints and makes samples; a cancel it receives is broadcast so
that every process stops after the same step.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from diffusers.training_utils import compute_snr

from mimicsafe.training import checkpoint, lora
from mimicsafe.training.base import BaseModel, Conditioning
from mimicsafe.training.buckets import BatchOrder, Bucket, bucket_for, prepare
from mimicsafe.training.cache import TensorCache, cache_key
from mimicsafe.training.captions import base_caption, caption_variants, training_caption, trigger_for
from mimicsafe.training.config import TrainingConfig
from mimicsafe.training.errors import DatasetRefused, TrainingCancelled, TrainingDiverged, TrainingFailed
from mimicsafe.training.items import TrainingItem

log = logging.getLogger(__name__)

# fp16 loss scaling starts high and halves on each overflowing step, which it skips; 20 in a row (a scale
# a million times lower) means the run itself diverged.
MAX_SCALER_SKIPS = 20


@dataclass(frozen=True)
class StepReport:
    step: int  # optimizer steps done
    total: int
    loss: float
    learning_rate: float
    epoch: int
    seconds_per_step: float


@dataclass(frozen=True)
class Sample:
    step: int
    prompt: str
    seed: int
    png: bytes


@dataclass
class Hooks:
    """Callbacks into the job. `on_step` may raise `TrainingCancelled` to stop after a step."""

    on_step: Callable[[StepReport], None] | None = None
    on_samples: Callable[[list[Sample]], None] | None = None
    on_checkpoint: Callable[[int], None] | None = None


@dataclass
class TrainingResult:
    layouts: list[lora.LoraLayout]
    weights: list[dict[str, torch.Tensor]]
    losses: list[float]
    steps: int
    epochs: int
    captions: list[str]
    buckets: dict[str, int]
    precision: str
    resumed_from: int | None
    started_at: datetime
    finished_at: datetime
    cache_stats: dict[str, int] = field(default_factory=dict)

    def parts(self) -> list[tuple[lora.LoraLayout, dict[str, torch.Tensor]]]:
        return list(zip(self.layouts, self.weights, strict=True))


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(requested: str, device: str) -> str:
    """'no', 'fp16' or 'bf16'. A CPU always trains in fp32; asking it for fp16/bf16 is an error."""
    if device == "cpu":
        if requested in ("fp16", "bf16"):
            raise ValueError(f"mixed_precision: {requested} needs a GPU; use 'auto' or 'no' on a CPU")
        return "no"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def make_optimizer(config: TrainingConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    betas = (config.adam_beta1, config.adam_beta2)
    if config.optimizer == "adamw":
        # torch's fused kernel (CPU and CUDA): the same AdamW update in one pass over all tensors, instead
        # of a Python loop over each of the hundreds of LoRA matrices.
        return torch.optim.AdamW(groups, betas=betas, eps=config.adam_epsilon, weight_decay=config.weight_decay,
                                 fused=True)
    if config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb  # type: ignore[import-not-found]
        except ImportError:
            raise TrainingFailed("optimizer adamw8bit needs the bitsandbytes package; "
                                 "install it or use adamw") from None
        return bnb.optim.AdamW8bit(groups, betas=betas, eps=config.adam_epsilon, weight_decay=config.weight_decay)
    try:
        from prodigyopt import Prodigy  # type: ignore[import-not-found]
    except ImportError:
        raise TrainingFailed("optimizer prodigy needs the prodigyopt package; install it or use adamw") from None
    return Prodigy(groups, betas=betas, weight_decay=config.weight_decay)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer state, keeping this optimizer's implementation flags: torch restores
    a group's saved `fused`/`foreach`, and a checkpoint written before AdamW was fused would otherwise
    turn it back into the loop implementation, which fp16's GradScaler then calls wrongly."""
    saved = {**saved, "param_groups": [
        {**saved_group, **{key: group[key] for key in ("fused", "foreach") if key in group}}
        for saved_group, group in zip(saved["param_groups"], optimizer.param_groups, strict=True)]}
    optimizer.load_state_dict(saved)


class LoraTrainer:
    def __init__(self, *, config: TrainingConfig, base: BaseModel, items: Sequence[TrainingItem], artist: str,
                 work_dir: Path, cache_dir: Path | None, device: str | None = None,
                 hooks: Hooks | None = None, identity: dict[str, str] | None = None,
                 free_frozen_encoders: bool = False) -> None:
        """`free_frozen_encoders`: once every latent and caption embedding the run can use is cached,
        drop the VAE encoder, the text encoders and (when no samples are made) the VAE decoder from
        `base.pipe`, so that their weights do not count toward the run's peak memory. The pipeline
        cannot encode afterwards: pass True only when the base model is this run's alone."""
        if not items:
            raise DatasetRefused("the dataset is empty")
        self.config = config
        self.base = base
        self.items = list(items)
        self.artist = artist
        self.work_dir = work_dir
        self.cache = TensorCache(cache_dir)
        self.device = device or pick_device()
        self.hooks = hooks or Hooks()
        self.identity = identity or {}  # what a checkpoint must match to be resumed (config, dataset…)
        self.precision = resolve_precision(config.mixed_precision, self.device)
        self.trigger = trigger_for(config.trigger_word, artist)
        self.captions = [base_caption(item.caption, trigger=self.trigger, default_caption=config.default_caption)
                         for item in self.items]
        self.free_frozen_encoders = free_frozen_encoders
        self._text_memo: dict[str, Conditioning] = {}
        self._sample_memo: dict[str, dict[str, torch.Tensor]] = {}
        self._rank, self._world, self._main = 0, 1, True  # this process among the run's (set by `run`)
        self._scaler_skips = 0  # fp16 steps in a row the loss scaler skipped (see `_guard`)

    def _text_encoders(self) -> list[torch.nn.Module]:
        pipe = self.base.pipe
        return [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None))
                if m is not None]

    # The run ----------------------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        cfg = self.config
        started_at = datetime.now(UTC)
        accelerator = Accelerator(mixed_precision=self.precision, cpu=self.device == "cpu")
        self._rank, self._world = accelerator.process_index, accelerator.num_processes
        self._main = accelerator.is_main_process
        if self._world > 1:
            self.device = str(accelerator.device)  # each process on its own GPU
        weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]

        # 1. Freeze the base model; put it on the device in the training precision.
        pipe = self.base.pipe
        self._freeze_base(accelerator.device, weight_dtype)

        # 2. Add LoRA layers (trainable, fp32 even when the base is fp16/bf16).
        unet = pipe.unet
        layouts = [lora.add_lora(unet, prefix="unet", linear=lora.unet_linear_targets(unet, cfg.targets),
                                 rank=cfg.rank, alpha=cfg.alpha, conv=lora.unet_conv_targets(unet),
                                 conv_rank=cfg.conv_rank, conv_alpha=cfg.conv_alpha)]
        trained: list[torch.nn.Module] = [unet]
        if cfg.train_text_encoder:
            te = pipe.text_encoder
            layouts.append(lora.add_lora(te, prefix="text_encoder", linear=lora.text_encoder_targets(te),
                                         rank=cfg.rank, alpha=cfg.alpha))
            trained.append(te)
        torch.manual_seed(cfg.seed)  # LoRA init was drawn above from the global RNG; reseed it for the run
        for module in trained:
            for param in module.parameters():
                if param.requires_grad:
                    param.data = param.data.float()
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                pipe.text_encoder.gradient_checkpointing_enable()

        # 3. Buckets and cached latents (each image encoded once per bucket and VAE).
        buckets = self._buckets()
        latents = self._latent_distributions(buckets)
        order = BatchOrder(buckets, batch_size=cfg.batch_size, seed=cfg.seed)
        if self.free_frozen_encoders:
            self._free_frozen_encoders()

        # 4. Optimizer and LR schedule.
        groups: list[dict[str, Any]] = [{"params": [p for p in unet.parameters() if p.requires_grad],
                                         "lr": cfg.learning_rate}]
        if cfg.train_text_encoder:
            groups.append({"params": [p for p in pipe.text_encoder.parameters() if p.requires_grad],
                           "lr": cfg.text_encoder_lr})
        optimizer = make_optimizer(cfg, groups)
        scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                  num_training_steps=cfg.max_train_steps)
        unet, optimizer = accelerator.prepare(unet, optimizer)  # DDP-wrapped when there are several processes
        params = [p for group in groups for p in group["params"]]
        noise_scheduler = self.base.noise_scheduler()

        # 5. Resume from the last checkpoint of this run, if there is one.
        losses: list[float] = []
        start_step = self._resume(trained, optimizer, scheduler, accelerator, order, losses)

        # 6. Train.
        for module in trained:
            module.train()
        step_times: list[float] = []
        for step in range(start_step, cfg.max_train_steps):
            tick = time.perf_counter()
            loss_value = 0.0
            for micro in range(cfg.gradient_accumulation_steps):
                m = step * cfg.gradient_accumulation_steps + micro
                with accelerator.autocast():
                    loss = self._micro_batch_loss(m, order, latents, buckets, noise_scheduler, unet)
                accelerator.backward(loss / cfg.gradient_accumulation_steps)
                loss_value += loss.detach().item() / cfg.gradient_accumulation_steps
            grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf)
            self._guard(step + 1, loss_value, grad_norm, scheduler, accelerator.scaler)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss_value)
            step_times.append(time.perf_counter() - tick)
            done = step + 1
            recent = step_times[-20:]
            self._report(StepReport(done, cfg.max_train_steps, loss_value, float(scheduler.get_last_lr()[0]),
                                    order.position(self._last_batch(done))[0],
                                    sum(recent) / len(recent)), accelerator)
            if self._main and done % cfg.checkpoint_every_steps == 0 and done < cfg.max_train_steps:
                self._save_checkpoint(done, trained, optimizer, scheduler, accelerator, order, losses)
            if self._makes_samples() and (done % cfg.sample_every_steps == 0 or done == cfg.max_train_steps):
                self._samples(done, trained)

        # 7. Collect the LoRA weights.
        unwrapped = accelerator.unwrap_model(unet)
        weights = [lora.lora_weights(unwrapped)]
        if cfg.train_text_encoder:
            weights.append(lora.lora_weights(pipe.text_encoder))
        last_micro = self._last_batch(cfg.max_train_steps)
        return TrainingResult(
            layouts=layouts, weights=weights, losses=losses, steps=cfg.max_train_steps,
            epochs=order.position(last_micro)[0] + 1, captions=self.captions,
            buckets=dict(Counter(str(b) for b in buckets)), precision=self.precision,
            resumed_from=start_step or None, started_at=started_at, finished_at=datetime.now(UTC),
            cache_stats={"hits": self.cache.hits, "misses": self.cache.misses})

    def _freeze_base(self, device: torch.device, weight_dtype: torch.dtype) -> None:
        # A method, so that no local name keeps a frozen encoder alive once `_free_frozen_encoders` drops it.
        pipe = self.base.pipe
        for module in (pipe.vae, pipe.unet, *self._text_encoders()):
            module.requires_grad_(False)
            module.to(device)
            if module is not pipe.vae and weight_dtype != torch.float32:
                module.to(dtype=weight_dtype)  # the VAE stays fp32: SD's VAE overflows in fp16

    def _shard(self, m: int) -> int:
        """Index in the data order of this process's micro-batch m (m itself with one process)."""
        return m * self._world + self._rank

    def _last_batch(self, steps: int) -> int:
        """Index in the data order of the last batch any process has trained after `steps` optimizer steps."""
        return steps * self.config.gradient_accumulation_steps * self._world - 1

    def _report(self, report: StepReport, accelerator: Accelerator) -> None:
        """Progress to the main process's hook; a cancel there stops every process after this step
        (accelerate's trigger: a flag summed over the processes)."""
        if self._main and self.hooks.on_step is not None:
            try:
                self.hooks.on_step(report)
            except TrainingCancelled:
                accelerator.set_trigger()
        if accelerator.check_trigger():
            raise TrainingCancelled()

    # One micro-batch --------------------------------------------------------------------------------
    def _micro_batch_loss(self, m: int, order: BatchOrder, latents: list[tuple[torch.Tensor, torch.Tensor]],
                          buckets: list[Bucket], noise_scheduler: Any, unet: torch.nn.Module) -> torch.Tensor:
        cfg = self.config
        m = self._shard(m)
        indices = order.batch(m)
        gen = torch.Generator(self.device).manual_seed(cfg.seed * 1_000_003 + m)
        rng = random.Random(f"mimicsafe-captions:{cfg.seed}:{m}")
        dtype = self._unet_dtype(unet)

        # a. Latents: a sample of each image's cached VAE distribution, scaled as the VAE says.
        mean = torch.stack([latents[i][0] for i in indices]).to(self.device)
        logvar = torch.stack([latents[i][1] for i in indices]).to(self.device)
        noise_shape = mean.shape
        sample = mean + torch.exp(0.5 * logvar) * torch.randn(noise_shape, generator=gen, device=self.device)
        model_input = sample * self.base.pipe.vae.config.scaling_factor

        # b. Noise (with offset noise) and timesteps.
        noise = torch.randn(noise_shape, generator=gen, device=self.device)
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * torch.randn((noise_shape[0], noise_shape[1], 1, 1), generator=gen,
                                                           device=self.device)
        timesteps = self._timesteps(len(indices), noise_scheduler, gen)
        noisy = noise_scheduler.add_noise(model_input, noise, timesteps)

        # c. Captions (dropout, tag shuffling) → text conditioning.
        texts = [training_caption(self.captions[i], rng=rng, shuffle=cfg.shuffle_tags, keep_tokens=cfg.keep_tokens,
                                  dropout_rate=cfg.caption_dropout_rate) for i in indices]
        cond = self._conditioning(texts)

        # d. Predict and compare with the target of the scheduler's prediction type.
        extra = self._sdxl_added_conditions(indices, buckets, cond) if self.base.is_sdxl else None
        pred = unet(noisy.to(dtype), timesteps, cond.hidden.to(dtype), added_cond_kwargs=extra).sample
        prediction_type = noise_scheduler.config.prediction_type
        target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(model_input, noise, timesteps)
        per_image = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))

        # e. min-SNR-γ weighting (Hang et al. 2023), as diffusers' training scripts apply it.
        if cfg.min_snr_gamma is not None:
            snr = compute_snr(noise_scheduler, timesteps)
            weights = torch.clamp(snr, max=cfg.min_snr_gamma)
            weights = weights / snr if prediction_type == "epsilon" else weights / (snr + 1)
            per_image = per_image * weights
        return per_image.mean()

    def _timesteps(self, count: int, noise_scheduler: Any, gen: torch.Generator) -> torch.Tensor:
        total = noise_scheduler.config.num_train_timesteps
        if self.config.timestep_sampling == "style":
            # Cubic bias toward high noise levels, where layout and colour are decided.
            u = torch.rand(count, generator=gen, device=self.device)
            return ((1 - u ** 3) * total).long().clamp(0, total - 1)
        return torch.randint(0, total, (count,), generator=gen, device=self.device)

    def _sdxl_added_conditions(self, indices: list[int], buckets: list[Bucket], cond: Conditioning) -> dict:
        ids = []
        for i in indices:
            prepared = self._prepared[i]
            bucket = buckets[i]
            ids.append([*prepared.original_size, *prepared.crop_top_left, bucket.height, bucket.width])
        time_ids = torch.tensor(ids, device=self.device, dtype=cond.hidden.dtype)
        return {"text_embeds": cond.pooled, "time_ids": time_ids}

    @staticmethod
    def _unet_dtype(unet: torch.nn.Module) -> torch.dtype:
        return next(p for p in unet.parameters() if not p.requires_grad).dtype

    # Data -------------------------------------------------------------------------------------------
    def _buckets(self) -> list[Bucket]:
        buckets = []
        for item in self.items:
            height, width = item.rgb.shape[:2]
            try:
                buckets.append(bucket_for(width, height, resolution=self.config.resolution,
                                          step=self.config.bucket_step))
            except ValueError as exc:
                raise DatasetRefused(f"upload {item.upload_id} ({item.name}): {exc}",
                                     item=f"upload {item.upload_id}") from None
        self._prepared = [prepare(item.rgb, bucket) for item, bucket in zip(self.items, buckets, strict=True)]
        return buckets

    def _latent_distributions(self, buckets: list[Bucket]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(mean, logvar) of each image's VAE posterior, from the cache or encoded now (once)."""
        vae = self.base.pipe.vae
        out = []
        for item, bucket, prepared in zip(self.items, buckets, self._prepared, strict=True):
            key = cache_key("latents", self.base.fingerprint("vae"), item.sha256, bucket)
            cached = self.cache.get("latents", key) if self.config.cache_latents else None
            if cached is None:
                pixels = torch.from_numpy(prepared.pixels)[None].to(self.device, torch.float32)
                with torch.no_grad():
                    dist = vae.encode(pixels).latent_dist
                cached = {"mean": dist.mean[0].float().cpu(), "logvar": dist.logvar[0].float().cpu()}
                if self.config.cache_latents:
                    self.cache.put("latents", key, cached)
            out.append((cached["mean"], cached["logvar"]))
        return out

    def _conditioning(self, texts: list[str]) -> Conditioning:
        cfg = self.config
        if cfg.train_text_encoder:
            return self.base.encode_captions(texts, clip_skip=cfg.clip_skip, device=self.device)
        parts = [self._frozen_text(text) for text in texts]
        pooled = [p.pooled for p in parts]
        return Conditioning(torch.stack([p.hidden for p in parts]),
                            torch.stack(pooled) if all(p is not None for p in pooled) else None)  # type: ignore[arg-type]

    def _frozen_text(self, text: str) -> Conditioning:
        """A frozen encoder's output for one caption: memoised, and cached on disk for unshuffled captions."""
        if text in self._text_memo:
            return self._text_memo[text]
        cfg = self.config
        persist = cfg.cache_text_embeddings and (text == "" or text in self.captions)
        key = cache_key("text", self.base.text_fingerprint(), cfg.clip_skip, text)
        cached = self.cache.get("text", key) if persist else None
        if cached is None:
            with torch.no_grad():
                cond = self.base.encode_captions([text], clip_skip=cfg.clip_skip, device=self.device)
            cached = {"hidden": cond.hidden[0].float().cpu()}
            if cond.pooled is not None:
                cached["pooled"] = cond.pooled[0].float().cpu()
            if persist:
                self.cache.put("text", key, cached)
        result = Conditioning(cached["hidden"].to(self.device),
                              cached["pooled"].to(self.device) if "pooled" in cached else None)
        if cfg.cache_text_embeddings:
            self._text_memo[text] = result
        return result

    def _makes_samples(self) -> bool:
        return bool(self._main and self.config.sample_every_steps and self.hooks.on_samples is not None)

    def _free_frozen_encoders(self) -> None:
        """Cache what the steps and samples need from the frozen encoders, then drop the encoders.

        Text: when the encoder is frozen and no caption has tags to shuffle, the captions a step can draw
        are few (each caption, and "" for dropout): all are encoded now, with the sample prompts. A
        caption of the trigger and one tag, the default, never shuffles. The VAE: latents were cached in
        step 3; only samples decode."""
        cfg = self.config
        pipe = self.base.pipe
        vae = pipe.vae
        vae.encoder, vae.quant_conv = None, None
        if not self._makes_samples():
            vae.decoder, vae.post_quant_conv = None, None
        variants = [caption_variants(caption, shuffle=cfg.shuffle_tags, keep_tokens=cfg.keep_tokens,
                                     dropout_rate=cfg.caption_dropout_rate) for caption in self.captions]
        if cfg.train_text_encoder or not cfg.cache_text_embeddings or any(v is None for v in variants):
            return
        for text in set().union(*variants):  # type: ignore[arg-type]  # no None, checked above
            self._frozen_text(text)
        if self._makes_samples():
            for prompt in self._sample_prompts():
                self._sample_conditioning(prompt)
        pipe.text_encoder = None
        if self.base.is_sdxl:
            pipe.text_encoder_2 = None
        log.info("freed the frozen encoders: latents and %d caption embeddings are cached", len(self._text_memo))

    # Safety, checkpoints, samples --------------------------------------------------------------------
    def _guard(self, step: int, loss: float, grad_norm: Any, scheduler: Any, scaler: Any) -> None:
        """Stop on a non-finite loss or gradient, except the overflows fp16 loss scaling expects: there the
        GradScaler skips the step and lowers the scale, up to MAX_SCALER_SKIPS steps in a row."""
        norm = float(grad_norm)
        if math.isfinite(loss) and math.isfinite(norm):
            self._scaler_skips = 0
            return
        if scaler is not None and math.isfinite(loss) and self._scaler_skips < MAX_SCALER_SKIPS:
            self._scaler_skips += 1
            log.info("step %d: fp16 gradients overflowed; the loss scaler skips this step", step)
            return
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
        raise TrainingDiverged(
            f"training diverged at step {step}: {what} (learning rate {scheduler.get_last_lr()[0]:.3g}). "
            "Nothing from this step was applied; the last checkpoint is kept. Lower the learning rate or use "
            "mixed_precision 'no' / 'bf16' instead of fp16, then train again.")

    def _identity(self) -> dict[str, str]:
        return {**self.identity, "config_sha256": self.config.sha256(),
                "items": ",".join(item.sha256 for item in self.items)}

    def _save_checkpoint(self, step: int, trained: list[torch.nn.Module], optimizer: Any, scheduler: Any,
                         accelerator: Accelerator, order: BatchOrder, losses: list[float]) -> None:
        micro = self._shard(step * self.config.gradient_accumulation_steps)
        epoch, index = order.position(micro)
        state = {
            "identity": self._identity(),
            "step": step,
            "epoch": epoch,
            "data_order": {"micro_batch": micro, "index_in_epoch": index, "epoch_batches": order.epoch(epoch)},
            "trainable": [{n: p.detach().cpu() for n, p in module.named_parameters() if p.requires_grad}
                          for module in trained],
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "rng": checkpoint.rng_states(),
            "losses": list(losses),
        }
        checkpoint.save(self.work_dir, state)
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(step)

    def _resume(self, trained: list[torch.nn.Module], optimizer: Any, scheduler: Any, accelerator: Accelerator,
                order: BatchOrder, losses: list[float]) -> int:
        state = checkpoint.load(self.work_dir)
        if state is None:
            return 0
        if state["identity"] != self._identity():
            raise TrainingFailed("the checkpoint in this job's folder belongs to a different config or dataset; "
                                 "it was not resumed")
        if state["data_order"]["epoch_batches"] != order.epoch(state["epoch"]):
            raise TrainingFailed("the checkpoint's data order differs from this dataset's; it was not resumed")
        for module, saved in zip(trained, state["trainable"], strict=True):
            params = dict(module.named_parameters())
            for name, value in saved.items():
                params[name].data.copy_(value.to(params[name].device))
        load_optimizer_state(optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        checkpoint.restore_rng_states(state["rng"])
        losses.extend(state["losses"])
        log.info("resumed from step %d (epoch %d)", state["step"], state["epoch"])
        return int(state["step"])

    def _sample_prompts(self) -> list[str]:
        return [template.replace("{trigger}", self.trigger) for template in self.config.sample_prompts]

    def _sample_conditioning(self, prompt: str) -> dict[str, torch.Tensor]:
        """The pipeline's own prompt encoding (with the empty negative prompt), as keyword arguments for
        its call; kept when the text encoder is frozen, so that samples need no text encoder."""
        if prompt in self._sample_memo:
            return self._sample_memo[prompt]
        pipe = self.base.pipe
        with torch.no_grad():
            names: tuple[str, ...]
            if self.base.is_sdxl:
                names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                         "negative_pooled_prompt_embeds")
                encoded = pipe.encode_prompt(prompt, device=self.device, num_images_per_prompt=1,
                                             do_classifier_free_guidance=True)
            else:
                names = ("prompt_embeds", "negative_prompt_embeds")
                # As training conditions (kohya's clip_skip 2 = diffusers' 1: the penultimate layer).
                encoded = pipe.encode_prompt(prompt, self.device, 1, True,
                                             clip_skip=self.config.clip_skip - 1 or None)
        conditioning = dict(zip(names, encoded, strict=True))
        if not self.config.train_text_encoder:
            self._sample_memo[prompt] = conditioning
        return conditioning

    def _decode(self, latents: torch.Tensor) -> Any:
        """The pipelines' own decode (SDXL's latent mean/std when its VAE has them), with the latents cast
        to the VAE's dtype first: on a GPU the UNet runs in bf16/fp16 while the VAE stays fp32, which the
        pipelines' decode does not reconcile."""
        pipe = self.base.pipe
        vae = pipe.vae
        config = vae.config
        latents = latents.to(vae.dtype)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t, std_t = (torch.tensor(v).view(1, -1, 1, 1).to(latents) for v in (mean, std))
            latents = latents * std_t / config.scaling_factor + mean_t
        else:
            latents = latents / config.scaling_factor
        with torch.no_grad():
            image = vae.decode(latents).sample
        return pipe.image_processor.postprocess(image, output_type="pil")[0]

    def _samples(self, step: int, trained: list[torch.nn.Module]) -> None:
        if not self._makes_samples():
            return
        cfg = self.config
        size = bucket_for(cfg.resolution, cfg.resolution, resolution=cfg.resolution, step=cfg.bucket_step)
        for module in trained:
            module.eval()
        samples = []
        try:
            for index, prompt in enumerate(self._sample_prompts()):
                seed = cfg.sample_seed + index
                gen = torch.Generator(self.device).manual_seed(seed)
                latents = self.base.pipe(height=size.height, width=size.width, generator=gen,
                                         num_inference_steps=cfg.sample_inference_steps, output_type="latent",
                                         **self._sample_conditioning(prompt)).images
                image = self._decode(latents)
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                samples.append(Sample(step, prompt, seed, buffer.getvalue()))
        finally:
            for module in trained:
                module.train()
        assert self.hooks.on_samples is not None  # _makes_samples
        self.hooks.on_samples(samples)

