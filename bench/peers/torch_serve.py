"""Peer figures for `onepath bench serve`: transformers' OWN continuous batching (its
`ContinuousBatchingManager`, paged KV cache) on transformers' Gemma 4 text model at the E2B shape
(`shared/notes/gemma4.md` hyper-parameters, the same `e2b()` as `torch_decode.py`), random bf16
weights, on CUDA, under Poisson arrivals.

Measured, as `crates/onepath-cli/src/bench_serve.rs` measures onepath, per concurrency level C
(default 1, 8, 32, 64):
- the manager is built with `max_requests_per_batch = C` (with transformers' FIFO scheduler,
  which serves decoding requests first, that is at most C requests in flight) and a per-step
  token budget `max_batch_tokens = max(512, C + 256)` (onepath's `step_tokens`); `num_blocks` is
  sized for C sequences of 128 + 128 tokens, so nothing is evicted; prefix sharing off (random
  prompts share nothing); greedy (`do_sample=False`); EOS disabled (`eos_token_id=-1`), so every
  request generates exactly `max_new_tokens` tokens (checked, reported as `all_full_length`);
- calibration: C requests at once with min(128, 32) new tokens; T = that wall time * 128 / 32,
  the time one request takes at batch C; arrival rate lambda = load * C / T (load 1.0 unless
  argv[2] says otherwise);
- N = max(4C, 16) requests, each a 128-token random prompt (ids in [4, vocab)), arriving as a
  Poisson process: the first at 0, then exponential gaps of mean 1/lambda. Prompts and gaps come
  from the same 64-bit LCG and seeds (7 + level index) as the Rust bench, drawn in the same order
  (calibration prompts, gaps, prompts), so both sides see the same prompts and arrival pattern;
  N is cut (to max(C, 4, budget * C / T); `requests_planned` then gives the uncut N) where N/C * T
  would pass a per-level budget (40 s; `--level-budget S`), to keep the whole run under about
  4 minutes: transformers' eager paged step is slow (on an H100: ~47 ms at batch 1, ~95 ms at
  32-64, so T is 12-20 s and the uncut N would take ~10 minutes);
- per token, the time the manager's loop saw it on the host: `add_request(...,
  record_timestamps=True)` makes transformers stamp every generated token with
  `time.perf_counter()` as it updates the request (`GenerationOutput.timestamps`), the same
  clock as the arrival times here. If the installed transformers gives no timestamps, the script
  falls back to `streaming=True` and stamps each partial output as it is read
  (`"token_times": "streamed"`); with neither, `"per_token_times": false` and TTFT/ITL are null;
- reported: aggregate tokens/s = all new tokens / (last token - first arrival); steady tokens/s
  = tokens stamped while C requests were running (admitted, `lifespan[0]`, and not finished) over
  the time C were running; decode-only tokens/s = the same over the time C were running and none
  was still in its prefill (admitted, no first token yet); TTFT = first token - arrival (the
  scheduled arrival, queueing included); ITL = gaps between a request's consecutive tokens;
  p50/p99 by nearest rank on the sorted list (rank ceil(p/100 * n)).
One change to transformers, made at run time and reported (`transformers_patch`): its paged
cache takes one `head_dim` for all layers (`find_head_dim`, which on Gemma 4's per-layer config
raises), while Gemma 4 has 256-wide sliding and 512-wide global heads; the script sizes the cache
for 512 and lets the 256-wide layers read and write the leading lanes of their rows
(`PagedAttentionCache.update` wrapped). Checked on the smoke model: greedy tokens from the
manager equal `model.generate`'s, past the sliding window.
One untimed request runs first, before any level, so one-time start-up (CUDA context, kernels)
is not in the first calibration. The attention implementation is transformers' own choice for
continuous batching (it tries flash attention, else wraps the model's: `paged|sdpa`), or
`--attn NAME` (e.g. `paged|sdpa`, `paged|eager`); the one used is reported.
Prints one JSON object; progress on stderr.
`--cuda-graph` asks transformers for CUDA graphs on both paths (`use_cuda_graph=True`; its
default leaves them off for `paged|sdpa`, whose attention mask makes the padding costly).
Run: python3 bench/peers/torch_serve.py [levels, default 1,8,32,64] [load, default 1.0]
     [--attn NAME] [--cuda-graph] [--level-budget S] [--smoke]
`--smoke`: CPU, a tiny Gemma 4 config (4 layers, hidden 64, vocab 1024, float32), levels 1,4,
N = 8, 8 new tokens: checks that the script runs, its figures mean nothing.
"""
import bisect
import inspect
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the device machine has no network: never try the hub

