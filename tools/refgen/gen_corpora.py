#!/usr/bin/env python3
"""Pillow's verdict on the conformance corpora: tests/fixtures/corpora/.

For every file under $TSR_SHARED/corpora/{pngsuite,libpng-testpngs,libjpeg-turbo}
(default ../shared relative to the repository), Pillow decodes it as transformers'
load_image does -- ImageOps.exif_transpose(Image.open(f)).convert("RGB") -- and
manifest.json records the relative path, whether that worked, Pillow's mode and size (or
the error). For each decodable file the RGB result is written to expected/<path>.png with
"/" replaced by "__". The corpus files themselves are not copied.

Run: tools/refgen/.venv/bin/python tools/refgen/gen_corpora.py
"""
import json
import os
import sys
import warnings

import numpy as np
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("TSR_SHARED", os.path.join(ROOT, "..", "shared"))
CORPORA = os.path.join(SHARED, "corpora")
OUT = os.path.join(ROOT, "tests", "fixtures", "corpora")
FOLDERS = ("pngsuite", "libpng-testpngs", "libjpeg-turbo")


def pillow_decode(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as im:
            mode = im.mode
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            return mode, np.asarray(rgb)


def main():
    if not os.path.isdir(CORPORA):
        sys.exit(f"no corpora at {CORPORA}")
    exp_dir = os.path.join(OUT, "expected")
    os.makedirs(exp_dir, exist_ok=True)
    for f in os.listdir(exp_dir):
        os.remove(os.path.join(exp_dir, f))
    files = []
    for folder in FOLDERS:
        for dirpath, _, names in os.walk(os.path.join(CORPORA, folder)):
            for n in names:
                files.append(os.path.relpath(os.path.join(dirpath, n), CORPORA))
    entries = []
    ok = 0
    for rel in sorted(files):
        e = {"path": rel}
        try:
            mode, rgb = pillow_decode(os.path.join(CORPORA, rel))
        except Exception as ex:  # Pillow rejects the file: Tessera must too
            msg = str(ex).replace(os.path.join(CORPORA, ""), "")
            e.update(decodes=False, error=f"{type(ex).__name__}: {msg}"[:200])
        else:
            ok += 1
            name = rel.replace("/", "__") + ".png"
            Image.fromarray(rgb, "RGB").save(os.path.join(exp_dir, name), compress_level=9)
            e.update(decodes=True, pil_mode=mode, width=int(rgb.shape[1]),
                     height=int(rgb.shape[0]), expected=f"expected/{name}")
        entries.append(e)
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump({"generator": "tools/refgen/gen_corpora.py", "pillow": Image.__version__,
                   "files": entries}, fh, indent=1)
        fh.write("\n")
    print(f"{len(entries)} corpus files, {ok} decoded by Pillow", file=sys.stderr)


if __name__ == "__main__":
    main()
