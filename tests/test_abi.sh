#!/bin/sh
# tests/test_abi.sh — the ELF interface of libweft.so.
#
# Why: the design promises that a Rust, Go or Python program can load
# libweft.so without a C++ runtime, and that the library exports the weft_*
# ABI and nothing else (the version script in linker/weft.map). Both break
# silently — one stray std:: call, one missing -fvisibility — so ctest checks
# them on every build:
#   1. DT_NEEDED lists only the C runtime (libc, libm, ld-linux, libgcc_s,
#      libpthread/libdl/librt on old glibc): no libstdc++, no libc++.
#      Skipped under sanitizers (argument 2 = 0): their link adds libasan /
#      libtsan and, with them, libstdc++ to DT_NEEDED whatever the code does.
#   2. no undefined symbol comes from a C++ runtime (operator new/delete,
#      std::, __cxa_* other than glibc's __cxa_finalize/__cxa_atexit,
#      __gxx_personality_v0): the code itself needs no libstdc++. Checked in
#      every build, sanitizers included.
#   3. every defined dynamic symbol is weft_* (or the version node WEFT_0.1),
#      the core entry points are there, and they carry the WEFT_0.1 version.
#
# Usage: test_abi.sh path/to/libweft.so [check_deps=1]
set -u
lib="${1:?usage: test_abi.sh libweft.so [check_deps]}"
check_deps="${2:-1}"
fail=0

if [ ! -f "$lib" ]; then
    echo "FAIL: $lib does not exist"
    exit 1
fi
for tool in readelf nm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "FAIL: $tool not found (install binutils)"
        exit 1
    fi
done

# ---- 1. dependencies ------------------------------------------------------------
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
echo "DT_NEEDED: $(echo $needed)"
if [ "$check_deps" = "1" ]; then
    case "$needed" in
        *libstdc++*|*libc++*) echo "FAIL: libweft.so depends on a C++ runtime: $(echo $needed)"; fail=1 ;;
    esac
    for n in $needed; do
        case "$n" in
            libc.so.*|libm.so.*|libgcc_s.so.*|ld-linux*.so.*|libpthread.so.*|libdl.so.*|librt.so.*) ;;
            *) echo "FAIL: unexpected dependency $n (only the C runtime is allowed)"; fail=1 ;;
        esac
    done
    case " $(echo $needed) " in
        *" libc.so."*) ;;
        *) echo "FAIL: libc is not among the dependencies: $needed"; fail=1 ;;
    esac
else
    echo "(sanitizer build: dependency allow-list skipped)"
fi

# ---- 2. no C++ runtime symbol is used ----------------------------------------------
cxx=$(nm -D --undefined-only "$lib" | awk '$1 == "U" { print $2 }' | sed 's/@.*//' |
      grep -E '^(_Zn[wa]|_Zd[la]|_ZSt|_ZNSt|_ZNKSt|_ZTVN10__cxxabiv|_ZTISt|__cxa_|__gxx_personality|_Unwind_Resume$)' |
      grep -Ev '^__cxa_(finalize|atexit|thread_atexit_impl)$')
if [ -n "$cxx" ]; then
    echo "FAIL: libweft.so needs C++ runtime symbols:"
    echo "$cxx" | sed 's/^/    /'
    fail=1
fi

# ---- 3. exports -------------------------------------------------------------------
syms=$(nm -D --defined-only "$lib" | awk '{ print $NF }' | sed 's/@.*//' | sort -u)
if [ -z "$syms" ]; then
    echo "FAIL: no defined dynamic symbols"
    exit 1
fi
count=0
for s in $syms; do
    count=$((count + 1))
    case "$s" in
        weft_*|WEFT_0.1) ;;
        *) echo "FAIL: exported symbol outside the weft_ namespace: $s"; fail=1 ;;
    esac
done
for want in weft_version weft_strerror weft_runtime_new weft_runtime_free weft_spawn weft_join_wait \
            weft_join_take weft_join_abort weft_join_free weft_task_alloc weft_task_spawn weft_waker_noop; do
    echo "$syms" | grep -qx "$want" || { echo "FAIL: $want is not exported"; fail=1; }
done
# The ABI is versioned: the symbols carry the WEFT_0.1 node.
if ! nm -D --defined-only "$lib" | grep -q 'weft_spawn@@WEFT_0\.1'; then
    if ! readelf --dyn-syms -W "$lib" | grep -q 'weft_spawn@@WEFT_0\.1'; then
        echo "FAIL: weft_spawn is not versioned WEFT_0.1"
        fail=1
    fi
fi
echo "exported symbols: $count"

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "test_abi: ok"