import torch
import transformers
from transformers import GenerationConfig, Gemma4TextConfig, Gemma4ForCausalLM

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
FLAGS = sys.argv[1:]
SMOKE = "--smoke" in FLAGS


def flag_value(name):
    if name not in FLAGS:
        return None
    i = FLAGS.index(name) + 1
    if i >= len(FLAGS):
        print(f"torch_serve: {name} needs a value", file=sys.stderr)
        sys.exit(1)
    ARGS.remove(FLAGS[i])
    return FLAGS[i]


ATTN = flag_value("--attn")
CUDA_GRAPH = "--cuda-graph" in FLAGS
LEVELS = [int(c) for c in ARGS[0].split(",")] if ARGS else ([1, 4] if SMOKE else [1, 8, 32, 64])
LOAD = float(ARGS[1]) if len(ARGS) > 1 else 1.0
PROMPT = 128
NEW = 8 if SMOKE else 128
CAL_NEW = min(NEW, 32)
LEVEL_BUDGET_S = float(flag_value("--level-budget") or 40.0)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fail(msg):
    log(f"torch_serve: {msg}")
    sys.exit(1)


def e2b():
    kinds = ["full_attention" if l % 5 == 4 else "sliding_attention" for l in range(35)]
    return Gemma4TextConfig(
        vocab_size=262144, vocab_size_per_layer_input=262144, hidden_size=1536,
        num_hidden_layers=35, intermediate_size=6144, num_attention_heads=8,
        num_key_value_heads=1, head_dim=256, global_head_dim=512, hidden_size_per_layer_input=256,
        num_kv_shared_layers=20, sliding_window=512, layer_types=kinds, use_double_wide_mlp=True,
        final_logit_softcapping=30.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        max_position_embeddings=4096, eos_token_id=None, pad_token_id=0,
    )


def tiny():
    """The smoke shape: E2B's structure (sliding/full mix, KV sharing, PLE, wider global heads)
    at toy size."""
    kinds = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
    return Gemma4TextConfig(
        vocab_size=1024, vocab_size_per_layer_input=1024, hidden_size=64,
        num_hidden_layers=4, intermediate_size=128, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, global_head_dim=64, hidden_size_per_layer_input=16,
        num_kv_shared_layers=2, sliding_window=16, layer_types=kinds, use_double_wide_mlp=True,
        final_logit_softcapping=30.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        max_position_embeddings=512, eos_token_id=None, pad_token_id=0,
    )


class Lcg:
    """The Rust bench's generator (`bench_serve.rs`): same constants, same draws."""

    def __init__(self, seed):
        self.s = seed & (2**64 - 1)

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        return self.s >> 11

    def uniform(self):
        return (self.next() + 0.5) / float(1 << 53)

    def prompt(self, n, vocab):
        return [4 + self.next() % (vocab - 4) for _ in range(n)]


def pct(v, p):
    """Nearest-rank percentile (ms) of seconds `v`; None when empty."""
    if not v:
        return None
    v = sorted(v)
    rank = max(1, math.ceil(p / 100 * len(v)))
    return v[min(rank, len(v)) - 1] * 1e3


def need(obj, name, what):
    if not hasattr(obj, name):
        fail(f"transformers {transformers.__version__}: {what} has no attribute `{name}`; "
             "this script needs transformers' continuous batching (5.x ContinuousBatchingManager)")
    return getattr(obj, name)


