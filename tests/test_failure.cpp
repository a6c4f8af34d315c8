// tests/test_failure.cpp — failure containment (weft.h, "failures"; issue 8):
// every user callback weft calls throws, and the runtime keeps serving.
//
//   layer 1  a task that throws: its join handle rethrows; detached, or its
//            handle freed unread, it is reported (WEFT_FAILURE_TASK)
//   layer 2  a destructor throwing while a task is released (DROP), a
//            waker's callable (WAKE), a pulse hook (HOOK): caught by the C++
//            wrappers and reported
//   layer 3  a handler that throws, or no handler: the policy (ignore,
//            shut the runtime down, abort)
// Counts are exact: every report is counted by kind, every task's drop runs
// once (a live-object counter returns to zero).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"
#include "weft/tpc.hpp"
#include "weft/weft.hpp"

using weft_test::scaled;
using weft_test::wait_for;

namespace {

// A failure handler that counts what it sees (any thread).
struct Recorder {
    std::atomic<uint64_t> by_kind[WEFT_FAILURE_KINDS] = {};
    std::atomic<uint64_t> total{0};
    std::mutex mu;
    std::vector<std::string> messages;  // the first few
    std::vector<std::pair<int, uint64_t>> events;  // (kind, task id), the first few
    std::atomic<bool> throw_from_handler{false};
    weft::FailureHandler handler{[this](const weft_failure& f) {
        {
            std::lock_guard<std::mutex> g(mu);
            if (messages.size() < 16) messages.push_back(f.message);
            if (events.size() < 64) events.emplace_back(f.kind, f.task_id);
        }
        // Counted after the message is stored (release): a test that waits
        // for a count and then looks for the message must find it (the
        // count first was a race, seen under qemu-s390x).
        by_kind[f.kind].fetch_add(1, std::memory_order_release);
        total.fetch_add(1, std::memory_order_release);
        if (throw_from_handler.load(std::memory_order_relaxed)) throw std::runtime_error("the handler fails too");
    }};
    bool saw_message(const char* needle) {
        std::lock_guard<std::mutex> g(mu);
        for (auto& m : messages)
            if (m.find(needle) != std::string::npos) return true;
        return false;
    }
};

weft_runtime_config config(Recorder& rec, uint32_t policy, uint32_t workers = 2) {
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = workers;
    rec.handler.install(cfg, policy);
    return cfg;
}

weft_failure_stats stats(const weft::Runtime& rt) {
    weft_failure_stats s{};
    s.size = sizeof s;
    EXPECT_EQ(weft_failure_stats_get(rt.get(), &s), 0);
    return s;
}

std::atomic<int64_t> g_live{0};  // objects alive in task frames

// Counts itself alive; its destructor throws when armed.
struct Guard {
    bool armed;
    explicit Guard(bool a) : armed(a) { g_live.fetch_add(1); }
    Guard(Guard&& o) noexcept : armed(std::exchange(o.armed, false)) { g_live.fetch_add(1); }
    ~Guard() noexcept(false) {
        g_live.fetch_sub(1);
        if (armed) throw std::runtime_error("Guard destructor throws");
    }
};

weft::Task<int> throws_now(int i) {
    if (i >= 0) throw std::runtime_error("boom " + std::to_string(i));
    co_return i;
}

// Throws from a local's destructor when the frame is destroyed unfinished.
weft::Task<void> waits_with_throwing_local(weft::Notify* never) {
    Guard g(true);
    co_await never->notified();
    g.armed = false;
}

// Finishes, then its parameter's destructor throws when the frame goes.
weft::Task<int> finishes_with_throwing_param([[maybe_unused]] Guard g) {
    co_return 7;
}

}  // namespace

// ---- layer 1 ---------------------------------------------------------------------

TEST(Failure, JoinedTaskFailureIsRethrownNotReported) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    for (int i = 0; i < 100; i++) EXPECT_THROW(rt.block_on(throws_now(i)), std::runtime_error);
    EXPECT_EQ(rec.total.load(), 0u);
    EXPECT_EQ(stats(rt).reported, 0u);
}

