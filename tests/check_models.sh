#!/usr/bin/env bash
# tests/check_models.sh — exhaustive SPIN model checking of the kernel's
# lock-free protocols (the models live next to the code they describe):
#
#   kernel/local_queue.pml  LocalQueue: packed-head push / pop / steal_into
#   kernel/task_state.pml   TaskState transitions driven by run_task, wakers,
#                           the join handle (a task's await, a plain thread's
#                           join_wait and its retract), abort, reap
#   kernel/park.pml         Idle + Parker + park()/notify: no lost wake-up
#   kernel/driver_park.pml  the sleeping flag: Parker::park_in in the I/O
#                           driver and the eventfd write: no lost wake-up
#   kernel/tpc_wake.pml     the thread-per-core executor's cross-thread wake:
#                           queued flag, wake stack, sleeping flag: no lost wake-up
#
# Each run: `spin -a` (with the run's -D flags) generates pan.c; it is
# compiled and run with an exhaustive search: no -DBITSTATE, no hash
# compaction (only -DCOLLAPSE, which is lossless), a memory cap that stops
# the run rather than the machine (reported as a failure). Safety runs
# (-DSAFETY) check assertions and invalid end states (deadlock / lost wake);
# liveness runs (-a -f) check the model's LTL property under weak fairness.
# A run fails on any error and on any sign of an incomplete search
# ("Search not completed", "max search depth too small", a memory limit).
#
# Then, unless --no-mutations, every mutation listed in the models' headers
# is built (-DMUT_...) and must be *caught* (pan reports an error): a model
# that stops catching them has become vacuous.
#
# Usage: tests/check_models.sh [--no-mutations] [--only local_queue|task_state|park|driver_park|tpc_wake]
# Needs: spin (Debian package `spin`), cc. About 2 minutes on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
MUTATIONS=1
ONLY=""
while (($#)); do
    case "$1" in
    --no-mutations) MUTATIONS=0 ;;
    --only) ONLY=$2; shift ;;
    *) echo "usage: $0 [--no-mutations] [--only MODEL]" >&2; exit 2 ;;
    esac
    shift
done

for tool in spin cc; do
    command -v "$tool" >/dev/null || { echo "check_models: $tool not found (apt-get install spin gcc)" >&2; exit 1; }
done

# Memory cap per run in MB (a run that needs more fails as incomplete).
MEMLIM=${WEFT_SPIN_MEMLIM:-3000}
DEPTH=1000000
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TOTAL_START=$SECONDS
failed=0

# run NAME MODE MODEL [spin -D flags...]; MODE is safety or liveness
run() {
    local name=$1 mode=$2 model=$3
    shift 3
    local dir=$WORK/$name
    mkdir -p "$dir"
    local t0=$SECONDS
    (cd "$dir" && spin "$@" -a "$ROOT/kernel/$model.pml" >spin.out 2>&1) || {
        echo "FAIL $name: spin -a failed"; cat "$dir/spin.out"; failed=1; return
    }
    local ccflags=(-O2 -w -DMEMLIM="$MEMLIM" -DCOLLAPSE -DNFAIR=3) panflags=(-m"$DEPTH")
    if [ "$mode" = safety ]; then
        ccflags+=(-DSAFETY -DNOCLAIM)
    else
        panflags+=(-a -f)
    fi
    (cd "$dir" && cc "${ccflags[@]}" -o pan pan.c) || { echo "FAIL $name: pan.c did not compile"; failed=1; return; }
    (cd "$dir" && ./pan "${panflags[@]}" >pan.out 2>&1) || true
    local out=$dir/pan.out
    local states depth secs
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | head -n1)
    depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | head -n1)
    secs=$((SECONDS - t0))
    local bad=""
    grep -q "errors: 0" "$out" || bad="errors reported"
    if grep -qiE "search not completed|depth too small|MEMLIM|out of memory|^pan: error|too many processes" "$out"; then
        bad="${bad:+$bad; }incomplete search"
    fi
    if [ -n "$bad" ]; then
        echo "FAIL $name ($mode; spin $*): $bad"
        grep -v "^Depth=" "$out" | head -n 30
        if [ -f "$dir/$model.pml.trail" ]; then
            echo "--- counterexample (spin -t -p):"
            (cd "$dir" && cp "$ROOT/kernel/$model.pml" . && spin -t -p "$@" "$model.pml" | tail -n 60)
        fi
        failed=1
    else
        printf 'ok   %-28s %-8s %10s states  depth %5s  %4ds   (spin %s)\n' "$name" "$mode" "$states" "$depth" "$secs" "$*"
    fi
    rm -f "$dir/pan" "$dir/pan.c"
}

