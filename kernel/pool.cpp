// kernel/pool.cpp — see pool.h.
#include "pool.h"

#include "../port/port.h"

namespace weft::kernel::pool {
constinit __attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache = nullptr;

// A block is carved out of a malloc block one line larger: the first line
// boundary at least a pointer past malloc's address starts it, and the word
// before it keeps that address for the free. Not posix_memalign: glibc's
// memalign takes no thread cache and splits and consolidates chunks on every
// call; spawn_many_local, where half the blocks come from the heap each round
// (their tasks finished on, and were cached by, the other worker), ran 20%
// slower with it.
void* alloc_slow(size_t size) {
    // Whole lines (pool.h); pooled sizes are their class's size, so the block
    // can be cached wherever it is freed.
    if (size == 0) size = 1;
    if (size > SIZE_MAX - 2 * GRANULE) return nullptr;
    size = (size + GRANULE - 1) & ~(GRANULE - 1);
    char* raw = static_cast<char*>(port::alloc(size + GRANULE));
    if (!raw) return nullptr;
    // SAFETY: malloc aligns to at least a pointer's size (16 on x86-64 glibc),
    // so p lies sizeof(void*) to GRANULE bytes past raw, inside raw's
    // size + GRANULE bytes, with size bytes after it; the word before p is
    // raw's, pointer-aligned, and nobody else writes it (heap_free reads it).
    char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + GRANULE) & ~(uintptr_t)(GRANULE - 1));
    reinterpret_cast<void**>(p)[-1] = raw;
    return p;
}

namespace {
// SAFETY: p came from alloc_slow, which stored malloc's address in the word
// before it.
void heap_free(void* p) { port::free(static_cast<void**>(p)[-1]); }
}  // namespace

void free_slow(void* p, size_t) {
    if (p) heap_free(p);
}

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
            heap_free(b);
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
            heap_free(b);
            b = n;
        }
    }
    port::free(c);
}

}  // namespace weft::kernel::pool
