#!/usr/bin/env python3
"""Writes the media-processor fixtures of Qwen2-VL, Mistral3 (Pixtral) and LLaVA-NeXT:
tests/fixtures/proc/{qwen2_vl,mistral3,llava_next}/.

Usage: tools/refgen/refgen.sh proc_a   (or: .venv/bin/python gen_proc_a.py [FIXTURES_DIR])

Per family:
  images/*.png            small seeded images in several Pillow modes (RGB, L, P, RGBA, LA,
                          P with transparency), opened by transformers as PIL images
  <config>/...json        preprocessor_config.json (+ processor_config.json, config.json) with
                          only the fields the processor reads; "default" takes them from the
                          real checkpoint's files in ../shared/reference/checkpoints
  cases.json              {"tokenizer": dir under tokenizer/, "cases": [{"name", "config",
                          "images", "expect" (safetensors of the processor's image tensors),
                          "ids" (input_ids of processor(text=placeholder per image,
                          add_special_tokens=False))} or {..., "error": exception text}]}
The processors are transformers' PIL-backend classes (the reference); the token ids come from
the processor's own placeholder expansion and the fixture tokenizer.
"""
import json
import math
import os
import shutil
import sys
import types

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from transformers import AutoTokenizer
from transformers.processing_utils import ProcessorMixin
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor
from transformers.models.pixtral import image_processing_pil_pixtral as pixtral_pil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

# The processors check their sub-processors against torchvision-backed classes, and
# processing_pixtral imports a helper from the torchvision module; the reference here is the
# PIL backend (torchvision is not installed), so both checks are bypassed. Neither touches
# the numbers: the image processor and the placeholder expansion are transformers' own.
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None
_tv = types.ModuleType("transformers.models.pixtral.image_processing_pixtral")
_tv.get_resize_output_image_size = pixtral_pil.get_resize_output_image_size
sys.modules[_tv.__name__] = _tv
from transformers.models.pixtral.processing_pixtral import PixtralProcessor  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "proc")
CKPT = os.path.join(ROOT, "..", "shared", "reference", "checkpoints")


def ckpt_json(model, name):
    with open(os.path.join(CKPT, model, name)) as f:
        return json.load(f)


def pick(d, keys):
    return {k: d[k] for k in keys if k in d}