# mutant NAME MODEL [spin -D flags...]: the safety run must find an error
# (pan built with -O0: these runs stop at the first error, so compiling
# pan.c is most of their cost)
mutant() {
    local name=$1 model=$2
    shift 2
    local dir=$WORK/mut-$name
    mkdir -p "$dir"
    local t0=$SECONDS
    (cd "$dir" && spin "$@" -a "$ROOT/kernel/$model.pml" >spin.out 2>&1) || {
        echo "FAIL mutant $name: spin -a failed"; cat "$dir/spin.out"; failed=1; return
    }
    (cd "$dir" && cc -O0 -w -DMEMLIM="$MEMLIM" -DCOLLAPSE -DSAFETY -DNOCLAIM -o pan pan.c) || {
        echo "FAIL mutant $name: pan.c did not compile"; failed=1; return
    }
    (cd "$dir" && ./pan -m"$DEPTH" >pan.out 2>&1) || true
    local what
    what=$(grep -m1 -E "^pan:1: " "$dir/pan.out" | sed 's/^pan:1: //; s/ (at depth.*//' || true)
    if grep -q "errors: 0" "$dir/pan.out" || [ -z "$what" ]; then
        echo "FAIL mutant $name ($model; spin $*): SPIN did not catch it; the model no longer checks what it claims"
        failed=1
    else
        printf 'ok   caught %-34s %4ds  %s\n' "$name" "$((SECONDS - t0))" "$what"
    fi
    rm -f "$dir/pan" "$dir/pan.c"
}

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

spin -V | head -n1

if want local_queue; then
    echo "--- kernel/local_queue.pml"
    run lq-2thieves safety local_queue
    run lq-1thief-3steals safety local_queue -DTHIEVES=1 -DNTASKS=7 -DTRIES=3
    run lq-2thieves-live liveness local_queue -DNTASKS=5 -DOWNER_POPS=1
    run lq-1thief-live liveness local_queue -DTHIEVES=1 -DNTASKS=7 -DTRIES=3
fi
if want task_state; then
    echo "--- kernel/task_state.pml"
    run ts-all-actors safety task_state -DRMW_ATOMIC
    run ts-cas-steps safety task_state -DNO_FOREIGN
    run ts-cas-steps-foreign safety task_state -DNO_REAPER -DNO_ABORT -DNO_JOIN_WAIT
    run ts-init-notified safety task_state -DRMW_ATOMIC -DINIT_NOTIFIED
    run ts-borrowed-timer safety task_state -DRMW_ATOMIC -DBORROWED_TIMER -DNO_FOREIGN
    run ts-borrowed-timer-cas safety task_state -DBORROWED_TIMER -DNO_FOREIGN -DNO_JOIN_WAIT
fi
if want park; then
    echo "--- kernel/park.pml"
    run park-2w safety park -DNW=2 -DNPLAIN=2
    run park-3w-idle safety park -DNW=3 -DNPLAIN=0 -DSTART_PARKED
    run park-2w-live liveness park -DNW=2 -DNPLAIN=2
fi
if want driver_park; then
    echo "--- kernel/driver_park.pml"
    run driver-park-3x2 safety driver_park
    run driver-park-4x3 safety driver_park -DNPARK=4 -DNWAKE=3
fi
if want tpc_wake; then
    echo "--- kernel/tpc_wake.pml"
    run tpc-wake-2 safety tpc_wake
    run tpc-wake-3 safety tpc_wake -DNWAKE=3
