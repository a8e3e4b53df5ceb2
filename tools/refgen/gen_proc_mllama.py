#!/usr/bin/env python3
"""Writes the MLlama (Llama 3.2 Vision) processor fixtures: tests/fixtures/proc/mllama/.

Usage: tools/refgen/refgen.sh proc_mllama   (or: .venv/bin/python gen_proc_mllama.py [FIXTURES_DIR])

The reference is transformers' MllamaProcessor with the PIL image processor
(MllamaImageProcessorPil), called as processor(images=[[...]], text=prompt, return_tensors="np").
Deterministic: every image comes from a seeded generator.

proc/mllama/<model>/     preprocessor_config.json, config.json and the llama3 fixture tokenizer
                         (tests/fixtures/tokenizer/llama3, from gen_tokenizers.py)
proc/mllama/img/*.png    inputs (RGB, L, RGBA)
proc/mllama/cases.json   {"cases": [{name, model, prompt, images, add_special_tokens, input_ids,
                                     num_tiles, outputs}]}
                         prompt is the text given to the processor (before it inserts the bos);
                         num_tiles is the image processor's nested list;
                         outputs names cases/<name>.safetensors, holding pixel_values,
                         aspect_ratio_ids, aspect_ratio_mask and cross_attention_mask as HF
                         returns them (input_ids also, as I64).
"""
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from transformers import AutoTokenizer
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
from transformers.models.mllama.processing_mllama import MllamaProcessor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "proc", "mllama")
TOK = os.path.join(FIXTURES, "tokenizer", "llama3")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# The released preprocessor_config.json with a small tile so fixtures stay small.
MODELS = {
    "model": {"do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True,
              "do_resize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
              "image_processor_type": "MllamaImageProcessor", "max_image_tiles": 4, "resample": 2,
              "rescale_factor": 0.00392156862745098, "size": {"height": 56, "width": 56}},
    "model_t6": {"do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True,
                 "do_resize": True, "image_mean": [0.5, 0.25, 0.75], "image_std": [0.5, 0.125, 0.3],
                 "image_processor_type": "MllamaImageProcessor", "max_image_tiles": 6, "resample": 2,
                 "rescale_factor": 0.00392156862745098, "size": {"height": 28, "width": 28}},
}


def make_image(name, w, h, mode, seed):
    """Smooth gradients plus noise (so resizing matters), in the requested PIL mode."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255.0 / max(w - 1, 1)), (y * 255.0 / max(h - 1, 1)),
                     ((x + y) * 127.0 / max(w + h - 2, 1))], axis=-1)
    px = np.clip(base + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(px, "RGB")
    if mode == "L":
        img = img.convert("L")
    elif mode == "RGBA":
        alpha = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        alpha[: h // 3] = 255
        alpha[h // 3: h // 2] = 0
        img = Image.fromarray(np.dstack([px, alpha]), "RGBA")
    path = os.path.join(OUT, "img", name + ".png")
    img.save(path)
    return name + ".png"


IMAGES = [  # name, w, h, mode
    ("rgb_1x1", 1, 1, "RGB"), ("rgb_40x30", 40, 30, "RGB"), ("rgb_64x48", 64, 48, "RGB"),
    ("rgb_97x61", 97, 61, "RGB"), ("rgb_300x7", 300, 7, "RGB"), ("rgb_9x250", 9, 250, "RGB"),
    ("rgb_400x300", 400, 300, "RGB"), ("gray_50x70", 50, 70, "L"), ("rgba_60x45", 60, 45, "RGBA"),
    ("rgb_56x56", 56, 56, "RGB"), ("rgb_100x20", 100, 20, "RGB"), ("rgb_33x90", 33, 90, "RGB"),
    ("rgb_112x113", 112, 113, "RGB"),
]

# name, model, prompt, images, add_special_tokens
CASES = [
    ("tiny", "model", "<|image|>What is this?", ["rgb_1x1"], False),
    ("small", "model", "<|image|>Describe the picture.", ["rgb_40x30"], False),
    ("fits_canvas", "model", "<|image|>If I had to write a haiku", ["rgb_64x48"], False),
    ("odd", "model", "<|image|> odd sizes 97 x 61", ["rgb_97x61"], False),
    ("wide", "model", "<|image|>wide strip", ["rgb_300x7"], False),
    ("tall", "model", "<|image|>tall strip", ["rgb_9x250"], False),
    ("downscale", "model", "<|image|>a larger photo", ["rgb_400x300"], False),
    ("gray", "model", "<|image|>gray", ["gray_50x70"], False),
    ("alpha", "model", "<|image|>transparent", ["rgba_60x45"], False),
    ("exact_tile", "model", "<|image|>one tile", ["rgb_56x56"], True),
    ("two_consecutive", "model", "<|image|><|image|>Compare these two.", ["rgb_40x30", "rgb_400x300"], False),
    ("three_interleaved", "model", "First <|image|> then <|image|><|image|> and more text at the end",
     ["rgb_97x61", "gray_50x70", "rgb_9x250"], False),
    ("bos_in_prompt", "model",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>What is in this image?"
     "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", ["rgba_60x45"], False),
    ("six_tiles", "model_t6", "<|image|>six tiles <|image|> two images", ["rgb_100x20", "rgb_33x90"], False),
    ("six_tiles_square", "model_t6", "<|image|>square-ish", ["rgb_112x113"], True),
]


def write_model(name, cfg):
    d = os.path.join(OUT, name)
    os.makedirs(d)
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tok_cfg = json.load(open(os.path.join(TOK, "tokenizer_config.json")))
    image_id = int(next(k for k, v in tok_cfg["added_tokens_decoder"].items() if v["content"] == "<|image|>"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "mllama", "architectures": ["MllamaForConditionalGeneration"],
                   "image_token_index": image_id}, f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK, fn), os.path.join(d, fn))
    ip = MllamaImageProcessorPil(**{k: v for k, v in cfg.items() if k != "image_processor_type"})
    return MllamaProcessor(image_processor=ip, tokenizer=AutoTokenizer.from_pretrained(d))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "img"))
    os.makedirs(os.path.join(OUT, "cases"))
    procs = {name: write_model(name, cfg) for name, cfg in MODELS.items()}
    files = {n: make_image(n, w, h, m, seed) for seed, (n, w, h, m) in enumerate(IMAGES)}
    cases = []
    for name, model, prompt, imgs, add_special in CASES:
        pil = [Image.open(os.path.join(OUT, "img", files[i])) for i in imgs]
        out = procs[model](images=[pil], text=prompt, add_special_tokens=add_special, return_tensors="np")
        num_tiles = procs[model].image_processor(images=[pil], return_tensors="np")["num_tiles"]
        tensors = {k: np.ascontiguousarray(out[k]) for k in
                   ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask")}
        tensors["input_ids"] = np.ascontiguousarray(out["input_ids"].astype(np.int64))
        assert tensors["pixel_values"].dtype == np.float32
        save_file(tensors, os.path.join(OUT, "cases", name + ".safetensors"))
        cases.append({"name": name, "model": model, "prompt": prompt, "images": [files[i] for i in imgs],
                      "add_special_tokens": add_special, "input_ids": out["input_ids"][0].tolist(),
                      "num_tiles": [int(t) for t in num_tiles[0]], "outputs": "cases/" + name + ".safetensors"})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"transformers_processor": "MllamaProcessor + MllamaImageProcessorPil", "cases": cases}, f,
                  indent=1)


if __name__ == "__main__":
    main()
