#!/usr/bin/env bash
# bench/io_compare.sh — weft's I/O servers beside Tokio's, in one run.
#
# Usage: bench/io_compare.sh [--seconds T] [--workers N] [--build DIR] [--no-http] [--tpc]
#   --seconds T  duration of each measured client run (default 5)
#   --workers N  runtime worker threads of both servers (default 2)
#   --build DIR  weft's build directory (default: build), holding
#                examples/echo_server and examples/http_hello
#   --no-http    only the echo workloads (for a machine without wrk)
#   --tpc        weft's servers on a thread-per-core ShardSet of N shards
#                (their --tpc flag) instead of a runtime of N workers;
#                Tokio's side is unchanged
#
# Runs ../shared/peers/io-compare (neutral clients: echo_load at conns=1/64,
# size 64/4096, and wrk at 64/256 connections; see its header comment) first
# against weft's examples/echo_server and examples/http_hello, then against
# the Tokio peer's --serve-echo / --serve-http, with the same options. The
# servers bind port 0 and announce the real port on their READY line.
#
# stdout: the BENCH lines of each side, after a '# weft' / '# tokio' line,
# then a table of weft/tokio requests per second per workload (> 1: weft
# serves more). The machines are shared and noisy: compare the ratios of one
# run, never absolute numbers across runs. stderr: io-compare's and the
# servers' diagnostics (the first Tokio run also builds it with cargo).
# Exit status: 0 when both sides ran every workload without errors, 1 when
# anything failed (the table is still printed for what did run), 2 = usage.
# io-compare stops the servers it started on every exit path; an interrupt
# of this script is passed on to it, so nothing is left listening.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
peers="$repo/../shared/peers"

seconds=5
workers=2
build="$repo/build"
http=1
tpc=""

usage() {
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
        --seconds=*) seconds=${1#*=}; shift ;;
        --workers) [ $# -ge 2 ] || usage; workers=$2; shift 2 ;;
        --workers=*) workers=${1#*=}; shift ;;
        --build) [ $# -ge 2 ] || usage; build=$2; shift 2 ;;
        --build=*) build=${1#*=}; shift ;;
        --no-http) http=0; shift ;;
        --tpc) tpc="--tpc"; shift ;;
        -h | --help) usage ;;
        *) echo "io_compare.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
is_pos_int() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ]; }
if ! is_pos_int "$seconds"; then echo "io_compare.sh: --seconds must be a positive integer" >&2; exit 2; fi
if ! is_pos_int "$workers"; then echo "io_compare.sh: --workers must be a positive integer" >&2; exit 2; fi

echo_server="$build/examples/echo_server"
http_server="$build/examples/http_hello"
for f in "$echo_server" "$http_server"; do
    [ -x "$f" ] || { echo "io_compare.sh: $f not found; build first: cmake --build $build" >&2; exit 1; }
done
for f in "$peers/io-compare" "$peers/tokio/run"; do
    [ -x "$f" ] || { echo "io_compare.sh: $f not found (the shared peers live next to the repository)" >&2; exit 1; }
done
if [ $http -eq 1 ] && ! command -v wrk >/dev/null 2>&1; then
    echo "io_compare.sh: wrk not found; install it (apt-get install -y wrk) or pass --no-http" >&2
    exit 1
fi

# The Tokio peer's build: where its `run` puts it for a read-only checkout,
# so that this script reuses that build and never writes into ../shared.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/weft-peers/tokio-target}"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/weft-io-compare.XXXXXX") || exit 1
compare_pid=""
# shellcheck disable=SC2317  # invoked from traps
cleanup() {
    if [ -n "$compare_pid" ]; then
        # io-compare's own TERM trap stops its client and server.
        kill -TERM "$compare_pid" 2>/dev/null
        wait "$compare_pid" 2>/dev/null
        compare_pid=""
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'echo "io_compare.sh: interrupted" >&2; exit 130' INT
trap 'echo "io_compare.sh: terminated" >&2; exit 143' TERM

# run_side NAME ECHO_CMD HTTP_CMD: io-compare's BENCH lines go to $workdir/NAME.
# The commands are single strings (io-compare runs them with bash -c).
run_side() {
    local name=$1 echo_cmd=$2 http_cmd=$3 rc
    local args=(--seconds "$seconds" "$echo_cmd")
    [ $http -eq 1 ] && args+=(--http "$http_cmd")
    echo "# io_compare.sh: $name: io-compare ${args[*]}" >&2
    "$peers/io-compare" "${args[@]}" >"$workdir/$name" &
    compare_pid=$!
    wait "$compare_pid"
    rc=$?
    compare_pid=""
    [ $rc -eq 0 ] || echo "io_compare.sh: $name: io-compare failed (status $rc); see above" >&2
    return $rc
}

printf -v weft_echo '%q --workers %q %s 0' "$echo_server" "$workers" "$tpc"
printf -v weft_http '%q --workers %q %s 0' "$http_server" "$workers" "$tpc"
printf -v tokio_echo '%q --workers %q --serve-echo 0' "$peers/tokio/run" "$workers"
printf -v tokio_http '%q --workers %q --serve-http 0' "$peers/tokio/run" "$workers"
failed=0
run_side weft "$weft_echo" "$weft_http" || failed=1
run_side tokio "$tokio_echo" "$tokio_http" || failed=1

for name in weft tokio; do
    echo "# $name workers=$workers seconds=$seconds${tpc:+ (weft: thread-per-core)}"
    grep '^BENCH ' "$workdir/$name" || echo "# $name: no BENCH lines"
done

# The workload is the BENCH line up to its rps= field; join the two sides on it.
echo "# weft/tokio requests per second (> 1: weft serves more)"
awk '
    function key_and_rps(line,   i, n, f, k) {
        n = split(line, f, " ")
        k = ""
        for (i = 2; i <= n; i++) {
            if (f[i] ~ /^rps=/) { rps = substr(f[i], 5); return k }
            k = (k == "" ? f[i] : k " " f[i])
        }
        rps = ""
        return ""
    }
    /^BENCH / {
        k = key_and_rps($0)
        if (k == "") next
        if (FILENAME == ARGV[1]) { order[++count] = k; weft[k] = rps } else { tokio[k] = rps }
    }
    END {
        printf "%-26s %12s %12s %8s\n", "workload", "weft_rps", "tokio_rps", "ratio"
        for (i = 1; i <= count; i++) {
            k = order[i]
            if (k in tokio && tokio[k] > 0)
                printf "%-26s %12.1f %12.1f %8.2f\n", k, weft[k], tokio[k], weft[k] / tokio[k]
            else
                printf "%-26s %12.1f %12s %8s\n", k, weft[k], "-", "-"
        }
    }' "$workdir/weft" "$workdir/tokio"

exit $failed
