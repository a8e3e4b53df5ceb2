"""Stores the large reference outputs under tests/fixtures/ gzipped: each file matching one of
PATTERNS becomes FILE.gz (level 9, mtime 0, no file name in the header, so the same input
always gives the same bytes) and FILE is removed. The tests read FILE.gz when FILE is absent
(tests/harness.c: tsr_test_read, tsr_test_open_safetensors).

Only expected outputs and test-case lists that the tests read themselves are listed. Files the
library loads from a model directory (tokenizer.json, *config.json, weights), media the tests
decode (PNG, JPEG, WAV, FLAC, ...), the safetensors parser's own fixtures and the decoder
fixtures stay uncompressed.

    python3 tools/refgen/compress_fixtures.py [FIXTURES_DIR]   # default tests/fixtures

Run by refgen.sh after the generators; running it again changes nothing.
"""
import glob
import gzip
import io
import os
import sys

PATTERNS = [
    "audio/expected/*.safetensors",
    "ops/*.safetensors",
    "proc/*/*.safetensors",
    "proc/*/cases/*.safetensors",
    "pipeline/*/cases/*.safetensors",
    "tokenizer/*/cases.json",
    "real_vocab/*/cases.json",
]


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename="" leaves FNAME out of the header; mtime=0 fixes MTIME.
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def compress(path):
    with open(path, "rb") as f:
        data = f.read()
    packed = gzip_bytes(data)
    if gzip.decompress(packed) != data:
        raise SystemExit(f"compress_fixtures: round trip failed for {path}")
    tmp = path + ".gz.tmp"
    with open(tmp, "wb") as f:
        f.write(packed)
    os.replace(tmp, path + ".gz")
    os.remove(path)
    return len(data), len(packed)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
    if not os.path.isdir(root):
        raise SystemExit(f"compress_fixtures: no folder {root}")
    n = before = after = 0
    for pattern in PATTERNS:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            if not os.path.isfile(path):
                continue
            a, b = compress(path)
            n, before, after = n + 1, before + a, after + b
    if n:
        print(f"compress_fixtures: {n} files, {before} -> {after} bytes")
    else:
        print("compress_fixtures: nothing to compress")


if __name__ == "__main__":
    main()
