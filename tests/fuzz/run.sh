#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] — builds the fuzz targets (tests/fuzz/build.sh)
# into $FUZZ_BUILD (default /tmp/weft-fuzz) and runs each over its committed
# corpus for SECONDS (default 60) each. New inputs go to a scratch copy of the
# corpus, not into the tree. Fails on any crash, leak, timeout or sanitizer
# report (libFuzzer exits nonzero and leaves crash-* files in $FUZZ_BUILD).
set -euo pipefail
SECS=${1:-60}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${FUZZ_BUILD:-/tmp/weft-fuzz}
"$ROOT/tests/fuzz/build.sh" "$B"
for t in abi queue; do
    work="$B/corpus-$t"
    rm -rf "$work"
    mkdir -p "$work"
    cp "$ROOT/tests/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
    echo "== fuzz_$t: ${SECS}s over $(ls "$work" | wc -l) seed inputs"
    rc=0
    (cd "$B" && ./fuzz_$t -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$work") >"$B/fuzz_$t.log" 2>&1 || rc=$?
    grep -vE '^#[0-9]+.*(NEW|REDUCE|pulse)' "$B/fuzz_$t.log" | tail -n 40
    if [ "$rc" -ne 0 ]; then echo "fuzz_$t FAILED (exit $rc); log: $B/fuzz_$t.log, inputs: $B/crash-*" >&2; exit 1; fi
done
echo "fuzzing passed"
