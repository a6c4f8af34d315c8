// bench/micro.cpp — weft's micro benchmarks, on Google Benchmark (Debian's
// libbenchmark-dev). Built as build/bench/weft-micro when CMake finds the
// library; `make bench` runs it after weft-bench.
//
// Targets (the issues'):
//   timer insert + cancel                 <= 20 ns   (issue 3)
//   reading the guarded clock             <= 25 ns   (issue 3)
//   uncontended semaphore acquire+release <= 15 ns   (issue 4)
//   uncontended mutex lock + unlock       <= 15 ns   (issue 4)
//   WakeList of 32, no heap allocation               (issue 4)
//   weft_budget_consume                   <= 5 ns    (issue 5)
//
// Next to them, `floor/...` rows time what the hardware itself charges for
// steps of the same work with nothing of weft's around them: clock_gettime
// through the vDSO (what the guarded clock reads) and one or two
// lock-prefixed compare-and-swaps on one cache line. A lock whose waiters
// sleep needs an atomic read-modify-write to take it, and to give it back
// either another one or a store followed by a full fence (or a waiter that
// queued meanwhile could be missed); on x86 both cost a locked instruction,
// so floor/two_cas is the least its uncontended acquire + release costs
// there. (Separately timed steps are not additive: the clock row is not
// bounded below by the sum of the two it is made of.)
//
// Every benchmark runs on the thread Google Benchmark calls it on, except
// those marked UseRealTime: their loop runs inside a task on a runtime's
// worker (a timer registration and the poll budget need one). Google
// Benchmark times CPU on the thread that runs the loop, so their CPU column
// is the worker's; they report wall time as well, since the loop may span
// several polls.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

#include <weft/pulse.hpp>
#include <weft/sync.hpp>
#include <weft/time.hpp>
#include <weft/tpc.hpp>
#include <weft/weft.hpp>

#include "../kernel/timer_wheel.h"  // the wheel alone (weft-micro links the static library)
#include "../kernel/wake_list.h"
#include "alloc_count.h"  // wake_list_32 counts allocations

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "weft-micro: check failed: %s\n", what);
        std::exit(2);
    }
}

// Runs poll(data) as one task on a fresh 1-worker runtime, pulse on or off;
// the task's status.
int run_on_one_worker(bool pulse_on, weft_poll_fn poll, void* data) {
    weft::PulseConfig pulse;
    if (!pulse_on) pulse.c.mode = WEFT_PULSE_OFF;
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = 1;
    cfg.pulse = &pulse.c;
    weft::Runtime rt(cfg);
    weft_task_desc d{sizeof d, poll, nullptr, data, 0};
    return weft_block_on(rt.get(), &d, nullptr);
}

// ---- the floors ---------------------------------------------------------------

void floor_clock_gettime(benchmark::State& state) {
    for (auto _ : state) {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        benchmark::DoNotOptimize(ts);
    }
}
BENCHMARK(floor_clock_gettime)->Name("floor/clock_gettime_monotonic");

std::atomic<uint64_t> g_word{4};

// One uncontended lock cmpxchg (what the clock guard adds to a reading).
void floor_one_cas(benchmark::State& state) {
    for (auto _ : state) {
        uint64_t cur = g_word.load(std::memory_order_relaxed);
        g_word.compare_exchange_weak(cur, cur + 4, std::memory_order_relaxed, std::memory_order_relaxed);
    }
}
BENCHMARK(floor_one_cas)->Name("floor/one_cas");

// Two dependent lock cmpxchg on one line: take a permit, give it back.
void floor_two_cas(benchmark::State& state) {
    for (auto _ : state) {
        uint64_t cur = g_word.load(std::memory_order_relaxed);
        while (!g_word.compare_exchange_weak(cur, cur - 4, std::memory_order_acquire, std::memory_order_relaxed)) {
        }
        cur = g_word.load(std::memory_order_relaxed);
        while (!g_word.compare_exchange_weak(cur, cur + 4, std::memory_order_release, std::memory_order_relaxed)) {
        }
    }
}
BENCHMARK(floor_two_cas)->Name("floor/two_cas");

