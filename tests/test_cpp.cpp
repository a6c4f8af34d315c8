// tests/test_cpp.cpp — the C++20 wrappers (include/weft/weft.hpp): Task<T>,
// JoinHandle<T>, Runtime, spawn, yield_now, ForkJoin.
//
// Why: the wrappers carry the promises C++ users rely on without reading the
// C ABI: a coroutine frame is the task (freed exactly once, also when the
// runtime is torn down around a suspended coroutine), a result is moved out
// once (move-only types work), an exception in a task comes back out of its
// JoinHandle (co_await and join()) and never crosses the C ABI, and an
// aborted task reads as weft::Cancelled. ForkJoin batches collect results in
// order, rethrow a child's exception, and survive their parent going away
// (abort, runtime shutdown) while children still run. The ASan build checks
// that no frame, result, batch block or handle leaks on any of these paths;
// the TSan build that none is touched after it is freed.
#include <gtest/gtest.h>

#include <atomic>
#include <coroutine>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.h"

using weft_test::spin_until;

namespace {

weft::Task<int> answer() { co_return 42; }

TEST(Cpp, BlockOnAndSpawnAwait) {
    weft::Runtime rt(2);
    EXPECT_EQ(rt.workers(), 2u);
    EXPECT_EQ(rt.block_on(answer()), 42);
    int v = rt.block_on([]() -> weft::Task<int> {
        auto h = weft::spawn(answer());
        EXPECT_TRUE(h.valid());
        EXPECT_NE(h.id(), 0u);
        int a = co_await h;
        EXPECT_FALSE(h.valid()) << "the result is taken once";
        co_return a + 1;
    }());
    EXPECT_EQ(v, 43);
}

TEST(Cpp, RuntimeWithDefaultWorkers) {
    weft::Runtime rt;
    EXPECT_GE(rt.workers(), 1u);
    EXPECT_NE(rt.get(), nullptr);
    EXPECT_EQ(rt.block_on(answer()), 42);
}

TEST(Cpp, InlineAwaitOfChildTasks) {
    weft::Runtime rt(2);
    // Children awaited inline run in the parent's kernel task: same id.
    struct Ids {
        uint64_t parent = 0, child = 0, grandchild = 0;
    } ids;
    auto grandchild = [](Ids* ids) -> weft::Task<int> {
        ids->grandchild = weft::current_task_id();
        co_await weft::yield_now();  // suspends the whole chain once
        co_return 1;
    };
    auto child = [grandchild](Ids* ids) -> weft::Task<int> {
        ids->child = weft::current_task_id();
        int g = co_await grandchild(ids);
        co_return g + 10;
    };
    int v = rt.block_on([child](Ids* ids) -> weft::Task<int> {
        ids->parent = weft::current_task_id();
        int sum = 0;
        for (int i = 0; i < 5; i++) sum += co_await child(ids);
        co_return sum + 100;
    }(&ids));
    EXPECT_EQ(v, 155);
    EXPECT_NE(ids.parent, 0u);
    EXPECT_EQ(ids.child, ids.parent);
    EXPECT_EQ(ids.grandchild, ids.parent);
    EXPECT_EQ(weft::current_task_id(), 0u) << "outside any task";
}

// Clones the polling task's waker into *out without suspending.
struct CloneOwnWaker {
    weft_waker* out;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<>) {
        *out = weft_waker_clone(&weft::detail::require_cx("CloneOwnWaker")->waker);
        return false;
    }
    void await_resume() const noexcept {}
};

weft::Task<void> finish_holding_a_clone_elsewhere(weft_waker* out, std::atomic<bool>* cloned) {
    co_await CloneOwnWaker{out};
    cloned->store(true, std::memory_order_release);
    cloned->notify_one();
}

