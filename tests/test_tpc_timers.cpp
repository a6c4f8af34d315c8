// Timers on the thread-per-core executor (kernel/tpc.cpp: the per-executor
// wheel, park timeouts, shutdown): sleeps never fire early, weft::timeout and
// weft::interval work there, the C timer API binds to the executor, shutdown
// closes registered timers, and a timer used off its executor's thread is
// refused. No test asserts how late a timer fires (the machines are shared):
// only that it is never early and that it fires.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>
#include <weft/sync.hpp>
#include <weft/time.hpp>
#include <weft/tpc.hpp>

#include "past_deadline.h"

using namespace std::chrono_literals;

namespace {

// When a sleeper's deadline was and when it woke.
struct Woke {
    uint64_t deadline;
    uint64_t at;
};

// sleep_until the very deadline reported: weft::sleep(d) reads the clock
// again, and a thread descheduled between the two reads (qemu under load)
// would sleep until a later deadline than the one reported.
weft::Task<Woke> sleep_and_report(std::chrono::milliseconds d) {
    auto until = weft::clock::now() + d;
    uint64_t deadline = (uint64_t)until.time_since_epoch().count();
    co_await weft::sleep_until(until);
    uint64_t now = weft_now();
    EXPECT_GE(now, deadline) << "a timer fired early";
    co_return Woke{deadline, now};
}

TEST(TpcTimers, SleepsFireInDeadlineOrderAndNeverEarly) {
    weft::tpc::Executor ex;
    auto bad = ex.block_on([]() -> weft::Task<std::vector<std::string>> {
        std::vector<weft::JoinHandle<Woke>> hs;
        // Spawned in reverse order of their durations. Each deadline is taken
        // at the task's first poll, so on a slow machine (qemu) a later task's
        // shorter sleep may still end later: the order checked is that of the
        // deadlines themselves.
        for (int ms = 12; ms >= 1; ms--) hs.push_back(weft::tpc::spawn(sleep_and_report(std::chrono::milliseconds(ms))));
        std::vector<Woke> woke;
        for (auto& h : hs) woke.push_back(co_await h);
        std::sort(woke.begin(), woke.end(), [](const Woke& a, const Woke& b) { return a.deadline < b.deadline; });
        // Of two deadlines at least a tick (1 ms) apart, the earlier one
        // wakes first (1 ms of slack for the wake-time reading). Deadlines
        // closer than that may share a tick, whose timers fire together and
        // are polled in any order (and a thread descheduled between two
        // polls puts milliseconds between them).
        std::vector<std::string> out;
        for (size_t i = 0; i < woke.size(); i++)
            for (size_t j = i + 1; j < woke.size(); j++)
                if (woke[j].deadline - woke[i].deadline >= 1000000 && woke[i].at > woke[j].at + 1000000)
                    out.push_back("deadline " + std::to_string(woke[i].deadline) + " woke at " +
                                  std::to_string(woke[i].at) + ", after deadline " + std::to_string(woke[j].deadline) +
                                  " woke at " + std::to_string(woke[j].at));
        co_return out;
    }());
    EXPECT_TRUE(bad.empty()) << bad.size() << " out of order, first: " << (bad.empty() ? "" : bad[0]);
    EXPECT_EQ(ex.metrics().live_tasks, 0u);
}

// A deadline that passed after weft's clock was last read still fires, at
// the loop's next look at the wheel, and not early (past_deadline.h).
TEST(TpcTimers, ADeadlinePassedSinceTheClockWasLastReadStillFires) {
    weft::tpc::Executor ex;
    for (int round = 0; round < 20; round++) {
        ex.block_on(weft_test::sleep_until_a_deadline_passed_unseen());  // asserts inside
    }
}

TEST(TpcTimers, WeftSpawnInsideATpcTaskSpawnsLocally) {
    weft::tpc::Executor ex;
    int v = ex.block_on([]() -> weft::Task<int> {
        auto h = weft::spawn([]() -> weft::Task<int> { co_return 20; }());  // the generic spawn
        co_return co_await h + 1;
    }());
    EXPECT_EQ(v, 21);
    EXPECT_EQ(ex.metrics().spawned_local, 2u);
}

TEST(TpcTimers, TimeoutFiresAndCompletes) {
    weft::tpc::Executor ex;
    bool timed_out = ex.block_on([]() -> weft::Task<bool> {
        auto r = co_await weft::timeout(5ms, sleep_and_report(10s));
        co_return r.timed_out;
    }());
    EXPECT_TRUE(timed_out);
    bool finished = ex.block_on([]() -> weft::Task<bool> {
        auto r = co_await weft::timeout(10s, sleep_and_report(1ms));
        co_return !r.timed_out;
    }());
    EXPECT_TRUE(finished);
    EXPECT_EQ(ex.metrics().live_tasks, 0u);
}

TEST(TpcTimers, IntervalTicks) {
    weft::tpc::Executor ex;
    int ticks = ex.block_on([]() -> weft::Task<int> {
        // Read before the Interval: its schedule starts at its own clock
        // read, and the last tick may fire within microseconds of its due
        // time, so a `start` read after it (a thread descheduled between
        // the two) could be less than 4 ms before that tick.
        uint64_t start = weft_now();
        weft::Interval iv(1ms);
        int n = 0;
        for (; n < 5; n++) co_await iv.tick();
        // The first tick is immediate; four more periods follow.
        EXPECT_GE(weft_now() - start, 4 * 1000000ull);
        co_return n;
    }());
    EXPECT_EQ(ticks, 5);
}

// ---- the C timer API on an executor ------------------------------------------------

struct CSleep {
    weft_timer timer;
    int64_t ns;
    int polls = 0;
    int drops = 0;
    bool armed = false;
};

int csleep_poll(void* data, weft_context* cx, void* out) {
    CSleep* s = static_cast<CSleep*>(data);
    s->polls++;
    int r;
    if (!s->armed) {
        if (weft_timer_init(&s->timer, nullptr) != 0) return WEFT_EINVAL;
        s->armed = true;
        // The arming poll must register the timer (PENDING): a thread
        // descheduled between arming and polling (qemu, a loaded host) can
        // find a short sleep already due. Then arm again with twice the
        // duration until the poll registers it.
        for (;;) {
            if (weft_timer_sleep_for(&s->timer, s->ns) != 0) return WEFT_EINVAL;
            r = weft_timer_poll(&s->timer, cx);
            if (r != WEFT_READY) break;
            s->ns *= 2;
        }
    } else {
        r = weft_timer_poll(&s->timer, cx);
    }
    if (r == WEFT_PENDING) return WEFT_PENDING;
    *static_cast<int*>(out) = r;
    return WEFT_READY;
}
void csleep_drop(void* data) {
    CSleep* s = static_cast<CSleep*>(data);
    if (s->armed) weft_timer_cancel(&s->timer);
    s->drops++;
}

TEST(TpcTimers, CTimerOnAnExecutor) {
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    CSleep s;
    s.ns = 2000000;
    weft_task_desc d{sizeof(d), csleep_poll, csleep_drop, &s, sizeof(int)};
    int out = -1;
    uint64_t t0 = weft_now();
    ASSERT_EQ(weft_tpc_block_on(ex, &d, &out), 0);
    EXPECT_EQ(out, WEFT_READY);
    EXPECT_GE(weft_now() - t0, (uint64_t)s.ns);  // s.ns: 2 ms, or what the arming poll settled on
    EXPECT_GE(s.polls, 2);  // pending first, then ready
    EXPECT_EQ(s.drops, 1);
    EXPECT_EQ(weft_tpc_free(ex), 0);
}

TEST(TpcTimers, ShutdownDropsSleepersOnceAndClosesCallerTimers) {
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    // Three C tasks asleep for an hour, never run to completion.
    CSleep s[3];
    weft_join* j[3];
    for (int i = 0; i < 3; i++) {
        s[i].ns = 3600ll * 1000000000ll;
        weft_task_desc d{sizeof(d), csleep_poll, csleep_drop, &s[i], sizeof(int)};
        ASSERT_EQ(weft_tpc_spawn(ex, &d, &j[i]), 0);
    }
    // A timer owned by the caller, registered from the owner thread outside
    // any task (with a no-op waker), so only shutdown can close it.
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, nullptr), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 3600ll * 1000000000ll), 0);
    weft_context cx{weft_waker_noop()};
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);
    // Run the three tasks once (each registers its timer), via a block_on of
    // a task that finishes at once.
    weft_task_desc quick{sizeof(quick), [](void*, weft_context*, void*) { return WEFT_READY; }, nullptr, nullptr, 0};
    ASSERT_EQ(weft_tpc_block_on(ex, &quick, nullptr), 0);
    for (auto& x : s) EXPECT_EQ(x.polls, 1);
    EXPECT_EQ(weft_tpc_free(ex), 0);
    for (auto& x : s) EXPECT_EQ(x.drops, 1);
    for (auto* h : j) {
        EXPECT_EQ(weft_join_status(h), WEFT_ECANCELED);
        weft_join_free(h);
    }
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_ECLOSED);
    weft_timer_cancel(&t);  // safe after the executor's end
}

