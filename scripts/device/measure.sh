#!/usr/bin/env bash
# The full measurement behind BENCHMARKS.md, run on the lent GPU machine (see the tool library's
# device README): onepath's benches twice around PyTorch's, the read ceiling, parity, all in one
# call so that every figure shares the machine. Needs `.devbin/onepath` (a release build made
# here) and `.gl` (the loader .debs) carried. Leaves the JSON in $OUT/results.tgz and prints the
# comparison tables.
set -uo pipefail
cd "$(dirname "$0")/../.."
. scripts/device/prelude.sh
op=.devbin/onepath
r=$OUT/results
mkdir -p "$r"
$op info > "$r/info.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda)" > "$r/torch_version.txt" 2>&1
$op bench sdpa --json > "$r/onepath_sdpa.json" 2> "$r/onepath_sdpa.err"
(cd bench/peers && python3 torch_sdpa.py) > "$r/torch_sdpa.json" 2> "$r/torch_sdpa.err"
$op bench sdpa --json > "$r/onepath_sdpa2.json" 2> "$r/onepath_sdpa2.err"
$op bench qmatmul --json > "$r/onepath_qmm.json" 2> "$r/onepath_qmm.err"
(cd bench/peers && python3 torch_int4.py) > "$r/torch_int4.json" 2> "$r/torch_int4.err"
$op bench qmatmul --json > "$r/onepath_qmm2.json" 2> "$r/onepath_qmm2.err"
# Several sequences and short prefills (rows of x), both stacks; onepath with the kernel it picks
# and with each kernel forced.
ms=2,4,8,16,32,64,128,256
$op bench qmatmul --m $ms --json > "$r/onepath_qmm_m.json" 2> "$r/onepath_qmm_m.err"
(cd bench/peers && python3 torch_int4.py $ms) > "$r/torch_int4_m.json" 2> "$r/torch_int4_m.err"
for kern in gemv tiled; do
    $op bench qmatmul --m 16,32,64,128,256,512 --kernel $kern --json \
        > "$r/onepath_qmm_$kern.json" 2> "$r/onepath_qmm_$kern.err"
done
# A whole decode step's matmuls (Gemma 4 E2B, chained with the model's dependencies), both stacks.
$op bench step --json > "$r/onepath_step.json" 2> "$r/onepath_step.err"
(cd bench/peers && python3 torch_step.py) > "$r/torch_step.json" 2> "$r/torch_step.err"
$op bench step --weights bf16 --json > "$r/onepath_step_bf16.json" 2> "$r/onepath_step_bf16.err"
(cd bench/peers && python3 torch_step.py 1,2,4,8 bf16) > "$r/torch_step_bf16.json" 2> "$r/torch_step_bf16.err"
$op bench bandwidth --json > "$r/bandwidth.json" 2> "$r/bandwidth.err"
$op bench dispatch --json > "$r/dispatch.json" 2> "$r/dispatch.err"
(cd bench/peers && python3 torch_dispatch.py) > "$r/torch_dispatch.json" 2> "$r/torch_dispatch.err"
$op parity --json > "$r/parity.json" 2> "$r/parity.err"
echo "parity exit status: $?"
python3 scripts/device/summary.py "$r"
python3 - "$r" <<'PY'
import json, sys
b = json.load(open(sys.argv[1] + "/bandwidth.json"))
print("bandwidth:", {k: v for k, v in b.items() if k != "adapter"})
PY
tar -C "$OUT" -czf "$OUT/results.tgz" results && rm -r "$r"
