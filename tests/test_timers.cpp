// tests/test_timers.cpp — timers through the C ABI and weft/time.hpp, on
// real runtimes. Most tests inject a manual clock (weft_runtime_config.clock)
// and step it, so nothing waits on real time except the "has it not fired
// yet?" checks, which give the workers a couple of milliseconds.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "../kernel/task.h"  // task_refs: a raw task's reference count, read in place
#include "past_deadline.h"

#include "test_support.h"

using namespace std::chrono_literals;
using weft_test::scaled;
using weft_test::spin_until;

namespace {

constexpr uint64_t MS = 1000000;

// A clock the test moves by hand. Starts far from zero, like a real one.
struct ManualClock {
    std::atomic<uint64_t> ns{uint64_t(1000000) * 1000 * MS};  // 11.6 days
    static uint64_t read(void* self) { return static_cast<ManualClock*>(self)->ns.load(std::memory_order_acquire); }
};

weft_runtime_config manual_config(ManualClock* c, uint32_t workers) {
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = workers;
    cfg.clock = &ManualClock::read;
    cfg.clock_ctx = c;
    return cfg;
}

// Steps the clock and tells the runtime.
void advance(weft::Runtime& rt, ManualClock& c, uint64_t ns) {
    c.ns.fetch_add(ns, std::memory_order_acq_rel);
    weft_runtime_clock_changed(rt.get());
}

// Gives the workers time to act on something they should NOT act on.
void let_workers_run() { std::this_thread::sleep_for(3ms); }

// A waker that counts wakes and drops (not a task: for timers polled from
// plain threads).
struct CountingWaker {
    std::atomic<int> wakes{0};
    std::atomic<int> refs{0};  // clones not yet dropped
    static weft_waker clone(const void* p) {
        auto* self = static_cast<CountingWaker*>(const_cast<void*>(p));
        self->refs.fetch_add(1);
        return weft_waker{p, &vtable};
    }
    // The wakes increment comes last: tests wait for it and then destroy
    // the waker, so it must be this call's last touch of the object.
    static void wake(const void* p) {
        auto* self = static_cast<CountingWaker*>(const_cast<void*>(p));
        self->refs.fetch_sub(1);
        self->wakes.fetch_add(1);
    }
    static void wake_by_ref(const void* p) { static_cast<CountingWaker*>(const_cast<void*>(p))->wakes.fetch_add(1); }
    static void drop(const void* p) { static_cast<CountingWaker*>(const_cast<void*>(p))->refs.fetch_sub(1); }
    static constexpr weft_waker_vtable vtable{clone, wake, wake_by_ref, drop};
    weft_context cx() {
        weft_context c;
        std::memset(&c, 0, sizeof c);
        c.waker = weft_waker{this, &vtable};
        return c;
    }
};

weft::Task<uint64_t> sleep_then_now(std::chrono::nanoseconds d) {
    co_await weft::sleep(d);
    co_return weft_now();
}

}  // namespace

// ---- C ABI -------------------------------------------------------------------

// One cache line: a timer lives in its task's memory (kernel/timer.h), and
// what it adds to every sleeping task is what a memory-bound timer workload
// pays for.
static_assert(sizeof(weft_timer) == 64, "weft_timer grew");

TEST(TimerAbi, BadInput) {
    weft_timer t;
    std::memset(&t, 0, sizeof t);
    EXPECT_EQ(weft_timer_init(nullptr, nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_timer_init(&t, nullptr), WEFT_EINVAL);  // not on a worker, no runtime given
    EXPECT_EQ(weft_timer_reset(&t, 5), WEFT_EINVAL);      // not initialised
    EXPECT_EQ(weft_timer_sleep_for(&t, 5), WEFT_EINVAL);
    CountingWaker cw;
    weft_context cx = cw.cx();
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_EINVAL);
    weft_timer_cancel(&t);  // harmless
    weft_timer_cancel(nullptr);

    weft::Runtime rt(1);
    ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_EINVAL) << "no deadline yet";
    EXPECT_EQ(weft_timer_sleep_for(&t, -1), WEFT_EINVAL);
    EXPECT_EQ(weft_timer_sleep_for(&t, INT64_MIN), WEFT_EINVAL);
    EXPECT_EQ(weft_timer_poll(&t, nullptr), WEFT_EINVAL);
    // Overflowing durations saturate to "never".
    ASSERT_EQ(weft_timer_sleep_for(&t, INT64_MAX), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, INT64_MAX), 0);
    EXPECT_GE(weft_timer_deadline(&t), (uint64_t)INT64_MAX);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);
    weft_timer_cancel(&t);
    EXPECT_EQ(cw.refs.load(), 0);
    EXPECT_EQ(cw.wakes.load(), 0);
    EXPECT_EQ(weft_runtime_clock_changed(nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_now(nullptr), 0u);
}

TEST(TimerAbi, PastDeadlineIsReadyAtOnce) {
    weft::Runtime rt(1);
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
    CountingWaker cw;
    weft_context cx = cw.cx();
    ASSERT_EQ(weft_timer_reset(&t, 0), 0);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_READY);
    ASSERT_EQ(weft_timer_sleep_for(&t, 0), 0);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_READY);
    EXPECT_EQ(cw.refs.load(), 0);
    weft_timer_cancel(&t);
}