// complete()'s fast path frees a task that finished in its first poll at
// once, with no RMW, only when nothing else holds a reference to it: a
// detached task that handed a clone of its waker to another thread stays
// allocated until that clone is dropped (ASan: a use after free otherwise).
TEST(Cpp, DetachedTaskFinishingWhileAWakerCloneLivesIsFreedOnlyAfterIt) {
    weft::Runtime rt(2);
    for (int round = 0; round < 300; round++) {
        weft_waker w{};
        std::atomic<bool> cloned{false};
        rt.spawn(finish_holding_a_clone_elsewhere(&w, &cloned)).detach();
        while (!cloned.load(std::memory_order_acquire)) cloned.wait(false, std::memory_order_acquire);
        weft_waker_wake_by_ref(&w);  // racing its completion: a wake that does nothing
        weft_waker_drop(w);          // maybe the last reference: frees it
    }
}

// Clones the polling task's waker into *out, says so, and suspends.
struct SuspendHandingOutWaker {
    weft_waker* out;
    std::atomic<bool>* handed;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) {
        *out = weft_waker_clone(&weft::detail::require_cx("SuspendHandingOutWaker")->waker);
        handed->store(true, std::memory_order_release);
        handed->notify_one();
    }
    void await_resume() const noexcept {}
};

weft::Task<void> suspend_once(weft_waker* out, std::atomic<bool>* handed, std::atomic<bool>* resumed) {
    co_await SuspendHandingOutWaker{out, handed};
    resumed->store(true);
}

weft::Task<void> hold_the_worker(std::atomic<bool>* holding, std::atomic<bool>* go) {
    holding->store(true, std::memory_order_release);
    holding->notify_one();
    while (!go->load(std::memory_order_acquire)) {
    }
    co_return;
}

// A suspended task that is woken (queued NOTIFIED) and then aborted before a
// worker takes it: its run finds CANCELLED in transition_to_running and
// cancels it instead of polling (begin_run's Cancelled outcome; a task aborted
// before its first poll takes the resume_running path instead). One worker,
// held by a busy task meanwhile; pulse off, so no handoff lets the task run
// early.
TEST(Cpp, WokenThenAbortedBeforeItRunsIsCancelledNotPolled) {
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = 1;
    weft_pulse_config pc;
    weft_pulse_config_init(&pc);
    pc.mode = WEFT_PULSE_OFF;
    cfg.pulse = &pc;
    weft::Runtime rt(cfg);
    weft_waker w{};
    std::atomic<bool> handed{false}, resumed{false}, holding{false}, go{false};
    auto a = rt.spawn(suspend_once(&w, &handed, &resumed));
    while (!handed.load(std::memory_order_acquire)) handed.wait(false, std::memory_order_acquire);
    auto b = rt.spawn(hold_the_worker(&holding, &go));  // runs after a's poll has returned
    while (!holding.load(std::memory_order_acquire)) holding.wait(false, std::memory_order_acquire);
    weft_waker_wake_by_ref(&w);  // a is idle: queued NOTIFIED behind b
    a.abort();                   // CANCELLED; already queued, so not queued again
    go.store(true, std::memory_order_release);
    b.join();
    EXPECT_THROW(a.join(), weft::Cancelled);
    EXPECT_FALSE(resumed.load()) << "cancelled, not polled";
    weft_waker_drop(w);
}

TEST(Cpp, YieldNow) {
    weft::Runtime rt(2);
    const int n = (int)weft_test::scaled(10000);
    int v = rt.block_on([](int n) -> weft::Task<int> {
        int count = 0;
        for (int i = 0; i < n; i++) {
            co_await weft::yield_now();
            count++;
        }
        co_return count;
    }(n));
    EXPECT_EQ(v, n);
    // Outside a task yield_now has no task to reschedule: it refuses.
    weft::yield_now y;
    EXPECT_THROW(y.await_suspend(std::noop_coroutine()), weft::Error);
}

TEST(Cpp, TaskVoid) {
    weft::Runtime rt(2);
    std::atomic<int> ran{0};
    rt.block_on([](std::atomic<int>* ran) -> weft::Task<void> {
        co_await weft::yield_now();
        ran->fetch_add(1);
        auto h = weft::spawn([](std::atomic<int>* ran) -> weft::Task<void> {
            ran->fetch_add(10);
            co_return;
        }(ran));
        co_await h;
        ran->fetch_add(100);
    }(&ran));
    EXPECT_EQ(ran.load(), 111);
    auto h = rt.spawn([](std::atomic<int>* ran) -> weft::Task<void> {
        ran->fetch_add(1000);
        co_return;
    }(&ran));
    h.join();
    EXPECT_EQ(ran.load(), 1111);
}

