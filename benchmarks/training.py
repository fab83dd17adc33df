"""Our LoRA trainer against diffusers' `train_text_to_image_lora.py` loop (issue 4 §5).

    python -m benchmarks.training                      # tiny model at 64 px (about a minute)
    python -m benchmarks.training --scenarios tiny,sd15 # and an SD1.5-shaped model at 256 px (needs ~10 GB
                                                        # of memory; several minutes on a 2-core CPU)
    python -m benchmarks.training --parts --scenarios sd15  # seconds of each part of a step, and the
                                                            # speed-up caching can give at most

Same model, images, resolution, batch, rank, optimizer (AdamW, lr 1e-4, constant schedule), mixed
precision (none on a CPU; bf16, or fp16, on a GPU, where the reference casts its frozen models as the
script does), seed and number of steps. The reference is a faithful copy of the example script's loop:
the VAE encodes and the text encoder encodes every step, LoRA on to_q/to_k/to_v/to_out.0 with alpha =
rank and gaussian init, `F.mse_loss` on epsilon, `clip_grad_norm_(1.0)`. Ours runs as a job runs it:
kohya-wide targets, cached latents and text embeddings, the frozen encoders freed once cached, fused
AdamW; min-SNR, noise offset, caption dropout and tag shuffling are off so the losses mean the same.

Each trainer runs in its own process: peak memory is that process's peak RSS (CPU) or
`torch.cuda.max_memory_allocated` (GPU). Steps/s is measured from the end of the first step to the end
of the last (the first step pays one-time costs in both). Our cache building is reported separately.
On a shared machine other processes slow whichever run they overlap, so by default the two trainers
run at the same time, one torch thread each (two processes side by side on at least two cores): any
other load falls on both alike. `--one-at-a-time` runs them in turn instead (`--threads` each, torch's
default if unset); on a GPU they always run in turn, since two processes would compete for it. Either
way `--rounds` repeats the pair and each trainer is credited with its best round (the least
disturbed), memory with its largest. One thread also avoids OpenMP threads spinning
against other processes, which made single steps 40x slower in one measurement here.
The SD1.5-shaped model has random weights (`build_random_sd15_pipeline`), so its losses only show that
both loops compute the same objective.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SCENARIOS = {"tiny": {"resolution": 64, "rank": 4}, "sd15": {"resolution": 256, "rank": 16}}
IMAGES = 4
SEED = 0
LEARNING_RATE = 1e-4


def _images(resolution: int) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    out = []
    for _ in range(IMAGES):
        cells = rng.integers(0, 255, (8, 8, 3))
        image = np.kron(cells, np.ones((resolution // 8, resolution // 8, 1)))
        out.append(np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8))
    return out


def _pipe(scenario: str) -> Any:
    if scenario == "tiny":
        from mimicsafe.models.tiny import build_tiny_pipeline

        return build_tiny_pipeline(seed=SEED)
    from mimicsafe.models.loading import build_random_sd15_pipeline

    return build_random_sd15_pipeline(seed=SEED)


def _peak_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Ours -------------------------------------------------------------------------------------------------
def run_ours(scenario: str, steps: int, precision: str = "no") -> dict[str, Any]:
    from mimicsafe.training.base import BaseModel
    from mimicsafe.training.config import load_preset
    from mimicsafe.training.items import TrainingItem
    from mimicsafe.training.trainer import Hooks, LoraTrainer

    spec = SCENARIOS[scenario]
    config = load_preset("tiny", resolution=spec["resolution"], bucket_step=spec["resolution"] // 4, rank=spec["rank"],
                         alpha=float(spec["rank"]), batch_size=1, max_train_steps=steps, learning_rate=LEARNING_RATE,
                         lr_scheduler="constant", lr_warmup_steps=0, min_snr_gamma=None, noise_offset=0.0,
                         caption_dropout_rate=0.0, shuffle_tags=False, sample_every_steps=0,
                         checkpoint_every_steps=steps, gradient_checkpointing=False, seed=SEED,
                         mixed_precision=precision)
    items = [TrainingItem(i, hashlib.sha256(rgb.tobytes()).hexdigest(), f"{i}.png", "a painting", rgb)
             for i, rgb in enumerate(_images(spec["resolution"]))]
    family = "tiny" if scenario == "tiny" else "sd15"
    base = BaseModel(family, _pipe(scenario), f"bench-{scenario}")
    ticks: list[float] = []
    with tempfile.TemporaryDirectory() as work:
        hooks = Hooks(on_step=lambda r: ticks.append(time.perf_counter()))
        trainer = LoraTrainer(config=config, base=base, items=items, artist="bench", work_dir=Path(work),
                              cache_dir=Path(work) / "cache", hooks=hooks, free_frozen_encoders=True)
        start = time.perf_counter()
        result = trainer.run()
    return _figures(ticks, result.losses, setup_s=ticks[0] - start)


def _figures(ticks: list[float], losses: list[float], *, setup_s: float) -> dict[str, Any]:
    """One trainer's figures: steps/s from the end of the first step to the end of the last."""
    return {"steps_per_s": (len(ticks) - 1) / (ticks[-1] - ticks[0]), "peak_mb": _peak_mb(),
            "final_loss": float(np.mean(losses[-5:])), "setup_s": setup_s}


