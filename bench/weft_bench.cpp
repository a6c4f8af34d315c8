// bench/weft_bench.cpp — weft's implementation of the reference workloads of
// shared/BENCHMARKS.md, one for one with shared/peers/tokio/src/main.rs (read
// its top comment: the measurement protocol below follows it exactly).
//
// Usage: weft-bench [--workers N] [--list] [FILTER]
// Output: one `BENCH <name> workers=N median_ns=.. ops=.. ns_per_op=..` line
// per workload on stdout; diagnostics on stderr as '#' lines.
//
// Protocol (common to every workload):
//  * one weft::Runtime per workload, built before its warm-ups, reused by
//    every iteration;
//  * the clock starts on the main thread (not a worker) immediately before
//    the iteration's first spawn and stops right after the main thread
//    observed completion; result checks come after the clock stops;
//  * 3 warm-ups, then clamp(ceil(1.5 s / min(warm-up)), 10, 1e6) timed
//    iterations; median (even count: mean of the middle two, rounded down).
//    The starvation workloads are the exception: no warm-up, exactly 3.
//  * "spawn from the main thread" = Runtime::spawn (inject queue);
//    "spawn inside the runtime" = weft::spawn from a task (LIFO slot / local
//    queue); "the main thread waits" = JoinHandle::join (futex park).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>
#include <weft/tpc.hpp>

#include "../kernel/wake_list.h"  // wake_list_32 (weft-bench links the static library)

#include "alloc_count.h"  // wake_list_32 counts allocations


namespace {

using Clock = std::chrono::steady_clock;

constexpr int WARMUP_ITERS = 3;
constexpr size_t MIN_ITERS = 10;
constexpr size_t MAX_ITERS = 1000000;
constexpr uint64_t TARGET_TIMED_NS = 1500000000ull;

constexpr int SPAWN_MANY_TASKS = 10000;
constexpr int YIELD_TASKS = 200;
constexpr int YIELDS_PER_TASK = 1000;
constexpr int CHAIN_DEPTH = 1000;
constexpr uint64_t SKYNET_SIZE = 1000000;
constexpr uint64_t SKYNET_FANOUT = 10;
constexpr uint64_t SKYNET_TASKS = 1111111;
constexpr uint64_t SKYNET_RESULT = 499999500000ull;

uint64_t median_ns(std::vector<uint64_t> s) {
    std::sort(s.begin(), s.end());
    size_t n = s.size();
    if (n % 2 == 1) return s[n / 2];
    return (uint64_t)(((unsigned __int128)s[n / 2 - 1] + s[n / 2]) / 2);
}

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "# CHECK FAILED: %s\n", what);
        std::exit(2);
    }
}

// Runs `iters` timed iterations of iter(true) after `warmups` untimed ones;
// prints the diagnostics and the BENCH line.
void run_iters(const char* name, unsigned workers, uint64_t ops, int warmups, size_t iters,
               const std::function<uint64_t(bool)>& iter) {
    std::vector<uint64_t> samples;
    samples.reserve(iters);
    auto t0 = Clock::now();
    for (size_t i = 0; i < iters; i++) samples.push_back(iter(true));
    double total = std::chrono::duration<double>(Clock::now() - t0).count();
    uint64_t med = median_ns(samples);
    std::fprintf(stderr, "# %s: warmups=%d iters=%zu min_ns=%" PRIu64 " max_ns=%" PRIu64 " timed_total_s=%.3f\n", name,
                 warmups, iters, *std::min_element(samples.begin(), samples.end()),
                 *std::max_element(samples.begin(), samples.end()), total);
    std::printf("BENCH %s workers=%u median_ns=%" PRIu64 " ops=%" PRIu64 " ns_per_op=%.2f\n", name, workers, med, ops,
                (double)med / (double)ops);
    std::fflush(stdout);
}

// Runs iter(timed) -> wall ns with the common protocol; prints the BENCH line.
void run_bench(const char* name, unsigned workers, uint64_t ops, const std::function<uint64_t(bool)>& iter) {
    std::vector<uint64_t> warm;
    for (int i = 0; i < WARMUP_ITERS; i++) warm.push_back(iter(false));
    uint64_t est = std::max<uint64_t>(1, *std::min_element(warm.begin(), warm.end()));
    size_t iters = std::clamp<size_t>((TARGET_TIMED_NS + est - 1) / est, MIN_ITERS, MAX_ITERS);
    run_iters(name, workers, ops, WARMUP_ITERS, iters, iter);
}

