#!/usr/bin/env python3
"""Helper of bench_image.sh: makes the inputs, times Pillow + numpy, runs bench_image, and
prints the comparison. See bench_image.sh for the one command to run.

    bench_image.py --bin build/bench_image --out tools/bench/out [--reps 15]
"""
import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter

SIZE = (448, 448)  # (width, height)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def photo(w, h, seed):
    """Deterministic photo-like content: soft gradients and blobs, blurred shapes with
    edges, fine texture and sensor-like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    img = np.empty((h, w, 3), np.float32)
    img[..., 0] = 120 + 80 * np.sin(3.1 * u + 1.3 * v) + 30 * np.cos(9 * v)
    img[..., 1] = 100 + 90 * v + 20 * np.sin(17 * u * v)
    img[..., 2] = 140 - 70 * u + 25 * np.cos(5 * u + 7 * v)
    for _ in range(12):  # soft blobs (sky, skin, foliage-like patches)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += g[..., None] * rng.uniform(-60, 60, 3).astype(np.float32)
    base = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    layer = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(layer)
    for _ in range(40):  # objects with edges, then slightly blurred like a lens would
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        x1, y1 = x0 + int(rng.uniform(10, w / 4)), y0 + int(rng.uniform(10, h / 4))
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=col)
    sharp = Image.blend(base, layer, 0.35).filter(ImageFilter.GaussianBlur(1.2))
    out = np.asarray(sharp).astype(np.int16)
    out += rng.normal(0, 3.0, out.shape).astype(np.int16)  # sensor noise
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def make_inputs(out_dir):
    files = []
    for name, (w, h), fmt in [("photo_1920x1080.jpg", (1920, 1080), "JPEG"),
                              ("photo_4000x3000.png", (4000, 3000), "PNG")]:
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            img = photo(w, h, seed=w)
            if fmt == "JPEG":
                img.save(path, "JPEG", quality=90)
            else:
                img.save(path, "PNG")
        files.append(path)
    return files


def pillow_stages(data):
    """What a transformers slow image processor does for one image (PIL backend)."""
    t0 = time.perf_counter()
    im = Image.open(io.BytesIO(data))
    if im.mode != "RGB":
        im = im.convert("RGB")
    im.load()
    t1 = time.perf_counter()
    small = im.resize(SIZE, Image.Resampling.BICUBIC)
    t2 = time.perf_counter()
    x = np.asarray(small)
    x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)  # rescale
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)  # normalize
    x = np.ascontiguousarray(x.transpose(2, 0, 1))  # channels first
    t3 = time.perf_counter()
    return [(t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3]


def time_pillow(path, reps):
    with open(path, "rb") as f:
        data = f.read()
    runs = [pillow_stages(data) for _ in range(reps)]
    keys = ["decode_ms", "resize_ms", "normalize_ms", "total_ms"]
    return {k: statistics.median(r[i] for r in runs) for i, k in enumerate(keys)}


def time_tessera(binary, path, reps):
    out = subprocess.run([binary, path, "--size", f"{SIZE[0]}x{SIZE[1]}", "--reps", str(reps)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    files = make_inputs(a.out)

    lines = [f"image preprocessing to {SIZE[0]}x{SIZE[1]} float32 CHW (bicubic, CLIP "
             f"normalise), single thread, median of {a.reps} runs; Pillow {PIL.__version__}, "
             f"numpy {np.__version__}",
             f"{'input':<22}{'stage':<11}{'Pillow ms':>11}{'Tessera ms':>12}{'ratio':>8}"]
    results = []
    for path in files:
        pil = time_pillow(path, a.reps)
        tsr = time_tessera(a.bin, path, a.reps)
        name = os.path.basename(path)
        for stage in ["decode_ms", "resize_ms", "normalize_ms", "total_ms"]:
            ratio = pil[stage] / tsr[stage] if tsr[stage] > 0 else float("inf")
            lines.append(f"{name:<22}{stage[:-3]:<11}{pil[stage]:>11.2f}{tsr[stage]:>12.2f}"
                         f"{ratio:>7.2f}x")
        results.append({"input": name, "pillow": pil, "tessera": tsr})
    lines.append("ratio = Pillow time / Tessera time (> 1: Tessera is faster)")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(a.out, "bench_image.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "bench_image.json"), "w") as f:
        json.dump(results, f, indent=1)
    slower = [r["input"] for r in results
              if r["tessera"]["total_ms"] > r["pillow"]["total_ms"]
              or r["tessera"]["resize_ms"] > r["pillow"]["resize_ms"]]
    if slower:
        print("Tessera is slower than Pillow on: " + ", ".join(slower), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
