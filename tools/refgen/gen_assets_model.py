"""Writes the tiny demo model that ships in assets/qwen2-vl-tiny/ and its reference outputs.

assets/qwen2-vl-tiny/ is a Qwen2VLForConditionalGeneration checkpoint in hub layout with
random weights (seeded): a 2-layer vision tower (embed_dim 32) with its 2x2 patch merger and
a 2-layer Qwen2-VL text decoder (hidden 64, GQA 4/2, M-RoPE sections [2, 3, 3], tied
embeddings), all f32, about 1.3 MB:
  config.json, generation_config.json, model.safetensors (visual.*, model.*; lm_head is tied)
  preprocessor_config.json   Qwen2-VL image processor with max_pixels 50176 (at most 64 image
                             tokens per image, so the demo runs in well under a second)
  tokenizer.json, tokenizer_config.json
                             the tiny byte-level tokenizer of the Qwen2-VL processor fixtures
                             (tests/fixtures/pipeline/qwen2_vl/model)
  chat_template.jinja        a short ChatML-style template of our own: each image part is
                             <|vision_start|><|image_pad|><|vision_end|>
The weights are random: the model writes arbitrary text. It exists so that `make demo` and the
tests run the whole path (image decode, processor, vision encoder, decoder, sampling).

tests/fixtures/assets/qwen2_vl_tiny.json holds what transformers computes on it (AutoProcessor
with the PIL image processor, load_image() of the sample image, generate(do_sample=False)):
  "turns": a two-turn conversation; for each turn the messages sent (media as {"type":
  "image", "path"}), the processor's input_ids, the greedy new ids (max_new_tokens 16) and
  their text (specials skipped). The second turn carries the first reply as the assistant
  message, as a chat front end does.
  "text_only": the same for one text-only user turn.
Usage: gen_assets_model.py FIXTURES_DIR
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.image_utils import load_image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

# The processor checks its sub-processors against the torchvision-backed classes; the
# reference is the PIL backend (as in gen_pipeline.py), so the check is bypassed.
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "assets", "qwen2-vl-tiny")
TOK = os.path.join(FIXTURES, "pipeline", "qwen2_vl", "model")
MAX_NEW = 16

IM_END, ENDOFTEXT = 4002, 4000
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 4009, 4010, 4012, 4013

# ChatML with Qwen2-VL's vision tokens; no default system message.
TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 50176,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
}


def build():
    # The tokenizer fixture is written by gen_pipeline.py (which refgen.sh runs after this
    # script); without it, the copy already in assets/ is kept.
    src = TOK if os.path.exists(os.path.join(TOK, "tokenizer.json")) else OUT
    tok_files = {f: open(os.path.join(src, f), "rb").read()
                 for f in ("tokenizer.json", "tokenizer_config.json")}
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    torch.manual_seed(20261126)
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=4096, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                          "rope_theta": 10000.0},
                         bos_token_id=None, eos_token_id=IM_END),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD, vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END, tie_word_embeddings=True)
    model = Qwen2VLForConditionalGeneration(cfg).to(torch.float32)
    with torch.no_grad():  # random weights large enough that the logits vary visibly
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or "layernorm" in n or n.endswith(".ln_q.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    model.save_pretrained(OUT)
    # Hub layout (the names Qwen2-VL checkpoints on the hub use): visual.*, model.* (the
    # language model), lm_head.weight (absent: tied to model.embed_tokens.weight).
    sd = {}
    for f in sorted(os.listdir(OUT)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(OUT, f)))
            os.remove(os.path.join(OUT, f))
    if os.path.exists(os.path.join(OUT, "model.safetensors.index.json")):
        os.remove(os.path.join(OUT, "model.safetensors.index.json"))
    hub = {}
    for k, v in sd.items():
        if k.startswith("model.visual."):
            k = "visual." + k[len("model.visual."):]
        elif k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        if k == "lm_head.weight":
            continue
        hub[k] = v.to(torch.float32).contiguous()
    save_file(hub, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    gc = json.load(open(os.path.join(OUT, "generation_config.json")))
    gc["eos_token_id"] = [IM_END, ENDOFTEXT]
    gc["pad_token_id"] = ENDOFTEXT
    json.dump(gc, open(os.path.join(OUT, "generation_config.json"), "w"), indent=2)
    for f, data in tok_files.items():
        with open(os.path.join(OUT, f), "wb") as fh:
            fh.write(data)
    json.dump(PREPROCESSOR, open(os.path.join(OUT, "preprocessor_config.json"), "w"), indent=2)
    with open(os.path.join(OUT, "chat_template.jinja"), "w") as f:
        f.write(TEMPLATE)


@torch.no_grad()
def reference():
    model = Qwen2VLForConditionalGeneration.from_pretrained(OUT, dtype=torch.float32).eval()
    # The processor AutoProcessor builds from the directory, with the PIL image backend.
    ip = Qwen2VLImageProcessorPil(**{k: v for k, v in PREPROCESSOR.items()
                                     if k not in ("image_processor_type", "processor_class")})
    proc = Qwen2VLProcessor(image_processor=ip, tokenizer=AutoTokenizer.from_pretrained(OUT),
                            chat_template=open(os.path.join(OUT, "chat_template.jinja")).read())
    tok = proc.tokenizer
    loaded = sum(p.numel() for p in model.parameters())
    stored = sum(v.numel() for v in load_file(os.path.join(OUT, "model.safetensors")).values())
    assert loaded == stored, (loaded, stored)

    def run(messages):
        images = []
        hf_messages = []
        for m in messages:
            if isinstance(m["content"], str):
                hf_messages.append(m)
                continue
            parts = []
            for p in m["content"]:
                if p["type"] == "image":
                    images.append(load_image(os.path.join(ROOT, p["path"])))
                    parts.append({"type": "image"})
                else:
                    parts.append(p)
            hf_messages.append({"role": m["role"], "content": parts})
        text = proc.apply_chat_template(hf_messages, tokenize=False, add_generation_prompt=True)
        inputs = proc(text=[text], images=images or None, return_tensors="pt")
        out = model.generate(**inputs, do_sample=False, max_new_tokens=MAX_NEW)
        new = out[0, inputs["input_ids"].shape[1]:]
        eos = {IM_END, ENDOFTEXT}
        ids = []
        for t in new.tolist():
            if t in eos:
                break
            ids.append(t)
        return {"messages": messages, "prompt": text,
                "input_ids": inputs["input_ids"][0].tolist(), "ids": ids,
                "text": tok.decode(ids, skip_special_tokens=True)}

    turn1 = [{"role": "user", "content": [{"type": "image", "path": "assets/sample.jpg"},
                                          {"type": "text", "text": "Describe this image."}]}]
    r1 = run(turn1)
    turn2 = turn1 + [{"role": "assistant", "content": r1["text"]},
                     {"role": "user", "content": [{"type": "text",
                                                   "text": "What colours are in it?"}]}]
    r2 = run(turn2)
    text_only = run([{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Tell me a story about a robot."}])
    d = os.path.join(FIXTURES, "assets")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "qwen2_vl_tiny.json"), "w") as f:
        json.dump({"max_new_tokens": MAX_NEW, "turns": [r1, r2], "text_only": text_only}, f,
                  indent=1, ensure_ascii=False)


if __name__ == "__main__":
    build()
    reference()