uint64_t since(Clock::time_point t) {
    return (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

// ---- 1. spawn_many_local -------------------------------------------------------
// The Tokio shape: a JoinHandle per task, awaited in spawn order.
// spawn_many_local_fork_join writes the same batch with weft::ForkJoin, for
// reference; for a flat batch this large the JoinHandles are faster (about
// 55 vs 120 ns per task here). Not the counter (the workers batch their
// updates to it): perf puts 30% of the fork-join version's cycles on the
// other worker searching and stealing (fork-stack children are offered at
// most 32 at a time), and 18% on the spawner's allocations missing the
// cache: a child frees its block on the worker that ran it, so half of them
// come back to the spawner cold, where a JoinHandle's last release is the
// spawner's own. ForkJoin is for divide-and-conquer fan-out (skynet).
weft::Task<void> bump(std::atomic<uint64_t>* counter) {
    counter->fetch_add(1, std::memory_order_relaxed);
    co_return;
}

weft::Task<void> spawn_many_root(std::atomic<uint64_t>* counter) {
    weft::ForkJoin<void> batch(SPAWN_MANY_TASKS);
    for (int i = 0; i < SPAWN_MANY_TASKS; i++) batch.spawn(bump(counter));
    co_await batch;
}

weft::Task<void> spawn_many_root_jh(std::atomic<uint64_t>* counter) {
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(SPAWN_MANY_TASKS);
    for (int i = 0; i < SPAWN_MANY_TASKS; i++) handles.push_back(weft::spawn(bump(counter)));
    for (auto& h : handles) co_await h;
}

template <weft::Task<void> (*Root)(std::atomic<uint64_t>*)>
void bench_spawn_many_local_with(const char* name, unsigned workers) {
    weft::Runtime rt(workers);
    std::atomic<uint64_t> counter{0};
    run_bench(name, workers, SPAWN_MANY_TASKS, [&](bool) {
        counter.store(0, std::memory_order_relaxed);
        auto start = Clock::now();
        rt.spawn(Root(&counter)).join();
        uint64_t ns = since(start);
        check(counter.load() == SPAWN_MANY_TASKS, "spawn_many_local counter");
        return ns;
    });
}
void bench_spawn_many_local(unsigned workers) {
    bench_spawn_many_local_with<spawn_many_root_jh>("spawn_many_local", workers);
}
void bench_spawn_many_local_fj(unsigned workers) {
    bench_spawn_many_local_with<spawn_many_root>("spawn_many_local_fork_join", workers);
}

// ---- 2. spawn_many_remote ------------------------------------------------------
weft::Task<void> await_all(std::vector<weft::JoinHandle<void>>* handles) {
    for (auto& h : *handles) co_await h;
}

void bench_spawn_many_remote(unsigned workers) {
    weft::Runtime rt(workers);
    std::atomic<uint64_t> counter{0};
    run_bench("spawn_many_remote", workers, SPAWN_MANY_TASKS, [&](bool) {
        counter.store(0, std::memory_order_relaxed);
        std::vector<weft::JoinHandle<void>> handles;
        handles.reserve(SPAWN_MANY_TASKS);
        auto start = Clock::now();
        for (int i = 0; i < SPAWN_MANY_TASKS; i++) handles.push_back(rt.spawn(bump(&counter)));
        rt.block_on(await_all(&handles));
        uint64_t ns = since(start);
        check(counter.load() == SPAWN_MANY_TASKS, "spawn_many_remote counter");
        return ns;
    });
}

// ---- 3. yield_many ---------------------------------------------------------------
weft::Task<void> yielder() {
    for (int i = 0; i < YIELDS_PER_TASK; i++) co_await weft::yield_now();
}

void bench_yield_many(unsigned workers) {
    weft::Runtime rt(workers);
    run_bench("yield_many", workers, (uint64_t)YIELD_TASKS * YIELDS_PER_TASK, [&](bool) {
        std::vector<weft::JoinHandle<void>> handles;
        handles.reserve(YIELD_TASKS);
        auto start = Clock::now();
        for (int i = 0; i < YIELD_TASKS; i++) handles.push_back(rt.spawn(yielder()));
        rt.block_on(await_all(&handles));
        return since(start);
    });
}

// ---- 4. ping_pong ------------------------------------------------------------------
// 1,000 pairs; each bounces a u64 100 times through two bounded weft::mpsc
// channels of capacity 1 (a->b, b->a). The root spawns pong then ping for
// each pair and awaits the 2,000 handles in spawn order.
constexpr int PING_PONG_PAIRS = 1000;
constexpr uint64_t PING_PONG_ROUND_TRIPS = 100;

weft::Task<void> pong(weft::mpsc::Receiver<uint64_t> rx_arg, weft::mpsc::Sender<uint64_t> tx_arg) {
    auto rx = std::move(rx_arg);
    auto tx = std::move(tx_arg);
    for (uint64_t i = 0; i < PING_PONG_ROUND_TRIPS; i++) {
        auto v = co_await rx.recv();
        check(v.has_value(), "ping_pong: pong recv");
        check((co_await tx.send(*v)).ok(), "ping_pong: pong send");
    }
}

weft::Task<void> ping(weft::mpsc::Sender<uint64_t> tx_arg, weft::mpsc::Receiver<uint64_t> rx_arg) {
    auto tx = std::move(tx_arg);
    auto rx = std::move(rx_arg);
    for (uint64_t i = 0; i < PING_PONG_ROUND_TRIPS; i++) {
        check((co_await tx.send(i)).ok(), "ping_pong: ping send");
        auto v = co_await rx.recv();
        check(v.has_value() && *v == i, "ping_pong: echo");
    }
}

weft::Task<void> ping_pong_root() {
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(2 * PING_PONG_PAIRS);
    for (int p = 0; p < PING_PONG_PAIRS; p++) {
        auto [a_to_b_tx, a_to_b_rx] = weft::mpsc::channel<uint64_t>(1);
        auto [b_to_a_tx, b_to_a_rx] = weft::mpsc::channel<uint64_t>(1);
        handles.push_back(weft::spawn(pong(std::move(a_to_b_rx), std::move(b_to_a_tx))));
        handles.push_back(weft::spawn(ping(std::move(a_to_b_tx), std::move(b_to_a_rx))));
    }
    for (auto& h : handles) co_await h;
}

void bench_ping_pong(unsigned workers) {
    weft::Runtime rt(workers);
    run_bench("ping_pong", workers, (uint64_t)PING_PONG_PAIRS * PING_PONG_ROUND_TRIPS * 2, [&](bool) {
        auto start = Clock::now();
        rt.spawn(ping_pong_root()).join();
        return since(start);
    });
}

// ---- 5. chained_spawn --------------------------------------------------------------
// Each link spawns the next and drops it: weft::spawn_detached, a spawn that
// never makes the handle Tokio's version drops at once. chained_spawn_detach
// (not compared) is the Tokio shape, weft::spawn(...).detach(): the handle's
// release is one more atomic RMW per link. The oneshot of the Tokio version:
// the last task sets the flag and wakes the main thread, which sleeps on it
// (C++20 atomic wait = futex).
template <bool Handle>
weft::Task<void> chain(int k, std::atomic<uint32_t>* done) {
    if (k < CHAIN_DEPTH) {
        if constexpr (Handle) weft::spawn(chain<Handle>(k + 1, done)).detach();
        else weft::spawn_detached(chain<Handle>(k + 1, done));
    } else {
        done->store(1, std::memory_order_release);
        done->notify_one();
    }
    co_return;
}

template <bool Handle>
void bench_chained_spawn_with(const char* name, unsigned workers) {
    weft::Runtime rt(workers);
    run_bench(name, workers, CHAIN_DEPTH, [&](bool) {
        std::atomic<uint32_t> done{0};
        auto start = Clock::now();
        rt.spawn_detached(chain<Handle>(1, &done));
        while (done.load(std::memory_order_acquire) == 0) done.wait(0, std::memory_order_acquire);
        return since(start);
    });
}
void bench_chained_spawn(unsigned workers) { bench_chained_spawn_with<false>("chained_spawn", workers); }
void bench_chained_spawn_detach(unsigned workers) { bench_chained_spawn_with<true>("chained_spawn_detach", workers); }

// ---- 6. skynet ---------------------------------------------------------------------
// Written with weft::ForkJoin, the fork-join primitive of weft.hpp: each node
// spawns its 10 children as one batch and awaits them through one counter.
// Every node is still its own task (one pooled allocation: the coroutine
// frame). skynet_join_handles is the same tree with a JoinHandle per child,
// awaited in order, as in the Tokio version (not compared; for reference).
weft::Task<uint64_t> skynet(uint64_t num, uint64_t size) {
    if (size == 1) co_return num;
    uint64_t child = size / SKYNET_FANOUT;
    weft::ForkJoin<uint64_t> kids(SKYNET_FANOUT);
    for (uint64_t i = 0; i < SKYNET_FANOUT; i++) kids.spawn(skynet(num + i * child, child));
    co_await kids;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < SKYNET_FANOUT; i++) sum += kids[i];
    co_return sum;
}

weft::Task<uint64_t> skynet_jh(uint64_t num, uint64_t size) {
    if (size == 1) co_return num;
    uint64_t child = size / SKYNET_FANOUT;
    weft::JoinHandle<uint64_t> hs[SKYNET_FANOUT];
    for (uint64_t i = 0; i < SKYNET_FANOUT; i++) hs[i] = weft::spawn(skynet_jh(num + i * child, child));
    uint64_t sum = 0;
    for (auto& h : hs) sum += co_await h;
    co_return sum;
}

template <weft::Task<uint64_t> (*Root)(uint64_t, uint64_t)>
void bench_skynet_with(const char* name, unsigned workers) {
    weft::Runtime rt(workers);
    run_bench(name, workers, SKYNET_TASKS, [&](bool) {
        auto start = Clock::now();
        uint64_t r = rt.spawn(Root(0, SKYNET_SIZE)).join();
        uint64_t ns = since(start);
        check(r == SKYNET_RESULT, "skynet sum");
        return ns;
    });
}
void bench_skynet(unsigned workers) { bench_skynet_with<skynet>("skynet", workers); }
void bench_skynet_jh(unsigned workers) { bench_skynet_with<skynet_jh>("skynet_join_handles", workers); }

// ---- 7. cross_thread_wake ---------------------------------------------------------
// A task awaits a weft::Notify that the main thread (not a worker) signals,
// then answers on a weft::mpsc channel of capacity 1, which the main thread
// reads with recv_blocking: the weft counterpart of Tokio's
// std::sync::mpsc::sync_channel(1) — what a user bridging a plain thread and
// a task would naturally reach for. Fresh Notify and channel per iteration,
// created before the clock starts.
constexpr int CROSS_THREAD_ROUND_TRIPS = 10000;

weft::Task<void> cross_thread_task(weft::Notify* ping, weft::mpsc::Sender<uint8_t> pong_arg) {
    auto pong = std::move(pong_arg);
    for (int i = 0; i < CROSS_THREAD_ROUND_TRIPS; i++) {
        co_await ping->notified();
        check((co_await pong.send(uint8_t(1))).ok(), "cross_thread_wake: pong send");
    }
}

void bench_cross_thread_wake(unsigned workers) {
    weft::Runtime rt(workers);
    run_bench("cross_thread_wake", workers, CROSS_THREAD_ROUND_TRIPS, [&](bool) {
        weft::Notify ping;
        auto [pong_tx, pong_rx] = weft::mpsc::channel<uint8_t>(1);
        auto start = Clock::now();
        auto h = rt.spawn(cross_thread_task(&ping, std::move(pong_tx)));
        for (int i = 0; i < CROSS_THREAD_ROUND_TRIPS; i++) {
            ping.notify_one();
            check(pong_rx.recv_blocking().has_value(), "cross_thread_wake: pong recv");
        }
        h.join();
        return since(start);
    });
}

// ---- thread-per-core executor (filter "tpc") ------------------------------------
// tpc_spawn_local: workload 1 on one executor. The main thread owns a
// weft::tpc::Executor and block_on's the root there (no worker threads: the
// executor is the main thread), so the whole batch is local spawns.
weft::Task<void> tpc_spawn_many_root(std::atomic<uint64_t>* counter) {
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(SPAWN_MANY_TASKS);
    for (int i = 0; i < SPAWN_MANY_TASKS; i++) handles.push_back(weft::tpc::spawn(bump(counter)));
    for (auto& h : handles) co_await h;
}

void bench_tpc_spawn_local(unsigned) {
    weft::tpc::Executor ex;
    std::atomic<uint64_t> counter{0};
    run_bench("tpc_spawn_local", 1, SPAWN_MANY_TASKS, [&](bool) {
        counter.store(0, std::memory_order_relaxed);
        auto start = Clock::now();
        ex.block_on(tpc_spawn_many_root(&counter));
        uint64_t ns = since(start);
        check(counter.load() == SPAWN_MANY_TASKS, "tpc_spawn_local counter");
        return ns;
    });
}

// tpc_cross_thread_wake: workload 7 with the task on a one-shard ShardSet:
// the main thread (no executor) notifies, the task answers on a channel.
void bench_tpc_cross_thread_wake_mode(const char* name, uint32_t wake) {
    weft::tpc::ShardSet shards(1, false, wake);
    uint64_t signals = 0, wakes = 0;
    run_bench(name, 1, CROSS_THREAD_ROUND_TRIPS, [&](bool) {
        weft::Notify ping;
        auto [pong_tx, pong_rx] = weft::mpsc::channel<uint8_t>(1);
        auto before = shards.metrics(0);
        auto start = Clock::now();
        shards.spawn_on(0, cross_thread_task(&ping, std::move(pong_tx)));
        for (int i = 0; i < CROSS_THREAD_ROUND_TRIPS; i++) {
            ping.notify_one();
            check(pong_rx.recv_blocking().has_value(), "tpc_cross_thread_wake: pong recv");
        }
        check(!pong_rx.recv_blocking().has_value(), "tpc_cross_thread_wake: task finished");
        uint64_t ns = since(start);
        auto after = shards.metrics(0);
        signals += after.signals - before.signals;
        wakes += after.wakes_remote - before.wakes_remote;
        return ns;
    });
    std::fprintf(stderr, "# %s: %.3f parked-owner signals per remote wake (%" PRIu64 " wakes)\n", name,
                 wakes ? (double)signals / (double)wakes : 0.0, wakes);
}
void bench_tpc_cross_thread_wake(unsigned) {
    bench_tpc_cross_thread_wake_mode("tpc_cross_thread_wake", WEFT_TPC_WAKE_DEFAULT);
}

// tpc_shard_ping_pong_{eventfd,msg_ring}: the cross-shard wake path. Two
// shards of one set bounce a token through two Notify objects
// (PING_PONG_ROUNDS round trips): each wake crosses threads and finds the
// other shard parked, so each costs a signal. Run with each wake mode to
// pick the default (bench/RESULTS.md). The shards do not spin before
// parking (WEFT_TPC_NO_SPIN), so every wake takes a signal path.
constexpr int TPC_PING_PONG_ROUNDS = 10000;
weft::Task<void> tpc_ponger(weft::Notify* in, weft::Notify* out, int rounds, std::atomic<int>* done) {
    for (int i = 0; i < rounds; i++) {
        co_await in->notified();
        out->notify_one();
    }
    done->fetch_add(1, std::memory_order_release);
}
weft::Task<void> tpc_pinger(weft::Notify* in, weft::Notify* out, int rounds, std::atomic<int>* done) {
    for (int i = 0; i < rounds; i++) {
        out->notify_one();
        co_await in->notified();
    }
    done->fetch_add(1, std::memory_order_release);
}
void bench_tpc_ping_pong_mode(const char* name, uint32_t wake) {
    // No spin: the wakes must find the other shard parked to measure the
    // signal paths.
    weft::tpc::ShardSet shards(2, true, wake, nullptr, WEFT_TPC_NO_SPIN);
    uint64_t msg = 0, signals = 0;
    run_bench(name, 2, TPC_PING_PONG_ROUNDS, [&](bool) {
        weft::Notify a, b;
        std::atomic<int> done{0};
        auto m0 = shards.metrics(0), m1 = shards.metrics(1);
        auto start = Clock::now();
        shards.spawn_on(1, tpc_ponger(&a, &b, TPC_PING_PONG_ROUNDS, &done));
        shards.spawn_on(0, tpc_pinger(&b, &a, TPC_PING_PONG_ROUNDS, &done));
        while (done.load(std::memory_order_acquire) != 2) std::this_thread::yield();
        uint64_t ns = since(start);
        auto n0 = shards.metrics(0), n1 = shards.metrics(1);
        msg += n0.msg_ring_signals - m0.msg_ring_signals + n1.msg_ring_signals - m1.msg_ring_signals;
        signals += n0.signals - m0.signals + n1.signals - m1.signals;
        return ns;
    });
    std::fprintf(stderr, "# %s: %" PRIu64 " signals, %" PRIu64 " of them MSG_RING\n", name, signals, msg);
}
void bench_tpc_ping_pong_eventfd(unsigned) {
    bench_tpc_ping_pong_mode("tpc_shard_ping_pong_eventfd", WEFT_TPC_WAKE_EVENTFD);
}
void bench_tpc_ping_pong_msg_ring(unsigned) {
    bench_tpc_ping_pong_mode("tpc_shard_ping_pong_msg_ring", WEFT_TPC_WAKE_MSG_RING);
}

// tpc_awake_wakes: system calls per cross-thread wake while the owner is
// awake. A task on a one-shard set keeps yielding (the owner never parks)
// while the main thread wakes a second task TPC_AWAKE_WAKES times; the line
// reports how many of those wakes had to signal (eventfd write or MSG_RING:
// the only system calls on the wake path).
constexpr int TPC_AWAKE_WAKES = 100000;
weft::Task<void> tpc_busy(std::atomic<bool>* stop) {
    while (!stop->load(std::memory_order_relaxed)) co_await weft::yield_now();
}
weft::Task<void> tpc_counting(weft::Notify* n, std::atomic<uint64_t>* seen, int wakes) {
    while (seen->load(std::memory_order_relaxed) < (uint64_t)wakes) {
        co_await n->notified();
        seen->fetch_add(1, std::memory_order_relaxed);
    }
}
void bench_tpc_awake_wakes(unsigned) {
    weft::tpc::ShardSet shards(1);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> seen{0};
    weft::Notify n;
    shards.spawn_on(0, tpc_busy(&stop));
    shards.spawn_on(0, tpc_counting(&n, &seen, TPC_AWAKE_WAKES));
    while (shards.metrics(0).polls < 3) std::this_thread::yield();  // both tasks started
    auto before = shards.metrics(0);
    auto start = Clock::now();
    for (int i = 0; i < TPC_AWAKE_WAKES; i++) {
        n.notify_one();
        // Pace the wakes so most find the task waiting (not merged).
        while (seen.load(std::memory_order_relaxed) < (uint64_t)i + 1 && seen.load() < (uint64_t)TPC_AWAKE_WAKES)
            std::this_thread::yield();
    }
    uint64_t ns = since(start);
    auto after = shards.metrics(0);
    stop.store(true);
    std::printf("TPC_AWAKE_WAKES wakes=%d remote_wakes=%" PRIu64 " signals=%" PRIu64 " parks=%" PRIu64
                " ns_per_wake=%.1f\n",
                TPC_AWAKE_WAKES, after.wakes_remote - before.wakes_remote, after.signals - before.signals,
                after.parks - before.parks, (double)ns / TPC_AWAKE_WAKES);
    std::fflush(stdout);
}

// ---- 8. timers ---------------------------------------------------------------
// 100,000 tasks each sleep a pseudo-random duration in [0, 10) ms (xorshift64,
// fixed seed, re-seeded every iteration) and record how late they woke.
constexpr int TIMER_TASKS = 100000;
constexpr uint64_t TIMER_MAX_US = 10000;
constexpr uint64_t XORSHIFT_SEED = 88172645463325252ull;

struct XorShift64 {
    uint64_t x;
    uint64_t next() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    }
};

