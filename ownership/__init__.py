"""The ownership gate: decides whether an image may enter an artist's training set.

This package is deliberately free of torch, diffusers, transformers and gradio: it decodes images
safely, fingerprints them, matches them against registered work, checks signatures and metadata
signals, and returns a `Verdict`. Storage and workflow live in `mimicsafe`.
"""
