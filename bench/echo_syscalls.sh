#!/usr/bin/env bash
# bench/echo_syscalls.sh — how many system calls weft's echo server makes per
# round trip.
#
# Usage: bench/echo_syscalls.sh [--seconds T] [--workers N] [--build DIR]
#   --seconds T  measured duration of the load (default 3; echo_load adds its
#                1 s warm-up)
#   --workers N  the server's worker threads (default 2)
#   --build DIR  weft's build directory (default: build)
# Needs strace (apt-get install -y strace). The environment reaches the
# server, so WEFT_IO=epoll bench/echo_syscalls.sh counts the epoll backend.
#
# Starts build/examples/echo_server under `strace -f -c` (every thread,
# counted per syscall), drives it with ../shared/peers/loadgen's echo_load
# (one connection, 64-byte messages, closed loop), stops it with SIGINT (a
# clean exit, so strace writes its summary), and divides the server's
# syscalls by the round trips echo_load completed (warm-up included: strace
# counts them too). Start-up and shutdown are in the total as well; over a
# few seconds of load they are a rounding error. strace slows every syscall
# down, so the round-trip rate here means nothing; the count per round trip
# is the point.
#
# stdout: one line
#   SYSCALLS echo conns=1 size=64 round_trips=R syscalls=S per_round_trip=X io_uring_enter_per_round_trip=Y epoll_wait_per_round_trip=Z
# stderr: the server's backend line and the per-syscall breakdown ('#').
# Exit status 0, or 1 when anything failed (the server is always stopped).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
loadgen="$repo/../shared/peers/loadgen/run"

seconds=3
workers=2
build="$repo/build"

usage() {
    sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}
die() {
    echo "echo_syscalls.sh: $*" >&2
    exit 1
}
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
        --seconds=*) seconds=${1#*=}; shift ;;
        --workers) [ $# -ge 2 ] || usage; workers=$2; shift 2 ;;
        --workers=*) workers=${1#*=}; shift ;;
        --build) [ $# -ge 2 ] || usage; build=$2; shift 2 ;;
        --build=*) build=${1#*=}; shift ;;
        -h | --help) usage ;;
        *) echo "echo_syscalls.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
is_pos_int() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ]; }
is_pos_int "$seconds" || die "--seconds must be a positive integer"
is_pos_int "$workers" || die "--workers must be a positive integer"
command -v strace >/dev/null 2>&1 || die "strace not found; install it with: apt-get install -y strace"
server="$build/examples/echo_server"
[ -x "$server" ] || die "$server not found; build first: cmake --build $build"
[ -x "$loadgen" ] || die "$loadgen not found (the shared peers live next to the repository)"

workdir=$(mktemp -d "${TMPDIR:-/tmp}/weft-echo-syscalls.XXXXXX") || exit 1
strace_pid=""
# shellcheck disable=SC2317  # invoked from traps
cleanup() {
    if [ -n "$strace_pid" ]; then
        # Killing strace detaches it; the server (its child) is killed too.
        pkill -KILL -P "$strace_pid" 2>/dev/null
        kill -KILL "$strace_pid" 2>/dev/null
        wait "$strace_pid" 2>/dev/null
        strace_pid=""
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'echo "echo_syscalls.sh: interrupted" >&2; exit 130' INT
trap 'echo "echo_syscalls.sh: terminated" >&2; exit 143' TERM

strace -f -c -o "$workdir/strace.txt" "$server" --workers "$workers" 0 >"$workdir/server.out" 2>"$workdir/server.err" &
strace_pid=$!

port=""
for _ in $(seq 300); do
    port=$(awk '/^READY [0-9]+$/ { print $2; exit }' "$workdir/server.out")
    [ -n "$port" ] && break
    kill -0 "$strace_pid" 2>/dev/null || { cat "$workdir/server.err" >&2; die "the server exited before READY"; }
    sleep 0.1
done
[ -n "$port" ] || die "no READY line from the server within 30 s"
grep '^#' "$workdir/server.err" >&2

timeout -k 5 $((seconds + 60)) "$loadgen" --port "$port" --conns 1 --size 64 --seconds "$seconds" \
    >"$workdir/load.out" 2>"$workdir/load.err"
load_rc=$?
grep '^#' "$workdir/load.err" >&2
[ $load_rc -eq 0 ] || { cat "$workdir/load.err" >&2; die "echo_load failed (status $load_rc)"; }
grep '^BENCH ' "$workdir/load.out" | sed 's/^/# /' >&2

# Stop the server itself (strace's child), not strace: it must exit cleanly.
server_pid=$(pgrep -P "$strace_pid" | head -n 1)
[ -n "$server_pid" ] || die "cannot find the server process under strace"
kill -INT "$server_pid"
wait "$strace_pid"
strace_rc=$?
strace_pid=""
[ $strace_rc -eq 0 ] || { cat "$workdir/server.err" >&2; die "the server exited with status $strace_rc after SIGINT"; }

# echo_load: "# echo_load: round_trips=N warmup_round_trips=M ..." on stderr.
round_trips=$(awk '/round_trips=/ {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^round_trips=/) r = substr($i, 13)
            if ($i ~ /^warmup_round_trips=/) w = substr($i, 20)
        }
        print r + w; exit }' "$workdir/load.err")
is_pos_int "$round_trips" || die "echo_load reported no round trips"

# strace -c: "% time seconds usecs/call calls [errors] syscall" rows, then a
# "total" row. The calls column is the 4th; the name is the last field.
awk -v rt="$round_trips" '
    /^-/ || /^% time/ || NF < 5 { next }
    $NF == "total" { total = $4; next }
    { calls[$NF] = $4 }
    END {
        if (total == "") exit 1
        # The syscalls of the round trips; start-up ones round to 0.000.
        printf "# per round trip, by syscall (those >= 0.001):\n" > "/dev/stderr"
        for (s in calls)
            if (calls[s] / rt >= 0.0005) printf "#   %-22s %10.3f\n", s, calls[s] / rt | "sort -k3 -gr >&2"
        close("sort -k3 -gr >&2")
        printf "SYSCALLS echo conns=1 size=64 round_trips=%d syscalls=%d per_round_trip=%.3f io_uring_enter_per_round_trip=%.3f epoll_wait_per_round_trip=%.3f\n",
            rt, total, total / rt, calls["io_uring_enter"] / rt, calls["epoll_wait"] / rt
    }' "$workdir/strace.txt" || die "cannot read strace's summary ($workdir/strace.txt)"
