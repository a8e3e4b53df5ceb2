#!/bin/sh
# Text decoder benchmark: Tessera versus transformers (torch) on random-weight ~0.5 B
# checkpoints in Qwen2-0.5B and Llama shapes, f32 and bf16, same threads, same prompt ids,
# same machine, same run.
#
#   tools/bench/bench_decoder.sh [REPS]            # default 3 runs of each
#   THREADS=2 PROMPT=512 DECODE=128 MODELS=qwen2,llama DTYPES=f32,bf16 tools/bench/bench_decoder.sh
#   LLAMA_CPP_DIR=/path/to/llama.cpp tools/bench/bench_decoder.sh   # adds llama.cpp (below)
#
# Builds bench_decoder in build/ (Release; BUILD=dir to change). On first use writes the
# checkpoints under tools/bench/out/dec_models/ (about 2 GB each in f32, 1 GB in bf16).
# Per model: prefill PROMPT random ids, then DECODE greedy steps; prints median ms of each
# side, the ratio transformers/Tessera (> 1: Tessera faster) and how many greedy ids agree,
# then Tessera's peak RSS (VmHWM of the bench process, largest over REPS) next to the bytes of
# the weights as stored plus the KV cache, against the rule peak RSS <= 1.15 x (weights + KV).
# The table also goes to tools/bench/out/bench_decoder.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py="$root/tools/refgen/.venv/bin/python"
reps=${1:-3}
[ -x "$py" ] || { echo "bench_decoder.sh: needs $py (tools/refgen/refgen.sh creates it)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_decoder >/dev/null
mkdir -p "$here/out"
threads=${THREADS:-2}
# torch intra-op threads are set in the script; BLAS pools match.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads \
  TOKENIZERS_PARALLELISM=false
"$py" "$here/bench_decoder.py" --bin "$build/bench_decoder" --out "$here/out" \
  --reps "$reps" --threads "$threads" --prompt "${PROMPT:-512}" --decode "${DECODE:-128}" \
  --models "${MODELS:-qwen2,llama}" --dtypes "${DTYPES:-f32,bf16}"

# Optional: llama.cpp on the same Qwen2-shape checkpoints. LLAMA_CPP_DIR names a llama.cpp
# source tree already built with cmake (build/bin/llama-bench); its convert_hf_to_gguf.py
# runs under LLAMA_PY (default: the refgen venv's Python, which has torch, transformers,
# numpy; gguf comes from the tree's gguf-py) and needs a Qwen2 tokenizer.json in
# LLAMA_TOKENIZER_DIR (default: the real-vocab test cache). llama-bench runs pp PROMPT and
# tg DECODE with THREADS threads; the ratio is Tessera's tokens/s over llama.cpp's
# (> 1: Tessera faster), Tessera's from the run above.
if [ -z "${LLAMA_CPP_DIR:-}" ]; then
  echo "llama.cpp: skipped (set LLAMA_CPP_DIR to a built llama.cpp tree)"
  exit 0
fi
lb="$LLAMA_CPP_DIR/build/bin/llama-bench"
tok=${LLAMA_TOKENIZER_DIR:-$root/tests/fixtures/real_vocab/.cache/qwen2}
lpy=${LLAMA_PY:-$py}
if [ ! -x "$lb" ] || [ ! -f "$tok/tokenizer.json" ]; then
  echo "llama.cpp: skipped (needs $lb and $tok/tokenizer.json)"
  exit 0
fi
for dt in $(echo "${DTYPES:-f32,bf16}" | tr , ' '); do
  src="$here/out/dec_models/qwen2_$dt"
  gguf="$here/out/dec_models/qwen2_$dt.gguf"
  [ -d "$src" ] || continue
  if [ ! -f "$gguf" ]; then
    tmp=$(mktemp -d)
    for f in "$src"/*; do ln -s "$f" "$tmp/"; done
    cp "$tok"/tokenizer*.json "$tmp/"
    PYTHONPATH="$LLAMA_CPP_DIR/gguf-py" "$lpy" "$LLAMA_CPP_DIR/convert_hf_to_gguf.py" "$tmp" \
      --outtype "$dt" --outfile "$gguf" >/dev/null 2>&1 || echo "llama.cpp: convert $dt failed"
    rm -rf "$tmp"
  fi
  [ -f "$gguf" ] || continue
  "$lb" -m "$gguf" -t "$threads" -p "${PROMPT:-512}" -n "${DECODE:-128}" -r "$reps" -o json \
    > "$here/out/llama_bench_qwen2_$dt.json" 2>/dev/null || { echo "llama.cpp: $dt failed"; continue; }
  "$py" - "$here/out/llama_bench_qwen2_$dt.json" "$here/out/bench_decoder.json" "$dt" <<'PY'
import json, sys
ll, ts, dt = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
t = [r for r in ts if r["model"] == "qwen2" and r["dtype"] == dt][0]
tsr = {"pp": t["prompt"] / t["tessera_prefill_ms"] * 1e3, "tg": t["n_decode"] / t["tessera_decode_ms"] * 1e3}
for r in ll:
    kind, n = ("pp", r["n_prompt"]) if r["n_prompt"] else ("tg", r["n_gen"])
    print("llama.cpp qwen2_%-5s %s%-4d %8.1f t/s  Tessera %8.1f t/s  ratio %.2fx"
          % (dt, kind, n, r["avg_ts"], tsr[kind], tsr[kind] / r["avg_ts"]))
PY
done
