"""Writes the sample media that ships in assets/ (used by `make demo`).

  assets/sample.jpg   640x480 photo-like JPEG with EXIF orientation 6 (shown rotated)
  assets/sample.png   256x192 RGBA PNG with a soft alpha edge
  assets/sample.wav   ~2 s of speech from espeak-ng at 22.05 kHz, 16-bit mono

Deterministic; the fixtures-folder argument that refgen.sh passes is ignored.
"""
import os
import subprocess

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "assets")


def photo(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0)
    g = 128 + 90 * np.cos((x + y) / 71.0)
    b = 255 * x / max(w - 1, 1)
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    im = Image.fromarray(photo(640, 480, 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(os.path.join(OUT, "sample.jpg"), quality=90, exif=exif.tobytes())

    rgba = np.zeros((192, 256, 4), np.uint8)
    rgba[..., :3] = photo(256, 192, 2)
    yy, xx = np.mgrid[0:192, 0:256]
    dist = np.hypot(xx - 128, yy - 96)
    rgba[..., 3] = np.clip(255 * (90 - dist) / 20, 0, 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(OUT, "sample.png"), optimize=True)

    subprocess.run(["espeak-ng", "-s", "150", "-w", os.path.join(OUT, "sample.wav"),
                    "Tessera turns images and audio into tensors."], check=True)


if __name__ == "__main__":
    main()
