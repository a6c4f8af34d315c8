// tests/test_pool.cpp — kernel::pool: the per-thread caches of task memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <mutex>
#include <cstdint>
#include <cstring>
#include <utility>
#include <thread>
#include <vector>

#include "../include/weft/weft.hpp"
#include "../kernel/pool.h"

namespace pool = weft::kernel::pool;

constexpr size_t G = pool::GRANULE;

// A thread outside the runtimes (no thread_init) gets a cache at its first
// pooled alloc, reuses its blocks, and gives its whole batches to the depot
// when it exits; the partial list goes to the heap.
TEST(Pool, AThreadOutsideTheRuntimesGetsACacheAndGivesItBackWhenItExits) {
    pool::trim(0);
    std::thread([] {
        EXPECT_FALSE(pool::has_runtime_cache());
        EXPECT_EQ(pool::cached_bytes(), 0u);
        void* a = pool::alloc(100);
        ASSERT_NE(a, nullptr);
        pool::free(a, 100);
        EXPECT_EQ(pool::cached_bytes(), G) << "cached, not freed";
        EXPECT_EQ(pool::alloc(100), a) << "and reused";
        pool::free(a, 100);
        EXPECT_FALSE(pool::has_runtime_cache());
        pool::thread_exit();  // not the runtime's: a no-op, the cache stays
        EXPECT_EQ(pool::cached_bytes(), G);
        std::vector<void*> blocks(pool::BATCH + 3);
        for (auto& p : blocks) p = pool::alloc(2 * G);
        for (void* p : blocks) pool::free(p, 2 * G);
        EXPECT_EQ(pool::cached_bytes(), G + (pool::BATCH + 3) * 2 * G);
    }).join();
    // No runtime thread is left to take a batch: the exiting thread's whole
    // batch went to the heap with the rest (ASan and Valgrind see every block
    // freed).
    EXPECT_EQ(pool::depot_bytes(), 0u);
    pool::thread_init();  // this thread stays, counted
    std::thread([] {
        std::vector<void*> blocks(pool::BATCH + 3);
        for (auto& p : blocks) p = pool::alloc(2 * G);
        for (void* p : blocks) pool::free(p, 2 * G);
    }).join();
    EXPECT_EQ(pool::depot_bytes(), pool::BATCH * 2 * G) << "its whole batch, for the thread that stays";
    pool::thread_exit();
    EXPECT_EQ(pool::depot_bytes(), 0u) << "no runtime thread left: the depot is emptied";
}

// A foreign cache becomes a runtime thread's at thread_init: counted, and
// released by thread_exit (a thread-per-core executor on the caller's thread).
TEST(Pool, ThreadInitAdoptsAForeignCache) {
    pool::trim(0);
    std::thread([] {
        void* a = pool::alloc(G);
        pool::free(a, G);
        EXPECT_FALSE(pool::has_runtime_cache());
        pool::thread_init();
        EXPECT_TRUE(pool::has_runtime_cache());
        EXPECT_EQ(pool::alloc(G), a) << "the same lists";
        pool::free(a, G);
        pool::thread_exit();
        EXPECT_FALSE(pool::has_runtime_cache());
        EXPECT_EQ(pool::cached_bytes(), 0u);
    }).join();
}

TEST(Pool, CachesFreedBlocksAndReusesThem) {
    std::thread([] {
        pool::thread_init();
        void* a = pool::alloc(7 * G);
        pool::free(a, 7 * G);
        EXPECT_EQ(pool::cached_bytes(), 7 * G);
        void* b = pool::alloc(6 * G + 1);  // same class (7 granules): the same block
        EXPECT_EQ(b, a);
        EXPECT_EQ(pool::cached_bytes(), 0u);
        pool::free(b, 6 * G + 1);
        pool::thread_exit();
    }).join();
}

// No two blocks share a cache line (pool.h: false sharing between tasks
// polled at once on two workers), with or without a cache, pooled or not.
TEST(Pool, EveryBlockStartsALineAndOwnsItsLastOne) {
    EXPECT_EQ(G, (size_t)WEFT_CACHE_LINE);
    auto check = [] {
        const size_t sizes[] = {1, 8, G - 1, G, G + 1, 3 * G - 8, pool::MAX_POOLED, pool::MAX_POOLED + 1};
        std::vector<std::pair<uintptr_t, size_t>> blocks;
        for (int round = 0; round < 2; round++) {  // the second round reuses cached blocks
            for (size_t n : sizes) {
                for (int i = 0; i < 8; i++) {
                    void* p = pool::alloc(n);
                    ASSERT_NE(p, nullptr);
                    EXPECT_EQ((uintptr_t)p % G, 0u) << n << " bytes";
                    memset(p, 0xab, n);  // ASan: the whole size is the caller's
                    blocks.push_back({(uintptr_t)p, n});
                }
            }
            // Line ranges pairwise disjoint: no block reaches into the line
            // where another one starts.
            std::vector<std::pair<uintptr_t, uintptr_t>> lines;
            for (auto [p, n] : blocks) lines.push_back({p / G, (p + n - 1) / G});
            std::sort(lines.begin(), lines.end());
            for (size_t i = 1; i < lines.size(); i++) EXPECT_LT(lines[i - 1].second, lines[i].first);
            for (auto [p, n] : blocks) pool::free((void*)p, n);
            blocks.clear();
        }
    };
    check();                // this thread: a foreign cache (or a runtime one adopted by another test)
    std::thread([&] {
        pool::thread_init();
        check();
        pool::thread_exit();
    }).join();
}

