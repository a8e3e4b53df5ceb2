"""Writes text-decoder parity fixtures with transformers.

For each case, tests/fixtures/decoder/<name>/ is a model directory in real hub layout:
  config.json, generation_config.json, model.safetensors (or model-0000i-of-0000n.safetensors
  + model.safetensors.index.json), tokenizer.json / tokenizer_config.json (copied from
  tests/fixtures/tokenizer/<tok>/)
and tests/fixtures/decoder/<name>.expected.safetensors holds, for each prompt p:
  p<i>.ids          I32 [T]       prompt ids (tokenizer(text), special tokens added)
  p<i>.prefill      F32 [T, V]    logits of the prefill
  p<i>.steps        F32 [16, V]   logits after feeding each of the first 16 greedy ids
  p<i>.greedy       I32 [32]      32 greedy ids (EOS ignored), by argmax of each step's logits
  cli.ids           I32 [n]       model.generate(do_sample=False, max_new_tokens=12) new ids for
                                  CLI_PROMPT (stops on the config / generation_config EOS)
and __metadata__ "prompts" (JSON list of texts), "cli_prompt", "cli_text" (decoded, specials
skipped).

Cases (random weights, seed fixed, hidden 64):
  qwen2        Qwen2 (q/k/v bias), GQA 4/2, tied embeddings, f32
  qwen2_bf16   the same weights stored in bf16; the reference runs the bf16 checkpoint upcast
               to f32 (dtype=float32), which is what Tessera computes
  llama        Llama, llama3 rope scaling (legacy rope_theta/rope_scaling keys), GQA 4/1, tied
  mistral      Mistral, GQA 4/2, untied, two shards + model.safetensors.index.json; the second
               shard (layer 1, final norm) stored in f16, the reference upcasting it to f32
  qwen2_vl     Qwen2VLForConditionalGeneration (transformers 5 layout: text_config, a tiny
               vision tower whose visual.* tensors the decoder must skip), GQA 4/2,
               head_dim 16, mrope_section [2, 3, 3], untied. Its expected file holds, per
               prompt, ids with <|vision_start|> <|image_pad|>xN <|vision_end|> spans, the 3-row
               M-RoPE positions from get_rope_index (p<i>.positions I64 [3, T]), random image
               embeddings fed through inputs_embeds (p<i>.image_embeds F32 [N, 64], placed at
               p<i>.image_starts / p<i>.image_lens), prefill logits, then greedy steps at
               positions max + 1, max + 2, ... (generate()'s rope_deltas), no tokenizer.
  mllama       MllamaForConditionalGeneration (hub layout: language_model.*, a tiny vision
               tower and projector the decoder must skip), 4 layers of which 1 and 3 are gated
               cross-attention layers (gates set to 0.7 / -0.5 / 0.9 / 0.6 so they matter),
               GQA 4/2, llama3 rope, vocab 256 (+8 embedding rows; <|image|> = 256), untied.
               Per prompt: p<i>.ids, and for prompts with images random cross-attention states
               fed instead of pixel values (p<i>.cross_states F32 [n_images * max_tiles,
               n_patches 5, 64]) with the processor's mask (p<i>.cross_mask I64 [1, T, n_images,
               max_tiles], from get_cross_attention_token_mask and the images' tile counts:
               tokens before the first image attend to none, tiles past an image's count are
               masked); greedy steps feed the mask's last row, as generate() extends it. The
               last prompt has no image (cross layers skipped). No tokenizer.
The bf16 variant carries only the first prompt and no tokenizer (fixture size).

tests/fixtures/decoder/sampler.json: fixed logits through transformers' logits processors
(RepetitionPenalty, Temperature, TopK, TopP, MinP, in generate()'s order) and an OpenAI-style
frequency/presence penalty reference (logit -= freq*count + presence*(count>0) over generated
ids), -inf written as null.
Usage: gen_decoder.py FIXTURES_DIR [CASE,...]   (default: every case)
"""
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers.models.mllama.processing_mllama import (
    convert_sparse_cross_attention_mask_to_dense, get_cross_attention_token_mask)
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LogitsProcessorList,
                          MinPLogitsWarper, MistralConfig, MllamaConfig,
                          MllamaForConditionalGeneration, Qwen2Config, Qwen2VLConfig,
                          Qwen2VLForConditionalGeneration,
                          RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                          TopKLogitsWarper, TopPLogitsWarper)

