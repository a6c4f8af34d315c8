// tests/test_sync.cpp — the sync primitives end to end, on real runtimes:
// weft_sync.h through sync.hpp (Semaphore, Mutex, RwLock, Notify, mpsc,
// oneshot, Barrier), the blocking variants on plain threads, and the C ABI's
// handling of bad input.
//
// Why: the kernel tests (test_sync_kernel) check the algorithms one step at
// a time; here the same rules must hold with tasks on two workers and
// foreign threads racing: no lost wake-up (Notify ping-pong, channel
// streams), mutual exclusion, fairness (a 100-permit acquire against a
// flood of 1-permit ones), cancellation of a task in the middle of a wait
// (its permits come back, its unsent value is destroyed), close while
// waiting, and values of non-trivial types (std::string, std::unique_ptr)
// neither leaked nor destroyed twice — the ASan build checks the latter, the
// TSan build every race.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.h"

using weft_test::scaled;
using weft_test::spin_until;

namespace {

// ---- Mutex / Semaphore / RwLock -----------------------------------------------------

TEST(Sync, MutexExcludesTasksAndThreads) {
    weft::Runtime rt(2);
    weft::Mutex<uint64_t> m(0);
    constexpr int TASKS = 20;
    const uint64_t per = scaled(500);
    std::vector<weft::JoinHandle<void>> hs;
    for (int t = 0; t < TASKS; t++) {
        hs.push_back(rt.spawn([](weft::Mutex<uint64_t>* m, uint64_t per) -> weft::Task<void> {
            for (uint64_t i = 0; i < per; i++) {
                auto g = co_await m->lock();
                uint64_t v = *g;
                if (i % 8 == 0) co_await weft::yield_now();  // hold it across a suspension
                *g = v + 1;
            }
        }(&m, per)));
    }
    std::thread th([&] {
        for (uint64_t i = 0; i < per; i++) {
            auto g = m.lock_blocking();
            ++*g;
        }
    });
    for (auto& h : hs) h.join();
    th.join();
    auto g = m.try_lock();
    ASSERT_TRUE(g.has_value());
    EXPECT_EQ(**g, (TASKS + 1) * per);
}

TEST(Sync, BlockingCallOnAWorkerIsRefused) {
    weft::Runtime rt(1);
    weft::Mutex<> m;
    weft::Notify n;
    int code = rt.block_on([](weft::Mutex<>* m, weft::Notify* n) -> weft::Task<int> {
        try {
            auto g = m->lock_blocking();
        } catch (const weft::Error& e) {
            EXPECT_EQ(e.code(), WEFT_EDEADLK);
            try {
                n->wait_blocking();
            } catch (const weft::Error& e2) {
                co_return e2.code();
            }
        }
        co_return 0;
    }(&m, &n));
    EXPECT_EQ(code, WEFT_EDEADLK);
}

TEST(Sync, LargeAcquireCompletesAgainstAFloodOfSmallOnes) {
    // 8 tasks take and give back 1 permit of 100 in a loop that only stops
    // when the 100-permit acquire has completed. There are always at least
    // 92 free permits, so an unfair semaphore would serve the flood forever
    // (the test would hit ctest's timeout); a FIFO one queues every
    // re-acquire behind the big one, which completes as soon as the eight
    // permits held at that moment come back.
    weft::Runtime rt(2);
    weft::Semaphore sem(100);
    constexpr int FLOOD = 8;
    std::atomic<int> holding{0};
    std::atomic<bool> stop{false};
    std::vector<weft::JoinHandle<uint64_t>> hs;
    for (int f = 0; f < FLOOD; f++) {
        hs.push_back(rt.spawn([](weft::Semaphore* s, std::atomic<int>* holding, std::atomic<bool>* stop) -> weft::Task<uint64_t> {
            uint64_t n = 0;
            bool first = true;
            while (!stop->load()) {
                auto p = co_await s->acquire(1);
                if (first) holding->fetch_add(1);
                first = false;
                co_await weft::yield_now();
                n++;
            }
            co_return n;
        }(&sem, &holding, &stop)));
    }
    spin_until([&] { return holding.load() == FLOOD; });
    auto big = rt.spawn([](weft::Semaphore* s, std::atomic<bool>* stop) -> weft::Task<void> {
        auto p = co_await s->acquire(100);
        EXPECT_EQ(p.count(), 100u);
        stop->store(true);
    }(&sem, &stop));
    big.join();
    uint64_t total = 0;
    for (auto& h : hs) total += h.join();
    EXPECT_GT(total, 0u);
    EXPECT_EQ(sem.available(), 100u);
}

TEST(Sync, AbortedAcquireReturnsItsPermits) {
    weft::Runtime rt(2);
    weft::Semaphore sem(3);
    auto h = rt.spawn([](weft::Semaphore* s) -> weft::Task<void> {
        auto p = co_await s->acquire(5);  // takes the 3, waits for 2 more
        ADD_FAILURE() << "must not complete";
    }(&sem));
    spin_until([&] { return sem.available() == 0; });
    h.abort();
    EXPECT_THROW(h.join(), weft::Cancelled);
    EXPECT_EQ(sem.available(), 3u) << "the 3 assigned permits came back";
    auto p = sem.try_acquire(3);
    EXPECT_TRUE(p.has_value());
}

TEST(Sync, AbortedLockLeavesTheQueue) {
    weft::Runtime rt(2);
    weft::Mutex<int> m(0);
    auto g = m.lock_blocking();
    auto h = rt.spawn([](weft::Mutex<int>* m) -> weft::Task<void> {
        auto g = co_await m->lock();
        ADD_FAILURE() << "must not get the lock";
    }(&m));
    // The waiter is queued once try_lock on the C handle fails and the task
    // is suspended; give it a moment by spinning on a second waiter's view.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    h.abort();
    EXPECT_THROW(h.join(), weft::Cancelled);
    g.unlock();
    EXPECT_TRUE(m.try_lock().has_value()) << "the cancelled waiter did not keep the lock";
}

TEST(Sync, CloseWakesWaitingAcquiresWithAnError) {
    weft::Runtime rt(2);
    weft::Semaphore sem(0);
    std::vector<weft::JoinHandle<int>> hs;
    for (int i = 0; i < 40; i++) {
        hs.push_back(rt.spawn([](weft::Semaphore* s) -> weft::Task<int> {
            try {
                auto p = co_await s->acquire(1);
            } catch (const weft::Error& e) {
                co_return e.code();
            }
            co_return 0;
        }(&sem)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    sem.close();
    for (auto& h : hs) EXPECT_EQ(h.join(), WEFT_ECLOSED);
    EXPECT_THROW(sem.acquire_blocking(1), weft::Error);
}

TEST(Sync, RwLockWriterIsNotStarvedByLaterReaders) {
    weft::RwLock<int> l(1);
    auto r1 = l.try_read();
    ASSERT_TRUE(r1.has_value());
    EXPECT_TRUE(l.try_read().has_value()) << "readers share";
    EXPECT_FALSE(l.try_write().has_value());
    weft::Runtime rt(2);
    std::atomic<bool> wrote{false};
    auto w = rt.spawn([](weft::RwLock<int>* l, std::atomic<bool>* wrote) -> weft::Task<void> {
        auto g = co_await l->write();
        *g = 2;
        wrote->store(true);
    }(&l, &wrote));
    // Once the writer queues, a new reader must wait behind it.
    spin_until([&] { return !l.try_read().has_value(); });
    EXPECT_FALSE(wrote.load());
    r1.reset();
    w.join();
    EXPECT_TRUE(wrote.load());
    auto r2 = l.read_blocking();
    EXPECT_EQ(*r2, 2);
}

// ---- Notify ------------------------------------------------------------------------

// The cross_thread_wake shape, as a no-lost-notification stress: a plain
// thread notifies, a task waits and answers on a channel.
TEST(Sync, NotifyPingPongWithAThreadLosesNothing) {
    weft::Runtime rt(2);
    weft::Notify ping;
    auto [tx, rx] = weft::mpsc::channel<uint32_t>(1);
    const uint32_t rounds = (uint32_t)scaled(20000);
    auto h = rt.spawn([](weft::Notify* ping, weft::mpsc::Sender<uint32_t> tx_arg, uint32_t rounds) -> weft::Task<void> {
        // A local, not the parameter: the parameter lives as long as the
        // frame, which is not always destroyed by the time join() returns
        // (see MpscManySendersOneReceiver); the local dies with the body.
        auto tx = std::move(tx_arg);
        for (uint32_t i = 0; i < rounds; i++) {
            co_await ping->notified();
            auto r = co_await tx.send(i);
            EXPECT_TRUE(r.ok());
        }
    }(&ping, std::move(tx), rounds));
    for (uint32_t i = 0; i < rounds; i++) {
        ping.notify_one();
        auto v = rx.recv_blocking();
        ASSERT_TRUE(v.has_value());
        ASSERT_EQ(*v, i);
    }
    h.join();
    EXPECT_FALSE(rx.recv_blocking().has_value()) << "the sender task is gone: end of stream";
}

TEST(Sync, NotifyWaitersWakesEveryWaiter) {
    weft::Runtime rt(2);
    weft::Notify n;
    std::atomic<int> waiting{0}, woke{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < 50; i++)
        hs.push_back(rt.spawn([](weft::Notify* n, std::atomic<int>* waiting, std::atomic<int>* woke) -> weft::Task<void> {
            auto f = n->notified();  // registered for notify_waiters from here on
            waiting->fetch_add(1);
            co_await f;
            woke->fetch_add(1);
        }(&n, &waiting, &woke)));
    spin_until([&] { return waiting.load() == 50; });
    n.notify_waiters();
    for (auto& h : hs) h.join();
    EXPECT_EQ(woke.load(), 50);
}

TEST(Sync, NotifyBlockingWaitOnAThread) {
    // The mirror image: the thread waits (Notify blocking wait), a task
    // notifies and then waits for the thread's acknowledgement.
    weft::Runtime rt(2);
    weft::Notify n;
    auto [ack_tx, ack_rx] = weft::mpsc::channel<int>(1);
    const int rounds = (int)scaled(5000);
    std::thread th([&, ack_tx = std::move(ack_tx)]() mutable {
        for (int i = 0; i < rounds; i++) {
            n.wait_blocking();
            ASSERT_TRUE(ack_tx.send_blocking(i).ok());
        }
    });
    rt.block_on([](weft::Notify* n, weft::mpsc::Receiver<int>* ack, int rounds) -> weft::Task<void> {
        for (int i = 0; i < rounds; i++) {
            n->notify_one();
            auto v = co_await ack->recv();
            EXPECT_EQ(v.value_or(-1), i);
        }
    }(&n, &ack_rx, rounds));
    th.join();
}

// ---- mpsc ---------------------------------------------------------------------------

TEST(Sync, MpscManySendersOneReceiver) {
    weft::Runtime rt(2);
    for (uint64_t cap : {1u, 4u, 0u}) {
        auto [tx, rx] = cap ? weft::mpsc::channel<uint64_t>(cap) : weft::mpsc::unbounded_channel<uint64_t>();
        constexpr int SENDERS = 8;
        const uint64_t per = scaled(2000);
        std::vector<weft::JoinHandle<void>> hs;
        for (int s = 0; s < SENDERS; s++)
            hs.push_back(rt.spawn([](weft::mpsc::Sender<uint64_t> tx_arg, uint64_t per, uint64_t base) -> weft::Task<void> {
                // A coroutine's parameters live as long as its frame, which
                // a JoinHandle keeps until it is joined (and the kernel may
                // free even later); a local dies when the body ends, closing
                // our side of the channel then.
                auto tx = std::move(tx_arg);
                for (uint64_t i = 0; i < per; i++) {
                    auto r = co_await tx.send(base + i);
                    EXPECT_TRUE(r.ok());
                }
            }(tx, per, (uint64_t)s << 32)));
        tx = weft::mpsc::Sender<uint64_t>();  // only the tasks' copies remain
        uint64_t got = rt.block_on([](weft::mpsc::Receiver<uint64_t>* rx) -> weft::Task<uint64_t> {
            uint64_t n = 0;
            uint64_t last[SENDERS];
            for (auto& l : last) l = UINT64_MAX;
            while (auto v = co_await rx->recv()) {
                uint64_t s = *v >> 32, i = *v & 0xffffffff;
                EXPECT_TRUE(last[s] == UINT64_MAX ? i == 0 : i == last[s] + 1) << "per-sender FIFO";
                last[s] = i;
                n++;
            }
            co_return n;
        }(&rx));
        EXPECT_EQ(got, SENDERS * per);
        for (auto& h : hs) h.join();
    }
}

TEST(Sync, MpscNonTrivialValuesAreNeitherLeakedNorDoubleFreed) {
    weft::Runtime rt(2);
    {
        auto [tx, rx] = weft::mpsc::channel<std::string>(8);
        std::string big(100, 'x');
        ASSERT_TRUE(tx.try_send(big).ok());
        ASSERT_TRUE(tx.try_send(std::string("short")).ok());
        auto v = rx.try_recv();
        ASSERT_TRUE(v.has_value());
        EXPECT_EQ(*v, big);
        ASSERT_TRUE(tx.try_send(std::string(200, 'y')).ok());
        // rx and tx go out of scope with two strings queued: ASan checks
        // they are freed once.
    }
    {
        auto [tx, rx] = weft::mpsc::unbounded_channel<std::unique_ptr<int>>();
        for (int i = 0; i < 100; i++) ASSERT_TRUE(tx.try_send(std::make_unique<int>(i)).ok());
        auto v = rx.try_recv();
        ASSERT_TRUE(v && *v && **v == 0);
        rx.close();
        auto back = tx.try_send(std::make_unique<int>(7));
        EXPECT_EQ(back.code, WEFT_ECLOSED);
        ASSERT_TRUE(back.rejected && *back.rejected && **back.rejected == 7) << "the value is handed back";
        auto v2 = rx.try_recv();
        ASSERT_TRUE(v2 && **v2 == 1) << "queued values stay receivable after close";
    }
    {
        // A send waiting for room, cancelled by abort: its value is destroyed
        // with the task, never left in the channel.
        auto [tx, rx] = weft::mpsc::channel<std::string>(1);
        ASSERT_TRUE(tx.try_send(std::string(64, 'a')).ok());
        auto h = rt.spawn([](weft::mpsc::Sender<std::string> tx) -> weft::Task<void> {
            auto r = co_await tx.send(std::string(64, 'b'));
            ADD_FAILURE() << "no room: must not complete";
        }(tx));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        h.abort();
        EXPECT_THROW(h.join(), weft::Cancelled);
        auto v = rx.try_recv();
        ASSERT_TRUE(v.has_value());
        EXPECT_EQ(*v, std::string(64, 'a'));
        EXPECT_FALSE(rx.try_recv().has_value()) << "the cancelled send left nothing behind";
        EXPECT_TRUE(tx.try_send(std::string("c")).ok()) << "and gave its permit back";
    }
}

TEST(Sync, MpscCloseWhileSendersWaitHandsValuesBack) {
    weft::Runtime rt(2);
    auto [tx, rx] = weft::mpsc::channel<std::string>(1);
    ASSERT_TRUE(tx.try_send(std::string("first")).ok());
    std::vector<weft::JoinHandle<std::string>> hs;
    for (int i = 0; i < 10; i++)
        hs.push_back(rt.spawn([](weft::mpsc::Sender<std::string> tx, int i) -> weft::Task<std::string> {
            auto r = co_await tx.send("v" + std::to_string(i));
            EXPECT_EQ(r.code, WEFT_ECLOSED);
            co_return r.rejected ? *r.rejected : std::string("lost");
        }(tx, i)));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    rx.close();
    for (int i = 0; i < 10; i++) EXPECT_EQ(hs[i].join(), "v" + std::to_string(i));
    EXPECT_EQ(rx.try_recv().value_or(""), "first");
}

TEST(Sync, MpscBlockingBothWays) {
    weft::Runtime rt(2);
    auto [tx, rx] = weft::mpsc::channel<int>(2);
    auto [back_tx, back_rx] = weft::mpsc::channel<int>(2);
    const int n = (int)scaled(5000);
    auto echo = rt.spawn([](weft::mpsc::Receiver<int> rx_arg, weft::mpsc::Sender<int> tx_arg) -> weft::Task<void> {
        auto rx = std::move(rx_arg);
        auto tx = std::move(tx_arg);  // closed when the body ends (see MpscManySendersOneReceiver)
        while (auto v = co_await rx.recv()) (void)co_await tx.send(*v * 2);
    }(std::move(rx), std::move(back_tx)));
    std::thread producer([&, tx = std::move(tx)]() mutable {
        for (int i = 0; i < n; i++) ASSERT_TRUE(tx.send_blocking(i).ok());
    });
    long sum = 0;
    for (int i = 0; i < n; i++) sum += *back_rx.recv_blocking();
    producer.join();
    echo.join();
    EXPECT_EQ(sum, (long)n * (n - 1));
    EXPECT_FALSE(back_rx.recv_blocking().has_value());
}

TEST(Sync, RuntimeShutdownWithTasksWaitingOnChannelsAndLocks) {
    auto [tx, rx] = weft::mpsc::channel<std::string>(1);
    auto m = std::make_unique<weft::Mutex<int>>(0);
    auto hold = m->lock_blocking();
    {
        weft::Runtime rt(2);
        rt.spawn([](weft::mpsc::Receiver<std::string> rx) -> weft::Task<void> {
            (void)co_await rx.recv();
        }(std::move(rx))).detach();
        rt.spawn([](weft::Mutex<int>* m) -> weft::Task<void> { auto g = co_await m->lock(); }(m.get())).detach();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }  // both tasks are dropped mid-wait: the receiver handle and lock waiter go with them
    auto r = tx.try_send(std::string("x"));
    EXPECT_EQ(r.code, WEFT_ECLOSED);
    hold.unlock();
    EXPECT_TRUE(m->try_lock().has_value());
}

// ---- oneshot ------------------------------------------------------------------------

TEST(Sync, Oneshot) {
    weft::Runtime rt(2);
    {
        auto [tx, rx] = weft::oneshot::channel<std::string>();
        auto h = rt.spawn([](weft::oneshot::Receiver<std::string> rx) -> weft::Task<std::string> {
            auto v = co_await rx.recv();
            co_return v.value_or("none");
        }(std::move(rx)));
        EXPECT_TRUE(tx.send(std::string(50, 'z')).ok());
        EXPECT_EQ(h.join(), std::string(50, 'z'));
        auto again = tx.send(std::string("2"));
        EXPECT_EQ(again.code, WEFT_EALREADY);
        EXPECT_EQ(again.rejected.value_or(""), "2");
    }
    {
        auto [tx, rx] = weft::oneshot::channel<int>();
        { auto gone = std::move(tx); }  // sender dropped without sending
        EXPECT_FALSE(rx.recv_blocking().has_value());
    }
    {
        auto [tx, rx] = weft::oneshot::channel<std::unique_ptr<int>>();
        { auto gone = std::move(rx); }
        auto r = tx.send(std::make_unique<int>(5));
        EXPECT_EQ(r.code, WEFT_ECLOSED);
        ASSERT_TRUE(r.rejected && **r.rejected == 5);
    }
    {
        auto [tx, rx] = weft::oneshot::channel<std::string>();
        EXPECT_TRUE(tx.send(std::string(40, 'q')).ok());
        // never received: freed with the channel (ASan)
    }
    {
        auto [tx, rx] = weft::oneshot::channel<int>();
        std::thread th([tx = std::move(tx)]() mutable { (void)tx.send(9); });
        EXPECT_EQ(rx.recv_blocking().value_or(-1), 9);
        th.join();
    }
}

// ---- Barrier ------------------------------------------------------------------------

TEST(Sync, BarrierReleasesTogetherWithOneLeaderPerRound) {
    weft::Runtime rt(2);
    constexpr int N = 6, ROUNDS = 20;
    weft::Barrier b(N);
    std::atomic<int> leaders{0}, arrived{0};
    std::vector<weft::JoinHandle<void>> hs;
    for (int i = 0; i < N - 1; i++)
        hs.push_back(rt.spawn([](weft::Barrier* b, std::atomic<int>* leaders, std::atomic<int>* arrived) -> weft::Task<void> {
            for (int r = 0; r < ROUNDS; r++) {
                arrived->fetch_add(1);
                auto res = co_await b->wait();
                EXPECT_GE(arrived->load(), (r + 1) * N) << "nobody passes before all arrived";
                if (res.is_leader()) leaders->fetch_add(1);
            }
        }(&b, &leaders, &arrived)));
    for (int r = 0; r < ROUNDS; r++) {  // the N-th party: a plain thread
        arrived.fetch_add(1);
        if (b.wait_blocking().is_leader()) leaders.fetch_add(1);
    }
    for (auto& h : hs) h.join();
    EXPECT_EQ(leaders.load(), ROUNDS);
}

// ---- the C ABI: bad input -------------------------------------------------------------

TEST(SyncAbi, BadInputIsReportedNotCrashedOn) {
    EXPECT_EQ(weft_semaphore_new(0, nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_semaphore_new(WEFT_SEMAPHORE_MAX_PERMITS + 1, nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_semaphore_try_acquire(nullptr, 1), WEFT_EINVAL);
    EXPECT_EQ(weft_semaphore_release(nullptr, 1), WEFT_EINVAL);
    EXPECT_EQ(weft_mutex_unlock(nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_notify_notify_one(nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_barrier_wait_blocking(nullptr), WEFT_EINVAL);
    weft_semaphore* s = nullptr;
    ASSERT_EQ(weft_semaphore_new(1, &s), 0);
    // a semaphore is not a mutex
    EXPECT_EQ(weft_mutex_try_lock(reinterpret_cast<weft_mutex*>(s)), WEFT_EINVAL);
    weft_wait w{};
    EXPECT_EQ(weft_wait_poll(&w, nullptr), WEFT_EINVAL) << "never prepared";
    weft_wait_drop(&w);  // harmless
    EXPECT_EQ(weft_semaphore_acquire(nullptr, s, 1), WEFT_EINVAL);
    ASSERT_EQ(weft_semaphore_acquire(&w, s, 1), 0);
    EXPECT_EQ(weft_wait_poll(&w, nullptr), WEFT_EINVAL) << "no context";
    weft_context cx{weft_waker_noop()};
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_READY);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_EINVAL) << "already completed";
    weft_wait_drop(&w);
    EXPECT_EQ(weft_semaphore_release(s, 1), 0);
    EXPECT_EQ(weft_semaphore_release(s, WEFT_SEMAPHORE_MAX_PERMITS), WEFT_EINVAL);
    weft_semaphore_free(s);
    weft_semaphore_free(nullptr);

    weft_channel_config cfg;
    weft_channel_config_init(&cfg, 8, 1);
    weft_mpsc_tx* tx = nullptr;
    weft_mpsc_rx* rx = nullptr;
    EXPECT_EQ(weft_mpsc_new(nullptr, &tx, &rx), WEFT_EINVAL);
    cfg.size = 3;
    EXPECT_EQ(weft_mpsc_new(&cfg, &tx, &rx), WEFT_EVERSION);
    weft_channel_config_init(&cfg, 8, uint64_t(1) << 40);
    EXPECT_EQ(weft_mpsc_new(&cfg, &tx, &rx), WEFT_EINVAL) << "capacity out of range";
    weft_channel_config_init(&cfg, 8, 1);
    ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
    EXPECT_EQ(weft_mpsc_try_send(tx, nullptr), WEFT_EINVAL);
    uint64_t v = 5, out = 0;
    EXPECT_EQ(weft_mpsc_try_send(tx, &v), 0);
    EXPECT_EQ(weft_mpsc_try_send(tx, &v), WEFT_EAGAIN) << "full";
    EXPECT_EQ(weft_mpsc_try_recv(rx, &out), 0);
    EXPECT_EQ(out, 5u);
    EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_EAGAIN);
    weft_mpsc_tx_free(tx);
    EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_ECLOSED);
    weft_mpsc_rx_free(rx);
}


// ---- review findings: lifetimes, close, unlocks, handles, limits ------------------

// A waker that counts its live clones and wakes (thread-safe: wakes may come
// from a runtime worker or from inside another call).
struct CountingWaker {
    std::atomic<int> refs{0};
    std::atomic<int> wakes{0};
    static weft_waker clone(const void* p) {
        static_cast<CountingWaker*>(const_cast<void*>(p))->refs.fetch_add(1);
        return weft_waker{p, &vtable};
    }
    static void wake(const void* p) {
        auto* c = static_cast<CountingWaker*>(const_cast<void*>(p));
        c->wakes.fetch_add(1);
        c->refs.fetch_sub(1);
    }
    static void wake_by_ref(const void* p) { static_cast<CountingWaker*>(const_cast<void*>(p))->wakes.fetch_add(1); }
    static void drop(const void* p) { static_cast<CountingWaker*>(const_cast<void*>(p))->refs.fetch_sub(1); }
    static constexpr weft_waker_vtable vtable = {clone, wake, wake_by_ref, drop};
    weft_context cx() { return weft_context{weft_waker{this, &vtable}}; }
};

// Finding 1 (the four modes of the reproducer, and the other kinds): a wait
// granted but not yet observed, or prepared and not yet polled, outlives the
// free of its object. Before the fix each of these touched freed memory
// (ASan: heap-use-after-free); now the wait keeps the object alive and sees
// what the header promises.
TEST(SyncAbi, FreeWithGrantedOrPreparedWaitsIsSafe) {
    CountingWaker cw;
    weft_context cx = cw.cx();
    {  // notify: completed by notify_one, free, drop: the notification is passed on into the dead object
        weft_notify* n = nullptr;
        ASSERT_EQ(weft_notify_new(&n), 0);
        weft_wait w;
        ASSERT_EQ(weft_notify_notified(&w, n), 0);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
        EXPECT_EQ(weft_notify_notify_one(n), 0);
        weft_notify_free(n);
        weft_wait_drop(&w);
    }
    {  // notify_idle: prepared, free ("released as by notify_waiters"), poll
        weft_notify* n = nullptr;
        ASSERT_EQ(weft_notify_new(&n), 0);
        weft_wait w;
        ASSERT_EQ(weft_notify_notified(&w, n), 0);
        weft_notify_free(n);
        EXPECT_EQ(weft_notify_notify_one(n), WEFT_EINVAL) << "the freed handle is refused";
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_READY);
        weft_wait_drop(&w);
    }
    {  // mutex: the unlock hands the lock to the queued wait; free; drop gives it back
        weft_mutex* m = nullptr;
        ASSERT_EQ(weft_mutex_new(&m), 0);
        ASSERT_EQ(weft_mutex_try_lock(m), 0);
        weft_wait w;
        ASSERT_EQ(weft_mutex_lock(&w, m), 0);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
        EXPECT_EQ(weft_mutex_unlock(m), 0);
        weft_mutex_free(m);
        weft_wait_drop(&w);
    }
    {  // mutex, granted and observed after the free: the grant stands
        weft_mutex* m = nullptr;
        ASSERT_EQ(weft_mutex_new(&m), 0);
        ASSERT_EQ(weft_mutex_try_lock(m), 0);
        weft_wait w;
        ASSERT_EQ(weft_mutex_lock(&w, m), 0);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
        EXPECT_EQ(weft_mutex_unlock(m), 0);
        weft_mutex_free(m);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_READY);
        weft_wait_drop(&w);
    }
    {  // sem_idle: prepared, free ("pending acquires fail with WEFT_ECLOSED"), poll
        weft_semaphore* sm = nullptr;
        ASSERT_EQ(weft_semaphore_new(0, &sm), 0);
        weft_wait w;
        ASSERT_EQ(weft_semaphore_acquire(&w, sm, 1), 0);
        weft_semaphore_free(sm);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_ECLOSED);
        weft_wait_drop(&w);
    }
    {  // semaphore: queued, free, poll
        weft_semaphore* sm = nullptr;
        ASSERT_EQ(weft_semaphore_new(0, &sm), 0);
        weft_wait w;
        ASSERT_EQ(weft_semaphore_acquire(&w, sm, 1), 0);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
        weft_semaphore_free(sm);
        EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_ECLOSED);
        weft_wait_drop(&w);
    }
    {  // rwlock: a writer prepared, free, drop without polling
        weft_rwlock* l = nullptr;
        ASSERT_EQ(weft_rwlock_new(&l), 0);
        weft_wait w;
        ASSERT_EQ(weft_rwlock_write(&w, l), 0);
        weft_rwlock_free(l);
        weft_wait_drop(&w);
    }
    {  // barrier: one queued, one prepared; free fails both
        weft_barrier* b = nullptr;
        ASSERT_EQ(weft_barrier_new(3, &b), 0);
        weft_wait w1, w2;
        ASSERT_EQ(weft_barrier_wait(&w1, b), 0);
        ASSERT_EQ(weft_barrier_wait(&w2, b), 0);
        EXPECT_EQ(weft_wait_poll(&w1, &cx), WEFT_PENDING);
        int wakes = cw.wakes.load();
        weft_barrier_free(b);
        EXPECT_EQ(cw.wakes.load(), wakes + 1) << "the queued party is woken";
        EXPECT_EQ(weft_wait_poll(&w1, &cx), WEFT_ECLOSED);
        EXPECT_EQ(weft_wait_poll(&w2, &cx), WEFT_ECLOSED);
        weft_wait_drop(&w1);
        weft_wait_drop(&w2);
    }
    {  // mpsc: a send and a receive prepared, then both handles freed
        weft_channel_config cfg;
        weft_channel_config_init(&cfg, 8, 1);
        weft_mpsc_tx* tx = nullptr;
        weft_mpsc_rx* rx = nullptr;
        ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
        uint64_t v = 1, out = 0;
        weft_wait ws, wr;
        ASSERT_EQ(weft_mpsc_send(&ws, tx, &v), 0);
        ASSERT_EQ(weft_mpsc_recv(&wr, rx, &out), 0);
        weft_mpsc_tx_free(tx);
        weft_mpsc_rx_free(rx);
        EXPECT_EQ(weft_wait_poll(&ws, &cx), WEFT_ECLOSED) << "the receiver is gone";
        EXPECT_EQ(weft_wait_poll(&wr, &cx), WEFT_ECLOSED);
        weft_wait_drop(&ws);
        weft_wait_drop(&wr);
    }
    {  // mpsc: a send queued on a full channel, then both handles freed, then dropped
        weft_channel_config cfg;
        weft_channel_config_init(&cfg, 8, 1);
        weft_mpsc_tx* tx = nullptr;
        weft_mpsc_rx* rx = nullptr;
        ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
        uint64_t v = 1;
        ASSERT_EQ(weft_mpsc_try_send(tx, &v), 0);
        weft_wait ws;
        ASSERT_EQ(weft_mpsc_send(&ws, tx, &v), 0);
        EXPECT_EQ(weft_wait_poll(&ws, &cx), WEFT_PENDING);
        weft_mpsc_tx_free(tx);
        weft_mpsc_rx_free(rx);
        weft_wait_drop(&ws);
    }
    {  // oneshot: a receive prepared, both handles freed
        weft_channel_config cfg;
        weft_channel_config_init(&cfg, 8, 0);
        weft_oneshot_tx* tx = nullptr;
        weft_oneshot_rx* rx = nullptr;
        ASSERT_EQ(weft_oneshot_new(&cfg, &tx, &rx), 0);
        uint64_t out = 0;
        weft_wait wr;
        ASSERT_EQ(weft_oneshot_recv(&wr, rx, &out), 0);
        weft_oneshot_rx_free(rx);
        weft_oneshot_tx_free(tx);
        EXPECT_EQ(weft_wait_poll(&wr, &cx), WEFT_ECLOSED);
        weft_wait_drop(&wr);
    }
    EXPECT_EQ(cw.refs.load(), 0) << "every waker clone was consumed";
}