// ---- issue 3: the clock and timers ------------------------------------------------

// weft_now(): CLOCK_MONOTONIC through the guard that never lets it go
// backwards (kernel/clock.h). Threads(2): two threads reading at once, so
// the guard word's line moves between them on every newer reading.
void clock_guarded(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(weft_now());
}
BENCHMARK(clock_guarded)->Name("clock/guarded_now")->Threads(1)->Threads(2);

constexpr int WHEEL_OTHERS = 10000;

// The timer wheel alone (kernel/timer_wheel.h): insert one entry and remove
// it again, with 10,000 other entries in the wheel; what a registration and
// a cancel cost the wheel, without the lock, clock read and waker around it.
void timer_wheel_insert_cancel(benchmark::State& state) {
    using weft::kernel::TimerWheel;
    using weft::kernel::WheelEntry;
    TimerWheel wheel;
    std::vector<WheelEntry> others(WHEEL_OTHERS);
    for (int i = 0; i < WHEEL_OTHERS; i++) {
        others[i].when = 1 + (uint64_t)(i * 7919) % 3600000;  // spread over the first hour
        wheel.insert(&others[i]);
    }
    WheelEntry e;
    uint64_t i = 0;
    for (auto _ : state) {
        e.when = 1 + (i++ & 1023) * 977;
        benchmark::DoNotOptimize(wheel.insert(&e));
        wheel.remove(&e);
    }
    require(wheel.count() == WHEEL_OTHERS, "timer wheel: the others stay");
    for (auto& o : others) wheel.remove(&o);
}
BENCHMARK(timer_wheel_insert_cancel)->Name("timer/wheel_insert_cancel");

// A weft_timer through the C ABI inside a task (the path weft::sleep takes):
// weft_timer_reset to about an hour ahead, weft_timer_poll (registers it in
// this thread's wheel: the wheel's lock on the multi-thread runtime, and a
// waker clone unless the timer lies in the task's own memory, kernel/timer.h
// "Borrowed wakers"), weft_timer_cancel (unlinks it; drops a cloned waker).
// 10,000 other timers registered meanwhile.
struct TimerLoop {
    benchmark::State* state;
    bool ok = true;
    bool budgeted = false;  // a poll budget was on: nothing measured
};

// `timer`: the measured timer, in the task's state (where weft_time.h keeps
// it, and where a C++ sleep's lives: its coroutine frame) or elsewhere.
int timer_loop_run(TimerLoop* t, weft_context* cx, weft_timer* timer_at);

// The measured timer on the poll's stack: outside the task's memory, so the
// wheel holds a cloned waker.
int timer_loop_poll(void* data, weft_context* cx, void*) {
    weft_timer timer;
    return timer_loop_run(static_cast<TimerLoop*>(data), cx, &timer);
}

// A raw task (weft_task_alloc) whose state holds the measured timer.
struct TimerTaskState {
    TimerLoop* loop;
    weft_timer timer;
};
int timer_task_state_poll(void* state, weft_context* cx) {
    auto* s = static_cast<TimerTaskState*>(state);
    return timer_loop_run(s->loop, cx, &s->timer);
}
void timer_task_state_drop(void*) {}
const weft_task_vtable timer_task_state_vtable{timer_task_state_poll, timer_task_state_drop, timer_task_state_drop};