def cb_config_class():
    try:
        from transformers import ContinuousBatchingConfig
    except ImportError:
        try:
            from transformers.generation import ContinuousBatchingConfig
        except ImportError:
            return None
    return ContinuousBatchingConfig


def num_layer_groups(cfg):
    """How many layer groups transformers' paged cache makes (each takes its own blocks)."""
    try:
        from transformers.generation.continuous_batching.cache import group_layers_by_attn_type
        groups = group_layers_by_attn_type(cfg)[0]
        return len(groups) if isinstance(groups, list) else 8
    except Exception:  # another version's layout: size generously
        return 8


def patch_per_layer_head_dims(model):
    """transformers' paged cache takes one `head_dim` for every layer (`find_head_dim`), but
    Gemma 4 has 256-wide sliding heads and 512-wide global heads (a per-layer attribute: reading
    `config.head_dim` raises). The smallest change that lets its own continuous batching run
    this model: size the cache for the widest head, and let a narrower layer read and write
    the leading `head_dim` lanes of its cache rows. Returns a description, or None when every
    layer has one head width."""
    per_layer = getattr(model.config, "per_layer_config", None)
    if per_layer is None:
        return None
    dims = sorted({l.head_dim for l in per_layer})
    if len(dims) < 2:
        return None
    try:
        from transformers.generation.continuous_batching import cache as cache_mod
    except ImportError as e:
        fail(f"transformers {transformers.__version__}: no continuous_batching.cache ({e})")
    need(cache_mod, "find_head_dim", "transformers.generation.continuous_batching.cache")
    cls = need(cache_mod, "PagedAttentionCache", "transformers.generation.continuous_batching.cache")
    need(cls, "update", "PagedAttentionCache")
    src = inspect.getsource(cls.update)
    if "layer_index_to_group_indices" not in src or "self.key_cache[" not in src:
        fail(f"transformers {transformers.__version__}: PagedAttentionCache is laid out unlike 5.17's "
             "(no per-group key_cache list in update); the per-layer head_dim patch does not apply")
    find, update = cache_mod.find_head_dim, cls.update

    def find_head_dim(config):
        p = getattr(config, "per_layer_config", None)
        return max(l.head_dim for l in p) if p is not None else find(config)

    def narrow_update(self, key_states, value_states, layer_idx, *a, **kw):
        d = key_states.shape[-1]
        where = need(self, "layer_index_to_group_indices", "PagedAttentionCache")
        j = where[layer_idx][1]
        k, v = self.key_cache[j], self.value_cache[j]
        if k.shape[-1] == d:
            return update(self, key_states, value_states, layer_idx, *a, **kw)
        self.key_cache[j], self.value_cache[j] = k[..., :d], v[..., :d]
        try:
            return update(self, key_states, value_states, layer_idx, *a, **kw)
        finally:
            self.key_cache[j], self.value_cache[j] = k, v

    cache_mod.find_head_dim = find_head_dim
    cls.update = narrow_update
    return (f"paged cache sized for head_dim {dims[-1]}; layers of head_dim {dims[:-1]} use the "
            "leading lanes (transformers' find_head_dim takes one width for all layers)")


