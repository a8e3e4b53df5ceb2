#!/bin/sh
# MLlama vision encoder benchmark: Tessera versus transformers (torch) on the vision dims of
# Llama-3.2-11B-Vision (hidden 1280, 16 heads, 560 px tiles of 14 px patches, 4 tiles) with
# random f32 weights and the projector to 4096, same threads, same inputs, same run.
#
#   tools/bench/bench_encoder_mllama.sh [REPS]                 # default 3 runs of each
#   THREADS=2 LOCAL=32 GLOBAL=8 CASES=1tile,4tiles tools/bench/bench_encoder_mllama.sh
#
# LOCAL / GLOBAL set the number of local and gated global layers (32 and 8 as released; fewer
# give the same per-layer ratio in less time). Builds bench_encoder_mllama in build/ (Release;
# BUILD=dir to change). On first use writes the random-weight encoder under
# tools/bench/out/mllama_vision_<LOCAL>_<GLOBAL>/ (3.4 GB for 32 + 8 layers). Per case prints
# the median ms of each side, the ratio transformers / Tessera (> 1: Tessera faster) and the
# max abs difference of the cross-attention states; the table also goes to
# tools/bench/out/bench_encoder_mllama_<LOCAL>_<GLOBAL>.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py="$here/.venv/bin/python"
reps=${1:-3}
[ -x "$py" ] || { echo "bench_encoder_mllama.sh: needs $py (bench_processors.sh creates it)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_encoder_mllama >/dev/null
mkdir -p "$here/out"
threads=${THREADS:-2}
# torch intra-op threads are set in the script; BLAS pools match.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads
"$py" "$here/bench_encoder_mllama.py" --bin "$build/bench_encoder_mllama" --out "$here/out" \
  --reps "$reps" --threads "$threads" --local "${LOCAL:-32}" --global_ "${GLOBAL:-8}" \
  --cases "${CASES:-1tile,4tiles}"