TEST(Cpp, MoveOnlyResults) {
    weft::Runtime rt(2);
    auto make = [](int v) -> weft::Task<std::unique_ptr<int>> { co_return std::make_unique<int>(v); };
    std::unique_ptr<int> p = rt.block_on(make(5));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 5);
    auto joined = rt.spawn(make(6)).join();
    ASSERT_NE(joined, nullptr);
    EXPECT_EQ(*joined, 6);
    auto sum = rt.block_on([make]() -> weft::Task<std::unique_ptr<int>> {
        auto h = weft::spawn(make(7));
        std::unique_ptr<int> a = co_await h;
        std::unique_ptr<int> b = co_await make(8);
        co_return std::make_unique<int>(*a + *b);
    }());
    EXPECT_EQ(*sum, 15);
    // A result never taken (handle dropped after completion) is destroyed
    // with the task: ASan would report it otherwise.
    {
        auto h = rt.spawn(make(9));
        spin_until([&] { return h.is_finished(); });
    }
    auto s = rt.block_on([]() -> weft::Task<std::string> { co_return std::string(1000, 'x'); }());
    EXPECT_EQ(s.size(), 1000u);
}

// JoinHandle's completed-task fast path (ResultBox::succeeded): a result
// read from the box once the task finished, on another worker, before or
// while the handle is awaited; a second co_await of a taken handle, an abort
// after completion and a handle moved after completion all behave as on the
// status path. Counted instances: every result is built, moved out and
// destroyed exactly once (ASan/TSan builds also see the memory).
struct Counted {
    static inline std::atomic<int> live{0};
    int v;
    explicit Counted(int x) : v(x) { live++; }
    Counted(Counted&& o) noexcept : v(o.v) { live++; }
    Counted(const Counted&) = delete;
    ~Counted() { live--; }
};
TEST(Cpp, JoinHandleFastPathDeliversOnce) {
    {
        weft::Runtime rt(2);
        int sum = rt.block_on([]() -> weft::Task<int> {
            std::vector<weft::JoinHandle<Counted>> hs;
            for (int i = 0; i < 200; i++) hs.push_back(weft::spawn([](int i) -> weft::Task<Counted> {
                co_return Counted(i);
            }(i)));
            int s = 0;
            for (size_t i = 0; i < hs.size(); i++) {
                if (i % 3 == 0) hs[i].abort();  // after completion or not: Cancelled or the value
                if (i % 5 == 0) {
                    weft::JoinHandle<Counted> moved = std::move(hs[i]);
                    try {
                        Counted c = co_await moved;
                        s += c.v;
                    } catch (const weft::Cancelled&) {
                    }
                    continue;
                }
                auto& h = hs[i];  // (GCC 12 copies the awaiter of `co_await hs[i]`)
                try {
                    Counted c = co_await h;
                    s += c.v;
                } catch (const weft::Cancelled&) {
                }
            }
            // Taken: a second await throws, as on the status path.
            bool threw = false;
            try {
                auto& taken = hs[1];
                co_await taken;
            } catch (const weft::Error& e) {
                threw = e.code() == WEFT_EALREADY;
            }
            co_return threw ? s : -1;
        }());
        EXPECT_GE(sum, 0);
        // Finished before the await, from a thread outside the runtime.
        auto h = rt.spawn([]() -> weft::Task<Counted> { co_return Counted(7); }());
        spin_until([&] { return h.is_finished(); });
        EXPECT_EQ(h.join().v, 7);
    }
    EXPECT_EQ(Counted::live.load(), 0);
}

