#!/usr/bin/env python3
"""Train kjv-tiny: a ~6 M-parameter Gemma 4 text model on the King James Bible.

Everything here runs on CPU with PyTorch and Hugging Face transformers' own Gemma 4 classes
(model_type "gemma4_text"). The script:

  1. reads the KJV text with the `bible` program of Debian's `bible-kjv` package and caches it
     under models/kjv-tiny/.cache/ (gitignored; the text is never committed);
  2. splits it by book: the last books of the New Testament (about 2 % of the text) are held out
     for validation;
  3. trains a byte-level BPE tokenizer (`tokenizers` package) whose first 107 ids are the Gemma
     control tokens at Gemma's ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3, <|turn> 105,
     <turn|> 106; ids 4..104 are placeholders so that the ids line up);
  4. builds the training stream: one document per chapter ("<bos>" + one verse per line +
     "<eos>"), mixed with short synthetic chat turns in the Gemma 4 format
     ("<bos><|turn>user\\n...<turn|>\\n<|turn>model\\n...<turn|>\\n") whose answers are verses, so
     that a `--chat` prompt gets a verse-like answer that ends with <turn|>;
  5. trains Gemma4ForCausalLM (bf16 autocast, AdamW, cosine schedule), evaluating on the held-out
     books every --eval-every steps and keeping the checkpoint with the best validation loss;
  6. exports the best checkpoint to hf/ (bf16 safetensors + tokenizer) and converts it with
     mlx-lm's own `convert` to mlx-q4/ (4-bit affine, group 64);
  7. writes loss.csv and loss.png.

Pinned reference generations are computed by reference.py (run after this script).

Usage (from the repository root):
    python3 models/kjv-tiny/train.py --smoke          # one-minute end-to-end check, writes to .cache/smoke
    python3 models/kjv-tiny/train.py                  # the real run (see README.md for its numbers)

Determinism: every random choice is drawn from generators seeded by --seed; with the same
package versions, thread count and step count the run is repeatable. --max-minutes is a safety
stop only (it would cut the run short, which changes the result; the shipped run did not hit it).
"""

import argparse
import csv
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"

# Gemma control tokens at Gemma's ids. 4 and 5 follow Gemma 3's layout; 6..104 are placeholders.
SPECIAL_TOKENS = (
    ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    + [f"<unused{i}>" for i in range(99)]
    + ["<|turn>", "<turn|>"]
)
PAD, EOS, BOS, UNK, TURN_OPEN, TURN_CLOSE = 0, 1, 2, 3, 105, 106
assert SPECIAL_TOKENS[TURN_OPEN] == "<|turn>" and SPECIAL_TOKENS[TURN_CLOSE] == "<turn|>"

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<|turn>' + role + '\n' + message['content'] | trim + '<turn|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|turn>model\n' }}{% endif %}"
)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------
# Corpus


def kjv_text(cache: Path) -> str:
    """The whole KJV as printed by `bible` (Debian package bible-kjv), cached."""
    path = cache / "kjv.txt"
    if not path.exists():
        exe = shutil.which("bible")
        if exe is None:
            sys.exit("the `bible` program is missing: apt-get install -y bible-kjv")
        out = subprocess.run(
            [exe, "-m", "8192", "Gen1:1-Rev22:21"],
            check=True,
            capture_output=True,
            env={**os.environ, "COLUMNS": "80"},
        ).stdout.decode("ascii")
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(out)
    return path.read_text()


def parse_kjv(text: str):
    """-> list of chapters {book, chapter, verses: [str]} in canonical order.

    `bible` prints a blank line, "<Book> <chapter>", a blank line, then verses as
    "  <n> <text>" wrapped at 80 columns (continuation lines start at column 0)."""
    chapters = []
    lines = text.split("\n")
    prev_blank = True
    for line in lines:
        if not line.strip():
            prev_blank = True
            continue
        m = re.fullmatch(r"(\S.*) (\d+)", line)
        if prev_blank and m and not line.startswith(" "):
            chapters.append({"book": m.group(1), "chapter": int(m.group(2)), "verses": []})
        else:
            v = re.match(r"  (\d+) (.*)", line)
            if v:
                assert int(v.group(1)) == len(chapters[-1]["verses"]) + 1, line
                chapters[-1]["verses"].append(v.group(2).strip())
            else:
                chapters[-1]["verses"][-1] += " " + line.strip()
        prev_blank = False
    return chapters


