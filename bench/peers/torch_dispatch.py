"""Peer figure for `onepath bench dispatch`: what a dependent kernel costs PyTorch on CUDA.

`calls` in-place adds on one small tensor (each kernel depends on the one before, as in
onepath's "dependent" column), for tensors of 64, 132 * 64 and 1056 * 64 int32 elements (the
same invocation counts as onepath's 1, 132 and 1056 workgroups of 64). Timed two ways, fastest
of 7: plain launches back to back (events at the two ends), and replayed from a CUDA graph.
Prints one JSON object.
Run: python3 bench/peers/torch_dispatch.py
"""
import json
import sys

import torch

CALLS = 200
REPEATS = 7


def per_call_us(run):
    best = float("inf")
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        run()  # keep the GPU busy up to the timed calls
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / CALLS)
    return best


def main():
    if not torch.cuda.is_available():
        print(json.dumps({"peer": "torch dispatch", "error": "CUDA is not available"}))
        return 1
    rows = []
    for groups in (1, 132, 1056):
        x = torch.zeros(groups * 64, dtype=torch.int32, device="cuda")

        def calls():
            for _ in range(CALLS):
                x.add_(1)

        launches = per_call_us(calls)
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            calls()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            calls()
        graph = per_call_us(g.replay)
        rows.append({"workgroups_of_64": groups, "launches_us": launches, "cuda_graph_us": graph})
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"peer": "torch in-place add, dependent kernels", "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "calls": CALLS,
                      "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