TEST(Failure, DetachedTaskFailureIsReportedOnceWithWhat) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    const uint64_t n = scaled(2000);
    for (uint64_t i = 0; i < n; i++) rt.spawn(throws_now((int)i)).detach();
    ASSERT_TRUE(wait_for([&] { return rec.total.load(std::memory_order_acquire) >= n; }));
    // Every failure once: either at completion (no handle left) or when the
    // handle was freed after it (then the message says so).
    EXPECT_EQ(rec.by_kind[WEFT_FAILURE_TASK].load(), n);
    EXPECT_TRUE(rec.saw_message("boom") || rec.saw_message("join handle was freed"));
    weft_failure_stats s = stats(rt);
    EXPECT_EQ(s.reported, n);
    EXPECT_EQ(s.by_kind[WEFT_FAILURE_TASK], n);
    EXPECT_EQ(s.unhandled, 0u);
}

TEST(Failure, TaskDetachedBeforeItFailsIsReportedWithTheExceptionText) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    weft::Notify go;
    auto h = rt.spawn([](weft::Notify* go) -> weft::Task<void> {
        co_await go->notified();
        throw std::logic_error("the detached one threw");
    }(&go));
    h.detach();  // before it can fail: the completion reports it
    go.notify_one();
    ASSERT_TRUE(wait_for([&] { return rec.total.load(std::memory_order_acquire) == 1; }));
    EXPECT_TRUE(rec.saw_message("the detached one threw"));
}

TEST(Failure, SpawnDetachedTaskFailureIsReportedOnceWithWhat) {
    // No handle ever exists, so the completion reports it, with the text.
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    const uint64_t n = scaled(200);
    for (uint64_t i = 0; i < n; i++) rt.spawn_detached(throws_now((int)i));
    ASSERT_TRUE(wait_for([&] { return rec.total.load(std::memory_order_acquire) >= n; }));
    EXPECT_EQ(rec.by_kind[WEFT_FAILURE_TASK].load(), n);
    EXPECT_TRUE(rec.saw_message("boom"));
    EXPECT_FALSE(rec.saw_message("join handle was freed"));
    EXPECT_EQ(stats(rt).reported, n);
}

TEST(Failure, HandleFreedWithoutReadingAFinishedFailureReportsIt) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    {
        auto h = rt.spawn(throws_now(1));
        ASSERT_TRUE(wait_for([&] { return h.is_finished(); }));
        EXPECT_EQ(rec.total.load(), 0u);  // the handle still holds it
    }  // freed unread
    EXPECT_EQ(rec.total.load(), 1u);
    EXPECT_TRUE(rec.saw_message("boom 1"));  // the C++ handle reports what was thrown
    // A C handle freed unread: the kernel reports it.
    weft_task_desc d{};
    d.size = sizeof d;
    d.poll = [](void*, weft_context*, void*) -> int { return -4243; };
    weft_join* j = nullptr;
    ASSERT_EQ(weft_spawn(rt.get(), &d, &j), 0);
    ASSERT_EQ(weft_join_wait(j, -1), 0);
    EXPECT_EQ(weft_join_finished(j), 1);  // not a read
    weft_join_free(j);
    EXPECT_EQ(rec.total.load(), 2u);
    EXPECT_TRUE(rec.saw_message("join handle was freed without reading"));
    // Read first (weft_join_status), then freed: nothing more.
    {
        auto h = rt.spawn(throws_now(2));
        ASSERT_TRUE(wait_for([&] { return h.is_finished(); }));
        EXPECT_EQ(weft_join_status(h.native_handle()), WEFT_ETASKFAILED);
        EXPECT_EQ(weft_join_report_failure(h.native_handle(), "x"), WEFT_EALREADY);
    }
    EXPECT_EQ(rec.total.load(), 2u);
    EXPECT_EQ(weft_join_report_failure(nullptr, "x"), WEFT_EINVAL);
}