// A burst is kept whole (this thread's lists, then the depot, up to
// MAX_CACHED_BYTES), and trim() gives it back down to what it is asked to
// keep, this thread's blocks first, largest classes first.
TEST(Pool, KeepsABurstUpToTheBudgetAndTrimsOnRequest) {
    pool::trim(0);  // the depot is the process's: start from an empty one
    std::thread([] {
        pool::thread_init();
        std::vector<void*> blocks;
        const size_t block = 4 * G;
        const size_t n = 20000;  // 20,000 x 512 B = 10.2 MB on x86-64
        for (size_t i = 0; i < n; i++) blocks.push_back(pool::alloc(block));
        for (void* b : blocks) pool::free(b, block);
        EXPECT_EQ(pool::cached_bytes() + pool::depot_bytes(), n * block);
        EXPECT_LE(pool::cached_bytes(), 2 * pool::BATCH * block) << "at most two batches per class stay here";
        std::vector<void*> small;
        for (int i = 0; i < 100; i++) small.push_back(pool::alloc(G));
        for (void* b : small) pool::free(b, G);
        EXPECT_EQ(pool::cached_bytes() + pool::depot_bytes(), n * block + 100 * G);
        pool::trim(pool::IDLE_KEEP_BYTES);
        EXPECT_LE(pool::cached_bytes() + pool::depot_bytes(), pool::IDLE_KEEP_BYTES);
        EXPECT_GT(pool::cached_bytes() + pool::depot_bytes(), pool::IDLE_KEEP_BYTES - pool::BATCH * block)
            << "the depot gives back whole batches, not more";
        EXPECT_EQ(pool::cached_bytes(), 0u) << "this thread's blocks go first (the depot alone holds more than keep)";
        pool::trim(0);
        EXPECT_EQ(pool::cached_bytes() + pool::depot_bytes(), 0u);
        pool::thread_exit();
    }).join();
}

TEST(Pool, NeverCachesMoreThanTheBudget) {
    pool::trim(0);
    std::thread([] {
        pool::thread_init();
        const size_t block = 4096;
        const size_t n = pool::MAX_CACHED_BYTES / block + 4 * pool::BATCH;
        std::vector<void*> blocks;
        for (size_t i = 0; i < n; i++) blocks.push_back(pool::alloc(block));
        for (void* b : blocks) pool::free(b, block);
        EXPECT_EQ(pool::depot_bytes(), pool::MAX_CACHED_BYTES);
        EXPECT_LE(pool::cached_bytes(), 2 * pool::BATCH * block);
        pool::thread_exit();  // frees the cache (ASan: no leak)
    }).join();
    pool::trim(0);
    EXPECT_EQ(pool::depot_bytes(), 0u);
}

// The shape of a task spawned on one worker and finished on another: one
// thread only allocates, the other only frees. The freed blocks come back to
// the allocating thread through the depot instead of through malloc.
TEST(Pool, BlocksFreedOnAnotherThreadComeBackThroughTheDepot) {
    pool::trim(0);
    const size_t block = 3 * G;
    const size_t n = 8 * pool::BATCH;
    std::vector<void*> first(n);
    std::thread([&] {
        pool::thread_init();
        for (auto& p : first) p = pool::alloc(block);
        pool::thread_exit();
    }).join();
    std::thread([&] {
        pool::thread_init();
        for (void* p : first) pool::free(p, block);
        EXPECT_EQ(pool::depot_bytes(), (n - 2 * pool::BATCH) * block) << "all but two batches in the depot";
        std::thread([&] {
            pool::thread_init();
            std::vector<void*> again(n - 2 * pool::BATCH);
            for (auto& p : again) p = pool::alloc(block);
            EXPECT_EQ(pool::depot_bytes(), 0u);
            std::sort(first.begin(), first.end());
            for (void* p : again) EXPECT_TRUE(std::binary_search(first.begin(), first.end(), p)) << "a new block";
            for (void* p : again) pool::free(p, block);
            pool::thread_exit();
        }).join();
        pool::thread_exit();
    }).join();
    pool::trim(0);
}