ROOT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
ONLY = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
OUT = os.path.join(ROOT, "decoder")
TOK = os.path.join(ROOT, "tokenizer")
N_STEPS = 16
N_GREEDY = 32
CLI_NEW = 12

PROMPTS = {
    "qwen2": ["Hello, world! How are you today?", "The quick brown fox jumps over 12 lazy dogs."],
    "llama": ["Once upon a time, in a land far away,", "def add(a, b):\n    return a + b"],
    "mistral": ["Bonjour, comment allez-vous ?", "Numbers: 1, 2, 3, 4, 5 and more."],
}
CLI_PROMPT = "Tell me a story about a robot."


def tok_files(tok_name, d):
    src = os.path.join(TOK, tok_name)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), os.path.join(d, f))


def build(name, cfg, tok_name, seed, dtype=torch.float32, shards=1, legacy_rope=None, gen_eos=None,
          last_shard_dtype=None):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # random weights large enough that logits vary visibly
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or "layernorm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    model.save_pretrained(d, max_shard_size="1GB")
    # Rewrite the weights in the requested dtype / sharding, as hub checkpoints are laid out.
    sd = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(d, f)))
            os.remove(os.path.join(d, f))
    if os.path.exists(os.path.join(d, "model.safetensors.index.json")):
        os.remove(os.path.join(d, "model.safetensors.index.json"))
    sd = {k: v.to(dtype).contiguous() for k, v in sd.items()}
    names = sorted(sd)
    if shards == 1:
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    else:
        per = (len(names) + shards - 1) // shards
        wmap = {}
        total = 0
        for i in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, shards)
            part = {k: sd[k] for k in names[i * per:(i + 1) * per]}
            if i == shards - 1 and last_shard_dtype is not None:
                part = {k: v.to(last_shard_dtype).contiguous() for k, v in part.items()}
            save_file(part, os.path.join(d, fn), metadata={"format": "pt"})
            for k, v in part.items():
                wmap[k] = fn
                total += v.numel() * v.element_size()
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)
    conf = json.load(open(os.path.join(d, "config.json")))
    conf["dtype"] = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    if legacy_rope is not None:  # hub checkpoints written before transformers 5
        conf.pop("rope_parameters", None)
        conf.update(legacy_rope)
    json.dump(conf, open(os.path.join(d, "config.json"), "w"), indent=2)
    if gen_eos is not None:
        gc = json.load(open(os.path.join(d, "generation_config.json")))
        gc["eos_token_id"] = gen_eos
        json.dump(gc, open(os.path.join(d, "generation_config.json"), "w"), indent=2)
    if tok_name is not None:
        tok_files(tok_name, d)
    return d


@torch.no_grad()
def reference(d, prompts, out_path, tok_dir=None):
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tok_dir or d)
    tensors = {}
    for i, text in enumerate(prompts):
        ids = tok(text, return_tensors="pt").input_ids
        out = model(ids, use_cache=True)
        tensors["p%d.ids" % i] = ids[0].to(torch.int32)
        tensors["p%d.prefill" % i] = out.logits[0].float().contiguous()
        past = out.past_key_values
        last = out.logits[0, -1]
        greedy, steps = [], []
        for s in range(N_GREEDY):
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            last = out.logits[0, -1]
            if s < N_STEPS:
                steps.append(last.float().clone())
        tensors["p%d.steps" % i] = torch.stack(steps).contiguous()
        tensors["p%d.greedy" % i] = torch.tensor(greedy, dtype=torch.int32)
    ids = tok(CLI_PROMPT, return_tensors="pt").input_ids
    gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=CLI_NEW)
    new = gen[0, ids.shape[1]:]
    tensors["cli.ids"] = new.to(torch.int32)
    meta = {"prompts": json.dumps(prompts), "cli_prompt": CLI_PROMPT,
            "cli_text": tok.decode(new, skip_special_tokens=True)}
    save_file(tensors, out_path, metadata=meta)