int timer_loop_run(TimerLoop* t, weft_context* cx, weft_timer* timer_at) {
    // No poll budget on this thread (pulse off, or the executor): had there
    // been one, the polls below would answer "yield" without registering
    // once it was spent (see timer_insert_cancel_runtime), and still
    // return WEFT_PENDING, so the loop could not tell.
    if (weft_budget_remaining() != UINT32_MAX) {
        t->budgeted = true;
        return WEFT_READY;
    }
    std::vector<weft_timer> others(WHEEL_OTHERS);
    for (int i = 0; i < WHEEL_OTHERS; i++) {
        weft_timer_init(&others[i], nullptr);
        weft_timer_sleep_for(&others[i], (int64_t)(100 + i % 5000) * 1000000);
        if (weft_timer_poll(&others[i], cx) != WEFT_PENDING) t->ok = false;
    }
    weft_timer& timer = *timer_at;
    weft_timer_init(&timer, nullptr);
    uint64_t far = weft_now() + 3600000000000ull;  // an hour: never due while measured
    uint64_t i = 0;
    for (auto _ : *t->state) {
        weft_timer_reset(&timer, far + (i++ & 1023) * 1000000);
        if (weft_timer_poll(&timer, cx) != WEFT_PENDING) t->ok = false;
        weft_timer_cancel(&timer);
    }
    for (auto& o : others) weft_timer_cancel(&o);
    return WEFT_READY;
}

// On a 1-worker multi-thread runtime (the loop runs on its worker), pulse
// off: with pulse on, weft_timer_poll spends the poll's cooperative budget
// (weft_pulse.h), and once the first 128 polls of this one long poll have
// spent it, it answers "yield" (a wake_by_ref) without registering anything,
// so the loop would time that instead. A real task registers a timer or two
// per poll and never meets the budget there.
void timer_insert_cancel_runtime(benchmark::State& state) {
    TimerLoop loop{&state};
    require(run_on_one_worker(false, timer_loop_poll, &loop) == 0 && loop.ok, "timer_insert_cancel on a runtime");
    if (loop.budgeted) state.SkipWithError("the poll budget is on (WEFT_PULSE=on overrides pulse off): not measured");
}
BENCHMARK(timer_insert_cancel_runtime)->Name("timer/insert_cancel/runtime")->UseRealTime();

// The same with the timer in a raw task's state, as weft_time.h lays a C
// task out (and as a C++ weft::sleep sits in its coroutine frame): the wheel
// borrows the task's waker, so the insert and the cancel touch no reference
// count. Pulse off, 1 worker, as above.
void timer_insert_cancel_runtime_in_task(benchmark::State& state) {
    TimerLoop loop{&state};
    weft::PulseConfig pulse;
    pulse.c.mode = WEFT_PULSE_OFF;
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = 1;
    cfg.pulse = &pulse.c;
    weft::Runtime rt(cfg);
    void* mem = weft_task_alloc(sizeof(TimerTaskState), &timer_task_state_vtable);
    require(mem != nullptr, "timer_insert_cancel in a task's state: weft_task_alloc");
    new (mem) TimerTaskState{&loop, {}};
    weft_join* join = nullptr;
    require(weft_task_spawn(rt.get(), mem, &join) == 0, "timer_insert_cancel in a task's state: spawn");
    int r = weft_join_wait(join, -1);
    weft_join_free(join);
    require(r == 0 && loop.ok, "timer_insert_cancel in a task's state");
    if (loop.budgeted) state.SkipWithError("the poll budget is on (WEFT_PULSE=on overrides pulse off): not measured");
}
BENCHMARK(timer_insert_cancel_runtime_in_task)->Name("timer/insert_cancel/runtime_in_task")->UseRealTime();

// On a thread-per-core executor owned by this thread (its wheel has no lock).
void timer_insert_cancel_tpc(benchmark::State& state) {
    weft::tpc::Executor ex;
    TimerLoop loop{&state};
    weft_task_desc d{sizeof d, timer_loop_poll, nullptr, &loop, 0};
    require(weft_tpc_block_on(ex.native_handle(), &d, nullptr) == 0 && loop.ok, "timer_insert_cancel on tpc");
    if (loop.budgeted) state.SkipWithError("a poll budget is on: not measured");
}
BENCHMARK(timer_insert_cancel_tpc)->Name("timer/insert_cancel/tpc");

// ---- issue 4: sync primitives ---------------------------------------------------

