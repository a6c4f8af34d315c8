// tests/test_pool.cpp — kernel::pool: the per-thread caches of task memory.
#include <gtest/gtest.h>

#include <cstdint>
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

TEST(Pool, CachesFreedBlocksAndReusesThem) {
    std::thread([] {
        pool::thread_init();
        void* a = pool::alloc(448);
        pool::free(a, 448);
        EXPECT_EQ(pool::cached_bytes(), 448u);
        void* b = pool::alloc(400);  // same class (7 granules): the same block
        EXPECT_EQ(b, a);
        EXPECT_EQ(pool::cached_bytes(), 0u);
        pool::free(b, 400);
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
        const size_t n = 20000;  // 20,000 x 448 B = 8.96 MB
        for (size_t i = 0; i < n; i++) blocks.push_back(pool::alloc(448));
        for (void* b : blocks) pool::free(b, 448);
        EXPECT_EQ(pool::cached_bytes(), n * 448);
        std::vector<void*> small;
        for (int i = 0; i < 100; i++) small.push_back(pool::alloc(64));
        for (void* b : small) pool::free(b, 64);
        EXPECT_EQ(pool::cached_bytes(), n * 448 + 100 * 64);
        pool::trim(pool::IDLE_KEEP_BYTES);
        EXPECT_LE(pool::cached_bytes(), pool::IDLE_KEEP_BYTES);
        EXPECT_GT(pool::cached_bytes(), pool::IDLE_KEEP_BYTES - 448);
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
