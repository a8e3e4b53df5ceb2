#!/bin/sh
# Regenerates every reference fixture under tests/fixtures/ from the pinned reference stack.
#
#   tools/refgen/refgen.sh            # all generators
#   tools/refgen/refgen.sh images     # only gen_images.py (any gen_<name>.py)
#
# Creates tools/refgen/.venv on first use (needs python3-venv and network access to the
# Python package index), installs requirements.txt, then runs each tools/refgen/gen_*.py with
# the fixtures folder as its argument, then compress_fixtures.py (the large expected outputs
# are stored gzipped). Debian tools used by some generators: espeak-ng, sox.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q -r "$here/requirements.txt"
cd "$root"
if [ $# -gt 0 ]; then
  gens=""
  for n in "$@"; do gens="$gens $here/gen_$n.py"; done
else
  gens=$(ls "$here"/gen_*.py)
fi
for g in $gens; do
  echo "refgen: $(basename "$g")"
  "$venv/bin/python" "$g" "$root/tests/fixtures"
done
"$venv/bin/python" "$here/compress_fixtures.py" "$root/tests/fixtures"
du -sh "$root/tests/fixtures"
