"""Image decoding with errors that name the file (and tar member) that failed."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from fif.errors import CorruptSampleError

# Decoding problems PIL reports: unknown format, truncated data, bad headers, decompression bombs.
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def decode_rgb(source: str | Path | IO[bytes], where: str | Path) -> Image.Image:
    """Decode an image fully as RGB; a corrupt or truncated one is a CorruptSampleError naming ``where``."""
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise CorruptSampleError(f"image {where} does not exist", str(where)) from None
    except DECODE_ERRORS as error:
        raise CorruptSampleError(f"image {where} is corrupt or unreadable ({type(error).__name__}: {error})",
                                 str(where)) from None


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB; a missing or corrupt file is a one-line CorruptSampleError naming it."""
    return decode_rgb(path, path)