// A receiver that closes its channel may still get what a sender was given
// room for before the close; "closed" (WEFT_ECLOSED) comes only after, and
// is final: the send that reports success is received, never dropped
// silently with the channel.
TEST(SyncAbi, ARoomGrantedBeforeTheReceiverClosesIsStillReceived) {
    CountingWaker cw;
    weft_context cx = cw.cx();
    weft_channel_config cfg;
    weft_channel_config_init(&cfg, 8, 1);
    for (bool poll_the_send : {true, false}) {
        weft_mpsc_tx* tx = nullptr;
        weft_mpsc_rx* rx = nullptr;
        ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
        uint64_t v1 = 1, v2 = 2, out = 0;
        ASSERT_EQ(weft_mpsc_try_send(tx, &v1), 0);
        weft_wait ws;
        ASSERT_EQ(weft_mpsc_send(&ws, tx, &v2), 0);
        EXPECT_EQ(weft_wait_poll(&ws, &cx), WEFT_PENDING) << "full";
        // The receive makes room, which goes to the queued send (not polled
        // yet); then the receiver closes.
        ASSERT_EQ(weft_mpsc_try_recv(rx, &out), 0);
        EXPECT_EQ(out, 1u);
        ASSERT_EQ(weft_mpsc_rx_close(rx), 0);
        EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_EAGAIN) << "a granted send is still to push";
        weft_wait wr;
        ASSERT_EQ(weft_mpsc_recv(&wr, rx, &out), 0);
        EXPECT_EQ(weft_wait_poll(&wr, &cx), WEFT_PENDING);
        int wakes = cw.wakes.load();
        if (poll_the_send) {
            EXPECT_EQ(weft_wait_poll(&ws, &cx), WEFT_READY) << "the send succeeds...";
            EXPECT_GT(cw.wakes.load(), wakes);
            EXPECT_EQ(weft_wait_poll(&wr, &cx), WEFT_READY) << "...and its value is received";
            EXPECT_EQ(out, 2u);
            ASSERT_EQ(weft_mpsc_recv(&wr, rx, &out), 0);
        } else {
            weft_wait_drop(&ws);  // abandoned: its room goes back, the receiver is woken
            EXPECT_GT(cw.wakes.load(), wakes);
        }
        EXPECT_EQ(weft_wait_poll(&wr, &cx), WEFT_ECLOSED);
        EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_ECLOSED);
        weft_wait_drop(&ws);
        weft_wait_drop(&wr);
        weft_mpsc_tx_free(tx);
        weft_mpsc_rx_free(rx);
    }
    EXPECT_EQ(cw.refs.load(), 0);
}

