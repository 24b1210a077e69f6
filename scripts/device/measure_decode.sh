#!/usr/bin/env bash
# The decoder's figures behind BENCHMARKS.md, run on the lent GPU machine (see the tool
# library's device README): `onepath bench decode` twice around transformers on the same
# Gemma 4 E2B shape (bench/peers/torch_decode.py), so every figure shares the machine. Needs
# `.devbin/onepath` (a release build made here) and `.gl` carried. JSON lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/device/prelude.sh
op=.devbin/onepath
r=$OUT
$op info > "$r/info.txt" 2>&1
$op --json bench decode > "$r/onepath_decode.json" 2> "$r/onepath_decode.err"
cat "$r/onepath_decode.json"
(cd bench/peers && PYTHONUNBUFFERED=1 timeout 420 python3 torch_decode.py) > "$r/torch_decode.json" 2> "$r/torch_decode.err"
tail -5 "$r/torch_decode.err"; cat "$r/torch_decode.json"
$op --json bench decode > "$r/onepath_decode2.json" 2> "$r/onepath_decode2.err"
cat "$r/onepath_decode2.json"
$op bench decode --batch 1 --steps 16 2>&1 | tail -4
