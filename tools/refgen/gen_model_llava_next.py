#!/usr/bin/env python3
"""LLaVA-NeXT end-to-end parity fixtures: tests/fixtures/models/llava_next/.

Usage: .venv/bin/python gen_model_llava_next.py [FIXTURES_DIR]   (default tests/fixtures)

A tiny seeded random-weight LlavaNextForConditionalGeneration (CLIP vision tower: hidden 32,
3 layers, 4 heads, 28 px images of 7 px patches; vision_feature_layer -2, "default" strategy;
Mistral text model: hidden 64, 2 layers, GQA 4/2) in the hub layout of
llava-hf/llava-v1.6-mistral-7b-hf, and what transformers computes from raw prompts.

models/llava_next/model/        config.json, generation_config.json, model.safetensors (hub
                                names: vision_tower.vision_model.*, multi_modal_projector.*,
                                image_newline, language_model.model.*, language_model.lm_head.*),
                                and the processor / tokenizer files of
                                pipeline/llava_next/model (tile 28 px, pinpoints scaled alike)
                                with the patch size set to the tower's 7 px
models/llava_next/cases.json    {"reference", "n_greedy", "cases": [{"name", "prompt" (the
                                 rendered prompt with its <image> placeholders),
                                 "add_special_tokens", "media": [files of
                                 pipeline/media], "n_image_tokens"}]}
models/llava_next/vision_16bit.safetensors.gz   the encoder's tensors (hub names) as 16-bit
                                checkpoints store them: the tower in F16, multi_modal_projector
                                and image_newline in BF16 (the tests swap them in)
models/llava_next/expected.safetensors.gz, per case <name>:
  <name>.input_ids  I64 [T]        the processor's ids
  <name>.embeds     F32 [N, 64]    the packed image features (base tile, then the unpadded
                                   anyres grid with image_newline per row, per image in order:
                                   the rows that replace the <image> tokens); absent without
                                   images
  <name>.logits     F32 [V]        logits of the last prompt position (prefill)
  <name>.embeds_16bit F32 [N, 64] (one_image, three_images_mixed) the same with the encoder's
                                   tensors of vision_16bit.safetensors
  <name>.embeds_layers_list F32 [N, 64] (one_image, two_images_extreme) the same with
                                   vision_feature_layer [-1, 0] and the linear_1 [64, 64] of
                                   layers_list.safetensors.gz
  <name>.greedy     I32 [32]       greedy ids: the argmax of the last position's logits,
                                   appended and run again, 32 times; EOS does not stop it
                                   (what a generate() with EOS ignored returns)
Everything runs in float32 with eager attention.
"""
import copy
import gzip
import io
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save, save_file
from transformers import (AutoTokenizer, CLIPVisionConfig, LlavaNextConfig,
                          LlavaNextForConditionalGeneration, MistralConfig)
from transformers.processing_utils import ProcessorMixin
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
SRC = os.path.join(FIXTURES, "pipeline", "llava_next", "model")
MEDIA = os.path.join(FIXTURES, "pipeline", "media")
OUT = os.path.join(FIXTURES, "models", "llava_next")
N_GREEDY = 32
PATCH = 7

# The reference is the PIL image processor; the processor class check wants the torchvision one.
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None

CASES = [  # name, prompt, images
    ("one_image", "[INST] <image>\nWhat is shown in this image? [/INST]", ["rgb_97x61.png"]),
    ("two_images_extreme", "[INST] <image>\n<image>\nCompare the strips. [/INST]",
     ["wide_180x4.png", "tall_4x150.png"]),
    ("three_images_mixed", "[INST] A <image> B <image> C <image> [/INST]",
     ["rgb_64x48.png", "large_120x156.png", "rgb_2x2.png"]),
    ("multi_turn_image_earlier",
     "[INST] <image>\nWhat is it? [/INST] A grey square.</s>[INST] What colour is it? [/INST]",
     ["gray_37x53.png"]),
    ("large_landscape", "[INST] <image>\nDescribe the scene in detail. [/INST]", ["large_160x120.png"]),
    ("tiny_and_alpha", "[INST] <image> then <image> [/INST]", ["rgb_1x1.png", "rgba_33x47.png"]),
    ("text_only", "[INST] Tell me a story about a robot. [/INST]", []),
]


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def save_gz(tensors, path):
    """path.gz, as tools/refgen/compress_fixtures.py writes them (the tests read either)."""
    data = save(tensors)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(data)
    with open(path + ".gz", "wb") as f:
        f.write(buf.getvalue())


