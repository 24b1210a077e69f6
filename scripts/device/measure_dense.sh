#!/usr/bin/env bash
# The dense (unquantized bf16) matmul measurement behind BENCHMARKS.md, run on the lent GPU
# machine like measure.sh (same carried files): onepath's dense kernels with the kernel each
# call picks, then each kernel forced where the two compete, and cuBLAS beside them in the same
# call. Leaves the JSON in $OUT/dense.tgz and prints a comparison table.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/device/prelude.sh
op=.devbin/onepath
r=$OUT/dense
mkdir -p "$r"
ms=1,2,8,9,16,24,32,64,128,256,512
$op bench qmatmul --weights bf16 --m $ms --json > "$r/onepath_dense.json" 2> "$r/onepath_dense.err"
(cd bench/peers && python3 torch_dense.py bf16 $ms) > "$r/torch_dense.json" 2> "$r/torch_dense.err"
for kern in gemv tiled; do
    $op bench qmatmul --weights bf16 --m 16,24,32,64 --kernel $kern --json \
        > "$r/onepath_dense_$kern.json" 2> "$r/onepath_dense_$kern.err"
done
python3 - "$r" <<'PY'
import json, sys
r = sys.argv[1]
mine = json.load(open(r + "/onepath_dense.json"))["results"]
peer = {(c["n"], c["k"], c["m"]): c for c in json.load(open(r + "/torch_dense.json"))["results"]}
print(f"{'N x K':>12} {'M':>4} {'kernel':>9} {'call':>9} {'1-pass':>9} {'TFLOP/s':>8} {'graph':>9} {'loop':>9} {'graph/1-pass':>12} =M1")
for c in mine:
    if "skipped" in c:
        print(c)
        continue
    p = peer.get((c["n"], c["k"], c["m"]), {})
    g = p.get("span_us")
    ratio = f"{g / c['one_pass_us']:.2f}" if g else "-"
    print(f"{c['n']}x{c['k']:>5} {c['m']:>4} {c['kernel']:>9} {c['gpu_us']:9.1f} {c['one_pass_us']:9.1f} "
          f"{c['tflop_s']:8.2f} {g or float('nan'):9.1f} {p.get('loop_us') or float('nan'):9.1f} {ratio:>12} {c['rows_equal_m1']}")
PY
tar -C "$OUT" -czf "$OUT/dense.tgz" dense && rm -r "$r"