def split_books(chapters, val_fraction):
    """Hold out whole books from the end until at least val_fraction of the characters."""
    total = sum(len(v) for c in chapters for v in c["verses"])
    books = []
    for c in chapters:
        if not books or books[-1] != c["book"]:
            books.append(c["book"])
    held, size = [], 0
    for b in reversed(books):
        if size >= val_fraction * total:
            break
        held.append(b)
        size += sum(len(v) for c in chapters if c["book"] == b for v in c["verses"])
    train = [c for c in chapters if c["book"] not in held]
    val = [c for c in chapters if c["book"] in held]
    return train, val, list(reversed(held)), size / total


def chapter_text(c):
    return "\n".join(c["verses"]) + "\n"


# Synthetic chat turns: the answer is always a verse from the training books.
ASK_REF = ["Recite {ref}.", "What does {ref} say?", "Quote {ref}.", "Read me {ref}."]
ASK_NAME = ["Who was {name}?", "Tell me about {name}.", "What is written of {name}?"]
NAME_STOP = {
    "LORD", "God", "I", "O", "Lord", "Lo", "Behold", "Thou", "Thus", "Then", "Now", "And",
    "But", "For", "The", "Jesus", "Christ", "Spirit", "Holy", "Ghost", "Son", "Father",
}


def make_chats(train_chapters, n, rng):
    verses = [(c["book"], c["chapter"], i + 1, v)
              for c in train_chapters for i, v in enumerate(c["verses"])]
    # Names: capitalised words that occur mid-sentence in many verses.
    counts = {}
    for *_, v in verses:
        for w in set(re.findall(r"(?<=[a-z,;:] )([A-Z][a-z]{2,})\b", v)):
            counts[w] = counts.get(w, 0) + 1
    names = sorted(w for w, k in counts.items() if k >= 40 and w not in NAME_STOP)
    by_name = {w: [v for *_, v in verses if re.search(rf"\b{w}\b", v)] for w in names}
    chats = []
    for _ in range(n):
        if rng.random() < 0.5:
            book, ch, vn, v = rng.choice(verses)
            q = rng.choice(ASK_REF).format(ref=f"{book} {ch}:{vn}")
            a = v
        else:
            w = rng.choice(names)
            q = rng.choice(ASK_NAME).format(name=w)
            a = rng.choice(by_name[w])
        chats.append(f"<bos><|turn>user\n{q}<turn|>\n<|turn>model\n{a}<turn|>\n")
    return chats, names


# ----------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer(texts, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Like Gemma's tokenizers: encode(text) prepends <bos> unless add_special_tokens=False.
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", BOS)]
    )
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return tok


