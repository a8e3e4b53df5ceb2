#!/bin/sh
# Load test of tessera serve: many concurrent clients on loopback for a fixed time per round,
# half of them streaming and some of those hanging up mid-stream, against a tiny model.
#
#   tools/bench/load_server.sh                      # 5 rounds x 20 s, 32 clients
#   ROUNDS=3 SECONDS_PER_ROUND=10 CLIENTS=64 PARALLEL=2 QUEUE=16 DISCONNECT=30 \
#     MODEL=assets/qwen2-vl-tiny IMAGE=assets/sample.png tools/bench/load_server.sh
#
# IMAGE (for a model that takes images): every third request carries it as a data: URI.
# Builds tessera and load_client in build/ (Release; BUILD=dir to change). Per round prints the
# requests by status, p50 / p99 / max latency of completed requests, and the server's RSS
# sampled after the round. Fails (exit 1) on any 5xx other than the deliberate 503 (queue full),
# when the server dies, when a slot or queue place is still taken after the clients stopped, or
# when RSS grows by more than GROWTH_KB (default 20480) from the end of round 1 to the end of
# the last round (round 1 warms the allocator, so it is the baseline).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
rounds=${ROUNDS:-5}
secs=${SECONDS_PER_ROUND:-20}
clients=${CLIENTS:-32}
parallel=${PARALLEL:-2}
queue=${QUEUE:-16}
disc=${DISCONNECT:-20}
max_tokens=${MAX_TOKENS:-32}
growth=${GROWTH_KB:-20480}
model=${MODEL:-$root/tests/fixtures/server/qwen2-chat}
image=${IMAGE:-}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target tessera_cli load_client >/dev/null
log=$(mktemp)
"$build/tessera" serve --model "$model" --port 0 --parallel "$parallel" --queue "$queue" \
  --ctx 512 --threads 1 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$log"; echo "load_server.sh: the server did not start" >&2; exit 1; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "model $model${image:+ (every third request with $image)}, $clients clients, $parallel slots, queue $queue, $disc% of streams hang up, $secs s x $rounds rounds"
echo "server RSS at start: $(rss) kB"
fail=0
base=""
r=1
while [ "$r" -le "$rounds" ]; do
  out=$("$build/load_client" "$port" "$clients" "$secs" "$disc" "$max_tokens" $image) || fail=1
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "load_server.sh: the server died" >&2; exit 1; }
  sleep 0.5
  now=$(rss)
  [ -n "$base" ] || base=$now
  echo "round $r: $out rss_kb=$now"
  r=$((r + 1))
done
busy=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^tessera_slots_busy / {print $2}')
queued=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^tessera_queue_length / {print $2}')
echo "after the rounds: slots busy $busy, queued $queued"
[ "$busy" = 0 ] && [ "$queued" = 0 ] || { echo "FAIL: work left behind" >&2; fail=1; }
grow=$((now - base))
echo "RSS growth from round 1 to round $rounds: $grow kB (limit $growth kB)"
[ "$grow" -le "$growth" ] || { echo "FAIL: RSS grew" >&2; fail=1; }
kill -TERM $pid
wait $pid && echo "server exited 0 on SIGTERM" || { echo "FAIL: server exit code $?" >&2; fail=1; }
trap 'rm -f "$log"' EXIT
[ $fail = 0 ] && echo "PASS" || echo "FAIL"
exit $fail
