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

}  // namespace
