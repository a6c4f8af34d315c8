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
// A thread keeps at most this many bytes of free blocks per size class:
// enough for a task that spawns 10,000 children before awaiting them to
// recycle every frame without malloc. Classes above 256 bytes keep fewer
// (MAX_CACHED_BYTES_LARGE), which bounds what one thread holds to ~32 MiB.
inline constexpr size_t MAX_CACHED_BYTES_PER_CLASS = 4u << 20;
inline constexpr size_t MAX_CACHED_BYTES_LARGE = 256u << 10;
inline constexpr uint32_t CLASSES = MAX_POOLED / GRANULE;

struct FreeBlock {
    FreeBlock* next;
};

struct Cache {
    FreeBlock* head[CLASSES];
    uint32_t room[CLASSES];  // blocks this class may still cache
};

// This thread's cache, or nullptr (not a worker). initial-exec: no
// __tls_get_addr on the spawn path.
extern constinit __attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache;

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
            c->room[k]++;
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
        if (c->room[k] != 0) {
            // SAFETY: p is a dead block of at least GRANULE bytes; its first
            // word becomes the free-list link.
            FreeBlock* b = static_cast<FreeBlock*>(p);
            b->next = c->head[k];
            c->head[k] = b;
            c->room[k]--;
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
