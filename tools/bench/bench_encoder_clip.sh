#!/bin/sh
# CLIP vision tower benchmark (LLaVA-NeXT's encoder): Tessera versus transformers (torch) on a
# random-weight CLIP-ViT-L/14-336 (hidden 1024, 24 layers, 16 heads), one 336x336 image
# (577 tokens), f32, same threads, same pixel values, same machine, same run.
#
#   tools/bench/bench_encoder_clip.sh [REPS]     # default 3 runs of each (after a warm-up)
#   THREADS=2 tools/bench/bench_encoder_clip.sh
#   DTYPE=f16 tools/bench/bench_encoder_clip.sh    # weights stored in f16 (bf16 too), f32 compute
#
# Builds bench_encoder_clip in build/ (Release; BUILD=dir to change). On first use writes the
# checkpoint under tools/bench/out/clip_model/ (1.2 GB; clip_model_f16/ 0.6 GB). Prints the median and minimum of each
# side (run alternately), the ratio transformers/Tessera (> 1: Tessera faster) and the largest difference of the
# last hidden states; the numbers also go to tools/bench/out/bench_encoder_clip.json. The
# Python side runs in tools/bench/.venv (torch + transformers, tools/bench/requirements.txt).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py=${PYTHON:-$here/.venv/bin/python}
reps=${1:-3}
[ -x "$py" ] || { echo "bench_encoder_clip.sh: needs $py (torch, transformers)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_encoder_clip >/dev/null
mkdir -p "$here/out"
threads=${THREADS:-2}
# torch intra-op threads are set in the script; BLAS pools match.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads
"$py" "$here/bench_encoder_clip.py" --bin "$build/bench_encoder_clip" --out "$here/out" \
  --reps "$reps" --threads "$threads" --dtype "${DTYPE:-f32}"