# Qwen2-VL: token ids of the tiny vocabulary (512) used for the media markers.
VL_START, VL_END, VL_IMAGE = 498, 499, 500
# (text before, [(grid_thw, text after)...]) per prompt; llm grid = (t, h/2, w/2).
VL_PROMPTS = [
    ([11, 12, 13, 14, 15], [((1, 4, 6), [21, 22, 23, 24, 25, 26])]),
    ([31, 32, 33], [((1, 2, 4), [41, 42]), ((1, 4, 4), [51, 52, 53, 54])]),
]


@torch.no_grad()
def build_qwen2_vl():
    name = "qwen2_vl"
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(4)
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=512, hidden_size=64, intermediate_size=160,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                          "rope_theta": 10000.0},
                         bos_token_id=None, eos_token_id=497),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=VL_IMAGE, video_token_id=501, vision_start_token_id=VL_START,
        vision_end_token_id=VL_END, tie_word_embeddings=False)
    model = Qwen2VLForConditionalGeneration(cfg).to(torch.float32)
    for n, p in model.named_parameters():
        if n.endswith("norm.weight") or "layernorm" in n:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(torch.randn_like(p) * 0.08)
    model.save_pretrained(d)
    model = Qwen2VLForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    emb_layer = model.get_input_embeddings()
    g = torch.Generator().manual_seed(5)
    tensors = {}
    for i, (head, images) in enumerate(VL_PROMPTS):
        ids, grids, starts, lens = list(head), [], [], []
        for grid, tail in images:
            n = grid[0] * (grid[1] // 2) * (grid[2] // 2)
            ids.append(VL_START)
            starts.append(len(ids))
            lens.append(n)
            ids += [VL_IMAGE] * n + [VL_END] + tail
            grids.append(list(grid))
        x = torch.tensor([ids])
        mm = (x == VL_IMAGE).int()
        pos, delta = model.model.get_rope_index(x, mm_token_type_ids=mm,
                                                image_grid_thw=torch.tensor(grids))
        img = torch.randn(sum(lens), 64, generator=g) * 0.5
        embeds = emb_layer(x).clone()
        embeds[0, x[0] == VL_IMAGE] = img
        out = model(inputs_embeds=embeds, position_ids=pos, use_cache=True)
        tensors["p%d.ids" % i] = x[0].to(torch.int32)
        tensors["p%d.positions" % i] = pos[:, 0, :].to(torch.int64).contiguous()
        tensors["p%d.image_embeds" % i] = img.contiguous()
        tensors["p%d.image_starts" % i] = torch.tensor(starts, dtype=torch.int32)
        tensors["p%d.image_lens" % i] = torch.tensor(lens, dtype=torch.int32)
        tensors["p%d.prefill" % i] = out.logits[0].float().contiguous()
        cache, last = out.past_key_values, out.logits[0, -1]
        nxt_pos = int(pos.max()) + 1
        assert nxt_pos == len(ids) + int(delta[0, 0])
        greedy, steps = [], []
        for s in range(N_GREEDY):
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            p = torch.full((3, 1, 1), nxt_pos + s, dtype=torch.long)
            out = model(input_ids=torch.tensor([[nxt]]), position_ids=p, cache=cache,
                        use_cache=True)
            cache, last = out.past_key_values, out.logits[0, -1]
            if s < N_STEPS:
                steps.append(last.float().clone())
        tensors["p%d.steps" % i] = torch.stack(steps).contiguous()
        tensors["p%d.greedy" % i] = torch.tensor(greedy, dtype=torch.int32)
    save_file(tensors, os.path.join(OUT, name + ".expected.safetensors"))


# MLlama: <|image|> is the first id past the vocabulary; (ids, tiles of each image) per prompt.
ML_IMAGE = 256
ML_PROMPTS = [
    ([5, 6, ML_IMAGE, ML_IMAGE, 20, 21, 22, 23, 24, 25, 26, 27], [2, 1]),
    ([7, ML_IMAGE, 30, 31, 32, 33, 34, ML_IMAGE, 40, 41, 42, 43, 44], [1, 2]),
    ([9, 10, 11, 12, 13, 14, 15, 16, 17], []),
]


@torch.no_grad()
def build_mllama():
    name = "mllama"
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(6)
    max_tiles = 2
    cfg = MllamaConfig(
        text_config=dict(vocab_size=256, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         cross_attention_layers=[1, 3], max_position_embeddings=512,
                         rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "llama3", "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 64,
                                          "rope_theta": 500000.0},
                         bos_token_id=1, eos_token_id=2, pad_token_id=3),
        vision_config=dict(hidden_size=16, attention_heads=2, num_hidden_layers=1,
                           num_global_layers=1, intermediate_size=32, vision_output_dim=32,
                           image_size=28, patch_size=14, max_num_tiles=max_tiles,
                           intermediate_layers_indices=[0],
                           supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]]),
        image_token_index=ML_IMAGE)
    model = MllamaForConditionalGeneration(cfg).to(torch.float32)
    for n, p in model.named_parameters():
        if n.endswith("norm.weight") or "layernorm" in n:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(torch.randn_like(p) * 0.08)
    lm = model.model.language_model
    for i, (ga, gm) in zip(cfg.text_config.cross_attention_layers, [(0.7, -0.5), (0.9, 0.6)]):
        lm.layers[i].cross_attn_attn_gate.fill_(ga)
        lm.layers[i].cross_attn_mlp_gate.fill_(gm)
    model.save_pretrained(d)
    model = MllamaForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()
    n_patches = model.model.vision_model.num_patches
    g = torch.Generator().manual_seed(8)
    tensors = {}
    for i, (ids, tiles) in enumerate(ML_PROMPTS):
        x = torch.tensor([ids])
        kw = {}
        if tiles:
            states = torch.randn(len(tiles) * max_tiles, n_patches, 64, generator=g)
            tok_mask = get_cross_attention_token_mask(ids, ML_IMAGE)
            mask = torch.from_numpy(convert_sparse_cross_attention_mask_to_dense(
                [tok_mask], [tiles], max_tiles, len(ids))).to(torch.int64)
            kw = {"cross_attention_states": states, "cross_attention_mask": mask}
            tensors["p%d.cross_states" % i] = states.contiguous()
            tensors["p%d.cross_mask" % i] = mask.contiguous()
        out = model(input_ids=x, use_cache=True, **kw)
        tensors["p%d.ids" % i] = x[0].to(torch.int32)
        tensors["p%d.prefill" % i] = out.logits[0].float().contiguous()
        cache, last = out.past_key_values, out.logits[0, -1]
        greedy, steps = [], []
        for s in range(N_GREEDY):
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            step_kw = {"cross_attention_mask": kw["cross_attention_mask"][:, -1:]} if tiles else {}
            out = model(input_ids=torch.tensor([[nxt]]), cache=cache, use_cache=True, **step_kw)
            cache, last = out.past_key_values, out.logits[0, -1]
            if s < N_STEPS:
                steps.append(last.float().clone())
        tensors["p%d.steps" % i] = torch.stack(steps).contiguous()
        tensors["p%d.greedy" % i] = torch.tensor(greedy, dtype=torch.int32)
    save_file(tensors, os.path.join(OUT, name + ".expected.safetensors"))


