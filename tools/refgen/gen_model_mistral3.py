#!/usr/bin/env python3
"""Mistral3 (Mistral-Small-3.1) end-to-end fixtures: tests/fixtures/models/mistral3/.

Usage: .venv/bin/python gen_model_mistral3.py [FIXTURES_DIR]

Needs the pipeline fixtures (gen_pipeline.py): the media of pipeline/media/ and the tiny
tokenizer and processor configs of pipeline/mistral3/model/.

models/mistral3/model/           a tiny random-weight Mistral3ForConditionalGeneration in the
                                 hub layout of mistralai/Mistral-Small-3.1-24B-Instruct-2503
                                 (vision_tower.*, multi_modal_projector.*,
                                 language_model.model.*; tied word embeddings so the 5000-row
                                 vocabulary is stored once), config.json, generation_config.json,
                                 the pipeline's tokenizer and processor files. f32.
                                 Pixtral: hidden 32, 2 layers, 2 heads, intermediate 64,
                                 patch 14; projector: RMSNorm, 2x2 patch merger, Linear-GELU-
                                 Linear; Mistral text model: hidden 64, 2 layers, GQA 4/2.
models/mistral3/cases.json       [{"name", "prompt", "add_special_tokens", "media": [files]}]
models/mistral3/expected.safetensors, per case <name>:
  <name>.input_ids  I64 [T]        the processor's ids (raw prompt, PIL images)
  <name>.embeds     F32 [N, 64]    projected image features (the rows that replace [IMG])
                                   (absent for text-only prompts)
  <name>.logits     F32 [V]        logits of the last prompt position
  <name>.greedy     I32 [32]       32 greedy ids (argmax of each step, EOS not stopping)
  layer_m2.embeds   F32 [N, 64]    the features of case BF16_CASE with vision_feature_layer -2
                                   (the output of the first of the two vision layers)
  bf16.embeds       F32 [N, 64]    the features of case BF16_CASE with every weight rounded to
                                   bf16 (as the released checkpoint stores them) and computed in
                                   f32 (from_pretrained(dtype=float32) of a bf16 checkpoint)
The reference is the checkpoint reloaded from the hub layout with from_pretrained.
"""
import json
import os
import shutil
import sys

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
sys.argv[1:] = [FIXTURES]  # gen_pipeline reads its fixtures folder from argv

import gen_pipeline  # noqa: E402  (the PIL Pixtral processor setup)
from transformers import Mistral3Config, Mistral3ForConditionalGeneration  # noqa: E402

OUT = os.path.join(FIXTURES, "models", "mistral3")
MODEL = os.path.join(OUT, "model")
PIPE = os.path.join(FIXTURES, "pipeline", "mistral3", "model")
MEDIA = os.path.join(FIXTURES, "pipeline", "media")
N_GREEDY = 32
BF16_CASE = "two_images_mixed"

# (name, raw prompt with [IMG] placeholders, add_special_tokens, images in order)
CASES = [
    ("one_image", "[INST][IMG]What is in this image?[/INST]", True, ["rgb_97x61.png"]),
    ("system_image", "<s>[SYSTEM_PROMPT]You describe images.[/SYSTEM_PROMPT][INST]Describe:[IMG][/INST]",
     False, ["large_160x120.png"]),
    ("two_images_mixed", "[INST][IMG]and[IMG]which one is warmer?[/INST]", True,
     ["pal_45x31.png", "large_120x156.png"]),
    ("three_images", "A [IMG] B [IMG] C [IMG]", True, ["rgb_64x48.png", "la_29x40.png", "rgb_2x2.png"]),
    ("multi_turn_image_earlier",
     "[INST][IMG]What colour dominates?[/INST]Mostly red.</s>[INST]And the corners?[/INST]", True,
     ["gray_37x53.png"]),
    ("wide_and_tall", "[INST]wide [IMG] tall [IMG][/INST]", True, ["wide_180x4.png", "tall_4x150.png"]),
    ("rgba_composited", "[INST][IMG]RGBA[/INST]", True, ["rgba_33x47.png"]),
    ("text_only", "[INST]Just text, no image at all.[/INST]", True, []),
]


def config():
    return Mistral3Config(
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, num_channels=3,
                           image_size=1540, patch_size=14, hidden_act="gelu",
                           rope_parameters={"rope_type": "axial", "rope_theta": 10000.0}),
        text_config=dict(model_type="mistral", vocab_size=5000, hidden_size=64,
                         intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         rms_norm_eps=1e-5, hidden_act="silu", sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000000.0},
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2),
        image_token_index=10, projector_hidden_act="gelu", vision_feature_layer=-1,
        multimodal_projector_bias=False, spatial_merge_size=2, tie_word_embeddings=True)


def hub_name(k):
    """transformers 5 in-memory names -> the hub checkpoint's names (save_pretrained of 5.24
    already writes these; earlier versions wrote the in-memory ones)."""
    if k.startswith(("vision_tower.", "multi_modal_projector.", "language_model.")):
        return k
    for a, b in (("model.vision_tower.", "vision_tower."),
                 ("model.multi_modal_projector.", "multi_modal_projector."),
                 ("model.language_model.", "language_model.model.")):
        if k.startswith(a):
            return b + k[len(a):]
    if k == "lm_head.weight":
        return "language_model.lm_head.weight"
    raise KeyError(k)