// A deadline that passed after weft's clock last returned, but within a tick
// of that time: the poll reads the clock and answers at once (it would
// otherwise be registered and wait for the end of the tick, up to 1 ms:
// found in review).
TEST(TimerAbi, ADeadlinePassedWithinATickOfTheLastReadingIsReadyAtOnce) {
    weft::Runtime rt(1);
    for (int round = 0; round < 20; round++) {
        weft_timer t;
        ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
        CountingWaker cw;
        weft_context cx = cw.cx();
        uint64_t t0 = weft_runtime_now(rt.get());
        while (weft_test::monotonic_ns_direct() < t0 + 300000) {
        }
        ASSERT_EQ(weft_timer_reset(&t, t0 + 100000), 0);
        EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_READY);
        EXPECT_GE(weft_runtime_now(rt.get()), t0 + 100000) << "the answer was published";
        EXPECT_EQ(cw.refs.load(), 0);
        weft_timer_cancel(&t);
    }
}

TEST(TimerAbi, FrozenSteppedAndBackwardsClock) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 2));
    uint64_t t0 = weft_runtime_now(rt.get());
    EXPECT_EQ(t0, clk.ns.load());

    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 10 * MS), 0);
    EXPECT_EQ(weft_timer_deadline(&t), t0 + 10 * MS);
    CountingWaker cw;
    weft_context cx = cw.cx();
    ASSERT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);

    // Frozen: nothing fires however long we wait.
    let_workers_run();
    EXPECT_EQ(cw.wakes.load(), 0);
    // Stepped to just before the deadline: still nothing.
    advance(rt, clk, 10 * MS - 1);
    let_workers_run();
    EXPECT_EQ(cw.wakes.load(), 0);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);
    // Backwards by an hour: weft's clock holds at the last time it returned,
    // and nothing fires.
    EXPECT_EQ(weft_runtime_now(rt.get()), t0 + 10 * MS - 1);
    clk.ns.fetch_sub(3600 * 1000 * MS);
    weft_runtime_clock_changed(rt.get());
    EXPECT_EQ(weft_runtime_now(rt.get()), t0 + 10 * MS - 1);
    let_workers_run();
    EXPECT_EQ(cw.wakes.load(), 0);
    // The source comes back and reaches the deadline: it fires, once.
    clk.ns.fetch_add(3600 * 1000 * MS + 1);
    weft_runtime_clock_changed(rt.get());
    spin_until([&] { return cw.wakes.load() == 1; });
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_READY);
    EXPECT_GE(weft_runtime_now(rt.get()), weft_timer_deadline(&t));
    let_workers_run();
    EXPECT_EQ(cw.wakes.load(), 1);
    EXPECT_EQ(cw.refs.load(), 0);
    weft_timer_cancel(&t);
}

TEST(TimerAbi, CancelBeforeFiringDropsTheWaker) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 1));
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 5 * MS), 0);
    CountingWaker cw;
    weft_context cx = cw.cx();
    ASSERT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);
    EXPECT_EQ(cw.refs.load(), 1);
    weft_timer_cancel(&t);
    EXPECT_EQ(cw.refs.load(), 0);
    advance(rt, clk, 100 * MS);
    let_workers_run();
    EXPECT_EQ(cw.wakes.load(), 0);
    // The deadline is kept: polling again registers again, and it is due.
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_READY);
    weft_timer_cancel(&t);
    // Cancel after firing is a no-op too.
    ASSERT_EQ(weft_timer_sleep_for(&t, 1 * MS), 0);
    ASSERT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);
    advance(rt, clk, 2 * MS);
    spin_until([&] { return cw.wakes.load() == 1; });
    weft_timer_cancel(&t);
    weft_timer_cancel(&t);
    EXPECT_EQ(cw.refs.load(), 0);
}

TEST(TimerAbi, RepollWithAnotherWakerReplacesIt) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 1));
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 5 * MS), 0);
    CountingWaker a, b;
    weft_context ca = a.cx(), cb = b.cx();
    ASSERT_EQ(weft_timer_poll(&t, &ca), WEFT_PENDING);
    ASSERT_EQ(weft_timer_poll(&t, &cb), WEFT_PENDING);
    EXPECT_EQ(a.refs.load(), 0);
    EXPECT_EQ(b.refs.load(), 1);
    ASSERT_EQ(weft_timer_poll(&t, &cb), WEFT_PENDING);  // same waker: kept
    EXPECT_EQ(b.refs.load(), 1);
    advance(rt, clk, 5 * MS);
    spin_until([&] { return b.wakes.load() == 1; });
    EXPECT_EQ(a.wakes.load(), 0);
    weft_timer_cancel(&t);
}

// ---- a timeout in its own task's memory borrows the task's waker --------
// (kernel/timer.h, "Borrowed wakers": for a deadline 64 ticks ahead or more,
// no reference is taken at registration; the firing thread wakes the task
// by reference under the wheel's lock.)