# The reference: diffusers' examples/text_to_image/train_text_to_image_lora.py, its loop --------------------
def run_reference(scenario: str, steps: int, precision: str = "no") -> dict[str, Any]:
    import torch
    import torch.nn.functional as F  # noqa: N812
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from PIL import Image

    spec = SCENARIOS[scenario]
    resolution, rank = spec["resolution"], spec["rank"]
    torch.manual_seed(SEED)
    accelerator = Accelerator(mixed_precision=precision)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    pipe = _pipe(scenario)
    tokenizer, text_encoder, vae, unet = pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.unet
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet_lora_config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                  target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    for module in (unet, vae, text_encoder):  # the script casts all three to the mixed-precision dtype
        module.to(accelerator.device, dtype=weight_dtype)
    unet.add_adapter(unet_lora_config)
    if precision == "fp16":  # and keeps only the LoRA weights in fp32
        cast_training_params(unet, dtype=torch.float32)
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_layers, lr=LEARNING_RATE, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-08)

    # The script's transforms (torchvision): Resize(bilinear), CenterCrop, ToTensor, Normalize([0.5], [0.5]).
    def transform(rgb: np.ndarray) -> torch.Tensor:
        image = Image.fromarray(rgb)
        scale = resolution / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1) * 2.0 - 1.0

    images = _images(resolution)
    input_ids = tokenizer(["a painting"] * len(images), max_length=tokenizer.model_max_length, padding="max_length",
                          truncation=True, return_tensors="pt").input_ids

    class Dataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"pixel_values": transform(images[i]), "input_ids": input_ids[i]}

    dataloader = torch.utils.data.DataLoader(Dataset(), shuffle=True, batch_size=1, num_workers=0)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=steps)
    unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler)
    unet.train()
    losses, ticks, step = [], [], 0
    while step < steps:
        for batch in dataloader:
            pixels = batch["pixel_values"].to(dtype=weight_dtype)
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            bsz = latents.shape[0]
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device)
            noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
            encoder_hidden_states = text_encoder(batch["input_ids"], return_dict=False)[0]
            target = noise
            model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
            loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(lora_layers, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            ticks.append(time.perf_counter())
            step += 1
            if step >= steps:
                break
    return _figures(ticks, losses, setup_s=0.0)


# The parts of a step ----------------------------------------------------------------------------------------
def _best_of_two(run: Any) -> float:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _unet_pass_seconds(scenario: str, targets: Any) -> float:
    """One UNet forward + backward with LoRA on `targets`, as in a training step at batch 1."""
    import torch

    from mimicsafe.training import lora

    spec = SCENARIOS[scenario]
    pipe = _pipe(scenario)
    unet = pipe.unet
    unet.requires_grad_(False)
    lora.add_lora(unet, prefix="unet", linear=lora.unet_linear_targets(unet, targets), rank=spec["rank"],
                  alpha=float(spec["rank"]))
    unet.train()
    size = spec["resolution"] // pipe.vae_scale_factor
    latents, timestep = torch.randn(1, 4, size, size), torch.tensor([500])
    hidden = torch.randn(1, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim)

    def unet_pass() -> None:
        unet(latents, timestep, hidden).sample.pow(2).mean().backward()
        unet.zero_grad(set_to_none=True)

    return _best_of_two(unet_pass)


def _encoder_seconds(scenario: str) -> dict[str, float]:
    import torch

    resolution = SCENARIOS[scenario]["resolution"]
    pipe = _pipe(scenario)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    pixels = torch.randn(1, 3, resolution, resolution)
    ids = pipe.tokenizer(["a painting"], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    return {"VAE encode (reference only)": _best_of_two(lambda: pipe.vae.encode(pixels).latent_dist.sample()),
            "text encode (reference only)": _best_of_two(lambda: pipe.text_encoder(ids))}


def step_parts(scenario: str) -> dict[str, float]:
    """Seconds of each part of one step, best of two, in this process: what caching can save (the VAE and
    text encode) against what both loops must do (the UNet pass with each one's LoRA)."""
    parts = _encoder_seconds(scenario)
    parts["UNet forward + backward, q/k/v/out LoRA (reference)"] = _unet_pass_seconds(scenario, "attention")
    parts["UNet forward + backward, kohya LoRA (ours)"] = _unet_pass_seconds(scenario, "kohya")
    return parts


def print_step_parts(scenario: str) -> None:
    parts = _result("parts", scenario, _start("parts", scenario, 0, 1, "no"))
    print(f"{scenario}: seconds per part of one step (one thread, fp32, best of 2)")
    for name, seconds in parts.items():
        print(f"  {name:<52}{seconds:>8.3f}")
    vae, text, unet_ref, unet_ours = parts.values()
    print(f"  ceiling of caching, ours against the reference: (VAE + text + reference UNet) / our UNet = "
          f"{(vae + text + unet_ref) / unet_ours:.2f}x", flush=True)


# Driver ---------------------------------------------------------------------------------------------------
def _start(trainer: str, scenario: str, steps: int, threads: int | None, precision: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "benchmarks.training", "--child", trainer, scenario, str(steps), precision]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _result(trainer: str, scenario: str, child: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = child.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{trainer}/{scenario} failed:\n{stderr[-3000:]}")
    return json.loads(lines[-1])


def _round(scenario: str, steps: int, *, together: bool, threads: int | None,
           precision: str) -> dict[str, dict[str, Any]]:
    names = ("reference", "ours")
    if together:
        children = {name: _start(name, scenario, steps, threads or 1, precision) for name in names}
        return {name: _result(name, scenario, child) for name, child in children.items()}
    return {name: _result(name, scenario, _start(name, scenario, steps, threads, precision)) for name in names}


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round's figures, with the largest peak memory of any round."""
    best = dict(max(runs, key=lambda r: r["steps_per_s"]))
    best["peak_mb"] = max(r["peak_mb"] for r in runs)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="tiny", help="comma-separated: tiny, sd15")
    parser.add_argument("--tiny-steps", type=int, default=30)
    parser.add_argument("--sd15-steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each trainer, in turn; best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of each (default: 1 side by "
                        "side, torch's own one at a time)")
    parser.add_argument("--one-at-a-time", action="store_true", help="run the trainers in turn, not side by side "
                        "(always so on a GPU)")
    parser.add_argument("--parts", action="store_true", help="time the parts of one step instead (VAE, text, "
                        "each UNet pass) and print the ceiling of caching")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None,
                        help="of both trainers (default: bf16 or fp16 on a GPU, no on a CPU)")
    parser.add_argument("--child", nargs=4, metavar=("TRAINER", "SCENARIO", "STEPS", "PRECISION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.child:
        trainer, scenario, steps, precision = args.child
        if trainer == "parts":
            print(json.dumps(step_parts(scenario)), flush=True)
            return 0
        run = run_ours if trainer == "ours" else run_reference
        print(json.dumps(run(scenario, int(steps), precision)), flush=True)
        return 0
    if args.parts:
        for scenario in args.scenarios.split(","):
            print_step_parts(scenario)
        return 0
    from mimicsafe.training.trainer import pick_device, resolve_precision

    device = pick_device()
    precision = args.mixed_precision or resolve_precision("auto", device)
    # Side by side spreads other load on a shared CPU evenly; on one GPU the two would compete for it.
    one_at_a_time = args.one_at_a_time or device == "cuda"
    print(f"mixed precision of both: {precision}; " + ("one at a time" if one_at_a_time else "side by side"))
    print(f"{'scenario':<22}{'trainer':<11}{'steps/s':>9}{'peak MB':>10}{'final loss':>12}{'cache s':>9}")
    for scenario in args.scenarios.split(","):
        steps = args.tiny_steps if scenario == "tiny" else args.sd15_steps
        label = f"{scenario} {SCENARIOS[scenario]['resolution']}px {steps} steps"
        rounds: dict[str, list[dict[str, Any]]] = {"reference": [], "ours": []}
        for _ in range(args.rounds):
            for name, result in _round(scenario, steps, together=not one_at_a_time, threads=args.threads,
                                       precision=precision).items():
                rounds[name].append(result)
        results = {name: _best(runs) for name, runs in rounds.items()}
        for name, r in results.items():
            print(f"{label:<22}{name:<11}{r['steps_per_s']:>9.3f}{r['peak_mb']:>10.0f}{r['final_loss']:>12.4f}"
                  f"{r['setup_s']:>9.2f}", flush=True)
        ours, ref = results["ours"], results["reference"]
        print(f"{label:<22}{'ratio':<11}{ours['steps_per_s'] / ref['steps_per_s']:>8.2f}x"
              f"{ours['peak_mb'] / ref['peak_mb']:>9.2f}x{ours['final_loss'] / ref['final_loss']:>11.2f}x"
              "   (targets: >= 2x speed, <= 1x memory, loss within 10%)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
