"""Reading images and masks into the arrays convdiag works with.

Images become float32 grey [H, W] in [0, 1] whatever their mode (L, P, RGB, RGBA, LA, 1,
I;16, I, F); masks become bool [H, W] after a binary check (0 and one other value, 1 or
255, DESIGN.md "Coordinates"). Every failure -- missing, empty, truncated or non-image file,
a mask with other values -- is an InputError whose one line names the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convdiag.errors import InputError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGE_EXTENSIONS = (
    ".png",
    ".bmp",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".gif",
    ".pgm",
    ".ppm",
    ".webp",
)
# Only these decoders are tried, so random bytes never reach an exotic parser.
_FORMATS = ("PNG", "BMP", "JPEG", "TIFF", "GIF", "PPM", "WEBP")
# Images with more pixels are refused from their header, before any decoding (a hostile
# file can declare 65535 x 65535 pixels in a few bytes). PIL's own decompression-bomb
# check stays on as a second line.
MAX_PIXELS = 100_000_000
_LIMIT = [MAX_PIXELS]  # the limit in force (--max-pixels, see pixel_limit)
_EXIF_ORIENTATION = 0x0112
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses, kept in float here.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def max_pixels() -> int:
    """The pixel limit in force: ``MAX_PIXELS`` unless ``pixel_limit`` set another."""
    return _LIMIT[-1]


@contextmanager
def pixel_limit(n: int) -> Iterator[None]:
    """Refuse images of more than ``n`` pixels (``--max-pixels``) inside the block. PIL's
    decompression-bomb check stays on, moved up with the limit when it is raised."""
    from PIL import Image

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"--max-pixels {n!r}: use a whole number of pixels >= 1")
    old = Image.MAX_IMAGE_PIXELS
    _LIMIT.append(n)
    if old is not None and n > old:
        Image.MAX_IMAGE_PIXELS = n
    try:
        yield
    finally:
        _LIMIT.pop()
        Image.MAX_IMAGE_PIXELS = old


_HINT = " (--max-pixels N raises the limit)"


def _over() -> str:
    return f"over the limit of {max_pixels() / 1e6:.6g} MP"


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose extension is an image extension (case-insensitive)."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def _open(path: Path) -> PILImage:
    """Open an image lazily (header only), turning every failure into an InputError."""
    from PIL import Image

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if size == 0:
        raise InputError(f"{path}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(path, formats=_FORMATS)
    except Image.DecompressionBombError as e:  # PIL's own check, for the largest headers
        raise InputError(
            f"{path}: {_reason(e).split(',')[0]}, {_over()}; refused before decoding{_HINT}"
        ) from None
    except Exception as e:  # PIL raises many types for garbage input
        raise InputError(f"{path}: not a readable image ({_reason(e)})") from None
    w, h = img.size
    if w * h > max_pixels():
        img.close()
        raise InputError(
            f"{path}: {h}x{w} pixels ({w * h / 1e6:.6g} MP), {_over()}; refused before decoding"
            + _HINT
        )
    return img


def _orientation(img: PILImage) -> int:
    """The EXIF orientation tag (1-8; 1 when absent or unreadable)."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: shown as stored, like most viewers do
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Size (H, W) of an image as shown (EXIF orientation applied) from its header, without
    decoding pixels. More than ``max_pixels()`` pixels, or unreadable -> InputError naming it."""
    p = Path(path)
    img = _open(p)
    try:
        w, h = img.size
        if _orientation(img) in (5, 6, 7, 8):  # rotated by 90 degrees when shown
            w, h = h, w
    finally:
        img.close()
    if w < 1 or h < 1:
        raise InputError(f"{p}: image has no pixels ({h}x{w})")
    return (int(h), int(w))


def _shown(img: PILImage) -> PILImage:
    """The loaded image as a viewer shows it: its EXIF orientation applied (a copy)."""
    if _orientation(img) == 1:
        return img
    from PIL import ImageOps

    return ImageOps.exif_transpose(img)


def _decode(path: Path) -> np.ndarray:
    """Decode the first frame of an image to a numpy array in its own mode (see read_image)."""
    img = _open(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            shown = _shown(img)
            mode = shown.mode
            if mode in ("RGB", "RGBA", "L", "LA", "1", "I", "F") or mode.startswith("I;16"):
                arr = np.asarray(shown)
            elif mode == "P":
                # palette images carry colours; transparency is ignored (grey only)
                arr = np.asarray(shown.convert("RGB"))
            else:  # CMYK, YCbCr, HSV, LAB, ...
                arr = np.asarray(shown.convert("RGB"))
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{path}: truncated or corrupt image ({_reason(e)})") from None
    finally:
        img.close()
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputError(f"{path}: image has no pixels")
    return arr


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as float32 grey [H, W] in [0, 1].

    8-bit modes: grey = v / 255 (RGB/RGBA/P via luma 0.299 R + 0.587 G + 0.114 B, alpha
    ignored); 16-bit (I;16, or I with values in [0, 65535]): v / 65535; mode 1: 0 or 1;
    float (F): kept when already in [0, 1], else min-max scaled. InputError naming the file
    for anything unreadable.
    """
    p = Path(path)
    arr = _decode(p)
    if arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    elif arr.ndim == 3:
        if arr.shape[-1] < 3:  # LA
            grey = arr[..., 0].astype(np.float64)
        else:
            grey = arr[..., :3].astype(np.float64) @ _LUMA
        out = (grey / 255.0).astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / np.float32(255.0)
    elif arr.dtype.kind in "ui":
        a = arr.astype(np.float64)
        if a.min() < 0 or a.max() > 65535:
            raise InputError(f"{p}: integer image values outside 0..65535")
        out = (a / 65535.0).astype(np.float32)
    elif arr.dtype.kind == "f":
        a = arr.astype(np.float64)
        if not np.isfinite(a).all():
            raise InputError(f"{p}: float image contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        out = a.astype(np.float32)
    else:
        raise InputError(f"{p}: unsupported pixel type {arr.dtype}")
    return np.clip(out, 0.0, 1.0)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a binary mask as bool [H, W] (True = target pixel).

    The raw values (palette indices for P images, the largest of R, G, B for colour images)
    must be 0 and at most one other value, 1 or 255; anything else is an InputError naming
    the file and the values seen.
    """
    p = Path(path)
    arr = _decode_mask(p)
    if arr.dtype == np.bool_:
        return arr.copy()
    if arr.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
    else:
        present = np.unique(arr)
    bad = [v for v in present.tolist() if v not in (0, 1, 255)]
    if bad or (1 in present and 255 in present):
        shown = ", ".join(str(v) for v in present[:8].tolist())
        more = ", ..." if len(present) > 8 else ""
        raise InputError(
            f"{p}: mask is not binary: values {shown}{more} (expected 0 and one of 1 or 255)"
        )
    return arr > 0


def _decode_mask(path: Path) -> np.ndarray:
    img = _open(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            shown = _shown(img)
            # palette masks: the indices are the labels (VOC-style), not the colours
            arr = np.asarray(shown) if shown.mode != "CMYK" else np.asarray(shown.convert("RGB"))
    except Exception as e:
        raise InputError(f"{path}: truncated or corrupt mask ({_reason(e)})") from None
    finally:
        img.close()
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"{path}: mask has no pixels")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all((arr == 0) | (arr == 1) | (arr == 255)):
            raise InputError(f"{path}: mask is not binary (expected 0 and one of 1 or 255)")
        arr = arr.astype(np.uint8)
    return arr
