// tests/test_local_queue.cpp — kernel::LocalQueue (kernel/local_queue.h), the
// per-worker ring every spawn and wake on a worker goes through.
//
// Why: the ring is lock-free with a packed two-index head; its bugs are lost
// or duplicated tasks, and they hide in three places this file aims at
// directly:
//   * the edges: FIFO order, overflow (half the ring plus the new task go to
//     the sink, in order, as one batch), steal-half arithmetic;
//   * 32-bit index wrap-around, reached through the reset_for_test(start)
//     seam: every single-threaded case runs again with the indices starting
//     just below 2^32, so pushes, pops, overflows and steals cross the wrap;
//   * the owner/stealer race: one owner pushing and popping, three stealers
//     stealing into their own queues (and from each other), for long enough
//     to wrap a 4-slot ring hundreds of thousands of times and cross 2^32.
//     Every task must come out exactly once, counted per task.
// Both the test capacity (4) and the runtime's (256) are covered.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "../kernel/local_queue.h"
#include "task_headers.h"
#include "test_support.h"

using weft::kernel::LocalQueue;
using weft::kernel::TaskHeader;

namespace {

// Records every batch (an array of n tasks, oldest first).
struct VecSink {
    std::vector<TaskHeader*> got;
    std::vector<uint32_t> batch_sizes;
    void push_batch(TaskHeader* const* tasks, uint32_t n) {
        EXPECT_GT(n, 0u) << "an empty batch";
        for (uint32_t i = 0; i < n; i++) got.push_back(tasks[i]);
        batch_sizes.push_back(n);
    }
};

// Index starts: 0, and just below 2^32 so the ops below cross the wrap.
const uint32_t kStarts[] = {0u, 1u, UINT32_MAX - 2, UINT32_MAX - 1, UINT32_MAX, UINT32_MAX - 130, 0x80000000u - 3};

template <class Q>
class LocalQueueTest : public ::testing::Test {};
using Capacities = ::testing::Types<LocalQueue<4>, LocalQueue<256>>;
TYPED_TEST_SUITE(LocalQueueTest, Capacities);

template <class Q>
std::unique_ptr<Q> make_queue(uint32_t start) {
    auto q = std::make_unique<Q>();
    q->reset_for_test(start);
    return q;
}

TYPED_TEST(LocalQueueTest, EmptyPopsNothing) {
    for (uint32_t start : kStarts) {
        auto q = make_queue<TypeParam>(start);
        EXPECT_EQ(q->pop(), nullptr);
        EXPECT_TRUE(q->is_empty());
        EXPECT_EQ(q->len(), 0u);
        EXPECT_FALSE(q->has_stealable());
    }
}

TYPED_TEST(LocalQueueTest, PushPopFifoUpToCapacity) {
    constexpr uint32_t CAP = TypeParam::capacity;
    for (uint32_t start : kStarts) {
        SCOPED_TRACE(start);
        auto q = make_queue<TypeParam>(start);
        Tasks t(CAP);
        VecSink sink;
        for (uint32_t i = 0; i < CAP; i++) {
            EXPECT_EQ(q->push_back(t[i], sink), 0u);
            EXPECT_EQ(q->len(), i + 1);
        }
        EXPECT_TRUE(sink.got.empty()) << "a full ring does not overflow until the next push";
        for (uint32_t i = 0; i < CAP; i++) EXPECT_EQ(q->pop(), t[i]) << i;
        EXPECT_EQ(q->pop(), nullptr);
        EXPECT_TRUE(q->is_empty());
    }
}

TYPED_TEST(LocalQueueTest, InterleavedPushPopWrapsTheRingManyTimes) {
    constexpr uint32_t CAP = TypeParam::capacity;
    for (uint32_t start : kStarts) {
        SCOPED_TRACE(start);
        auto q = make_queue<TypeParam>(start);
        const uint32_t n = CAP * 10 + 3;
        Tasks t(n);
        VecSink sink;
        uint32_t next_pop = 0;
        for (uint32_t i = 0; i < n; i++) {
            q->push_back(t[i], sink);
            // Keep between 1 and CAP-1 queued so the ring never overflows.
            if (q->len() >= CAP - 1) {
                ASSERT_EQ(q->pop(), t[next_pop++]);
            }
        }
        while (TaskHeader* x = q->pop()) ASSERT_EQ(x, t[next_pop++]);
        EXPECT_EQ(next_pop, n);
        EXPECT_TRUE(sink.got.empty());
    }
}

TYPED_TEST(LocalQueueTest, OverflowMovesOlderHalfAndNewTaskToSink) {
    constexpr uint32_t CAP = TypeParam::capacity;
    for (uint32_t start : kStarts) {
        SCOPED_TRACE(start);
        auto q = make_queue<TypeParam>(start);
        Tasks t(2 * CAP + 2);
        VecSink sink;
        for (uint32_t i = 0; i < CAP; i++) ASSERT_EQ(q->push_back(t[i], sink), 0u);
        // Full: the next push moves CAP/2 oldest + the new one, in FIFO order.
        EXPECT_EQ(q->push_back(t[CAP], sink), CAP / 2 + 1);
        ASSERT_EQ(sink.batch_sizes.size(), 1u);
        ASSERT_EQ(sink.got.size(), CAP / 2 + 1);
        for (uint32_t i = 0; i < CAP / 2; i++) EXPECT_EQ(sink.got[i], t[i]);
        EXPECT_EQ(sink.got[CAP / 2], t[CAP]);
        EXPECT_EQ(q->len(), CAP / 2);
        // The queue keeps the newer half, still in order, and has room again.
        for (uint32_t i = 0; i < CAP / 2; i++) ASSERT_EQ(q->push_back(t[CAP + 1 + i], sink), 0u);
        EXPECT_EQ(q->len(), CAP);
        for (uint32_t i = CAP / 2; i < CAP; i++) EXPECT_EQ(q->pop(), t[i]);
        for (uint32_t i = 0; i < CAP / 2; i++) EXPECT_EQ(q->pop(), t[CAP + 1 + i]);
        EXPECT_EQ(q->pop(), nullptr);
        EXPECT_EQ(sink.batch_sizes.size(), 1u);
    }
}

TYPED_TEST(LocalQueueTest, RepeatedOverflowLosesNothing) {
    constexpr uint32_t CAP = TypeParam::capacity;
    for (uint32_t start : kStarts) {
        SCOPED_TRACE(start);
        auto q = make_queue<TypeParam>(start);
        const uint32_t n = CAP * 9 + 1;
        Tasks t(n);
        VecSink sink;
        uint64_t moved = 0;
        for (uint32_t i = 0; i < n; i++) moved += q->push_back(t[i], sink);
        EXPECT_EQ(moved, sink.got.size());
        std::vector<int> seen(n, 0);
        for (TaskHeader* x : sink.got) seen[t.index(x)]++;
        while (TaskHeader* x = q->pop()) seen[t.index(x)]++;
        for (uint32_t i = 0; i < n; i++) EXPECT_EQ(seen[i], 1) << "task " << i;
        for (uint32_t b : sink.batch_sizes) EXPECT_EQ(b, CAP / 2 + 1);
    }
}

TYPED_TEST(LocalQueueTest, StealTakesHalfRoundedUp) {
    constexpr uint32_t CAP = TypeParam::capacity;
    for (uint32_t start : kStarts) {
        for (uint32_t dst_start : {0u, UINT32_MAX - 1}) {
            for (uint32_t len = 0; len <= CAP; len++) {
                SCOPED_TRACE(::testing::Message() << "start " << start << " dst " << dst_start << " len " << len);
                auto src = make_queue<TypeParam>(start);
                auto dst = make_queue<TypeParam>(dst_start);
                Tasks t(len + 1);
                VecSink sink;
                for (uint32_t i = 0; i < len; i++) src->push_back(t[i], sink);
                uint32_t stolen = 12345;
                TaskHeader* got = src->steal_into(*dst, &stolen);
                uint32_t want = len - len / 2;
                if (len == 0) {
                    EXPECT_EQ(got, nullptr);
                    continue;
                }
                EXPECT_EQ(stolen, want);
                // The oldest `want` tasks leave src; the newest of them is
                // returned to run, the others sit in dst in order.
                EXPECT_EQ(got, t[want - 1]);
                EXPECT_EQ(dst->len(), want - 1);
                for (uint32_t i = 0; i + 1 < want; i++) EXPECT_EQ(dst->pop(), t[i]);
                EXPECT_EQ(dst->pop(), nullptr);
                EXPECT_EQ(src->len(), len - want);
                for (uint32_t i = want; i < len; i++) EXPECT_EQ(src->pop(), t[i]);
                EXPECT_EQ(src->pop(), nullptr);
                EXPECT_TRUE(sink.got.empty());
            }
        }
    }
}

TYPED_TEST(LocalQueueTest, StealRefusedWhenDestinationIsMoreThanHalfFull) {
    constexpr uint32_t CAP = TypeParam::capacity;
    auto src = make_queue<TypeParam>(UINT32_MAX - 1);
    auto dst = make_queue<TypeParam>(UINT32_MAX);
    Tasks t(2 * CAP);
    VecSink sink;
    for (uint32_t i = 0; i < CAP; i++) src->push_back(t[i], sink);
    for (uint32_t i = 0; i < CAP / 2 + 1; i++) dst->push_back(t[CAP + i], sink);
    EXPECT_EQ(src->steal_into(*dst), nullptr);
    EXPECT_EQ(src->len(), CAP);
    EXPECT_EQ(dst->len(), CAP / 2 + 1);
    // With exactly half free, a steal of half of a full queue fits.
    EXPECT_EQ(dst->pop(), t[CAP]);
    TaskHeader* got = src->steal_into(*dst);
    EXPECT_EQ(got, t[CAP / 2 - 1]);
    EXPECT_EQ(dst->len(), CAP / 2 + CAP / 2 - 1);
}

TYPED_TEST(LocalQueueTest, PopAfterStealAndPushAfterStealAcrossWrap) {
    // Mixed sequence at the wrap: steal, then keep pushing until overflow;
    // every task is accounted for exactly once.
    constexpr uint32_t CAP = TypeParam::capacity;
    for (uint32_t start : kStarts) {
        SCOPED_TRACE(start);
        auto q = make_queue<TypeParam>(start);
        auto thief = make_queue<TypeParam>(start + 7);
        const uint32_t n = 4 * CAP;
        Tasks t(n);
        VecSink sink;
        std::vector<int> seen(n, 0);
        for (uint32_t i = 0; i < n; i++) {
            q->push_back(t[i], sink);
            if (i % 3 == 2) {
                if (TaskHeader* x = q->steal_into(*thief)) seen[t.index(x)]++;
                while (TaskHeader* x = thief->pop()) seen[t.index(x)]++;
            }
        }
        for (TaskHeader* x : sink.got) seen[t.index(x)]++;
        while (TaskHeader* x = q->pop()) seen[t.index(x)]++;
        for (uint32_t i = 0; i < n; i++) EXPECT_EQ(seen[i], 1) << "task " << i;
    }
}

// ---- the owner / stealers race ---------------------------------------------------

template <class Q>
void steal_race(uint32_t start, uint64_t total) {
    constexpr int STEALERS = 3;
    Tasks t(total);
    std::unique_ptr<std::atomic<uint32_t>[]> count(new std::atomic<uint32_t>[total]);
    for (uint64_t i = 0; i < total; i++) count[i].store(0, std::memory_order_relaxed);
    auto consume = [&](TaskHeader* x) { count[t.index(x)].fetch_add(1, std::memory_order_relaxed); };

    auto owner_q = make_queue<Q>(start);
    std::vector<std::unique_ptr<Q>> thief_q;
    for (int s = 0; s < STEALERS; s++) thief_q.push_back(make_queue<Q>(start - 17u * (uint32_t)(s + 1)));

    std::atomic<bool> done{false};
    std::atomic<uint64_t> steals{0};

    std::vector<std::thread> thieves;
    for (int s = 0; s < STEALERS; s++) {
        thieves.emplace_back([&, s] {
            Q& mine = *thief_q[s];
            std::minstd_rand rng(1234u + (unsigned)s);
            for (;;) {
                bool finished = done.load(std::memory_order_acquire);
                // Mostly steal from the owner; sometimes from a fellow thief,
                // whose own pops then race with us.
                Q& victim = (rng() % 4 == 0) ? *thief_q[(s + 1) % STEALERS] : *owner_q;
                if (TaskHeader* x = victim.steal_into(mine)) {
                    steals.fetch_add(1, std::memory_order_relaxed);
                    consume(x);
                }
                // Keep some stolen tasks around so others can steal them back.
                uint32_t keep = rng() % 3;
                while (mine.len() > keep)
                    if (TaskHeader* x = mine.pop()) consume(x);
                if (finished) break;
            }
        });
    }

    // The owner: pushes every task, popping some as it goes (a worker runs
    // tasks while others steal). Overflow batches are "run" by the sink.
    struct CountSink {
        std::function<void(TaskHeader*)> f;
        void push_batch(TaskHeader* const* tasks, uint32_t n) {
            if (n == 0) bad.fetch_add(1, std::memory_order_relaxed);
            for (uint32_t i = 0; i < n; i++) f(tasks[i]);
        }
        std::atomic<uint64_t> bad{0};
    } sink;
    sink.f = consume;
    std::minstd_rand rng(42);
    for (uint64_t i = 0; i < total; i++) {
        owner_q->push_back(t[i], sink);
        if (i == 8) {
            // Make sure the race really happens at least once, whatever the
            // OS scheduler does: wait for a first successful steal.
            weft_test::spin_until([&] { return steals.load(std::memory_order_relaxed) > 0; });
        }
        if (rng() % 3 == 0) {
            if (TaskHeader* x = owner_q->pop()) consume(x);
        }
    }
    while (TaskHeader* x = owner_q->pop()) consume(x);
    done.store(true, std::memory_order_release);
    for (auto& th : thieves) th.join();
    // Joined: the thieves' queues are ours to drain.
    for (auto& q : thief_q)
        while (TaskHeader* x = q->pop()) consume(x);

    EXPECT_EQ(sink.bad.load(), 0u) << "malformed overflow batch";
    EXPECT_GT(steals.load(), 0u);
    uint64_t missing = 0, dup = 0, first_bad = UINT64_MAX;
    for (uint64_t i = 0; i < total; i++) {
        uint32_t c = count[i].load(std::memory_order_relaxed);
        if (c == 0) missing++;
        if (c > 1) dup++;
        if (c != 1 && first_bad == UINT64_MAX) first_bad = i;
    }
    EXPECT_EQ(missing, 0u) << "tasks lost (first bad index " << first_bad << ")";
    EXPECT_EQ(dup, 0u) << "tasks handed out twice (first bad index " << first_bad << ")";
}

TEST(LocalQueueRace, Cap4StealersNearWrap) {
    // 4 slots: the ring wraps every 4 pushes; starting 1000 below 2^32 makes
    // the 32-bit indices wrap early in the run too.
    steal_race<LocalQueue<4>>(UINT32_MAX - 1000, weft_test::scaled(400000));
}

TEST(LocalQueueRace, Cap4StealersFromZero) { steal_race<LocalQueue<4>>(0, weft_test::scaled(200000)); }

TEST(LocalQueueRace, Cap256StealersNearWrap) {
    steal_race<LocalQueue<256>>(UINT32_MAX - 100000, weft_test::scaled(400000));
}

}  // namespace
