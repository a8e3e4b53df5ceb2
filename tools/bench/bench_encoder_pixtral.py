"""Pixtral image encoder benchmark: Tessera (bench_encoder_pixtral) versus transformers on a
random-weight Mistral3 checkpoint with Mistral-Small-3.1's vision tower (hidden 1024, 24
layers, 16 heads, patch 14, intermediate 4096, gelu) and projector (RMSNorm, 2x2 patch merger,
Linear 1024 -> 5120, GELU, Linear 5120 -> 5120), f32, same threads, same pixel values, same run.
The language model is one small layer (hidden 5120, tiny vocabulary): only the image path is
timed (Mistral3Model.get_image_features against tsr_prompt_new).

The checkpoint is written once under OUT/pixtral_model/ (1.8 GB) and reused. The image is a
seeded 448x448 picture normalised as the Pixtral processor does (CLIP mean / std):
pixel_values [1, 3, 448, 448], 1024 patches, 256 image rows. Both sides stay loaded and take
turns (one Tessera run, then one transformers run, REPS times, after one warm-up each), so
load from other processes on the machine falls on both alike. Reported: medians and minima of
each side, ratio = transformers / Tessera of the medians (> 1: Tessera faster), the median of
the per-turn ratios, and the largest difference between the two sides' features.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import Mistral3Config, Mistral3ForConditionalGeneration

SIDE = 448
IMAGE_TOKEN = 10


def config():
    return Mistral3Config(
        vision_config=dict(model_type="pixtral", hidden_size=1024, intermediate_size=4096,
                           num_hidden_layers=24, num_attention_heads=16, num_channels=3,
                           image_size=1540, patch_size=14, hidden_act="gelu",
                           rope_parameters={"rope_type": "axial", "rope_theta": 10000.0}),
        text_config=dict(model_type="mistral", vocab_size=64, hidden_size=5120,
                         intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
                         rms_norm_eps=1e-5, sliding_window=None, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2),
        image_token_index=IMAGE_TOKEN, projector_hidden_act="gelu", vision_feature_layer=-1,
        multimodal_projector_bias=False, spatial_merge_size=2, tie_word_embeddings=True)


def make_model(out):
    d = os.path.join(out, "pixtral_model")
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    torch.manual_seed(0)
    model = Mistral3ForConditionalGeneration(config()).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.02)
    model.save_pretrained(d)
    return d


def make_inputs(out):
    """A seeded 448x448 RGB image through the Pixtral processor (CLIP mean / std)."""
    path = os.path.join(out, "pixtral_inputs.safetensors")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    img = np.stack([128 + 100 * np.sin(6 * xx + 3 * yy), 255 * xx * (1 - 0.5 * yy),
                    128 + 110 * np.cos(9 * xx * yy)], -1) + rng.normal(0, 12, (SIDE, SIDE, 3))
    img = np.clip(np.rint(img), 0, 255).astype(np.float32) / 255.0
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    pv = torch.from_numpy(((img - mean) / std).transpose(2, 0, 1).copy())[None].float()
    rows = (SIDE // 28) * (SIDE // 28)
    t = {"input_ids": torch.full((1, rows), IMAGE_TOKEN, dtype=torch.int64),
         "pixel_values": pv.contiguous(),
         "image_sizes": torch.tensor([[SIDE, SIDE]], dtype=torch.int64)}
    save_file(t, path)
    return path, t


class Tessera:
    """bench_encoder_pixtral kept running: one encoder run per "run" line."""

    def __init__(self, binary, model_dir, inputs, threads, out):
        self.feats = os.path.join(out, "pixtral_tessera_embeds.safetensors")
        self.p = subprocess.Popen([binary, model_dir, inputs, str(threads), self.feats],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self.p.stdout.readline()
        if not self.ready.startswith("ready"):
            sys.exit("bench_encoder_pixtral failed to start")

    def run(self):
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line.startswith("ms="):
            sys.exit("bench_encoder_pixtral failed")
        return float(line[3:])

    def close(self):
        self.p.stdin.close()
        if self.p.wait():
            sys.exit("bench_encoder_pixtral failed")
        return load_file(self.feats)["embeds"]


class Torch:
    def __init__(self, model_dir, t, threads):
        torch.set_num_threads(threads)
        self.model = Mistral3ForConditionalGeneration.from_pretrained(
            model_dir, dtype=torch.float32).eval()
        self.kw = {"pixel_values": t["pixel_values"], "image_sizes": t["image_sizes"]}
        self.impl = self.model.config.vision_config._attn_implementation
        self.run()

    @torch.inference_mode()
    def run(self):
        a = time.perf_counter()
        self.feats = torch.cat(self.model.model.get_image_features(**self.kw).pooler_output, 0)
        return (time.perf_counter() - a) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    model_dir = make_model(a.out)
    inputs, t = make_inputs(a.out)
    ts = Tessera(a.bin, model_dir, inputs, a.threads, a.out)
    hf = Torch(model_dir, t, a.threads)
    ts_ms, hf_ms = [], []
    for _ in range(a.reps):
        ts_ms.append(ts.run())
        hf_ms.append(hf.run())
    ts_feats, hf_feats = ts.close(), hf.feats
    diff = float((ts_feats - hf_feats).abs().max())
    scale = float(hf_feats.abs().max())
    med_ts, med_hf = statistics.median(ts_ms), statistics.median(hf_ms)
    ratio = med_hf / med_ts
    pair = statistics.median(h / t for h, t in zip(hf_ms, ts_ms))
    print("pixtral %dx%d (1024 patches -> %d rows), f32, %d threads, %d turns"
          % (SIDE, SIDE, hf_feats.shape[0], a.threads, a.reps))
    print("  Tessera       median %9.1f ms  min %9.1f ms  (%s)"
          % (med_ts, min(ts_ms), " ".join("%.0f" % x for x in ts_ms)))
    print("  transformers  median %9.1f ms  min %9.1f ms  (%s; attention %s)"
          % (med_hf, min(hf_ms), " ".join("%.0f" % x for x in hf_ms), hf.impl))
    print("  ratio transformers / Tessera: %.2fx (medians), %.2fx (median of turns)" % (ratio, pair))
    print("  features max |diff| %.3e (max |value| %.3e)" % (diff, scale))
    with open(os.path.join(a.out, "bench_encoder_pixtral.json"), "w") as f:
        json.dump({"side": SIDE, "threads": a.threads, "turns": a.reps,
                   "tessera_ms": ts_ms, "transformers_ms": hf_ms,
                   "transformers_attention": hf.impl, "ratio_medians": ratio,
                   "ratio_turns": pair, "max_abs_diff": diff, "max_abs_value": scale}, f, indent=1)


if __name__ == "__main__":
    main()