@torch.no_grad()
def build():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(MODEL)
    torch.manual_seed(34)
    model = Mistral3ForConditionalGeneration(config()).eval()
    # Large enough that features and logits vary visibly; the language model's matrices larger
    # still, so that the greedy ids move on instead of repeating the last one (tied embeddings).
    for n, p in model.named_parameters():
        if n.endswith("norm.weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        elif "patch_conv" in n:
            p.copy_(torch.randn_like(p) * 0.05)
        elif "language_model" in n and "embed_tokens" not in n:
            p.copy_(torch.randn_like(p) * 0.2)
        else:
            p.copy_(torch.randn_like(p) * 0.1)
    model.save_pretrained(MODEL)
    sd = {}
    for f in sorted(os.listdir(MODEL)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(MODEL, f)))
            os.remove(os.path.join(MODEL, f))
    if os.path.exists(os.path.join(MODEL, "model.safetensors.index.json")):
        os.remove(os.path.join(MODEL, "model.safetensors.index.json"))
    sd = {hub_name(k): v.contiguous() for k, v in sd.items()}
    save_file(sd, os.path.join(MODEL, "model.safetensors"), metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json", "processor_config.json"):
        shutil.copy(os.path.join(PIPE, f), os.path.join(MODEL, f))
    return model


def processor():
    from transformers import AutoTokenizer
    pp = json.load(open(os.path.join(MODEL, "preprocessor_config.json")))
    pc = json.load(open(os.path.join(MODEL, "processor_config.json")))
    ip = gen_pipeline.pixtral_pil.PixtralImageProcessorPil(**gen_pipeline.pick(pp, [
        "do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std",
        "patch_size", "resample", "rescale_factor", "size"]))
    return gen_pipeline.PixtralProcessor(image_processor=ip, tokenizer=AutoTokenizer.from_pretrained(MODEL),
                                         **{k: v for k, v in pc.items() if k != "processor_class"})


@torch.no_grad()
def reference(built):
    model = Mistral3ForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float32).eval()
    # The hub layout must load into exactly the weights that were saved.
    a, b = built.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    proc = processor()
    tensors, cases = {}, []
    for name, prompt, add_special, images in CASES:
        pil = [Image.open(os.path.join(MEDIA, f)) for f in images]
        kw = {} if add_special else {"add_special_tokens": False}
        inp = proc(text=prompt, images=pil or None, return_tensors="pt", **kw)
        ids = inp["input_ids"]
        tensors[name + ".input_ids"] = ids[0].to(torch.int64).contiguous()
        extra = {}
        if images:
            extra = {"pixel_values": inp["pixel_values"].float(), "image_sizes": inp["image_sizes"]}
            feats = model.get_image_features(**extra).pooler_output
            tensors[name + ".embeds"] = torch.cat(feats, 0).float().contiguous()
        out = model(input_ids=ids, use_cache=True, **extra)
        tensors[name + ".logits"] = out.logits[0, -1].float().contiguous()
        cache, last, greedy, gap = out.cache, out.logits[0, -1], [], float("inf")
        for _ in range(N_GREEDY):
            top = torch.topk(last, 2).values
            gap = min(gap, float(top[0] - top[1]))
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]]), cache=cache, use_cache=True)
            cache, last = out.cache, out.logits[0, -1]
        tensors[name + ".greedy"] = torch.tensor(greedy, dtype=torch.int32)
        # Every greedy step must be decided by far more than the logits tolerance (1e-4).
        assert gap > 1e-3, (name, gap)
        # generate() (greedy, no EOS) must agree with the step loop above.
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=N_GREEDY, min_new_tokens=0, eos_token_id=None,
                             pad_token_id=0, **extra)
        assert gen[0, ids.shape[1]:].tolist() == greedy, name
        cases.append({"name": name, "prompt": prompt, "add_special_tokens": add_special,
                      "media": images})
        print(f"  {name}: {ids.shape[1]} ids, "
              f"{tensors[name + '.embeds'].shape[0] if images else 0} image rows, "
              f"{len(set(greedy))} distinct greedy ids, smallest top-2 logit gap {gap:.4f}")
    name, prompt, add_special, images = next(c for c in CASES if c[0] == BF16_CASE)
    inp = proc(text=prompt, images=[Image.open(os.path.join(MEDIA, f)) for f in images],
               return_tensors="pt", **({} if add_special else {"add_special_tokens": False}))
    extra = {"pixel_values": inp["pixel_values"].float(), "image_sizes": inp["image_sizes"]}
    feats = model.get_image_features(**extra, vision_feature_layer=-2).pooler_output
    tensors["layer_m2.embeds"] = torch.cat(feats, 0).float().contiguous()
    # The same model stored in bf16, upcast on load.
    sd = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    feats = model.get_image_features(**extra).pooler_output
    tensors["bf16.embeds"] = torch.cat(feats, 0).float().contiguous()
    print(f"  bf16 weights ({BF16_CASE}): features differ from f32 by "
          f"{float((tensors['bf16.embeds'] - tensors[BF16_CASE + '.embeds']).abs().max()):.4f}")
    save_file(tensors, os.path.join(OUT, "expected.safetensors"),
              metadata={"reference": "transformers " + __import__("transformers").__version__})
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"model": "model", "bf16_case": BF16_CASE, "cases": cases}, f, indent=1)


def main():
    if not os.path.isdir(PIPE) or not os.path.isdir(MEDIA):
        sys.exit(f"gen_model_mistral3.py: needs {PIPE} and {MEDIA} (run gen_pipeline.py first)")
    reference(build())
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"  models/mistral3: {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
