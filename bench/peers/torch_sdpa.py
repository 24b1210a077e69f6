"""Peer figure for `onepath bench sdpa`: PyTorch's SDPA on the same decode grid.

Decode attention, q [B, 8, 1, D], k/v [B, 1, L, D] f16, enable_gqa=True, scale 1.0.
Inputs rotate among copies (>= 256 MiB per rotation) so the L2 cache does not flatter small
cases, as onepath's bench does. Time: CUDA events around each of `iters` back-to-back calls after a 0.3 s warm-up; median
(`time_us`); and `span_us`: `iters` calls replayed from a CUDA graph, events at the two ends,
over `iters` (what onepath's headline figure measures). Prints one JSON object.
Run: python3 bench/peers/torch_sdpa.py
"""
import json
import sys

import torch
import torch.nn.functional as F

from timing import span_us  # bench/peers/timing.py, beside this script


def case(b, d, l, iters=20):
    kv_bytes = b * l * d * 2
    copies = max(1, min(8, (256 << 20) // (2 * kv_bytes)))
    q = torch.randn(b, 8, 1, d, device="cuda", dtype=torch.float16)
    sets = [
        (torch.randn(b, 1, l, d, device="cuda", dtype=torch.float16),
         torch.randn(b, 1, l, d, device="cuda", dtype=torch.float16))
        for _ in range(copies)
    ]
    # Warm up for 0.3 s of sustained work (clocks ramp), then time back-to-back calls, each
    # between its own pair of events, as onepath's bench does.
    import time
    t0 = time.time()
    while time.time() - t0 < 0.3:
        for k, v in sets:
            F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True)
        torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(iters)]
    for it in range(iters):
        k, v = sets[it % copies]
        ev[it][0].record()
        F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True)
        ev[it][1].record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) * 1e3 for s, e in ev]
    times.sort()
    us = times[len(times) // 2]

    def calls():
        for it in range(iters):
            k, v = sets[it % copies]
            F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True)

    span, how = span_us(calls, iters)
    return {"batch": b, "head_dim": d, "keys": l, "time_us": us,
            "effective_gb_s": 2 * kv_bytes / (us * 1e3), "span_us": span, "span_how": how,
            "span_gb_s": 2 * kv_bytes / (span * 1e3)}


def main():
    rows = []
    for d in (256, 512):
        for l in (4096, 32768):
            for b in (1, 8, 32):
                try:
                    rows.append(case(b, d, l))
                except Exception as e:  # report, never hide
                    rows.append({"batch": b, "head_dim": d, "keys": l, "error": str(e)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"peer": "torch.nn.functional.scaled_dot_product_attention",
                      "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                      "results": rows}))


if __name__ == "__main__":
    main()
