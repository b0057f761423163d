"""Image loading with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fif.errors import CorruptSampleError, FifError


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB; a missing or corrupt file is a one-line FifError naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise FifError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise CorruptSampleError(f"image {path} is corrupt or unreadable ({type(error).__name__}: {error})") from None
