// kernel/pool.h — per-thread caches of fixed-size blocks for task memory.
//
// A spawn must cost at most one allocation, and usually none: each worker
// thread keeps a free list per size class (multiples of 64 bytes up to
// MAX_POOLED, at most MAX_CACHED_BYTES_PER_CLASS each). Blocks are ordinary malloc blocks, so a block allocated on one
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
// A thread keeps at most this many bytes of free blocks per size class, and
// at most MAX_CACHED_BYTES in all: enough for a task that spawns 10,000
// children before awaiting them to recycle every frame without malloc, and
// a bound on what an idle worker holds on to.
inline constexpr size_t MAX_CACHED_BYTES_PER_CLASS = 4u << 20;
inline constexpr size_t MAX_CACHED_BYTES = 16u << 20;
inline constexpr uint32_t CLASSES = MAX_POOLED / GRANULE;

struct FreeBlock {
    FreeBlock* next;
};

struct Cache {
    FreeBlock* head[CLASSES];
    uint32_t count[CLASSES];
    size_t bytes;  // cached in all classes
};

// This thread's cache, or nullptr (not a worker). initial-exec: no
// __tls_get_addr on the spawn path.
extern __attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache;

inline uint32_t class_of(size_t size) { return (uint32_t)((size + GRANULE - 1) / GRANULE) - 1; }

void* alloc_slow(size_t size);
void free_slow(void* p, size_t size);

// Allocates size bytes (16-byte aligned). nullptr when out of memory.
inline void* alloc(size_t size) {
    Cache* c = t_cache;
    if (c && size - 1 < MAX_POOLED) {
        uint32_t k = class_of(size);
        if (FreeBlock* b = c->head[k]) {
            c->head[k] = b->next;
            c->count[k]--;
            c->bytes -= (k + 1) * GRANULE;
            return b;
        }
    }
    return alloc_slow(size);
}

// Frees a block from alloc() with the same size.
inline void free(void* p, size_t size) {
    Cache* c = t_cache;
    if (c && p && size - 1 < MAX_POOLED) {
        uint32_t k = class_of(size);
        size_t block = (k + 1) * GRANULE;
        if ((c->count[k] + 1) * block <= MAX_CACHED_BYTES_PER_CLASS && c->bytes + block <= MAX_CACHED_BYTES) {
            // SAFETY: p is a dead block of at least GRANULE bytes; its first
            // word becomes the free-list link.
            FreeBlock* b = static_cast<FreeBlock*>(p);
            b->next = c->head[k];
            c->head[k] = b;
            c->count[k]++;
            c->bytes += block;
            return;
        }
    }
    free_slow(p, size);
}

// Gives the calling thread a cache (workers call this at start) / releases it.
void thread_init();
void thread_exit();

}  // namespace weft::kernel::pool

#endif