// A prepared send counts as a sender: freeing the last sender handle does
// not end the channel for the receiver before that send pushed (or was
// dropped), bounded or not.
TEST(SyncAbi, APreparedSendKeepsTheChannelOpenAfterTheLastSenderIsFreed) {
    CountingWaker cw;
    weft_context cx = cw.cx();
    for (uint64_t capacity : {uint64_t(0), uint64_t(4)}) {
        for (bool poll_the_send : {true, false}) {
            weft_channel_config cfg;
            weft_channel_config_init(&cfg, 8, capacity);
            weft_mpsc_tx* tx = nullptr;
            weft_mpsc_rx* rx = nullptr;
            ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
            uint64_t v = 7, out = 0;
            weft_wait ws;
            ASSERT_EQ(weft_mpsc_send(&ws, tx, &v), 0);
            weft_mpsc_tx_free(tx);
            EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_EAGAIN) << "capacity " << capacity;
            if (poll_the_send) {
                EXPECT_EQ(weft_wait_poll(&ws, &cx), WEFT_READY);
                EXPECT_EQ(weft_mpsc_try_recv(rx, &out), 0);
                EXPECT_EQ(out, 7u);
            } else {
                weft_wait_drop(&ws);
            }
            EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_ECLOSED) << "capacity " << capacity;
            weft_wait_drop(&ws);
            weft_mpsc_rx_free(rx);
        }
    }
    EXPECT_EQ(cw.refs.load(), 0);
}