namespace {

// The reference count of a raw task, read in place from its state word:
// white-box, through the kernel's header layout (inline code only).
uint64_t task_refs(void* state) { return weft::kernel::TaskHeader::from_state(state)->state.load().refs(); }

constexpr int64_t FAR = 100 * (int64_t)MS;  // past BORROW_AHEAD_TICKS (64 ms)

struct BorrowProbe {
    weft_timer timer;  // in the task's state
    weft_timer* outside;  // the same wait in memory the task does not own
    weft_timer near;   // in the task's state, due in 5 ms: a sleep, cloned
    CountingWaker* foreign;
    uint64_t refs_before = 0, refs_in_state = 0, refs_outside = 0, refs_foreign = 0, refs_back = 0, refs_near = 0;
    std::atomic<int> polls{0};
    std::atomic<bool> measured{false};  // the refs_* above are written (release)
    static int poll(void* st, weft_context* cx) {
        auto* p = static_cast<BorrowProbe*>(st);
        if (p->polls.fetch_add(1) == 0) {
            EXPECT_EQ(weft_timer_init(&p->timer, nullptr), 0);
            EXPECT_EQ(weft_timer_init(&p->near, nullptr), 0);
            EXPECT_EQ(weft_timer_sleep_for(&p->timer, FAR), 0);
            EXPECT_EQ(weft_timer_sleep_for(p->outside, FAR), 0);
            EXPECT_EQ(weft_timer_sleep_for(&p->near, 5 * MS), 0);
            p->refs_before = task_refs(st);
            EXPECT_EQ(weft_timer_poll(&p->timer, cx), WEFT_PENDING);
            p->refs_in_state = task_refs(st);
            EXPECT_EQ(weft_timer_poll(p->outside, cx), WEFT_PENDING);
            p->refs_outside = task_refs(st);
            // Re-polled with a foreign waker (cloned), then with the task's
            // own again (borrowed; the foreign one is dropped).
            weft_context fcx = p->foreign->cx();
            EXPECT_EQ(weft_timer_poll(&p->timer, &fcx), WEFT_PENDING);
            p->refs_foreign = task_refs(st);
            EXPECT_EQ(weft_timer_poll(&p->timer, cx), WEFT_PENDING);
            p->refs_back = task_refs(st);
            EXPECT_EQ(weft_timer_poll(&p->near, cx), WEFT_PENDING);
            p->refs_near = task_refs(st);
            p->measured.store(true, std::memory_order_release);
            return WEFT_PENDING;
        }
        int a = weft_timer_poll(&p->timer, cx);
        int b = weft_timer_poll(p->outside, cx);
        int c = weft_timer_poll(&p->near, cx);
        if (a != WEFT_READY || b != WEFT_READY || c != WEFT_READY) return WEFT_PENDING;
        weft_timer_cancel(&p->timer);
        weft_timer_cancel(p->outside);
        weft_timer_cancel(&p->near);
        return WEFT_READY;
    }
    static void drop(void* st) {
        auto* p = static_cast<BorrowProbe*>(st);
        weft_timer_cancel(&p->timer);
        weft_timer_cancel(p->outside);
        weft_timer_cancel(&p->near);
        p->~BorrowProbe();
    }
    static constexpr weft_task_vtable vtable{poll, drop, drop};
};

// A raw task that completes with its timer still registered: drop_output
// (or drop_future) cancels it, as weft_time.h asks, when the task's memory
// is about to be freed.
struct LeftRegistered {
    weft_timer timer;
    int64_t sleep_ns;
    std::atomic<int>* drops;
    int64_t hold_ns = 0;  // the drop waits this long before it cancels
    bool borrowed = false;  // the registration took no reference
    static int poll(void* st, weft_context* cx) {
        auto* p = static_cast<LeftRegistered*>(st);
        EXPECT_EQ(weft_timer_init(&p->timer, nullptr), 0);
        EXPECT_EQ(weft_timer_sleep_for(&p->timer, p->sleep_ns), 0);
        uint64_t before = task_refs(st);
        EXPECT_EQ(weft_timer_poll(&p->timer, cx), WEFT_PENDING);
        p->borrowed = task_refs(st) == before;
        return WEFT_READY;  // the timer stays in the wheel
    }
    static void drop(void* st) {
        auto* p = static_cast<LeftRegistered*>(st);
        // Only the drop's own count and clock: the task is being freed, and
        // for a while its timer is still in the wheel while nothing holds a
        // reference to the task.
        if (p->hold_ns) std::this_thread::sleep_for(std::chrono::nanoseconds(p->hold_ns));
        weft_timer_cancel(&p->timer);
        p->drops->fetch_add(1);
    }
    static constexpr weft_task_vtable vtable{poll, drop, drop};
};

void* new_left_registered(int64_t sleep_ns, std::atomic<int>* drops, int64_t hold_ns = 0) {
    void* st = weft_task_alloc(sizeof(LeftRegistered), &LeftRegistered::vtable);
    if (st) new (st) LeftRegistered{{}, sleep_ns, drops, hold_ns, false};
    return st;
}


}  // namespace

TEST(TimerAbi, ATimerInItsTasksStateBorrowsTheTasksWaker) {
    ManualClock clk;
    weft_timer outside;     // both outlive the runtime (and so the task)
    CountingWaker foreign;
    weft::Runtime rt(manual_config(&clk, 1));
    ASSERT_EQ(weft_timer_init(&outside, rt.get()), 0);
    void* st = weft_task_alloc(sizeof(BorrowProbe), &BorrowProbe::vtable);
    ASSERT_NE(st, nullptr);
    auto* p = new (st) BorrowProbe{};
    p->outside = &outside;
    p->foreign = &foreign;
    weft_join* j = nullptr;
    ASSERT_EQ(weft_task_spawn(rt.get(), st, &j), 0);
    spin_until([&] { return p->measured.load(std::memory_order_acquire); });
    EXPECT_EQ(p->refs_in_state, p->refs_before) << "a timer in the task's state takes no reference";
    EXPECT_EQ(p->refs_outside, p->refs_before + 1) << "one outside the task's memory clones the waker";
    EXPECT_EQ(p->refs_foreign, p->refs_before + 1) << "re-polled with a foreign waker: no task reference left";
    EXPECT_EQ(p->refs_back, p->refs_before + 1) << "and back to the task's own: borrowed again";
    EXPECT_EQ(p->refs_near, p->refs_before + 2) << "a sleep due within 64 ms clones the waker";
    EXPECT_EQ(foreign.refs.load(), 0) << "the replaced foreign waker was dropped";
    advance(rt, clk, FAR);
    ASSERT_EQ(weft_join_wait(j, -1), 0);
    EXPECT_EQ(weft_join_status(j), 0);
    EXPECT_GE(p->polls.load(), 2);
    EXPECT_EQ(foreign.wakes.load(), 0);
    weft_join_free(j);
}

