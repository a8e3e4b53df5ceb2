"""MiniCPM-o 2.6 encoder benchmark: Tessera (bench_encoder_minicpmo) versus the checkpoint's
remote code (modeling_minicpmo.py, modeling_navit_siglip.py, resampler.py, read from
MINICPMO_SRC as tools/refgen/gen_model_minicpmo.py reads them) on MiniCPM-o 2.6's vision side
(--mode vision) or audio side (--mode audio) with random weights, same inputs, same threads,
same run.

Audio (--mode audio; OUT/minicpmo_apm/): the release's audio side, Whisper-medium's encoder
(d_model 1024, 24 layers, 16 heads, ffn 4096, 80 mel bins, 1500 positions), the projection
1024 -> 3584 -> 3584 and AvgPool1d(2), on 30 s of deterministic audio (WhisperFeatureExtractor:
3000 frames -> 1500 positions -> 750 rows) with the 1 s block-causal mask
(audio_chunk_length 1.0). Timed: Tessera's encoder as below; the remote code's
get_audio_embedding(data, chunk_length=1.0).

Model (written once under OUT/minicpmo_vpm/, reused when present): a MiniCPMO whose vision
config is the release's (SigLIP-400M: hidden 1152, 27 layers of which drop_vision_last_layer
keeps 26, 16 heads, intermediate 4304, patch 14, image_size 980) and whose LLM is one small
Qwen2 layer of the release's width 3584 (so the Resampler is the release's: 64 queries,
3584 / 128 = 28 heads, kv_proj 1152 -> 3584); no audio, no TTS. f32, hub names, seeded.

Vision input: one deterministic 448x448 RGB image through the hub image processor
(MiniCPMVImageProcessor, scale_resolution 448, slicing off): one slice of 32 x 32 patches.
Vision timed: Tessera's encoder (patch embedding, 26 layers, post_layernorm, Resampler) via the
family encoder's internal entry point; the remote code's get_vllm_embedding (vpm + resampler,
plus the token embedding lookup and scatter) under torch.inference_mode() with
torch.set_num_threads(THREADS). One warm-up run each, then REPS runs; medians of the wall time
and of the CPU time of each process's threads (the steadier of the two on a machine shared with
other work; torch's OpenMP workers may spin while they wait, which counts as CPU time). Ratio =
reference / Tessera (> 1: Tessera faster). The output rows of both are compared.
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
AUDIO = dict(d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096,
             decoder_layers=1, decoder_attention_heads=16, decoder_ffn_dim=256, num_mel_bins=80,
             max_source_positions=1500, max_target_positions=448, activation_function="gelu",
             model_type="whisper")


def build(cfg_mod, mod, d, audio):
    c = dict(LLM)
    c.update({"architectures": ["MiniCPMO"], "model_type": "minicpmo", "query_num": 64,
              "image_size": 448, "patch_size": 14, "drop_vision_last_layer": True,
              "vision_config": VISION, "audio_config": AUDIO, "init_vision": not audio,
              "init_audio": audio, "init_tts": False, "audio_pool_step": 2,
              "audio_chunk_length": 1.0, "chunk_input": True,
              "slice_config": {"max_slice_nums": 9}})
    kw = {k: v for k, v in c.items() if k not in ("architectures", "model_type")}
    cfg = cfg_mod.MiniCPMOConfig(**kw)
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg.audio_config._attn_implementation = "eager"
    cfg._name_or_path = d
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        model = mod.MiniCPMO(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1 and n.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif n.endswith("resampler.query") or "embed_positions" in n:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.03)
    return model.eval(), c


def vision_case(gp, model, out):
    """Inputs (the processor output Tessera's encoder takes), the reference call, its rows."""
    ImageProcessor, _ = gp.load_reference()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:448, 0:448].astype(np.float64) / 447
    px = np.stack([128 + 100 * np.sin(6 * xx + 2 * yy), 255 * (0.1 + 0.8 * xx * (1 - yy)),
                   128 + 110 * np.cos(9 * xx * yy)], -1) + rng.normal(0, 10, (448, 448, 3))
    img = Image.fromarray(np.clip(np.rint(px), 0, 255).astype(np.uint8), "RGB")
    with contextlib.redirect_stdout(io.StringIO()):
        ip = ImageProcessor(max_slice_nums=9, scale_resolution=448, patch_size=14,
                            use_image_id=False, image_feature_size=64, slice_mode=False,
                            norm_mean=[0.5] * 3, norm_std=[0.5] * 3, version=2.6)
        pi = ip.preprocess([img], do_pad=True, max_slice_nums=9, return_tensors="pt")
    pv, tgt = pi["pixel_values"][0], pi["tgt_sizes"][0]
    if len(pv) != 1:
        sys.exit("bench_encoder_minicpmo: expected one slice, got %d" % len(pv))
    ids = torch.zeros(1, 66, dtype=torch.int64)
    ids[0, 1:65] = 3
    bound = torch.tensor([[1, 65]], dtype=torch.int64)
    tgt_t = torch.as_tensor(np.asarray(tgt), dtype=torch.int64).reshape(-1, 2)
    pv0 = torch.as_tensor(np.asarray(pv[0]), dtype=torch.float32).contiguous()
    inputs = {"input_ids": ids, "image_bound": bound, "tgt_sizes": tgt_t, "pixel_values.0": pv0}
    data = {"input_ids": ids, "pixel_values": [[pv0]], "tgt_sizes": [tgt_t.to(torch.int32)],
            "image_bound": [bound]}

    def run():
        emb, _ = model.get_vllm_embedding(data)
        return emb[0, 1:65]

    what = ("MiniCPM-o 2.6 SigLIP-400M (26 layers) + Resampler, 448x448 (%d patches -> 64 rows)"
            % int(tgt_t[0, 0] * tgt_t[0, 1]))
    return "minicpmo_2_6_vpm_resampler", what, inputs, run