TEST(Cpp, ExceptionsComeOutOfTheJoinHandle) {
    weft::Runtime rt(2);
    auto thrower = [](std::string msg) -> weft::Task<int> {
        co_await weft::yield_now();
        throw std::runtime_error(msg);
        co_return 0;
    };
    // join(): rethrown with its type and message.
    try {
        rt.spawn(thrower("boom")).join();
        FAIL() << "expected an exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "boom");
    }
    // block_on() too.
    EXPECT_THROW(rt.block_on(thrower("again")), std::runtime_error);
    // co_await of a spawned task, and of an inline child.
    int v = rt.block_on([thrower]() -> weft::Task<int> {
        int caught = 0;
        auto h = weft::spawn(thrower("spawned"));
        try {
            co_await h;
        } catch (const std::runtime_error& e) {
            if (std::string(e.what()) == "spawned") caught += 1;
        }
        try {
            co_await thrower("inline");
        } catch (const std::runtime_error& e) {
            if (std::string(e.what()) == "inline") caught += 10;
        }
        co_return caught;
    }());
    EXPECT_EQ(v, 11);
    // A failed task that finished before anyone looked still rethrows.
    auto h = rt.spawn(thrower("status"));
    spin_until([&] { return h.is_finished(); });
    EXPECT_THROW(h.join(), std::runtime_error);
    // A Task<void> that throws.
    EXPECT_THROW(rt.block_on([]() -> weft::Task<void> {
                     throw std::logic_error("void");
                     co_return;
                 }()),
                 std::logic_error);
}

// Suspends forever without leaving a waker anywhere.
struct Forever {
    std::atomic<int>* reached;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) noexcept { reached->fetch_add(1, std::memory_order_release); }
    void await_resume() const noexcept {}
};

weft::Task<int> park_forever(std::atomic<int>* reached, std::atomic<int>* destroyed) {
    struct Guard {
        std::atomic<int>* d;
        ~Guard() { d->fetch_add(1); }
    } g{destroyed};
    auto big = std::make_unique<std::vector<int>>(1000, 7);  // leaks unless the frame is destroyed
    co_await Forever{reached};
    co_return (*big)[0];
}

TEST(Cpp, AbortedJoinHandleThrowsCancelled) {
    weft::Runtime rt(2);
    std::atomic<int> reached{0}, destroyed{0};
    auto h = rt.spawn(park_forever(&reached, &destroyed));
    spin_until([&] { return reached.load(std::memory_order_acquire) == 1; });
    EXPECT_FALSE(h.is_finished());
    h.abort();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_EQ(destroyed.load(), 1) << "the frame was destroyed when the task was cancelled";
    EXPECT_THROW(h.join(), weft::Error) << "the handle is empty after join";
    // Awaited from a task: Cancelled is catchable there too, and is an Error
    // with the documented code.
    int code = rt.block_on([](std::atomic<int>* r, std::atomic<int>* d) -> weft::Task<int> {
        auto h = weft::spawn(park_forever(r, d));
        // Let it reach its suspension point first, so its body has run.
        while (r->load(std::memory_order_acquire) < 2) co_await weft::yield_now();
        h.abort();
        try {
            co_await h;
        } catch (const weft::Cancelled& c) {
            co_return c.code();
        }
        co_return 0;
    }(&reached, &destroyed));
    EXPECT_EQ(code, WEFT_ECANCELED);
    EXPECT_EQ(destroyed.load(), 2);
}

weft::Task<long> skynet(long num, long size) {
    if (size == 1) co_return num;
    std::vector<weft::JoinHandle<long>> hs;
    hs.reserve(10);
    for (long i = 0; i < 10; i++) hs.push_back(weft::spawn(skynet(num + i * (size / 10), size / 10)));
    long sum = 0;
    for (auto& h : hs) sum += co_await h;
    co_return sum;
}

TEST(Cpp, SkynetOf1111Tasks) {
    weft::Runtime rt(2);
    // 1 + 10 + 100 + 1000 tasks; the leaves are 0..999.
    EXPECT_EQ(rt.block_on(skynet(0, 1000)), 499500L);
    EXPECT_EQ(rt.block_on(skynet(0, 1000)), 499500L) << "and again on the same runtime";
}

