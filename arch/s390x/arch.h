// arch/s390x/arch.h — IBM Z (big-endian).
// Cache line: 256 bytes on every z/Architecture machine.
// Cycle counter: STCKF (store clock fast), the TOD clock; bit 51 ticks every
// microsecond, so the raw value is a fine-grained monotonic count.
#ifndef WEFT_ARCH_INSIDE
#error "include arch/arch.h, not arch/s390x/arch.h"
#endif
#define WEFT_CACHE_LINE 256
#define WEFT_ARCH_NAME "s390x"
static inline void weft_arch_cpu_relax(void) { __asm__ __volatile__("" ::: "memory"); }
static inline void weft_arch_fence_after_rmw(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline uint64_t weft_arch_cycles(void) {
    uint64_t v;
    __asm__ __volatile__("stckf %0" : "=Q"(v) : : "cc");
    return v;
}
