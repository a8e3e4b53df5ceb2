"""MLlama vision encoder benchmark: Tessera (bench_encoder_mllama) versus transformers'
MllamaVisionModel + multi_modal_projector on the vision dims of Llama-3.2-11B-Vision with
random weights, same threads, same inputs, same run.

Model (written once under OUT/mllama_vision_<local>_<global>/, reused when present): hidden
1280, 16 heads, intermediate 5120, image_size 560, patch 14 (1601 positions per tile, padded
to 1608), max_num_tiles 4, intermediate layers [3, 7, 15, 23, 30] (those below the local
layer count when fewer layers are asked for), vision_output_dim 1280 x (1 + intermediates),
projector to 4096; LOCAL local and GLOBAL gated global layers (default 32 and 8), f32.

Cases: one image of one tile (aspect ratio 1x1: the other three tiles are padding, masked as
transformers masks them, but still computed: valid rows attend to them) and one image of
four tiles (2x2). Per case: REPS runs of each side, alternated, medians of the wall time and
of the CPU time of each process's threads (the steadier of the two on a machine shared with
other work; torch's OpenMP workers may spin while they wait, which counts as CPU time);
ratio = transformers / Tessera (> 1: Tessera faster); max abs diff of the two
cross-attention states.
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
from transformers import MllamaConfig
from transformers.models.mllama.modeling_mllama import MllamaVisionModel

TEXT_DIM = 4096
CASES = {"1tile": (1, [1, 0, 0, 0]), "4tiles": (6, [1, 1, 1, 1])}  # (aspect_ratio_id, mask)


def vision_config(n_local, n_global):
    inter = [i for i in [3, 7, 15, 23, 30] if i < n_local] or [n_local - 1]
    return dict(hidden_size=1280, attention_heads=16, intermediate_size=5120,
                num_hidden_layers=n_local, num_global_layers=n_global, image_size=560,
                patch_size=14, max_num_tiles=4, intermediate_layers_indices=inter,
                vision_output_dim=1280 * (1 + len(inter)), norm_eps=1e-5, hidden_act="gelu")


class Encoder(torch.nn.Module):
    def __init__(self, vc):
        super().__init__()
        cfg = MllamaConfig(vision_config=vc, text_config=dict(hidden_size=TEXT_DIM))
        self.vision_model = MllamaVisionModel(cfg.vision_config)
        self.multi_modal_projector = torch.nn.Linear(vc["vision_output_dim"], TEXT_DIM, bias=True)

    def forward(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask):
        h = self.vision_model(pixel_values=pixel_values, aspect_ratio_ids=aspect_ratio_ids,
                              aspect_ratio_mask=aspect_ratio_mask).last_hidden_state
        return self.multi_modal_projector(h).reshape(-1, h.shape[-2], TEXT_DIM)


def make_model(out, n_local, n_global):
    d = os.path.join(out, "mllama_vision_%d_%d" % (n_local, n_global))
    vc = vision_config(n_local, n_global)
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return d, vc
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    model = Encoder(vc)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "layernorm" in n and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith("gate") or "gate_" in n:
                p.fill_(0.5)
            else:
                p.copy_(torch.randn_like(p) * 0.02)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "mllama", "vision_config": vc}, f, indent=1)
    del model
    return d, vc


def tessera_once(a, d, inputs, out_path):
    cmd = [a.bin, d, inputs, str(TEXT_DIM), "1", str(a.threads)] + ([out_path] if out_path else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("bench_encoder_mllama failed: " + r.stderr)
    kv = dict(x.split("=", 1) for x in r.stdout.split())
    return float(kv["encode_ms"]), float(kv["cpu_ms"])


@torch.inference_mode()
def hf_once(model, x):
    t0, c0 = time.perf_counter(), time.process_time()
    y = model(**x)
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--local", type=int, default=32)
    ap.add_argument("--global_", type=int, default=8)
    ap.add_argument("--cases", default="1tile,4tiles")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, vc = make_model(a.out, a.local, a.global_)
    model = Encoder(vc).eval()
    model.load_state_dict(load_file(os.path.join(d, "model.safetensors")))
    print("MLlama vision encoder: hidden 1280, %d local + %d global layers, 560 px tiles, "
          "%d threads, %d reps, transformers attention: %s" % (
              a.local, a.global_, a.threads, a.reps,
              model.vision_model.config._attn_implementation), flush=True)
    print("%-8s %11s %11s %7s %12s %12s %7s %s" % (
        "case", "tessera_ms", "hf_ms", "ratio", "tessera_cpu", "hf_cpu", "ratio", "max_abs_diff"),
        flush=True)
    rows = []
    for case in a.cases.split(","):
        ar_id, mask = CASES[case]
        g = torch.Generator().manual_seed(5)
        pv = torch.zeros(1, 1, 4, 3, 560, 560)
        n_tiles = sum(mask)
        pv[:, :, :n_tiles] = torch.randn(1, 1, n_tiles, 3, 560, 560, generator=g)
        x = {"pixel_values": pv, "aspect_ratio_ids": torch.tensor([[ar_id]]),
             "aspect_ratio_mask": torch.tensor([[mask]])}
        inputs = os.path.join(a.out, "mllama_inputs_%s.safetensors" % case)
        save_file(x, inputs)
        out_path = os.path.join(a.out, "mllama_states_%s.safetensors" % case)
        ts, hs, tc, hc, y = [], [], [], [], None
        for r in range(a.reps):  # alternated, so load from elsewhere hits both sides
            t, c = tessera_once(a, d, inputs, out_path if r == 0 else None)
            ts.append(t)
            tc.append(c)
            t, c, y = hf_once(model, x)
            hs.append(t)
            hc.append(c)
        got = load_file(out_path)["cross_attention_states"]
        diff = float((got - y).abs().max())
        tm, hm = statistics.median(ts), statistics.median(hs)
        tcm, hcm = statistics.median(tc), statistics.median(hc)
        rows.append({"case": case, "local": a.local, "global": a.global_, "threads": a.threads,
                     "reps": a.reps, "tessera_ms": tm, "hf_ms": hm, "ratio": hm / tm,
                     "tessera_cpu_ms": tcm, "hf_cpu_ms": hcm, "cpu_ratio": hcm / tcm,
                     "max_abs_diff": diff, "tessera_all_ms": ts, "hf_all_ms": hs,
                     "tessera_all_cpu_ms": tc, "hf_all_cpu_ms": hc})
        print("%-8s %11.1f %11.1f %6.2fx %12.1f %12.1f %6.2fx %.3g" % (
            case, tm, hm, hm / tm, tcm, hcm, hcm / tcm, diff), flush=True)
        os.remove(out_path)
    with open(os.path.join(a.out, "bench_encoder_mllama_%d_%d.json" % (a.local, a.global_)),
              "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