def make_manager(model, c):
    """transformers' manager for level `c`, not started; returns (manager, settings)."""
    gen = GenerationConfig(do_sample=False, max_new_tokens=NEW, eos_token_id=-1, pad_token_id=0)
    block = 256
    per_seq = math.ceil((PROMPT + NEW) / block) + 1
    groups = num_layer_groups(model.config)
    settings = {
        "max_requests_per_batch": c, "max_batch_tokens": max(512, c + 256), "block_size": block,
        "num_blocks": groups * per_seq * (c + 2) * 2, "allow_block_sharing": False,
        "scheduler_type": "fifo", "seed": 0,
    }
    if CUDA_GRAPH:
        settings["use_cuda_graph"] = True
    init = need(model, "init_continuous_batching", type(model).__name__)
    cls = cb_config_class()
    if cls is not None:
        fields = getattr(cls, "__dataclass_fields__", None)
        kw = {k: v for k, v in settings.items() if fields is None or k in fields}
        if "auto_switch_to_flash" in (fields or {}) and ATTN is not None:
            kw["auto_switch_to_flash"] = False  # keep the implementation asked for
        dropped = sorted(set(settings) - set(kw))
        if dropped:
            log(f"ContinuousBatchingConfig lacks {dropped}: left to transformers")
        mgr = init(generation_config=gen, continuous_batching_config=cls(**kw))
    else:  # transformers 4.56-5.0: the paged-cache settings live on GenerationConfig
        for k, v in settings.items():
            setattr(gen, {"scheduler_type": "scheduler", "max_requests_per_batch": "max_batch_size"}.get(k, k), v)
        mgr = init(generation_config=gen)
    for name in ["start", "stop", "add_request", "get_result"]:
        need(mgr, name, "ContinuousBatchingManager")
    resolved = getattr(mgr, "continuous_batching_config", None)
    if resolved is not None:
        for k in ["use_cuda_graph", "use_async_batching", "max_blocks_per_request"]:
            if hasattr(resolved, k):
                v = getattr(resolved, k)
                settings[k] = list(v) if isinstance(v, tuple) else v
    return mgr, settings


class Run:
    """Submit requests to a started manager and collect their token times."""

    def __init__(self, mgr, mode):
        self.mgr, self.mode = mgr, mode  # mode: "recorded" | "streamed" | "final"
        self.times, self.spans, self.ntok = {}, {}, {}

    def add(self, rid, prompt, new):
        kw = dict(request_id=rid, max_new_tokens=new, eos_token_id=-1)
        if self.mode == "recorded":
            kw["record_timestamps"] = True
        elif self.mode == "streamed":
            kw["streaming"] = True
        try:
            out = self.mgr.add_request(prompt, **kw)
        except TypeError as e:  # an older signature: drop what it lacks and say so
            if self.mode == "recorded" and "record_timestamps" in str(e):
                log("add_request has no record_timestamps: falling back to streaming=True")
                self.mode = "streamed"
                return self.add(rid, prompt, new)
            if self.mode == "streamed" and "streaming" in str(e):
                log("add_request has no streaming: final results only")
                self.mode = "final"
                return self.add(rid, prompt, new)
            kw.pop("eos_token_id", None)
            out = self.mgr.add_request(prompt, **kw)
        if out is None:
            fail(f"add_request refused request {rid} (manager not accepting requests)")
        self.times.setdefault(rid, [])

    def poll(self, timeout):
        """Take one result if one comes within `timeout` s; True when one came."""
        r = self.mgr.get_result(timeout=max(timeout, 0.0))
        now = time.perf_counter()
        if r is None:
            return False
        rid = r.request_id
        if getattr(r, "error", None):
            fail(f"request {rid} failed in transformers' generation loop: {r.error}"[:2000])
        done = r.is_finished() if hasattr(r, "is_finished") else True
        toks = list(getattr(r, "generated_tokens", []))
        if self.mode == "streamed":
            got = self.times.setdefault(rid, [])
            got.extend([now] * (len(toks) - len(got)))
        if done:
            if self.mode == "recorded":
                ts = getattr(r, "timestamps", None)
                if ts is None:
                    self.mode = "final"
                    log("finished results carry no timestamps: no per-token times")
                else:
                    self.times[rid] = list(ts)
            self.ntok[rid] = len(toks)
            span = getattr(r, "lifespan", None)
            self.spans[rid] = span if span and span[0] > 0 else None
        return True

    def finished(self):
        return len(self.ntok)

    def drain(self, n, limit_s):
        end = time.perf_counter() + limit_s
        while self.finished() < n:
            if time.perf_counter() > end:
                fail(f"timed out waiting for results ({self.finished()} of {n})")
            if not self.poll(0.05) and not self.mgr.is_running():
                fail("the manager's generation thread stopped early")


