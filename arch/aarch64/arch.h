// arch/aarch64/arch.h — 64-bit Arm.
// Cache line: 64 bytes on most cores, 128 on Apple M-series and some Neoverse
// parts; pad to 128 so one binary is safe everywhere.
// Cycle counter: CNTVCT_EL0, the virtual timer count (constant frequency,
// readable from EL0 on Linux).
#ifndef WEFT_ARCH_INSIDE
#error "include arch/arch.h, not arch/aarch64/arch.h"
#endif
#define WEFT_CACHE_LINE 128
#define WEFT_ARCH_NAME "aarch64"
static inline void weft_arch_cpu_relax(void) { __asm__ __volatile__("yield" ::: "memory"); }
static inline void weft_arch_fence_after_rmw(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline uint64_t weft_arch_cycles(void) {
    uint64_t v;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}
