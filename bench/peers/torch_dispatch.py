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

from timing import capture_graph, event_spans_us  # bench/peers/timing.py, beside this script

CALLS = 200
REPEATS = 7


def per_call_us(run):
    return min(event_spans_us(run, REPEATS)) / CALLS


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
        graph = per_call_us(capture_graph(calls).replay)
        rows.append({"workgroups_of_64": groups, "launches_us": launches, "cuda_graph_us": graph})
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"peer": "torch in-place add, dependent kernels", "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "calls": CALLS,
                      "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
