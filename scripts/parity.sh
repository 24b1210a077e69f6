#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, run `onepath parity`
# (the field's failing batching case, bitwise). Extra arguments go to onepath (e.g. --json,
# --backend gl).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
mkdir -p "${XDG_RUNTIME_DIR:-/tmp}"
exec cargo run --release --quiet -p onepath-cli -- parity "$@"
