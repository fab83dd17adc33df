"""LoRA training on an artist's accepted uploads only.

- `config`: the typed training config and the presets in `configs/presets/`.
- `manifest`: the signed-off dataset manifest and the loader that refuses tampered or ineligible items.
- `captions`, `buckets`, `cache`: what the trainer feeds the model.
- `lora`, `metadata`: LoRA layers, the `.safetensors` we write (diffusers and kohya keys) and its provenance.
- `trainer`, `checkpoint`: the training loop and its atomic, resumable state.
- `service`, `tasks`: what the app and the CLI call, and the Huey job that runs a training.

Nothing here imports torch at module import time except `trainer`, `lora`, `cache` and `base`, which the
worker loads when a job runs.
"""