TEST(TpcTimers, TimerUsedOffItsExecutorThreadIsRefused) {
    weft::tpc::Executor ex;
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, nullptr), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 3600ll * 1000000000ll), 0);
    int from_other = 0;
    std::thread([&] {
        weft_context cx{weft_waker_noop()};
        from_other = weft_timer_poll(&t, &cx);
    }).join();
    EXPECT_EQ(from_other, WEFT_EINVAL);
    weft_timer_cancel(&t);
}

// Registered in its executor's wheel, a timer cannot be reset, re-armed or
// re-initialised from another thread: that would mark it idle (or rebuild
// it) while the wheel still links it. Refused, and it stays registered.
TEST(TpcTimers, ARegisteredTimerIsNotResetOrReinitialisedOffItsExecutorThread) {
    weft::tpc::Executor ex;
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, nullptr), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 3600ll * 1000000000ll), 0);
    weft_context cx{weft_waker_noop()};
    ASSERT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);  // registered
    uint64_t deadline = weft_timer_deadline(&t);
    weft::Runtime rt(1);  // a runtime the other thread could rebind it to
    int reset = 0, sleep_for = 0, init = 0;
    std::thread([&] {
        reset = weft_timer_reset(&t, 1);
        sleep_for = weft_timer_sleep_for(&t, 0);
        init = weft_timer_init(&t, rt.get());
    }).join();
    EXPECT_EQ(reset, WEFT_EINVAL);
    EXPECT_EQ(sleep_for, WEFT_EINVAL);
    EXPECT_EQ(init, WEFT_EINVAL);
    EXPECT_EQ(weft_timer_deadline(&t), deadline) << "untouched";
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING) << "still registered, once";
    // On its own thread all of it works.
    EXPECT_EQ(weft_timer_reset(&t, 1), 0);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_READY);
    EXPECT_EQ(weft_timer_init(&t, nullptr), 0);
    weft_timer_cancel(&t);
}

// Shards sleep with park timeouts; a shard whose only task sleeps must wake
// for it (no other event arrives).
weft::Task<void> shard_sleeper(weft::mpsc::Sender<uint32_t> tx_arg) {
    auto tx = std::move(tx_arg);
    for (int i = 0; i < 3; i++) co_await weft::sleep(2ms);
    (void)co_await tx.send(weft::tpc::current_shard());
}

TEST(TpcTimers, ShardsWakeForTheirOwnTimers) {
    for (uint32_t flags : {0u, (uint32_t)WEFT_TPC_NO_SPIN}) {
        weft::tpc::ShardSet shards(2, false, WEFT_TPC_WAKE_DEFAULT, nullptr, flags);
        auto [tx, rx] = weft::mpsc::channel<uint32_t>(4);
        shards.spawn_on(0, shard_sleeper(tx));
        shards.spawn_on(1, shard_sleeper(tx));
        uint32_t seen = 0;
        for (int i = 0; i < 2; i++) {
            auto v = rx.recv_blocking();
            ASSERT_TRUE(v.has_value());
            seen |= 1u << *v;
        }
        EXPECT_EQ(seen, 3u);
    }
}

}  // namespace