// The task completes, is freed (its drop cancels the timer), and only then
// does the clock pass the deadline: nothing in the wheel points at it.
// Then the other order: the timer fires while a join handle still holds the
// completed task (the firing thread's wake by reference finds it complete
// and does nothing; the handle's reference keeps it alive), and the task is
// freed afterwards. ASan checks both.
TEST(TimerAbi, ATaskThatCompletesWithItsTimerRegisteredIsFreedSafely) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 1));
    for (bool fire_first : {false, true}) {
        SCOPED_TRACE(fire_first ? "fired, then freed" : "freed, then due");
        std::atomic<int> drops{0};
        void* st = new_left_registered(FAR, &drops);
        ASSERT_NE(st, nullptr);
        weft_join* j = nullptr;
        ASSERT_EQ(weft_task_spawn(rt.get(), st, &j), 0);
        ASSERT_EQ(weft_join_wait(j, -1), 0);
        EXPECT_TRUE(static_cast<LeftRegistered*>(st)->borrowed);
        // A probe 1 ms later than the task's timer, in the same (only)
        // wheel: once it has fired, so has the task's.
        weft_timer probe;
        ASSERT_EQ(weft_timer_init(&probe, rt.get()), 0);
        ASSERT_EQ(weft_timer_sleep_for(&probe, FAR + (int64_t)MS), 0);
        CountingWaker cw;
        weft_context cx = cw.cx();
        ASSERT_EQ(weft_timer_poll(&probe, &cx), WEFT_PENDING);
        if (!fire_first) {
            weft_join_free(j);
            ASSERT_TRUE(weft_test::wait_for([&] { return drops.load() == 1; }, 60));
        }
        advance(rt, clk, 2 * FAR);
        ASSERT_TRUE(weft_test::wait_for([&] { return cw.wakes.load() == 1; }, 60));
        if (fire_first) {
            EXPECT_EQ(drops.load(), 0) << "the join handle holds the task";
            weft_join_free(j);
            ASSERT_TRUE(weft_test::wait_for([&] { return drops.load() == 1; }, 60));
        }
        weft_timer_cancel(&probe);
        EXPECT_EQ(cw.refs.load(), 0);
        EXPECT_EQ(drops.load(), 1);
    }
}

// The window held open. A completed task whose join handle holds it keeps
// its output; freeing the handle frees the task, and its drop_output runs
// with the timer still in the wheel; here it waits 90 ms before it cancels,
// and the timer (a borrowing one, due in 70-71 ms) is fired meanwhile by its
// worker (parked until that deadline). The firing thread must wake the
// completed task by reference (nothing to do), and take no reference of its
// own: join_free frees the task without a read-modify-write once it has
// seen the handle's reference as the only one. The interleaving in which a
// reference taken from nothing breaks that is too narrow for a test to hit
// (the firer's wake would have to come after the 90 ms); kernel/task_state.pml
// finds it (mutation ts-timer-clones). This test runs the sequence under
// ASan and TSan and checks that the task is dropped once.
TEST(TimerAbi, AFiringThreadDoesNotReviveATaskBeingFreed) {
    weft::Runtime rt(2);
    const int rounds = (int)scaled(4);
    for (int r = 0; r < rounds; r++) {
        std::atomic<int> drops{0};
        void* st = new_left_registered(70 * (int64_t)MS, &drops, 90 * (int64_t)MS);
        ASSERT_NE(st, nullptr);
        weft_join* j = nullptr;
        ASSERT_EQ(weft_task_spawn(rt.get(), st, &j), 0);
        ASSERT_EQ(weft_join_wait(j, -1), 0);
        EXPECT_TRUE(static_cast<LeftRegistered*>(st)->borrowed);
        // The completer may still hold its reference for a moment after
        // the wait returns; once only the handle's is left, join_free frees
        // the task here (its solo path), so the drop runs on this thread.
        ASSERT_TRUE(weft_test::wait_for([&] { return task_refs(st) == 1; }, 60));
        EXPECT_EQ(drops.load(), 0);
        weft_join_free(j);  // the drop runs here, on this thread, for 90 ms
        EXPECT_EQ(drops.load(), 1);
        let_workers_run();
        EXPECT_EQ(drops.load(), 1) << "the task was dropped once";
    }
}