def audio_case(model, out):
    from transformers import WhisperFeatureExtractor
    n = 30 * 16000
    t = np.arange(n) / 16000.0
    rng = np.random.default_rng(0)
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.5 * t)
           + 0.05 * rng.standard_normal(n)).astype(np.float32)
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, n_fft=400,
                                 chunk_length=30, padding_value=0.0)
    f = fe([wav], sampling_rate=16000, return_attention_mask=True, padding="max_length",
           return_tensors="pt")
    lens = f["attention_mask"].sum(1).to(torch.int64)
    feats = f["input_features"][:, :, : int(lens[0])].contiguous().float()
    rows = ((int(lens[0]) - 1) // 2 + 1 - 2) // 2 + 1
    ids = torch.zeros(1, rows + 2, dtype=torch.int64)
    ids[0, 1:rows + 1] = 3
    bound = torch.tensor([[1, rows + 1]], dtype=torch.int64)
    inputs = {"input_ids": ids, "audio_bounds": bound, "audio_features": feats,
              "audio_feature_lens": lens}
    data = {"audio_features": feats, "audio_feature_lens": [lens]}

    def run():
        return torch.cat(model.get_audio_embedding(data, chunk_length=1.0)[0], 0)

    what = ("MiniCPM-o 2.6 Whisper-medium encoder (24 layers) + projection + pool, 30 s audio "
            "(%d frames -> %d rows)" % (int(lens[0]), rows))
    return "minicpmo_2_6_apm_projection", what, inputs, run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=("vision", "audio"), default="vision")
    a = ap.parse_args()
    if not (os.environ.get("MINICPMO_MODEL_SRC") or os.environ.get("MINICPMO_SRC")):
        sys.exit("bench_encoder_minicpmo: set MINICPMO_SRC (see gen_model_minicpmo.py)")
    sys.argv = sys.argv[:1]
    import gen_model_minicpmo as gm
    import gen_proc_minicpmo as gp
    gp.SRC = os.environ.get("MINICPMO_SRC", "")
    mod, cfg_mod = gm.load_model_reference()
    torch.set_num_threads(a.threads)

    audio = a.mode == "audio"
    tag = "minicpmo_apm" if audio else "minicpmo_vpm"
    d = os.path.join(a.out, tag)
    os.makedirs(d, exist_ok=True)
    model, c = build(cfg_mod, mod, d, audio)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        sd = {k: v.contiguous() for k, v in model.state_dict().items()
              if k != "llm.lm_head.weight"}
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)
    name, what, inputs, run = audio_case(model, a.out) if audio else vision_case(gp, model, a.out)
    in_path = os.path.join(a.out, tag + "_inputs.safetensors")
    save_file(inputs, in_path)

    tess_out = os.path.join(a.out, tag + "_tessera.safetensors")
    r = subprocess.run([a.bin, d, in_path, str(a.reps), str(a.threads), tess_out],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit("bench_encoder_minicpmo failed:\n" + r.stdout + r.stderr)
    kv = dict(x.split("=") for x in r.stdout.split())
    t_ms = float(kv["encoder_ms"])

    times, cpu = [], []
    with torch.inference_mode():
        for i in range(a.reps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            ref = run()
            dt, dc = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
            if i:
                times.append(dt)
                cpu.append(dc)
    ref = ref.float()
    with safe_open(tess_out, "pt") as f:
        got = f.get_tensor("embeds")
    diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
    h_ms, h_cpu, t_cpu = statistics.median(times), statistics.median(cpu), float(kv["cpu_ms"])
    row = {"model": name, "rows": int(kv["rows"]), "threads": a.threads, "reps": a.reps,
           "tessera_ms": t_ms, "tessera_min_ms": float(kv["encoder_min_ms"]),
           "reference_ms": h_ms, "reference_min_ms": min(times), "ratio": h_ms / t_ms,
           "tessera_cpu_ms": t_cpu, "reference_cpu_ms": h_cpu, "cpu_ratio": h_cpu / t_cpu,
           "max_abs_diff": diff, "max_abs_ref": float(ref.abs().max()), "torch": torch.__version__}
    json.dump(row, open(os.path.join(a.out, "bench_encoder_%s.json" % tag), "w"), indent=1)
    print("%s, %d threads, median of %d:" % (what, a.threads, a.reps))
    print("  Tessera       %9.1f ms (min %.1f)  CPU %9.1f ms" % (t_ms, row["tessera_min_ms"], t_cpu))
    print("  remote code   %9.1f ms (min %.1f)  CPU %9.1f ms  torch %s"
          % (h_ms, min(times), h_cpu, torch.__version__))
    print("  ratio reference/Tessera: wall %.2fx, CPU %.2fx   outputs max abs diff %.3g "
          "(max |ref| %.3g)" % (row["ratio"], row["cpu_ratio"], diff, row["max_abs_ref"]))


if __name__ == "__main__":
    main()
