#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, and generate text with
# `onepath generate`, by default with the model that ships inside onepath (kjv-tiny) and the
# prompt "In the beginning". Arguments go to `onepath generate` (e.g. --model DIR,
# --prompt TEXT, --chat, --max-new-tokens N, --json); give a --prompt or --tokens to replace the
# default prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup.sh)"
mkdir -p "${XDG_RUNTIME_DIR:-/tmp}"
args=("$@")
case " $* " in
    *" --prompt"* | *" --tokens"*) ;;
    *) args+=(--prompt "In the beginning") ;;
esac
exec cargo run --release --quiet -p onepath-cli -- generate "${args[@]}"
