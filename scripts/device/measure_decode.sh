#!/usr/bin/env bash
# The decoder's figures behind BENCHMARKS.md, run on the lent GPU machine (see the tool
# library's device README): `onepath bench decode` twice around transformers on the same
# Gemma 4 E2B shape (bench/peers/torch_decode.py), so every figure shares the machine, then a
# profile of where a step's time goes. Needs `.devbin/onepath.gz` (a release build made here,
# gzipped to fit the transfer) and `.gl` carried. JSON lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/device/prelude.sh
gunzip -c .devbin/onepath.gz > .devbin/onepath && chmod +x .devbin/onepath
op=.devbin/onepath
r=$OUT
$op info > "$r/info.txt" 2>&1
$op --json bench decode > "$r/onepath_decode.json" 2> "$r/onepath_decode.err"
cat "$r/onepath_decode.json"
(cd bench/peers && PYTHONUNBUFFERED=1 timeout 420 python3 torch_decode.py) > "$r/torch_decode.json" 2> "$r/torch_decode.err"
tail -3 "$r/torch_decode.err"; cat "$r/torch_decode.json"
$op --json bench decode --profile > "$r/onepath_decode2.json" 2> "$r/onepath_decode2.err"
python3 - "$r" <<'PY'
import json, sys
r = sys.argv[1]
for f in ["onepath_decode.json", "onepath_decode2.json"]:
    d = json.load(open(f"{r}/{f}"))
    print(f, "prefill", round(d["prefill"]["tokens_per_s"]),
          [(c["batch"], round(c["tokens_per_s"]), round(c["step_ms_p50"], 2)) for c in d["decode"]],
          d["batched_rows_equal_alone"], round(d["gpu_mib"]))
for p in json.load(open(f"{r}/onepath_decode2.json")).get("profile", []):
    print("batch", p["batch"], {k: round(v, 3) for k, v in p["phases_ms"].items()})
    ops = sorted(p["ops_own_pass_ms"].items(), key=lambda kv: -kv[1]["gpu_ms"])
    print("  ", {k: (round(v["dispatches"]), round(v["gpu_ms"], 3)) for k, v in ops})
PY
