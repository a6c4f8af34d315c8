// bench/alloc_count.h — counts heap allocations in a benchmark's timed loop.
//
// The executable's malloc family interposes glibc's for the whole process
// (weft's own allocations included) and forwards to it, counting only while
// g_count_allocs is set. Include it in exactly one translation unit of an
// executable (weft-bench and weft-micro each have one).
#ifndef WEFT_BENCH_ALLOC_COUNT_H
#define WEFT_BENCH_ALLOC_COUNT_H

#include <atomic>
#include <cstddef>
#include <cstdint>

std::atomic<bool> g_count_allocs{false};
std::atomic<uint64_t> g_allocs{0};

namespace {
inline void count_alloc() {
    if (g_count_allocs.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* malloc(size_t n) {
    count_alloc();
    return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
    count_alloc();
    return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
    count_alloc();
    return __libc_realloc(p, n);
}
void* memalign(size_t al, size_t n) {
    count_alloc();
    return __libc_memalign(al, n);
}
void* aligned_alloc(size_t al, size_t n) {
    count_alloc();
    return __libc_memalign(al, n);
}
int posix_memalign(void** out, size_t al, size_t n) {
    count_alloc();
    void* p = __libc_memalign(al, n);
    if (!p) return 12;  // ENOMEM
    *out = p;
    return 0;
}
}  // extern "C"

#endif
