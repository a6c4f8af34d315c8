// tests/test_timer_wheel.cpp — kernel::TimerWheel and kernel::Clock on their
// own, driven tick by tick: no threads, no real time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "../kernel/clock.h"
#include "../kernel/timer_wheel.h"

using weft::kernel::Clock;
using weft::kernel::TimerWheel;
using weft::kernel::WheelEntry;

namespace {

struct Entry : WheelEntry {
    int id = 0;
};

// Advances w to now and returns the ids that expired.
std::vector<int> advance(TimerWheel& w, uint64_t now) {
    TimerWheel::List out;
    w.advance(now, out);
    std::vector<int> ids;
    while (WheelEntry* e = out.pop_front()) {
        EXPECT_EQ(e->level, TimerWheel::EXPIRED);
        EXPECT_FALSE(e->is_linked());
        ids.push_back(static_cast<Entry*>(e)->id);
    }
    return ids;
}

// Every entry expires at exactly the first advance whose now >= when.
void check_exact_expiry(std::vector<uint64_t> whens, std::vector<uint64_t> steps) {
    TimerWheel w;
    std::vector<Entry> es(whens.size());
    for (size_t i = 0; i < whens.size(); i++) {
        es[i].id = (int)i;
        es[i].when = whens[i];
        w.insert(&es[i]);
    }
    std::vector<bool> done(whens.size(), false);
    for (uint64_t now : steps) {
        for (int id : advance(w, now)) {
            ASSERT_FALSE(done[id]) << "entry " << id << " expired twice";
            ASSERT_LE(whens[id], now) << "entry " << id << " expired early";
            done[id] = true;
        }
        for (size_t i = 0; i < whens.size(); i++)
            if (whens[i] <= now) {
                ASSERT_TRUE(done[i]) << "entry " << i << " (when " << whens[i] << ") late at " << now;
            }
    }
}

}  // namespace

TEST(TimerWheel, EmptyHasNoExpiration) {
    TimerWheel w;
    EXPECT_EQ(w.next_expiration(), TimerWheel::NONE);
    EXPECT_TRUE(advance(w, 1000000).empty());
    EXPECT_EQ(w.elapsed(), 1000000u);
}

TEST(TimerWheel, LevelBoundariesTickByTick) {
    // Around every level boundary of the first three levels.
    std::vector<uint64_t> whens = {1, 2, 62, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 4160, 8191, 8192, 262143, 262144, 262145};
    std::vector<uint64_t> steps;
    for (uint64_t t = 0; t <= 262200; t++) steps.push_back(t);
    check_exact_expiry(whens, steps);
}

TEST(TimerWheel, OrderAcrossLevelsWithJumps) {
    std::mt19937_64 rng(42);
    std::vector<uint64_t> whens;
    for (int i = 0; i < 2000; i++) {
        int level = (int)(rng() % 4);
        uint64_t span = uint64_t(64) << (6 * level);
        whens.push_back(1 + rng() % span);
    }
    std::vector<uint64_t> steps;
    for (uint64_t t = 0; t < (uint64_t(64) << 18);) {
        steps.push_back(t);
        t += 1 + rng() % 5000;
    }
    steps.push_back(uint64_t(64) << 18);
    check_exact_expiry(whens, steps);
}

TEST(TimerWheel, NextExpirationIsNeverLaterThanTheEarliestEntry) {
    std::mt19937_64 rng(7);
    TimerWheel w;
    std::vector<Entry> es(500);
    uint64_t earliest = TimerWheel::NONE;
    for (auto& e : es) {
        e.when = 1 + rng() % 100000000;
        earliest = std::min(earliest, e.when);
        w.insert(&e);
    }
    uint64_t next = w.next_expiration();
    EXPECT_LE(next, earliest);
    // Advancing to next expires nothing early and keeps the promise again.
    while (!w.empty()) {
        next = w.next_expiration();
        for (int id : advance(w, next)) (void)id;
        uint64_t min_left = TimerWheel::NONE;
        for (auto& e : es)
            if (e.level != TimerWheel::EXPIRED) min_left = std::min(min_left, e.when);
        if (min_left != TimerWheel::NONE) {
            ASSERT_LE(w.next_expiration(), min_left);
        }
    }
}

