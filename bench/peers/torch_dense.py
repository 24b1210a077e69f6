"""Peer figure for `onepath bench qmatmul --weights bf16|f16`: PyTorch's dense matmul (cuBLAS).

y = x W^T with W [N, K] and x [M, K] both bf16 (or f16), `torch.nn.functional.linear` per call.
Shapes (N x K) and M as for torch_int4.py. Weights rotate among copies (>= 256 MiB per
rotation) so the L2 cache does not flatter small cases, as onepath's bench does. Time: CUDA
events around each of `iters` back-to-back calls after a 0.3 s warm-up, median (`time_us`);
`span_us`: the calls replayed from a CUDA graph, events at the two ends, over `iters`; `loop_us`:
plain launches back to back, events at the two ends. GB/s = bytes of W / time.
Prints one JSON object (progress lines on stderr).
Run: python3 bench/peers/torch_dense.py [bf16|f16] [M,M,...] [NxK,NxK,...]
"""
import json
import sys

import torch
import torch.nn.functional as F

from timing import result, time_calls  # bench/peers/timing.py, beside this script

SHAPES = [(6144, 1536), (1536, 6144), (262144, 1536)]
MS = [1, 512]


def case(n, k, m, dtype, iters=20):
    wbytes = n * k * 2
    copies = max(1, min(64, -(-(256 << 20) // wbytes)))
    sets = [(torch.rand(n, k, device="cuda") * 0.1 - 0.05).to(dtype) for _ in range(copies)]
    x = torch.randn(m, k, device="cuda", dtype=dtype)
    figures = time_calls(lambda i: F.linear(x, sets[i]), copies, iters)
    return result(n, k, m, wbytes, copies, figures)


def main():
    if not torch.cuda.is_available():
        print(json.dumps({"peer": "torch dense linear", "error": "CUDA is not available"}))
        return 1
    name = sys.argv[1] if len(sys.argv) > 1 else "bf16"
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[name]
    ms = [int(v) for v in sys.argv[2].split(",")] if len(sys.argv) > 2 else MS
    shapes = SHAPES
    if len(sys.argv) > 3:
        shapes = [tuple(int(d) for d in s.lower().split("x")) for s in sys.argv[3].split(",")]
    rows = []
    for n, k in shapes:
        for m in ms:
            try:
                rows.append(case(n, k, m, dtype))
            except Exception as e:  # report, never hide
                rows.append({"n": n, "k": k, "m": m, "error": f"{type(e).__name__}: {e}"})
            print(json.dumps(rows[-1]), file=sys.stderr)
            torch.cuda.empty_cache()
    print(json.dumps({"peer": "torch.nn.functional.linear (cuBLAS)", "dtype": name,
                      "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                      "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
