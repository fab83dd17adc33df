"""Provenance of generated images: the invisible watermark (and, wired in by the lead, C2PA and fingerprints)."""
