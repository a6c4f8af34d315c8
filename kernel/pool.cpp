// kernel/pool.cpp — see pool.h.
#include "pool.h"

#include "../port/port.h"

namespace weft::kernel::pool {
namespace {

constexpr uint32_t CLASSES = MAX_POOLED / GRANULE;

struct FreeBlock {
    FreeBlock* next;
};

struct Cache {
    FreeBlock* head[CLASSES];
    uint32_t count[CLASSES];
};

// initial-exec: no __tls_get_addr call on the spawn path. The cache is one
// pointer, well within glibc's static TLS surplus for dlopen()ed libraries.
__attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache = nullptr;

inline uint32_t class_of(size_t size) { return (uint32_t)((size + GRANULE - 1) / GRANULE) - 1; }

}  // namespace

void* alloc(size_t size) {
    Cache* c = t_cache;
    if (c && size <= MAX_POOLED && size > 0) {
        uint32_t k = class_of(size);
        FreeBlock* b = c->head[k];
        if (b) {
            c->head[k] = b->next;
            c->count[k]--;
            return b;
        }
        return port::alloc((size_t)(k + 1) * GRANULE);
    }
    if (size <= MAX_POOLED) size = ((size + GRANULE - 1) / GRANULE) * GRANULE;
    return port::alloc(size);
}

void free(void* p, size_t size) {
    if (!p) return;
    Cache* c = t_cache;
    if (c && size <= MAX_POOLED && size > 0) {
        uint32_t k = class_of(size);
        if (c->count[k] < MAX_CACHED_PER_CLASS) {
            // SAFETY: p is a dead block of at least GRANULE bytes; reuse its
            // first word as the free-list link.
            FreeBlock* b = static_cast<FreeBlock*>(p);
            b->next = c->head[k];
            c->head[k] = b;
            c->count[k]++;
            return;
        }
    }
    port::free(p);
}

void thread_init() {
    if (t_cache) return;
    Cache* c = static_cast<Cache*>(port::alloc(sizeof(Cache)));
    if (!c) return;  // no cache: plain malloc, still correct
    for (uint32_t i = 0; i < CLASSES; i++) {
        c->head[i] = nullptr;
        c->count[i] = 0;
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