weft::Task<void> timer_task(std::chrono::microseconds d, std::atomic<uint64_t>* slot, std::atomic<uint64_t>* counter) {
    auto deadline = weft::clock::now() + d;
    co_await weft::sleep_until(deadline);
    auto now = weft::clock::now();
    uint64_t late = now > deadline ? (uint64_t)(now - deadline).count() : 0;
    slot->store(late, std::memory_order_relaxed);
    counter->fetch_add(1, std::memory_order_relaxed);
}

weft::Task<void> timers_root(std::atomic<uint64_t>* slots, std::atomic<uint64_t>* counter) {
    XorShift64 rng{XORSHIFT_SEED};
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(TIMER_TASKS);
    for (int i = 0; i < TIMER_TASKS; i++) {
        auto d = std::chrono::microseconds(rng.next() % TIMER_MAX_US);
        handles.push_back(weft::spawn(timer_task(d, &slots[i], counter)));
    }
    for (auto& h : handles) co_await h;
}

// Nearest rank: sorted[ceil(p * n) - 1].
uint64_t percentile(const std::vector<uint64_t>& sorted, double p) {
    size_t rank = (size_t)std::ceil(p * (double)sorted.size());
    rank = std::clamp<size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

void bench_timers(unsigned workers) {
    weft::Runtime rt(workers);
    std::vector<std::atomic<uint64_t>> slots(TIMER_TASKS);
    std::atomic<uint64_t> counter{0};
    std::vector<uint64_t> lateness;
    run_bench("timers", workers, TIMER_TASKS, [&](bool timed) {
        counter.store(0, std::memory_order_relaxed);
        auto start = Clock::now();
        rt.spawn(timers_root(slots.data(), &counter)).join();
        uint64_t ns = since(start);
        check(counter.load() == TIMER_TASKS, "timers counter");
        if (timed)
            for (auto& s : slots) lateness.push_back(s.load(std::memory_order_relaxed));
        return ns;
    });
    std::sort(lateness.begin(), lateness.end());
    std::printf("TIMER lateness_p50_us=%.1f p99_us=%.1f max_us=%.1f\n", percentile(lateness, 0.50) / 1000.0,
                percentile(lateness, 0.99) / 1000.0, lateness.back() / 1000.0);
    std::fflush(stdout);
}

// ---- runtimes with pulse settings ---------------------------------------------------
// pulse (weft_pulse.h) is on by default; these workloads also build runtimes
// with it off, and count its events for the '#' diagnostics.
struct PulseEvents {
    std::atomic<uint64_t> handoffs{0};  // WEFT_PULSE_HANDOFF: a stuck worker's queues moved
    std::atomic<uint64_t> refused{0};   // WEFT_PULSE_HANDOFF_REFUSED: no spare thread left
    std::atomic<uint64_t> covered{0};   // WEFT_PULSE_HANDOFF_COVERED: no spare thread needed
    std::atomic<uint64_t> isolated{0};  // tier changes into WEFT_TIER_ISOLATE
};

void count_pulse_event(void* ctx, const weft_pulse_event* ev) {
    auto* e = static_cast<PulseEvents*>(ctx);
    if (ev->kind == WEFT_PULSE_HANDOFF) e->handoffs.fetch_add(1, std::memory_order_relaxed);
    if (ev->kind == WEFT_PULSE_HANDOFF_REFUSED) e->refused.fetch_add(1, std::memory_order_relaxed);
    if (ev->kind == WEFT_PULSE_HANDOFF_COVERED) e->covered.fetch_add(1, std::memory_order_relaxed);
    if (ev->kind == WEFT_PULSE_TIER_CHANGE && ev->to_tier == WEFT_TIER_ISOLATE)
        e->isolated.fetch_add(1, std::memory_order_relaxed);
}

// A runtime configuration with `workers` workers and pulse's defaults, or
// pulse off; events (may be null) counts what pulse did. *pulse must outlive
// the runtime.
weft_runtime_config pulse_runtime_config(unsigned workers, bool pulse_on, weft::PulseConfig* pulse,
                                         PulseEvents* events) {
    if (!pulse_on) pulse->c.mode = WEFT_PULSE_OFF;
    if (events) {
        pulse->c.on_event = count_pulse_event;
        pulse->c.ctx = events;
    }
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = workers;
    cfg.pulse = &pulse->c;
    return cfg;
}

// "# <name>: pulse mode=on handoff=1 spare_threads=2 ...; events: handoffs=..;
// metrics: ..." (the event hook's counts, and weft_runtime_metrics's, which
// should agree on handoffs).
void print_pulse_diagnostics(const char* name, const weft::Runtime& rt, const PulseEvents& ev) {
    weft_pulse_status st{};
    st.size = sizeof st;
    int r = weft_runtime_pulse_status(rt.get(), &st);
    if (r != 0) {
        std::fprintf(stderr, "# %s: weft_runtime_pulse_status: %s\n", name, weft_strerror(r));
        return;
    }
    std::fprintf(stderr,
                 "# %s: pulse mode=%s compiled=%u handoff=%u spare_threads=%u cycles_per_us=%" PRIu64
                 "%s%s; events: handoffs=%" PRIu64 " refused=%" PRIu64 " covered=%" PRIu64 " isolated=%" PRIu64 "\n",
                 name, st.mode == WEFT_PULSE_OFF ? "off" : "on", st.compiled, st.handoff, st.spare_threads,
                 st.cycles_per_us, st.handoff_note && *st.handoff_note ? " handoff_note=" : "",
                 st.handoff_note ? st.handoff_note : "", ev.handoffs.load(), ev.refused.load(), ev.covered.load(),
                 ev.isolated.load());
    weft_metrics m;
    std::memset(&m, 0, sizeof m);
    m.size = sizeof m;
    r = weft_runtime_metrics(rt.get(), &m);
    if (r != 0) {
        std::fprintf(stderr, "# %s: weft_runtime_metrics: %s\n", name, weft_strerror(r));
        return;
    }
    std::fprintf(stderr,
                 "# %s: metrics: polls=%" PRIu64 " handoffs=%" PRIu64 " handoffs_refused=%" PRIu64
                 " tier_changes=%" PRIu64 " budget_yields=%" PRIu64 "\n",
                 name, m.polls, m.handoffs, m.handoffs_refused, m.tier_changes, m.budget_yields);
}

// ---- 9. starvation ---------------------------------------------------------------
// A ticker sleeps 1 ms, 200 times, and records how late each tick woke, while
// CPU hogs spin without ever awaiting. Timed: the main thread spawns the
// ticker, then the hogs (Runtime::spawn), then joins the hogs' handles and
// then the ticker's. A hog takes end = now + 200 ms when it starts running
// and spins `while (now < end) {}`: one poll of 200 ms. With as many hogs as
// workers every worker is inside such a poll; a scheduler that fires timers
// only between polls starves the ticker until a hog finishes (Tokio does).
// weft's pulse hands a worker stuck in one poll to a spare thread, which
// fires the timer. Lateness uses the timers workload's clock (weft::clock);
// no warm-up, exactly 3 iterations (the reference protocol's exception).
//   starvation             the workload as defined: `workers` hogs, default
//                          runtime (pulse on)
//   starvation_2x          twice as many hogs as workers
//   starvation_checkpoint  hogs that `co_await weft::checkpoint()` after every
//                          clock read: cooperative, they yield whenever their
//                          budget for the poll is spent
//   starvation_pulse_off   the plain workload on a runtime with pulse off
//                          (weft_pulse_config.mode = WEFT_PULSE_OFF): the
//                          ticker without preemption, for comparison
// Extra line, over the 600 ticks of the 3 iterations (nearest rank, us):
//   STARVATION max_tick_late_us=.. p99_tick_late_us=.. ticks=..
constexpr int STARVATION_TICKS = 200;
constexpr auto STARVATION_TICK = std::chrono::milliseconds(1);
constexpr auto STARVATION_HOG_SPIN = std::chrono::milliseconds(200);
constexpr size_t STARVATION_ITERS = 3;
constexpr int STARVATION_WARMUPS = 0;
constexpr unsigned STARVATION_2X_HOGS_PER_WORKER = 2;

// late[i]: how late tick i woke, ns (0 if on time).
weft::Task<void> starvation_ticker(uint64_t* late) {
    for (int i = 0; i < STARVATION_TICKS; i++) {
        auto deadline = weft::clock::now() + STARVATION_TICK;
        co_await weft::sleep_until(deadline);
        auto now = weft::clock::now();
        late[i] = now > deadline ? (uint64_t)(now - deadline).count() : 0;
    }
}

// Never awaits: the whole spin is one poll.
weft::Task<void> starvation_hog() {
    auto end = weft::clock::now() + STARVATION_HOG_SPIN;
    while (weft::clock::now() < end) {
    }
    co_return;
}

// The same spin with a budget checkpoint after every clock read: suspends
// (to the back of its worker's queue) only when the poll's budget is spent.
weft::Task<void> starvation_hog_checkpoint() {
    auto end = weft::clock::now() + STARVATION_HOG_SPIN;
    while (weft::clock::now() < end) co_await weft::checkpoint();
}

void bench_starvation_with(const char* name, unsigned workers, unsigned hogs, weft::Task<void> (*hog)(),
                           bool pulse_on) {
    weft::PulseConfig pulse;
    PulseEvents events;
    weft::Runtime rt(pulse_runtime_config(workers, pulse_on, &pulse, &events));
    std::vector<uint64_t> late(STARVATION_TICKS);
    std::vector<uint64_t> all;  // every tick of every iteration, ns
    all.reserve(STARVATION_ITERS * STARVATION_TICKS);
    run_iters(name, workers, STARVATION_TICKS, STARVATION_WARMUPS, STARVATION_ITERS, [&](bool) {
        std::vector<weft::JoinHandle<void>> hog_handles;
        hog_handles.reserve(hogs);
        auto start = Clock::now();
        auto tick = rt.spawn(starvation_ticker(late.data()));
        for (unsigned i = 0; i < hogs; i++) hog_handles.push_back(rt.spawn(hog()));
        for (auto& h : hog_handles) h.join();
        tick.join();
        uint64_t ns = since(start);
        all.insert(all.end(), late.begin(), late.end());
        return ns;
    });
    print_pulse_diagnostics(name, rt, events);
    std::sort(all.begin(), all.end());
    std::printf("STARVATION max_tick_late_us=%.1f p99_tick_late_us=%.1f ticks=%zu\n", all.back() / 1000.0,
                percentile(all, 0.99) / 1000.0, all.size());
    std::fflush(stdout);
}

void bench_starvation(unsigned workers) {
    bench_starvation_with("starvation", workers, workers, starvation_hog, true);
}
void bench_starvation_2x(unsigned workers) {
    bench_starvation_with("starvation_2x", workers, STARVATION_2X_HOGS_PER_WORKER * workers, starvation_hog, true);
}
void bench_starvation_checkpoint(unsigned workers) {
    bench_starvation_with("starvation_checkpoint", workers, workers, starvation_hog_checkpoint, true);
}
void bench_starvation_pulse_off(unsigned workers) {
    bench_starvation_with("starvation_pulse_off", workers, workers, starvation_hog, false);
}

// ---- micro benchmarks (issue 4: sync primitives) -----------------------------------
// Not BENCHMARKS.md workloads: one `MICRO <name> ...` line each, the median
// over 7 runs of a tight loop. Uncontended: one thread, nothing waits.
//   sem_acquire_release   weft_semaphore_try_acquire(1) + weft_semaphore_release(1)
//   mutex_lock_unlock     inside a task: `auto g = co_await m.lock();` then the
//                         guard's unlock (the C++ awaitable's fast path)
//   wake_list_32          a kernel WakeList filled with 32 wakers and woken;
//                         allocations (malloc/calloc/realloc/memalign, counted
//                         by the interposers below) during the timed loop
constexpr uint64_t MICRO_OPS = 5000000;
constexpr int MICRO_RUNS = 7;

template <class F>
double micro_median_ns(uint64_t ops, F&& body) {
    std::vector<double> r;
    for (int k = 0; k < MICRO_RUNS; k++) {
        auto t = Clock::now();
        body(ops);
        r.push_back((double)since(t) / (double)ops);
    }
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
}

void bench_sem_acquire_release(unsigned) {
    weft_semaphore* s = nullptr;
    check(weft_semaphore_new(1, &s) == 0, "semaphore");
    double ns = micro_median_ns(MICRO_OPS, [&](uint64_t n) {
        for (uint64_t i = 0; i < n; i++) {
            if (weft_semaphore_try_acquire(s, 1) != 0) std::abort();
            weft_semaphore_release(s, 1);
        }
    });
    weft_semaphore_free(s);
    std::printf("MICRO sem_acquire_release ns_per_op=%.2f (target <= 15)\n", ns);
    std::fflush(stdout);
}

weft::Task<double> mutex_loop(weft::Mutex<uint64_t>* m) {
    std::vector<double> r;
    for (int k = 0; k < MICRO_RUNS; k++) {
        auto t = Clock::now();
        for (uint64_t i = 0; i < MICRO_OPS; i++) {
            auto g = co_await m->lock();
            ++*g;
        }
        r.push_back((double)since(t) / (double)MICRO_OPS);
    }
    std::sort(r.begin(), r.end());
    co_return r[r.size() / 2];
}

void bench_mutex_lock_unlock(unsigned) {
    weft::Runtime rt(1);
    weft::Mutex<uint64_t> m(0);
    double ns = rt.block_on(mutex_loop(&m));
    check(*m.try_lock().value() == MICRO_OPS * MICRO_RUNS, "mutex count");
    std::printf("MICRO mutex_lock_unlock ns_per_op=%.2f (target <= 15)\n", ns);
    std::fflush(stdout);
}

void wl_wake(const void* p) { static_cast<std::atomic<uint64_t>*>(const_cast<void*>(p))->fetch_add(1, std::memory_order_relaxed); }
void wl_nop(const void*) {}
weft_waker wl_clone(const void* p);
const weft_waker_vtable wl_vtable = {wl_clone, wl_wake, wl_wake, wl_nop};
weft_waker wl_clone(const void* p) { return weft_waker{p, &wl_vtable}; }

void bench_wake_list_32(unsigned) {
    std::atomic<uint64_t> woken{0};
    constexpr uint64_t ROUNDS = 200000;
    g_allocs.store(0);
    double ns = micro_median_ns(ROUNDS, [&](uint64_t n) {
        g_count_allocs.store(true);  // counts inside the timed loop only
        for (uint64_t i = 0; i < n; i++) {
            weft::kernel::WakeList l;
            for (uint32_t k = 0; k < weft::kernel::WakeList::CAPACITY; k++) l.push(weft_waker{&woken, &wl_vtable});
            l.wake_all();
        }
        g_count_allocs.store(false);
    });
    check(woken.load() == ROUNDS * MICRO_RUNS * weft::kernel::WakeList::CAPACITY, "wake_list woke all");
    std::printf("MICRO wake_list_32 ns_per_batch=%.2f ns_per_waker=%.2f allocations=%" PRIu64 "\n", ns, ns / 32,
                g_allocs.load());
    std::fflush(stdout);
}

// ---- micro benchmark: timer insert + cancel ----------------------------------------
//   timer_insert_cancel   inside a task on a 1-worker runtime with pulse off
//                         (see below): weft_timer_reset to ~1 h ahead, then
//                         weft_timer_poll (registers it in this worker's
//                         wheel), then weft_timer_cancel (unlinks it). The
//                         wheel holds 10,000 other timers meanwhile.
struct TimerMicro {
    double ns = 0;
    int status = 0;
};

int timer_micro_poll(void* data, weft_context* cx, void*) {
    auto* m = static_cast<TimerMicro*>(data);
    // No poll budget (pulse off): had there been one, the polls below would
    // answer "yield" without registering once it was spent (see
    // bench_timer_insert_cancel), and still return WEFT_PENDING.
    if (weft_budget_remaining() != UINT32_MAX) {
        m->status = 1;  // not measured (bench_timer_insert_cancel says so)
        return WEFT_READY;
    }
    std::vector<weft_timer> others(10000);
    for (size_t i = 0; i < others.size(); i++) {
        weft_timer_init(&others[i], nullptr);
        weft_timer_sleep_for(&others[i], (int64_t)(100 + i % 5000) * 1000000);
        if (weft_timer_poll(&others[i], cx) != WEFT_PENDING) m->status = -1;
    }
    weft_timer t;
    weft_timer_init(&t, nullptr);
    m->ns = micro_median_ns(MICRO_OPS, [&](uint64_t n) {
        uint64_t far = weft_now() + 3600000000000ull;  // an hour: never due while measured
        for (uint64_t i = 0; i < n; i++) {
            weft_timer_reset(&t, far + (i & 1023) * 1000000);
            if (weft_timer_poll(&t, cx) != WEFT_PENDING) m->status = -1;
            weft_timer_cancel(&t);
        }
    });
    for (auto& o : others) weft_timer_cancel(&o);
    return WEFT_READY;
}

// Pulse off: with pulse on, weft_timer_poll spends the poll's cooperative
// budget, and once this one long poll has spent it (after 128 calls), it
// answers "yield" without registering anything: until this was found, this
// benchmark timed that path (about 15 ns) instead of a registration.
void bench_timer_insert_cancel(unsigned) {
    weft::PulseConfig pulse;
    weft::Runtime rt(pulse_runtime_config(1, false, &pulse, nullptr));
    TimerMicro m;
    weft_task_desc d{sizeof d, timer_micro_poll, nullptr, &m, 0};
    int r = weft_block_on(rt.get(), &d, nullptr);
    if (r == 0 && m.status == 1) {
        std::fprintf(stderr, "# timer_insert_cancel: not measured: the poll budget is on (WEFT_PULSE=on overrides "
                             "this benchmark's pulse off), and the loop would time its 'yield' answer\n");
        return;
    }
    if (r != 0 || m.status != 0) std::fprintf(stderr, "# timer_insert_cancel: block_on %d status %d\n", r, m.status);
    check(r == 0 && m.status == 0, "timer_insert_cancel ran");
    std::printf("MICRO timer_insert_cancel ns_per_op=%.2f\n", m.ns);
    std::fflush(stdout);
}

// ---- micro benchmarks: what pulse costs --------------------------------------------
//   pulse_hook_cost   pulse's per-poll hooks: a C task that wakes itself
//                     (wake_by_ref) and returns WEFT_PENDING POLL_HOOK_POLLS
//                     times, then WEFT_READY, on a 1-worker runtime, timed
//                     from its first poll to its last (no spawn or join in
//                     the time): ns per no-op poll, pulse on and pulse off.
//                     POLL_HOOK_ROUNDS rounds, the two runtimes interleaved
//                     (alternating which goes first); the medians, and the
//                     median of the rounds' differences on - off.
//   budget_consume    ns per weft_budget_consume(1), called in a loop inside
//                     one poll on a 1-worker runtime with pulse on (the budget
//                     runs out after its first `budget` calls; the call still
//                     returns, with 1, and that is what is measured), median
//                     of MICRO_RUNS loops; pulse off alongside, for reference.
constexpr uint64_t POLL_HOOK_POLLS = 1000000;
constexpr int POLL_HOOK_ROUNDS = 15;
constexpr uint64_t BUDGET_CONSUME_CALLS = 2000000;

struct SelfWaker {
    uint64_t pending_left = 0;  // polls still to answer WEFT_PENDING
    uint64_t polls = 0;
    Clock::time_point first, last;
};

int self_waker_poll(void* data, weft_context* cx, void*) {
    auto* s = static_cast<SelfWaker*>(data);
    if (s->polls++ == 0) s->first = Clock::now();
    if (s->pending_left > 0) {
        s->pending_left--;
        weft_waker_wake_by_ref(&cx->waker);
        return WEFT_PENDING;
    }
    s->last = Clock::now();
    return WEFT_READY;
}

// One round: ns per poll of a task that only wakes itself.
double ns_per_noop_poll(weft::Runtime& rt) {
    SelfWaker s;
    s.pending_left = POLL_HOOK_POLLS;
    weft_task_desc d{sizeof d, self_waker_poll, nullptr, &s, 0};
    check(weft_block_on(rt.get(), &d, nullptr) == 0, "pulse_hook_cost: task ran");
    check(s.polls == POLL_HOOK_POLLS + 1, "pulse_hook_cost: poll count");
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(s.last - s.first).count();
    return (double)ns / (double)POLL_HOOK_POLLS;  // polls - 1 intervals between the first and last poll
}

void bench_pulse_hook_cost(unsigned) {
    weft::PulseConfig on_cfg, off_cfg;
    weft::Runtime on(pulse_runtime_config(1, true, &on_cfg, nullptr));
    weft::Runtime off(pulse_runtime_config(1, false, &off_cfg, nullptr));
    std::vector<double> on_ns, off_ns, diff_ns;
    for (int k = 0; k < POLL_HOOK_ROUNDS; k++) {
        double a, b;
        if (k % 2 == 0) {
            a = ns_per_noop_poll(on);
            b = ns_per_noop_poll(off);
        } else {
            b = ns_per_noop_poll(off);
            a = ns_per_noop_poll(on);
        }
        on_ns.push_back(a);
        off_ns.push_back(b);
        diff_ns.push_back(a - b);
    }
    auto med = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::printf("MICRO pulse_hook_cost on_ns_per_poll=%.2f off_ns_per_poll=%.2f diff_ns=%.2f\n", med(on_ns),
                med(off_ns), med(diff_ns));
    std::fflush(stdout);
}

struct BudgetMicro {
    double ns = 0;
    uint32_t budget = 0;  // weft_budget_remaining() when the poll began
    uint64_t spent = 0;   // calls that answered 1 ("yield now")
};

int budget_micro_poll(void* data, weft_context*, void*) {
    auto* m = static_cast<BudgetMicro*>(data);
    m->budget = weft_budget_remaining();
    uint64_t spent = 0;
    m->ns = micro_median_ns(BUDGET_CONSUME_CALLS, [&](uint64_t n) {
        for (uint64_t i = 0; i < n; i++) spent += (uint64_t)weft_budget_consume(1);
    });
    m->spent = spent;
    return WEFT_READY;
}

BudgetMicro budget_consume_on(bool pulse_on) {
    weft::PulseConfig pulse;
    weft::Runtime rt(pulse_runtime_config(1, pulse_on, &pulse, nullptr));
    BudgetMicro m;
    weft_task_desc d{sizeof d, budget_micro_poll, nullptr, &m, 0};
    check(weft_block_on(rt.get(), &d, nullptr) == 0, "budget_consume: task ran");
    return m;
}

void bench_budget_consume(unsigned) {
    BudgetMicro on = budget_consume_on(true);
    BudgetMicro off = budget_consume_on(false);
    uint64_t calls = BUDGET_CONSUME_CALLS * MICRO_RUNS;
    std::printf("MICRO budget_consume ns_per_call=%.2f (pulse off: %.2f; budget %" PRIu32 " at poll start, %" PRIu64
                " of %" PRIu64 " calls said spent)\n",
                on.ns, off.ns, on.budget, on.spent, calls);
    std::fflush(stdout);
}

struct Bench {
    const char* name;
    void (*fn)(unsigned);
};
const Bench BENCHES[] = {
    {"spawn_many_local", bench_spawn_many_local},
    {"spawn_many_local_fork_join", bench_spawn_many_local_fj},
    {"spawn_many_remote", bench_spawn_many_remote},
    {"yield_many", bench_yield_many},
    {"ping_pong", bench_ping_pong},
    {"chained_spawn", bench_chained_spawn},
    {"chained_spawn_detach", bench_chained_spawn_detach},
    {"skynet", bench_skynet},
    {"skynet_join_handles", bench_skynet_jh},
    {"cross_thread_wake", bench_cross_thread_wake},
    {"timers", bench_timers},
    {"starvation", bench_starvation},
    {"starvation_2x", bench_starvation_2x},
    {"starvation_checkpoint", bench_starvation_checkpoint},
    {"starvation_pulse_off", bench_starvation_pulse_off},
    {"sem_acquire_release", bench_sem_acquire_release},
    {"mutex_lock_unlock", bench_mutex_lock_unlock},
    {"wake_list_32", bench_wake_list_32},
    {"timer_insert_cancel", bench_timer_insert_cancel},
    {"pulse_hook_cost", bench_pulse_hook_cost},
    {"budget_consume", bench_budget_consume},
    {"tpc_spawn_local", bench_tpc_spawn_local},
    {"tpc_cross_thread_wake", bench_tpc_cross_thread_wake},
    {"tpc_shard_ping_pong_eventfd", bench_tpc_ping_pong_eventfd},
    {"tpc_shard_ping_pong_msg_ring", bench_tpc_ping_pong_msg_ring},
    {"tpc_awake_wakes", bench_tpc_awake_wakes},
};

}  // namespace

int main(int argc, char** argv) {
    unsigned workers = 2;
    const char* filter = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--workers") && i + 1 < argc) {
            workers = (unsigned)std::atoi(argv[++i]);
        } else if (!std::strcmp(argv[i], "--list")) {
            for (const Bench& b : BENCHES) std::printf("%s\n", b.name);
            return 0;
        } else if (argv[i][0] == '-') {
            std::fprintf(stderr, "usage: weft-bench [--workers N] [--list] [FILTER]\n");
            return 2;
        } else {
            filter = argv[i];
        }
    }
    if (workers == 0) {
        std::fprintf(stderr, "weft-bench: --workers must be at least 1\n");
        return 2;
    }
    // FILTER: the workloads whose name contains it; an exact name runs just that one.
    bool exact = false;
    for (const Bench& b : BENCHES) exact |= filter && !std::strcmp(b.name, filter);
    for (const Bench& b : BENCHES)
        if (!filter || (exact ? !std::strcmp(b.name, filter) : std::strstr(b.name, filter) != nullptr)) b.fn(workers);
    return 0;
}