// A receive prepared before the receiver's free, polled after a send: it
// fails, and the value has exactly one owner (the sender, told ECLOSED, or
// the channel, which drops it once).
TEST(SyncAbi, AOneshotReceivePolledAfterTheReceiverIsFreedFails) {
    CountingWaker cw;
    weft_context cx = cw.cx();
    static std::atomic<int> drops{0};
    drops = 0;
    for (bool send_first : {false, true}) {
        weft_channel_config cfg;
        weft_channel_config_init(&cfg, 8, 0);
        cfg.elem_drop = [](void*, void*) { drops.fetch_add(1); };
        weft_oneshot_tx* tx = nullptr;
        weft_oneshot_rx* rx = nullptr;
        ASSERT_EQ(weft_oneshot_new(&cfg, &tx, &rx), 0);
        uint64_t v = 9, out = 0;
        weft_wait wr;
        ASSERT_EQ(weft_oneshot_recv(&wr, rx, &out), 0);
        if (send_first) {
            ASSERT_EQ(weft_oneshot_send(tx, &v), 0);  // the channel owns it
        }
        weft_oneshot_rx_free(rx);
        if (!send_first) {
            EXPECT_EQ(weft_oneshot_send(tx, &v), WEFT_ECLOSED);  // the sender keeps it
        }
        EXPECT_EQ(weft_wait_poll(&wr, &cx), WEFT_ECLOSED);
        EXPECT_EQ(out, 0u) << "nothing was copied out";
        weft_wait_drop(&wr);
        weft_oneshot_tx_free(tx);
    }
    EXPECT_EQ(drops.load(), 1) << "the value sent before the free is dropped once, by the channel";
    EXPECT_EQ(cw.refs.load(), 0);
}

