#!/bin/sh
# Tokenizer encode benchmark: Tessera versus Hugging Face `tokenizers` (Rust), single thread,
# same machine, same run.
#
#   tools/bench/bench_tokenizer.sh [REPS]          # default 7 runs per tokenizer
#
# Builds bench_tokenizer in build/ (Release; BUILD=dir to change), writes a deterministic
# 1 MiB multilingual text (the refgen training-corpus generator, another seed) to
# tools/bench/out/tokenizer_1mb.txt, then for each fixture tokenizer under
# tests/fixtures/tokenizer/ times one encode of the whole text (no special tokens):
#   Tessera:    build/bench_tokenizer (tsr_tokenizer_encode)
#   tokenizers: Tokenizer.from_file(...).encode(text), RAYON_NUM_THREADS=1,
#               TOKENIZERS_PARALLELISM=false
# Prints the median ms of each, the ratio tokenizers/Tessera (> 1: Tessera faster) and
# whether both produced the same number of ids.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
py="$root/tools/refgen/.venv/bin/python"
reps=${1:-7}
[ -x "$py" ] || { echo "bench_tokenizer.sh: needs $py (tools/refgen/refgen.sh creates it)" >&2; exit 2; }
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_tokenizer >/dev/null
mkdir -p "$here/out"
text="$here/out/tokenizer_1mb.txt"
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
"$py" - "$root" "$text" <<'PY'
import sys
sys.path.insert(0, sys.argv[1] + "/tools/refgen")
import gen_tokenizers as g
parts, size = [], 0
for p in g.corpus(4242, 1 << 20):
    parts.append(p)
    size += len(p.encode("utf-8")) + 1
    if size >= 1 << 20:
        break
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(parts))
PY
printf "%-22s %10s %12s %14s %8s %s\n" tokenizer ids tessera_ms tokenizers_ms ratio same_ids
for fam in qwen2 llama3 tekken llama_spm llama_spm_metaspace; do
  dir="$root/tests/fixtures/tokenizer/$fam"
  c=$("$build/bench_tokenizer" "$dir" "$text" "$reps")
  "$py" - "$dir/tokenizer.json" "$text" "$reps" "$fam" "$c" <<'PY'
import statistics, sys, time
from tokenizers import Tokenizer
path, text_path, reps, fam, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
text = open(text_path, encoding="utf-8").read()
tok = Tokenizer.from_file(path)
ms = []
for _ in range(reps):
    t0 = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    ms.append((time.perf_counter() - t0) * 1e3)
hf = statistics.median(ms)
kv = dict(x.split("=") for x in c.split())
ts = float(kv["median_ms"])
same = "yes" if int(kv["tokens"]) == len(ids) else "NO"
print("%-22s %10d %12.1f %14.1f %7.2fx %s" % (fam, len(ids), ts, hf, hf / ts, same))
PY
done