TEST(Cpp, DetachedHandleWhileTaskRuns) {
    weft::Runtime rt(2);
    std::atomic<int> done{0};
    const int n = 100;
    for (int i = 0; i < n; i++) {
        auto h = rt.spawn([](std::atomic<int>* done) -> weft::Task<int> {
            for (int k = 0; k < 20; k++) co_await weft::yield_now();
            done->fetch_add(1, std::memory_order_release);
            co_return 1;
        }(&done));
        if (i % 2) h.detach(); else { auto moved = std::move(h); }  // both just drop the handle
    }
    spin_until([&] { return done.load(std::memory_order_acquire) == n; });
}

weft::Task<int> read_token(std::shared_ptr<int> token) { co_return *token; }

// spawn_detached: the task runs with no handle ever made, from inside a task
// (weft::spawn_detached) and from outside (Runtime::spawn_detached), a chain
// of them included; the frame goes once it finishes.
weft::Task<void> detached_link(int k, int n, std::atomic<int>* ran, std::shared_ptr<int> token) {
    ran->fetch_add(1, std::memory_order_relaxed);
    if (k < n) weft::spawn_detached(detached_link(k + 1, n, ran, token));
    co_return;
}

TEST(Cpp, SpawnDetachedRunsTheTaskAndFreesItsFrame) {
    auto token = std::make_shared<int>(1);
    std::atomic<int> ran{0};
    {
        weft::Runtime rt(2);
        rt.spawn_detached(detached_link(1, 1000, &ran, token));
        spin_until([&] { return ran.load() == 1000; });
        // A value-returning task: its result is dropped.
        rt.spawn_detached([](std::atomic<int>* ran, std::shared_ptr<int> token) -> weft::Task<int> {
            ran->fetch_add(1);
            co_return *token;
        }(&ran, token));
        spin_until([&] { return ran.load() == 1001 && token.use_count() == 1; });
    }
    EXPECT_EQ(token.use_count(), 1) << "every frame was destroyed";
}

TEST(Cpp, SpawnDetachedRefusedIsAnErrorAndDestroysTheFrame) {
    auto token = std::make_shared<int>(3);
    // Outside a runtime.
    try {
        weft::spawn_detached(read_token(token));
        FAIL() << "expected weft::Error";
    } catch (const weft::Error& e) {
        EXPECT_EQ(e.code(), WEFT_EINVAL);
        EXPECT_NE(std::string(e.what()).find("weft::spawn_detached"), std::string::npos) << e.what();
    }
    EXPECT_EQ(token.use_count(), 1) << "the refused frame was destroyed";
    // An empty Task (moved from).
    weft::Runtime rt(1);
    auto t = read_token(token);
    auto moved = std::move(t);
    try {
        rt.spawn_detached(std::move(t));
        FAIL() << "expected weft::Error";
    } catch (const weft::Error& e) {
        EXPECT_EQ(e.code(), WEFT_EINVAL);
    }
}

TEST(Cpp, RuntimeDestroyedAroundSuspendedDetachedTasks) {
    std::atomic<int> reached{0}, destroyed{0};
    {
        weft::Runtime rt(2);
        for (int i = 0; i < 10; i++) rt.spawn_detached(park_forever(&reached, &destroyed));
        spin_until([&] { return reached.load() == 10; });
    }  // ~Runtime: each dropped exactly once
    EXPECT_EQ(destroyed.load(), 10);
}

TEST(Cpp, SpawnOutsideARuntimeThrows) {
    // The frame holds a copy of the token until it is destroyed.
    auto token = std::make_shared<int>(3);
    try {
        auto h = weft::spawn(read_token(token));
        FAIL() << "expected weft::Error";
    } catch (const weft::Error& e) {
        EXPECT_EQ(e.code(), WEFT_EINVAL);
    }
    EXPECT_EQ(token.use_count(), 1) << "the refused frame was destroyed";
    // A Task that is never spawned nor awaited frees its frame.
    { auto t = read_token(token); }
    EXPECT_EQ(token.use_count(), 1);
    // Spawned and finished: the frame goes when the handle and task do.
    {
        weft::Runtime rt(1);
        EXPECT_EQ(rt.block_on(read_token(token)), 3);
    }
    EXPECT_EQ(token.use_count(), 1);
}