def make_image(w, h, seed, mode="RGB"):
    """Seeded gradients + noise + a hard edge, converted to `mode`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xx / max(w - 1, 1), yy / max(h - 1, 1)
    r = 128 + 100 * np.sin(2 * math.pi * (1.7 * u + 0.6 * v) + rng.uniform(0, 6))
    g = 255 * (0.15 + 0.8 * u * (1 - 0.4 * v))
    b = 128 + 110 * np.cos(2 * math.pi * (2.3 * u * v + 0.5 * v) + rng.uniform(0, 6))
    a = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    a[(xx > w * 0.6) & (yy < h * 0.4)] = [255, 0, 30]
    rgb = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    if mode == "RGB":
        return img
    if mode in ("L", "P"):
        return img.convert(mode) if mode == "L" else img.quantize(colors=23, method=2)
    alpha = np.clip(np.rint(255 * (0.15 + 0.85 * u * v) + rng.normal(0, 20, (h, w))), 0, 255)
    alpha = alpha.astype(np.uint8)
    if mode == "RGBA":
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if mode == "LA":
        return Image.fromarray(np.dstack([np.asarray(img.convert("L")), alpha]), "LA")
    if mode == "PT":  # palette with a transparent index
        p = img.quantize(colors=17, method=2)
        p.info["transparency"] = 3
        return p
    raise ValueError(mode)


class Family:
    def __init__(self, name, tokenizer, placeholder):
        self.name, self.tokenizer, self.placeholder = name, tokenizer, placeholder
        self.dir = os.path.join(OUT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "images"))
        self.tok = AutoTokenizer.from_pretrained(os.path.join(FIXTURES, "tokenizer", tokenizer))
        self.cases, self.configs, self.images = [], {}, {}

    def image(self, w, h, seed, mode="RGB"):
        name = f"{mode.lower()}_{w}x{h}_{seed}.png"
        if name not in self.images:
            img = make_image(w, h, seed, mode)
            img.save(os.path.join(self.dir, "images", name))
            self.images[name] = name
        return name

    def config(self, name, files, make_processor):
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        for fname, content in files.items():
            with open(os.path.join(d, fname), "w") as f:
                json.dump(content, f, indent=1)
        self.configs[name] = make_processor

    def case(self, name, config, images):
        proc = self.configs[config](self.tok)
        pil = [Image.open(os.path.join(self.dir, "images", i)) for i in images]
        c = {"name": name, "config": config, "images": images}
        try:
            out = proc(text=[self.placeholder * len(pil)], images=pil, return_tensors="np",
                       add_special_tokens=False)
        except Exception as e:  # the C side must fail with the same reason
            c["error"] = str(e)
            self.cases.append(c)
            return
        tensors = {k: np.ascontiguousarray(v) for k, v in out.items()
                   if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
        c["expect"] = f"{name}.safetensors"
        save_file(tensors, os.path.join(self.dir, c["expect"]))
        c["ids"] = [int(x) for x in out["input_ids"][0]]
        self.cases.append(c)

    def write(self):
        with open(os.path.join(self.dir, "cases.json"), "w") as f:
            json.dump({"tokenizer": self.tokenizer, "cases": self.cases}, f, indent=1)


def qwen2_vl():
    fam = Family("qwen2_vl", "qwen2", "<|image_pad|>")

    def proc(pp):
        return lambda tok: Qwen2VLProcessor(image_processor=Qwen2VLImageProcessorPil(**pp),
                                            tokenizer=tok)

    real = pick(ckpt_json("Qwen--Qwen2-VL-2B", "preprocessor_config.json"),
                ["min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size",
                 "image_mean", "image_std"])
    small = {"size": {"shortest_edge": 1000, "longest_edge": 9000}, "resample": 2}
    minmax = {"size": {"shortest_edge": 100, "longest_edge": 100000},
              "min_pixels": 6272, "max_pixels": 20000, "patch_size": 8, "merge_size": 3,
              "temporal_patch_size": 3, "image_mean": 0.5, "image_std": [0.25, 0.5, 0.75]}
    noresize = {"do_resize": False, "do_normalize": False}
    for name, pp in [("default", real), ("small", small), ("minmax", minmax),
                     ("noresize", noresize)]:
        fam.config(name, {"preprocessor_config.json": pp}, proc(pp))
    I = fam.image
    fam.case("rgb_1x1", "default", [I(1, 1, 1)])
    fam.case("rgb_70x70_tie", "default", [I(70, 70, 2)])
    fam.case("rgb_20x20_upscale", "default", [I(20, 20, 3)])
    fam.case("rgb_97x61", "default", [I(97, 61, 4)])
    fam.case("gray_37x53", "default", [I(37, 53, 5, "L")])
    fam.case("palette_45x31", "default", [I(45, 31, 6, "P")])
    fam.case("rgba_33x47", "default", [I(33, 47, 7, "RGBA")])
    fam.case("la_29x40", "default", [I(29, 40, 8, "LA")])
    fam.case("ptrans_50x22", "default", [I(50, 22, 9, "PT")])
    fam.case("tall_3x500", "default", [I(3, 500, 10)])
    fam.case("wide_400x2", "default", [I(400, 2, 11)])
    fam.case("multi_mixed", "default", [I(64, 48, 12), I(37, 53, 5, "L"), I(1, 1, 1)])
    fam.case("small_downscale_200x150", "small", [I(200, 150, 13)])
    fam.case("small_multi", "small", [I(97, 61, 4), I(33, 47, 7, "RGBA"), I(130, 40, 14)])
    fam.case("minmax_up_and_down", "minmax", [I(20, 20, 3), I(200, 150, 13), I(97, 61, 4)])
    fam.case("noresize_56x84", "noresize", [I(84, 56, 15)])
    fam.case("err_aspect_1x201", "default", [I(1, 201, 16)])
    fam.case("err_aspect_250x1", "default", [I(250, 1, 17)])
    fam.write()


def mistral3():
    fam = Family("mistral3", "tekken", "[IMG]")

    def proc(pp, pc):
        return lambda tok: PixtralProcessor(image_processor=pixtral_pil.PixtralImageProcessorPil(**pp),
                                            tokenizer=tok, **pc)

    m = "mistralai--Mistral-Small-3.1-24B-Instruct-2503"
    real_pp = pick(ckpt_json(m, "preprocessor_config.json"),
                   ["do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean",
                    "image_std", "patch_size", "resample", "rescale_factor", "size",
                    "do_center_crop", "crop_size"])
    real_pc = pick(ckpt_json(m, "processor_config.json"),
                   ["image_break_token", "image_end_token", "image_token", "patch_size",
                    "spatial_merge_size"])
    real_cfg = ckpt_json(m, "config.json")
    real_cfg = {"model_type": real_cfg["model_type"],
                "spatial_merge_size": real_cfg["spatial_merge_size"],
                "vision_config": pick(real_cfg["vision_config"], ["patch_size"])}
    small_pp = {"size": {"longest_edge": 64}, "resample": 3}
    small_pc = {"patch_size": 8, "spatial_merge_size": 2}
    small_cfg = {"model_type": "mistral3", "spatial_merge_size": 2,
                 "vision_config": {"patch_size": 8}}
    hw_pp = {"size": {"height": 48, "width": 80}, "image_mean": [0.5, 0.5, 0.5],
             "image_std": [0.5, 0.5, 0.5], "do_center_crop": True,
             "crop_size": {"height": 40, "width": 40}}
    hw_pc = {"patch_size": 16}
    for name, pp, pc, cfg in [("default", real_pp, real_pc, real_cfg),
                              ("small", small_pp, small_pc, small_cfg),
                              ("hw_crop", hw_pp, hw_pc, None)]:
        files = {"preprocessor_config.json": pp, "processor_config.json": pc}
        if cfg:
            files["config.json"] = cfg
        fam.config(name, files, proc(pp, pc))
    I = fam.image
    fam.case("rgb_1x1", "default", [I(1, 1, 1)])
    fam.case("rgb_97x61", "default", [I(97, 61, 2)])
    fam.case("rgb_56x28_exact", "default", [I(56, 28, 3)])
    fam.case("gray_37x53", "default", [I(37, 53, 4, "L")])
    fam.case("palette_45x31", "default", [I(45, 31, 5, "P")])
    fam.case("rgba_33x47", "default", [I(33, 47, 6, "RGBA")])
    fam.case("la_29x40", "default", [I(29, 40, 7, "LA")])
    fam.case("ptrans_50x22", "default", [I(50, 22, 8, "PT")])
    fam.case("wide_300x2", "default", [I(300, 2, 9)])
    fam.case("multi_mixed_pad", "default", [I(97, 61, 2), I(37, 53, 4, "L"), I(1, 1, 1)])
    fam.case("small_downscale_200x150", "small", [I(200, 150, 10)])
    fam.case("small_tall_3x500", "small", [I(3, 500, 11)])
    fam.case("small_multi", "small", [I(200, 150, 10), I(33, 47, 6, "RGBA"), I(130, 40, 12)])
    fam.case("hw_crop_multi", "hw_crop", [I(200, 150, 10), I(20, 90, 13), I(45, 31, 5, "P")])
    fam.write()


def llava_next():
    fam = Family("llava_next", "llama_spm", "<image>")

    def proc(pp, pc):
        return lambda tok: LlavaNextProcessor(image_processor=LlavaNextImageProcessorPil(**pp),
                                              tokenizer=tok, **pc)

    real_cfg = {"model_type": "llava_next", "vision_feature_select_strategy": "default",
                "vision_config": {"patch_size": 14, "image_size": 336}}
    real_pp = {"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336},
               "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336],
                                        [336, 1008]],
               "resample": 3, "do_center_crop": True, "do_pad": True,
               "image_mean": [0.48145466, 0.4578275, 0.40821073],
               "image_std": [0.26862954, 0.26130258, 0.27577711]}
    real_pc = {"patch_size": 14, "vision_feature_select_strategy": "default",
               "num_additional_image_tokens": 1, "image_token": "<image>"}
    small_pp = dict(real_pp, size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56},
                    image_grid_pinpoints=[[56, 112], [112, 56], [112, 112], [168, 56],
                                          [56, 168]])
    nocrop_pp = {"size": {"height": 42, "width": 42}, "do_center_crop": False,
                 "crop_size": {"height": 42, "width": 42}, "resample": 2,
                 "image_grid_pinpoints": [[42, 84], [84, 84], [126, 42]]}
    nocrop_pc = {"patch_size": 14, "vision_feature_select_strategy": "full"}
    ragged_pp = dict(small_pp, image_grid_pinpoints=[[60, 120], [120, 60], [100, 100]])
    for name, pp, pc in [("default", real_pp, real_pc), ("small", small_pp, real_pc),
                         ("nocrop", nocrop_pp, nocrop_pc), ("ragged", ragged_pp, real_pc)]:
        fam.config(name, {"preprocessor_config.json": pp, "processor_config.json": pc,
                          "config.json": real_cfg}, proc(pp, pc))
    I = fam.image
    fam.case("default_24x17", "default", [I(24, 17, 1)])
    fam.case("rgb_1x1", "small", [I(1, 1, 2)])
    fam.case("rgb_97x61", "small", [I(97, 61, 3)])
    fam.case("tall_40x130", "small", [I(40, 130, 4)])
    fam.case("gray_37x53", "small", [I(37, 53, 5, "L")])
    fam.case("palette_45x31", "small", [I(45, 31, 6, "P")])
    fam.case("rgba_33x47", "small", [I(33, 47, 7, "RGBA")])
    fam.case("la_29x40", "small", [I(29, 40, 8, "LA")])
    fam.case("ptrans_50x22", "small", [I(50, 22, 9, "PT")])
    fam.case("wide_300x2", "small", [I(300, 2, 10)])
    fam.case("tall_2x300", "small", [I(2, 300, 11)])
    fam.case("square_112", "small", [I(112, 112, 12)])
    fam.case("multi_mixed_pad", "small", [I(97, 61, 3), I(112, 112, 12), I(1, 1, 2)])
    fam.case("nocrop_multi", "nocrop", [I(97, 61, 3), I(20, 90, 13)])
    fam.case("ragged_multi", "ragged", [I(97, 61, 3), I(40, 130, 4)])
    fam.write()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    qwen2_vl()
    mistral3()
    llava_next()