TEST(Failure, CTaskFailureCodeDetachedIsReportedWithItsCode) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    std::atomic<uint64_t> seen_code{0};
    weft::FailureHandler code_handler([&](const weft_failure& f) { seen_code.store((uint64_t)(int64_t)f.code); });
    weft_task_desc d{};
    d.size = sizeof d;
    d.poll = [](void*, weft_context*, void*) -> int { return -4242; };
    ASSERT_EQ(weft_spawn(rt.get(), &d, nullptr), 0);
    ASSERT_TRUE(wait_for([&] { return rec.total.load(std::memory_order_acquire) == 1; }));
    EXPECT_EQ(rec.by_kind[WEFT_FAILURE_TASK].load(), 1u);
    // A cancelled task is not a failure.
    d.poll = [](void*, weft_context*, void*) -> int { return WEFT_PENDING; };
    weft_join* j = nullptr;
    ASSERT_EQ(weft_spawn(rt.get(), &d, &j), 0);
    EXPECT_EQ(weft_join_abort(j), 0);
    EXPECT_EQ(weft_join_wait(j, -1), 0);
    weft_join_free(j);
    EXPECT_EQ(rec.total.load(), 1u);
}

// ---- layer 2 ---------------------------------------------------------------------

TEST(Failure, DestructorThrowingWhileATaskIsDroppedIsReported) {
    Recorder rec;
    g_live.store(0);
    weft::Notify never;  // outlives the runtime: its waiters are dropped, not woken
    {
        weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
        // A local's destructor throws when the suspended task is aborted.
        const uint64_t n = 200;
        std::vector<weft::JoinHandle<void>> hs;
        for (uint64_t i = 0; i < n; i++) hs.push_back(rt.spawn(waits_with_throwing_local(&never)));
        ASSERT_TRUE(wait_for([&] { return g_live.load() == (int64_t)n; }));
        for (auto& h : hs) h.abort();
        for (auto& h : hs) EXPECT_THROW(h.join(), weft::Cancelled);
        EXPECT_EQ(rec.by_kind[WEFT_FAILURE_DROP].load(), n);
        // A parameter's destructor throws after the task finished: its
        // result is still delivered.
        EXPECT_EQ(rt.block_on(finishes_with_throwing_param(Guard(true))), 7);
        EXPECT_EQ(rec.by_kind[WEFT_FAILURE_DROP].load(), n + 1);
        // Suspended tasks dropped at shutdown throw too: reported to this
        // runtime while weft_runtime_free drains.
        for (uint64_t i = 0; i < n; i++) rt.spawn(waits_with_throwing_local(&never)).detach();
        ASSERT_TRUE(wait_for([&] { return g_live.load() == (int64_t)n; }));
    }
    EXPECT_EQ(rec.by_kind[WEFT_FAILURE_DROP].load(), 2 * 200 + 1u);
    EXPECT_EQ(g_live.load(), 0);
    EXPECT_TRUE(rec.saw_message("Guard destructor throws"));
}

TEST(Failure, ThrowingWakerIsReportedToTheWakingThreadsTarget) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    // A foreign poller's waker on a join handle; the worker that completes
    // the task wakes it there: reported to the runtime.
    weft::Notify go;
    std::atomic<int> calls{0};
    auto h = rt.spawn([](weft::Notify* go) -> weft::Task<int> {
        co_await go->notified();
        co_return 5;
    }(&go));
    weft_waker w = weft::make_waker([&calls] {
        calls.fetch_add(1);
        throw std::runtime_error("the waker throws");
    });
    weft_context cx{w};
    EXPECT_EQ(weft_join_poll(h.native_handle(), &cx), WEFT_PENDING);
    go.notify_one();
    ASSERT_TRUE(wait_for([&] { return rec.by_kind[WEFT_FAILURE_WAKE].load() == 1; }));
    EXPECT_EQ(h.join(), 5);
    EXPECT_EQ(calls.load(), 1);
    EXPECT_TRUE(rec.saw_message("the waker throws"));

    // Woken from a thread of no runtime: the process-wide target.
    Recorder proc;
    ASSERT_EQ(proc.handler.install_process_wide(WEFT_FAILURE_IGNORE), 0);
    weft_failure_stats before{};
    before.size = sizeof before;
    ASSERT_EQ(weft_failure_stats_get(nullptr, &before), 0);
    weft_waker_wake_by_ref(&w);
    weft_waker_wake(w);  // consumes the last reference
    EXPECT_EQ(proc.by_kind[WEFT_FAILURE_WAKE].load(), 2u);
    weft_failure_stats after{};
    after.size = sizeof after;
    ASSERT_EQ(weft_failure_stats_get(nullptr, &after), 0);
    EXPECT_EQ(after.by_kind[WEFT_FAILURE_WAKE] - before.by_kind[WEFT_FAILURE_WAKE], 2u);
    EXPECT_EQ(weft_failure_handler_set(nullptr, nullptr, WEFT_FAILURE_IGNORE), 0);
    EXPECT_EQ(rec.by_kind[WEFT_FAILURE_WAKE].load(), 1u);
}

