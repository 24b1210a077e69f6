"""Peer figure for `onepath bench qmatmul`: PyTorch's int4 weight-only matmul (tinygemm).

y = x W^T with W [N, K] 4-bit, group 64, bf16 scales and zero points, x bf16 [M, K]:
`torch.ops.aten._convert_weight_to_int4pack(w_u8 [N, K/2], innerKTiles)` once, then
`torch.ops.aten._weight_int4pack_mm(x, w_packed, 64, scales_and_zeros [K/64, N, 2])` per call
(signatures of torch 2.5 .. 2.11; torch <= 2.4 took an int32 [N, K] weight, tried as a fallback).
Shapes (N x K): 6144x1536, 1536x6144, 262144x1536 (Gemma 4 E2B's MLP and LM head); M = 1
(decode, the peer figure) and M = 512 (prefill, for completeness).
Weights rotate among copies (>= 256 MiB per rotation) so the L2 cache does not flatter small
cases, as onepath's bench does. Time: CUDA events around each of `iters` back-to-back calls
after a 0.3 s warm-up; median (`time_us`); `span_us`: `iters` calls replayed from a CUDA
graph, events at the two ends, over `iters` (what onepath's one-pass figure is compared with);
and `loop_us`: `iters` plain launches back to back, events at the two ends only. GB/s = bytes of packed weights + scales/zeros / time.
Prints one JSON object (progress lines on stderr).
Run: python3 bench/peers/torch_int4.py [M,M,...] [NxK,NxK,...]   (rows of x, default 1,512;
shapes, default the three above)
"""
import json
import sys

import torch

from timing import result, time_calls  # bench/peers/timing.py, beside this script

GROUP = 64
SHAPES = [(6144, 1536), (1536, 6144), (262144, 1536)]
MS = [1, 512]


def pack(n, k, inner_k_tiles=8):
    """Random 4-bit codes packed the way this torch's tinygemm wants them."""
    codes = torch.randint(0, 16, (n, k), dtype=torch.int32, device="cuda")
    u8 = (codes[:, 1::2] << 4 | codes[:, ::2]).to(torch.uint8)
    try:
        return torch.ops.aten._convert_weight_to_int4pack(u8.contiguous(), inner_k_tiles)
    except Exception as e_u8:  # torch <= 2.4: int32 [N, K]
        try:
            return torch.ops.aten._convert_weight_to_int4pack(codes.contiguous(), inner_k_tiles)
        except Exception as e_i32:
            raise RuntimeError(f"_convert_weight_to_int4pack failed: uint8 form: {e_u8}; "
                               f"int32 form: {e_i32}") from e_i32


def case(n, k, m, iters=20):
    groups = k // GROUP
    wbytes = n * k // 2 + n * groups * 2 * 2  # packed codes + bf16 scales and zeros
    copies = max(1, min(64, -(-(256 << 20) // wbytes)))
    sets = []
    for _ in range(copies):
        w = pack(n, k)
        sz = (torch.rand(groups, n, 2, device="cuda") * 0.02 - 0.01).to(torch.bfloat16)
        sets.append((w, sz.contiguous()))
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    mm = torch.ops.aten._weight_int4pack_mm
    figures = time_calls(lambda i: mm(x, sets[i][0], GROUP, sets[i][1]), copies, iters)
    return result(n, k, m, wbytes, copies, figures)


def main():
    if not torch.cuda.is_available():
        print(json.dumps({"peer": "torch int4 (tinygemm)", "error": "CUDA is not available"}))
        return 1
    missing = [op for op in ("_convert_weight_to_int4pack", "_weight_int4pack_mm")
               if not hasattr(torch.ops.aten, op)]
    if missing:
        print(json.dumps({"peer": "torch int4 (tinygemm)", "torch": torch.__version__,
                          "error": f"this torch has no torch.ops.aten.{', '.join(missing)}"}))
        return 1
    ms = [int(v) for v in sys.argv[1].split(",")] if len(sys.argv) > 1 else MS
    shapes = SHAPES
    if len(sys.argv) > 2:
        shapes = [tuple(int(d) for d in s.lower().split("x")) for s in sys.argv[2].split(",")]
    rows = []
    for n, k in shapes:
        for m in ms:
            try:
                rows.append(case(n, k, m))
            except Exception as e:  # report, never hide
                rows.append({"n": n, "k": k, "m": m, "error": f"{type(e).__name__}: {e}"})
            print(json.dumps(rows[-1]), file=sys.stderr)
            torch.cuda.empty_cache()
    print(json.dumps({"peer": "torch.ops.aten._weight_int4pack_mm (tinygemm)",
                      "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                      "group_size": GROUP, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