// weft_semaphore_try_acquire(1) + weft_semaphore_release(1), uncontended.
void semaphore_acquire_release(benchmark::State& state) {
    weft_semaphore* s = nullptr;
    require(weft_semaphore_new(1, &s) == 0, "semaphore");
    for (auto _ : state) {
        if (weft_semaphore_try_acquire(s, 1) != 0) std::abort();
        weft_semaphore_release(s, 1);
    }
    weft_semaphore_free(s);
}
BENCHMARK(semaphore_acquire_release)->Name("sync/semaphore_acquire_release");

// Inside a task: `auto g = co_await m.lock();` and the guard's unlock (the
// C++ awaitable's fast path), on an executor owned by this thread.
weft::Task<void> mutex_loop(benchmark::State* state, weft::Mutex<uint64_t>* m) {
    for (auto _ : *state) {
        auto g = co_await m->lock();
        ++*g;
    }
}

void mutex_lock_unlock(benchmark::State& state) {
    weft::tpc::Executor ex;
    weft::Mutex<uint64_t> m(0);
    ex.block_on(mutex_loop(&state, &m));
    require(*m.try_lock().value() == (uint64_t)state.iterations(), "mutex count");
}
BENCHMARK(mutex_lock_unlock)->Name("sync/mutex_lock_unlock");

void wl_wake(const void* p) {
    static_cast<std::atomic<uint64_t>*>(const_cast<void*>(p))->fetch_add(1, std::memory_order_relaxed);
}
void wl_nop(const void*) {}
weft_waker wl_clone(const void* p);
const weft_waker_vtable wl_vtable = {wl_clone, wl_wake, wl_wake, wl_nop};
weft_waker wl_clone(const void* p) { return weft_waker{p, &wl_vtable}; }

// A kernel WakeList filled with 32 wakers and woken (time per batch); the
// `allocs` counter is the heap allocations made in the timed loop.
void wake_list_32(benchmark::State& state) {
    using weft::kernel::WakeList;
    std::atomic<uint64_t> woken{0};
    g_allocs.store(0);
    g_count_allocs.store(true);
    for (auto _ : state) {
        WakeList l;
        for (uint32_t k = 0; k < WakeList::CAPACITY; k++) l.push(weft_waker{&woken, &wl_vtable});
        l.wake_all();
    }
    g_count_allocs.store(false);
    require(woken.load() == (uint64_t)state.iterations() * WakeList::CAPACITY, "wake_list woke all");
    require(g_allocs.load() == 0, "wake_list: no heap allocation");
    state.counters["allocs"] = (double)g_allocs.load();
    state.counters["wakers"] = WakeList::CAPACITY;
}
BENCHMARK(wake_list_32)->Name("sync/wake_list_32");

// ---- issue 5: pulse --------------------------------------------------------------

// weft_budget_consume(1) in a loop on a 1-worker runtime, pulse on (arg 1)
// or off (arg 0), used as a task should use it: when it says the budget is
// spent, the task yields (wakes itself, returns pending) and the loop goes
// on in its next poll with a fresh budget. So the time per call includes,
// with pulse on, one yield and re-poll per budget (128 calls by default);
// `spent` counts those yields.
struct BudgetLoop {
    benchmark::State* state;
    uint64_t spent = 0;
};

int budget_loop_poll(void* data, weft_context* cx, void*) {
    auto* b = static_cast<BudgetLoop*>(data);
    while (b->state->KeepRunning()) {
        if (weft_budget_consume(1)) {
            b->spent++;
            weft_waker_wake_by_ref(&cx->waker);
            return WEFT_PENDING;
        }
    }
    return WEFT_READY;
}

void budget_consume(benchmark::State& state) {
    BudgetLoop loop{&state};
    require(run_on_one_worker(state.range(0) != 0, budget_loop_poll, &loop) == 0, "budget_consume task");
    state.counters["spent"] = (double)loop.spent;
}
BENCHMARK(budget_consume)->Name("pulse/budget_consume")->ArgName("pulse_on")->Arg(1)->Arg(0)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