def save_tokenizer(tok, out: Path):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    # One plain file for everything the tokenizer needs; drop extras transformers may add.
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        p = out / extra
        if p.exists() and extra == "chat_template.jinja":
            # keep the template inside tokenizer_config.json instead
            cfg = json.loads((out / "tokenizer_config.json").read_text())
            cfg["chat_template"] = p.read_text()
            (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
            p.unlink()


# ----------------------------------------------------------------------------------------------
# Model


def model_config(vocab, context):
    from transformers import Gemma4TextConfig

    return Gemma4TextConfig(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=384,
        num_hidden_layers=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=64,
        global_head_dim=128,
        sliding_window=128,
        max_position_embeddings=context,
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {
                "rope_type": "proportional",
                "partial_rotary_factor": 0.25,
                "rope_theta": 1_000_000.0,
            },
        },
        final_logit_softcapping=30.0,
        tie_word_embeddings=True,
        vocab_size_per_layer_input=vocab,
        hidden_size_per_layer_input=64,
        num_kv_shared_layers=2,
        use_double_wide_mlp=True,
        attention_k_eq_v=False,
        enable_moe_block=False,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=BOS,
        attention_dropout=0.0,
    )


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def evaluate(model, val, context, torch, F):
    """Mean next-token loss over the held-out stream, in non-overlapping windows."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        starts = list(range(0, len(val) - context - 1, context))
        for i in range(0, len(starts), 16):
            w = torch.stack([val[s:s + context + 1] for s in starts[i:i + 16]])
            logits = model(input_ids=w[:, :-1], use_cache=False).logits.float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                   reduction="sum")
            total += loss.item()
            n += w[:, 1:].numel()
    model.train()
    return total / n


def export_mlx(hf_dir: Path, mlx_dir: Path, dtype: str):
    """hf/ -> mlx-q4/ with mlx_lm.convert (4-bit affine, group 64).

    `dtype` is what mlx-lm keeps for the quantization scales/biases and the unquantized tensors
    (norms); float32 makes mlx-lm compute in float32, so the pinned mlx-lm generations measure the
    4-bit weights alone. The tokenizer files are copied from hf/ unchanged."""
    from mlx_lm import convert

    if mlx_dir.exists():
        shutil.rmtree(mlx_dir)
    convert(str(hf_dir), str(mlx_dir), quantize=True, q_group_size=64, q_bits=4, dtype=dtype)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(hf_dir / f, mlx_dir / f)
    # the chat template already lives in tokenizer_config.json; mlx-lm's stub card is replaced by
    # ../README.md
    for f in ("chat_template.jinja", "README.md"):
        if (mlx_dir / f).exists():
            (mlx_dir / f).unlink()
    conf = json.loads((mlx_dir / "config.json").read_text())
    conf["dtype"] = dtype  # mlx-lm copies the source's "bfloat16"; say what is stored
    (mlx_dir / "config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny run into .cache/smoke (pipeline check)")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--context", type=int, default=256, help="tokens per training sequence")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--chat-examples", type=int, default=3000)
    ap.add_argument("--val-fraction", type=float, default=0.02)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1611)
    ap.add_argument("--max-minutes", type=float, default=32.0, help="safety stop")
    ap.add_argument("--mlx-dtype", default="float32",
                    help="dtype mlx-lm keeps for scales/biases/norms in mlx-q4/ (float32 or bfloat16)")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--mlx-only", action="store_true",
                    help="only redo mlx-q4/ from an existing hf/ (no training)")
    args = ap.parse_args()

    if args.mlx_only:
        export_mlx(args.out / "hf", args.out / "mlx-q4", args.mlx_dtype)
        return
    if args.smoke:
        args.steps, args.eval_every, args.warmup, args.chat_examples = 30, 15, 5, 500
        args.out = CACHE / "smoke"

    import torch
    import torch.nn.functional as F
    from transformers import Gemma4ForCausalLM, GenerationConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    rng = random.Random(args.seed)
    t_start = time.time()
    work = CACHE / ("smoke" if args.smoke else "run")
    work.mkdir(parents=True, exist_ok=True)

    # -- corpus
    chapters = parse_kjv(kjv_text(CACHE))
    n_verses = sum(len(c["verses"]) for c in chapters)
    log(f"corpus: {len(chapters)} chapters, {n_verses} verses")
    assert len(chapters) == 1189 and n_verses == 31102, (len(chapters), n_verses)
    train_ch, val_ch, held_books, held_frac = split_books(chapters, args.val_fraction)
    log(f"validation books: {', '.join(held_books)} ({100 * held_frac:.2f} % of characters)")
    chats, names = make_chats(train_ch, args.chat_examples, rng)

    # -- tokenizer (trained on the training split only)
    tok = train_tokenizer([chapter_text(c) for c in train_ch] + chats, args.vocab)
    hf_dir = args.out / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    hf_dir.mkdir(parents=True)
    save_tokenizer(tok, hf_dir)

    def ids(text):
        return tok.encode(text, add_special_tokens=False).ids

    # -- token streams
    docs = [[BOS] + ids(chapter_text(c)) + [EOS] for c in train_ch] + [ids(c) for c in chats]
    rng.shuffle(docs)
    train = torch.tensor([t for d in docs for t in d], dtype=torch.long)
    val = torch.tensor([t for c in val_ch for t in [BOS] + ids(chapter_text(c)) + [EOS]],
                       dtype=torch.long)
    chat_tokens = sum(len(ids(c)) for c in chats)
    log(f"train tokens {len(train)} (chat {chat_tokens}), val tokens {len(val)}, "
        f"bytes/token {sum(len(chapter_text(c)) for c in train_ch) / (len(train) - chat_tokens):.2f}")

    # -- model
    cfg = model_config(args.vocab, args.context)
    model = Gemma4ForCausalLM(cfg)
    model.train()
    n_params = count_params(model)
    log(f"parameters: {n_params}")

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    best = float("inf")
    best_step = -1
    best_path = work / "best.pt"
    window_loss, window_n = 0.0, 0
    t_train = time.time()
    tokens_per_step = args.batch * args.context
    step = 0
    stopped_early = False
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            vl = evaluate(model, val, args.context, torch, F)
            tl = window_loss / window_n if window_n else float("nan")
            elapsed = time.time() - t_train
            rows.append({"step": step, "tokens": step * tokens_per_step, "train_loss": tl,
                         "val_loss": vl, "lr": lr_at(step), "seconds": round(elapsed, 1)})
            tag = ""
            if vl < best:
                best, best_step = vl, step
                torch.save(model.state_dict(), best_path)
                tag = " *"
            log(f"step {step:5d}  train {tl:.4f}  val {vl:.4f}  lr {lr_at(step):.2e}  "
                f"{elapsed:7.1f}s  {step * tokens_per_step / max(elapsed, 1e-9):6.0f} tok/s{tag}")
            window_loss, window_n = 0.0, 0
            with open(work / "log.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
                w.writeheader()
                w.writerows(rows)
            if (time.time() - t_start) / 60 > args.max_minutes:
                log("max-minutes reached: stopping early")
                stopped_early = True
                break
        if step == args.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        starts = torch.randint(0, len(train) - args.context - 1, (args.batch,), generator=gen)
        w = torch.stack([train[s:s + args.context + 1] for s in starts.tolist()])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=w[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window_loss += loss.item()
        window_n += 1
    train_seconds = time.time() - t_train
    log(f"training done: {step} steps in {train_seconds:.0f}s, best val {best:.4f} at step {best_step}")

    # -- export the best checkpoint: HF (bf16 safetensors)
    model.load_state_dict(torch.load(best_path))
    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(str(hf_dir), safe_serialization=True)
    conf = json.loads((hf_dir / "config.json").read_text())
    # transformers writes per-layer head dims as `per_layer_config` only; hub checkpoints (and
    # mlx-lm, which ignores per_layer_config) use these two keys. Keep both styles.
    conf["global_head_dim"] = 128
    conf["num_global_key_value_heads"] = None
    (hf_dir / "config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    GenerationConfig(bos_token_id=BOS, eos_token_id=[EOS, TURN_CLOSE], pad_token_id=PAD,
                     do_sample=False, max_new_tokens=128).save_pretrained(str(hf_dir))

    # round trip: the exported folder must load back into the same per-layer shapes
    back = Gemma4ForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    for i, layer in enumerate(back.model.layers):
        want = 128 if cfg.layer_types[i] == "full_attention" else 64
        assert layer.self_attn.head_dim == want, (i, layer.self_attn.head_dim)
    del back

    # -- MLX 4-bit, with mlx-lm's own converter
    mlx_dir = args.out / "mlx-q4"
    export_mlx(hf_dir, mlx_dir, args.mlx_dtype)

    # -- loss log and plot
    with open(args.out / "loss.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["tokens"] / 1e6 for r in rows[1:]], [r["train_loss"] for r in rows[1:]], label="train (mean since last eval)")
    ax.plot([r["tokens"] / 1e6 for r in rows], [r["val_loss"] for r in rows], label="validation (held-out books)")
    ax.axvline(best_step * tokens_per_step / 1e6, color="gray", ls=":", lw=1, label=f"best (step {best_step})")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_ylim(top=min(8.5, max(r["val_loss"] for r in rows) + 0.2))
    ax.set_title("kjv-tiny: Gemma 4 text, %.1f M parameters" % (n_params / 1e6))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "loss.png")

    summary = {
        "parameters": n_params,
        "steps": step,
        "best_step": best_step,
        "best_val_loss": best,
        "train_loss_at_best": next(r["train_loss"] for r in rows if r["step"] == best_step),
        "final_train_loss": rows[-1]["train_loss"],
        "final_val_loss": rows[-1]["val_loss"],
        "tokens_per_step": tokens_per_step,
        "tokens_seen": step * tokens_per_step,
        "tokens_seen_at_best": best_step * tokens_per_step,
        "train_tokens": len(train),
        "chat_tokens": chat_tokens,
        "val_tokens": len(val),
        "validation_books": held_books,
        "validation_fraction_chars": held_frac,
        "chat_names": names,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "stopped_early": stopped_early,
        "threads": args.threads,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": {
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "mlx_lm": __import__("mlx_lm").__version__,
            "mlx": __import__("mlx.core", fromlist=["__version__"]).__version__,
        },
    }
    (args.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {hf_dir} and {mlx_dir}; total {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
