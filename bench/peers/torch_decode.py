"""Peer figures for `onepath bench decode`: transformers' own Gemma 4 text model on the E2B
shape (`shared/notes/gemma4.md` hyper-parameters: 35 layers, hidden 1536, 8 heads on 1 KV
head, head dims 256/512, 20 KV-shared layers with the double-wide MLP, PLE 256, vocab 262144),
random bf16 weights, on CUDA.

Measured, as onepath's bench measures itself:
- prefill: one forward of a 512-token prompt (tokens/s; median of 3 after a warm-up);
- decode at batch 1, 8, 32 after a 128-token prompt per sequence: greedy `generate` with
  `min_new_tokens = max_new_tokens = N`, decode tokens/s = batch * (N - 1) / (time of the whole
  call - time of the same call with 1 new token), so the prompt's prefill is not counted;
  eager (dynamic cache) and, where it compiles, with a static cache and `torch.compile`
  (`cache_implementation="static"`, the compiled forward transformers documents), timed after
  one untimed call that compiles.
Prints one JSON object; progress on stderr.
Run: python3 bench/peers/torch_decode.py [N new tokens, default 32] [batches, default 1,8,32]
"""
import json
import sys
import time

import torch
import transformers
from transformers import Gemma4TextConfig, Gemma4ForCausalLM

N = int(sys.argv[1]) if len(sys.argv) > 1 else 32
BATCHES = [int(b) for b in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1, 8, 32]
PROMPT, PREFILL = 128, 512


def log(*a):
    print(*a, file=sys.stderr, flush=True)


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


def timed(fn, reps=3):
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    out.sort()
    return out[len(out) // 2]


def main():
    torch.manual_seed(0)
    cfg = e2b()
    model = Gemma4ForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16).eval()
    res = {"library": f"transformers {transformers.__version__}, torch {torch.__version__}",
           "device": torch.cuda.get_device_name(), "weights": "bf16 random", "new_tokens": N}
    ids = torch.randint(3, cfg.vocab_size, (1, PREFILL), device="cuda")
    with torch.no_grad():
        t = timed(lambda: model(ids, use_cache=False))
    res["prefill"] = {"tokens": PREFILL, "tokens_per_s": PREFILL / t, "ms": t * 1e3}
    log("prefill", res["prefill"])
    for mode in ["eager", "static_compile"]:
        rows = []
        for b in BATCHES:
            prompt = torch.randint(3, cfg.vocab_size, (b, PROMPT), device="cuda")
            kw = dict(do_sample=False, pad_token_id=0)
            if mode == "static_compile":
                kw["cache_implementation"] = "static"
                kw["compile_config"] = transformers.CompileConfig(fullgraph=False)
            try:
                with torch.no_grad():
                    gen = lambda n: model.generate(prompt, max_new_tokens=n, min_new_tokens=n, **kw)
                    full = timed(lambda: gen(N), reps=2)
                    one = timed(lambda: gen(1), reps=2)
                tps = b * (N - 1) / max(full - one, 1e-9)
                rows.append({"batch": b, "tokens_per_s": tps, "step_ms": (full - one) / (N - 1) * 1e3})
            except Exception as e:  # a mode that does not run here is reported, not hidden
                rows.append({"batch": b, "error": f"{type(e).__name__}: {e}"[:300]})
            log(mode, rows[-1])
        res[mode] = rows
    res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(res))


if __name__ == "__main__":
    main()