// Pulse settings that promote a task into WARN at its first poll over 20 us
// (no spares, no isolation), with an on_warn hook that counts and throws.
void warn_on_every_slow_poll(weft::PulseConfig& pulse, std::atomic<uint64_t>& warns, const char* what) {
    pulse.c.slow_poll_ns = 20000;  // 20 us: a strike
    pulse.c.strikes_to_promote = 1;
    pulse.c.good_polls_to_demote = 1;
    pulse.c.max_spare_threads = 0;
    pulse.c.isolation_threads = 0;
    pulse.on_warn([&warns, what](uint64_t, uint64_t) {
        warns.fetch_add(1);
        throw std::runtime_error(what);
    });
}

// A task whose single poll computes for `us` microseconds.
weft::Task<void> busy_poll(int us) {
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (std::chrono::steady_clock::now() < until) {
    }
    co_return;
}

bool pulse_hooks_compiled() {
    weft::Runtime rt(1);
    weft_pulse_status st{};
    st.size = sizeof st;
    return weft_runtime_pulse_status(rt.get(), &st) == 0 && st.compiled && st.mode == WEFT_PULSE_ON;
}

TEST(Failure, ThrowingPulseHooksAreReported) {
    if (!pulse_hooks_compiled()) GTEST_SKIP() << "pulse hooks compiled out (-DWEFT_PULSE=OFF) or switched off";
    Recorder rec;
    weft::PulseConfig pulse;
    std::atomic<uint64_t> warns{0};
    warn_on_every_slow_poll(pulse, warns, "on_warn throws");
    pulse.on_event([](const weft_pulse_event&) { throw 42; });  // not even a std::exception
    weft_runtime_config cfg = config(rec, WEFT_FAILURE_IGNORE);
    cfg.pulse = &pulse.c;
    weft::Runtime rt(cfg);
    const uint64_t n = scaled(500);
    for (uint64_t i = 0; i < n; i++) rt.block_on(busy_poll(60));
    ASSERT_TRUE(wait_for([&] { return warns.load() >= 1; }));
    // Each warn and each event threw; every throw was reported as a HOOK
    // failure, none escaped into the scheduler.
    ASSERT_TRUE(wait_for([&] { return rec.by_kind[WEFT_FAILURE_HOOK].load() >= warns.load(); }));
    EXPECT_TRUE(rec.saw_message("on_warn throws"));
    EXPECT_TRUE(rec.saw_message("not derived from std::exception"));
    EXPECT_EQ(rt.block_on(throws_now(-3)), -3);  // still serving
}

namespace {
weft::Task<void> inline_parent([[maybe_unused]] Guard g, weft::Notify* never) {
    co_await waits_with_throwing_local(never);  // inline: the child's frame is the parent's
    ADD_FAILURE() << "the parent resumed after its child was dropped";
}
}  // namespace

