// kernel/pool.cpp — see pool.h.
#include "pool.h"

#include "../port/port.h"

namespace weft::kernel::pool {
constinit __attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache = nullptr;

void* alloc_slow(size_t size) {
    // Pooled sizes are rounded to their class so the block can be cached
    // wherever it is freed.
    if (size - 1 < MAX_POOLED) size = (size_t)(class_of(size) + 1) * GRANULE;
    return port::alloc(size);
}

void free_slow(void* p, size_t) { port::free(p); }

void thread_init() {
    if (t_cache) return;
    Cache* c = static_cast<Cache*>(port::alloc(sizeof(Cache)));
    if (!c) return;  // no cache: plain malloc, still correct
    for (uint32_t i = 0; i < CLASSES; i++) {
        size_t block = (size_t)(i + 1) * GRANULE;
        c->head[i] = nullptr;
        c->room[i] = (uint32_t)((block <= 256 ? MAX_CACHED_BYTES_PER_CLASS : MAX_CACHED_BYTES_LARGE) / block);
    }
    t_cache = c;
}

void thread_exit() {
    Cache* c = t_cache;
    if (!c) return;
    t_cache = nullptr;
    for (uint32_t i = 0; i < CLASSES; i++) {
        FreeBlock* b = c->head[i];
        while (b) {
            FreeBlock* n = b->next;
            port::free(b);
            b = n;
        }
    }
    port::free(c);
}

}  // namespace weft::kernel::pool