// Finding 1, through the C++ wrappers: a Notified outliving its Notify, and a
// task aborted after notify_one() completed its wait, then ~Notify before
// the task is dropped.
TEST(Sync, NotifiedOutlivesItsNotify) {
    {
        auto n = std::make_unique<weft::Notify>();
        auto aw = n->notified();  // prepared now
        n.reset();
        // aw is dropped here: it must not touch the freed Notify
    }
    // One worker and no handoff: with it, the blocker below, stuck in its
    // poll for 10 ms (a descheduled test thread), would lose the worker's
    // queue to a spare thread, which could run the notified task before
    // the abort.
    weft_pulse_config pulse;
    weft_pulse_config_init(&pulse);
    pulse.max_spare_threads = 0;
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = 1;
    cfg.pulse = &pulse;
    weft::Runtime rt(cfg);
    auto n = std::make_unique<weft::Notify>();
    std::atomic<bool> queued{false};
    auto h = rt.spawn([](weft::Notify* n, std::atomic<bool>* q) -> weft::Task<void> {
        auto aw = n->notified();
        q->store(true);
        co_await std::move(aw);
        ADD_FAILURE() << "must be aborted before it observes the notification";
    }(n.get(), &queued));
    spin_until([&] { return queued.load(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let it suspend
    // Occupy the only worker so that the notified task cannot run before the
    // abort and the free.
    std::atomic<bool> busy{false}, release_worker{false};
    auto blocker = rt.spawn([](std::atomic<bool>* b, std::atomic<bool>* r) -> weft::Task<void> {
        b->store(true);
        while (!r->load()) std::this_thread::yield();
        co_return;
    }(&busy, &release_worker));
    spin_until([&] { return busy.load(); });
    n->notify_one();  // completes the queued wait (BY_ONE), not yet observed
    h.abort();
    n.reset();        // ~Notify while the completed wait is still to be dropped
    release_worker.store(true);
    blocker.join();
    EXPECT_THROW(h.join(), weft::Cancelled);
}

// Finding 2 (reproducer r3): close() wakes 40 waiters in two batches; a
// release (and a cancel) run from the first wake, in the window where the
// lock is dropped. No waiter queued before close() may be granted.
namespace close_race {
weft_semaphore* S;
weft_wait W[40];
bool fired;
weft_waker clone(const void* p);
void wake(const void*) {
    if (fired) return;
    fired = true;
    EXPECT_EQ(weft_semaphore_release(S, 1), 0);  // releases still count after close
    weft_wait_drop(&W[39]);                       // a cancel of a waiter close() has not woken yet
}
void drop(const void*) {}
const weft_waker_vtable vt = {clone, wake, wake, drop};
weft_waker clone(const void* p) { return weft_waker{p, &vt}; }
}  // namespace close_race

TEST(SyncAbi, CloseNeverGrantsAnAcquireQueuedBeforeIt) {
    using namespace close_race;
    ASSERT_EQ(weft_semaphore_new(0, &S), 0);
    weft_context cx{weft_waker{nullptr, &vt}};
    for (auto& w : W) {
        ASSERT_EQ(weft_semaphore_acquire(&w, S, 1), 0);
        ASSERT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
    }
    fired = false;
    ASSERT_EQ(weft_semaphore_close(S), 0);
    EXPECT_TRUE(fired);
    for (int i = 0; i < 39; i++) EXPECT_EQ(weft_wait_poll(&W[i], &cx), WEFT_ECLOSED) << "waiter " << i;
    for (auto& w : W) weft_wait_drop(&w);
    EXPECT_EQ(weft_semaphore_available(S), 1u) << "the release after close counted";
    EXPECT_EQ(weft_semaphore_try_acquire(S, 1), WEFT_ECLOSED);
    weft_semaphore_free(S);
}

// Finding 3 (reproducer r2): an unlock of a lock that is not held is refused
// instead of turning the lock into a 2-permit semaphore.
TEST(SyncAbi, UnlockOfALockNotHeldIsRefused) {
    weft_mutex* m = nullptr;
    ASSERT_EQ(weft_mutex_new(&m), 0);
    EXPECT_EQ(weft_mutex_unlock(m), WEFT_EINVAL);
    EXPECT_EQ(weft_mutex_try_lock(m), 0);
    EXPECT_EQ(weft_mutex_try_lock(m), WEFT_EAGAIN) << "still a mutex";
    EXPECT_EQ(weft_mutex_unlock(m), 0);
    EXPECT_EQ(weft_mutex_unlock(m), WEFT_EINVAL);
    weft_mutex_free(m);

    weft_rwlock* l = nullptr;
    ASSERT_EQ(weft_rwlock_new(&l), 0);
    EXPECT_EQ(weft_rwlock_read_unlock(l), WEFT_EINVAL);
    EXPECT_EQ(weft_rwlock_write_unlock(l), WEFT_EINVAL);
    EXPECT_EQ(weft_rwlock_try_read(l), 0);
    EXPECT_EQ(weft_rwlock_try_write(l), WEFT_EAGAIN) << "reader and writer never together";
    EXPECT_EQ(weft_rwlock_write_unlock(l), WEFT_EINVAL) << "only a reader holds it";
    // The slow path (a writer queued, holding the reader's share minus one):
    // a write_unlock is still refused, the reader's unlock hands it over.
    CountingWaker cw;
    weft_context cx = cw.cx();
    weft_wait w;
    ASSERT_EQ(weft_rwlock_write(&w, l), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
    EXPECT_EQ(weft_rwlock_write_unlock(l), WEFT_EINVAL);
    EXPECT_EQ(weft_rwlock_read_unlock(l), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_READY);
    weft_wait_drop(&w);
    EXPECT_EQ(weft_rwlock_try_read(l), WEFT_EAGAIN) << "the writer holds it";
    EXPECT_EQ(weft_rwlock_write_unlock(l), 0);
    EXPECT_EQ(weft_rwlock_try_read(l), 0);
    EXPECT_EQ(weft_rwlock_read_unlock(l), 0);
    weft_rwlock_free(l);
    EXPECT_EQ(cw.refs.load(), 0);
}

// Finding 6: the errors the header documents.
TEST(SyncAbi, SemaphoreErrorsMatchTheHeader) {
    weft_semaphore* sm = nullptr;
    ASSERT_EQ(weft_semaphore_new(5, &sm), 0);
    EXPECT_EQ(weft_semaphore_try_acquire(sm, WEFT_SEMAPHORE_MAX_PERMITS + 1), WEFT_EINVAL);
    CountingWaker cw;
    weft_context cx = cw.cx();
    weft_wait w;
    ASSERT_EQ(weft_semaphore_acquire(&w, sm, 10), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);  // took the 5, waits for 5 more
    // The slow path (a waiter queued): 5 assigned + this would pass the
    // maximum. It used to saturate silently and return 0.
    EXPECT_EQ(weft_semaphore_release(sm, WEFT_SEMAPHORE_MAX_PERMITS - 4), WEFT_EINVAL);
    EXPECT_EQ(weft_semaphore_release(sm, 5), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_READY);
    weft_wait_drop(&w);
    weft_semaphore_free(sm);
}

// Finding 5: the handles of a channel are told apart by kind, and a freed one
// is refused while the channel lives on.
TEST(SyncAbi, ChannelHandlesOfTheWrongKindOrFreedAreRefused) {
    weft_channel_config cfg;
    weft_channel_config_init(&cfg, 8, 4);
    weft_mpsc_tx* tx = nullptr;
    weft_mpsc_rx* rx = nullptr;
    ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
    uint64_t v = 7, out = 0;
    auto* rx_as_tx = reinterpret_cast<weft_mpsc_tx*>(rx);
    auto* tx_as_rx = reinterpret_cast<weft_mpsc_rx*>(tx);
    EXPECT_EQ(weft_mpsc_try_send(rx_as_tx, &v), WEFT_EINVAL);
    EXPECT_EQ(weft_mpsc_try_recv(tx_as_rx, &out), WEFT_EINVAL);
    weft_mpsc_rx_free(tx_as_rx);  // refused: a sender is not a receiver
    weft_mpsc_tx_free(rx_as_tx);  // refused
    weft_mpsc_tx* tx2 = nullptr;
    ASSERT_EQ(weft_mpsc_tx_clone(tx, &tx2), 0);
    EXPECT_NE(tx2, tx) << "each sender is a handle of its own";
    weft_mpsc_tx_free(tx2);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    // Reads the freed handle's memory, which the sanitizers rightly report;
    // in other builds the zeroed (or reused) magic refuses it.
    weft_mpsc_tx_free(tx2);
    EXPECT_EQ(weft_mpsc_try_send(tx2, &v), WEFT_EINVAL);
#endif
    EXPECT_EQ(weft_mpsc_try_send(tx, &v), 0) << "the channel still has its first sender";
    weft_mpsc_rx_free(rx);
    EXPECT_EQ(weft_mpsc_try_recv(rx, &out), WEFT_EINVAL) << "freed receiver (the channel lives on)";
    weft_mpsc_rx_free(rx);  // a second free is refused
    EXPECT_EQ(weft_mpsc_try_send(tx, &v), WEFT_ECLOSED);
    weft_mpsc_tx_free(tx);

    weft_oneshot_tx* otx = nullptr;
    weft_oneshot_rx* orx = nullptr;
    ASSERT_EQ(weft_oneshot_new(&cfg, &otx, &orx), 0);
    EXPECT_EQ(weft_oneshot_send(reinterpret_cast<weft_oneshot_tx*>(orx), &v), WEFT_EINVAL);
    EXPECT_EQ(weft_oneshot_try_recv(reinterpret_cast<weft_oneshot_rx*>(otx), &out), WEFT_EINVAL);
    weft_oneshot_tx_free(otx);
    weft_oneshot_tx_free(otx);  // refused: already freed (the receiver keeps the object)
    EXPECT_EQ(weft_oneshot_send(otx, &v), WEFT_EINVAL);
    EXPECT_EQ(weft_oneshot_try_recv(orx, &out), WEFT_ECLOSED);
    weft_oneshot_rx_free(orx);
    // a mix-up with another kind of object
    weft_semaphore* sm = nullptr;
    ASSERT_EQ(weft_semaphore_new(1, &sm), 0);
    EXPECT_EQ(weft_mpsc_try_send(reinterpret_cast<weft_mpsc_tx*>(sm), &v), WEFT_EINVAL);
    weft_semaphore_free(sm);
}

// Finding 7: a bounded ring too large to allocate is refused up front.
TEST(SyncAbi, HugeBoundedChannelIsRefused) {
    weft_channel_config cfg;
    weft_mpsc_tx* tx = nullptr;
    weft_mpsc_rx* rx = nullptr;
    weft_channel_config_init(&cfg, 0, uint64_t(1) << 30);  // 2^30 slots x 8 bytes = 8 GiB
    EXPECT_EQ(weft_mpsc_new(&cfg, &tx, &rx), WEFT_EINVAL);
    weft_channel_config_init(&cfg, 1u << 20, 1024);  // 1 GiB + 8 KiB
    EXPECT_EQ(weft_mpsc_new(&cfg, &tx, &rx), WEFT_EINVAL);
    weft_channel_config_init(&cfg, 1u << 20, 0);  // unbounded: grows as used
    ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
    weft_mpsc_tx_free(tx);
    weft_mpsc_rx_free(rx);
    weft_channel_config_init(&cfg, 8, 1024);
    ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
    weft_mpsc_tx_free(tx);
    weft_mpsc_rx_free(rx);
}

// Finding 8: a dropped receive takes its waker back from the channel.
TEST(SyncAbi, DroppedReceiveForgetsItsWaker) {
    CountingWaker cw;
    weft_context cx = cw.cx();
    weft_channel_config cfg;
    weft_channel_config_init(&cfg, 8, 2);
    weft_mpsc_tx* tx = nullptr;
    weft_mpsc_rx* rx = nullptr;
    ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
    uint64_t out = 0;
    weft_wait w;
    ASSERT_EQ(weft_mpsc_recv(&w, rx, &out), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
    EXPECT_EQ(cw.refs.load(), 1) << "the channel holds a clone";
    weft_wait_drop(&w);
    EXPECT_EQ(cw.refs.load(), 0) << "taken back by the drop, the channel still alive";
    weft_oneshot_tx* otx = nullptr;
    weft_oneshot_rx* orx = nullptr;
    ASSERT_EQ(weft_oneshot_new(&cfg, &otx, &orx), 0);
    ASSERT_EQ(weft_oneshot_recv(&w, orx, &out), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
    EXPECT_EQ(cw.refs.load(), 1);
    weft_wait_drop(&w);
    EXPECT_EQ(cw.refs.load(), 0);
    EXPECT_EQ(cw.wakes.load(), 0);
    // Another waiter's waker in the slot is left alone (the wait registered
    // with one task, then the receiver moved on to another).
    CountingWaker other;
    weft_context ocx = other.cx();
    weft_wait w2;
    ASSERT_EQ(weft_mpsc_recv(&w, rx, &out), 0);
    ASSERT_EQ(weft_mpsc_recv(&w2, rx, &out), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cx), WEFT_PENDING);
    EXPECT_EQ(weft_wait_poll(&w2, &ocx), WEFT_PENDING);  // replaces the slot's waker
    weft_wait_drop(&w);
    EXPECT_EQ(other.refs.load(), 1) << "not w's waker: kept";
    uint64_t v = 3;
    EXPECT_EQ(weft_mpsc_try_send(tx, &v), 0);
    EXPECT_EQ(other.wakes.load(), 1);
    EXPECT_EQ(weft_wait_poll(&w2, &ocx), WEFT_READY);
    weft_wait_drop(&w2);
    weft_oneshot_tx_free(otx);
    weft_oneshot_rx_free(orx);
    weft_mpsc_tx_free(tx);
    weft_mpsc_rx_free(rx);
    EXPECT_EQ(cw.refs.load(), 0);
    EXPECT_EQ(other.refs.load(), 0);
}

// Finding 4 (reproducer r6): weft::timeout takes a sync awaiter by value;
// both outcomes.
TEST(Sync, TimeoutWrapsAChannelReceive) {
    using namespace std::chrono_literals;
    weft::Runtime rt(2);
    auto [tx, rx] = weft::mpsc::channel<int>(4);
    auto h = rt.spawn([](weft::mpsc::Receiver<int>* rx) -> weft::Task<int> {
        auto r = co_await weft::timeout(10ms, rx->recv());
        co_return r.timed_out ? -1 : (r.value && *r.value ? **r.value : -2);
    }(&rx));
    EXPECT_EQ(h.join(), -1) << "nothing sent: times out";
    auto h2 = rt.spawn([](weft::mpsc::Receiver<int>* rx) -> weft::Task<int> {
        auto r = co_await weft::timeout(10s, rx->recv());
        co_return r.timed_out ? -1 : (r.value && *r.value ? **r.value : -2);
    }(&rx));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_TRUE(tx.send_blocking(42).ok());
    EXPECT_EQ(h2.join(), 42) << "completes before the deadline";
    // Other sync awaiters too (each is moved into the timeout's task).
    weft::Notify n;
    auto h3 = rt.spawn([](weft::Notify* n) -> weft::Task<bool> {
        auto r = co_await weft::timeout(10ms, n->notified());
        co_return r.timed_out;
    }(&n));
    EXPECT_TRUE(h3.join());
    weft::Semaphore sem(1);
    auto h4 = rt.spawn([](weft::Semaphore* s) -> weft::Task<uint64_t> {
        auto r = co_await weft::timeout(1s, s->acquire(1));
        co_return r.timed_out ? 0 : r.value->count();
    }(&sem));
    EXPECT_EQ(h4.join(), 1u);
}

}  // namespace
