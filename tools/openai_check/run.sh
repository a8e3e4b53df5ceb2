#!/bin/sh
# Drives tessera serve with the official OpenAI Python client (outside make test):
#   tools/openai_check/run.sh [MODEL_DIR]        # default assets/qwen2-vl-tiny
# Builds the CLI in build/ (BUILD=dir to change), creates build/openai_check_venv with the
# pinned client, starts the server on a free loopback port with an API key, runs check.py and
# stops the server with SIGTERM (its exit code must be 0).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
model=${1:-$root/assets/qwen2-vl-tiny}
venv=$build/openai_check_venv
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target tessera_cli >/dev/null
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
log=$(mktemp)
key=check-$$
TESSERA_API_KEY=$key "$build/tessera" serve --model "$model" --port 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && grep -q " ready " "$log" && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
grep -q " ready " "$log" || { cat "$log"; echo "run.sh: the server did not start" >&2; exit 1; }
rc=0
"$venv/bin/python" "$here/check.py" --base-url "http://127.0.0.1:$port/v1" --api-key "$key" \
  --image "$root/assets/sample.png" --audio "$root/assets/sample.wav" || rc=1
kill -TERM $pid
if wait $pid; then echo "server exited 0"; else echo "server exit code $?" >&2; rc=1; fi
trap 'rm -f "$log"' EXIT
exit $rc