fi

if ((MUTATIONS)); then
    echo "--- mutations (each must be caught)"
    if want local_queue; then
        mutant lq-steal-no-cas local_queue -DMUT_STEAL_NO_CAS
        mutant lq-push-real-head local_queue -DMUT_PUSH_REAL_HEAD
        mutant lq-no-steal-guard local_queue -DMUT_NO_STEAL_GUARD
        mutant lq-finish-store local_queue -DMUT_FINISH_STORE
    fi
    if want task_state; then
        mutant ts-idle-ignores-notified task_state -DRMW_ATOMIC -DMUT_IDLE_IGNORES_NOTIFIED
        mutant ts-wake-running-submits task_state -DRMW_ATOMIC -DMUT_WAKE_RUNNING_SUBMITS
        mutant ts-fast-ignores-refs task_state -DRMW_ATOMIC -DMUT_FAST_IGNORES_REFS
        mutant ts-byref-no-ref task_state -DRMW_ATOMIC -DMUT_BYREF_NO_REF
        mutant ts-complete-no-keep task_state -DRMW_ATOMIC -DMUT_COMPLETE_NO_KEEP
        mutant ts-byref-no-reset task_state -DNO_FOREIGN -DMUT_BYREF_NO_RESET
        mutant ts-join-drop-clears-waker task_state -DRMW_ATOMIC -DMUT_JOIN_DROP_CLEARS_WAKER
        mutant ts-unref-no-refuse task_state -DRMW_ATOMIC -DMUT_UNREF_NO_REFUSE
        mutant ts-solo-ignores-refs task_state -DRMW_ATOMIC -DMUT_SOLO_IGNORES_REFS
        mutant ts-no-retract task_state -DRMW_ATOMIC -DMUT_NO_RETRACT
        mutant ts-retract-no-wait task_state -DRMW_ATOMIC -DMUT_RETRACT_NO_WAIT
        mutant ts-retract-any-waker task_state -DRMW_ATOMIC -DMUT_RETRACT_ANY_WAKER
        mutant ts-timer-clones task_state -DRMW_ATOMIC -DBORROWED_TIMER -DNO_FOREIGN -DMUT_TIMER_CLONES
        mutant ts-timer-no-firing task_state -DRMW_ATOMIC -DBORROWED_TIMER -DNO_FOREIGN -DMUT_TIMER_NO_FIRING
    fi
    if want park; then
        mutant park-no-recheck park -DNW=2 -DNPLAIN=2 -DMUT_NO_RECHECK
        mutant park-recheck-if-searching park -DNW=2 -DNPLAIN=2 -DMUT_RECHECK_IF_SEARCHING
        mutant park-no-push-fence park -DNW=2 -DNPLAIN=2 -DMUT_NO_PUSH_FENCE
        mutant park-no-park-fence park -DNW=2 -DNPLAIN=2 -DMUT_NO_PARK_FENCE
        mutant park-parker-forgets park -DNW=2 -DNPLAIN=2 -DMUT_PARKER_NO_NOTIFIED_STATE
    fi
    if want driver_park; then
        mutant driver-park-wake-only-parked driver_park -DMUT_WAKE_ONLY_PARKED
        mutant driver-park-no-repost driver_park -DMUT_NO_REPOST
        mutant driver-park-store-not-cas driver_park -DMUT_CAS_BEFORE_CHECK
    fi
    if want tpc_wake; then
        mutant tpc-wake-clear-before-next tpc_wake -DMUT_CLEAR_BEFORE_NEXT -DNWAKE=3
        mutant tpc-wake-no-recheck tpc_wake -DMUT_NO_RECHECK
        mutant tpc-wake-never-signal tpc_wake -DMUT_SIGNAL_ALWAYS_SKIP
    fi
fi

if ((failed)); then
    echo "check_models: FAILED after $((SECONDS - TOTAL_START))s" >&2
    exit 1
fi
echo "check_models: all models verified exhaustively, all mutations caught, in $((SECONDS - TOTAL_START))s"
