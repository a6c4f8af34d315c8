// tests/test_inject_queue.cpp — kernel::InjectQueue (kernel/inject_queue.h),
// the runtime-wide queue for remote spawns and wakes and local-queue
// overflow.
//
// Why: it stores tasks in three places (a front list, 4 KiB chunks of
// pointers, a back list used when no chunk can be allocated) and must look
// like one FIFO with a front. Its bugs would be reordered, lost or duplicated
// tasks at the seams: a chunk filling or draining in the middle of a batch,
// the spare chunk reused, an allocation failing in the middle of a batch, the
// chunks draining while the back list still holds newer tasks. A sequential
// model (RapidCheck) drives random pushes, front pushes and pops of random
// sizes, with an allocator that fails on demand, and compares every pop; the
// threaded test checks exactly-once delivery under the lock.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "../kernel/inject_queue.h"
#include "task_headers.h"

using weft::kernel::InjectQueue;
using weft::kernel::InjectQueueWith;
using weft::kernel::TaskHeader;

namespace {

// Chunk memory that fails while `fail` is set, and counts what is live so a
// test can see every chunk freed.
struct FlakyMemory {
    static inline bool fail = false;
    static inline int live = 0;
    static void* alloc(size_t size) {
        if (fail) return nullptr;
        live++;
        return std::malloc(size);
    }
    static void free(void* p) {
        live--;
        std::free(p);
    }
};
using FlakyQueue = InjectQueueWith<FlakyMemory>;

constexpr uint32_t SLOTS = InjectQueue::CHUNK_SLOTS;

std::vector<TaskHeader*> pop_all(FlakyQueue& q, uint32_t batch) {
    std::vector<TaskHeader*> out;
    std::vector<TaskHeader*> buf(batch);
    while (uint32_t n = q.pop_n(buf.data(), batch)) out.insert(out.end(), buf.begin(), buf.begin() + n);
    return out;
}

TEST(InjectQueue, FifoAcrossChunksAndTheSpareIsReused) {
    FlakyMemory::fail = false;
    {
        Tasks t(3 * SLOTS + 7);
        FlakyQueue q;
        // Batches of 129 (a local queue's overflow) straddle chunk ends.
        std::vector<TaskHeader*> in;
        for (size_t i = 0; i < t.n; i += 129) {
            uint32_t k = (uint32_t)std::min<size_t>(129, t.n - i);
            std::vector<TaskHeader*> b;
            for (uint32_t j = 0; j < k; j++) b.push_back(t[i + j]);
            ASSERT_TRUE(q.push_batch(b.data(), k));
            in.insert(in.end(), b.begin(), b.end());
        }
        EXPECT_EQ(q.len(), t.n);
        EXPECT_EQ(q.chunks_for_test(), 4u);
        EXPECT_EQ(q.listed_for_test(), 0u);
        EXPECT_EQ(pop_all(q, 32), in);
        EXPECT_TRUE(q.is_empty());
        // Drained: the last chunk stays in place, one more is kept as the spare.
        EXPECT_EQ(q.chunks_for_test(), 2u);
        EXPECT_EQ(FlakyMemory::live, 2);
        // Growing again takes the spare before allocating.
        std::vector<TaskHeader*> again;
        for (size_t i = 0; i < SLOTS + 1; i++) again.push_back(t[i]);
        ASSERT_TRUE(q.push_batch(again.data(), (uint32_t)again.size()));
        EXPECT_EQ(FlakyMemory::live, 2);
        EXPECT_EQ(pop_all(q, 7), again);
    }
    EXPECT_EQ(FlakyMemory::live, 0) << "the destructor frees every chunk";
}

TEST(InjectQueue, FrontBatchComesFirstInItsOwnOrder) {
    FlakyMemory::fail = false;
    Tasks t(10);
    FlakyQueue q;
    TaskHeader* back[] = {t[0], t[1], t[2]};
    ASSERT_TRUE(q.push_batch(back, 3));
    TaskHeader* first[] = {t[5], t[6]};
    ASSERT_TRUE(q.push_front_batch(first, 2));
    TaskHeader* second[] = {t[7]};
    ASSERT_TRUE(q.push_front_batch(second, 1));
    EXPECT_EQ(q.len(), 6u);
    std::vector<TaskHeader*> want = {t[7], t[5], t[6], t[0], t[1], t[2]};
    EXPECT_EQ(pop_all(q, 2), want);
}

TEST(InjectQueue, WithoutMemoryTasksGoToTheListAndStayInOrder) {
    Tasks t(2 * SLOTS);
    {
        FlakyQueue q;
        std::vector<TaskHeader*> in;
        for (size_t i = 0; i < t.n; i++) in.push_back(t[i]);
        FlakyMemory::fail = false;
        ASSERT_TRUE(q.push_batch(in.data(), SLOTS - 10));  // one chunk, 10 slots left
        FlakyMemory::fail = true;
        // Fills the chunk's last 10 slots, then lists the rest: no chunk.
        ASSERT_TRUE(q.push_batch(in.data() + SLOTS - 10, 30));
        EXPECT_EQ(q.listed_for_test(), 20u);
        FlakyMemory::fail = false;
        // Memory is back, but the list is not empty: still listed (FIFO).
        ASSERT_TRUE(q.push(in[SLOTS + 20]));
        EXPECT_EQ(q.listed_for_test(), 21u);
        // Drain partway into the list; a push now still goes behind it.
        std::vector<TaskHeader*> got(SLOTS + 5);
        ASSERT_EQ(q.pop_n(got.data(), SLOTS + 5), SLOTS + 5);
        ASSERT_TRUE(q.push_batch(in.data() + SLOTS + 21, 100));
        std::vector<TaskHeader*> rest = pop_all(q, 32);
        got.insert(got.end(), rest.begin(), rest.end());
        EXPECT_EQ(got, std::vector<TaskHeader*>(in.begin(), in.begin() + SLOTS + 121));
        // Once the list is empty, chunks take pushes again.
        ASSERT_TRUE(q.push(in[0]));
        EXPECT_EQ(q.listed_for_test(), 0u);
        EXPECT_EQ(q.pop(), in[0]);
    }
    EXPECT_EQ(FlakyMemory::live, 0);
}

TEST(InjectQueue, ClosedRefusesEveryPushAndStillDrains) {
    FlakyMemory::fail = false;
    Tasks t(4);
    FlakyQueue q;
    ASSERT_TRUE(q.push(t[0]));
    EXPECT_TRUE(q.close());
    EXPECT_FALSE(q.close()) << "second close reports it was already closed";
    TaskHeader* b[] = {t[1], t[2]};
    EXPECT_FALSE(q.push(t[3]));
    EXPECT_FALSE(q.push_batch(b, 2));
    TaskHeader* f[] = {t[3]};
    EXPECT_FALSE(q.push_front_batch(f, 1));
    EXPECT_EQ(q.len(), 1u);
    EXPECT_EQ(q.pop(), t[0]);
    EXPECT_EQ(q.pop(), nullptr);
}

// Random pushes to the back and the front (batches of 1..700, so batches
// straddle chunks) and pops (1..600), with allocation failing and recovering at random; every
// pop must match a deque model.
RC_GTEST_PROP(InjectQueueModel, MatchesSequentialModel, ()) {
    constexpr size_t N = 4096;
    Tasks t(N);
    size_t next = 0;  // every task is pushed at most once
    std::deque<TaskHeader*> model;
    FlakyMemory::fail = false;
    {
        FlakyQueue q;
        // Scaled: up to about 400 operations, so that most cases reach the
        // seams (several chunks, memory failing mid-batch).
        auto ops = *rc::gen::scale(4.0, rc::gen::container<std::vector<std::pair<uint8_t, uint16_t>>>(rc::gen::pair(
                                             rc::gen::inRange<uint8_t>(0, 5), rc::gen::inRange<uint16_t>(1, 700))));
        for (auto [op, arg] : ops) {
            switch (op) {
            case 0: {  // push a batch
                uint32_t k = (uint32_t)std::min<size_t>(arg, N - next);
                if (k == 0) break;
                std::vector<TaskHeader*> b;
                for (uint32_t j = 0; j < k; j++) b.push_back(t[next++]);
                RC_ASSERT(q.push_batch(b.data(), k));
                model.insert(model.end(), b.begin(), b.end());
                break;
            }
            case 1: {  // push a front batch (1..700: it straddles chunks too)
                uint32_t k = (uint32_t)std::min<size_t>(arg, N - next);
                if (k == 0) break;
                std::vector<TaskHeader*> b;
                for (uint32_t j = 0; j < k; j++) b.push_back(t[next + j]);
                RC_ASSERT(q.push_front_batch(b.data(), k));
                for (uint32_t j = k; j-- > 0;) model.push_front(t[next + j]);
                next += k;
                break;
            }
            case 2:
            case 3: {  // pop up to arg
                std::vector<TaskHeader*> out(arg);
                uint32_t n = q.pop_n(out.data(), arg);
                RC_ASSERT(n == std::min<size_t>(arg, model.size()));
                for (uint32_t j = 0; j < n; j++) {
                    RC_ASSERT(out[j] == model.front());
                    model.pop_front();
                }
                break;
            }
            case 4:  // memory fails or comes back
                FlakyMemory::fail = !FlakyMemory::fail;
                break;
            }
            RC_ASSERT(q.len() == model.size());
        }
        FlakyMemory::fail = false;
        while (TaskHeader* x = q.pop()) {
            RC_ASSERT(!model.empty());
            RC_ASSERT(x == model.front());
            model.pop_front();
        }
        RC_ASSERT(model.empty());
    }
    RC_ASSERT(FlakyMemory::live == 0);
}

// Two pushers (single pushes and batches) and two poppers: every task comes
// out exactly once (the lock is the whole protocol; this is for TSan). Five
// rounds, each starting from whatever chunks the last one left.
TEST(InjectQueue, ConcurrentPushersAndPoppersLoseAndDuplicateNothing) {
    constexpr size_t PER_PUSHER = 20000;
    Tasks t(2 * PER_PUSHER);
    InjectQueue q;
    for (int round = 0; round < 5; round++) {
        std::vector<std::atomic<uint32_t>> seen(t.n);
        std::atomic<int> pushers_done{0};
        auto pusher = [&](size_t base) {
            for (size_t i = 0; i < PER_PUSHER;) {
                if (i % 3 == 0) {
                    EXPECT_TRUE(q.push(t[base + i]));
                    i++;
                } else {
                    TaskHeader* b[129];
                    uint32_t k = (uint32_t)std::min<size_t>(129, PER_PUSHER - i);
                    for (uint32_t j = 0; j < k; j++) b[j] = t[base + i + j];
                    EXPECT_TRUE(q.push_batch(b, k));
                    i += k;
                }
            }
            pushers_done.fetch_add(1);
        };
        // Until both pushers are done and the queue is empty: a pusher that
        // fails ends the round instead of leaving the poppers spinning.
        auto popper = [&] {
            TaskHeader* b[32];
            for (;;) {
                bool done = pushers_done.load() == 2;
                uint32_t n = q.pop_n(b, 32);
                for (uint32_t j = 0; j < n; j++) seen[t.index(b[j])].fetch_add(1, std::memory_order_relaxed);
                if (n == 0) {
                    if (done) break;
                    std::this_thread::yield();
                }
            }
        };
        std::thread p1(pusher, 0), p2(pusher, PER_PUSHER), c1(popper), c2(popper);
        p1.join();
        p2.join();
        c1.join();
        c2.join();
        size_t bad = 0;
        for (auto& s : seen) bad += s.load() != 1;
        EXPECT_EQ(bad, 0u) << "round " << round << ": tasks lost or popped twice";
        EXPECT_TRUE(q.is_empty());
    }
}

}  // namespace
