#!/usr/bin/env python3
"""Pinned greedy generations of kjv-tiny, for onepath's tests: writes reference.json.

For each fixed prompt it records the prompt token ids and 32 greedy tokens computed twice,
independently:

  * "transformers_f32": transformers' Gemma4ForCausalLM on hf/ (bf16 weights upcast to float32,
    float32 compute, every step a full forward pass over prompt + tokens so far, no cache);
  * "mlx_q4": mlx-lm on mlx-q4/ (4-bit weights, the dtype stored for scales/biases/norms),
    prompt prefill then one token at a time through mlx-lm's own caches (a rotating cache of
    `sliding_window` entries on sliding layers), as mlx-lm generates.

The two are different models (4-bit vs. 16-bit weights): their greedy paths part after a few
tokens, so a test compares an implementation with one of them, never one with the other.

Greedy here means argmax over the final (soft-capped) logits with no stop: exactly 32 tokens are
produced even past <eos> / <turn|>; "first_stop" gives the index of the first stop token
(1 or 106) in the generated ids, or null. "margins" is, per generated token, the top-1 logit
minus the runner-up logit at that step; "min_margin" is their minimum: an implementation whose
logits are within min_margin / 2 of the reference (on every step) must reproduce the ids
exactly. "top5_first" lists (id, logit) of the five largest logits of the first step.

Usage: python3 models/kjv-tiny/reference.py [--dir models/kjv-tiny] [--samples]
"""

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_NEW = 32
STOP = (1, 106)

# The last prompt is held-out text (Revelation 21, validation split) long enough that prompt +
# generation passes the 128-token sliding window.
PROMPTS = [
    {"name": "genesis", "text": "In the beginning", "add_bos": True},
    {"name": "moses", "text": "And the LORD said unto Moses", "add_bos": True},
    {"name": "chat",
     "text": "<bos><|turn>user\nWho was Moses?<turn|>\n<|turn>model\n", "add_bos": False},
    {"name": "long",
     "text": (
         "And I saw a new heaven and a new earth: for the first heaven and the first earth were "
         "passed away; and there was no more sea.\n"
         "And I John saw the holy city, new Jerusalem, coming down from God out of heaven, "
         "prepared as a bride adorned for her husband.\n"
         "And I heard a great voice out of heaven saying, Behold, the tabernacle of God is with "
         "men, and he will dwell with them, and they shall be his people, and God himself shall "
         "be with them, and be their God.\n"
         "And God shall wipe away all tears from their eyes; and there shall be no more death, "
         "neither sorrow, nor crying, neither shall there be any more pain: for the former "
         "things are passed away.\n"
         "And he that sat upon the throne said, Behold, I make all things new. And he said unto "
         "me, Write: for these words are true and faithful.\n"
     ),
     "add_bos": True},
]


def first_stop(ids):
    return next((i for i, t in enumerate(ids) if t in STOP), None)


def summarize(ids, margins, top5, tok):
    return {
        "ids": ids,
        "text": tok.decode(ids, skip_special_tokens=False),
        "first_stop": first_stop(ids),
        "margins": [round(m, 5) for m in margins],
        "min_margin": round(min(margins), 5),
        "top5_first": [[i, round(v, 5)] for i, v in top5],
    }


def run_transformers(hf_dir, prompts):
    import torch
    from transformers import Gemma4ForCausalLM

    torch.manual_seed(0)
    model = Gemma4ForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            seq = list(ids)
            gen, margins, top5 = [], [], None
            for step in range(N_NEW):
                logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float()
                v, i = torch.topk(logits, 5)
                if step == 0:
                    top5 = list(zip(i.tolist(), v.tolist()))
                margins.append((v[0] - v[1]).item())
                gen.append(int(i[0]))
                seq.append(int(i[0]))
            # cross-check: transformers' own cached greedy generate must agree
            g = model.generate(torch.tensor([ids]), max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                               do_sample=False, eos_token_id=None, pad_token_id=0)
            cached = g[0, len(ids):].tolist()
            if cached != gen:
                print(f"warning: transformers cached generate differs: {cached} vs {gen}")
            out.append((gen, margins, top5))
    return out


def run_mlx(mlx_dir, prompts):
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    model, _ = load(str(mlx_dir))
    out = []
    for ids in prompts:
        cache = make_prompt_cache(model)
        logits = model(mx.array([ids]), cache=cache)[0, -1]
        gen, margins, top5 = [], [], None
        for step in range(N_NEW):
            lf = logits.astype(mx.float32)
            order = mx.argsort(-lf)[:5]
            vals = lf[order]
            mx.eval(order, vals)
            o, v = order.tolist(), vals.tolist()
            if step == 0:
                top5 = list(zip(o, v))
            margins.append(v[0] - v[1])
            gen.append(o[0])
            logits = model(mx.array([[o[0]]]), cache=cache)[0, -1]
        # cross-check against full recomputation without cache
        seq = list(ids)
        for t in gen[:-1]:
            seq.append(t)
        full = mx.argmax(model(mx.array([seq]))[0, len(ids) - 1:], axis=-1).tolist()
        if full != gen:
            print(f"note: mlx full-recompute greedy differs from cached: {full} vs {gen}")
        out.append((gen, margins, top5))
    return out


