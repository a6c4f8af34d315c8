// tests/test_pool.cpp — kernel::pool: the per-thread caches of task memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <thread>
#include <vector>

#include "../kernel/pool.h"

namespace pool = weft::kernel::pool;

TEST(Pool, WithoutACacheEverythingGoesToMalloc) {
    EXPECT_EQ(pool::cached_bytes(), 0u);
    void* p = pool::alloc(100);
    ASSERT_NE(p, nullptr);
    pool::free(p, 100);
    EXPECT_EQ(pool::cached_bytes(), 0u);
}

constexpr size_t G = pool::GRANULE;

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
    check();                // this thread: no cache
    std::thread([&] {
        pool::thread_init();
        check();
        pool::thread_exit();
    }).join();
}

// A burst larger than the per-class limits of old is kept whole (up to
// MAX_CACHED_BYTES), and trim() gives it back down to what it is asked to
// keep, largest classes first.
TEST(Pool, KeepsABurstUpToTheBudgetAndTrimsOnRequest) {
    std::thread([] {
        pool::thread_init();
        std::vector<void*> blocks;
        const size_t block = 4 * G;
        const size_t n = 20000;  // 20,000 x 512 B = 10.2 MB on x86-64
        for (size_t i = 0; i < n; i++) blocks.push_back(pool::alloc(block));
        for (void* b : blocks) pool::free(b, block);
        EXPECT_EQ(pool::cached_bytes(), n * block);
        std::vector<void*> small;
        for (int i = 0; i < 100; i++) small.push_back(pool::alloc(G));
        for (void* b : small) pool::free(b, G);
        EXPECT_EQ(pool::cached_bytes(), n * block + 100 * G);
        pool::trim(pool::IDLE_KEEP_BYTES);
        EXPECT_LE(pool::cached_bytes(), pool::IDLE_KEEP_BYTES);
        EXPECT_GT(pool::cached_bytes(), pool::IDLE_KEEP_BYTES - block);
        pool::trim(0);
        EXPECT_EQ(pool::cached_bytes(), 0u);
        pool::thread_exit();
    }).join();
}

TEST(Pool, NeverCachesMoreThanTheBudget) {
    std::thread([] {
        pool::thread_init();
        const size_t block = 4096;
        const size_t n = pool::MAX_CACHED_BYTES / block + 100;
        std::vector<void*> blocks;
        for (size_t i = 0; i < n; i++) blocks.push_back(pool::alloc(block));
        for (void* b : blocks) pool::free(b, block);
        EXPECT_EQ(pool::cached_bytes(), pool::MAX_CACHED_BYTES);
        pool::thread_exit();  // frees the cache (ASan: no leak)
    }).join();
}
