#!/usr/bin/env python3
"""Helper of bench_processors.sh: builds the benchmark model dirs, makes the inputs, times the
Hugging Face processors (PIL and torchvision backends), runs bench_processors, and prints the
comparison. See bench_processors.sh for the one command to run.

    bench_processors.py --bin build/bench_processors --out tools/bench/out [--reps 11]
                        [--only FAMILY,...]

Model dirs (tools/bench/out/proc_models/<family>/) hold the real checkpoint's processor
settings and the tiny fixture tokenizer of the family (the tokenizer's cost is a few
placeholder tokens either way; the image work is the checkpoint's):
  qwen2_vl    Qwen2-VL-2B preprocessor_config (min_pixels 3136, max_pixels 12845056)
  llava_next  336 px CLIP tiles, anyres pinpoints up to 1008 (llava-v1.6)
  mllama      560 px tiles, max_image_tiles 4 (Llama 3.2 Vision)
  minicpmo    scale_resolution 448, max_slice_nums 9 (MiniCPM-o 2.6), image + 5 s audio
  mistral3    longest_edge 1540, patch 14, spatial merge 2 (Mistral-Small-3.1)
HF timing covers what a caller does per request: load_image(path) (Image.open,
exif_transpose, convert("RGB")), librosa.load(path, sr=16000) for audio, then
processor(text=prompt, images=..., return_tensors="pt"). torch and numpy use one thread.
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, HERE)  # bench_image.photo: the same deterministic photo-like JPEG

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import PIL  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from transformers.image_utils import load_image  # noqa: E402

from bench_image import photo  # noqa: E402

TARGET_PIL, TARGET_TV = 5.0, 2.0
AUDIO = os.path.join(FIX, "proc", "minicpmo", "audio", "a_5s.wav")  # 5.0 s, 16 kHz mono


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)


def model_dir(out, family, src_dir, tokenizer, edits):
    """Copies the fixture model dir src_dir (and the fixture tokenizer, when given) to
    out/proc_models/<family>/, then applies edits {file: {key: value}} to its JSON files."""
    d = os.path.join(out, "proc_models", family)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src_dir, d)
    if tokenizer:
        for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            p = os.path.join(FIX, "tokenizer", tokenizer, fn)
            if os.path.exists(p):
                shutil.copy(p, d)
    for fn, kv in edits.items():
        p = os.path.join(d, fn)
        j = read_json(p) if os.path.exists(p) else {}
        j.update(kv)
        write_json(p, j)
    return d


def clean(cfg):
    return {k: v for k, v in cfg.items() if k not in ("image_processor_type", "processor_class")}


# ---- families: model dir, prompt, media, and the two HF processors -------------------------

def qwen2_vl(out):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    d = model_dir(out, "qwen2_vl", os.path.join(FIX, "proc", "qwen2_vl", "default"), "qwen2",
                  {"config.json": {"model_type": "qwen2_vl"}})
    pp = read_json(os.path.join(d, "preprocessor_config.json"))

    def make(cls):
        # With torchvision installed the processor wants its video processor too (unused here).
        return Qwen2VLProcessor(image_processor=cls(**pp), tokenizer=AutoTokenizer.from_pretrained(d),
                                video_processor=Qwen2VLVideoProcessor())
    return dict(dir=d, prompt="<|vision_start|><|image_pad|><|vision_end|>Describe this image.",
                pil=lambda: make(Qwen2VLImageProcessorPil),
                tv=lambda: make(Qwen2VLImageProcessor),
                call=lambda p, text, im, au: p(text=text, images=[im], return_tensors="pt"))


def llava_next(out):
    from transformers.models.llava_next.image_processing_llava_next import LlavaNextImageProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor
    d = model_dir(out, "llava_next", os.path.join(FIX, "proc", "llava_next", "default"),
                  "llama_spm", {})
    pp = read_json(os.path.join(d, "preprocessor_config.json"))
    pc = read_json(os.path.join(d, "processor_config.json"))

    def make(cls):
        return LlavaNextProcessor(image_processor=cls(**pp), tokenizer=AutoTokenizer.from_pretrained(d),
                                  **pc)
    return dict(dir=d, prompt="<image>\nDescribe this image.",
                pil=lambda: make(LlavaNextImageProcessorPil), tv=lambda: make(LlavaNextImageProcessor),
                call=lambda p, text, im, au: p(text=text, images=[im], return_tensors="pt"))


def mllama(out):
    from transformers.models.mllama.image_processing_mllama import MllamaImageProcessor
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil
    from transformers.models.mllama.processing_mllama import MllamaProcessor
    d = model_dir(out, "mllama", os.path.join(FIX, "proc", "mllama", "model"), None,
                  {"preprocessor_config.json": {"size": {"height": 560, "width": 560},
                                                "max_image_tiles": 4}})
    pp = clean(read_json(os.path.join(d, "preprocessor_config.json")))

    def make(cls):
        return MllamaProcessor(image_processor=cls(**pp), tokenizer=AutoTokenizer.from_pretrained(d))
    return dict(dir=d, prompt="<|image|>Describe this image.",
                pil=lambda: make(MllamaImageProcessorPil), tv=lambda: make(MllamaImageProcessor),
                call=lambda p, text, im, au: p(text=text, images=[[im]], return_tensors="pt"))


def mistral3(out):
    from transformers.models.pixtral import image_processing_pil_pixtral as pil_mod
    from transformers.models.pixtral.image_processing_pixtral import PixtralImageProcessor
    from transformers.models.pixtral.processing_pixtral import PixtralProcessor
    d = model_dir(out, "mistral3", os.path.join(FIX, "proc", "mistral3", "default"), "tekken", {})
    pp = read_json(os.path.join(d, "preprocessor_config.json"))
    pc = read_json(os.path.join(d, "processor_config.json"))

    def make(cls):
        return PixtralProcessor(image_processor=cls(**pp), tokenizer=AutoTokenizer.from_pretrained(d), **pc)
    return dict(dir=d, prompt="[IMG]Describe this image.",
                pil=lambda: make(pil_mod.PixtralImageProcessorPil), tv=lambda: make(PixtralImageProcessor),
                call=lambda p, text, im, au: p(text=text, images=[im], return_tensors="pt"))


def minicpmo(out):
    d = model_dir(out, "minicpmo", os.path.join(FIX, "proc", "minicpmo", "model"), None,
                  {"preprocessor_config.json": {"scale_resolution": 448, "max_slice_nums": 9,
                                                "use_image_id": True},
                   "config.json": {"image_size": 448, "slice_config": {"max_slice_nums": 9}}})
    fam = dict(dir=d, prompt="(<image>./</image>)\n(<audio>./</audio>)\nDescribe the picture and "
                             "transcribe the clip.", audio=True, tv=None,
               tv_note="the hub processor has no torchvision backend")
    src = os.environ.get("MINICPMO_SRC", "")
    if not src or not os.path.isdir(src):
        fam["pil"] = None
        fam["pil_note"] = "MINICPMO_SRC is not set to a copy of the hub processor (see " \
                          "tools/refgen/gen_proc_minicpmo.py): HF timing skipped"
        return fam
    # The hub processor is remote code: import the checked copy as the fixture generator does.
    argv = sys.argv
    sys.argv = [argv[0], FIX, src]
    sys.path.insert(0, os.path.join(ROOT, "tools", "refgen"))
    try:
        import gen_proc_minicpmo as g
        ImageProcessor, Processor = g.load_reference()
    except SystemExit as e:
        fam["pil"] = None
        fam["pil_note"] = f"hub processor copy not usable ({e}): HF timing skipped"
        return fam
    finally:
        sys.argv = argv
    from transformers import WhisperFeatureExtractor
    cfg = read_json(os.path.join(d, "preprocessor_config.json"))

    def make():
        tok = AutoTokenizer.from_pretrained(d)
        for attr, content in g.TOKEN_ATTRS.items():
            setattr(tok, attr, content)
            setattr(tok, attr + "_id", tok.convert_tokens_to_ids(content))
        with contextlib.redirect_stdout(io.StringIO()):
            ip = ImageProcessor(**clean(cfg))
        fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400,
                                     chunk_length=30, padding_value=0.0)
        proc = Processor.__new__(Processor)  # as gen_proc_minicpmo.write_model
        proc.image_processor, proc.feature_extractor, proc.tokenizer = ip, fe, tok
        proc.version = ip.version
        return proc
    fam["pil"] = make
    fam["call"] = lambda p, text, im, au: p(text=text, images=[[im]], audios=[[au]],
                                      chunk_input=True, use_image_id=True, return_tensors="pt")
    return fam


FAMILIES = {"qwen2_vl": qwen2_vl, "llava_next": llava_next, "mllama": mllama,
            "minicpmo": minicpmo, "mistral3": mistral3}


# ---- timing ----------------------------------------------------------------------------------

def hf_request(fam, proc, image_path):
    """One request as a caller makes it: load the media from the files, run the processor."""
    im = load_image(image_path)  # Image.open + exif_transpose + convert("RGB")
    au = None
    if fam.get("audio"):
        import librosa
        au = librosa.load(AUDIO, sr=16000)[0]
    with contextlib.redirect_stdout(io.StringIO()):
        return fam["call"](proc, fam["prompt"], im, au)


WARMUP = 2  # first calls pay lazy imports and first-touch allocations


def time_hf(fams_procs, image_path, reps):
    """Times each processor reps times (after WARMUP untimed runs), interleaved so that drift
    in the machine's load hits every backend alike. Returns {key: median ms} and the last
    outputs."""
    times = {k: [] for k in fams_procs}
    outs = {}
    for r in range(WARMUP + reps):
        for k, (fam, proc) in fams_procs.items():
            t0 = time.perf_counter()
            outs[k] = hf_request(fam, proc, image_path)
            t1 = time.perf_counter()
            if r >= WARMUP:
                times[k].append((t1 - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}, outs


def time_tessera(binary, fam, image_path, reps):
    cmd = [binary, fam["dir"], "--prompt", fam["prompt"], "--image", image_path, "--reps", str(reps)]
    if fam.get("audio"):
        cmd += ["--audio", AUDIO]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def shape_notes(tsr, hf):
    """Names of tensors whose shapes differ between Tessera and HF (leading 1s ignored), so a
    row never compares different work."""
    bad = []
    for name, t in tsr["outputs"].items():
        v = hf.get(name) if hasattr(hf, "get") else None
        if not isinstance(v, torch.Tensor):
            continue
        a, b = list(t["shape"]), list(v.shape)
        while a and a[0] == 1 and len(a) > len(b):
            a.pop(0)
        while b and b[0] == 1 and len(b) > len(a):
            b.pop(0)
        if a != b:
            bad.append(f"{name} {t['shape']} vs HF {list(v.shape)}")
    return bad


def fmt(x, width, suffix=""):
    """x with 2 decimals (and suffix) right-aligned in width; "-" when there is no x."""
    return f"{x:.2f}{suffix}".rjust(width) if x is not None else "-".rjust(width)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()  # the fixture tokenizers' class-name notices
    os.makedirs(a.out, exist_ok=True)
    image_path = os.path.join(a.out, "photo_1920x1080.jpg")
    if not os.path.exists(image_path):
        photo(1920, 1080, seed=1920).save(image_path, "JPEG", quality=90)
    names = [n for n in FAMILIES if not a.only or n in a.only.split(",")]

    rows, notes = [], []
    for name in names:
        fam = FAMILIES[name](a.out)
        tsr = time_tessera(a.bin, fam, image_path, a.reps)
        procs = {}
        if fam.get("pil"):
            procs["pil"] = (fam, fam["pil"]())
        else:
            notes.append(f"{name}: {fam['pil_note']}")
        if fam.get("tv"):
            procs["tv"] = (fam, fam["tv"]())
        elif fam.get("tv_note"):
            notes.append(f"{name}: no torchvision column: {fam['tv_note']}")
        hf, outs = time_hf(procs, image_path, a.reps) if procs else ({}, {})
        for k, o in outs.items():
            for s in shape_notes(tsr, o):
                notes.append(f"{name}: {k} output differs: {s}")
        row = {"family": name, "tessera": tsr, "pil_ms": hf.get("pil"), "tv_ms": hf.get("tv")}
        t = tsr["encoded_ms"]
        row["pil_ratio"] = hf["pil"] / t if "pil" in hf else None
        row["tv_ratio"] = hf["tv"] / t if "tv" in hf else None
        # None: nothing to compare with (no HF timing for this family)
        row["meets"] = (None if row["pil_ratio"] is None and row["tv_ratio"] is None else
                        (row["pil_ratio"] is None or row["pil_ratio"] >= TARGET_PIL) and
                        (row["tv_ratio"] is None or row["tv_ratio"] >= TARGET_TV))
        rows.append(row)
        print(f"{name}: done", file=sys.stderr)

    pv = lambda t: t["outputs"].get("pixel_values", {}).get("shape")  # noqa: E731
    lines = [f"processor benchmark: 1920x1080 JPEG (+ 5 s 16 kHz WAV for minicpmo), real "
             f"checkpoint processor settings, single thread, median of {a.reps} runs; "
             f"transformers {transformers.__version__}, torch {torch.__version__}, "
             f"Pillow {PIL.__version__}, numpy {np.__version__}",
             f"{'family':<12}{'Tessera ms':>11}{'(decoded)':>10}{'PIL ms':>9}{'tv ms':>9}"
             f"{'PIL/Tsr':>9}{'tv/Tsr':>8}  target  pixel_values"]
    for r in rows:
        t = r["tessera"]
        lines.append(f"{r['family']:<12}{t['encoded_ms']:>11.2f}{t['decoded_ms']:>10.2f}"
                     f"{fmt(r['pil_ms'], 9)}{fmt(r['tv_ms'], 9)}"
                     f"{fmt(r['pil_ratio'], 9, 'x')}{fmt(r['tv_ratio'], 8, 'x')}"
                     f"  {({True: 'met', False: 'MISSED'}.get(r['meets'], '-')):<6}  {pv(t)}")
    lines.append(f"Tessera ms: tsr_processor_run_prompt from the encoded bytes (decode included, as "
                 f"HF's times include Image.open/librosa.load); (decoded): the same from media "
                 f"decoded beforehand. ratio = HF time / Tessera time; target >= {TARGET_PIL:g}x "
                 f"PIL, >= {TARGET_TV:g}x torchvision (tv)")
    lines += ["note: " + n for n in notes]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(a.out, "bench_processors.txt"), "w") as f:
        f.write(text + "\n")
    write_json(os.path.join(a.out, "bench_processors.json"), rows)
    missed = [r["family"] for r in rows if r["meets"] is False]
    if missed:
        print("targets missed by: " + ", ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
