#!/usr/bin/env python3
"""Writes the image-operation fixtures: tests/fixtures/resize/ and tests/fixtures/ops/.

Usage: tools/refgen/refgen.sh resize   (or: .venv/bin/python gen_resize.py [FIXTURES_DIR])

Deterministic: every source image comes from a seeded generator, every expected output
from the installed Pillow (Image.resize, Image.paste) or transformers.image_transforms
(rescale, normalize, pad, center_crop). The C tests read only what this writes.

resize/manifest.json: {"pillow": version, "cases": [{src, width, height, filter, expected}]}
ops/manifest.json:    normalize / pad / center_crop / crop / tiles cases (see below).
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import PIL
from PIL import Image, ImageDraw
from safetensors.numpy import save_file
from transformers.image_transforms import center_crop, normalize, pad, rescale
from transformers.image_utils import ChannelDimension

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
RESIZE_DIR = os.path.join(FIXTURES, "resize")
OPS_DIR = os.path.join(FIXTURES, "ops")

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def make_rgb(w, h, seed, noise=6.0, details=True):
    """Photo-like test content: smooth gradients, saturated hard-edged blocks, a
    checkerboard, thin strokes and text, plus Gaussian noise (noise=0 keeps it smooth)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = xx / max(w - 1, 1)
    v = yy / max(h - 1, 1)
    ph = rng.uniform(0, 2 * math.pi, 3)
    r = 128 + 110 * np.sin(2 * math.pi * (1.3 * u + 0.7 * v) + ph[0])
    g = 255 * (0.2 + 0.8 * u * (1 - 0.5 * v))
    b = 128 + 120 * np.cos(2 * math.pi * (2.1 * u * v + 0.4 * u) + ph[1])
    img = np.stack([r, g, b], axis=-1)
    if noise > 0:
        img += rng.normal(0.0, noise, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img, "RGB")
    if details and w >= 4 and h >= 4:
        d = ImageDraw.Draw(pil)
        # Saturated blocks: ringing of bicubic/lanczos must clip at 0 and 255.
        for _ in range(3):
            x0, y0 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
            x1 = min(w - 1, x0 + int(rng.integers(1, max(2, w // 4))))
            y1 = min(h - 1, y0 + int(rng.integers(1, max(2, h // 4))))
            col = tuple(int(c) for c in rng.choice([0, 255], 3))
            d.rectangle([x0, y0, x1, y1], fill=col)
        # Checkerboard patch (cell 1..4 px): the hardest content for antialiasing.
        cell = int(rng.integers(1, 5))
        cw, ch = max(1, w // 5), max(1, h // 5)
        cx, cy = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        a = np.asarray(pil).copy()
        m = ((np.arange(ch)[:, None] // cell + np.arange(cw)[None, :] // cell) % 2) * 255
        a[cy:cy + ch, cx:cx + cw, :] = m[..., None].astype(np.uint8)
        pil = Image.fromarray(a, "RGB")
        d = ImageDraw.Draw(pil)
        # Text-like strokes.
        for _ in range(4):
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
            d.line(pts, fill=(255, 255, 255) if rng.random() < 0.5 else (0, 0, 0),
                   width=int(rng.integers(1, 4)))
        if w >= 40 and h >= 12:
            d.text((w // 8, h // 3), "Tessera 0123", fill=(10, 10, 10))
    return pil


def make_rgba(w, h, seed):
    """RGB content with an alpha ramp that includes fully transparent and opaque areas."""
    rgb = np.asarray(make_rgb(w, h, seed, noise=10.0))
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = (xx * 255 // max(w - 1, 1)).astype(np.int64)
    alpha[(yy % 7) == 3] = 0
    alpha[(xx % 11) == 5] = 255
    alpha = np.clip(alpha + rng.integers(-20, 21, alpha.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


# (name, width, height, kind, targets). kind: "rgb" (noisy), "smooth" (no noise, compresses
# well: used for the large ones), "rgba". Every target is run with every filter.
SOURCES = [
    ("p1x1", 1, 1, "rgb", [(1, 1), (5, 3), (1, 7), (64, 64)]),
    ("p2x2", 2, 2, "rgb", [(1, 1), (3, 3), (2, 5), (7, 2)]),
    ("p5x3", 5, 3, "rgb", [(1, 1), (10, 6), (3, 5), (5, 1)]),
    ("p17x13", 17, 13, "rgb", [(8, 6), (34, 26), (17, 5), (40, 13), (1, 13), (17, 1), (13, 17)]),
    ("p64x48", 64, 48, "rgb", [(32, 24), (64, 48), (100, 75), (7, 5), (64, 20), (20, 48),
                               (1, 1), (200, 3)]),
    ("p333x250", 333, 250, "rgb", [(224, 168), (100, 100), (333, 125), (150, 250), (37, 29),
                                   (448, 336)]),
    ("p640x480", 640, 480, "rgb", [(224, 224), (336, 252), (28, 28), (640, 1), (1, 480),
                                   (641, 97)]),
    ("p1x1000", 1, 1000, "rgb", [(1, 100), (1, 1), (3, 1000), (2, 50), (5, 2000)]),
    ("p1000x1", 1000, 1, "rgb", [(100, 1), (1, 1), (1000, 3), (50, 2)]),
    ("p3000x2", 3000, 2, "rgb", [(300, 1), (100, 2), (30, 30), (1, 1)]),
    ("p2x3000", 2, 3000, "rgb", [(1, 300), (2, 100), (30, 30), (4, 1500)]),
    ("p3x300", 3, 300, "rgb", [(2, 30), (3, 29)]),
    ("p3x301", 3, 301, "rgb", [(2, 30), (3, 29), (7, 300)]),
    # Either side of Pillow's pass-order boundary 2*(in_w - out_w) vs (in_h - out_h).
    ("p60x60", 60, 60, "rgb", [(30, 1), (31, 1), (40, 20), (41, 20), (57, 55), (58, 55),
                               (90, 30), (20, 90)]),
    ("s2000x1500", 2000, 1500, "smooth", [(448, 336), (96, 72), (1999, 1500)]),
    ("s1200x1800", 1200, 1800, "smooth", [(336, 504), (100, 150), (1200, 17)]),
    ("a97x61", 97, 61, "rgba", [(48, 30), (200, 130), (97, 20), (13, 61), (1, 1)]),
    ("a200x150", 200, 150, "rgba", [(112, 112), (201, 149)]),
]


def build_resize():
    shutil.rmtree(RESIZE_DIR, ignore_errors=True)
    os.makedirs(os.path.join(RESIZE_DIR, "out"))
    cases = []
    for i, (name, w, h, kind, targets) in enumerate(SOURCES):
        if kind == "rgba":
            src = make_rgba(w, h, 100 + i)
        else:
            src = make_rgb(w, h, 100 + i, noise=0.0 if kind == "smooth" else 6.0)
        src_file = f"{name}.png"
        src.save(os.path.join(RESIZE_DIR, src_file), optimize=True)
        for tw, th in targets:
            for fname, fval in FILTERS.items():
                out = src.resize((tw, th), fval)  # reducing_gap=None, as transformers
                exp = f"out/{name}_{tw}x{th}_{fname}.png"
                out.save(os.path.join(RESIZE_DIR, exp), optimize=True)
                cases.append({"src": src_file, "width": tw, "height": th,
                              "filter": fname, "expected": exp})
    with open(os.path.join(RESIZE_DIR, "manifest.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "cases": cases}, f, indent=1)
    return len(cases)


def save_png(arr, rel):
    Image.fromarray(np.ascontiguousarray(arr)).save(os.path.join(OPS_DIR, rel), optimize=True)


def build_ops():
    shutil.rmtree(OPS_DIR, ignore_errors=True)
    os.makedirs(OPS_DIR)
    man = {"normalize": [], "pad": [], "center_crop": [], "crop": [], "tiles": []}

    srcs = {
        "n1x1.png": np.asarray(make_rgb(1, 1, 7)),
        "n7x5.png": np.asarray(make_rgb(7, 5, 8)),
        "n40x30.png": np.asarray(make_rgb(40, 30, 9)),
        "n4ch.png": np.asarray(make_rgba(9, 6, 10)),
    }
    for name, arr in srcs.items():
        save_png(arr, name)

    # normalize: (name, do_rescale, rescale, do_normalize, mean, std). Expected F32 [C,H,W].
    norm_params = [
        ("clip", True, 1 / 255, True, CLIP_MEAN, CLIP_STD),
        ("half", True, 1 / 255, True, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ("rescale_only", True, 1 / 255, False, None, None),
        ("normalize_only", False, None, True, [127.5, 100.0, 3.25], [58.0, 0.7, 2.0]),
        ("neither", False, None, False, None, None),
    ]
    tensors = {}
    for src_name in ["n1x1.png", "n7x5.png", "n40x30.png", "n4ch.png"]:
        arr = srcs[src_name]
        nch = arr.shape[2]
        for pname, do_rs, rs, do_n, mean, std in norm_params:
            x = arr
            if do_rs:
                x = rescale(x, rs, input_data_format=ChannelDimension.LAST)
            if do_n:
                mean_c = (mean + [0.25])[:nch]
                std_c = (std + [0.125])[:nch]
                x = normalize(x, mean_c, std_c, input_data_format=ChannelDimension.LAST)
            else:
                mean_c, std_c = None, None
            x = np.asarray(x, dtype=np.float32)  # "neither": uint8 -> float32 as numpy does
            key = f"{src_name[:-4]}_{pname}"
            tensors[key] = np.ascontiguousarray(x.transpose(2, 0, 1))
            man["normalize"].append({"src": src_name, "tensor": key, "do_rescale": do_rs,
                                     "rescale": rs if do_rs else 0.0, "do_normalize": do_n,
                                     "mean": mean_c or [], "std": std_c or []})
    save_file(tensors, os.path.join(OPS_DIR, "normalize.safetensors"))

    # pad with transformers' pad (scalar fill, non-negative offsets) ...
    a = srcs["n7x5.png"]
    for k, (top, bottom, left, right, fill) in enumerate(
            [(0, 0, 0, 0, 0), (1, 2, 3, 4, 0), (0, 5, 0, 0, 255), (3, 0, 2, 0, 17),
             (0, 0, 9, 1, 128)]):
        out = pad(a, ((top, bottom), (left, right)), constant_values=fill,
                  input_data_format=ChannelDimension.LAST)
        rel = f"pad_{k}.png"
        save_png(out, rel)
        man["pad"].append({"src": "n7x5.png", "width": int(out.shape[1]),
                           "height": int(out.shape[0]), "x": left, "y": top,
                           "fill": [fill] * 3, "expected": rel})
    # ... and Image.paste onto a filled canvas for per-channel fill and clipped placement.
    src_pil = Image.fromarray(srcs["n40x30.png"])
    for k, (cw, ch, x, y, fill) in enumerate(
            [(50, 20, -5, 3, (1, 2, 3)), (30, 40, 10, -12, (255, 0, 128)),
             (20, 20, -10, -5, (9, 9, 9)), (45, 35, 44, 34, (0, 0, 0)),
             (10, 10, 10, 10, (200, 100, 50)), (40, 30, -40, 0, (7, 8, 9))]):
        canvas = Image.new("RGB", (cw, ch), fill)
        canvas.paste(src_pil, (x, y))
        rel = f"paste_{k}.png"
        canvas.save(os.path.join(OPS_DIR, rel), optimize=True)
        man["pad"].append({"src": "n40x30.png", "width": cw, "height": ch, "x": x, "y": y,
                           "fill": list(fill), "expected": rel})

    # center_crop: smaller, larger, mixed, odd differences, identity.
    for k, (cw, ch) in enumerate([(20, 10), (40, 30), (41, 33), (57, 30), (25, 45),
                                  (1, 1), (39, 29), (44, 31), (13, 8)]):
        out = center_crop(srcs["n40x30.png"], (ch, cw), input_data_format=ChannelDimension.LAST)
        rel = f"center_crop_{k}.png"
        save_png(out, rel)
        man["center_crop"].append({"src": "n40x30.png", "width": cw, "height": ch,
                                   "expected": rel})

    # crop: numpy slicing.
    for k, (x, y, cw, ch) in enumerate([(0, 0, 40, 30), (5, 7, 10, 3), (39, 29, 1, 1),
                                        (0, 10, 40, 1)]):
        rel = f"crop_{k}.png"
        save_png(srcs["n40x30.png"][y:y + ch, x:x + cw], rel)
        man["crop"].append({"src": "n40x30.png", "x": x, "y": y, "width": cw, "height": ch,
                            "expected": rel})

    # tiles: row-major tiles stacked vertically in one PNG.
    for k, (rows, cols) in enumerate([(3, 2), (1, 1), (5, 8), (1, 40)]):
        arr = srcs["n40x30.png"]
        th, tw = arr.shape[0] // rows, arr.shape[1] // cols
        tiles = [arr[r * th:(r + 1) * th, c * tw:(c + 1) * tw] for r in range(rows)
                 for c in range(cols)]
        rel = f"tiles_{k}.png"
        save_png(np.concatenate(tiles, axis=0), rel)
        man["tiles"].append({"src": "n40x30.png", "rows": rows, "cols": cols, "expected": rel})

    with open(os.path.join(OPS_DIR, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


def main():
    n = build_resize()
    build_ops()
    print(f"resize: {n} cases (Pillow {PIL.__version__}); ops written", file=sys.stderr)


if __name__ == "__main__":
    main()