TEST(Cpp, RuntimeDestroyedAroundSuspendedCoroutines) {
    std::atomic<int> reached{0}, destroyed{0}, awaiting{0};
    weft::JoinHandle<int> outlives;  // survives the runtime
    {
        weft::Runtime rt(2);
        // A task parked forever, awaited by another task (whose frame holds
        // the JoinHandle), awaited in turn by a third.
        auto inner = rt.spawn(park_forever(&reached, &destroyed));
        auto middle = rt.spawn([](weft::JoinHandle<int> h, std::atomic<int>* aw) -> weft::Task<int> {
            aw->fetch_add(1);
            int v = co_await h;
            co_return v + 1;
        }(std::move(inner), &awaiting));
        outlives = rt.spawn([](weft::JoinHandle<int> h, std::atomic<int>* aw) -> weft::Task<int> {
            aw->fetch_add(1);
            co_return co_await h;
        }(std::move(middle), &awaiting));
        // Detached ones, parked and mid-yield.
        for (int i = 0; i < 10; i++) rt.spawn(park_forever(&reached, &destroyed)).detach();
        rt.spawn([]() -> weft::Task<void> {
              for (;;) co_await weft::yield_now();
          }())
            .detach();
        spin_until([&] { return reached.load() == 11 && awaiting.load() == 2; });
    }  // ~Runtime: every frame is destroyed exactly once
    EXPECT_EQ(destroyed.load(), 11);
    EXPECT_TRUE(outlives.is_finished());
    EXPECT_THROW(outlives.join(), weft::Cancelled);
}

// ---- ForkJoin: fork-join batches on the worker's fork stack --------------------------

weft::Task<uint64_t> square(uint64_t i) {
    if (i % 3 == 0) co_await weft::yield_now();
    co_return i * i;
}

TEST(Cpp, ForkJoinCollectsResultsInOrder) {
    weft::Runtime rt(2);
    auto v = rt.block_on([]() -> weft::Task<std::vector<uint64_t>> {
        weft::ForkJoin<uint64_t> kids(16);
        for (uint64_t i = 0; i < 16; i++) kids.spawn(square(i));
        co_await kids;
        std::vector<uint64_t> out;
        for (size_t i = 0; i < kids.size(); i++) out.push_back(kids[i]);
        co_return out;
    }());
    ASSERT_EQ(v.size(), 16u);
    for (uint64_t i = 0; i < 16; i++) EXPECT_EQ(v[i], i * i);
}

TEST(Cpp, ForkJoinPartlyUsedCapacityAndVoid) {
    weft::Runtime rt(2);
    std::atomic<int> ran{0};
    int n = rt.block_on([](std::atomic<int>* ran) -> weft::Task<int> {
        weft::ForkJoin<void> kids(8);  // only 5 used
        for (int i = 0; i < 5; i++)
            kids.spawn([](std::atomic<int>* ran) -> weft::Task<void> {
                ran->fetch_add(1);
                co_return;
            }(ran));
        co_await kids;
        bool refused = false;
        try {
            kids.spawn([]() -> weft::Task<void> { co_return; }());
        } catch (const weft::Error& e) {
            refused = e.code() == WEFT_EINVAL;  // after co_await: sealed
        }
        co_return refused ? (int)kids.size() : -1;
    }(&ran));
    EXPECT_EQ(n, 5);
    EXPECT_EQ(ran.load(), 5);
    EXPECT_THROW(rt.block_on([]() -> weft::Task<void> {
                     weft::ForkJoin<int> kids(1);
                     kids.spawn(answer());
                     kids.spawn(answer());  // beyond capacity
                     co_await kids;
                 }()),
                 weft::Error);
}

weft::Task<uint64_t> fib(unsigned n) {
    if (n < 2) co_return n;
    weft::ForkJoin<uint64_t> kids(2);
    kids.spawn(fib(n - 1));
    kids.spawn(fib(n - 2));
    co_await kids;
    co_return kids[0] + kids[1];
}

