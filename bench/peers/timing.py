"""Timing shared by the peer scripts: `span_us`, the CUDA-graph replay that matches onepath's
one-pass figure, and `time_calls`, the three figures the matmul peers report."""
import sys
import time

import torch


def capture_graph(calls):
    """`calls` captured into a CUDA graph (after one warm run on a side stream, as PyTorch
    requires); returns the graph. Raises if the calls cannot be captured."""
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        calls()  # warm the stream before capture
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        calls()
    return g


def event_spans_us(run, reps):
    """`reps` timings of `run()` (µs), each from CUDA events at its two ends, each behind an
    untimed `run()` that keeps the GPU busy up to it."""
    spans = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        run()
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        spans.append(start.elapsed_time(end) * 1e3)
    return spans


def span_us(calls, iters):
    """Per-call time from events at the two ends of `iters` back-to-back calls replayed from a
    CUDA graph (no launch gaps: the same thing onepath's headline figure measures). Falls back
    to plain launches if the call cannot be captured."""
    try:
        run, how = capture_graph(calls).replay, "cuda_graph"
    except Exception as e:  # report, never hide
        print(f"graph capture failed ({e}); timing plain launches", file=sys.stderr)
        run, how = calls, "launches"
    run()
    torch.cuda.synchronize()
    return event_spans_us(run, 1)[0] / iters, how


def time_calls(call, copies, iters=20):
    """The matmul peers' three figures for `call(i)` (call i of a rotation over `copies` weight
    sets), after a 0.3 s warm-up of back-to-back calls: the median of CUDA events around each of
    `iters` calls (launch gaps included), `span_us` (a CUDA graph of `iters` calls), and `iters`
    plain launches with events at the two ends only (bound by the host's launch rate for small
    calls). Returns (time_us, span_us, span_how, loop_us)."""
    t0 = time.time()
    while time.time() - t0 < 0.3:
        for i in range(copies):
            call(i)
        torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(iters)]
    for it in range(iters):
        ev[it][0].record()
        call(it % copies)
        ev[it][1].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) * 1e3 for s, e in ev)
    us = times[len(times) // 2]

    def calls():
        for it in range(iters):
            call(it % copies)

    span, how = span_us(calls, iters)
    return us, span, how, event_spans_us(calls, 1)[0] / iters


def result(n, k, m, wbytes, copies, figures):
    """A matmul peer's JSON row from `time_calls`'s figures (GB/s of `wbytes` per call)."""
    us, span, how, loop = figures
    return {"n": n, "k": k, "m": m, "time_us": us, "weight_bytes": wbytes, "copies": copies,
            "effective_gb_s": wbytes / (us * 1e3), "tflop_s": 2 * m * n * k / (us * 1e6),
            "span_us": span, "span_how": how, "span_gb_s": wbytes / (span * 1e3),
            "loop_us": loop, "loop_gb_s": wbytes / (loop * 1e3)}