TEST(TimerWheel, RemoveInEveryLevelAndOverflow) {
    TimerWheel w;
    std::vector<uint64_t> whens = {5, 100, 5000, 300000, 20000000, uint64_t(1) << 33, uint64_t(1) << 40, ~uint64_t(0) - 1};
    std::vector<Entry> es(whens.size());
    for (size_t i = 0; i < whens.size(); i++) {
        es[i].id = (int)i;
        es[i].when = whens[i];
        w.insert(&es[i]);
    }
    EXPECT_EQ(es.back().level, TimerWheel::OVERFLOW);
    EXPECT_EQ(es[6].level, TimerWheel::OVERFLOW);
    for (auto& e : es) w.remove(&e);
    EXPECT_TRUE(w.empty());
    EXPECT_EQ(w.next_expiration(), TimerWheel::NONE);
    EXPECT_TRUE(advance(w, ~uint64_t(0) - 1).empty());
}

TEST(TimerWheel, FarFutureDeadlinesAcrossBlockBoundaries) {
    // Entries beyond one 2^36-tick block wait on the overflow list and come
    // into the levels when their block starts: never early, never lost.
    const uint64_t B = TimerWheel::SPAN;
    std::vector<uint64_t> whens = {B - 1, B, B + 1, B + 5, 2 * B + 3, 5 * B + 12345, 40 * B};
    std::vector<uint64_t> steps = {0, B - 2, B - 1, B, B + 1, B + 4, B + 5, 2 * B, 2 * B + 2, 2 * B + 3,
                                   5 * B, 5 * B + 12344, 5 * B + 12345, 39 * B, 40 * B - 1, 40 * B};
    check_exact_expiry(whens, steps);
}

TEST(TimerWheel, ElapsedNearABlockEndPlacesShortTimersCorrectly) {
    const uint64_t B = TimerWheel::SPAN;
    TimerWheel w;
    advance(w, B - 3);
    Entry a, b;
    a.id = 1;
    a.when = B + 2;  // crosses into the next block: overflow, then level 0
    b.id = 2;
    b.when = B - 1;
    w.insert(&a);
    w.insert(&b);
    EXPECT_EQ(advance(w, B - 1), std::vector<int>{2});
    EXPECT_TRUE(advance(w, B + 1).empty());
    EXPECT_EQ(advance(w, B + 2), std::vector<int>{1});
}

// A sequential model: every live entry expires exactly when now reaches it.
TEST(TimerWheel, RandomOperationsMatchASortedModel) {
    std::mt19937_64 rng(2026);
    TimerWheel w;
    std::vector<Entry> pool(4000);
    std::multimap<uint64_t, int> model;  // when -> id of live entries
    std::vector<int> free_ids;
    for (int i = 0; i < (int)pool.size(); i++) {
        pool[i].id = i;
        free_ids.push_back(i);
    }
    std::vector<bool> live(pool.size(), false);
    uint64_t now = 0;
    for (int op = 0; op < 200000; op++) {
        uint64_t r = rng() % 100;
        if (r < 50 && !free_ids.empty()) {
            int id = free_ids.back();
            free_ids.pop_back();
            uint64_t range = uint64_t(1) << (rng() % 40);
            pool[id].when = now + 1 + rng() % range;
            w.insert(&pool[id]);
            model.emplace(pool[id].when, id);
            live[id] = true;
        } else if (r < 70) {
            // remove a random live entry
            if (model.empty()) continue;
            auto it = model.begin();
            std::advance(it, rng() % std::min<size_t>(model.size(), 16));
            int id = it->second;
            w.remove(&pool[id]);
            model.erase(it);
            live[id] = false;
            free_ids.push_back(id);
        } else {
            uint64_t step = rng() % 3 == 0 ? rng() % (uint64_t(1) << (rng() % 36)) : rng() % 70;
            now += step;
            std::vector<int> got = advance(w, now);
            std::multiset<int> expect;
            while (!model.empty() && model.begin()->first <= now) {
                expect.insert(model.begin()->second);
                model.erase(model.begin());
            }
            ASSERT_EQ(std::multiset<int>(got.begin(), got.end()), expect) << "at op " << op << " now " << now;
            for (int id : got) {
                live[id] = false;
                free_ids.push_back(id);
            }
        }
        ASSERT_EQ(w.count(), model.size());
    }
}

