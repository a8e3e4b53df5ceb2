#!/bin/sh
# Qwen2-VL vision encoder benchmark: Tessera versus transformers (torch) on Qwen2-VL-2B's
# vision tower (embed 1280, depth 32, 16 heads, merger to 1536) with random f32 weights, one
# 448x448 image, same threads, same run.
#
#   tools/bench/bench_encoder_qwen2_vl.sh [REPS]        # default 5 runs of each
#   THREADS=2 DEPTH=4 tools/bench/bench_encoder_qwen2_vl.sh   # DEPTH: blocks (quick runs)
#
# Builds bench_encoder_qwen2_vl in build/ (Release; BUILD=dir to change). On first use writes
# the checkpoint under tools/bench/out/qwen2_vl_vit/ (about 2.7 GB). Prints the median encoder
# time of each side, the ratio transformers/Tessera (> 1: Tessera faster) and the max abs
# difference of the two encoder outputs; the row also goes to
# tools/bench/out/bench_encoder_qwen2_vl.json. Python: tools/bench/.venv (torch, transformers),
# else the reference venv tools/refgen/.venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py="$here/.venv/bin/python"
[ -x "$py" ] || py="$root/tools/refgen/.venv/bin/python"
reps=${1:-5}
[ -x "$py" ] || { echo "bench_encoder_qwen2_vl.sh: needs tools/bench/.venv or tools/refgen/.venv" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_encoder_qwen2_vl >/dev/null
mkdir -p "$here/out"
threads=${THREADS:-2}
# torch intra-op threads are set in the script; BLAS pools match.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads \
  TOKENIZERS_PARALLELISM=false
exec "$py" "$here/bench_encoder_qwen2_vl.py" --bin "$build/bench_encoder_qwen2_vl" \
  --out "$here/out" --reps "$reps" --threads "$threads" --depth "${DEPTH:-32}"
