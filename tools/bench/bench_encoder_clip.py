"""CLIP vision tower benchmark: Tessera (bench_encoder_clip, the LLaVA-NeXT tower in
vision/llava_next/clip.c) versus transformers' CLIPVisionModel on a random-weight
CLIP-ViT-L/14-336 (hidden 1024, 24 layers, 16 heads, intermediate 4096, quick_gelu), one
336x336 image (577 tokens), f32 compute, same threads, same pixel values, same run. The
weights are stored in f32, or (--dtype f16 / bf16, as the hub's LLaVA-NeXT checkpoints store
them) in 16 bits: transformers then runs the model upcast to float32 (dtype=float32) and
Tessera widens the rows in its kernels.

Both sides run all 24 layers and return the last hidden state (577 x 1024); transformers also
applies post_layernorm to the CLS row (its pooled output), a negligible extra. LLaVA-NeXT
takes hidden state -2, so Tessera's encoder stops one layer early while transformers'
get_image_features runs the whole tower: that run (23 layers) is timed too and printed as a
second ratio. The checkpoint is written once under OUT/clip_model/ (1.2 GB) with the names a
LLaVA-NeXT hub checkpoint gives its tower (vision_tower.vision_model.*) and a config.json
holding vision_config. The two sides run alternately (a Tessera run, a transformers run, ...) so both
meet the same machine load; medians over REPS after one warm-up run each; ratio =
transformers / Tessera (> 1: Tessera faster); the hidden states of both sides are compared.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

SIDE = 336
LAYERS = 24


def config():
    return CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=LAYERS,
                            num_attention_heads=16, num_channels=3, image_size=SIDE,
                            patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                            projection_dim=768)


def make_model(out, dtype):
    d = os.path.join(out, "clip_model" if dtype == "f32" else "clip_model_" + dtype)
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    model = CLIPVisionModel(config()).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.02)
    cast = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    sd = {"vision_tower.vision_model." + k: v.to(cast).contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llava_next", "vision_config": config().to_dict()}, f, indent=1)
    return d


def load_model(model_dir):
    model = CLIPVisionModel(config()).eval()
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    pre = "vision_tower.vision_model."
    model.load_state_dict({k[len(pre):]: v.float() for k, v in sd.items()}, strict=True)
    return model


def make_inputs(out):
    path = os.path.join(out, "clip_inputs.safetensors")
    g = torch.Generator().manual_seed(0)
    pv = torch.randn(1, 3, SIDE, SIDE, generator=g).float().contiguous()
    save_file({"pixel_values": pv}, path)
    return path, pv


class Tessera:
    """The driver as a subprocess: one "run" line per timed run."""

    def __init__(self, binary, model_dir, inputs, threads, out):
        self.hid = os.path.join(out, "clip_tessera_hidden.safetensors")
        self.p = subprocess.Popen([binary, model_dir, inputs, str(threads), self.hid],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, layers=None):
        self.p.stdin.write("run\n" if layers is None else "run %d\n" % layers)
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line.startswith("ms="):
            sys.exit("bench_encoder_clip failed (see its message above)")
        return float(line[3:])

    def finish(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        if self.p.wait():
            sys.exit("bench_encoder_clip failed")
        return load_file(self.hid)["hidden"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    model_dir = make_model(a.out, a.dtype)
    inputs, pv = make_inputs(a.out)
    torch.set_num_threads(a.threads)
    model = load_model(model_dir)
    ts = Tessera(a.bin, model_dir, inputs, a.threads, a.out)
    ts_ms, ts23_ms, hf_ms = [], [], []
    with torch.inference_mode():
        for _ in range(a.reps + 1):  # alternately, so both sides meet the same machine load
            time.sleep(0.3)
            ts_ms.append(ts.run())
            time.sleep(0.3)
            t0 = time.perf_counter()
            hf_hid = model(pixel_values=pv).last_hidden_state[0]
            hf_ms.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.3)
            ts23_ms.append(ts.run(LAYERS - 1))
    ts_hid = ts.finish()
    impl = model.config._attn_implementation
    ts_med, ts_min = statistics.median(ts_ms[1:]), min(ts_ms[1:])
    hf_med, hf_min = statistics.median(hf_ms[1:]), min(hf_ms[1:])
    ts23_med = statistics.median(ts23_ms[1:])
    diff = float((ts_hid - hf_hid).abs().max())
    scale = float(hf_hid.abs().max())
    ratio = hf_med / ts_med
    print("CLIP ViT-L/14-336, one %dx%d image (577 tokens), 24 layers, %s weights, f32 compute, "
          "%d threads, %d reps" % (SIDE, SIDE, a.dtype, a.threads, a.reps))
    print("  Tessera       median %9.1f ms  min %9.1f ms" % (ts_med, ts_min))
    print("  transformers  median %9.1f ms  min %9.1f ms  (attention: %s)" % (hf_med, hf_min, impl))
    print("  ratio transformers / Tessera: %.2fx (of the minimums: %.2fx)" % (ratio, hf_min / ts_min))
    print("  LLaVA-NeXT's path (vision_feature_layer -2): Tessera stops after layer %d, median "
          "%.1f ms; transformers' get_image_features runs the whole tower: ratio %.2fx"
          % (LAYERS - 1, ts23_med, hf_med / ts23_med))
    print("  last hidden state max |diff| %.3e (max |value| %.3e)" % (diff, scale))
    name = "bench_encoder_clip.json" if a.dtype == "f32" else "bench_encoder_clip_%s.json" % a.dtype
    with open(os.path.join(a.out, name), "w") as f:
        json.dump({"side": SIDE, "dtype": a.dtype, "threads": a.threads, "reps": a.reps,
                   "tessera_ms": ts_med, "tessera_min_ms": ts_min, "tessera_runs_ms": ts_ms[1:],
                   "transformers_ms": hf_med, "transformers_min_ms": hf_min,
                   "transformers_runs_ms": hf_ms[1:], "transformers_attention": impl,
                   "ratio": ratio, "tessera_layer_minus2_ms": ts23_med,
                   "ratio_layer_minus2": hf_med / ts23_med, "max_abs_diff": diff, "max_abs_value": scale}, f, indent=1)


if __name__ == "__main__":
    main()