def sampler_cases():
    g = torch.Generator().manual_seed(7)
    V = 64
    cases = []
    specs = [
        {"temperature": 1.0},
        {"temperature": 0.7},
        {"temperature": 1.3, "top_k": 5},
        {"top_k": 1},
        {"top_k": 100},
        {"top_p": 0.9},
        {"top_p": 0.5, "temperature": 0.8},
        {"top_p": 0.0},
        {"min_p": 0.1},
        {"min_p": 0.3, "temperature": 1.5},
        {"repetition_penalty": 1.3},
        {"repetition_penalty": 0.8, "top_k": 10},
        {"repetition_penalty": 1.1, "temperature": 0.9, "top_k": 20, "top_p": 0.8, "min_p": 0.05},
        {"frequency_penalty": 0.5, "presence_penalty": 0.3},
        {"frequency_penalty": -0.2, "presence_penalty": 1.0, "top_k": 8},
    ]
    for spec in specs:
        logits = torch.randn(V, generator=g) * 3.0
        prompt = torch.randint(0, V, (6,), generator=g)
        generated = torch.randint(0, V, (5,), generator=g)
        generated[1] = generated[0]  # a repeated id
        history = torch.cat([prompt, generated])
        x = logits.clone()
        fp, pp = spec.get("frequency_penalty", 0.0), spec.get("presence_penalty", 0.0)
        if fp or pp:
            counts = torch.bincount(generated, minlength=V).float()
            x = x - fp * counts - pp * (counts > 0).float()
        procs = LogitsProcessorList()
        if spec.get("repetition_penalty", 1.0) != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(spec["repetition_penalty"]))
        if spec.get("temperature", 1.0) != 1.0:
            procs.append(TemperatureLogitsWarper(spec["temperature"]))
        if spec.get("top_k", 0):
            procs.append(TopKLogitsWarper(spec["top_k"]))
        if "top_p" in spec and spec["top_p"] < 1.0:
            procs.append(TopPLogitsWarper(spec["top_p"]))
        if spec.get("min_p", 0.0):
            procs.append(MinPLogitsWarper(spec["min_p"]))
        y = procs(history[None], x[None])[0]
        cases.append({"params": spec, "prompt": prompt.tolist(), "generated": generated.tolist(),
                      "logits": logits.tolist(),
                      "expected": [None if math.isinf(v) else v for v in y.tolist()]})
    with open(os.path.join(OUT, "sampler.json"), "w") as f:
        json.dump({"cases": cases}, f)


