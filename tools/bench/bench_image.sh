#!/bin/sh
# Image preprocessing benchmark: Tessera versus Pillow + numpy, single thread, same run.
#
#   tools/bench/bench_image.sh [REPS]          # default 15 runs per case
#
# Builds bench_image in build/ (Release; BUILD=dir to change), writes two deterministic
# photo-like inputs with the reference venv's Pillow (1920x1080 JPEG q90, 4000x3000 PNG)
# under tools/bench/out/, then for each input times decode + resize to 448x448 (BICUBIC)
# + rescale/normalise (CLIP mean/std) to float32 CHW:
#   Tessera: build/bench_image (tsr_image_decode, tsr_image_resize, tsr_image_normalize)
#   Pillow:  Image.open + convert("RGB") if needed + resize + numpy rescale/normalize, as
#            transformers' PIL-backend image processors do.
# Prints median ms per stage and the ratio Pillow/Tessera (> 1: Tessera faster), the
# resize row being the resize-only comparison; the table and JSON also go to
# tools/bench/out/. Exits non-zero if Tessera is slower on any pipeline or resize row.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py="$root/tools/refgen/.venv/bin/python"
reps=${1:-15}
[ -x "$py" ] || { echo "bench_image.sh: needs $py (tools/refgen/refgen.sh creates it)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_image >/dev/null
# One thread everywhere (numpy's BLAS is not used here, but keep it honest).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
exec "$py" "$here/bench_image.py" --bin "$build/bench_image" --out "$here/out" --reps "$reps"
