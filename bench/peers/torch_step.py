"""Peer figure for `onepath bench step`: the matmuls of one Gemma 4 E2B decode step in PyTorch
(tinygemm int4, group 64, bf16 scales and zero points; or, with `bf16` / `f16`, unquantized
weights through `torch.nn.functional.linear`, cuBLAS), chained as onepath's bench chains them.

The chain mirrors `e2b_step` in crates/onepath-cli/src/bench_step.rs: the per-layer-input
projection of the token's embedding; per layer q, k, v (layers 0..14 only; full layers 4, 9,
14, ... have 512-wide heads) reading the layer's input, o reading q, gate and up reading o,
down reading gate (6144 wide, 12288 from layer 15 on), the per-layer-input gate reading down
and its projection giving the next layer's input; then the LM head. Norms, RoPE, attention,
GELU and residual adds are left out on both sides. Each linear has its own weights (1.28 GB in
all at 4 bits, 4.56 GB in bf16), so L2 holds none of them from one step to the next.
Time: one step replayed from a CUDA graph (`graph_us`) and launched op by op (`loop_us`), each
the median of 5 timed steps after a 0.3 s warm-up. GB/s = bytes of packed weights + scales and
zeros / time. Prints one JSON object (progress lines on stderr).
Run: python3 bench/peers/torch_step.py [M,M,...] [q4|bf16|f16]   (rows of x, default 1,2,4,8;
weights, default q4)
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

from timing import capture_graph, event_spans_us  # bench/peers/timing.py, beside this script
from torch_int4 import GROUP, pack  # bench/peers/torch_int4.py, beside this script

HIDDEN, LAYERS, FIRST_SHARED, VOCAB, PLE = 1536, 35, 15, 262144, 256


def e2b_step(layers=LAYERS):
    """(name, n, k, input op index or None for the step's x), in forward order."""
    ops = []

    def push(name, n, k, inp):
        ops.append((name, n, k, inp))
        return len(ops) - 1

    push("per_layer_model_projection", LAYERS * PLE, HIDDEN, None)
    h = None
    for l in range(layers):
        head = 512 if l % 5 == 4 else 256
        q = push(f"{l}.q_proj", 8 * head, HIDDEN, h)
        if l < FIRST_SHARED:
            push(f"{l}.k_proj", head, HIDDEN, h)
            push(f"{l}.v_proj", head, HIDDEN, h)
        o = push(f"{l}.o_proj", HIDDEN, 8 * head, q)
        inter = 6144 if l < FIRST_SHARED else 12288
        gate = push(f"{l}.gate_proj", inter, HIDDEN, o)
        push(f"{l}.up_proj", inter, HIDDEN, o)
        down = push(f"{l}.down_proj", HIDDEN, inter, gate)
        pg = push(f"{l}.per_layer_input_gate", PLE, HIDDEN, down)
        h = push(f"{l}.per_layer_projection", HIDDEN, PLE, pg)
    push("lm_head", VOCAB, HIDDEN, h)
    return ops


def median_us(run, reps=5):
    times = sorted(event_spans_us(run, reps))
    return times[len(times) // 2]


def case(ops, weights, wbytes, m, dtype):
    mm = torch.ops.aten._weight_int4pack_mm
    x0 = torch.randn(m, HIDDEN, device="cuda", dtype=dtype)

    def linear(x, w):
        if isinstance(w, tuple):
            return mm(x, w[0], GROUP, w[1])
        return F.linear(x, w)

    def step():
        outs = []
        for (_, _, _, inp), w in zip(ops, weights):
            outs.append(linear(x0 if inp is None else outs[inp], w))
        return outs[-1]

    t0 = time.time()
    while time.time() - t0 < 0.3:
        step()
        torch.cuda.synchronize()
    loop = median_us(step)
    graph = median_us(capture_graph(step).replay)
    return {"m": m, "linears": len(ops), "weight_bytes": wbytes, "graph_us": graph,
            "graph_gb_s": wbytes / (graph * 1e3), "loop_us": loop,
            "loop_gb_s": wbytes / (loop * 1e3)}


def main():
    if not torch.cuda.is_available():
        print(json.dumps({"peer": "torch int4 step", "error": "CUDA is not available"}))
        return 1
    ms = [int(v) for v in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1, 2, 4, 8]
    fmt = sys.argv[2] if len(sys.argv) > 2 else "q4"
    dtype = {"q4": torch.bfloat16, "bf16": torch.bfloat16, "f16": torch.float16}[fmt]
    ops = e2b_step()
    weights, wbytes = [], 0
    for _, n, k, _ in ops:
        if fmt == "q4":
            sz = (torch.rand(k // GROUP, n, 2, device="cuda") * 0.02 - 0.01).to(torch.bfloat16)
            weights.append((pack(n, k), sz.contiguous()))
            wbytes += n * k // 2 + n * (k // GROUP) * 2 * 2
        else:
            weights.append((torch.rand(n, k, device="cuda") * 0.1 - 0.05).to(dtype))
            wbytes += n * k * 2
    rows = []
    for m in ms:
        try:
            rows.append(case(ops, weights, wbytes, m, dtype))
        except Exception as e:  # report, never hide
            rows.append({"m": m, "error": f"{type(e).__name__}: {e}"})
        print(json.dumps(rows[-1]), file=sys.stderr)
    peer = "torch int4 step (tinygemm)" if fmt == "q4" else f"torch {fmt} step (cuBLAS)"
    print(json.dumps({"peer": peer, "weights": fmt, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
