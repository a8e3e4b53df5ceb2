#!/bin/sh
# Pixtral image encoder benchmark: Tessera versus transformers (torch) on a random-weight
# Mistral3 checkpoint with Mistral-Small-3.1's vision tower and projector, one 448x448 image
# (1024 patches), f32, same threads, same pixel values, same machine, same run; the two sides
# take turns so that load from other processes falls on both.
#
#   tools/bench/bench_encoder_pixtral.sh [REPS]     # default 3 turns (after a warm-up of each)
#   THREADS=2 tools/bench/bench_encoder_pixtral.sh
#
# Builds bench_encoder_pixtral in build/ (Release; BUILD=dir to change). On first use writes
# the checkpoint under tools/bench/out/pixtral_model/ (1.8 GB). Prints the median and minimum
# of each side, the ratio transformers/Tessera (> 1: Tessera faster) and the largest feature
# difference; the numbers also go to tools/bench/out/bench_encoder_pixtral.json. The Python
# side runs in tools/bench/.venv (torch + transformers, tools/bench/requirements.txt).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py=${PYTHON:-$here/.venv/bin/python}
reps=${1:-3}
[ -x "$py" ] || { echo "bench_encoder_pixtral.sh: needs $py (torch, transformers)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_encoder_pixtral >/dev/null
mkdir -p "$here/out"
threads=${THREADS:-2}
# torch intra-op threads are set in the script; BLAS pools match.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$threads
"$py" "$here/bench_encoder_pixtral.py" --bin "$build/bench_encoder_pixtral" --out "$here/out" \
  --reps "$reps" --threads "$threads"
