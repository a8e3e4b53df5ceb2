#!/usr/bin/env python3
"""Writes the MiniCPM-o 2.6 processor fixtures: tests/fixtures/proc/minicpmo/.

Usage: MINICPMO_SRC=DIR tools/refgen/refgen.sh proc_minicpmo
       (or: .venv/bin/python gen_proc_minicpmo.py FIXTURES_DIR [DIR])

MiniCPM-o's processor is remote code on the hub (processing_minicpmo.py,
image_processing_minicpmv.py). The reference here is a copy of those two files, read from
DIR and checked against the sha256 below; nothing of them is committed. The copy used:
  repository  github.com/icyyrain/minicpmo-modified-files (copies of openbmb/MiniCPM-o-2_6)
  processing_minicpmo.py        commit 7838ae09f0fa97e590d5193a4202ef08e2360948 (the upload
                                of the hub file, unmodified)
  image_processing_minicpmv.py  commit 19b3e7da05d796a325e2d366f58690cb308cc97c (the hub file
                                plus a timestamp print in __init__; no other change)
Fetch: git clone https://github.com/icyyrain/minicpmo-modified-files r && \
  git -C r show 7838ae09:processing_minicpmo.py > DIR/processing_minicpmo.py && \
  git -C r show 19b3e7da:image_processing_minicpmv.py > DIR/image_processing_minicpmv.py
Feature extraction is transformers' WhisperFeatureExtractor (feature_size 80), as the
processor names it.

proc/minicpmo/model/      preprocessor_config.json (the released 2.6 values), config.json and
                          the qwen25_minicpmo fixture tokenizer plus <unk>
proc/minicpmo/model_noid/ the same with use_image_id false and max_slice_nums 4
proc/minicpmo/img/*.png, audio/*.wav   inputs (16 kHz 16-bit mono WAV)
proc/minicpmo/cases.json  {"cases": [{name, model, prompt, images, audios, chunk_input,
                                      input_ids, outputs} or {..., error}]}
                          error: the ValueError message when the processor refuses the input
                          cases/<name>.safetensors: pixel_values.<i> (F32 [3, 14, N*14], the
                          i-th slice over all images), tgt_sizes, image_sizes, image_bound,
                          audio_bounds, spk_bounds (I64), audio_features (F32) and
                          audio_feature_lens (I64) when audio is present, input_ids (I64).
"""
import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import types

import numpy as np
import soundfile as sf
from PIL import Image
from safetensors.numpy import save_file
from transformers import AutoTokenizer, WhisperFeatureExtractor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
SRC = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MINICPMO_SRC", "")
OUT = os.path.join(FIXTURES, "proc", "minicpmo")
TOK = os.path.join(FIXTURES, "tokenizer", "qwen25_minicpmo")

SHA256 = {
    "processing_minicpmo.py": "f28fea45173cc74e7905578bcff24cfb374d4202ddc182e5c89028376294b1b8",
    "image_processing_minicpmv.py": "d77dabcaf1f1d494fa2893d812a59656d532929903c2e96305850f18ec5d0385",
}

PREPROCESSOR = {  # openbmb/MiniCPM-o-2_6 preprocessor_config.json
    "image_processor_type": "MiniCPMVImageProcessor", "feature_extractor_type": "WhisperFeatureExtractor",
    "processor_class": "MiniCPMOProcessor", "max_slice_nums": 9, "scale_resolution": 448, "patch_size": 14,
    "use_image_id": True, "image_feature_size": 64, "im_start": "<image>", "im_end": "</image>",
    "im_start_token": "<image>", "im_end_token": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
    "slice_start_token": "<slice>", "slice_end_token": "</slice>", "unk": "<unk>", "unk_token": "<unk>",
    "im_id_start": "<image_id>", "im_id_end": "</image_id>", "slice_mode": True,
    "norm_mean": [0.5, 0.5, 0.5], "norm_std": [0.5, 0.5, 0.5], "version": 2.6,
    "feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 30,
    "padding_value": 0.0, "padding_side": "right", "return_attention_mask": False,
}
# scale_resolution 448 makes every slice about 448 x 448 (2.4 MB of floats); the fixture models
# use 70 and 56 so the slicing decisions happen on small images.
MODELS = {"model": {"scale_resolution": 70},
          "model_noid": {"scale_resolution": 56, "use_image_id": False, "max_slice_nums": 4}}

# The hub tokenizer class (MiniCPMOTokenizerFast) adds these names to a Qwen2 tokenizer.
TOKEN_ATTRS = {"im_start": "<image>", "im_end": "</image>", "slice_start": "<slice>", "slice_end": "</slice>",
               "im_id_start": "<image_id>", "im_id_end": "</image_id>", "audio_start": "<|audio_start|>",
               "audio_end": "<|audio_end|>", "spk_start": "<|spk_bos|>", "spk_end": "<|spk_eos|>"}