// A thread that exits hands its whole batches to the depot, for the threads
// that stay; a partial list goes back to the heap. When the last thread with
// a cache exits, the depot is emptied.
TEST(Pool, AnExitingThreadLeavesItsWholeBatchesInTheDepot) {
    pool::trim(0);
    pool::thread_init();  // a thread that stays
    std::thread([] {
        pool::thread_init();
        std::vector<void*> blocks(2 * pool::BATCH + 5);
        for (auto& p : blocks) p = pool::alloc(G);
        for (void* p : blocks) pool::free(p, G);
        // The (BATCH + 1)th free made the first BATCH the full batch; the
        // (2 BATCH + 1)th sent that to the depot and made the second one full.
        EXPECT_EQ(pool::depot_bytes(), 1 * pool::BATCH * G);
        EXPECT_EQ(pool::cached_bytes(), (pool::BATCH + 5) * G);
        pool::thread_exit();
        EXPECT_EQ(pool::depot_bytes(), 2 * pool::BATCH * G) << "the full batch; the 5 in the list in use went to the heap";
    }).join();
    std::thread([] {
        pool::thread_init();
        std::vector<void*> blocks(2 * pool::BATCH);
        for (auto& p : blocks) p = pool::alloc(2 * G);
        for (void* p : blocks) pool::free(p, 2 * G);
        EXPECT_EQ(pool::cached_bytes(), 2 * pool::BATCH * 2 * G) << "a full batch and a list of BATCH blocks";
        pool::thread_exit();
        EXPECT_EQ(pool::depot_bytes(), 2 * pool::BATCH * G + 2 * pool::BATCH * 2 * G) << "both whole batches";
    }).join();
    pool::thread_exit();
    EXPECT_EQ(pool::depot_bytes(), 0u) << "no thread with a cache left: nobody would take them";
}

// Several threads allocate, pass blocks to each other and free them, in
// every size class; every block carries its owner's mark while it is out,
// so a block handed out twice at once is caught (and TSan sees the depot's
// handovers).
TEST(Pool, BlocksPassedBetweenThreadsAreNeverHandedOutTwice) {
    pool::trim(0);
    constexpr int THREADS = 4;
    std::mutex mu;
    std::vector<std::pair<void*, size_t>> passed;
    std::atomic<bool> bad{false};
    std::vector<std::thread> ts;
    for (int id = 0; id < THREADS; id++) {
        ts.emplace_back([&, id] {
            pool::thread_init();
            uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);
            std::vector<std::pair<void*, size_t>> mine;
            for (int op = 0; op < 40000; op++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                size_t size = (x % 8 == 0) ? 1 + x % pool::MAX_POOLED : 1 + (x >> 8) % (3 * G);
                void* p = pool::alloc(size);
                memset(p, id + 1, size);
                mine.push_back({p, size});
                if (mine.size() < 300) continue;
                // Pass a random block of ours on, and free a random passed one.
                size_t at = (x >> 20) % mine.size();
                std::pair<void*, size_t> give = mine[at], take;
                mine[at] = mine.back();
                mine.pop_back();
                {
                    std::lock_guard<std::mutex> g(mu);
                    passed.push_back(give);
                    if (passed.size() < 500) continue;
                    at = (x >> 30) % passed.size();
                    take = passed[at];
                    passed[at] = passed.back();
                    passed.pop_back();
                }
                auto [q, n] = take;
                // A block another thread (or this one) marked: the mark must
                // be intact over its whole size.
                const unsigned char* b = static_cast<const unsigned char*>(q);
                for (size_t i = 1; i < n; i++)
                    if (b[i] != b[0]) bad.store(true);
                pool::free(q, n);
            }
            for (auto [p, n] : mine) pool::free(p, n);
            pool::thread_exit();
        });
    }
    for (auto& t : ts) t.join();
    for (auto [p, n] : passed) pool::free(p, n);
    EXPECT_FALSE(bad.load());
    pool::trim(0);
    EXPECT_EQ(pool::depot_bytes(), 0u);
}

// A runtime whose workers park after a burst gives the burst's memory back
// (scheduler.cpp park: after IDLE_TRIM_NS asleep, down to IDLE_KEEP_BYTES).
// Waits for that, for at most 20 s; asserts only the outcome.
weft::Task<void> nothing() { co_return; }
weft::Task<void> burst(int n) {
    std::vector<weft::JoinHandle<void>> handles;
    for (int i = 0; i < n; i++) handles.push_back(weft::spawn(nothing()));
    for (auto& h : handles) co_await h;
}

TEST(Pool, AnIdleRuntimeGivesABurstsMemoryBack) {
    pool::trim(0);
    weft::Runtime rt(2);
    rt.spawn(burst(40000)).join();
    uint64_t peak = pool::depot_bytes();
    EXPECT_GT(peak, pool::IDLE_KEEP_BYTES) << "40,000 task blocks: more than the idle budget";
    for (int i = 0; i < 2000 && pool::depot_bytes() > pool::IDLE_KEEP_BYTES; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_LE(pool::depot_bytes(), pool::IDLE_KEEP_BYTES);
}