// Many timers, the clock stepped 1 ms at a time: each fires at the first step
// that reaches its deadline, never before.
TEST(TimerAbi, OrderingAcrossLevelBoundariesWithASteppedClock) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 2));
    const uint64_t t0 = weft_runtime_now(rt.get());
    std::mt19937_64 rng(99);
    const int N = 300;
    const uint64_t horizon_ms = 4200;  // past level 0 (64 ms) and level 1 (4096 ms)
    std::vector<weft_timer> timers(N);
    std::vector<CountingWaker> wakers(N);
    std::vector<uint64_t> deadline(N);
    for (int i = 0; i < N; i++) {
        // Deadlines in whole and fractional milliseconds, some on boundaries.
        deadline[i] = i < 8 ? t0 + uint64_t(std::vector<int>{1, 63, 64, 65, 4095, 4096, 4097, 4160}[i]) * MS
                            : t0 + 1 + rng() % (horizon_ms * MS);
        ASSERT_EQ(weft_timer_init(&timers[i], rt.get()), 0);
        ASSERT_EQ(weft_timer_reset(&timers[i], deadline[i]), 0);
        weft_context cx = wakers[i].cx();
        ASSERT_EQ(weft_timer_poll(&timers[i], &cx), WEFT_PENDING);
    }
    for (uint64_t ms = 1; ms <= horizon_ms + 1; ms++) {
        clk.ns.store(t0 + ms * MS, std::memory_order_release);
        weft_runtime_clock_changed(rt.get());
        const uint64_t now = t0 + ms * MS;
        // Everything due by now fires (we wait for it) ...
        for (int i = 0; i < N; i++)
            if (deadline[i] <= now) spin_until([&] { return wakers[i].wakes.load() == 1; });
        // ... and nothing that is not due has fired.
        for (int i = 0; i < N; i++)
            if (deadline[i] > now) {
                ASSERT_EQ(wakers[i].wakes.load(), 0) << "timer " << i << " fired early at +" << ms << " ms";
            }
    }
    for (int i = 0; i < N; i++) {
        EXPECT_EQ(wakers[i].wakes.load(), 1);
        weft_timer_cancel(&timers[i]);
        EXPECT_EQ(wakers[i].refs.load(), 0);
    }
}

TEST(TimerAbi, FarFutureDeadlinesFireAfterAJump) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 1));
    const uint64_t t0 = weft_runtime_now(rt.get());
    const uint64_t year = 365ull * 24 * 3600 * 1000 * MS;
    std::vector<uint64_t> offsets = {year, 3 * year, 10 * year, 100 * year};
    std::vector<weft_timer> timers(offsets.size());
    std::vector<CountingWaker> wakers(offsets.size());
    for (size_t i = 0; i < offsets.size(); i++) {
        ASSERT_EQ(weft_timer_init(&timers[i], rt.get()), 0);
        ASSERT_EQ(weft_timer_reset(&timers[i], t0 + offsets[i]), 0);
        weft_context cx = wakers[i].cx();
        ASSERT_EQ(weft_timer_poll(&timers[i], &cx), WEFT_PENDING);
    }
    for (size_t i = 0; i < offsets.size(); i++) {
        clk.ns.store(t0 + offsets[i] - 1, std::memory_order_release);
        weft_runtime_clock_changed(rt.get());
        let_workers_run();
        EXPECT_EQ(wakers[i].wakes.load(), 0) << "timer " << i << " fired before its deadline";
        clk.ns.store(t0 + offsets[i], std::memory_order_release);
        weft_runtime_clock_changed(rt.get());
        spin_until([&] { return wakers[i].wakes.load() == 1; });
        for (size_t k = i + 1; k < offsets.size(); k++) EXPECT_EQ(wakers[k].wakes.load(), 0);
    }
    for (auto& t : timers) weft_timer_cancel(&t);
}

// A parked worker sleeps until its own next deadline; a timer registered from
// a foreign thread with an earlier deadline must wake it to re-arm. Real
// clock, one worker, nothing else to do: only that wake-up can fire it.
TEST(TimerAbi, ForeignRegistrationWakesAParkedWorker) {
    weft::Runtime rt(1);
    // Park the worker with a far deadline first.
    weft_timer far;
    ASSERT_EQ(weft_timer_init(&far, rt.get()), 0);
    ASSERT_EQ(weft_timer_sleep_for(&far, 3600 * 1000 * MS), 0);
    CountingWaker fw;
    weft_context fcx = fw.cx();
    ASSERT_EQ(weft_timer_poll(&far, &fcx), WEFT_PENDING);
    // Wait until the worker sleeps (with the far deadline as its timeout).
    spin_until([&] {
        weft_worker_metrics m;
        m.size = sizeof m;
        return weft_runtime_worker_metrics(rt.get(), 0, &m) == 0 && m.parks >= 1;
    });

    for (int round = 0; round < 5; round++) {
        weft_timer t;
        CountingWaker cw;
        weft_context cx = cw.cx();
        // Registered from this (foreign) thread by the poll. Under emulation
        // (qemu) the 2 ms can pass before the poll, which then answers READY
        // without registering anything: try again with twice the duration.
        int polled = WEFT_READY;
        for (uint64_t ms = 2; polled == WEFT_READY; ms *= 2) {
            ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
            ASSERT_EQ(weft_timer_sleep_for(&t, static_cast<int64_t>(ms * MS)), 0);
            polled = weft_timer_poll(&t, &cx);
        }
        ASSERT_EQ(polled, WEFT_PENDING);
        spin_until([&] { return cw.wakes.load() == 1; });
        EXPECT_GE(weft_runtime_now(rt.get()), weft_timer_deadline(&t));
        weft_timer_cancel(&t);
    }
    EXPECT_EQ(fw.wakes.load(), 0);
    weft_timer_cancel(&far);
    EXPECT_EQ(fw.refs.load(), 0);
}

