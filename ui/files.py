"""Files people send through the page, read safely.

Gradio stores each upload in its own upload folder and hands the callback that path. Before reading
one, we check that it really lies in that folder (no path from a request reaches the filesystem
unchecked), that it is a plain file and not a link, and that it is within the upload limit.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from gradio.utils import get_upload_folder

from mimicsafe.errors import ValidationFailed
from mimicsafe.imaging import NamedFile

DOWNLOAD_MAX_AGE_SECONDS = 3600
PRIVATE_FOLDER, PUBLIC_FOLDER = "private", "public"  # each page's part of Gradio's temporary folder
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp"]  # what the image upload boxes offer to pick


def read_uploads(paths: Sequence[str | Path] | str | Path | None, *, max_bytes: int) -> list[NamedFile]:
    """The files behind the paths Gradio gave a callback, in order. Empty input gives an empty list."""
    if paths is None or paths == "":
        return []
    if isinstance(paths, str | Path):
        paths = [paths]
    return [_read_one(Path(p), max_bytes=max_bytes) for p in paths]


def required_uploads(paths: Sequence[str | Path] | str | Path | None, *, max_bytes: int,
                     missing: str) -> list[NamedFile]:
    """Like `read_uploads`, but no file at all is a ValidationFailed saying `missing`."""
    files = read_uploads(paths, max_bytes=max_bytes)
    if not files:
        raise ValidationFailed(missing)
    return files


def _read_one(path: Path, *, max_bytes: int) -> NamedFile:
    root = Path(get_upload_folder()).resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ValidationFailed(f"{path.name}: not a file uploaded to this page")
    try:
        fd = os.open(resolved, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise ValidationFailed(f"{path.name}: the uploaded file is gone; upload it again") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValidationFailed(f"{path.name}: not a regular file")
        if info.st_size > max_bytes:
            raise ValidationFailed(f"{path.name}: {info.st_size} bytes is over the upload limit of {max_bytes} bytes")
        data = handle.read(max_bytes + 1)
    return NamedFile(name=path.name, data=data)


def page_folders() -> tuple[Path, Path]:
    """The logged-in app's and the public page's folders in Gradio's temporary folder (made 0700).
    The public page may not serve the first; ui/webguard.py serves each file only to its owner."""
    root = Path(get_upload_folder())
    folders = root / PRIVATE_FOLDER, root / PUBLIC_FOLDER
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.chmod(0o700)
    return folders


def file_for_download(name: str, data: bytes) -> str:
    """Write bytes a person downloads (a model, a generated image) where the logged-in app may serve them
    from: its private folder, in a directory of its own with an unguessable name. Gradio copies the file
    into its cache (cleaned by DELETE_CACHE in ui/public.py) and ui/webguard.py serves that copy only to
    the caller it was given to; our copies older than an hour go on the next call."""
    root = Path(get_upload_folder()) / PRIVATE_FOLDER / "mimicsafe-downloads"
    _remove_older_than(root, DOWNLOAD_MAX_AGE_SECONDS)
    directory = root / secrets.token_hex(16)
    directory.mkdir(parents=True, mode=0o700)
    path = directory / Path(name).name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return str(path)


def _remove_older_than(root: Path, seconds: float) -> None:
    if not root.is_dir():
        return
    cutoff = time.time() - seconds
    for directory in root.iterdir():
        try:
            if directory.is_dir() and not directory.is_symlink() and directory.stat().st_mtime < cutoff:
                shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue  # another request removed it first
