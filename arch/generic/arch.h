// arch/generic/arch.h — any other ISA.
// Cache line: 64 bytes (the common size). There is no portable cycle counter,
// so weft_arch_cycles() falls back to the monotonic clock in nanoseconds.
#ifndef WEFT_ARCH_INSIDE
#error "include arch/arch.h, not arch/generic/arch.h"
#endif
#include <time.h>
#define WEFT_CACHE_LINE 64
#define WEFT_ARCH_NAME "generic"
static inline void weft_arch_cpu_relax(void) { __asm__ __volatile__("" ::: "memory"); }
static inline void weft_arch_fence_after_rmw(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline uint64_t weft_arch_cycles(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
