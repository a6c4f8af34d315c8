// kernel/pool.h — per-thread caches of fixed-size blocks for task memory.
//
// A spawn must cost at most one allocation, and usually none: each worker
// thread keeps a free list per size class (multiples of 64 bytes up to
// MAX_POOLED). Blocks are ordinary malloc blocks, so a block allocated on one
// thread may be freed on any other (it joins that thread's cache, or goes
// back to free() when the cache is full). Threads without a cache (anything
// that is not a worker) use malloc/free directly.
//
// Thread safety: each cache is touched only by its own thread (thread_local).
#ifndef WEFT_KERNEL_POOL_H
#define WEFT_KERNEL_POOL_H

#include <stddef.h>
#include <stdint.h>

namespace weft::kernel::pool {

inline constexpr size_t GRANULE = 64;
inline constexpr size_t MAX_POOLED = 4096;
inline constexpr uint32_t MAX_CACHED_PER_CLASS = 1024;

// Allocates size bytes (16-byte aligned). nullptr when out of memory.
void* alloc(size_t size);
// Frees a block from alloc() with the same size.
void free(void* p, size_t size);

// Gives the calling thread a cache (workers call this at start) / releases it.
void thread_init();
void thread_exit();

}  // namespace weft::kernel::pool

#endif