def load_reference():
    if not SRC:
        sys.exit("gen_proc_minicpmo.py: set MINICPMO_SRC (or argv[2]) to the folder holding the copy "
                 "(see the docstring)")
    pkg = tempfile.mkdtemp(prefix="minicpmo_ref_")
    os.makedirs(os.path.join(pkg, "minicpmo_ref"))
    open(os.path.join(pkg, "minicpmo_ref", "__init__.py"), "w").close()
    for fn, want in SHA256.items():
        data = open(os.path.join(SRC, fn), "rb").read()
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            sys.exit(f"{fn}: sha256 {got}, expected {want}")
        open(os.path.join(pkg, "minicpmo_ref", fn), "wb").write(data)
    sys.path.insert(0, pkg)
    # torchaudio serves only the TTS mel features (ChatTTSProcessor), never called here.
    if importlib.util.find_spec("torchaudio") is None:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    ip = importlib.import_module("minicpmo_ref.image_processing_minicpmv")
    pm = importlib.import_module("minicpmo_ref.processing_minicpmo")
    return ip.MiniCPMVImageProcessor, pm.MiniCPMOProcessor


def write_tokenizer(d):
    """The fixture tokenizer plus <unk> (MiniCPM-o's vocabulary has it; this one does not)."""
    tj = json.load(open(os.path.join(TOK, "tokenizer.json")))
    tc = json.load(open(os.path.join(TOK, "tokenizer_config.json")))
    new_id = max(max(tj["model"]["vocab"].values()), max(a["id"] for a in tj["added_tokens"])) + 1
    entry = {"content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
    tj["added_tokens"].append(dict(id=new_id, **entry))
    tc["added_tokens_decoder"][str(new_id)] = entry
    json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w"), ensure_ascii=False)
    json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1, ensure_ascii=False)


def write_model(name, over, ImageProcessor, Processor):
    d = os.path.join(OUT, name)
    os.makedirs(d)
    cfg = dict(PREPROCESSOR, **over)
    json.dump(cfg, open(os.path.join(d, "preprocessor_config.json"), "w"), indent=2)
    json.dump({"model_type": "minicpmo", "architectures": ["MiniCPMO"], "query_num": 64, "image_size": 448,
               "patch_size": 14, "slice_config": {"max_slice_nums": cfg["max_slice_nums"]},
               "audio_pool_step": 2, "audio_chunk_length": 1.0}, open(os.path.join(d, "config.json"), "w"),
              indent=2)
    write_tokenizer(d)
    tok = AutoTokenizer.from_pretrained(d)
    for attr, content in TOKEN_ATTRS.items():
        setattr(tok, attr, content)
        setattr(tok, attr + "_id", tok.convert_tokens_to_ids(content))
    with contextlib.redirect_stdout(io.StringIO()):
        ip = ImageProcessor(**{k: v for k, v in cfg.items() if k != "image_processor_type"})
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400,
                                 chunk_length=30, padding_value=0.0)
    proc = Processor.__new__(Processor)  # ProcessorMixin.__init__ of transformers 5 checks the classes
    proc.image_processor, proc.feature_extractor, proc.tokenizer = ip, fe, tok
    proc.version = ip.version
    return proc, cfg


def make_image(name, w, h, mode, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1),
                     (x + y) * 127.0 / max(w + h - 2, 1)], axis=-1)
    px = np.clip(base + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(px, "RGB")
    if mode == "L":
        img = img.convert("L")
    elif mode == "RGBA":
        alpha = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        img = Image.fromarray(np.dstack([px, alpha]), "RGBA")
    img.save(os.path.join(OUT, "img", name + ".png"))
    return name + ".png"


def make_audio(name, seconds, seed):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 16000))
    t = np.arange(n) / 16000.0
    x = 0.4 * np.sin(2 * np.pi * (220 + 60 * seed) * t) + 0.05 * rng.standard_normal(n)
    sf.write(os.path.join(OUT, "audio", name + ".wav"), np.clip(x, -1, 1), 16000, subtype="PCM_16")
    return name + ".wav"


IMAGES = [
    ("rgb_1x1", 1, 1, "RGB"), ("rgb_2x2", 2, 2, "RGB"), ("rgb_5x3", 5, 3, "RGB"), ("rgb_30x20", 30, 20, "RGB"),
    ("rgb_97x61", 97, 61, "RGB"), ("rgb_71x71", 71, 71, "RGB"), ("rgb_100x75", 100, 75, "RGB"),
    ("rgb_210x42", 210, 42, "RGB"), ("rgb_28x190", 28, 190, "RGB"), ("gray_90x95", 90, 95, "L"),
    ("rgba_50x35", 50, 35, "RGBA"), ("rgb_250x50", 250, 50, "RGB"), ("rgb_160x140", 160, 140, "RGB"),
]
AUDIOS = [("a_0_1s", 0.1), ("a_5s", 5.0), ("a_31s", 31.0), ("a_65s", 65.0)]

