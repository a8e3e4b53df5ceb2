#!/bin/sh
# Text decoder benchmark: Tessera versus transformers (torch) on random-weight ~0.5 B
# checkpoints in Qwen2-0.5B and Llama shapes, f32 and bf16, same threads, same prompt ids,
# same machine, same run.
#
#   tools/bench/bench_decoder.sh [REPS]            # default 3 runs of each
#   THREADS=2 PROMPT=512 DECODE=128 MODELS=qwen2,llama DTYPES=f32,bf16 tools/bench/bench_decoder.sh
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
exec "$py" "$here/bench_decoder.py" --bin "$build/bench_decoder" --out "$here/out" \
  --reps "$reps" --threads "$threads" --prompt "${PROMPT:-512}" --decode "${DECODE:-128}" \
  --models "${MODELS:-qwen2,llama}" --dtypes "${DTYPES:-f32,bf16}"
