#!/usr/bin/env python3
"""Writes the MiniCPM-o 2.6 end-to-end fixtures: tests/fixtures/models/minicpmo/.

Usage: MINICPMO_SRC=DIR tools/refgen/refgen.sh model_minicpmo
       (or: .venv/bin/python gen_model_minicpmo.py FIXTURES_DIR)

MiniCPM-o's model is remote code on the hub. The reference is a copy of the model files, read
from DIR (beside the processor files of gen_proc_minicpmo.py; MINICPMO_MODEL_SRC may name
another folder) and checked against the sha256 below; nothing of them is committed:
  modeling_minicpmo.py     github.com/icyyrain/minicpmo-modified-files, commit
                           7838ae09f0fa97e590d5193a4202ef08e2360948 (the upload of the hub file of
                           openbmb/MiniCPM-o-2_6; its only edits are print_time() log lines)
  modeling_navit_siglip.py github.com/404805854/minicpmv2.6-onnx, commit
  resampler.py             8490e5923eeebae2ef7163fc7bb39f5b66967272 ("fork from hugging face
                           original code": the hub files of openbmb/MiniCPM-V-2_6, which
                           MiniCPM-o 2.6 ships unchanged: SigLIP NaViT with tgt_sizes, Resampler
                           with the 2-D sin-cos cache and key padding mask)
Fetch: git -C r1 show 7838ae09:modeling_minicpmo.py > DIR/modeling_minicpmo.py, and
       git -C r2 show 8490e592:modeling_navit_siglip.py > DIR/modeling_navit_siglip.py (the
       same for resampler.py), r1 / r2 clones of the two repositories.
The processor (gen_proc_minicpmo.load_reference, same DIR) builds the inputs.

The hub's configuration_minicpm.py was not available; the config class below keeps the fields
the model code reads (MiniCPMOConfig = Qwen2Config + query_num, slice / vision / audio configs,
audio_pool_step, audio_chunk_length, chunk_input, drop_vision_last_layer, init_*; the vision
config is modeling_navit_siglip's SiglipVisionConfig, the audio config WhisperConfig).
The modeling file is run as written on transformers 5 with these stand-ins, none of which
touches a number: WHISPER_ATTENTION_CLASSES (gone in transformers 5) maps to a WhisperAttention
that accepts the transformers-4 call (layer_head_mask, past_key_value) and returns its third
value; transformers.modeling_attn_mask_utils._prepare_4d_attention_mask (gone) expands the
key mask to finfo.min as transformers 4 did; LogitsWarper (gone; TTS only) is a bare class;
typing.List is a builtin for resampler.py (torch.nn.functional's star export no longer carries
it); the processor that MiniCPMO.__init__ loads (AutoProcessor) is not loaded; .utils (TTS
text helpers) are empty. init_tts is false (no TTS weights are built); the checkpoint carries one
small tts.* tensor so the loader's ownership of that prefix is tested.

tests/fixtures/models/minicpmo/
  model/                 config.json (model_type minicpmo, auto_map as the hub has it),
                         generation_config.json, model.safetensors (hub names: llm.model.*,
                         vpm.*, resampler.*, apm.*, audio_projection_layer.*,
                         tts.*), matrices stored BF16 (the model runs in f32 on the same
                         values, so the fixture stays small), vectors F32; the tokenizer and
                         preprocessor_config.json of tests/fixtures/pipeline/minicpmo/model
  cases.json             {"cases": [{"name", "prompt", "media": [{"kind", "file"}]}]}
                         (media files in tests/fixtures/pipeline/media/, images before audio as
                         the processor takes them)
  expected.safetensors.gz  (gzipped as compress_fixtures.py does) per case <name>.:
    input_ids            I64 [1, T]   processor(text=[prompt], [images], [audios], chunk_input)
    embeds               F32 [rows, hidden]  inputs_embeds rows at the image_bound and
                         audio_bounds positions, in input_ids order (get_vllm_embedding then
                         get_omni_embedding as generate() calls them); absent for text only
    logits               F32 [V]      last-position logits of the prefill on inputs_embeds
    greedy               I32 [32]     argmax each step with the KV cache, EOS not special

Sizes: vision hidden 32, 4 heads, 3 layers in config (drop_vision_last_layer leaves 2),
image_size 560 / patch 14 (40 x 40 position buckets; the release has 980, 70 x 70); resampler
64 queries in the LLM width 128 (init_resampler gives num_heads = hidden // 128, so the LLM
is no narrower than 128); audio d_model 32, 2 layers, 4 heads, ffn 128 (projection input
ffn // 4 = 32), 1500 positions; LLM Qwen2 hidden 128, 2 layers, GQA 2/1, lm_head tied (no
llm.lm_head.weight stored). The processor (tests/fixtures/pipeline/minicpmo/model) slices at
scale_resolution 70.
"""
import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
import sys
import tempfile
import types

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoTokenizer, Qwen2Config, WhisperConfig, WhisperFeatureExtractor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "models", "minicpmo")
PIPE = os.path.join(FIXTURES, "pipeline", "minicpmo", "model")
MEDIA = os.path.join(FIXTURES, "pipeline", "media")
MODEL_SRC = os.environ.get("MINICPMO_MODEL_SRC") or os.environ.get("MINICPMO_SRC", "")

