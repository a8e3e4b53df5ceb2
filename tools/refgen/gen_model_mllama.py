"""Writes the MLlama (Llama 3.2 Vision) end-to-end fixtures with transformers.

tests/fixtures/models/mllama/
  model/                     a tiny seeded random-weight MllamaForConditionalGeneration in hub
                             layout (save_pretrained of transformers 5 writes the hub names:
                             vision_model.*, multi_modal_projector.*, language_model.model.*,
                             language_model.lm_head.weight): config.json,
                             generation_config.json, model.safetensors (f32), the fixture
                             tokenizer and preprocessor_config.json of
                             tests/fixtures/pipeline/mllama/model (28 px tiles, 4 tiles)
  cases.json                 {"cases": [{"name", "prompt", "add_special_tokens",
                              "media": [file in tests/fixtures/pipeline/media/]}]}
  expected.safetensors.gz    (gzipped as tools/refgen/compress_fixtures.py does) per case <name>.:
    input_ids                I64 [1, T]    processor(text=prompt, images=[[...]])
    cross_attention_states   F32 [n_images * max_tiles, n_patches, text hidden]
                             (multi_modal_projector(vision_model(...)) reshaped), image cases
    logits                   F32 [V]       last-position logits of the prefill
    greedy                   I32 [32]      greedy ids: argmax of each step's logits, EOS not
                             special (generation goes on past it), each step fed the mask's
                             last row as generate() extends it
  and masked_tiles.cross_attention_states: the one_image pixels with aspect_ratio_ids 0 and
  every tile masked (a padded image slot of a batch).

Vision tower: hidden 32, 4 heads, 3 local layers (intermediate layers 0 and 2 collected), 2
gated global layers, image_size 28 / patch 7 (16 patches + class = 17, padded to 24),
max_num_tiles 4, vision_output_dim 96. Text: hidden 48 (the 4264-row embedding and the
untied lm_head dominate the fixture size), 2 layers of which layer 1 is a gated
cross-attention layer, GQA 4/2, llama3 rope, vocab 4256 (+8 embedding rows; <|image|> = 4256).
Every gate is set to a value that matters. f32 throughout.

Usage: gen_model_mllama.py FIXTURES_DIR
"""
import json
import os
import shutil
import sys

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoTokenizer, MllamaConfig, MllamaForConditionalGeneration
from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
from transformers.models.mllama.processing_mllama import MllamaProcessor
from transformers.processing_utils import ProcessorMixin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compress_fixtures  # noqa: E402

ROOT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
OUT = os.path.join(ROOT, "models", "mllama")
SRC = os.path.join(ROOT, "pipeline", "mllama", "model")
MEDIA = os.path.join(ROOT, "pipeline", "media")
N_GREEDY = 32

# The processor checks its image processor against the torchvision-backed class; the
# reference is the PIL backend (as in gen_pipeline.py).
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None

IM = "<|image|>"
HDR = "<|start_header_id|>%s<|end_header_id|>\n\n"
CASES = [
    # (name, prompt, add_special_tokens, media)
    ("one_image", IM + "Describe this image.", True, ["rgb_97x61.png"]),
    ("two_images", IM + IM + "Compare these two pictures.", True,
     ["large_160x120.png", "tall_4x150.png"]),
    ("wide_inline", "A wide one: " + IM + " what is it?", True, ["wide_180x4.png"]),
    ("three_mixed", "A " + IM + " B " + IM + " C " + IM + " D", True,
     ["rgb_64x48.png", "large_120x156.png", "pal_45x31.png"]),
    ("multi_turn", "<|begin_of_text|>" + HDR % "user" + IM + "What is in the picture?<|eot_id|>" +
     HDR % "assistant" + "A small picture with colours.<|eot_id|>" + HDR % "user" +
     "And what about its shape?<|eot_id|>" + HDR % "assistant", False, ["large_120x156.png"]),
    ("run_then_one", IM + IM + "two at once, then " + IM + " one more", True,
     ["gray_37x53.png", "rgba_33x47.png", "large_160x120.png"]),
    ("text_only", "Just some text, no picture here.", True, []),
]