TEST(Failure, DropReportNamesTheTask) {
    Recorder rec;
    weft::Notify never;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    g_live.store(0);
    auto h = rt.spawn(waits_with_throwing_local(&never));
    uint64_t id = h.id();
    ASSERT_TRUE(wait_for([&] { return g_live.load() == 1; }));
    h.abort();
    EXPECT_THROW(h.join(), weft::Cancelled);
    std::lock_guard<std::mutex> g(rec.mu);
    ASSERT_EQ(rec.events.size(), 1u);
    EXPECT_EQ(rec.events[0].first, WEFT_FAILURE_DROP);
    EXPECT_EQ(rec.events[0].second, id);
}

TEST(Failure, ThrowingLocalInAnInlineAwaitedChildIsReportedAndTheParentNeverResumes) {
    Recorder rec;
    g_live.store(0);
    weft::Notify never;
    {
        weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
        std::vector<weft::JoinHandle<void>> hs;
        for (int i = 0; i < 50; i++) hs.push_back(rt.spawn(inline_parent(Guard(false), &never)));
        // Each parent's parameter and its child's local are alive.
        ASSERT_TRUE(wait_for([&] { return g_live.load() == 100; }));
        for (auto& h : hs) h.abort();
        for (auto& h : hs) EXPECT_THROW(h.join(), weft::Cancelled);
        EXPECT_EQ(rec.by_kind[WEFT_FAILURE_DROP].load(), 50u);
        EXPECT_EQ(g_live.load(), 0);  // parameters and locals, parent and child: all destroyed
        // The same at shutdown, with a ForkJoin's children.
        rt.spawn([](weft::Notify* n) -> weft::Task<void> {
            weft::ForkJoin<void> kids(8);
            for (int i = 0; i < 8; i++) kids.spawn(waits_with_throwing_local(n));
            co_await kids;
        }(&never)).detach();
        ASSERT_TRUE(wait_for([&] { return g_live.load() == 8; }));
    }
    EXPECT_EQ(rec.by_kind[WEFT_FAILURE_DROP].load(), 58u);
    EXPECT_EQ(g_live.load(), 0);
}

TEST(Failure, HandleOfAFailedTaskFreedAfterItsRuntimeReportsToTheProcessTarget) {
    Recorder rec, proc;
    ASSERT_EQ(proc.handler.install_process_wide(WEFT_FAILURE_IGNORE), 0);
    weft_runtime_config cfg = config(rec, WEFT_FAILURE_IGNORE);
    weft_runtime* rt = nullptr;
    ASSERT_EQ(weft_runtime_new(&cfg, &rt), 0);
    weft_task_desc d{};
    d.size = sizeof d;
    d.poll = [](void*, weft_context*, void*) -> int { return -5; };
    weft_join* j = nullptr;
    ASSERT_EQ(weft_spawn(rt, &d, &j), 0);
    ASSERT_EQ(weft_join_wait(j, -1), 0);
    weft::JoinHandle<int> h;
    {
        weft::Runtime tmp(1);  // a C++ handle too, on a runtime freed first
        h = tmp.spawn(throws_now(3));
        ASSERT_TRUE(wait_for([&] { return h.is_finished(); }));
    }
    ASSERT_EQ(weft_runtime_free(rt), 0);
    weft_join_free(j);  // its runtime (and handler) are gone: the process target
    EXPECT_EQ(proc.by_kind[WEFT_FAILURE_TASK].load(), 1u);
    h = weft::JoinHandle<int>();  // likewise, with what it threw
    EXPECT_EQ(proc.by_kind[WEFT_FAILURE_TASK].load(), 2u);
    EXPECT_TRUE(proc.saw_message("boom 3"));
    EXPECT_EQ(rec.total.load(), 0u);
    EXPECT_EQ(weft_failure_handler_set(nullptr, nullptr, WEFT_FAILURE_IGNORE), 0);
}

TEST(Failure, FailureCodeThatLooksLikeEagainIsStillAFinishedFailure) {
    Recorder rec;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    weft_task_desc d{};
    d.size = sizeof d;
    d.poll = [](void*, weft_context*, void*) -> int { return WEFT_EAGAIN; };
    weft_join* j = nullptr;
    ASSERT_EQ(weft_spawn(rt.get(), &d, &j), 0);
    ASSERT_EQ(weft_join_wait(j, -1), 0);
    EXPECT_EQ(weft_join_finished(j), 1);
    EXPECT_EQ(weft_join_status(j), WEFT_EAGAIN);  // its own code, read
    weft_join_free(j);
    EXPECT_EQ(rec.total.load(), 0u);
}

