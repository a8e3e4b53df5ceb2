"""Qwen2-VL vision encoder benchmark: Tessera (bench_encoder_qwen2_vl) versus transformers on
Qwen2-VL-2B's vision tower with random weights, same image, same threads, same run.

Model (written once under OUT/qwen2_vl_vit/, reused when present): a
Qwen2VLForConditionalGeneration whose vision_config is Qwen2-VL-2B's (embed_dim 1280, depth 32,
16 heads, mlp_ratio 4, quick_gelu, patch 14, temporal 2, merge 2, merger to 1536) and whose
language model is a single small layer of width 1536 (only there so the checkpoint loads as
a model; it is not timed), f32, hub layout (visual.*, model.*), seeded. The processor files
(tokenizer, preprocessor_config.json) are the Qwen2-VL test fixture's.

Input: one deterministic 448x448 RGB image (PNG under OUT/), 32x32 patches -> 256 rows.
Timed (the two sides' runs alternate, so both see the same load): Tessera's tsr_prompt_new (patch embedding, 32 blocks, merger, positions) as
tsr_prompt_image_ms reports it; transformers' model.model.get_image_features(pixel_values,
image_grid_thw) under torch.no_grad() with torch.set_num_threads(THREADS). One warm-up run
each, then REPS runs; medians of wall time and of the process's CPU time over the call (all
threads; less sensitive than wall time to other load on a shared machine). Ratio =
transformers / Tessera (> 1: Tessera faster), for both. The encoder outputs of both sides are
compared (max abs diff) so the timing is of the same work.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

# The processor checks its sub-processors against torchvision-backed classes; the PIL backend
# is the reference, so the check is bypassed (no number changes).
ProcessorMixin.check_argument_for_proper_class = lambda self, name, arg: None

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "models", "qwen2_vl", "model")
VISION = dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4,
              hidden_act="quick_gelu", in_channels=3, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2)


def make_model(out, depth):
    d = os.path.join(out, "qwen2_vl_vit" if depth == 32 else "qwen2_vl_vit_d%d" % depth)
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return d
    os.makedirs(d, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(os.path.join(FIXTURE, f), os.path.join(d, f))
    pp = json.load(open(os.path.join(d, "preprocessor_config.json")))
    pp["max_pixels"] = 12845056
    json.dump(pp, open(os.path.join(d, "preprocessor_config.json"), "w"), indent=1)
    tok = AutoTokenizer.from_pretrained(d)
    text = dict(vocab_size=len(tok), hidden_size=1536, intermediate_size=256,
                num_hidden_layers=1, num_attention_heads=12, num_key_value_heads=2,
                max_position_embeddings=4096, rms_norm_eps=1e-6, bos_token_id=None,
                eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24],
                                 "rope_theta": 1000000.0})
    cfg = Qwen2VLConfig(text_config=text, vision_config=dict(VISION, depth=depth), tie_word_embeddings=True,
                        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
                        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
                        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
                        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg).to(torch.float32)
    tmp = d + "_tmp"
    model.save_pretrained(tmp)
    del model
    sd = {}
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(tmp, f)))
    for f in ("config.json", "generation_config.json"):
        if os.path.exists(os.path.join(tmp, f)):
            shutil.copy(os.path.join(tmp, f), os.path.join(d, f))
    shutil.rmtree(tmp)
    hub = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            continue
        if k.startswith("model.visual."):
            k = k[len("model."):]
        elif k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        hub[k] = v.contiguous()
    save_file(hub, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    return d


def make_image(out):
    path = os.path.join(out, "bench_448.png")
    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:448, 0:448].astype(np.float64) / 447
        a = np.stack([128 + 100 * np.sin(6 * xx + 2 * yy), 255 * (0.1 + 0.8 * xx * (1 - yy)),
                      128 + 110 * np.cos(9 * xx * yy)], -1) + rng.normal(0, 10, (448, 448, 3))
        Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB").save(path)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=32, help="blocks (32: the real tower)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    d = make_model(a.out, a.depth)
    img = make_image(a.out)

    tess_out = os.path.join(a.out, "qwen2_vl_vit_tessera.safetensors")
    torch.set_num_threads(a.threads)
    pp = json.load(open(os.path.join(d, "preprocessor_config.json")))
    ip = Qwen2VLImageProcessorPil(**{k: v for k, v in pp.items()
                                     if k not in ("image_processor_type", "processor_class")})
    proc = Qwen2VLProcessor(image_processor=ip, tokenizer=AutoTokenizer.from_pretrained(d))
    inputs = proc(text="<|vision_start|><|image_pad|><|vision_end|>",
                  images=[Image.open(img)], return_tensors="pt")
    model = Qwen2VLForConditionalGeneration.from_pretrained(d, dtype=torch.float32).eval()

    def torch_run():
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.no_grad():
            f = model.model.get_image_features(inputs["pixel_values"],
                                               inputs["image_grid_thw"]).pooler_output
        return f, (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3

    # Both sides warm up, then their runs alternate so they see the same load on the machine.
    tess = subprocess.Popen([a.bin, d, img, "0", str(a.threads), tess_out], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    feats, _, _ = torch_run()
    times, cpu = [], []
    for i in range(a.reps):
        tess.stdin.write("run\n")
        tess.stdin.flush()
        if not tess.stdout.readline().startswith("ms="):
            sys.exit("bench_encoder_qwen2_vl failed")
        feats, dt, dc = torch_run()
        times.append(dt)
        cpu.append(dc)
    out, _ = tess.communicate("")
    if tess.returncode:
        sys.exit("bench_encoder_qwen2_vl failed:\n" + out)
    kv = dict(x.split("=") for x in out.split())
    t_ms = float(kv["encoder_ms"])
    ref = torch.cat(feats, 0).float()
    with safe_open(tess_out, "pt") as f:
        got = f.get_tensor("embeds")
    diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
    h_ms = statistics.median(times)
    row = {"model": "qwen2_vl_2b_vit", "depth": a.depth, "image": "448x448", "patches": int(kv["patches"]),
           "rows": int(kv["rows"]), "threads": a.threads, "reps": a.reps,
           "tessera_ms": t_ms, "tessera_min_ms": float(kv["encoder_min_ms"]),
           "transformers_ms": h_ms, "transformers_min_ms": min(times),
           "tessera_cpu_ms": float(kv["encoder_cpu_ms"]),
           "transformers_cpu_ms": statistics.median(cpu),
           "ratio": h_ms / t_ms, "ratio_cpu": statistics.median(cpu) / float(kv["encoder_cpu_ms"]),
           "max_abs_diff": diff, "torch": torch.__version__,
           "load_avg": os.getloadavg()[0]}
    json.dump(row, open(os.path.join(a.out, "bench_encoder_qwen2_vl.json"), "w"), indent=1)
    print("Qwen2-VL-2B ViT (depth %d), 448x448 (%d patches -> %d rows), %d threads, median of %d:"
          % (a.depth, row["patches"], row["rows"], a.threads, a.reps))
    print("  Tessera       %9.1f ms (min %.1f), CPU %.1f ms"
          % (t_ms, row["tessera_min_ms"], row["tessera_cpu_ms"]))
    print("  transformers  %9.1f ms (min %.1f), CPU %.1f ms  torch %s"
          % (h_ms, min(times), row["transformers_cpu_ms"], torch.__version__))
    print("  ratio transformers/Tessera %.2fx wall, %.2fx CPU   outputs max abs diff %.3g"
          "   (load average %.1f)" % (row["ratio"], row["ratio_cpu"], diff, row["load_avg"]))


if __name__ == "__main__":
    main()
