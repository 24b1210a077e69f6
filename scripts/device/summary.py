"""Prints a compact table of the JSON files a device run left in $OUT (onepath and PyTorch
benches). Used at the end of a device command; the JSON files themselves are the record."""
import json
import os
import sys

out = os.environ.get("OUT", sys.argv[1] if len(sys.argv) > 1 else ".")


def f1(x):
    return "-" if x is None else f"{x:.1f}"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception as e:  # report, never hide
        print(f"{name}: {e}")
        return None


t = load("torch_sdpa.json")
peer = {}
if t:
    for r in t["results"]:
        peer[(r["batch"], r["head_dim"], r["keys"])] = r
for name in ("onepath_sdpa.json", "onepath_sdpa2.json"):
    o = load(name)
    if not o:
        continue
    print(name, "batch D keys | onepath us (1-pass) GB/s | torch us (graph) | ratio (pass/per-call, 1-pass/graph)")
    for r in o["results"]:
        k = (r["batch"], r["head_dim"], r["keys"])
        p = peer.get(k, {})
        g, one = r.get("gpu_us"), r.get("one_pass_us")
        pt, ps = p.get("time_us"), p.get("span_us")
        print(f"{k} | {f1(g)} ({f1(one)}) {r['effective_gb_s']:.0f} | {f1(pt)} ({f1(ps)}) |"
              f" {ratio(pt, g)} {ratio(ps, one)}")
ti = load("torch_int4.json")
qpeer = {}
if ti:
    for r in ti["results"]:
        qpeer[(r["n"], r["k"], r["m"])] = r
o = load("onepath_qmm.json")
if o:
    print("qmm n k m | onepath us (1-pass) GB/s | torch us (graph) | ratio (pass/per-call, 1-pass/graph)")
    for r in o["results"]:
        if "skipped" in r:
            continue
        k = (r["n"], r["k"], r["m"])
        p = qpeer.get(k, {})
        g, one = r.get("gpu_us"), r.get("one_pass_us")
        pt, ps = p.get("time_us"), p.get("span_us")
        print(f"{k} | {f1(g)} ({f1(one)}) {r['effective_gb_s']:.0f} | {f1(pt)} ({f1(ps)}) |"
              f" {ratio(pt, g)} {ratio(ps, one)}")
p = load("parity.json")
if p:
    print("parity all_bitwise_equal:", p.get("all_bitwise_equal"))
