// arch/powerpc64/arch.h — POWER (either endianness).
// Cache line: 128 bytes. Cycle counter: the time base register (mftb).
#ifndef WEFT_ARCH_INSIDE
#error "include arch/arch.h, not arch/powerpc64/arch.h"
#endif
#define WEFT_CACHE_LINE 128
#define WEFT_ARCH_NAME "powerpc64"
static inline void weft_arch_cpu_relax(void) { __asm__ __volatile__("or 27,27,27" ::: "memory"); }
static inline void weft_arch_fence_after_rmw(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline uint64_t weft_arch_cycles(void) { return __builtin_ppc_get_timebase(); }