def busy_rate(intervals, times, c, arrivals, firsts):
    """Tokens per second over the time exactly `c` requests were running, and over the part of
    it where none was in prefill. intervals: rid -> (admitted, finished)."""
    ev = []
    for rid, (a, f) in intervals.items():
        ev += [(a, 1, 0), (f, -1, 0)]
        if firsts.get(rid) is not None and firsts[rid] > a:
            ev += [(a, 0, 1), (firsts[rid], 0, -1)]
    ev.sort()
    steady, decode = [], []
    run = pre = 0
    for (t, dr, dp), nxt in zip(ev, ev[1:] + [(math.inf, 0, 0)]):
        run, pre = run + dr, pre + dp
        if run >= c and nxt[0] > t and nxt[0] < math.inf:
            steady.append((t, nxt[0]))
            if pre == 0:
                decode.append((t, nxt[0]))

    def rate(spans):
        dur = sum(b - a for a, b in spans)
        if dur <= 0:
            return None
        starts = [a for a, _ in spans]
        n = 0
        for ts in times.values():
            for x in ts:
                i = bisect.bisect_right(starts, x) - 1
                if i >= 0 and spans[i][0] <= x <= spans[i][1]:
                    n += 1
        return n / dur

    return rate(steady), rate(decode)


def level(model, c, seed, vocab, sync):
    mgr, settings = make_manager(model, c)
    if hasattr(mgr, "warmup") and torch.cuda.is_available():
        mgr.warmup()  # CUDA-graph capture where transformers uses graphs; untimed
    mgr.start()
    attn = model.config._attn_implementation
    try:
        rng = Lcg(seed)
        cal = Run(mgr, "recorded")
        t0 = time.perf_counter()
        for i in range(c):
            cal.add(f"cal{c}_{i}", rng.prompt(PROMPT, vocab), CAL_NEW)
        cal.drain(c, 600)
        per_request = (time.perf_counter() - t0) * NEW / CAL_NEW
        rate = LOAD * c / per_request
        planned = 8 if SMOKE else max(4 * c, 16)
        n = planned
        if planned / c * per_request > LEVEL_BUDGET_S:
            n = min(planned, max(c, 4, int(LEVEL_BUDGET_S / per_request * c)))
        at, t = [], 0.0
        for _ in range(planned):  # drawn in full, so the prompts match the Rust bench's
            at.append(t)
            t += -math.log(rng.uniform()) / rate
        prompts = [rng.prompt(PROMPT, vocab) for _ in range(planned)]
        at, prompts = at[:n], prompts[:n]
        log(f"level {c}: T = {per_request:.3f} s, rate {rate:.2f}/s, {n} requests, attn {attn}")

        run = Run(mgr, cal.mode)
        arrival, lag = {}, 0.0
        start = time.perf_counter()
        nxt = 0
        while nxt < n or run.finished() < n:
            now = time.perf_counter()
            if nxt < n and start + at[nxt] <= now:
                rid = f"c{c}_r{nxt}"
                arrival[rid] = start + at[nxt]
                lag = max(lag, now - arrival[rid])
                run.add(rid, prompts[nxt], NEW)
                nxt += 1
                continue
            wait = (start + at[nxt] - now) if nxt < n else 0.5
            if not run.poll(min(wait, 0.5)) and not mgr.is_running():
                fail("the manager's generation thread stopped early")
            if time.perf_counter() - start > 900:
                fail(f"level {c} ran past 900 s ({run.finished()} of {n} finished)")
    finally:
        mgr.stop(block=True, timeout=30)
        if hasattr(mgr, "destroy"):
            mgr.destroy()
        sync()

    timed = run.mode != "final"
    total = sum(run.ntok.values())
    full = all(k == NEW for k in run.ntok.values()) and len(run.ntok) == n
    ttft, itl, firsts, last = [], [], {}, None
    for rid, ts in run.times.items():
        if ts:
            firsts[rid] = ts[0]
            ttft.append(ts[0] - arrival[rid])
            itl += [b - a for a, b in zip(ts, ts[1:])]
            last = ts[-1] if last is None else max(last, ts[-1])
    ends = [s[1] for s in run.spans.values() if s and s[1] > 0]
    if last is None and ends:
        last = max(ends)
    wall = (last - min(arrival.values())) if last is not None else None
    steady = decode = None
    if timed and all(run.spans.get(r) for r in arrival):
        steady, decode = busy_rate({r: run.spans[r] for r in arrival}, run.times, c, arrival, firsts)
    row = {
        "concurrency": c, "requests": n, "arrival_rate_per_s": rate,
        "calibration_request_s": per_request,
        "aggregate_tokens_per_s": total / wall if wall else None,
        "steady_tokens_per_s": steady, "decode_only_tokens_per_s": decode,
        "ttft_ms": {"p50": pct(ttft, 50), "p99": pct(ttft, 99)} if timed else None,
        "itl_ms": {"p50": pct(itl, 50), "p99": pct(itl, 99)} if timed else None,
        "wall_s": wall, "all_full_length": full, "max_submit_lag_ms": lag * 1e3,
        "attn_implementation": attn, "manager": settings,
    }
    if n != planned:
        row["requests_planned"] = planned
    return row, run.mode, attn