IMG, AUD = "(<image>./</image>)", "(<audio>./</audio>)"
# name, model, prompt, images, audios, chunk_input
CASES = [
    ("tiny", "model", IMG + "\nWhat is this?", ["rgb_2x2"], [], True),
    # The channel layout is inferred from the first image: height 1 or 3 reads as channels-first
    # and normalize raises. The processor refuses these prompts.
    ("height1_refused", "model", IMG + "\nWhat is this?", ["rgb_1x1"], [], True),
    ("height3_first_refused", "model", IMG + IMG, ["rgb_5x3", "rgb_30x20"], [], True),
    ("height3_second_ok", "model", IMG + IMG, ["rgb_30x20", "rgb_5x3"], [], True),
    ("small_upscale", "model", IMG + "\nDescribe.", ["rgb_30x20"], [], True),
    ("odd", "model", IMG + "\nodd size", ["rgb_97x61"], [], True),
    ("grid_tie", "model", IMG + "\nsquare just over the scale", ["rgb_71x71"], [], True),
    ("grid_2x1", "model", IMG + "\n100 x 75", ["rgb_100x75"], [], True),
    ("wide", "model", IMG + "\nwide", ["rgb_210x42"], [], True),
    ("tall", "model", IMG + "\ntall", ["rgb_28x190"], [], True),
    ("gray", "model", IMG + "\ngray", ["gray_90x95"], [], True),
    ("alpha_dropped", "model", IMG + "\nalpha", ["rgba_50x35"], [], True),
    ("multi_image", "model", "Compare " + IMG + " and " + IMG + " and " + IMG,
     ["rgb_100x75", "rgb_30x20", "rgb_250x50"], [], True),
    ("no_image_id", "model_noid", IMG + IMG + "\ntwo, capped at 4 slices", ["rgb_100x75", "rgb_250x50"], [],
     True),
    ("audio_0_1s", "model", AUD + "\nTranscribe.", [], ["a_0_1s"], True),
    ("audio_5s", "model", AUD + "\nTranscribe.", [], ["a_5s"], True),
    ("audio_31s", "model", AUD + "\nTranscribe.", [], ["a_31s"], True),
    ("audio_65s_unchunked", "model", AUD + "\nTranscribe.", [], ["a_65s"], False),
    ("audio_multi", "model", "First " + AUD + " then " + AUD, [], ["a_0_1s", "a_5s"], True),
    ("many_slices", "model", IMG + "\nnine slices", ["rgb_160x140"], [], True),
    ("image_and_audio", "model", IMG + " and " + AUD + " together", ["rgb_97x61"], ["a_0_1s"], True),
]


def tensors_of(out, n_images):
    t = {"input_ids": np.asarray(out["input_ids"][0], dtype=np.int64)}
    pv = out["pixel_values"][0] if n_images else []
    for i, p in enumerate(pv):
        t["pixel_values.%d" % i] = np.ascontiguousarray(np.asarray(p, dtype=np.float32))
    if n_images:
        t["tgt_sizes"] = np.asarray(out["tgt_sizes"][0], dtype=np.int64).reshape(-1, 2)
        t["image_sizes"] = np.asarray(out["image_sizes"][0], dtype=np.int64).reshape(-1, 2)
    for k in ("image_bound", "audio_bounds", "spk_bounds"):
        t[k] = np.asarray(out[k][0], dtype=np.int64).reshape(-1, 2)
    if len(out["audio_features"]):
        t["audio_features"] = np.ascontiguousarray(np.asarray(out["audio_features"], dtype=np.float32))
        t["audio_feature_lens"] = np.asarray(out["audio_feature_lens"][0], dtype=np.int64).reshape(-1)
    return t


def main():
    ImageProcessor, Processor = load_reference()
    shutil.rmtree(OUT, ignore_errors=True)
    for sub in ("img", "audio", "cases"):
        os.makedirs(os.path.join(OUT, sub))
    procs = {name: write_model(name, over, ImageProcessor, Processor) for name, over in MODELS.items()}
    imgs = {n: make_image(n, w, h, m, seed) for seed, (n, w, h, m) in enumerate(IMAGES)}
    auds = {n: make_audio(n, s, seed) for seed, (n, s) in enumerate(AUDIOS)}
    cases = []
    for name, model, prompt, im, au, chunk in CASES:
        proc, cfg = procs[model]
        pil = [Image.open(os.path.join(OUT, "img", imgs[i])) for i in im]
        wav = [sf.read(os.path.join(OUT, "audio", auds[a]), dtype="float32")[0] for a in au]
        case = {"name": name, "model": model, "prompt": prompt, "images": [imgs[i] for i in im],
                "audios": [auds[a] for a in au], "chunk_input": chunk}
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                out = proc(text=prompt, images=[pil] if pil else None, audios=[wav] if wav else None,
                           chunk_input=chunk, use_image_id=cfg["use_image_id"], return_tensors="pt")
        except ValueError as e:
            cases.append(dict(case, error=str(e)))
            continue
        t = tensors_of(out, len(pil))
        save_file(t, os.path.join(OUT, "cases", name + ".safetensors"))
        cases.append(dict(case, input_ids=t["input_ids"].tolist(), outputs="cases/" + name + ".safetensors"))
    json.dump({"reference": "MiniCPMOProcessor (hub copy, see gen_proc_minicpmo.py) + WhisperFeatureExtractor",
               "cases": cases}, open(os.path.join(OUT, "cases.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
