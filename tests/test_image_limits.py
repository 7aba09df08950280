"""Images as a hostile or careless source writes them (issue 14): a header declaring more
pixels than the limit is refused before decoding, with bounded memory; an image rotated by
its EXIF orientation is read as viewers show it, and its size says so."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from bad.helpers import REPO
from PIL import Image

from convdiag.errors import InputError
from convdiag.load.imageio import MAX_PIXELS, image_size, read_image, read_mask


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose IHDR declares w x h grey pixels, with a tiny (truncated) IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def test_a_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = _png_header_only(tmp_path / "bomb.png", 60000, 60000)  # 3.6 GP, 3.6 GB as uint8
    # 120 MP (H 10000 x W 12000): under PIL's own bomb check, over ours
    mid = _png_header_only(tmp_path / "mid.png", 12000, 10000)
    with pytest.raises(InputError, match=r"10000x12000 pixels \(120 MP\), over the limit"):
        image_size(mid)
    for read in (image_size, read_image, read_mask):
        with pytest.raises(InputError, match="over the limit of 100 MP; refused before decoding"):
            read(bomb)
    code = (
        "import resource, sys\n"
        "from convdiag.load.imageio import read_image\n"
        "from convdiag.errors import InputError\n"
        "try:\n    read_image(sys.argv[1]) if len(sys.argv) > 1 else None\n"
        "except Exception as e:\n    print(type(e).__name__)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    def peak(*args: str) -> list[str]:
        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                             text=True, cwd=REPO, timeout=120)  # fmt: skip
        return res.stdout.split()

    (base_kib,) = peak()  # the imports alone
    kind, peak_kib = peak(str(bomb))
    # decoding would take 3.6 GB; refusing it from the header costs next to nothing
    assert kind == "InputError" and int(peak_kib) - int(base_kib) < 50_000, (base_kib, peak_kib)
    assert MAX_PIXELS == 100_000_000


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 30), np.uint8)  # stored 20 rows x 30 columns, bright top-left
    arr[:5, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown 30 rows x 20 columns
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=100)
    assert image_size(path) == (30, 20)
    img = read_image(path)
    assert img.shape == (30, 20)
    # rotated 90 degrees clockwise, the stored top-left corner is shown at the top right
    assert img[:5, -5:].mean() > 0.9 and img[:5, :5].mean() < 0.1
