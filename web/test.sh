#!/usr/bin/env bash
# The browser test: headless Chromium (WebGPU on SwiftShader) runs the page against native
# references computed here (target/debug/onepath on the default backend). Installs what is
# missing: chromium (apt-get), playwright-core (npm, from web/package-lock.json), the wasm
# toolchain (web/build.sh). Output (screenshots, browser logits): web/test-output/.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-onepath}"
mkdir -p "$XDG_RUNTIME_DIR"

step() { printf '\n== %s\n' "$*"; }

if ! command -v chromium >/dev/null; then
    step "installing chromium"
    if [ "$(id -u)" = 0 ]; then apt-get install -y chromium; else sudo apt-get install -y chromium; fi
fi
if [ ! -d web/node_modules/playwright-core ]; then
    step "installing playwright-core (npm ci in web/)"
    (cd web && npm ci --no-audit --no-fund)
fi

step "building the native CLI and the page's wasm"
cargo build --quiet -p onepath-cli
web/build.sh

out=web/test-output
rm -rf "$out"
mkdir -p "$out/native"
bin=target/debug/onepath
fixture=tests/fixtures/gemma4/a-q4

step "native references ($($bin info 2>/dev/null | head -n 1))"
# The fixture's prompts and the tokens of the logits check (prompt 3 + its reference greedy
# tokens), read from reference.safetensors.
readarray -t prompts < <(node -e '
const b = require("fs").readFileSync(process.argv[1]);
const n = Number(b.readBigUInt64LE(0));
const h = JSON.parse(b.subarray(8, 8 + n).toString());
const ints = (k) => { const [s, e] = h[k].data_offsets;
  return Array.from(new Int32Array(new Uint8Array(b.subarray(8 + n + s, 8 + n + e)).buffer)); };
let i = 0;
for (; h["prompt." + i]; i++) console.log(ints("prompt." + i).join(","));
console.log(ints("prompt." + (i - 1)).concat(ints("greedy." + (i - 1))).join(","));
' "$fixture/reference.safetensors")
logit_tokens="${prompts[-1]}"
unset 'prompts[-1]'
args=()
for p in "${prompts[@]}"; do args+=(--tokens "$p"); done
shipped_prompt=2,1278,365,2514
$bin generate --tokens "$shipped_prompt" --max-new-tokens 32 --json > "$out/native/shipped.json"
fixture_new=16
$bin generate --model "$fixture" "${args[@]}" --max-new-tokens "$fixture_new" --json > "$out/native/fixture.json"
$bin logits --model "$fixture" --tokens "$logit_tokens" --out "$out/native/logits.safetensors" --json >/dev/null
node -e '
const fs = require("fs");
const [dir, sp, lt, fnew] = process.argv.slice(1);
const s = JSON.parse(fs.readFileSync(dir + "/shipped.json"));
const f = JSON.parse(fs.readFileSync(dir + "/fixture.json"));
fs.writeFileSync(dir + "/native.json", JSON.stringify({
  shipped: { prompt: sp.split(",").map(Number), tokens: s.outputs[0].tokens },
  fixture: { outputs: f.outputs.map((o) => o.tokens), newTokens: Number(fnew) },
  logits: { tokens: lt.split(",").map(Number) },
}));' "$out/native" "$shipped_prompt" "$logit_tokens" "$fixture_new"
echo "native kjv-tiny tokens: $(cat "$out/native/shipped.json")"

step "headless Chromium"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 --directory . "$port" >"$out/http.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/web/index.html" >/dev/null && break
    sleep 0.1
done
timeout 300 node web/test.mjs "http://127.0.0.1:$port" "$out"
