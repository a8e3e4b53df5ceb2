"""MiniCPM-o 2.6 vision encoder benchmark: Tessera (bench_encoder_minicpmo) versus the
checkpoint's remote code (modeling_minicpmo.py, modeling_navit_siglip.py, resampler.py, read
from MINICPMO_SRC as tools/refgen/gen_model_minicpmo.py reads them) on MiniCPM-o 2.6's vision
side with random weights, same pixel values, same threads, same run.

Model (written once under OUT/minicpmo_vpm/, reused when present): a MiniCPMO whose vision
config is the release's (SigLIP-400M: hidden 1152, 27 layers of which drop_vision_last_layer
keeps 26, 16 heads, intermediate 4304, patch 14, image_size 980) and whose LLM is one small
Qwen2 layer of the release's width 3584 (so the Resampler is the release's: 64 queries,
3584 / 128 = 28 heads, kv_proj 1152 -> 3584); no audio, no TTS. f32, hub names, seeded.

Input: one deterministic 448x448 RGB image through the hub image processor
(MiniCPMVImageProcessor, scale_resolution 448, slicing off): one slice of 32 x 32 patches.
Timed: Tessera's encoder (patch embedding, 26 layers, post_layernorm, Resampler) through the
family encoder's internal entry point; the remote code's get_vllm_embedding (vpm + resampler,
plus the token embedding lookup and scatter) under torch.inference_mode() with
torch.set_num_threads(THREADS). One warm-up run each, then REPS runs; medians of the wall time
and of the CPU time of each process's threads (the steadier of the two on a machine shared with
other work; torch's OpenMP workers may spin while they wait, which counts as CPU time). Ratio =
reference / Tessera (> 1: Tessera faster). The 64 output rows of both are compared.
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "refgen"))
VISION = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
              num_channels=3, image_size=980, patch_size=14, hidden_act="gelu_pytorch_tanh",
              layer_norm_eps=1e-6, model_type="siglip")
LLM = dict(vocab_size=4052, hidden_size=3584, intermediate_size=256, num_hidden_layers=1,
           num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=4096,
           rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=None)


def build(g, cfg_mod, mod, d):
    c = dict(LLM)
    c.update({"architectures": ["MiniCPMO"], "model_type": "minicpmo", "query_num": 64,
              "image_size": 448, "patch_size": 14, "drop_vision_last_layer": True,
              "vision_config": VISION, "init_vision": True, "init_audio": False, "init_tts": False,
              "chunk_input": True, "slice_config": {"max_slice_nums": 9}})
    kw = {k: v for k, v in c.items() if k not in ("architectures", "model_type")}
    cfg = cfg_mod.MiniCPMOConfig(**kw)
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg._name_or_path = d
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = mod.MiniCPMO(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1 and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith("resampler.query"):
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.03)
    return model.eval(), c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not (os.environ.get("MINICPMO_MODEL_SRC") or os.environ.get("MINICPMO_SRC")):
        sys.exit("bench_encoder_minicpmo: set MINICPMO_SRC (see tools/refgen/gen_model_minicpmo.py)")
    sys.argv = sys.argv[:1]
    import gen_model_minicpmo as gm
    import gen_proc_minicpmo as gp
    gp.SRC = os.environ.get("MINICPMO_SRC", "")
    ImageProcessor, _ = gp.load_reference()
    mod, cfg_mod = gm.load_model_reference()
    torch.set_num_threads(a.threads)

    d = os.path.join(a.out, "minicpmo_vpm")
    os.makedirs(d, exist_ok=True)
    model, c = build(gp, cfg_mod, mod, d)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "llm.lm_head.weight"}
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:448, 0:448].astype(np.float64) / 447
    px = np.stack([128 + 100 * np.sin(6 * xx + 2 * yy), 255 * (0.1 + 0.8 * xx * (1 - yy)),
                   128 + 110 * np.cos(9 * xx * yy)], -1) + rng.normal(0, 10, (448, 448, 3))
    img = Image.fromarray(np.clip(np.rint(px), 0, 255).astype(np.uint8), "RGB")
    with contextlib.redirect_stdout(io.StringIO()):
        ip = ImageProcessor(max_slice_nums=9, scale_resolution=448, patch_size=14, use_image_id=False,
                            image_feature_size=64, slice_mode=False, norm_mean=[0.5] * 3,
                            norm_std=[0.5] * 3, version=2.6, im_start="<image>", im_end="</image>",
                            slice_start="<slice>", slice_end="</slice>", unk="<unk>",
                            im_id_start="<image_id>", im_id_end="</image_id>")
        pi = ip.preprocess([img], do_pad=True, max_slice_nums=9, return_tensors="pt")
    pv = pi["pixel_values"][0]
    tgt = pi["tgt_sizes"][0]
    if len(pv) != 1:
        sys.exit("bench_encoder_minicpmo: expected one slice, got %d" % len(pv))
    n = 66
    ids = torch.zeros(1, n, dtype=torch.int64)
    ids[0, 1:65] = 3
    bound = torch.tensor([[1, 65]], dtype=torch.int64)
    tgt_t = torch.as_tensor(np.asarray(tgt), dtype=torch.int64).reshape(-1, 2)
    pv0 = torch.as_tensor(np.asarray(pv[0]), dtype=torch.float32).contiguous()
    inputs = os.path.join(a.out, "minicpmo_vpm_inputs.safetensors")
    save_file({"input_ids": ids, "image_bound": bound, "tgt_sizes": tgt_t, "pixel_values.0": pv0},
              inputs)

    tess_out = os.path.join(a.out, "minicpmo_vpm_tessera.safetensors")
    r = subprocess.run([a.bin, d, inputs, str(a.reps), str(a.threads), tess_out],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit("bench_encoder_minicpmo failed:\n" + r.stdout + r.stderr)
    kv = dict(x.split("=") for x in r.stdout.split())
    t_ms = float(kv["encoder_ms"])

    data = {"input_ids": ids, "pixel_values": [[pv0]], "tgt_sizes": [tgt_t.to(torch.int32)],
            "image_bound": [bound]}
    times, cpu = [], []
    with torch.inference_mode():
        for i in range(a.reps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            emb, _ = model.get_vllm_embedding(data)
            dt, dc = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
            if i:
                times.append(dt)
                cpu.append(dc)
    ref = emb[0, 1:65].float()
    with safe_open(tess_out, "pt") as f:
        got = f.get_tensor("embeds")
    diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
    h_ms, h_cpu, t_cpu = statistics.median(times), statistics.median(cpu), float(kv["cpu_ms"])
    row = {"model": "minicpmo_2_6_vpm_resampler", "image": "448x448",
           "patches": int(tgt_t[0, 0] * tgt_t[0, 1]), "rows": int(kv["rows"]), "threads": a.threads,
           "reps": a.reps, "tessera_ms": t_ms, "tessera_min_ms": float(kv["encoder_min_ms"]),
           "reference_ms": h_ms, "reference_min_ms": min(times), "ratio": h_ms / t_ms,
           "tessera_cpu_ms": t_cpu, "reference_cpu_ms": h_cpu, "cpu_ratio": h_cpu / t_cpu,
           "max_abs_diff": diff, "max_abs_ref": float(ref.abs().max()), "torch": torch.__version__}
    json.dump(row, open(os.path.join(a.out, "bench_encoder_minicpmo.json"), "w"), indent=1)
    print("MiniCPM-o 2.6 SigLIP-400M (26 layers) + Resampler, 448x448 (%d patches -> %d rows), "
          "%d threads, median of %d:" % (row["patches"], row["rows"], a.threads, a.reps))
    print("  Tessera       %9.1f ms (min %.1f)  CPU %9.1f ms" % (t_ms, row["tessera_min_ms"], t_cpu))
    print("  remote code   %9.1f ms (min %.1f)  CPU %9.1f ms  torch %s"
          % (h_ms, min(times), h_cpu, torch.__version__))
    print("  ratio reference/Tessera: wall %.2fx, CPU %.2fx   outputs max abs diff %.3g (max |ref| %.3g)"
          % (row["ratio"], row["cpu_ratio"], diff, row["max_abs_ref"]))


if __name__ == "__main__":
    main()