SHA256 = {
    "modeling_minicpmo.py": "13ce432710ac05e9a82532874c43ffd5ba763acc1a59f9a2f2020f4ce9bbe8da",
    "modeling_navit_siglip.py": "c71ca316fe7405325b7097364f98f71c317fff8c9f5c8820f30d3362b1ed5bfa",
    "resampler.py": "45c4d94fd144c9c0a2ffeb06aa0443d3d4ed4a091e1ad9a8dee5127d2bcd286c",
}
N_GREEDY = 32

IM, AU = "(<image>./</image>)", "(<audio>./</audio>)"
CASES = [  # name, prompt, images, audios
    ("one_image", IM + "\nWhat is this?", ["rgb_97x61.png"], []),
    ("two_images", "A " + IM + " B " + IM + " C", ["rgb_64x48.png", "la_29x40.png"], []),
    ("audio_5s", AU + "\nTranscribe.", [], ["a_5s.wav"]),
    ("two_audio", "First " + AU + " then " + AU, [], ["a_0_1s.wav", "a_5s.wav"]),
    ("image_audio", IM + " and " + AU + " together", ["rgb_64x48.png"], ["a_0_1s.wav"]),
    ("audio_then_image", AU + " then " + IM, ["wide_180x4.png"], ["a_5s.wav"]),
    ("slices_audio", IM + "\nslices, then " + AU, ["large_160x120.png"], ["a_0_1s.wav"]),
    ("text_only", "No media here.", [], []),
]

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
              num_channels=3, image_size=560, patch_size=14, hidden_act="gelu_pytorch_tanh",
              layer_norm_eps=1e-6, model_type="siglip")
AUDIO = dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
             decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=128, num_mel_bins=80,
             max_source_positions=1500, max_target_positions=448, vocab_size=64,
             activation_function="gelu", model_type="whisper")
LLM = dict(vocab_size=4052, hidden_size=128, intermediate_size=160, num_hidden_layers=2,
           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
           rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, hidden_act="silu",
           use_sliding_window=False, bos_token_id=None)

CONFIG_PY = '''
from transformers import Qwen2Config, WhisperConfig
from .modeling_navit_siglip import SiglipVisionConfig


class ConditionalChatTTSConfig(Qwen2Config):
    model_type = "conditional_chattts"


class MiniCPMVSliceConfig(dict):
    pass


class MiniCPMOConfig(Qwen2Config):
    model_type = "minicpmo"

    def __init__(self, query_num=64, image_size=448, drop_vision_last_layer=True, batch_vision_input=True,
                 slice_config=None, vision_config=None, audio_config=None, tts_config=None, use_image_id=True,
                 vision_batch_size=16, audio_pool_step=2, audio_chunk_length=1.0, stream_input=False,
                 chunk_input=True, init_vision=True, init_audio=True, init_tts=True, **kwargs):
        self.query_num = query_num
        self.image_size = image_size
        self.drop_vision_last_layer = drop_vision_last_layer
        self.batch_vision_input = batch_vision_input
        self.use_image_id = use_image_id
        self.vision_batch_size = vision_batch_size
        self.audio_pool_step = audio_pool_step
        self.audio_chunk_length = audio_chunk_length
        self.stream_input = stream_input
        self.chunk_input = chunk_input
        self.init_vision = init_vision
        self.init_audio = init_audio
        self.init_tts = init_tts
        self.slice_config = dict(slice_config or {})
        self.slice_mode = True
        vc = dict(vision_config or {})
        vc.pop("model_type", None)
        self.vision_config = SiglipVisionConfig(**vc)
        ac = dict(audio_config or {})
        ac.pop("model_type", None)
        self.audio_config = WhisperConfig(**ac)
        self.tts_config = tts_config
        self.patch_size = self.vision_config.patch_size
        super().__init__(**kwargs)
'''


def sha(data):
    return hashlib.sha256(data).hexdigest()