def randomise(model):
    torch.manual_seed(11)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or "layernorm" in n and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
        vm = model.model.vision_model
        vm.class_embedding.copy_(torch.randn_like(vm.class_embedding) * 0.5)
        vm.gated_positional_embedding.gate.fill_(0.7)
        vm.gated_positional_embedding.embedding.copy_(
            torch.randn_like(vm.gated_positional_embedding.embedding) * 0.5)
        vm.gated_positional_embedding.tile_embedding.weight.copy_(
            torch.randn_like(vm.gated_positional_embedding.tile_embedding.weight) * 0.5)
        vm.pre_tile_positional_embedding.gate.fill_(0.8)
        vm.pre_tile_positional_embedding.embedding.weight.copy_(
            torch.randn_like(vm.pre_tile_positional_embedding.embedding.weight) * 0.5)
        vm.post_tile_positional_embedding.gate.fill_(-0.6)
        vm.post_tile_positional_embedding.embedding.weight.copy_(
            torch.randn_like(vm.post_tile_positional_embedding.embedding.weight) * 0.5)
        for i, layer in enumerate(vm.global_transformer.layers):
            layer.gate_attn.fill_(0.9 - 0.3 * i)
            layer.gate_ffn.fill_(-0.7 + 0.5 * i)
        lm = model.model.language_model
        for i in model.config.text_config.cross_attention_layers:
            lm.layers[i].cross_attn_attn_gate.fill_(0.8)
            lm.layers[i].cross_attn_mlp_gate.fill_(-0.6)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    d = os.path.join(OUT, "model")
    os.makedirs(d)
    for fn in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(os.path.join(SRC, fn), os.path.join(d, fn))
    tok = AutoTokenizer.from_pretrained(d)
    image_id = tok.convert_tokens_to_ids(IM)
    pp = json.load(open(os.path.join(d, "preprocessor_config.json")))
    tile, max_tiles = pp["size"]["height"], pp["max_image_tiles"]
    eot, eos, eom = (tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"))
    cfg = MllamaConfig(
        text_config=dict(vocab_size=image_id, hidden_size=48, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         cross_attention_layers=[1], max_position_embeddings=512,
                         rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "llama3", "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64,
                                          "rope_theta": 500000.0},
                         bos_token_id=tok.bos_token_id, eos_token_id=eos,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False),
        vision_config=dict(hidden_size=32, attention_heads=4, num_hidden_layers=3,
                           num_global_layers=2, intermediate_size=64, vision_output_dim=96,
                           image_size=tile, patch_size=7, max_num_tiles=max_tiles,
                           intermediate_layers_indices=[0, 2], norm_eps=1e-5),
        image_token_index=image_id)
    model = MllamaForConditionalGeneration(cfg).to(torch.float32)
    randomise(model)
    model.generation_config.eos_token_id = [eos, eom, eot]
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(d)
    model = MllamaForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    ip = MllamaImageProcessorPil(**{k: v for k, v in pp.items() if k != "image_processor_type"})
    proc = MllamaProcessor(image_processor=ip, tokenizer=tok)

    tensors, cases = {}, []
    for name, prompt, add_special, media in CASES:
        pil = [Image.open(os.path.join(MEDIA, f)) for f in media]
        kw = {} if add_special else {"add_special_tokens": False}
        inp = proc(text=prompt, images=[pil] if pil else None, return_tensors="pt", **kw)
        inp.pop("num_tiles", None)
        ids = inp["input_ids"]
        with torch.no_grad():
            if pil:
                vm = model.model.vision_model(pixel_values=inp["pixel_values"],
                                              aspect_ratio_ids=inp["aspect_ratio_ids"],
                                              aspect_ratio_mask=inp["aspect_ratio_mask"])
                h = vm.last_hidden_state
                states = model.model.multi_modal_projector(h).reshape(-1, h.shape[-2], cfg.text_config.hidden_size)
                tensors[name + ".cross_attention_states"] = states.float().contiguous()
            out = model(**inp, use_cache=True)
            cache, last = out.past_key_values, out.logits[0, -1]
            tensors[name + ".input_ids"] = ids.to(torch.int64).contiguous()
            tensors[name + ".logits"] = last.float().clone().contiguous()
            greedy = []
            mask = inp.get("cross_attention_mask")
            for _ in range(N_GREEDY):
                nxt = int(torch.argmax(last))
                greedy.append(nxt)
                step = {"cross_attention_mask": mask[:, -1:]} if mask is not None else {}
                out = model(input_ids=torch.tensor([[nxt]]), cache=cache, use_cache=True, **step)
                cache, last = out.past_key_values, out.logits[0, -1]
            tensors[name + ".greedy"] = torch.tensor(greedy, dtype=torch.int32)
        cases.append({"name": name, "prompt": prompt, "add_special_tokens": add_special,
                      "media": media})
        print("mllama %-14s ids %3d images %d greedy %s" % (name, ids.shape[1], len(pil), greedy[:8]))
    # Every tile masked (a padded image slot of a batch: aspect ratio id 0, mask 0): every
    # row is masked, so every score gets finfo.min and attention weights are equal.
    pil = [Image.open(os.path.join(MEDIA, "rgb_97x61.png"))]
    inp = proc(text=IM + "x", images=[pil], return_tensors="pt")
    with torch.no_grad():
        h = model.model.vision_model(pixel_values=inp["pixel_values"],
                                     aspect_ratio_ids=torch.zeros_like(inp["aspect_ratio_ids"]),
                                     aspect_ratio_mask=torch.zeros_like(inp["aspect_ratio_mask"]))
        h = h.last_hidden_state
        states = model.model.multi_modal_projector(h).reshape(-1, h.shape[-2], cfg.text_config.hidden_size)
    tensors["masked_tiles.cross_attention_states"] = states.float().contiguous()
    path = os.path.join(OUT, "expected.safetensors")
    save_file(tensors, path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path + ".gz", "wb") as f:
        f.write(compress_fixtures.gzip_bytes(data))
    os.remove(path)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