// ---- the clock guard --------------------------------------------------------

namespace {
uint64_t g_fake_ns = 0;
uint64_t fake_clock(void*) { return g_fake_ns; }
}  // namespace

TEST(Clock, NeverGoesBackwards) {
    Clock c;
    g_fake_ns = 1000;
    c.init(fake_clock, nullptr);
    EXPECT_EQ(c.now(), 1000u);
    g_fake_ns = 5000;
    EXPECT_EQ(c.now(), 5000u);
    g_fake_ns = 3000;  // the source jumps backwards
    EXPECT_EQ(c.now(), 5000u);
    g_fake_ns = 4999;
    EXPECT_EQ(c.now(), 5000u);
    g_fake_ns = 5001;  // and catches up
    EXPECT_EQ(c.now(), 5001u);
    g_fake_ns = 0;
    EXPECT_EQ(c.now(), 5001u);
}

// The default clock publishes in steps (clock.h): every value now() returns
// was published, it never trails the source by PUBLISH_STEP_NS or more, and
// on one thread each change is a step of at least PUBLISH_STEP_NS.
TEST(Clock, DefaultReadingsAdvanceInPublishedSteps) {
    Clock c;
    c.init(nullptr, nullptr);
    uint64_t last = c.now();
    uint64_t changes = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t before = weft::port::monotonic_ns();
        uint64_t t = c.now();
        ASSERT_GE(t, last);
        ASSERT_LT(before, t + Clock::PUBLISH_STEP_NS) << "trails the source by a step or more";
        if (t != last) {
            ASSERT_GE(t - last, Clock::PUBLISH_STEP_NS) << "a change smaller than a step";
            changes++;
        }
        last = t;
    }
    EXPECT_GT(changes, 0u);
    // An exact publication (observe: a deadline passed) is returned as is,
    // and the next reading is not smaller.
    uint64_t r = c.raw();
    EXPECT_GE(c.observe(r), r);
    EXPECT_GE(c.now(), r);
}

// Two threads reading at once: each one's readings never go backwards, and
// after a thread's reading, a reading by the other is not smaller (the
// handshake orders them).
TEST(Clock, DefaultReadingsAreMonotonicAcrossThreads) {
    Clock c;
    c.init(nullptr, nullptr);
    std::atomic<uint64_t> seen{0};
    std::atomic<bool> bad{false};
    auto reader = [&] {
        uint64_t mine = 0;
        for (int i = 0; i < 100000; i++) {
            uint64_t other = seen.load(std::memory_order_acquire);
            uint64_t t = c.now();
            if (t < mine || t < other) bad.store(true, std::memory_order_relaxed);
            mine = t;
            uint64_t cur = seen.load(std::memory_order_relaxed);
            while (t > cur && !seen.compare_exchange_weak(cur, t, std::memory_order_release)) {
            }
        }
    };
    std::thread a(reader), b(reader);
    a.join();
    b.join();
    EXPECT_FALSE(bad.load());
}

TEST(Clock, MonotonicDefaultAdvances) {
    Clock c;
    c.init(nullptr, nullptr);
    uint64_t a = c.now();
    uint64_t b = c.now();
    EXPECT_LE(a, b);
    EXPECT_GT(a, 0u);
    EXPECT_FALSE(c.injected());
}
