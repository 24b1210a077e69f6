"""Timing shared by the peer scripts: `span_us`, the CUDA-graph replay that matches onepath's
one-pass figure."""
import sys

import torch


def span_us(calls, iters):
    """Per-call time from events at the two ends of `iters` back-to-back calls replayed from a
    CUDA graph (no launch gaps: the same thing onepath's headline figure measures). Falls back
    to plain launches if the call cannot be captured."""
    try:
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            calls()  # warm the stream before capture
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            calls()
        run, how = g.replay, "cuda_graph"
    except Exception as e:  # report, never hide
        print(f"graph capture failed ({e}); timing plain launches", file=sys.stderr)
        run, how = calls, "launches"
    run()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    run()  # keep the GPU busy up to the first timed call
    start.record()
    run()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / iters, how