TEST(Failure, ThreadPerCoreBlockOnReturnsAFailureWithoutReportingIt) {
    Recorder proc;
    ASSERT_EQ(proc.handler.install_process_wide(WEFT_FAILURE_IGNORE), 0);
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    weft_task_desc d{};
    d.size = sizeof d;
    d.poll = [](void*, weft_context*, void*) -> int { return -77; };
    EXPECT_EQ(weft_tpc_block_on(ex, &d, nullptr), -77);
    EXPECT_EQ(weft_tpc_free(ex), 0);
    EXPECT_EQ(proc.total.load(), 0u);
    EXPECT_EQ(weft_failure_handler_set(nullptr, nullptr, WEFT_FAILURE_IGNORE), 0);
}

// ---- layer 3 ---------------------------------------------------------------------

TEST(Failure, HandlerThatThrowsLeavesTheFailureToThePolicyIgnore) {
    Recorder rec;
    rec.throw_from_handler = true;
    weft::Runtime rt(config(rec, WEFT_FAILURE_IGNORE));
    for (int i = 0; i < 50; i++) rt.spawn(throws_now(i)).detach();
    ASSERT_TRUE(wait_for([&] { return stats(rt).unhandled == 50; }));
    EXPECT_EQ(stats(rt).reported, 50u);
    EXPECT_EQ(stats(rt).shut_down, 0u);
    EXPECT_EQ(rt.block_on(throws_now(-1)), -1);
}

TEST(Failure, PolicyShutdownCancelsEveryTaskAndRefusesSpawns) {
    Recorder rec;
    rec.throw_from_handler = true;  // reporting fails: the policy decides
    weft::Runtime rt(config(rec, WEFT_FAILURE_SHUTDOWN));
    weft::Notify never;
    g_live.store(0);
    std::vector<weft::JoinHandle<void>> waiting;
    for (int i = 0; i < 100; i++)
        waiting.push_back(rt.spawn([](weft::Notify* n) -> weft::Task<void> {
            Guard g(false);
            co_await n->notified();
        }(&never)));
    ASSERT_TRUE(wait_for([&] { return g_live.load() == 100; }));
    // Tasks that never suspend: one yielding for ever, and a queue of them.
    std::atomic<uint64_t> spins{0};
    auto spinner = rt.spawn([](std::atomic<uint64_t>* n) -> weft::Task<void> {
        for (;;) {
            n->fetch_add(1, std::memory_order_relaxed);
            co_await weft::yield_now();
        }
    }(&spins));
    ASSERT_TRUE(wait_for([&] { return spins.load() > 10; }));
    rt.spawn(throws_now(1)).detach();  // the unhandled failure
    EXPECT_THROW(spinner.join(), weft::Cancelled);
    for (auto& h : waiting) EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_EQ(g_live.load(), 0);
    weft_failure_stats s = stats(rt);
    EXPECT_EQ(s.shut_down, 1u);
    EXPECT_GE(s.unhandled, 1u);
    weft_task_desc d{};
    d.size = sizeof d;
    d.poll = [](void*, weft_context*, void*) -> int { return WEFT_READY; };
    EXPECT_EQ(weft_spawn(rt.get(), &d, nullptr), WEFT_ECLOSED);
    EXPECT_THROW(rt.spawn(throws_now(-1)), weft::Error);
}

