// arch/arch.h — per-ISA primitives, selected at compile time.
//
// Every ISA header defines exactly:
//   WEFT_CACHE_LINE          bytes between two independently-written hot fields
//                            (the destructive-interference size, including the
//                            adjacent-line prefetcher where one exists)
//   weft_arch_cpu_relax()    a spin-wait hint
//   weft_arch_cycles()       a cheap, monotonic-per-CPU tick counter (not
//                            serialising; calibrate against the clock before
//                            converting to time)
//   weft_arch_fence_after_rmw()  makes the atomic read-modify-write just
//                            before it a full (seq_cst) fence for the accesses
//                            around it: nothing on x86-64, where every
//                            lock-prefixed instruction is one; a real fence
//                            elsewhere (Linux's smp_mb__after_atomic). Only
//                            right after an RMW that is known to have run.
//   WEFT_ARCH_NAME           a string for diagnostics
// Nothing here allocates or calls the OS. No STL.
#ifndef WEFT_ARCH_ARCH_H
#define WEFT_ARCH_ARCH_H

#include <stdint.h>

#define WEFT_ARCH_INSIDE 1
#if defined(__x86_64__)
#include "x86_64/arch.h"
#elif defined(__aarch64__)
#include "aarch64/arch.h"
#elif defined(__s390x__)
#include "s390x/arch.h"
#elif defined(__powerpc64__)
#include "powerpc64/arch.h"
#else
#include "generic/arch.h"
#endif
#undef WEFT_ARCH_INSIDE

#endif