// Shutdown with timers pending: tasks sleeping (their frames are dropped and
// unregister their timers) and C timers registered from outside any task
// (dropped by shutdown, never fired). ASan checks nothing leaks.
TEST(TimerAbi, ShutdownDropsEveryPendingTimer) {
    std::vector<weft_timer> timers(200);
    std::vector<CountingWaker> wakers(timers.size());
    std::atomic<int> finished{0};
    {
        weft::Runtime rt(2);
        for (size_t i = 0; i < timers.size(); i++) {
            ASSERT_EQ(weft_timer_init(&timers[i], rt.get()), 0);
            ASSERT_EQ(weft_timer_sleep_for(&timers[i], (int64_t)(1000 + i) * 1000 * MS), 0);
            weft_context cx = wakers[i].cx();
            ASSERT_EQ(weft_timer_poll(&timers[i], &cx), WEFT_PENDING);
        }
        for (int i = 0; i < 500; i++) {
            rt.spawn([](std::atomic<int>* f, int i) -> weft::Task<void> {
                  co_await weft::sleep(std::chrono::seconds(100 + i));
                  f->fetch_add(1);
              }(&finished, i))
                .detach();
        }
        let_workers_run();
    }
    EXPECT_EQ(finished.load(), 0);
    for (size_t i = 0; i < timers.size(); i++) {
        EXPECT_EQ(wakers[i].wakes.load(), 0);
        EXPECT_EQ(wakers[i].refs.load(), 0) << "timer " << i << "'s waker was not dropped";
        CountingWaker cw;
        weft_context cx = cw.cx();
        // Cancel is safe after the runtime is gone (the timer is CLOSED).
        weft_timer_cancel(&timers[i]);
        (void)cx;
    }
}

// A foreign waker whose drop cancels another timer of the same wheel, while
// shutdown is dropping the wakers of more than one batch (32): the drops
// must run outside the wheel's lock, or this deadlocks.
namespace {
struct CancellingWaker {
    weft_timer* other = nullptr;
    std::atomic<int> drops{0};
    static weft_waker clone(const void* p) { return weft_waker{p, &vtable}; }
    static void wake(const void*) {}
    static void wake_by_ref(const void*) {}
    static void drop(const void* p) {
        auto* self = static_cast<CancellingWaker*>(const_cast<void*>(p));
        if (self->other) weft_timer_cancel(self->other);
        self->drops.fetch_add(1);
    }
    static constexpr weft_waker_vtable vtable{clone, wake, wake_by_ref, drop};
};
}  // namespace

TEST(TimerAbi, ShutdownDropsWakersOutsideTheWheelLock) {
    const int N = 80;
    std::vector<weft_timer> timers(N);
    std::vector<CancellingWaker> wakers(N);
    weft_runtime* rt = nullptr;
    ASSERT_EQ(weft_runtime_new(nullptr, &rt), 0);
    for (int i = 0; i < N; i++) {
        wakers[i].other = &timers[(i + 40) % N];  // a timer in a later batch
        ASSERT_EQ(weft_timer_init(&timers[i], rt), 0);
        ASSERT_EQ(weft_timer_sleep_for(&timers[i], 3600 * 1000 * MS), 0);
        weft_context cx;
        std::memset(&cx, 0, sizeof cx);
        cx.waker = weft_waker{&wakers[i], &CancellingWaker::vtable};
        ASSERT_EQ(weft_timer_poll(&timers[i], &cx), WEFT_PENDING);
    }
    ASSERT_EQ(weft_runtime_free(rt), 0);
    int drops = 0;
    for (auto& w : wakers) drops += w.drops.load();
    EXPECT_EQ(drops, N) << "every registered waker is dropped exactly once";
    for (auto& t : timers) weft_timer_cancel(&t);
}

TEST(TimerAbi, PollAfterShutdownOfALiveRuntimeReportsClosed) {
    // Shutdown took the registered timer out of its wheel and marked it
    // closed: a later poll says so without touching the freed runtime.
    weft_timer t;
    CountingWaker cw;
    weft_context cx = cw.cx();
    weft_runtime* rt = nullptr;
    ASSERT_EQ(weft_runtime_new(nullptr, &rt), 0);
    ASSERT_EQ(weft_timer_init(&t, rt), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 3600 * 1000 * MS), 0);
    ASSERT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);
    ASSERT_EQ(weft_runtime_free(rt), 0);
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_ECLOSED);
    EXPECT_EQ(cw.refs.load(), 0);
    EXPECT_EQ(cw.wakes.load(), 0);
    weft_timer_cancel(&t);
}