def load_model_reference():
    if not MODEL_SRC:
        sys.exit("gen_model_minicpmo.py: set MINICPMO_SRC to the folder holding the copies "
                 "(see the docstring)")
    pkg = tempfile.mkdtemp(prefix="minicpmo_model_ref_")
    d = os.path.join(pkg, "minicpmo_model_ref")
    os.makedirs(d)
    open(os.path.join(d, "__init__.py"), "w").close()
    for fn, want in SHA256.items():
        data = open(os.path.join(MODEL_SRC, fn), "rb").read()
        if sha(data) != want:
            sys.exit(f"{fn}: sha256 {sha(data)}, expected {want}")
        open(os.path.join(d, fn), "wb").write(data)
    open(os.path.join(d, "configuration_minicpm.py"), "w").write(CONFIG_PY)
    open(os.path.join(d, "utils.py"), "w").write(
        "NumberToTextConverter = None\nsentence_end = None\nVoiceChecker = None\n")
    open(os.path.join(d, "processing_minicpmo.py"), "w").write("ChatTTSProcessor = None\n")

    import transformers
    import transformers.models.whisper.modeling_whisper as mw

    class Attention4(mw.WhisperAttention):
        """WhisperAttention called the transformers-4 way (one value more returned)."""

        def forward(self, hidden_states, attention_mask=None, layer_head_mask=None, output_attentions=False,
                    past_key_value=None, **kw):
            out, w = super().forward(hidden_states, attention_mask=attention_mask,
                                     output_attentions=output_attentions)
            return out, w, past_key_value

    if not hasattr(mw, "WHISPER_ATTENTION_CLASSES"):
        mw.WHISPER_ATTENTION_CLASSES = {"eager": Attention4, "sdpa": Attention4,
                                        "flash_attention_2": Attention4}
    try:
        importlib.import_module("transformers.modeling_attn_mask_utils")
    except ImportError:
        m = types.ModuleType("transformers.modeling_attn_mask_utils")

        def _prepare_4d_attention_mask(mask, dtype, tgt_len=None):
            bsz, src_len = mask.size()
            tgt_len = tgt_len if tgt_len is not None else src_len
            expanded = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
            inverted = 1.0 - expanded
            return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)

        m._prepare_4d_attention_mask = _prepare_4d_attention_mask
        sys.modules[m.__name__] = m
        transformers.modeling_attn_mask_utils = m
    # resampler.py takes List from `from torch.nn.functional import *`, which no longer exports it
    import builtins
    import typing
    if not hasattr(torch.nn.functional, "List"):
        builtins.List = typing.List
    try:
        from transformers import LogitsWarper  # noqa: F401
    except ImportError:  # on the package object `from transformers import` reads (sys.modules)
        sys.modules["transformers"].LogitsWarper = type("LogitsWarper", (), {})
    sys.path.insert(0, pkg)
    with contextlib.redirect_stdout(io.StringIO()):
        mod = importlib.import_module("minicpmo_model_ref.modeling_minicpmo")
    cfg_mod = importlib.import_module("minicpmo_model_ref.configuration_minicpm")

    class NoProcessor:
        @staticmethod
        def from_pretrained(*a, **k):
            return None

    mod.AutoProcessor = NoProcessor
    mod.print_time = lambda text: None
    return mod, cfg_mod


def config_dict():
    c = dict(LLM)
    c.update({
        "architectures": ["MiniCPMO"], "model_type": "minicpmo",
        "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMOConfig",
                     "AutoModel": "modeling_minicpmo.MiniCPMO",
                     "AutoModelForCausalLM": "modeling_minicpmo.MiniCPMO"},
        "query_num": 64, "image_size": 448, "patch_size": 14, "drop_vision_last_layer": True,
        "batch_vision_input": True, "use_image_id": True, "slice_mode": True, "vision_batch_size": 16,
        "slice_config": {"max_slice_nums": 9, "patch_size": 14, "model_type": "minicpmv"},
        "vision_config": VISION, "audio_config": AUDIO, "audio_pool_step": 2, "audio_chunk_length": 1.0,
        "chunk_input": True, "stream_input": False, "init_vision": True, "init_audio": True,
        "init_tts": False, "torch_dtype": "float32", "use_cache": True,
    })
    return c


def build_model(mod, cfg_mod):
    c = config_dict()
    kw = {k: v for k, v in c.items() if k not in ("architectures", "model_type", "auto_map", "torch_dtype")}
    cfg = cfg_mod.MiniCPMOConfig(**kw)
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg.audio_config._attn_implementation = "eager"
    cfg._name_or_path = OUT
    torch.manual_seed(20260)
    with contextlib.redirect_stdout(io.StringIO()):
        model = mod.MiniCPMO(cfg)
    model.eval()
    if model.llm.lm_head.weight is not model.llm.model.embed_tokens.weight:
        sys.exit("gen_model_minicpmo.py: lm_head is not tied to embed_tokens")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in n or n.endswith("ln_q.weight") or n.endswith("ln_kv.weight")
                                 or n.endswith("ln_post.weight")) and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "embed_positions" in n or "position_embedding" in n:
                p.copy_(0.5 * torch.randn_like(p))
            elif n.endswith("resampler.query"):
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
            if p.dim() >= 2:  # stored BF16: the model runs on the same values
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model, c


