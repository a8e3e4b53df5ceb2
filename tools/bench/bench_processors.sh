#!/bin/sh
# Processor benchmark: each family's whole processor (Tessera's tsr_processor_run_prompt)
# versus transformers' processor with its PIL backend and its torchvision backend, single
# thread, same machine, same run.
#
#   tools/bench/bench_processors.sh [REPS]     # default 11 runs per processor
#   ONLY=qwen2_vl,mllama tools/bench/bench_processors.sh   # some families
#   MINICPMO_SRC=DIR ...                       # MiniCPM-o's hub processor copy (see
#                                              # tools/refgen/gen_proc_minicpmo.py); without
#                                              # it that family has no HF timing
#
# Builds bench_processors in build/ (Release; BUILD=dir to change) and, on first use, the
# benchmark venv tools/bench/.venv from tools/bench/requirements.txt (the refgen pins plus
# torchvision; needs python3-venv and the Python package index). Then bench_processors.py
# builds model dirs with the real checkpoints' processor settings under
# tools/bench/out/proc_models/, writes a deterministic photo-like 1920x1080 JPEG
# (tools/bench/out/photo_1920x1080.jpg, as bench_image.sh) and, per family, times:
#   Tessera:      build/bench_processors (the encoded bytes in, decode included)
#   PIL:          load_image(path) + processor(text=..., images=..., return_tensors="pt")
#                 with the *ImageProcessorPil class (+ librosa.load of the 5 s clip for
#                 MiniCPM-o, whose hub processor is PIL + numpy only)
#   torchvision:  the same with the torchvision *ImageProcessor class
# Prints median ms, the ratios HF/Tessera and whether each family meets the targets
# (>= 5x PIL, >= 2x torchvision); the table and JSON also go to tools/bench/out/.
# Exits non-zero if a family misses a target.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
venv="$here/.venv"
reps=${1:-11}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
(cd "$here" && "$venv/bin/pip" install -q -r requirements.txt)
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_processors >/dev/null
# One thread everywhere: torch intra-op (also set in the script), BLAS, tokenizers.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 \
  TOKENIZERS_PARALLELISM=false
exec "$venv/bin/python" "$here/bench_processors.py" --bin "$build/bench_processors" \
  --out "$here/out" --reps "$reps" --only "${ONLY:-}"
