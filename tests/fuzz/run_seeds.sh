#!/bin/sh
# Runs a libFuzzer target once over every seed file it takes (no mutation, nothing written).
#   run_seeds.sh FUZZER_BINARY FIXTURES_DIR      run the seeds
#   run_seeds.sh --list FUZZER_NAME FIXTURES_DIR print the seed files
# The seeds of fuzz_X are the fixture globs listed in tests/fuzz/fuzz_X.seeds.
list_only=0
[ "$1" = "--list" ] && { list_only=1; shift; }
fuzzer=$1; fixtures=$2
name=$(basename "$fuzzer")
list=$(dirname "$0")/$name.seeds
[ -f "$list" ] || { echo "no seed list $list" >&2; exit 1; }
files=""
while IFS= read -r pattern; do
  case "$pattern" in ''|'#'*) continue ;; esac
  for f in $fixtures/$pattern; do [ -f "$f" ] && files="$files $f"; done
done < "$list"
[ -n "$files" ] || { echo "no seed files for $name" >&2; exit 1; }
if [ $list_only = 1 ]; then echo $files; exit 0; fi
echo "$name: $(echo $files | wc -w) seeds"
exec "$fuzzer" -rss_limit_mb=4096 $files