def make_processor(proc_mod_img, proc_mod, d):
    import gen_proc_minicpmo as g
    pp = json.load(open(os.path.join(d, "preprocessor_config.json")))
    tok = AutoTokenizer.from_pretrained(PIPE)
    for attr, content in g.TOKEN_ATTRS.items():
        setattr(tok, attr, content)
        setattr(tok, attr + "_id", tok.convert_tokens_to_ids(content))
    with contextlib.redirect_stdout(io.StringIO()):
        ip = proc_mod_img(**{k: v for k, v in pp.items() if k != "image_processor_type"})
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400,
                                 chunk_length=30, padding_value=0.0)
    proc = proc_mod.__new__(proc_mod)
    proc.image_processor, proc.feature_extractor, proc.tokenizer = ip, fe, tok
    proc.version = ip.version
    return proc, tok


@torch.no_grad()
def run_case(model, proc, prompt, images, audios):
    pil = [Image.open(os.path.join(MEDIA, f)) for f in images]
    wav = [sf.read(os.path.join(MEDIA, a), dtype="float32")[0] for a in audios]
    with contextlib.redirect_stdout(io.StringIO()):
        inp = proc([prompt], [pil] if pil else None, [wav] if wav else None, None,
                   max_slice_nums=None, use_image_id=None, chunk_input=True, return_tensors="pt")
    data = {"input_ids": inp["input_ids"], "audio_features": inp["audio_features"],
            "audio_feature_lens": inp["audio_feature_lens"], "image_bound": inp["image_bound"],
            "audio_bounds": inp["audio_bounds"], "spk_bounds": inp["spk_bounds"],
            "pixel_values": inp["pixel_values"], "tgt_sizes": inp["tgt_sizes"]}
    emb, _ = model.get_vllm_embedding(data)
    emb = model.get_omni_embedding(data, input_embeddings=emb, chunk_length=model.config.audio_chunk_length)
    rows = []
    for b in list(inp["image_bound"][0]) + list(inp["audio_bounds"][0]):
        rows.extend(range(int(b[0]), int(b[1])))
    rows.sort()
    out = {"input_ids": inp["input_ids"].to(torch.int64).contiguous()}
    if rows:
        out["embeds"] = emb[0, rows].float().contiguous()
    o = model.llm(inputs_embeds=emb, use_cache=True)
    out["logits"] = o.logits[0, -1].float().contiguous()
    past, last, greedy = o.past_key_values, o.logits[0, -1], []
    for _ in range(N_GREEDY):
        nxt = int(torch.argmax(last))
        greedy.append(nxt)
        o = model.llm(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past, last = o.past_key_values, o.logits[0, -1]
    out["greedy"] = torch.tensor(greedy, dtype=torch.int32)
    return out


def main():
    import gen_proc_minicpmo as g
    g.SRC = os.environ.get("MINICPMO_SRC", "")
    ImageProcessor, Processor = g.load_reference()
    mod, cfg_mod = load_model_reference()
    shutil.rmtree(OUT, ignore_errors=True)
    d = os.path.join(OUT, "model")
    os.makedirs(d)
    for fn in os.listdir(PIPE):
        if fn != "config.json":
            shutil.copy(os.path.join(PIPE, fn), os.path.join(d, fn))
    model, c = build_model(mod, cfg_mod)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    del sd["llm.lm_head.weight"]  # tied to llm.model.embed_tokens.weight, as tied hub checkpoints store it
    sd = {k: (v.to(torch.bfloat16) if v.dim() >= 2 else v).contiguous() for k, v in sd.items()}
    sd["tts.projector.linear1.weight"] = torch.zeros(4, 4)  # the TTS part: owned, not read
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    tok = AutoTokenizer.from_pretrained(PIPE)
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": None, "eos_token_id": eos, "do_sample": False,
                   "transformers_version": "5.24.0"}, f, indent=2)
    proc, _ = make_processor(ImageProcessor, Processor, d)
    tensors, cases = {}, []
    for name, prompt, images, audios in CASES:
        out = run_case(model, proc, prompt, images, audios)
        for k, v in out.items():
            tensors[name + "." + k] = v
        cases.append({"name": name, "prompt": prompt,
                      "media": [{"kind": "image", "file": f} for f in images] +
                               [{"kind": "audio", "file": f} for f in audios]})
        print("  %-18s ids %4d  embeds %s" % (name, out["input_ids"].shape[1],
                                              tuple(out["embeds"].shape) if "embeds" in out else "-"))
    save_file(tensors, os.path.join(OUT, "expected.safetensors"))
    import compress_fixtures
    compress_fixtures.compress(os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(OUT) for f in fs)
    print(f"  models/minicpmo: {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
