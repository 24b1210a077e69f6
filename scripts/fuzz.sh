#!/usr/bin/env bash
# Runs every fuzz target of crates/onepath-fuzz for EXECS executions each (default 1000000),
# optimized build with overflow checks, at the lowest CPU priority. Extra arguments go to each run (e.g. --seed 7).
#
#   scripts/fuzz.sh                 # 10^6 executions per target
#   scripts/fuzz.sh 10000000        # what the README's figures come from
#   FUZZ_JOBS=4 scripts/fuzz.sh     # four targets at a time
#   FUZZ_TARGETS="config mask" scripts/fuzz.sh 100000
#
# Exits non-zero if any target found a panic, a hang or a huge allocation; the offending
# input is saved under ${TMPDIR:-/tmp}/onepath-fuzz (replay it with
# `target/fuzz/onepath-fuzz <target> --replay FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
EXECS="${1:-1000000}"
shift || true
JOBS="${FUZZ_JOBS:-1}"
# A release build with overflow checks and debug assertions on (an overflow is a panic, as in
# a debug build, at release speed), in its own profile so the release artifacts are untouched.
nice -n 19 cargo build -p onepath-fuzz --profile fuzz \
    --config 'profile.fuzz.inherits="release"' \
    --config 'profile.fuzz.overflow-checks=true' \
    --config 'profile.fuzz.debug-assertions=true'
BIN=target/fuzz/onepath-fuzz
TARGETS="${FUZZ_TARGETS:-$("$BIN" list)}"
LOGS="$(mktemp -d)"
status=0
running=0
for t in $TARGETS; do
    echo "fuzz: $t, $EXECS executions"
    nice -n 19 "$BIN" "$t" --execs "$EXECS" --progress 1000000 "$@" >"$LOGS/$t.out" 2>"$LOGS/$t.err" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
for t in $TARGETS; do
    cat "$LOGS/$t.out"
    grep -v "^onepath-fuzz: .* execs, .* outcomes" "$LOGS/$t.err" || true
done
rm -rf "$LOGS"
exit "$status"
