#!/usr/bin/env bash
# The serving figures behind BENCHMARKS.md, run on the lent GPU machine (see the tool library's
# device README): `onepath bench decode` (batch 1, 8, 32, 64: the engine-free reference),
# `onepath bench serve` (the engine under Poisson arrivals), and transformers' own continuous
# batching on the same shape (bench/peers/torch_serve.py), all in one call. Needs
# `.devbin/onepath.gz` (a release build made here, gzipped) and `.gl` carried. JSON in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/device/prelude.sh
gunzip -c .devbin/onepath.gz > .devbin/onepath && chmod +x .devbin/onepath
op=.devbin/onepath
r=$OUT
# LEVELS (default 1,8,32,64) and PEER_BUDGET (seconds per peer level, default 20) shorten a run.
levels="${LEVELS:-1,8,32,64}"
budget="${PEER_BUDGET:-20}"
$op info > "$r/info.txt" 2>&1
$op --json bench decode --batch "$levels" --steps 24 > "$r/onepath_decode.json" 2> "$r/onepath_decode.err"
$op --json bench serve --concurrency "$levels" > "$r/onepath_serve.json" 2> "$r/onepath_serve.err"
(cd bench/peers && PYTHONUNBUFFERED=1 timeout 200 python3 torch_serve.py "$levels" --level-budget "$budget") > "$r/torch_serve.json" 2> "$r/torch_serve.err"
tail -5 "$r/torch_serve.err"
python3 - "$r" <<'PY'
import json, sys
r = sys.argv[1]
d = json.load(open(f"{r}/onepath_decode.json"))
print("decode", [(c["batch"], round(c["tokens_per_s"])) for c in d["decode"]], d["batched_rows_equal_alone"])
for name in ["onepath_serve.json", "torch_serve.json"]:
    try:
        s = json.load(open(f"{r}/{name}"))
    except Exception as e:
        print(name, "unreadable:", e); continue
    for l in s.get("levels", []):
        print(name, l["concurrency"], {k: (round(v) if isinstance(v, float) else v) for k, v in l.items()
              if k.endswith("per_s")}, "ttft", l.get("ttft_ms"), "itl", l.get("itl_ms"))
PY
