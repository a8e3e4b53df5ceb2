"""Writes safetensors fixtures with the reference `safetensors` package.

tests/fixtures/safetensors/
  mixed.safetensors      U8, I32, I64, F16, BF16, F32 tensors + __metadata__
  mixed.json             for each tensor: dtype, shape and the values as float64 (exactly
                         representable), plus the metadata, so the C reader is checked against
                         what the reference wrote
  f64.safetensors        a valid file with an F64 tensor (Tessera: UNSUPPORTED)
  empty.safetensors      a valid file with no tensors
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file as save_np
from safetensors.torch import save_file as save_torch

OUT = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures", "safetensors")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(1234)
    tensors = {
        "u8.image": torch.from_numpy(rng.integers(0, 256, (2, 3, 4), dtype=np.uint8)),
        "i32.ids": torch.from_numpy(rng.integers(-2**31, 2**31 - 1, (7,), dtype=np.int32)),
        "i64.big": torch.tensor([-(2**53), 2**53, 0, 12345678901], dtype=torch.int64),
        "f16.w": torch.from_numpy(rng.standard_normal((3, 5)).astype(np.float16)),
        "bf16.w": torch.from_numpy(rng.standard_normal((4, 2)).astype(np.float32)).to(torch.bfloat16),
        "f32.scalar": torch.tensor(3.25, dtype=torch.float32),
        "f32.empty": torch.zeros((0, 3), dtype=torch.float32),
        "f32.x": torch.from_numpy(rng.standard_normal((2, 2, 2, 2, 2, 2)).astype(np.float32)),
    }
    meta = {"format": "pt", "note": "tessera fixture \u00e9"}
    save_torch(tensors, os.path.join(OUT, "mixed.safetensors"), metadata=meta)
    desc = {"metadata": meta, "tensors": {}}
    for name, t in tensors.items():
        dtype = str(t.dtype).replace("torch.", "")
        values = t.to(torch.float64).reshape(-1).tolist()
        desc["tensors"][name] = {"dtype": dtype, "shape": list(t.shape), "values": values}
    with open(os.path.join(OUT, "mixed.json"), "w") as f:
        json.dump(desc, f, indent=1)
    save_np({"d": np.arange(6, dtype=np.float64).reshape(2, 3)}, os.path.join(OUT, "f64.safetensors"))
    save_np({}, os.path.join(OUT, "empty.safetensors"))


if __name__ == "__main__":
    main()