def main():
    torch.manual_seed(0)
    if SMOKE:
        dev, dtype, cfg = "cpu", torch.float32, tiny()
        sync = lambda: None
    else:
        if not torch.cuda.is_available():
            fail("no CUDA device (use --smoke for the CPU check)")
        dev, dtype, cfg = "cuda", torch.bfloat16, e2b()
        sync = torch.cuda.synchronize
    if ATTN is not None:
        cfg._attn_implementation = ATTN
    with torch.device(dev):
        model = Gemma4ForCausalLM._from_config(cfg, dtype=dtype).eval()
    model.generation_config.eos_token_id = None
    patch = patch_per_layer_head_dims(model)
    if patch:
        log(f"patched: {patch}")
    device = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    log(f"transformers {transformers.__version__}, torch {torch.__version__}, {device}, "
        f"attn requested {model.config._attn_implementation}")
    vocab = cfg.vocab_size

    # untimed start-up request
    mgr, _ = make_manager(model, 1)
    mgr.start()
    try:
        w = Run(mgr, "recorded")
        w.add("startup", Lcg(1).prompt(PROMPT, vocab), 4)
        w.drain(1, 600)
    finally:
        mgr.stop(block=True, timeout=30)
        if hasattr(mgr, "destroy"):
            mgr.destroy()

    levels, mode, attn = [], "recorded", None
    with torch.no_grad():
        for i, c in enumerate(LEVELS):
            row, mode, attn = level(model, max(c, 1), 7 + i, vocab, sync)
            log(json.dumps({k: row[k] for k in ["concurrency", "requests", "aggregate_tokens_per_s",
                                                 "steady_tokens_per_s", "ttft_ms", "itl_ms", "wall_s"]}))
            levels.append(row)
    res = {
        "peer": f"transformers {transformers.__version__} continuous batching "
                f"({attn}{', cuda graphs' if CUDA_GRAPH else ''})",
        "library": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "device": device,
        "model": {"shape": "tiny Gemma 4 (smoke)" if SMOKE else "Gemma 4 E2B",
                  "layers": cfg.num_hidden_layers,
                  "weights": f"{'fp32' if SMOKE else 'bf16'} random"},
        "prompt": PROMPT, "new_tokens": NEW, "load": LOAD,
        "per_token_times": mode != "final",
        "token_times": {"recorded": "transformers record_timestamps (manager loop, perf_counter)",
                        "streamed": "streaming=True partial outputs, stamped as read",
                        "final": None}[mode],
        "percentiles": "nearest rank",
        "transformers_patch": patch,
        "levels": levels,
    }
    if dev == "cuda":
        res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(res))


if __name__ == "__main__":
    main()
