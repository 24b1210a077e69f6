#!/usr/bin/env bash
# Builds the browser page's wasm: web/dist/onepath_wasm.js + onepath_wasm_bg.wasm.
#   web/build.sh            debug build of the onepath crates (dependencies optimised anyway)
#   web/build.sh --release  release build
# Installs what is missing: the wasm32 target (rustup) and the wasm-bindgen CLI at exactly the
# version of the wasm-bindgen crate in Cargo.lock, into target/tools (built from source).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
flags=()
if [ "${1:-}" = "--release" ]; then
    profile=release
    flags=(--release)
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

version="$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
if [ -z "$version" ]; then
    echo "web/build.sh: no wasm-bindgen entry in Cargo.lock" >&2
    exit 1
fi
bindgen=target/tools/bin/wasm-bindgen
if ! { [ -x "$bindgen" ] && "$bindgen" --version | grep -qF " $version"; }; then
    echo "installing wasm-bindgen-cli $version into target/tools (about a minute)" >&2
    cargo install wasm-bindgen-cli --version "=$version" --debug --bin wasm-bindgen \
        --root target/tools --force
fi

cargo build -p onepath-wasm --target wasm32-unknown-unknown "${flags[@]}"
"$bindgen" --target web --out-dir web/dist --no-typescript \
    "target/wasm32-unknown-unknown/$profile/onepath_wasm.wasm"
echo "built web/dist ($profile); serve with: python3 -m http.server -d web 8000" >&2