TEST(Cpp, ForkJoinRecursive) {
    weft::Runtime rt(2);
    EXPECT_EQ(rt.block_on(fib(16)), 987u);  // ~3000 tasks, nested batches
}

TEST(Cpp, ForkJoinRethrowsAChildException) {
    weft::Runtime rt(2);
    auto thrower = [](int i) -> weft::Task<int> {
        co_await weft::yield_now();
        if (i == 3) throw std::out_of_range("child 3");
        co_return i;
    };
    try {
        rt.block_on([thrower]() -> weft::Task<int> {
            weft::ForkJoin<int> kids(6);
            for (int i = 0; i < 6; i++) kids.spawn(thrower(i));
            co_await kids;
            co_return 0;
        }());
        FAIL() << "expected the child's exception";
    } catch (const std::out_of_range& e) {
        EXPECT_STREQ(e.what(), "child 3");
    }
}

// Children that wait for a flag, yielding; count their frames' destruction.
weft::Task<int> wait_flag(std::atomic<bool>* flag, std::atomic<int>* started, std::atomic<int>* destroyed) {
    struct Guard {
        std::atomic<int>* d;
        ~Guard() { d->fetch_add(1); }
    } g{destroyed};
    started->fetch_add(1);
    while (!flag->load(std::memory_order_acquire)) co_await weft::yield_now();
    co_return 1;
}

TEST(Cpp, ForkJoinParentAbortedWhileChildrenRun) {
    // The parent's frame (and its ForkJoin) goes away first; the children
    // finish later and the last one frees the shared block.
    weft::Runtime rt(2);
    const int rounds = (int)weft_test::scaled(200);
    for (int r = 0; r < rounds; r++) {
        std::atomic<bool> flag{false};
        std::atomic<int> started{0}, destroyed{0}, waiting{0};
        auto parent = rt.spawn([](std::atomic<bool>* f, std::atomic<int>* s, std::atomic<int>* d,
                                  std::atomic<int>* w) -> weft::Task<int> {
            weft::ForkJoin<int> kids(4);
            for (int i = 0; i < 4; i++) kids.spawn(wait_flag(f, s, d));
            w->store(1);
            co_await kids;
            co_return kids[0] + kids[1] + kids[2] + kids[3];
        }(&flag, &started, &destroyed, &waiting));
        spin_until([&] { return waiting.load() == 1; });
        parent.abort();
        EXPECT_THROW(parent.join(), weft::Cancelled);
        flag.store(true, std::memory_order_release);
        // The runtime lives on, so every child runs to the end: the last of
        // them frees the block (ASan checks that nobody touches it after).
        spin_until([&] { return destroyed.load() == 4; });
        EXPECT_EQ(started.load(), 4);
    }
}

// The last two children of a batch whose parent is gone finish at the same
// moment, on two workers. The second-to-last wakes the parent through the
// batch's shared block while the last one frees that block (and with it the
// block's reference on the parent task): the wake must not touch freed
// memory. ASan/TSan builds report it when the two overlap.
TEST(Cpp, ForkJoinLastTwoChildrenFinishTogetherAfterParentLeft) {
    weft::Runtime rt(2);
    const int rounds = weft_test::kSanitized ? 100 : 200;
    struct Sync {
        std::atomic<bool> parent_gone{false};
        std::atomic<int> spinning{0};
        std::atomic<bool> go{false};
        std::atomic<int> finished{0};
        std::atomic<int> waiting{0};
    };
    auto child = [](Sync* s) -> weft::Task<int> {
        while (!s->parent_gone.load(std::memory_order_acquire)) co_await weft::yield_now();
        // Hold this worker until both children are here, then go together.
        s->spinning.fetch_add(1);
        while (!s->go.load(std::memory_order_acquire)) {
        }
        s->finished.fetch_add(1);
        co_return 1;
    };
    for (int r = 0; r < rounds; r++) {
        Sync s;
        auto parent = rt.spawn([child](Sync* s) -> weft::Task<int> {
            weft::ForkJoin<int> kids(2);
            kids.spawn(child(s));
            kids.spawn(child(s));
            s->waiting.store(1);
            co_await kids;
            co_return kids[0] + kids[1];
        }(&s));
        spin_until([&] { return s.waiting.load() == 1; });
        parent.abort();
        EXPECT_THROW(parent.join(), weft::Cancelled);
        s.parent_gone.store(true, std::memory_order_release);
        spin_until([&] { return s.spinning.load() == 2; });
        s.go.store(true, std::memory_order_release);
        spin_until([&] { return s.finished.load() == 2; });
        // Give the children's completion a moment to finish touching the
        // block before `s` goes out of scope: wait for a fresh task to run
        // on both workers (they finish their current polls first).
        rt.block_on([]() -> weft::Task<void> { co_return; }());
        rt.block_on([]() -> weft::Task<void> { co_return; }());
    }
}

