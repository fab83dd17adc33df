"""Provenance of generated images.

- `watermark*`: the invisible watermark (a 64-bit id that survives re-encoding and edits)
- `credentials`: the instance's own certificate chain (local CA + signing certificate)
- `content_credentials`: the C2PA manifest, signed and read back against the instance's anchor
- `metadata`: the generation facts as XMP and PNG text
- `marking`: all marks on one output, in order (watermark, fingerprint, metadata, C2PA)
- `verify`: which generation an image is, by C2PA, watermark or fingerprint
"""
