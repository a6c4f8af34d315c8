// kernel/pool.h — per-thread caches of fixed-size blocks for task memory.
//
// A spawn must cost at most one allocation, and usually none: each worker
// thread keeps a free list per size class (multiples of a cache line up to
// MAX_POOLED). Blocks are carved one to a malloc block (pool.cpp
// alloc_slow), so a block allocated on one thread may be freed on any other
// (it joins that thread's cache). A thread outside the runtimes (the main
// thread, a foreign caller of the C ABI) gets a cache of its own at its first
// pooled alloc or free, which it gives back when it exits (pool.cpp).
//
// Blocks move between threads in batches. A task is often allocated on one
// worker and freed on another (spawned by an accept loop or a fan-out root,
// finished and freed wherever it ran): each thread's free lists then only
// grow on one side and only shrink on the other. So a thread keeps at most
// two batches of BATCH blocks per class (the list it pops and pushes, and
// one full batch), and hands further full batches to a process-wide depot,
// from which a thread whose lists ran dry takes one before it calls malloc:
// one lock per BATCH blocks. Before the depot each thread cached up to 64 MB
// of its own. In `timers` the root task that spawns moves between the two
// workers (it resumes where its last child finished), so one worker's frees
// overflowed its cache into free() while the other's spawns called malloc:
// malloc, free and page faults were 5.3% of the cycles, 0.6% with the depot
// (412 -> 397 ns per task).
//
// How much is kept: up to MAX_CACHED_BYTES in the depot, so that a burst
// (100,000 tasks spawned, finished, spawned again) recycles its memory
// instead of handing it back to malloc, which returns it to the kernel (heap
// trimming) and then takes page faults to get it back: measured, about a
// fifth of the `timers` workload's time went to malloc, free and faulting
// pages in again. A worker that stays idle for IDLE_TRIM_NS while this
// thread's blocks and the depot hold more than IDLE_KEEP_BYTES trims them
// back to that (scheduler.cpp park), so an idle runtime does not sit on a
// burst's memory. The depot is shared, so that trim also takes from other
// runtimes' spare memory; they only go back to malloc for it.
//
// Every block starts on a cache line (WEFT_CACHE_LINE, which counts the
// adjacent-line prefetcher) and is a whole number of lines, so no two blocks
// share one. Two tasks polled at once on two workers write their own headers
// and frames; with malloc's 16-byte alignment, neighbours in memory shared
// lines, and each write took the line from the other core: yield_many on 2
// workers ran at 23-26 ns per yield against 15 on 1 worker, and 13.3 with
// line-aligned blocks (aligned to 64 bytes only: 13.7 against 11.5 for 128
// with posix_memalign; the prefetcher's pairs of lines were still shared).
// The price: up to a line less one byte of rounding per block, and one line
// more per malloc block for the alignment, which a cached block being reused
// never touches (spawn_many_local +7%, timers +8%, where half the blocks
// come from the heap each round: bench/RESULTS.md).
//
// Thread safety: each cache is touched only by its own thread (thread_local);
// the depot has a lock.
#ifndef WEFT_KERNEL_POOL_H
#define WEFT_KERNEL_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "../arch/arch.h"