TEST(Cpp, RuntimeDestroyedDuringForkJoin) {
    std::atomic<bool> never{false};
    std::atomic<int> started{0}, destroyed{0};
    {
        weft::Runtime rt(2);
        auto h = rt.spawn([](std::atomic<bool>* f, std::atomic<int>* s, std::atomic<int>* d) -> weft::Task<int> {
            weft::ForkJoin<int> kids(8);
            for (int i = 0; i < 8; i++) kids.spawn(wait_flag(f, s, d));
            co_await kids;
            co_return 0;
        }(&never, &started, &destroyed));
        spin_until([&] { return started.load() >= 1; });
        h.detach();
    }  // every child frame destroyed, the block and the parent freed (ASan: no leak)
    EXPECT_EQ(destroyed.load(), started.load());
}

TEST(Cpp, ManyRuntimesWithCoroutines) {
    const int n = (int)weft_test::scaled(50);
    for (int i = 0; i < n; i++) {
        weft::Runtime rt(1 + i % 2);
        EXPECT_EQ(rt.block_on(skynet(0, 100)), 4950L);
    }
}

}  // namespace

// A spawned task's frame (its parameters and everything they own) is
// destroyed when the task completes, not when its JoinHandle goes away: a
// channel sender moved into a task must close the channel when the task
// ends, whoever holds the handle. The result stays takeable.
namespace {
struct Probe {
    std::atomic<int>* destroyed;
    bool live = true;
    explicit Probe(std::atomic<int>* d) : destroyed(d) {}
    Probe(Probe&& o) noexcept : destroyed(o.destroyed) { o.live = false; }
    ~Probe() {
        if (live) destroyed->fetch_add(1);
    }
};
weft::Task<std::string> holds_probe(Probe p, int n) {
    (void)p;
    for (int i = 0; i < n; i++) co_await weft::yield_now();
    co_return "result " + std::to_string(n);
}
weft::Task<int> holds_probe_throws(Probe p) {
    (void)p;
    co_await weft::yield_now();
    throw std::runtime_error("boom");
}
}  // namespace

TEST(Cpp, FrameIsDestroyedWhenTheTaskCompletes) {
    weft::Runtime rt(2);
    for (int n : {0, 1, 5}) {
        std::atomic<int> destroyed{0};
        auto h = rt.spawn(holds_probe(Probe(&destroyed), n));
        weft_test::spin_until([&] { return h.is_finished(); });
        EXPECT_EQ(destroyed.load(), 1) << "parameters outlived the completed task (n=" << n << ")";
        EXPECT_EQ(h.join(), "result " + std::to_string(n));
    }
    std::atomic<int> destroyed{0};
    auto h = rt.spawn(holds_probe_throws(Probe(&destroyed)));
    weft_test::spin_until([&] { return h.is_finished(); });
    EXPECT_EQ(destroyed.load(), 1);
    EXPECT_THROW(h.join(), std::runtime_error);
    // Unfinished tasks still release their frame once, when dropped.
    std::atomic<int> d2{0};
    {
        weft::Runtime rt2(1);
        rt2.spawn(holds_probe(Probe(&d2), 1000000)).detach();
    }
    EXPECT_EQ(d2.load(), 1);
}