def hub_name(k):
    """transformers 5 module names -> the names the hub checkpoints store."""
    for a, b in (("model.vision_tower.", "vision_tower.vision_model."),
                 ("model.multi_modal_projector.", "multi_modal_projector."),
                 ("model.image_newline", "image_newline"),
                 ("model.language_model.", "language_model.model."),
                 ("lm_head.", "language_model.lm_head.")):
        if k.startswith(a):
            return b + k[len(a):]
    raise KeyError(k)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    mdir = os.path.join(OUT, "model")
    os.makedirs(mdir)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json"):
        shutil.copy(os.path.join(SRC, f), os.path.join(mdir, f))
    with open(os.path.join(SRC, "processor_config.json")) as f:
        pc = json.load(f)
    pc["patch_size"] = PATCH
    dump(os.path.join(mdir, "processor_config.json"), pc)
    with open(os.path.join(SRC, "preprocessor_config.json")) as f:
        pp = json.load(f)
    tok = AutoTokenizer.from_pretrained(mdir)
    image_token = tok.convert_tokens_to_ids("<image>")
    vocab = max(len(tok), image_token + 1)

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=4, image_size=pp["crop_size"]["height"],
                              patch_size=PATCH, projection_dim=16, hidden_act="quick_gelu",
                              layer_norm_eps=1e-5)
    text = MistralConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=1e6,
                         sliding_window=None, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    cfg = LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                          image_token_index=image_token, projector_hidden_act="gelu",
                          vision_feature_layer=-2, vision_feature_select_strategy="default",
                          image_grid_pinpoints=pp["image_grid_pinpoints"],
                          tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    torch.manual_seed(20261126)
    model = LlavaNextForConditionalGeneration(cfg).float().eval()
    with torch.no_grad():  # weights large enough that every part shows in the outputs
        for n, p in model.named_parameters():
            if "norm" in n and n.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "norm" in n and n.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif "embed_tokens" in n or "lm_head" in n:
                p.copy_(0.08 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.config.save_pretrained(mdir)
    model.generation_config.save_pretrained(mdir)
    sd = {hub_name(k): v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    # The hub layout loads back to the same weights.
    back = LlavaNextForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32)
    for k, v in back.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k

    # As from the hub directory: with config.json present (AutoTokenizer reads its model_type).
    tok = AutoTokenizer.from_pretrained(mdir)
    ip = LlavaNextImageProcessorPil(**{k: v for k, v in pp.items()
                                       if k not in ("image_processor_type", "processor_class")})
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok,
                              **{k: v for k, v in pc.items() if k != "processor_class"})
    expected, cases = {}, []
    eos = tok.eos_token_id
    for name, prompt, images in CASES:
        pil = [Image.open(os.path.join(MEDIA, f)) for f in images]
        out = proc(text=prompt, images=pil or None, return_tensors="pt")
        ids = out["input_ids"]
        n_img = int((ids == image_token).sum())
        with torch.no_grad():
            kw = {}
            if images:
                kw = {"pixel_values": out["pixel_values"], "image_sizes": out["image_sizes"]}
                feats = model.model.get_image_features(**kw, return_dict=True).pooler_output
                feats = torch.cat(list(feats), 0)
                assert feats.shape[0] == n_img, (name, feats.shape, n_img)
                expected[f"{name}.embeds"] = feats.float().contiguous()
            logits = model(input_ids=ids, attention_mask=out["attention_mask"], **kw).logits[0, -1]
            expected[f"{name}.logits"] = logits.float().contiguous()
            seq, greedy = ids, []
            for _ in range(N_GREEDY):  # EOS does not stop the run
                nxt = int(model(input_ids=seq, attention_mask=torch.ones_like(seq), **kw).logits[0, -1].argmax())
                greedy.append(nxt)
                seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
            if eos not in greedy:  # the same ids as generate() with EOS suppressed
                gen = model.generate(input_ids=ids, attention_mask=out["attention_mask"], **kw,
                                     do_sample=False, max_new_tokens=N_GREEDY,
                                     min_new_tokens=N_GREEDY)
                assert gen[0, ids.shape[1]:].tolist() == greedy, name
        expected[f"{name}.greedy"] = torch.tensor(greedy, dtype=torch.int32)
        expected[f"{name}.input_ids"] = ids[0].to(torch.int64).contiguous()
        cases.append({"name": name, "prompt": prompt, "add_special_tokens": True,
                      "media": images, "n_image_tokens": n_img})
        print(f"  {name}: {ids.shape[1]} ids, {n_img} image rows, greedy {greedy[:6]}...")
    # The encoder's tensors as 16-bit checkpoints store them (tower F16, projector and
    # image_newline BF16); transformers loads them into float32 (dtype=float32) and computes
    # in float32, i.e. the rounded weights.
    low = {}
    for k, v in sd.items():
        if k.startswith("vision_tower."):
            low[k] = v.to(torch.float16).contiguous()
        elif k.startswith(("multi_modal_projector.", "image_newline")):
            low[k] = v.to(torch.bfloat16).contiguous()
    save_gz(low, os.path.join(OUT, "vision_16bit.safetensors"))
    rounded = copy.deepcopy(model)
    rounded.load_state_dict({k: (low[hub_name(k)].float() if hub_name(k) in low else v)
                             for k, v in model.state_dict().items()})
    for name, prompt, images in CASES:
        if name not in ("one_image", "three_images_mixed"):
            continue
        pil = [Image.open(os.path.join(MEDIA, f)) for f in images]
        out = proc(text=prompt, images=pil, return_tensors="pt")
        with torch.no_grad():
            feats = rounded.model.get_image_features(pixel_values=out["pixel_values"],
                                                     image_sizes=out["image_sizes"],
                                                     return_dict=True).pooler_output
        expected[f"{name}.embeds_16bit"] = torch.cat(list(feats), 0).float().contiguous()
    # vision_feature_layer as a list: [-1, 0] concatenates the last hidden state and the
    # embeddings after pre_layrnorm (hidden state 0); linear_1 takes 2 x 32 inputs.
    cfg2 = copy.deepcopy(cfg)
    cfg2.vision_feature_layer = [-1, 0]
    torch.manual_seed(7)
    listed = LlavaNextForConditionalGeneration(cfg2).float().eval()
    state = {k: v for k, v in model.state_dict().items() if k != "model.multi_modal_projector.linear_1.weight"}
    state["model.multi_modal_projector.linear_1.weight"] = 0.15 * torch.randn(64, 2 * 32)
    listed.load_state_dict(state)
    save_gz({"multi_modal_projector.linear_1.weight": state["model.multi_modal_projector.linear_1.weight"].contiguous()},
            os.path.join(OUT, "layers_list.safetensors"))
    for name, prompt, images in CASES:
        if name not in ("one_image", "two_images_extreme"):
            continue
        pil = [Image.open(os.path.join(MEDIA, f)) for f in images]
        out = proc(text=prompt, images=pil, return_tensors="pt")
        with torch.no_grad():
            feats = listed.model.get_image_features(pixel_values=out["pixel_values"],
                                                    image_sizes=out["image_sizes"],
                                                    return_dict=True).pooler_output
        expected[f"{name}.embeds_layers_list"] = torch.cat(list(feats), 0).float().contiguous()
    save_gz(expected, os.path.join(OUT, "expected.safetensors"))
    dump(os.path.join(OUT, "cases.json"), {
        "reference": "transformers " + __import__("transformers").__version__,
        "n_greedy": N_GREEDY, "cases": cases})
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"  models/llava_next: {len(cases)} cases, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
