// kernel/pool.cpp — see pool.h.
#include "pool.h"

#include <atomic>

#include "../port/port.h"

namespace weft::kernel::pool {
constinit __attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache = nullptr;

namespace {

// The process-wide depot of whole batches (pool.h). Every thread with a
// cache, of every runtime, shares it.
struct Depot {
    port::Mutex mu;
    FreeBlock* batches[CLASSES];  // guarded by mu
    // Written under mu; read without it by depot_bytes (a snapshot).
    std::atomic<uint64_t> bytes;
    // Threads with a cache. When the last one exits nobody can take from
    // the depot any more, so it is emptied: a program that has freed its
    // runtimes holds no memory here (Valgrind's leak check would call the
    // blocks, reachable only through interior pointers, possibly lost).
    std::atomic<uint32_t> caches;
};
constinit Depot depot{};

uint64_t batch_bytes(uint32_t k) { return BATCH * class_bytes(k); }

// SAFETY: p came from alloc_slow, which stored malloc's address in the word
// before it.
void heap_free(void* p) { port::free(static_cast<void**>(p)[-1]); }

void free_list(FreeBlock* b) {
    while (b) {
        FreeBlock* n = b->next;
        heap_free(b);
        b = n;
    }
}

// Takes a whole batch of class k (its blocks stay linked through next), or
// gives it back to the heap when the depot holds its budget already.
void depot_put(uint32_t k, FreeBlock* batch) {
    {
        port::LockGuard g(depot.mu);
        uint64_t bytes = depot.bytes.load(std::memory_order_relaxed);
        if (bytes + batch_bytes(k) <= MAX_CACHED_BYTES) {
            batch->next_batch = depot.batches[k];
            depot.batches[k] = batch;
            depot.bytes.store(bytes + batch_bytes(k), std::memory_order_relaxed);
            return;
        }
    }
    free_list(batch);  // outside the lock
}

FreeBlock* depot_take(uint32_t k) {
    port::LockGuard g(depot.mu);
    FreeBlock* batch = depot.batches[k];
    if (batch) {
        depot.batches[k] = batch->next_batch;
        depot.bytes.store(depot.bytes.load(std::memory_order_relaxed) - batch_bytes(k), std::memory_order_relaxed);
    }
    return batch;
}

// ---- caches of threads that are not the runtime's ----
// A thread outside the runtimes that spawns (the main thread, an accept
// thread, a foreign caller of the C ABI) allocates task blocks, and it often
// frees them too (its join handles). It gets a cache at its first pooled
// alloc or free (alloc_slow, free_slow), so that its blocks cycle through
// its lists and the depot instead of malloc and free: spawn_many_remote, 10,000
// spawns from the main thread a round, spent about a third of its
// instructions in glibc's malloc and free. Such a cache is not counted in
// depot.caches (the runtimes' threads: the last of them to exit empties the
// depot), and goes when its thread exits (a pthread key destructor) or, for
// the thread that calls exit(), at the library's destructor (libweft.so is
// linked -z nodelete, so that destructor's code stays mapped after a
// dlclose). Not covered: a thread still running at exit() keeps its cache
// (its blocks are then only reachable from its TLS), and a thread whose
// first pooled alloc or free comes from another library's key destructor in
// glibc's last round of them (PTHREAD_DESTRUCTOR_ITERATIONS) leaks its cache.
constinit __attribute__((tls_model("initial-exec"))) thread_local bool t_foreign = false;
// The thread is exiting (or has exited) its foreign cache: no new one.
constinit __attribute__((tls_model("initial-exec"))) thread_local bool t_foreign_done = false;

// An empty cache, or nullptr (out of memory).
Cache* new_cache() {
    Cache* c = static_cast<Cache*>(port::alloc(sizeof(Cache)));
    if (c)
        for (uint32_t i = 0; i < CLASSES; i++) c->cls[i] = ClassCache{nullptr, nullptr, 0};
    return c;
}

// Whole batches to the depot, a partial list to the heap; the Cache freed.
void release_cache(Cache* c) {
    for (uint32_t i = 0; i < CLASSES; i++) {
        ClassCache& cc = c->cls[i];
        if (cc.full) depot_put(i, cc.full);
        if (cc.count == BATCH) depot_put(i, cc.head);
        else free_list(cc.head);
    }
    port::free(c);
}

void foreign_exit(void*) {
    Cache* c = t_cache;
    t_foreign_done = true;
    if (c && t_foreign) {
        t_cache = nullptr;
        t_foreign = false;
        release_cache(c);
    }
    // No runtime thread left to take them: give the depot back too (also
    // when this thread had no cache: at exit(), a batch another foreign
    // thread put there after the last runtime thread's trim). acquire: pairs
    // with thread_exit's acq_rel decrement, so the last runtime thread's
    // puts are in the depot that trim empties (under its lock).
    if (depot.caches.load(std::memory_order_acquire) == 0) trim(0);
}

// This thread's cache, made now if it is not a runtime thread that has one
// already; nullptr when it cannot have one (exiting, or out of memory).
Cache* foreign_cache() {
    if (t_cache) return t_cache;
    if (t_foreign_done) return nullptr;
    Cache* c = new_cache();
    if (!c) return nullptr;
    if (!port::thread_exit_hook(foreign_exit, c)) {
        port::free(c);
        t_foreign_done = true;  // no way to give it back at exit: plain malloc
        return nullptr;
    }
    t_cache = c;
    t_foreign = true;
    return c;
}

// The thread that calls exit() runs no key destructor: its cache goes here.
__attribute__((destructor)) void foreign_exit_at_process_exit() { foreign_exit(nullptr); }

}  // namespace

uint64_t depot_bytes() { return depot.bytes.load(std::memory_order_relaxed); }

void retire_batch(Cache* c, uint32_t k) {
    ClassCache& cc = c->cls[k];
    if (cc.full) {
        // A foreign thread with no runtime thread left to reuse them (its
        // runtimes are freed): back to the heap, not into the depot.
        // relaxed: a hint about where memory is kept; a stale answer puts a
        // batch in the depot, which the next trim or exit empties.
        if (t_foreign && depot.caches.load(std::memory_order_relaxed) == 0) free_list(cc.full);
        else depot_put(k, cc.full);
    }
    cc.full = cc.head;
    cc.head = nullptr;
    cc.count = 0;
}

// Without a batch in the depot, a block is carved out of a malloc block one
// line larger: the first line boundary at least a pointer past malloc's
// address starts it, and the word before it keeps that address for the
// free. Not posix_memalign: glibc's memalign takes no thread cache and splits
// and consolidates chunks on every call; spawn_many_local, where half the
// blocks came from the heap each round (their tasks finished on, and were
// cached by, the other worker), ran 20% slower with it.
void* alloc_slow(size_t size) {
    // This thread's cache, made now if it had none.
    if (Cache* c = size - 1 < MAX_POOLED ? foreign_cache() : nullptr) {
        // This thread's lists of the class are empty (alloc_cached): a batch
        // from the depot, if it has one, before the heap.
        uint32_t k = class_of(size);
        if (FreeBlock* b = depot_take(k)) {
            ClassCache& cc = c->cls[k];
            cc.head = b->next;
            cc.count = BATCH - 1;
            return b;
        }
    }
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

void free_slow(void* p, size_t size) {
    if (!p) return;
    // A thread without a cache yet gets one (alloc_slow); then the inline
    // free() caches the block.
    if (!t_cache && size - 1 < MAX_POOLED && foreign_cache()) {
        free(p, size);
        return;
    }
    heap_free(p);
}

void thread_init() {
    if (t_cache) {
        // A foreign cache made earlier becomes this runtime thread's (counted
        // now; thread_exit releases it).
        if (t_foreign) {
            t_foreign = false;
            depot.caches.fetch_add(1, std::memory_order_relaxed);
        }
        return;
    }
    Cache* c = new_cache();
    if (!c) return;  // no cache: plain malloc, still correct
    t_cache = c;
    depot.caches.fetch_add(1, std::memory_order_relaxed);
}

bool has_runtime_cache() { return t_cache && !t_foreign; }

uint64_t cached_bytes() {
    Cache* c = t_cache;
    if (!c) return 0;
    uint64_t n = 0;
    for (uint32_t i = 0; i < CLASSES; i++)
        n += (c->cls[i].count + (c->cls[i].full ? BATCH : 0)) * class_bytes(i);
    return n;
}

void trim(uint64_t keep) {
    Cache* c = t_cache;
    uint64_t mine = cached_bytes();
    // This thread's blocks first (they are the ones its idle worker holds),
    // largest classes first.
    for (uint32_t i = CLASSES; c && i-- > 0;) {
        ClassCache& cc = c->cls[i];
        if (cc.full && mine + depot_bytes() > keep) {
            mine -= batch_bytes(i);
            free_list(cc.full);
            cc.full = nullptr;
        }
        while (FreeBlock* b = cc.head) {
            if (mine + depot_bytes() <= keep) break;
            cc.head = b->next;
            cc.count--;
            mine -= class_bytes(i);
            heap_free(b);
        }
    }
    // Then the depot's batches, largest classes first.
    for (uint32_t i = CLASSES; i-- > 0;) {
        for (;;) {
            FreeBlock* batch;
            {
                port::LockGuard g(depot.mu);
                uint64_t bytes = depot.bytes.load(std::memory_order_relaxed);
                batch = depot.batches[i];
                if (!batch || mine + bytes <= keep) break;
                depot.batches[i] = batch->next_batch;
                depot.bytes.store(bytes - batch_bytes(i), std::memory_order_relaxed);
            }
            free_list(batch);  // outside the lock
        }
    }
}

void thread_exit() {
    Cache* c = t_cache;
    if (!c || t_foreign) return;  // a foreign cache goes when its thread exits
    t_cache = nullptr;
    // Whole batches to the depot, for the threads that stay; a partial list
    // to the heap.
    release_cache(c);
    // acq_rel: the last thread out empties the depot after every other
    // exiting thread's puts (each came before that thread's decrement). A
    // thread that gets a cache meanwhile only finds the depot emptier.
    if (depot.caches.fetch_sub(1, std::memory_order_acq_rel) == 1) trim(0);
}

}  // namespace weft::kernel::pool
