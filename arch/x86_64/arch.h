// arch/x86_64/arch.h — x86-64.
// Cache line: 64 bytes, but the L2 spatial prefetcher pulls lines in adjacent
// pairs, so two hot fields closer than 128 bytes still false-share. Pad to 128.
// Cycle counter: RDTSC (invariant TSC on every x86-64 CPU Linux runs weft on;
// constant rate, not serialising, which is what a poll-time probe wants).
#ifndef WEFT_ARCH_INSIDE
#error "include arch/arch.h, not arch/x86_64/arch.h"
#endif
#define WEFT_CACHE_LINE 128
#define WEFT_ARCH_NAME "x86_64"
static inline void weft_arch_cpu_relax(void) { __builtin_ia32_pause(); }
// Locked instructions (lock cmpxchg, xadd, xchg) are full barriers on x86-64
// (Intel SDM vol. 3, 9.2.2): only the compiler must not move accesses across.
static inline void weft_arch_fence_after_rmw(void) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
static inline uint64_t weft_arch_cycles(void) { return __builtin_ia32_rdtsc(); }