TEST(FailureDeathTest, PolicyAbortWritesTheFailureAndAborts) {
    // "fast": fork without re-exec. Each test runs in its own process under
    // ctest, so no other thread exists here; and under qemu-user (CI's
    // cross runs) a re-exec of the foreign binary fails.
    GTEST_FLAG_SET(death_test_style, "fast");
    EXPECT_DEATH(
        {
            weft_runtime_config cfg;
            weft_runtime_config_init(&cfg);
            cfg.workers = 1;
            cfg.failure_policy = WEFT_FAILURE_ABORT;
            weft::Runtime rt(cfg);
            rt.spawn(throws_now(99)).detach();
            std::this_thread::sleep_for(std::chrono::seconds(30));
        },
        "unhandled failure, policy WEFT_FAILURE_ABORT: a detached task failed.*boom 99");
}

// ---- 10^5 throws, and the runtime keeps serving ------------------------------------

TEST(Failure, HundredThousandThrowsFromEveryCallbackAndTheRuntimeKeepsServing) {
    Recorder rec;
    g_live.store(0);
    weft::PulseConfig pulse;
    std::atomic<uint64_t> warns{0};
    warn_on_every_slow_poll(pulse, warns, "warn hook");
    weft_runtime_config cfg = config(rec, WEFT_FAILURE_IGNORE);
    cfg.pulse = &pulse.c;
    rec.throw_from_handler = true;  // and every report's handler throws as well
    // Without pulse hooks (-DWEFT_PULSE=OFF) the warn hook never runs; the
    // other callbacks make up the count.
    const bool hooks_on = pulse_hooks_compiled();
    const uint64_t polls = scaled(40000), drops = scaled(30000), hooks = hooks_on ? scaled(2000) : 0;
    const uint64_t wakes = scaled(28000) + (hooks_on ? 0 : scaled(2000));
    {
        weft::Runtime rt(cfg);
        std::atomic<uint64_t> wake_calls{0};
        weft::Notify never;
        rt.block_on([&]() -> weft::Task<void> {
            // poll: detached tasks that throw.
            for (uint64_t i = 0; i < polls; i++) weft::spawn(throws_now((int)(i % 1000))).detach();
            // drop: suspended tasks whose local throws when they are aborted.
            std::vector<weft::JoinHandle<void>> hs;
            hs.reserve(1000);
            for (uint64_t done = 0; done < drops;) {
                uint64_t batch = std::min<uint64_t>(1000, drops - done);
                for (uint64_t i = 0; i < batch; i++) hs.push_back(weft::spawn(waits_with_throwing_local(&never)));
                // Each must be suspended inside (its Guard alive) before the
                // abort, or there is no local to throw.
                while (g_live.load() < (int64_t)batch) co_await weft::yield_now();
                for (auto& h : hs) h.abort();
                for (auto& h : hs) {
                    try {
                        co_await h;
                    } catch (const weft::Cancelled&) {
                    }
                }
                hs.clear();
                done += batch;
            }
            // wake: a throwing waker woken by_ref on a worker.
            weft_waker w = weft::make_waker([&wake_calls] {
                wake_calls.fetch_add(1, std::memory_order_relaxed);
                throw std::runtime_error("waker");
            });
            for (uint64_t i = 0; i < wakes; i++) weft_waker_wake_by_ref(&w);
            weft_waker_drop(w);
            // warn hook: polls longer than slow_poll_ns, until `hooks` warns
            // have thrown. Not one warn per busy poll: a worker times only
            // sampled polls until a slow sampling window turns on timing of
            // every poll (pulse.h), so the first slow polls after a quiet
            // stretch can go unseen (5 runs in 40 counted 2 to 17 warns
            // short when this loop ran exactly `hooks` polls). Bounded.
            for (uint64_t i = 0; warns.load() < hooks && i < 10 * hooks; i++) co_await weft::spawn(busy_poll(30));
        }());
        ASSERT_TRUE(wait_for([&] { return rec.by_kind[WEFT_FAILURE_TASK].load() == polls; }));
        EXPECT_EQ(wake_calls.load(), wakes);
        EXPECT_EQ(rec.by_kind[WEFT_FAILURE_DROP].load(), drops);
        EXPECT_EQ(rec.by_kind[WEFT_FAILURE_WAKE].load(), wakes);
        EXPECT_EQ(rec.by_kind[WEFT_FAILURE_HOOK].load(), warns.load());
        uint64_t total = polls + drops + wakes + warns.load();
        weft_failure_stats s = stats(rt);
        EXPECT_EQ(s.reported, total);
        EXPECT_EQ(s.unhandled, total);  // the handler threw every time
        EXPECT_EQ(s.shut_down, 0u);
        // Still serving: a fan-out of plain tasks gives the right sum.
        int64_t sum = rt.block_on([]() -> weft::Task<int64_t> {
            std::vector<weft::JoinHandle<int64_t>> hs;
            for (int64_t i = 0; i < 1000; i++) hs.push_back(weft::spawn([](int64_t v) -> weft::Task<int64_t> {
                co_await weft::yield_now();
                co_return v;
            }(i)));
            int64_t t = 0;
            for (auto& h : hs) t += co_await h;
            co_return t;
        }());
        EXPECT_EQ(sum, 999 * 1000 / 2);
    }
    EXPECT_EQ(g_live.load(), 0);  // every frame released exactly once
    if (!weft_test::kSanitized) {
        EXPECT_GE(polls + drops + wakes + warns.load(), 100000u);
    }
}

