#!/usr/bin/env bash
# tests/fuzz/build.sh OUTDIR — builds the libFuzzer targets fuzz_abi,
# fuzz_queue and fuzz_tpc into OUTDIR with clang++ -fsanitize=fuzzer,address,undefined,
# compiling the kernel sources directly (WEFT_KERNEL_SOURCES in CMakeLists.txt).
# CXX overrides the compiler (default: clang++). JOBS: parallel compiles (2).
set -euo pipefail
OUT=${1:?usage: tests/fuzz/build.sh OUTDIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CXX=${CXX:-clang++}
JOBS=${JOBS:-2}
mkdir -p "$OUT/obj"
OUT=$(cd "$OUT" && pwd)
FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=undefined -I"$ROOT/include")
# The kernel sources, as listed in CMakeLists.txt (WEFT_KERNEL_SOURCES).
SRCS=$(sed -n '/^set(WEFT_KERNEL_SOURCES/,/)/p' "$ROOT/CMakeLists.txt" | grep -oE '[A-Za-z0-9_/]+\.cpp')
[ -n "$SRCS" ] || { echo "build.sh: no WEFT_KERNEL_SOURCES found" >&2; exit 1; }
# io_uring: the raw-syscall ring (CMake adds it, or liburing's, outside that
# list); the fuzz build does not link liburing.
SRCS="$SRCS port/linux/uring_raw.cpp"
compile() {  # src obj extra-flags...
    local src=$1 obj=$2; shift 2
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ]; then
        "$CXX" "${FLAGS[@]}" "$@" -c "$src" -o "$obj"
    fi
}
export -f compile
export CXX
pids=()
objs=()
for s in $SRCS; do
    o="$OUT/obj/$(echo "$s" | tr / _).o"
    objs+=("$o")
    compile "$ROOT/$s" "$o" -fsanitize=fuzzer-no-link &
    pids+=($!)
    if ((${#pids[@]} >= JOBS)); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
compile "$ROOT/tests/fuzz/fuzz_abi.cpp" "$OUT/obj/fuzz_abi.o" -fsanitize=fuzzer-no-link &
a=$!
compile "$ROOT/tests/fuzz/fuzz_queue.cpp" "$OUT/obj/fuzz_queue.o" -fsanitize=fuzzer-no-link &
q=$!
compile "$ROOT/tests/fuzz/fuzz_tpc.cpp" "$OUT/obj/fuzz_tpc.o" -fsanitize=fuzzer-no-link &
c=$!
wait $a; wait $q; wait $c
"$CXX" -fsanitize=fuzzer,address,undefined "$OUT/obj/fuzz_abi.o" "${objs[@]}" -lpthread -o "$OUT/fuzz_abi"
"$CXX" -fsanitize=fuzzer,address,undefined "$OUT/obj/fuzz_queue.o" -lpthread -o "$OUT/fuzz_queue"
"$CXX" -fsanitize=fuzzer,address,undefined "$OUT/obj/fuzz_tpc.o" "${objs[@]}" -lpthread -o "$OUT/fuzz_tpc"
echo "built $OUT/fuzz_abi $OUT/fuzz_queue $OUT/fuzz_tpc"
