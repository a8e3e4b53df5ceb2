"""Text decoder benchmark: Tessera (bench_decoder) versus transformers on random-weight
checkpoints of ~0.5 B parameters, same threads, same dtype, same prompt ids, same run.

Models (written once under OUT/dec_models/, reused when present):
  qwen2   Qwen2-0.5B dims: hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864,
          vocab 151936, tied embeddings, q/k/v bias (494 M parameters)
  llama   Llama shape: hidden 1024, 24 layers, 16 heads / 4 KV heads, intermediate 4608,
          vocab 32000, untied embeddings (466 M parameters)
each in f32 and bf16 (the same weights rounded). Tessera computes in f32 (bf16 weights are
widened in the kernels); transformers runs the checkpoint in its own dtype.

Per model and dtype: prefill PROMPT random ids (one forward, last-position logits only, as
generate() does with logits_to_keep=1), then DECODE greedy steps one id at a time over the KV
cache. Medians over REPS; ratio = transformers / Tessera (> 1: Tessera faster).
"""
import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

SHAPES = {
    "qwen2": lambda: Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                                 num_hidden_layers=24, num_attention_heads=14,
                                 num_key_value_heads=2, max_position_embeddings=32768,
                                 rope_theta=1000000.0, rms_norm_eps=1e-6,
                                 tie_word_embeddings=True, bos_token_id=None, eos_token_id=None),
    "llama": lambda: LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=4608,
                                 num_hidden_layers=24, num_attention_heads=16,
                                 num_key_value_heads=4, max_position_embeddings=4096,
                                 rope_theta=10000.0, rms_norm_eps=1e-5,
                                 tie_word_embeddings=False, bos_token_id=None, eos_token_id=None),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def make_model(out, name, dtype_name):
    d = os.path.join(out, "dec_models", "%s_%s" % (name, dtype_name))
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    torch.manual_seed(0)
    cfg = SHAPES[name]()
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.03)
    model = model.to(DTYPES[dtype_name])
    model.save_pretrained(d)
    del model
    gc.collect()
    return d


@torch.inference_mode()
def hf_once(model, ids, n_dec):
    x = torch.tensor([ids])
    t0 = time.perf_counter()
    out = model(x, use_cache=True, logits_to_keep=1)
    t1 = time.perf_counter()
    cache, last, got = out.past_key_values, out.logits[0, -1], []
    for _ in range(n_dec):
        nxt = int(torch.argmax(last))
        got.append(nxt)
        out = model(torch.tensor([[nxt]]), cache=cache, use_cache=True)
        cache, last = out.past_key_values, out.logits[0, -1]
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, got


def tessera_once(a, d, ids_path):
    r = subprocess.run([a.bin, d, ids_path, str(a.decode), "1", str(a.threads)],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit("bench_decoder failed: " + r.stderr)
    kv = dict(x.split("=", 1) for x in r.stdout.split())
    t_ids = [int(v) for v in kv["ids"].split(",")] if kv["ids"] else []
    return float(kv["prefill_ms"]), float(kv["decode_ms"]), t_ids, int(kv.get("peak_rss_kb", -1))


def weights_kv_bytes(d, n_ctx):
    """Bytes of the checkpoint's tensors as stored (the safetensors files) and of Tessera's
    KV cache (F32 keys and values of every layer for n_ctx positions)."""
    w = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
            if f.endswith(".safetensors"))
    c = json.load(open(os.path.join(d, "config.json")))
    hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    kvh = c.get("num_key_value_heads") or c["num_attention_heads"]
    return w, 2 * c["num_hidden_layers"] * n_ctx * kvh * hd * 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--models", default="qwen2,llama")
    ap.add_argument("--dtypes", default="f32,bf16")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    hdr = "%-12s %11s %11s %7s %11s %11s %7s %s" % (
        "model", "tsr_pre_ms", "hf_pre_ms", "ratio", "tsr_dec_ms", "hf_dec_ms", "ratio",
        "same_greedy")
    print(hdr, flush=True)
    for name in a.models.split(","):
        for dt in a.dtypes.split(","):
            d = make_model(a.out, name, dt)
            vocab = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
            g = torch.Generator().manual_seed(1234)
            ids = torch.randint(0, vocab, (a.prompt,), generator=g).tolist()
            ids_path = os.path.join(a.out, "dec_prompt_%d.txt" % vocab)
            with open(ids_path, "w") as f:
                f.write(" ".join(map(str, ids)))
            # Alternate the two sides rep by rep, so load from elsewhere on the machine hits both.
            model = AutoModelForCausalLM.from_pretrained(d, dtype=DTYPES[dt]).eval()
            tp, td, hp, hd, rss = [], [], [], [], 0
            for _ in range(a.reps):
                p, q, t_ids, r = tessera_once(a, d, ids_path)
                rss = max(rss, r * 1024)
                tp.append(p)
                td.append(q)
                p, q, h_ids = hf_once(model, ids, a.decode)
                hp.append(p)
                hd.append(q)
            del model
            gc.collect()
            tp, td, hp, hd = (statistics.median(v) for v in (tp, td, hp, hd))
            same = 0
            while same < min(len(t_ids), len(h_ids)) and t_ids[same] == h_ids[same]:
                same += 1
            row = {"model": name, "dtype": dt, "tessera_prefill_ms": tp, "hf_prefill_ms": hp,
                   "prefill_ratio": hp / tp, "tessera_decode_ms": td, "hf_decode_ms": hd,
                   "decode_ratio": hd / td, "greedy_prefix_same": same, "n_decode": a.decode,
                   "prompt": a.prompt, "threads": a.threads, "reps": a.reps}
            # Memory rule: peak RSS at most weights + KV cache + 15 %.
            wb, kvb = weights_kv_bytes(d, a.prompt + a.decode + 1)
            row.update({"tessera_peak_rss_bytes": rss, "weights_bytes": wb, "kv_cache_bytes": kvb,
                        "rss_over_weights_kv": rss / (wb + kvb)})
            rows.append(row)
            print("%-12s %11.1f %11.1f %6.2fx %11.1f %11.1f %6.2fx %d/%d" % (
                name + "_" + dt, tp, hp, hp / tp, td, hd, hd / td, same, a.decode), flush=True)
            print("%-12s peak RSS %.1f MiB, weights %.1f MiB + KV cache %.1f MiB: %.3fx (rule "
                  "<= 1.15x: %s)" % ("", rss / 2**20, wb / 2**20, kvb / 2**20, rss / (wb + kvb),
                                    "ok" if rss <= 1.15 * (wb + kvb) else "OVER"), flush=True)
    with open(os.path.join(a.out, "bench_decoder.json"), "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
