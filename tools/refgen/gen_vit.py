#!/usr/bin/env python3
"""Shared encoder blocks (vision/vit.h) against PyTorch: tests/fixtures/vit/.

Three random pre-norm blocks, computed with torch.nn.functional in float32:
  clip    LayerNorm, separate q/k/v/o with bias, quick_gelu MLP, one segment
  qwen    LayerNorm, fused qkv, rotary embedding, block-diagonal segments, erf GELU
  pixtral RMSNorm, SwiGLU (silu), per-head q/k RMSNorm, tanh gates, padding keys masked,
          an additive mask with finfo.min entries
Each file blocks/<name>.safetensors holds the block weights (names as vit.h loads them),
"x" (input), "y" (output) and the masks / rotary tables.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

T, D, H, HD, FF = 13, 32, 4, 8, 48


def ln(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def rms(x, w, eps):
    v = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(v + eps))


def rot_half(x):
    a, b = x.chunk(2, -1)
    return torch.cat((-b, a), -1)


def attention(q, k, v, seg, key_valid, add):
    q = q.view(T, H, HD).transpose(0, 1)
    k = k.view(T, H, HD).transpose(0, 1)
    v = v.view(T, H, HD).transpose(0, 1)
    s = q @ k.transpose(1, 2) * HD ** -0.5
    m = torch.zeros(T, T)
    if seg is not None:
        m.fill_(float("-inf"))
        for a, b in zip(seg[:-1], seg[1:]):
            m[a:b, a:b] = 0
    if add is not None:
        m = m + add
    if key_valid is not None:
        m[:, key_valid == 0] = float("-inf")
    p = torch.softmax(s + m, -1)
    return (p @ v).transpose(0, 1).reshape(T, H * HD)


def main(out):
    os.makedirs(os.path.join(out, "vit"), exist_ok=True)
    g = torch.Generator().manual_seed(7)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    for name in ("clip", "qwen", "pixtral"):
        t = {}
        x = r(T, D, scale=1.0)
        t["x"] = x.clone()
        if name == "pixtral":
            t["norm1.weight"] = 1 + r(D)
            t["norm2.weight"] = 1 + r(D)
            h = rms(x, t["norm1.weight"], 1e-5)
        else:
            for n in ("norm1", "norm2"):
                t[n + ".weight"] = 1 + r(D)
                t[n + ".bias"] = r(D)
            h = ln(x, t["norm1.weight"], t["norm1.bias"], 1e-6)
        if name == "qwen":
            t["qkv.weight"] = r(3 * H * HD, D)
            t["qkv.bias"] = r(3 * H * HD)
            q, k, v = F.linear(h, t["qkv.weight"], t["qkv.bias"]).split(H * HD, -1)
        else:
            bias = name == "clip"
            for n in ("q", "k", "v"):
                t[n + ".weight"] = r(H * HD, D)
                if bias:
                    t[n + ".bias"] = r(H * HD)
            q = F.linear(h, t["q.weight"], t.get("q.bias"))
            k = F.linear(h, t["k.weight"], t.get("k.bias"))
            v = F.linear(h, t["v.weight"], t.get("v.bias"))
        seg = key_valid = add = None
        if name == "qwen":
            inv = 1.0 / (10000 ** (torch.arange(0, HD, 2).float() / HD))
            pos = torch.arange(T).float()
            fr = torch.outer(pos, inv)
            emb = torch.cat((fr, fr), -1)
            t["rope_cos"], t["rope_sin"] = emb.cos(), emb.sin()
            c = emb.cos().unsqueeze(1)
            s_ = emb.sin().unsqueeze(1)
            q = (q.view(T, H, HD) * c + rot_half(q.view(T, H, HD)) * s_).reshape(T, -1)
            k = (k.view(T, H, HD) * c + rot_half(k.view(T, H, HD)) * s_).reshape(T, -1)
            seg = [0, 5, 13]
            t["seg"] = torch.tensor(seg, dtype=torch.int64)
        if name == "pixtral":
            t["q_norm.weight"] = 1 + r(HD)
            t["k_norm.weight"] = 1 + r(HD)
            q = rms(q.view(T, H, HD), t["q_norm.weight"], 1e-6).reshape(T, -1)
            k = rms(k.view(T, H, HD), t["k_norm.weight"], 1e-6).reshape(T, -1)
            key_valid = torch.ones(T, dtype=torch.uint8)
            key_valid[-3:] = 0
            add = torch.zeros(T, T)
            add[:4, 6:8] = torch.finfo(torch.float32).min
            t["key_valid"] = key_valid
            t["add"] = add
        a = attention(q, k, v, seg, key_valid, add)
        t["o.weight"] = r(D, H * HD)
        if name != "pixtral":
            t["o.bias"] = r(D)
        o = F.linear(a, t["o.weight"], t.get("o.bias"))
        ga = gm = 1.0
        if name == "pixtral":
            t["gate_attn"] = torch.tensor([0.7])
            t["gate_mlp"] = torch.tensor([-0.4])
            ga, gm = torch.tanh(t["gate_attn"]), torch.tanh(t["gate_mlp"])
        x = x + ga * o
        if name == "pixtral":
            h = rms(x, t["norm2.weight"], 1e-5)
            t["fc1.weight"], t["gate.weight"], t["fc2.weight"] = r(FF, D), r(FF, D), r(D, FF)
            m = F.linear(F.silu(F.linear(h, t["gate.weight"])) * F.linear(h, t["fc1.weight"]),
                         t["fc2.weight"])
        else:
            h = ln(x, t["norm2.weight"], t["norm2.bias"], 1e-6)
            t["fc1.weight"], t["fc1.bias"] = r(FF, D), r(FF)
            t["fc2.weight"], t["fc2.bias"] = r(D, FF), r(D)
            f = F.linear(h, t["fc1.weight"], t["fc1.bias"])
            f = f * torch.sigmoid(1.702 * f) if name == "clip" else F.gelu(f)
            m = F.linear(f, t["fc2.weight"], t["fc2.bias"])
        t["y"] = x + gm * m
        save_file({k: v.contiguous() for k, v in t.items()},
                  os.path.join(out, "vit", name + ".safetensors"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
