"""Writes end-to-end parity fixtures for the Qwen2-VL and Qwen2.5-VL vision encoders,
connectors and M-RoPE positions: tests/fixtures/models/<family>/.

Usage: gen_model_qwen2_vl.py [FIXTURES_DIR]   (default tests/fixtures)

Per family (qwen2_vl: Qwen2VLForConditionalGeneration, qwen2_5_vl:
Qwen2_5_VLForConditionalGeneration), seeded random weights:
  models/<family>/model/         a model directory in hub layout: config.json written flat as
                                 the hub checkpoints are (text keys at the top level,
                                 vision_config, rope_scaling {type: mrope, mrope_section}),
                                 generation_config.json, model.safetensors with the hub names
                                 (visual.*, model.* for the language model, tied lm_head
                                 left out), the fixture tokenizer and preprocessor config of
                                 tests/fixtures/pipeline/<family>/model (smaller max_pixels).
                                 Weights are F32 except model.embed_tokens.weight, stored BF16
                                 to keep the fixture small (the reference upcasts it to F32,
                                 as Tessera does; all compute is F32).
  models/<family>/cases.json     [{"name", "prompt" (rendered, with <|image_pad|> once per
                                 image), "media": [files under pipeline/media]}]
  models/<family>/expected.safetensors, per case <name>.:
    input_ids     I64 [n]          the processor's ids (for a check of the pipeline)
    embeds        F32 [rows, 64]   get_image_features(pixel_values, image_grid_thw), all
                                   images concatenated (absent for text-only cases)
    position_ids  I64 [3, n]       get_rope_index (text-only: arange, what the model uses)
    logits        F32 [V]          last-position logits of the prefill
    greedy        I32 [32]         generate(do_sample=False), EOS not stopping generation

Random weights N(0, 0.08) in the vision tower and N(0, 0.15) in the language model (norm
weights 1 + N(0, 0.1)), so greedy ids vary; every greedy step's top-2 logit margin is checked
to be above 1e-4 (the logits tolerance). Tiny shapes: text hidden 64, 2 layers, 4 heads / 2 KV heads, head_dim 16, mrope_section
[2, 3, 3]; vision embed 32, 2 heads. Qwen2-VL: depth 2, LayerNorm, quick_gelu MLP (ratio 2),
merger to 64. Qwen2.5-VL: depth 3, RMSNorm, SwiGLU (intermediate 48), window_size 56 (windows
of 2x2 merged tokens) with fullatt_block_indexes [1], so window, full and window attention
all run.
"""
import json
import os
import shutil
import sys

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLConfig, Qwen2VLForConditionalGeneration)
from transformers.processing_utils import ProcessorMixin
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

# The processors check their sub-processors against torchvision-backed classes; the
# reference is the PIL backend (as in gen_pipeline.py), so the check is bypassed.
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None

ROOT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
MEDIA = os.path.join(ROOT, "pipeline", "media")
N_GREEDY = 32

SYS = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
IMG = "<|vision_start|><|image_pad|><|vision_end|>"


def user(text):
    return "<|im_start|>user\n" + text + "<|im_end|>\n"


def assistant(text=None):
    return "<|im_start|>assistant\n" + ("" if text is None else text + "<|im_end|>\n")


CASES = [
    ("one_image", SYS + user(IMG + "Describe this image.") + assistant(), ["rgb_64x48.png"]),
    ("two_images", SYS + user(IMG + IMG + "Compare the two pictures.") + assistant(),
     ["rgb_97x61.png", "gray_37x53.png"]),
    ("mixed_sizes", user("First: " + IMG + " second: " + IMG + " third: " + IMG + " done.")
     + assistant(), ["large_160x120.png", "tall_4x150.png", "large_120x156.png"]),
    ("multi_turn", SYS + user(IMG + "What colour dominates?") + assistant("Mostly red and blue.")
     + user("And what shape is in the middle?") + assistant(), ["rgba_33x47.png"]),
    ("text_only", SYS + user("Write one sentence about the sea.") + assistant(), []),
    ("image_first", IMG + "wide" + IMG + assistant(), ["wide_180x4.png", "pal_45x31.png"]),
]

TEXT = dict(vocab_size=4014, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            rms_norm_eps=1e-6, hidden_act="silu", bos_token_id=None, eos_token_id=4002)
MROPE = [2, 3, 3]
THETA = 1000000.0


def family_config(family, tok):
    ids = dict(image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
               video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
               vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
               vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
    text = dict(TEXT, rope_parameters={"rope_type": "default", "mrope_section": MROPE,
                                       "rope_theta": THETA})
    if family == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                             **ids), vision
    vision = dict(depth=3, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                  hidden_act="silu", patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  window_size=56, fullatt_block_indexes=[1], tokens_per_second=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                            **ids), vision


def hub_config(family, cfg, vision, tok):
    """config.json as the hub checkpoints write it (flat text keys, rope_scaling)."""
    conf = {"architectures": [cfg.architectures[0] if cfg.architectures else
                              ("Qwen2VLForConditionalGeneration" if family == "qwen2_vl"
                               else "Qwen2_5_VLForConditionalGeneration")],
            "model_type": family, "attention_dropout": 0.0, "torch_dtype": "float32",
            "bos_token_id": 4000, "eos_token_id": TEXT["eos_token_id"],
            "vision_start_token_id": cfg.vision_start_token_id,
            "vision_end_token_id": cfg.vision_end_token_id,
            "vision_token_id": tok.convert_tokens_to_ids("<|vision_pad|>"),
            "image_token_id": cfg.image_token_id, "video_token_id": cfg.video_token_id,
            "hidden_act": "silu", "hidden_size": TEXT["hidden_size"],
            "initializer_range": 0.02, "intermediate_size": TEXT["intermediate_size"],
            "max_position_embeddings": TEXT["max_position_embeddings"], "max_window_layers": 2,
            "num_attention_heads": TEXT["num_attention_heads"],
            "num_hidden_layers": TEXT["num_hidden_layers"],
            "num_key_value_heads": TEXT["num_key_value_heads"],
            "rms_norm_eps": TEXT["rms_norm_eps"], "rope_theta": THETA, "sliding_window": 2048,
            "tie_word_embeddings": True, "use_cache": True, "use_sliding_window": False,
            "vision_config": dict(vision, in_chans=3),
            "rope_scaling": {"type": "mrope", "mrope_section": MROPE},
            "vocab_size": TEXT["vocab_size"]}
    if family == "qwen2_vl":
        conf["vision_config"]["spatial_patch_size"] = 14
    return conf


