"""Prints a compact table of the JSON files a device run left in $OUT (onepath and PyTorch
benches). Used at the end of a device command; the JSON files themselves are the record."""
import json
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", ".")


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


def compare(title, ours, peer):
    """One line per case: onepath (own passes, one pass, GB/s), PyTorch (per call, graph), and
    the ratios PyTorch / onepath per call and graph / one pass."""
    print(title, "| onepath us [span min-max] (1-pass) GB/s | torch us (graph) | torch/onepath: per call, graph vs 1-pass")
    for key, r in ours:
        p = peer.get(key, {})
        g, one = r.get("gpu_us"), r.get("one_pass_us")
        pt, ps = p.get("time_us"), p.get("span_us")
        runs = r.get("gpu_runs_us") or []
        spread = f" [{min(runs):.1f}-{max(runs):.1f}]" if runs else ""
        extra = ""
        if "kernel" in r:
            extra = f" | {r['kernel']}, rows = M1: {r.get('rows_equal_m1')}"
        print(f"{key} | {f1(g)}{spread} ({f1(one)}) {r['effective_gb_s']:.0f} | {f1(pt)} ({f1(ps)}) |"
              f" {ratio(pt, g)} {ratio(ps, one)}{extra}")


def sdpa_key(r):
    return (r["batch"], r["head_dim"], r["keys"])


def qmm_key(r):
    return (r["n"], r["k"], r["m"])


t = load("torch_sdpa.json")
peer = {sdpa_key(r): r for r in t["results"]} if t else {}
for name in ("onepath_sdpa.json", "onepath_sdpa2.json"):
    o = load(name)
    if o:
        compare(f"{name} (batch, D, keys)", [(sdpa_key(r), r) for r in o["results"]], peer)
ti = load("torch_int4.json")
qpeer = {qmm_key(r): r for r in ti["results"]} if ti else {}
o = load("onepath_qmm.json")
if o:
    rows = [(qmm_key(r), r) for r in o["results"] if "skipped" not in r]
    compare("qmatmul (n, k, m)", rows, qpeer)
    print("qmatmul M = 1 | onepath GB/s per call, 1-pass | 1-pass independent us | torch loop us"
          " | issue target GB/s (1.2 x its PyTorch figure)")
    target = {(6144, 1536): 1.2 * 556, (1536, 6144): 1.2 * 556, (262144, 1536): 1.2 * 1672}
    for key, r in rows:
        if key[2] != 1:
            continue
        wb, one = r["weight_bytes"], r.get("one_pass_us")
        gb1 = f"{wb / (one * 1e3):.0f}" if one else "-"
        loop = qpeer.get(key, {}).get("loop_us")
        print(f"{key} | {r['effective_gb_s']:.0f}, {gb1} | {f1(r.get('one_pass_independent_us'))}"
              f" | {f1(loop)} | {target.get(key[:2], 0):.0f}")
om, tm = load("onepath_qmm_m.json"), load("torch_int4_m.json")
if om and tm:
    peer_m = {qmm_key(r): r for r in tm["results"]}
    compare("qmatmul, several rows of x (n, k, m)",
            [(qmm_key(r), r) for r in om["results"] if "skipped" not in r], peer_m)
for kern in ("gemv", "tiled"):
    ok = load(f"onepath_qmm_{kern}.json")
    if ok:
        peer_all = {**qpeer, **({qmm_key(r): r for r in tm["results"]} if tm else {})}
        compare(f"qmatmul, every call on the {kern} kernel (n, k, m)",
                [(qmm_key(r), r) for r in ok["results"] if "skipped" not in r], peer_all)
p = load("parity.json")
if p:
    print("parity all_bitwise_equal:", p.get("all_bitwise_equal"))