def main():
    os.makedirs(OUT, exist_ok=True)
    if ONLY is None or "qwen2_vl" in ONLY:
        build_qwen2_vl()
    if ONLY is None or "mllama" in ONLY:
        build_mllama()
    if ONLY is not None and not (ONLY - {"qwen2_vl", "mllama"}):
        return
    tq = AutoTokenizer.from_pretrained(os.path.join(TOK, "qwen2"))
    vq = len(tq)
    qcfg = Qwen2Config(vocab_size=vq, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       bos_token_id=None, eos_token_id=tq.convert_tokens_to_ids("<|endoftext|>"))
    eos_q = [tq.convert_tokens_to_ids("<|im_end|>"), tq.convert_tokens_to_ids("<|endoftext|>")]
    d = build("qwen2", qcfg, "qwen2", 1, gen_eos=eos_q)
    reference(d, PROMPTS["qwen2"], os.path.join(OUT, "qwen2.expected.safetensors"))
    d = build("qwen2_bf16", qcfg, None, 1, dtype=torch.bfloat16, gen_eos=eos_q)
    reference(d, PROMPTS["qwen2"][:1], os.path.join(OUT, "qwen2_bf16.expected.safetensors"),
              tok_dir=os.path.join(TOK, "qwen2"))

    tl = AutoTokenizer.from_pretrained(os.path.join(TOK, "llama3"))
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}
    lcfg = LlamaConfig(vocab_size=len(tl), hidden_size=64, intermediate_size=128,
                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1,
                       max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=True,
                       rope_parameters=dict(rope, rope_theta=500000.0),
                       bos_token_id=tl.bos_token_id, eos_token_id=tl.convert_tokens_to_ids("<|end_of_text|>"))
    d = build("llama", lcfg, "llama3", 2,
              legacy_rope={"rope_theta": 500000.0, "rope_scaling": rope},
              gen_eos=[tl.convert_tokens_to_ids("<|end_of_text|>"), tl.convert_tokens_to_ids("<|eot_id|>")])
    reference(d, PROMPTS["llama"], os.path.join(OUT, "llama.expected.safetensors"))

    tm = AutoTokenizer.from_pretrained(os.path.join(TOK, "llama_spm"))
    mcfg = MistralConfig(vocab_size=len(tm), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, max_position_embeddings=1024, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, sliding_window=None, rope_theta=10000.0,
                         bos_token_id=1, eos_token_id=2)
    d = build("mistral", mcfg, "llama_spm", 3, shards=2, last_shard_dtype=torch.float16)
    reference(d, PROMPTS["mistral"], os.path.join(OUT, "mistral.expected.safetensors"))

    sampler_cases()


if __name__ == "__main__":
    main()