def hub_name(k):
    if k.startswith("model.visual."):
        return k[len("model."):]
    if k.startswith("model.language_model."):
        return "model." + k[len("model.language_model."):]
    return k


@torch.no_grad()
def build(family, cls):
    out = os.path.join(ROOT, "models", family)
    d = os.path.join(out, "model")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(d)
    src = os.path.join(ROOT, "pipeline", family, "model")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), os.path.join(d, f))
    pp = json.load(open(os.path.join(src, "preprocessor_config.json")))
    pp["max_pixels"] = 28 * 28 * 48  # at most 48 merged tokens per image
    json.dump(pp, open(os.path.join(d, "preprocessor_config.json"), "w"), indent=1)

    # The image processor and text expansion as gen_pipeline.py builds them (no video side).
    tok = AutoTokenizer.from_pretrained(d)
    ip = Qwen2VLImageProcessorPil(**{k: v for k, v in pp.items()
                                     if k not in ("image_processor_type", "processor_class")})
    proc = (Qwen2VLProcessor if family == "qwen2_vl" else Qwen2_5_VLProcessor)(
        image_processor=ip, tokenizer=tok)
    cfg, vision = family_config(family, tok)
    torch.manual_seed(11 if family == "qwen2_vl" else 12)
    model = cls(cfg).to(torch.float32)
    for n, p in model.named_parameters():  # random weights large enough to matter
        if n.endswith("norm.weight") or "norm1" in n or "norm2" in n or "ln_q" in n:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:  # the text side wider, so greedy ids vary instead of repeating one token
            p.copy_(torch.randn_like(p) * (0.08 if "visual" in n else 0.15))
    tmp = os.path.join(out, "tmp_save")
    model.save_pretrained(tmp)
    sd = {}
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(tmp, f)))
    shutil.rmtree(tmp)
    hub = {}
    for k, v in sd.items():
        if k == "lm_head.weight":  # tied
            continue
        v = v.contiguous()
        if hub_name(k) == "model.embed_tokens.weight":
            v = v.to(torch.bfloat16).contiguous()
        hub[hub_name(k)] = v
    save_file(hub, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    json.dump(hub_config(family, cfg, vision, tok), open(os.path.join(d, "config.json"), "w"),
              indent=2)
    json.dump({"bos_token_id": 4000, "eos_token_id": [4002, 4000], "do_sample": False},
              open(os.path.join(d, "generation_config.json"), "w"), indent=2)

    # The reference runs the checkpoint as written (hub names, hub config).
    model = cls.from_pretrained(d, dtype=torch.float32).eval()
    assert model.config.vision_config.depth == vision["depth"]
    tensors, cases = {}, []
    for name, prompt, media in CASES:
        images = [Image.open(os.path.join(MEDIA, f)) for f in media]
        inputs = proc(text=prompt, images=images or None, return_tensors="pt")
        ids = inputs["input_ids"]
        n = ids.shape[1]
        tensors[name + ".input_ids"] = ids[0].to(torch.int64).contiguous()
        if media:
            feats = model.model.get_image_features(inputs["pixel_values"],
                                                   inputs["image_grid_thw"]).pooler_output
            tensors[name + ".embeds"] = torch.cat(feats, 0).float().contiguous()
            pos, _ = model.model.get_rope_index(ids, inputs["mm_token_type_ids"],
                                                image_grid_thw=inputs["image_grid_thw"])
            pos = pos[:, 0, :]
        else:
            pos = torch.arange(n).view(1, -1).expand(3, -1)
        tensors[name + ".position_ids"] = pos.to(torch.int64).contiguous()
        logits = model(**inputs).logits[0, -1]
        tensors[name + ".logits"] = logits.float().contiguous()
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=N_GREEDY,
                             min_new_tokens=0, eos_token_id=None, pad_token_id=4000,
                             output_scores=True, return_dict_in_generate=True)
        new = gen.sequences[0, n:]
        # Greedy ids are only a fair test when no step is a near tie.
        margin = min(float(torch.topk(sc[0], 2).values[0] - torch.topk(sc[0], 2).values[1])
                     for sc in gen.scores)
        assert margin > 1e-4, (name, margin)
        assert new.shape[0] == N_GREEDY, (name, new.shape)
        assert int(new[0]) == int(torch.argmax(logits))
        tensors[name + ".greedy"] = new.to(torch.int32).contiguous()
        cases.append({"name": name, "prompt": prompt, "media": media})
        print("  %s/%s: %d ids, %d images, greedy %s..., smallest top-2 margin %.3g"
              % (family, name, n, len(media), new[:8].tolist(), margin))
    save_file(tensors, os.path.join(out, "expected.safetensors"))
    json.dump(cases, open(os.path.join(out, "cases.json"), "w"), indent=1, ensure_ascii=False)


def main():
    build("qwen2_vl", Qwen2VLForConditionalGeneration)
    build("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration)


if __name__ == "__main__":
    main()