// Threads register, re-poll and cancel timers while workers fire them.
TEST(TimerAbi, RegisterCancelFireRaceStress) {
    weft::Runtime rt(2);
    const int threads = 3;
    const uint64_t iters = scaled(3000);
    std::vector<std::thread> ts;
    std::atomic<uint64_t> fired{0};
    for (int k = 0; k < threads; k++) {
        ts.emplace_back([&, k] {
            std::mt19937_64 rng(k);
            std::vector<weft_timer> mine(16);
            std::vector<CountingWaker> ws(mine.size());
            for (auto& t : mine) ASSERT_EQ(weft_timer_init(&t, rt.get()), 0);
            // Run until the workers have fired some of these timers too, so
            // registration, cancel and firing really overlap. A timer here is
            // touched every few hundred ns, long before its 1-2 ms deadline,
            // so without the pauses below the workers fire this thread's
            // timers only when the OS happens to deschedule it: a thread left
            // churning alone on an idle core spun forever (a CI hang). Every
            // 256 steps it pauses up to 2.5 ms, which lets timers come due
            // and fire while the other threads keep churning theirs.
            auto wakes = [&] {
                int n = 0;
                for (auto& w : ws) n += w.wakes.load();
                return n;
            };
            for (uint64_t i = 0; i < iters || wakes() < 20; i++) {
                if (i % 256 == 255)
                    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2500));
                size_t j = rng() % mine.size();
                switch (rng() % 3) {
                case 0:
                    weft_timer_sleep_for(&mine[j], (int64_t)(rng() % 3) * MS);
                    [[fallthrough]];
                case 1: {
                    if (weft_timer_deadline(&mine[j]) == 0) weft_timer_sleep_for(&mine[j], 0);
                    weft_context cx = ws[j].cx();
                    weft_timer_poll(&mine[j], &cx);
                    break;
                }
                default: weft_timer_cancel(&mine[j]); break;
                }
            }
            for (size_t j = 0; j < mine.size(); j++) {
                weft_timer_cancel(&mine[j]);
                EXPECT_EQ(ws[j].refs.load(), 0);
                fired += ws[j].wakes.load();
            }
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_GT(fired.load(), 0u);
}

// ---- C++ ---------------------------------------------------------------------

TEST(TimerCpp, SleepWithASteppedClock) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 2));
    const uint64_t t0 = weft_runtime_now(rt.get());
    // An absolute deadline: the task may start late (a loaded machine), after
    // the clock has been stepped; a relative one would then move.
    auto h = rt.spawn([](uint64_t deadline) -> weft::Task<uint64_t> {
        co_await weft::sleep_until(weft::clock::time_point(std::chrono::nanoseconds(deadline)));
        co_return weft_now();
    }(t0 + 25 * MS));
    let_workers_run();
    EXPECT_FALSE(h.is_finished());
    advance(rt, clk, 24 * MS);
    let_workers_run();
    EXPECT_FALSE(h.is_finished());
    advance(rt, clk, 1 * MS);
    EXPECT_GE(h.join(), t0 + 25 * MS);
}

// A deadline that passed after weft's clock was last read still fires, and
// not early (past_deadline.h).
TEST(TimerCpp, ADeadlinePassedSinceTheClockWasLastReadStillFires) {
    weft::Runtime rt(2);
    for (int round = 0; round < 20; round++) {
        rt.block_on(weft_test::sleep_until_a_deadline_passed_unseen());  // asserts inside
    }
}

TEST(TimerCpp, SleepUntilAndClampedDurations) {
    weft::Runtime rt(2);
    rt.block_on([]() -> weft::Task<void> {
        auto start = weft::clock::now();
        co_await weft::sleep_until(start + 2ms);
        EXPECT_GE(weft::clock::now(), start + 2ms);
        co_await weft::sleep(-5ms);                       // negative: at once
        co_await weft::sleep(std::chrono::nanoseconds(0));
        co_await weft::sleep_until(weft::clock::time_point{});  // the past
        auto never = weft::sleep(std::chrono::hours::max());    // saturates
        EXPECT_EQ(never.deadline().time_since_epoch().count(), INT64_MAX);
        auto never2 = weft::sleep(std::chrono::duration<double>(1e300));
        EXPECT_EQ(never2.deadline().time_since_epoch().count(), INT64_MAX);
        co_await weft::sleep(std::chrono::duration<double, std::milli>(1.5));
    }());
}

// A period whose nanosecond factor is a fraction (1/3 s): 10^10 thirds of a
// second are 3.3e18 ns, representable, but duration_cast's intermediate
// (count * 10^9) is not; the clamp must not overflow on the way (UBSan).
TEST(TimerCpp, AFractionalPeriodConvertsWithoutOverflow) {
    using Thirds = std::chrono::duration<std::int64_t, std::ratio<1, 3>>;
    std::int64_t ns = weft::detail::clamp_ns(Thirds(10000000000ll));
    EXPECT_NEAR((double)ns, 1e19 / 3, 1e6);
    EXPECT_EQ(weft::detail::clamp_ns(Thirds(3)), 1000000000);
    EXPECT_EQ(weft::detail::clamp_ns(Thirds(INT64_MAX)), INT64_MAX);  // saturates
    EXPECT_EQ(weft::detail::clamp_ns(Thirds(-1)), 0);
}

TEST(TimerCpp, AbortingASleepingTaskUnregistersItsTimer) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 2));
    std::vector<weft::JoinHandle<uint64_t>> hs;
    for (int i = 0; i < 100; i++) hs.push_back(rt.spawn(sleep_then_now(std::chrono::milliseconds(10 + i))));
    let_workers_run();
    for (auto& h : hs) h.abort();
    for (auto& h : hs) EXPECT_THROW(h.join(), weft::Cancelled);
    // Firing time: the frames are gone, their timers must be too (ASan).
    advance(rt, clk, 1000 * MS);
    let_workers_run();
}