// ---- the thread-per-core executor --------------------------------------------------

TEST(Failure, ThreadPerCoreDetachedFailureGoesToTheProcessWideTarget) {
    Recorder proc;
    ASSERT_EQ(proc.handler.install_process_wide(WEFT_FAILURE_IGNORE), 0);
    {
        weft::tpc::Executor ex;
        ex.block_on([]() -> weft::Task<void> {
            for (int i = 0; i < 10; i++) weft::tpc::spawn(throws_now(i)).detach();
            co_await weft::yield_now();
            auto h = weft::tpc::spawn(throws_now(100));
            co_await weft::yield_now();
            // h freed unread at scope end
        }());
    }
    EXPECT_EQ(proc.by_kind[WEFT_FAILURE_TASK].load(), 11u);
    EXPECT_TRUE(proc.saw_message("boom"));
    EXPECT_EQ(weft_failure_handler_set(nullptr, nullptr, WEFT_FAILURE_IGNORE), 0);
}

// ---- bad input ---------------------------------------------------------------------

TEST(Failure, BadInputIsRefused) {
    EXPECT_EQ(weft_report_failure(nullptr), WEFT_EINVAL);
    weft_failure f{};
    f.size = sizeof f;
    f.kind = 0;
    EXPECT_EQ(weft_report_failure(&f), WEFT_EINVAL);
    f.kind = WEFT_FAILURE_KINDS;
    EXPECT_EQ(weft_report_failure(&f), WEFT_EINVAL);
    f.kind = WEFT_FAILURE_HOOK;
    f.size = 3;
    EXPECT_EQ(weft_report_failure(&f), WEFT_EINVAL);
    f.size = sizeof f;
    f.message = nullptr;  // allowed: the report gets a placeholder
    EXPECT_EQ(weft_report_failure(&f), 1);  // no process handler: unhandled, ignored
    EXPECT_EQ(weft_failure_handler_set(nullptr, nullptr, WEFT_FAILURE_SHUTDOWN), WEFT_EINVAL);
    EXPECT_EQ(weft_failure_handler_set(nullptr, nullptr, 77), WEFT_EINVAL);
    weft_failure_stats s{};
    EXPECT_EQ(weft_failure_stats_get(nullptr, nullptr), WEFT_EINVAL);
    s.size = 1;
    EXPECT_EQ(weft_failure_stats_get(nullptr, &s), WEFT_EVERSION);
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.failure_policy = 9;
    weft_runtime* rt = nullptr;
    EXPECT_EQ(weft_runtime_new(&cfg, &rt), WEFT_EINVAL);
    cfg.failure_policy = 0;
    cfg._reserved2 = 1;
    EXPECT_EQ(weft_runtime_new(&cfg, &rt), WEFT_EINVAL);
    weft_task_failure_note(nullptr);     // outside a task: ignored
    weft_task_failure_note("no task");  // likewise
    EXPECT_EQ(weft_join_finished(nullptr), WEFT_EINVAL);
}