namespace weft::kernel::pool {

// The size classes: multiples of the line.
inline constexpr size_t GRANULE = WEFT_CACHE_LINE;
inline constexpr size_t MAX_POOLED = 4096;
inline constexpr uint64_t MAX_CACHED_BYTES = uint64_t(64) << 20;  // in the depot, all classes
inline constexpr uint64_t IDLE_KEEP_BYTES = uint64_t(4) << 20;
inline constexpr uint64_t IDLE_TRIM_NS = 1000000000;  // 1 s idle
inline constexpr uint32_t CLASSES = MAX_POOLED / GRANULE;
inline constexpr uint32_t BATCH = 128; // blocks moved to or from the depot at once

// A free block. A batch is BATCH blocks linked through next (the last one's
// is nullptr); in the depot, batches are linked through their first block's
// next_batch.
struct FreeBlock {
    FreeBlock* next;
    FreeBlock* next_batch;
};
static_assert((GRANULE & (GRANULE - 1)) == 0 && GRANULE >= sizeof(FreeBlock), "a line holds the links");
static_assert(MAX_POOLED % GRANULE == 0, "the largest class is whole lines");

struct ClassCache {
    FreeBlock* head;   // `count` blocks (0..BATCH), popped and pushed here
    FreeBlock* full;   // one whole batch, or nullptr
    uint32_t count;
};

// No byte total is kept: alloc and free touch only their class's entry
// (cached_bytes() adds the classes up, when a worker is about to park).
struct Cache {
    ClassCache cls[CLASSES];
};

// This thread's cache, or nullptr (none yet). initial-exec: no
// __tls_get_addr on the spawn path.
extern constinit __attribute__((tls_model("initial-exec"))) thread_local Cache* t_cache;

inline uint32_t class_of(size_t size) { return (uint32_t)((size + GRANULE - 1) / GRANULE) - 1; }
inline uint64_t class_bytes(uint32_t k) { return (uint64_t)(k + 1) * GRANULE; }

void* alloc_slow(size_t size);
void free_slow(void* p, size_t size);

// A cached block of size bytes, or nullptr (none cached: use alloc). No
// call: a caller can keep its own fast path a leaf.
inline void* alloc_cached(size_t size) {
    Cache* c = t_cache;
    if (c && size - 1 < MAX_POOLED) {
        uint32_t k = class_of(size);
        ClassCache& cc = c->cls[k];
        FreeBlock* b = cc.head;
        if (b) {
            cc.head = b->next;
            cc.count--;
        } else if ((b = cc.full)) {
            cc.full = nullptr;
            cc.head = b->next;
            cc.count = BATCH - 1;
        } else {
            return nullptr;  // alloc_slow looks in the depot
        }
        return b;
    }
    return nullptr;
}

// Allocates size bytes, aligned to GRANULE (a cache line). nullptr when out
// of memory.
inline void* alloc(size_t size) {
    if (void* b = alloc_cached(size)) return b;
    return alloc_slow(size);
}

// This thread's list of class k holds a whole batch: it becomes the full
// batch, and a full batch already there goes to the depot.
void retire_batch(Cache* c, uint32_t k);

// Frees a block from alloc() with the same size.
inline void free(void* p, size_t size) {
    Cache* c = t_cache;
    if (c && p && size - 1 < MAX_POOLED) {
        uint32_t k = class_of(size);
        ClassCache& cc = c->cls[k];
        if (__builtin_expect(cc.count == BATCH, 0)) retire_batch(c, k);
        // SAFETY: p is a dead block of at least GRANULE bytes; its first
        // word becomes the free-list link.
        FreeBlock* b = static_cast<FreeBlock*>(p);
        b->next = cc.head;
        cc.head = b;
        cc.count++;
        return;
    }
    free_slow(p, size);
}

// Gives the calling thread a runtime thread's cache (workers call this at
// start; a cache the thread had as a foreign one becomes it) / releases it.
// A thread that calls neither gets a foreign cache at its first pooled alloc
// or free, released when it exits (pool.cpp).
void thread_init();
void thread_exit();
// Whether the calling thread holds a cache from thread_init (not a foreign one).
bool has_runtime_cache();

// Bytes the calling thread's cache holds (0 without a cache), counted as
// class bytes (each block holds a line and malloc's header more of heap).
// A loop over the classes.
uint64_t cached_bytes();
// Bytes the depot holds (a snapshot).
uint64_t depot_bytes();
// Frees cached blocks, largest classes first, this thread's and then the
// depot's, until cached_bytes() + depot_bytes() <= keep (the depot gives
// back whole batches, so it may end up to a batch below).
void trim(uint64_t keep);

}  // namespace weft::kernel::pool

#endif
