#!/bin/sh
# MiniCPM-o 2.6 encoder benchmark: Tessera versus the checkpoint's remote code (torch) with
# random f32 weights of the release's sizes, same inputs, same threads, same run:
#   MODE=vision (default): SigLIP-400M NaViT (hidden 1152, 26 of 27 layers, 16 heads, patch 14)
#                          and the Resampler (64 queries into the LLM width 3584) on one 448x448
#                          image (32 x 32 patches);
#   MODE=audio:            the Whisper-medium encoder (1024, 24 layers), projection to 3584 and
#                          pool 2 on 30 s of audio (3000 mel frames, 1 s block-causal mask).
#
#   MINICPMO_SRC=DIR tools/bench/bench_encoder_minicpmo.sh [REPS]     # default 3 runs of each
#   THREADS=2 MODE=audio MINICPMO_SRC=DIR tools/bench/bench_encoder_minicpmo.sh
#
# DIR holds the remote-code copies named in tools/refgen/gen_model_minicpmo.py and
# gen_proc_minicpmo.py. Builds bench_encoder_minicpmo in build/ (Release; BUILD=dir to change).
# Writes the checkpoint under tools/bench/out/minicpmo_vpm/ (about 2 GB) or minicpmo_apm/
# (about 1.3 GB). Prints the median wall and CPU time of each side, the ratios
# reference/Tessera (> 1: Tessera faster) and the max abs difference of the output rows; the
# row also goes to tools/bench/out/bench_encoder_minicpmo_vpm.json (or _apm.json). Python: tools/bench/.venv (torch,
# transformers), else the reference venv tools/refgen/.venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py="$here/.venv/bin/python"
[ -x "$py" ] || py="$root/tools/refgen/.venv/bin/python"
reps=${1:-3}
[ -x "$py" ] || { echo "bench_encoder_minicpmo.sh: needs tools/bench/.venv or tools/refgen/.venv" >&2; exit 2; }
[ -n "${MINICPMO_SRC:-}" ] || { echo "bench_encoder_minicpmo.sh: set MINICPMO_SRC" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_encoder_minicpmo >/dev/null
mkdir -p "$here/out"
threads=${THREADS:-2}
# torch intra-op threads are set in the script; BLAS pools match.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads
exec "$py" "$here/bench_encoder_minicpmo.py" --bin "$build/bench_encoder_minicpmo" \
  --out "$here/out" --reps "$reps" --threads "$threads" --mode "${MODE:-vision}"
