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
    for (uint32_t i = 0; i < CLASSES; i++) c->head[i] = nullptr;
    c->cached_bytes = 0;
    t_cache = c;
}

void trim(uint64_t keep) {
    Cache* c = t_cache;
    if (!c) return;
    for (uint32_t i = CLASSES; i-- > 0 && c->cached_bytes > keep;) {
        while (FreeBlock* b = c->head[i]) {
            if (c->cached_bytes <= keep) break;
            c->head[i] = b->next;
            c->cached_bytes -= class_bytes(i);
            port::free(b);
        }
    }
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