TEST(TimerCpp, TimeoutCompletesOrTimesOut) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 2));
    std::atomic<int> step{0};
    auto h = rt.spawn([](std::atomic<int>* step) -> weft::Task<int> {
        // Completes in time.
        auto fast = co_await weft::timeout(50ms, []() -> weft::Task<int> { co_return 7; }());
        EXPECT_FALSE(fast.timed_out);
        EXPECT_EQ(*fast, 7);
        step->store(1);
        // Times out: the inner sleep (100 ms) is cancelled at 10 ms.
        auto slow = co_await weft::timeout(10ms, weft::sleep(100ms));
        EXPECT_TRUE(slow.timed_out);
        EXPECT_FALSE(slow);
        step->store(2);
        // A JoinHandle: the task is aborted on timeout.
        auto jh = weft::spawn([]() -> weft::Task<int> {
            co_await weft::sleep(1h);
            co_return 1;
        }());
        auto r = co_await weft::timeout(5ms, std::move(jh));
        EXPECT_TRUE(r.timed_out);
        co_return 42;
    }(&step));
    spin_until([&] { return step.load() == 1; });
    let_workers_run();
    EXPECT_EQ(step.load(), 1);  // the 10 ms timeout has not fired on a frozen clock
    // The task reads the clock for its next deadline after it sets `step`,
    // so step the clock 1 ms at a time until it has moved on, instead of
    // jumping (a jump could land before the deadline is taken).
    auto step_until = [&](auto done) {
        while (!done()) {
            advance(rt, clk, 1 * MS);
            std::this_thread::sleep_for(200us);
        }
    };
    step_until([&] { return step.load() == 2; });
    step_until([&] { return h.is_finished(); });
    EXPECT_EQ(h.join(), 42);
}

TEST(TimerCpp, TimeoutPropagatesExceptions) {
    weft::Runtime rt(2);
    EXPECT_THROW(rt.block_on([]() -> weft::Task<void> {
        co_await weft::timeout(1h, []() -> weft::Task<int> {
            throw std::runtime_error("boom");
            co_return 1;
        }());
    }()),
                 std::runtime_error);
}

TEST(TimerCpp, IntervalBurstSkipDelay) {
    ManualClock clk;
    weft::Runtime rt(manual_config(&clk, 1));
    using M = weft::Interval::Missed;
    for (M mode : {M::Burst, M::Skip, M::Delay}) {
        std::atomic<int> ticks{0};
        std::vector<uint64_t> at;  // tick times relative to start, in ms
        std::mutex mu;
        uint64_t t0 = weft_runtime_now(rt.get());
        auto h = rt.spawn([](M mode, std::atomic<int>* ticks, std::vector<uint64_t>* at, std::mutex* mu,
                             uint64_t t0) -> weft::Task<void> {
            weft::Interval iv(10ms, mode);
            for (int i = 0; i < 5; i++) {
                auto due = co_await iv.tick();
                {
                    std::lock_guard<std::mutex> g(*mu);
                    at->push_back((uint64_t(due.time_since_epoch().count()) - t0) / MS);
                }
                ticks->fetch_add(1);
            }
        }(mode, &ticks, &at, &mu, t0));
        spin_until([&] { return ticks.load() == 1; });  // the first tick is immediate
        // Miss two periods at once: now = +35 ms.
        advance(rt, clk, 35 * MS);
        if (mode == M::Burst) {
            // 10, 20, 30 are due: delivered back to back.
            spin_until([&] { return ticks.load() == 4; });
            advance(rt, clk, 5 * MS);  // +40
            h.join();
            EXPECT_EQ(at, (std::vector<uint64_t>{0, 10, 20, 30, 40}));
        } else if (mode == M::Skip) {
            // 10 fires late; 20 and 30 are skipped; next is 40.
            spin_until([&] { return ticks.load() == 2; });
            let_workers_run();
            EXPECT_EQ(ticks.load(), 2);
            advance(rt, clk, 5 * MS);  // +40
            spin_until([&] { return ticks.load() == 3; });
            advance(rt, clk, 10 * MS);  // +50
            spin_until([&] { return ticks.load() == 4; });
            advance(rt, clk, 10 * MS);  // +60
            h.join();
            EXPECT_EQ(at, (std::vector<uint64_t>{0, 10, 40, 50, 60}));
        } else {
            // 10 fires late at 35; the schedule restarts from there: 45, 55, 65.
            spin_until([&] { return ticks.load() == 2; });
            advance(rt, clk, 9 * MS);  // +44
            let_workers_run();
            EXPECT_EQ(ticks.load(), 2);
            advance(rt, clk, 1 * MS);  // +45
            spin_until([&] { return ticks.load() == 3; });
            advance(rt, clk, 10 * MS);  // +55
            spin_until([&] { return ticks.load() == 4; });
            advance(rt, clk, 10 * MS);  // +65
            h.join();
            EXPECT_EQ(at, (std::vector<uint64_t>{0, 10, 45, 55, 65}));
        }
    }
}

TEST(TimerCpp, ManySleepsAllWakeNeverEarly) {
    weft::Runtime rt(2);
    const int N = (int)scaled(20000);
    std::atomic<int> early{0};
    rt.block_on([](int n, std::atomic<int>* early) -> weft::Task<void> {
        std::vector<weft::JoinHandle<void>> hs;
        for (int i = 0; i < n; i++) {
            hs.push_back(weft::spawn([](int i, std::atomic<int>* early) -> weft::Task<void> {
                auto d = std::chrono::microseconds((i * 7919) % 3000);
                auto deadline = weft::clock::now() + d;
                co_await weft::sleep_until(deadline);
                if (weft::clock::now() < deadline) early->fetch_add(1);
            }(i, early)));
        }
        for (auto& h : hs) co_await std::move(h);
    }(N, &early));
    EXPECT_EQ(early.load(), 0);
}