def samples(hf_dir, tok):
    """Greedy and sampled continuations for the model card (transformers, f32, cached)."""
    import torch
    from transformers import Gemma4ForCausalLM

    model = Gemma4ForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    for p in PROMPTS[:3]:
        ids = tok.encode(p["text"], add_special_tokens=p["add_bos"]).ids
        for mode in ("greedy", "sampled"):
            torch.manual_seed(1611)
            kw = dict(do_sample=False) if mode == "greedy" else dict(do_sample=True, temperature=0.8, top_p=0.95, top_k=0)
            g = model.generate(torch.tensor([ids]), max_new_tokens=80, eos_token_id=[1, 106], pad_token_id=0, **kw)
            text = tok.decode(g[0, len(ids):].tolist(), skip_special_tokens=False)
            print(f"--- {p['name']} ({mode}; temperature 0.8, top-p 0.95, seed 1611)" if mode == "sampled" else f"--- {p['name']} ({mode})")
            print(repr(p["text"]) + " ->")
            print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=HERE)
    ap.add_argument("--samples", action="store_true", help="also print sample generations")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(args.dir / "hf" / "tokenizer.json"))
    tok_mlx = Tokenizer.from_file(str(args.dir / "mlx-q4" / "tokenizer.json"))
    prompt_ids = []
    for p in PROMPTS:
        ids = tok.encode(p["text"], add_special_tokens=p["add_bos"]).ids
        assert ids == tok_mlx.encode(p["text"], add_special_tokens=p["add_bos"]).ids
        assert ids[0] == 2 and ids.count(2) == 1, ids
        prompt_ids.append(ids)

    hf = run_transformers(args.dir / "hf", prompt_ids)
    mlx = run_mlx(args.dir / "mlx-q4", prompt_ids)
    mlx_cfg = json.loads((args.dir / "mlx-q4" / "config.json").read_text())

    ref = {
        "model": "kjv-tiny",
        "generated_tokens": N_NEW,
        "stop_token_ids": list(STOP),
        "greedy": "argmax of the final soft-capped logits; no stopping: exactly "
                  f"{N_NEW} tokens even past a stop token",
        "transformers_f32": "transformers Gemma4ForCausalLM on hf/ (weights upcast to float32, "
                            "float32 compute, full forward per step)",
        "mlx_q4": f"mlx-lm on mlx-q4/ (4-bit, group 64, affine; quantization {json.dumps(mlx_cfg['quantization'], sort_keys=True)}; "
                  f"scales/biases/norms {mlx_cfg.get('dtype')}; prefill then one token per step with "
                  "mlx-lm's caches)",
        "compare": "never compare transformers_f32 with mlx_q4: they are different weights",
        "prompts": [],
    }
    for p, ids, h, m in zip(PROMPTS, prompt_ids, hf, mlx):
        ref["prompts"].append({
            "name": p["name"],
            "text": p["text"],
            "add_bos": p["add_bos"],
            "prompt_ids": ids,
            "transformers_f32": summarize(*h, tok),
            "mlx_q4": summarize(*m, tok),
        })
        print(f"{p['name']:8s} prompt {len(ids):3d} tokens")
        print(f"  f32 : {ref['prompts'][-1]['transformers_f32']['text']!r}  min margin {min(h[1]):.4f}")
        print(f"  q4  : {ref['prompts'][-1]['mlx_q4']['text']!r}  min margin {min(m[1]):.4f}")
        agree = next((i for i, (a, b) in enumerate(zip(h[0], m[0])) if a != b), N_NEW)
        print(f"  (f32 and q4 agree on the first {agree} tokens; informational only)")

    # compact: one line per list
    text = json.dumps(ref, indent=2)
    text = _compact_lists(text)
    assert json.loads(text) == json.loads(json.dumps(ref))
    (args.dir / "reference.json").write_text(text + "\n")
    print(f"wrote {args.dir / 'reference.json'}")
    if args.samples:
        samples(args.dir / "hf", tok)


def _compact_lists(text):
    """Put lists of numbers on one line."""
    import re

    def join(m):
        inner = re.sub(r"\s+", " ", m.group(0))
        return inner.replace("[ ", "[").replace(" ]", "]")

    return re.sub(r"\[[\s\d.,\-e\[\]]*\]", join, text)


if __name__ == "__main__":
    main()
