// tests/test_coverage.cpp — the paths the other suites leave out: error and
// bad-input paths, re-polls of queued waits with the same and with another
// waker, waits dropped while queued, wake batches larger than one WakeList,
// I/O close and shutdown on both backends, environment overrides.
//
// Why: each of these is a promise of the C ABI (a re-poll with another waker
// moves the wake to it and releases the old one; a dropped barrier wait
// withdraws its arrival; queued channel elements reach elem_drop exactly
// once; weft_io_close / weft_io_shutdown do what close(2) / shutdown(2) do)
// that no other test happened to exercise. Every test asserts return codes
// and counts (wakes, clones, drops, bytes); none measures time. Waits are
// driven from the test thread with a counting waker, so nothing depends on
// scheduling.
#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.h>
#include <weft/weft_io.h>
#include <weft/weft_metrics.h>
#include <weft/weft_pulse.h>
#include <weft/weft_sync.h>
#include <weft/weft_time.h>
#include <weft/weft_tpc.h>

#include "test_support.h"

namespace {

// ---- a waker that counts what is done with it --------------------------------------
// clone adds a reference; wake and drop consume one; wake_by_ref does not.
// live() is the number of references weft still holds.
struct CountingWaker {
    std::atomic<int> clones{0};
    std::atomic<int> wakes{0};       // wake + wake_by_ref
    std::atomic<int> consumed{0};    // wake + drop
    std::atomic<int> drops{0};

    static weft_waker clone(const void* p) {
        auto* self = static_cast<CountingWaker*>(const_cast<void*>(p));
        self->clones.fetch_add(1);
        return weft_waker{p, &VTABLE};
    }
    static void wake(const void* p) {
        auto* self = static_cast<CountingWaker*>(const_cast<void*>(p));
        self->wakes.fetch_add(1);
        self->consumed.fetch_add(1);
    }
    static void wake_by_ref(const void* p) {
        static_cast<CountingWaker*>(const_cast<void*>(p))->wakes.fetch_add(1);
    }
    static void drop(const void* p) {
        auto* self = static_cast<CountingWaker*>(const_cast<void*>(p));
        self->drops.fetch_add(1);
        self->consumed.fetch_add(1);
    }
    static constexpr weft_waker_vtable VTABLE = {clone, wake, wake_by_ref, drop};

    weft_context cx() { return weft_context{weft_waker{this, &VTABLE}}; }
    int live() const { return clones.load() - consumed.load(); }
};

// Sets an environment variable for the lifetime of the object and puts the
// old value back after. Only used while no runtime of this test is running
// (the variables are read when a runtime is created).
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        const char* old = getenv(name);
        had_ = old != nullptr;
        if (had_) old_ = old;
        if (value) setenv(name, value, 1);
        else unsetenv(name);
    }
    ~ScopedEnv() {
        if (had_) setenv(name_, old_.c_str(), 1);
        else unsetenv(name_);
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    bool had_ = false;
    std::string old_;
};

weft_runtime* new_runtime(uint32_t workers, const char* name = "wcov") {
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = workers;
    cfg.name = name;
    weft_runtime* rt = nullptr;
    int r = weft_runtime_new(&cfg, &rt);
    EXPECT_EQ(r, 0) << weft_strerror(r);
    return rt;
}

// ---- barrier ------------------------------------------------------------------------

// A queued barrier wait polled again: with the same waker nothing changes;
// with another waker that one is registered and the old one released; with
// no waker it just reports pending. The release then wakes the latest waker
// only, and the first party is not the leader.
TEST(CoverageBarrier, RepollWithSameOtherAndNoWakerThenRelease) {
    weft_barrier* b = nullptr;
    ASSERT_EQ(weft_barrier_new(2, &b), 0);
    CountingWaker a, other, last;
    weft_context cxa = a.cx(), cxo = other.cx(), cxl = last.cx();

    weft_wait w1;
    ASSERT_EQ(weft_barrier_wait(&w1, b), 0);
    EXPECT_EQ(weft_wait_poll(&w1, &cxa), WEFT_PENDING);
    EXPECT_EQ(a.live(), 1);
    EXPECT_EQ(weft_wait_poll(&w1, &cxa), WEFT_PENDING);  // same waker: no new clone
    EXPECT_EQ(a.clones.load(), 1);
    EXPECT_EQ(a.live(), 1);
    EXPECT_EQ(weft_wait_poll(&w1, &cxo), WEFT_PENDING);  // another waker replaces it
    EXPECT_EQ(a.live(), 0);
    EXPECT_EQ(a.drops.load(), 1);
    EXPECT_EQ(other.live(), 1);
    EXPECT_EQ(weft_wait_poll(&w1, nullptr), WEFT_EINVAL);  // the C ABI needs a context
    EXPECT_EQ(other.live(), 1);

    weft_wait w2;
    ASSERT_EQ(weft_barrier_wait(&w2, b), 0);
    EXPECT_EQ(weft_wait_poll(&w2, &cxl), WEFT_READY);  // the last party
    EXPECT_EQ(weft_barrier_wait_is_leader(&w2), 1);
    EXPECT_EQ(last.live(), 0);
    EXPECT_EQ(last.wakes.load(), 0);
    EXPECT_EQ(other.wakes.load(), 1);  // the registered waker, consumed
    EXPECT_EQ(other.live(), 0);
    EXPECT_EQ(a.wakes.load(), 0);  // the replaced one is never woken

    EXPECT_EQ(weft_wait_poll(&w1, &cxo), WEFT_READY);
    EXPECT_EQ(weft_barrier_wait_is_leader(&w1), 0);
    EXPECT_EQ(weft_wait_poll(&w1, &cxo), WEFT_EINVAL);  // completed
    weft_wait_drop(&w1);
    weft_wait_drop(&w2);
    weft_barrier_free(b);
    EXPECT_EQ(other.live(), 0);
}

// A queued wait dropped before its round completes withdraws its arrival:
// the round then needs two more parties, not one.
TEST(CoverageBarrier, DroppedQueuedWaitWithdrawsItsArrival) {
    weft_barrier* b = nullptr;
    ASSERT_EQ(weft_barrier_new(2, &b), 0);
    CountingWaker k;
    weft_context cx = k.cx();

    weft_wait gone;
    ASSERT_EQ(weft_barrier_wait(&gone, b), 0);
    EXPECT_EQ(weft_wait_poll(&gone, &cx), WEFT_PENDING);
    EXPECT_EQ(k.live(), 1);
    weft_wait_drop(&gone);
    EXPECT_EQ(k.live(), 0);  // its waker went back, unwoken
    EXPECT_EQ(k.wakes.load(), 0);

    weft_wait w1, w2;
    ASSERT_EQ(weft_barrier_wait(&w1, b), 0);
    EXPECT_EQ(weft_wait_poll(&w1, &cx), WEFT_PENDING);  // 1 of 2, not 2 of 2
    ASSERT_EQ(weft_barrier_wait(&w2, b), 0);
    EXPECT_EQ(weft_wait_poll(&w2, &cx), WEFT_READY);
    EXPECT_EQ(weft_barrier_wait_is_leader(&w2), 1);
    EXPECT_EQ(k.wakes.load(), 1);

    // Released but never polled again, then dropped: nothing to withdraw
    // (its round is over), and the next round still needs both parties.
    weft_wait_drop(&w1);
    weft_wait_drop(&w2);
    weft_wait w3, w4;
    ASSERT_EQ(weft_barrier_wait(&w3, b), 0);
    EXPECT_EQ(weft_wait_poll(&w3, &cx), WEFT_PENDING);
    ASSERT_EQ(weft_barrier_wait(&w4, b), 0);
    EXPECT_EQ(weft_wait_poll(&w4, &cx), WEFT_READY);
    EXPECT_EQ(weft_wait_poll(&w3, &cx), WEFT_READY);
    EXPECT_EQ(weft_barrier_wait_is_leader(&w3) + weft_barrier_wait_is_leader(&w4), 1);
    weft_wait_drop(&w3);
    weft_wait_drop(&w4);
    weft_barrier_free(b);
    EXPECT_EQ(k.live(), 0);
}

// Freeing a barrier with more waiters than one wake batch (WakeList holds
// 32) closes them all: every waker is woken once, every wait fails.
TEST(CoverageBarrier, FreeWithManyWaitersClosesEveryOne) {
    constexpr int kWaiters = 75;
    weft_barrier* b = nullptr;
    ASSERT_EQ(weft_barrier_new(kWaiters + 1, &b), 0);
    std::vector<CountingWaker> wakers(kWaiters);
    std::vector<weft_wait> waits(kWaiters);
    for (int i = 0; i < kWaiters; i++) {
        weft_context cx = wakers[i].cx();
        ASSERT_EQ(weft_barrier_wait(&waits[i], b), 0);
        ASSERT_EQ(weft_wait_poll(&waits[i], &cx), WEFT_PENDING);
    }
    weft_barrier_free(b);
    for (int i = 0; i < kWaiters; i++) {
        EXPECT_EQ(wakers[i].wakes.load(), 1) << i;
        EXPECT_EQ(wakers[i].live(), 0) << i;
        weft_context cx = wakers[i].cx();
        EXPECT_EQ(weft_wait_poll(&waits[i], &cx), WEFT_ECLOSED) << i;
        weft_wait_drop(&waits[i]);
    }
    // A wait prepared after the free of another barrier handle is refused.
    weft_wait late;
    EXPECT_EQ(weft_barrier_wait(&late, nullptr), WEFT_EINVAL);
}

// ---- notify -------------------------------------------------------------------------

// A queued notified() wait polled again with the same waker, another waker
// and no context (refused); notify_one then wakes the registered waker only.
TEST(CoverageNotify, RepollQueuedWaitMovesTheWake) {
    weft_notify* n = nullptr;
    ASSERT_EQ(weft_notify_new(&n), 0);
    CountingWaker a, other;
    weft_context cxa = a.cx(), cxo = other.cx();
    weft_wait w;
    ASSERT_EQ(weft_notify_notified(&w, n), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cxa), WEFT_PENDING);
    EXPECT_EQ(weft_wait_poll(&w, &cxa), WEFT_PENDING);
    EXPECT_EQ(a.clones.load(), 1);
    EXPECT_EQ(weft_wait_poll(&w, &cxo), WEFT_PENDING);
    EXPECT_EQ(a.live(), 0);
    EXPECT_EQ(other.live(), 1);
    EXPECT_EQ(weft_wait_poll(&w, nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_notify_notify_one(n), 0);
    EXPECT_EQ(other.wakes.load(), 1);
    EXPECT_EQ(a.wakes.load(), 0);
    EXPECT_EQ(weft_wait_poll(&w, &cxo), WEFT_READY);
    weft_wait_drop(&w);
    // The permit was consumed by the waiter: a new wait stays pending.
    weft_wait w2;
    ASSERT_EQ(weft_notify_notified(&w2, n), 0);
    EXPECT_EQ(weft_wait_poll(&w2, &cxa), WEFT_PENDING);
    weft_wait_drop(&w2);
    weft_notify_free(n);
    EXPECT_EQ(a.live(), 0);
    EXPECT_EQ(other.live(), 0);
}

// ---- semaphore / rwlock entry points ---------------------------------------------

TEST(CoverageSync, SemaphoreIsClosedReportsTheState) {
    weft_semaphore* s = nullptr;
    ASSERT_EQ(weft_semaphore_new(1, &s), 0);
    EXPECT_EQ(weft_semaphore_is_closed(s), 0);
    EXPECT_EQ(weft_semaphore_close(s), 0);
    EXPECT_EQ(weft_semaphore_is_closed(s), 1);
    EXPECT_EQ(weft_semaphore_try_acquire(s, 1), WEFT_ECLOSED);
    EXPECT_EQ(weft_semaphore_is_closed(nullptr), WEFT_EINVAL);
    weft_mutex* m = nullptr;
    ASSERT_EQ(weft_mutex_new(&m), 0);
    // A mutex is not a semaphore handle.
    EXPECT_EQ(weft_semaphore_is_closed(reinterpret_cast<weft_semaphore*>(m)), WEFT_EINVAL);
    weft_mutex_free(m);
    weft_semaphore_free(s);
}

// A read lock prepared as a wait queues behind a writer and is granted
// (its waker woken once) by the write unlock; write_blocking on a free lock
// takes it at once.
TEST(CoverageSync, RwlockReadWaitAndWriteBlocking) {
    weft_rwlock* l = nullptr;
    ASSERT_EQ(weft_rwlock_new(&l), 0);
    ASSERT_EQ(weft_rwlock_write_blocking(l), 0);  // free: taken at once
    EXPECT_EQ(weft_rwlock_try_read(l), WEFT_EAGAIN);

    CountingWaker k;
    weft_context cx = k.cx();
    weft_wait r1, r2;
    ASSERT_EQ(weft_rwlock_read(&r1, l), 0);
    ASSERT_EQ(weft_rwlock_read(&r2, l), 0);
    EXPECT_EQ(weft_wait_poll(&r1, &cx), WEFT_PENDING);
    EXPECT_EQ(weft_wait_poll(&r2, &cx), WEFT_PENDING);
    EXPECT_EQ(k.wakes.load(), 0);
    ASSERT_EQ(weft_rwlock_write_unlock(l), 0);
    EXPECT_EQ(k.wakes.load(), 2);  // both readers granted together
    EXPECT_EQ(weft_wait_poll(&r1, &cx), WEFT_READY);
    EXPECT_EQ(weft_wait_poll(&r2, &cx), WEFT_READY);
    EXPECT_EQ(weft_rwlock_try_write(l), WEFT_EAGAIN);  // two readers hold it
    EXPECT_EQ(weft_rwlock_read_unlock(l), 0);
    EXPECT_EQ(weft_rwlock_read_unlock(l), 0);
    EXPECT_EQ(weft_rwlock_read_unlock(l), WEFT_EINVAL);  // nobody holds it
    weft_wait_drop(&r1);
    weft_wait_drop(&r2);

    // write_blocking from another thread waits for the reader to leave.
    ASSERT_EQ(weft_rwlock_try_read(l), 0);
    std::atomic<int> got{1};
    std::thread t([&] { got.store(weft_rwlock_write_blocking(l)); });
    // The writer queues; then the reader leaves and hands it over.
    // (A try_read that succeeds before the writer queued is given back.)
    weft_test::spin_until([&] {
        int r = weft_rwlock_try_read(l);
        if (r == 0) {
            EXPECT_EQ(weft_rwlock_read_unlock(l), 0);
        }
        return r == WEFT_EAGAIN;
    });
    ASSERT_EQ(weft_rwlock_read_unlock(l), 0);
    t.join();
    EXPECT_EQ(got.load(), 0);
    EXPECT_EQ(weft_rwlock_write_unlock(l), 0);
    EXPECT_EQ(weft_rwlock_write_blocking(nullptr), WEFT_EINVAL);
    weft_rwlock_free(l);
    EXPECT_EQ(k.live(), 0);
}

// ---- channels -----------------------------------------------------------------------

struct DropLog {
    std::vector<uint32_t> seen;
};
void log_drop(void* elem, void* ctx) {
    uint32_t v;
    std::memcpy(&v, elem, sizeof v);
    static_cast<DropLog*>(ctx)->seen.push_back(v);
}

// Elements still queued when the channel goes are each passed to elem_drop
// once, in order: on the bounded ring and on the unbounded queue (grown past
// its first allocation).
TEST(CoverageChannel, QueuedElementsReachElemDropOnceAtFree) {
    for (uint64_t capacity : {uint64_t(16), uint64_t(0)}) {
        DropLog log;
        weft_channel_config cfg;
        weft_channel_config_init(&cfg, sizeof(uint32_t), capacity);
        cfg.elem_drop = log_drop;
        cfg.drop_ctx = &log;
        weft_mpsc_tx* tx = nullptr;
        weft_mpsc_rx* rx = nullptr;
        ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
        for (uint32_t i = 0; i < 12; i++) ASSERT_EQ(weft_mpsc_try_send(tx, &i), 0) << capacity;
        uint32_t first = 99;
        ASSERT_EQ(weft_mpsc_try_recv(rx, &first), 0);
        EXPECT_EQ(first, 0u);
        weft_mpsc_tx_free(tx);
        EXPECT_TRUE(log.seen.empty());  // the receiver still holds the channel
        weft_mpsc_rx_free(rx);
        ASSERT_EQ(log.seen.size(), 11u) << capacity;
        for (uint32_t i = 0; i < 11; i++) EXPECT_EQ(log.seen[i], i + 1) << capacity;
    }
}

// Odd and small element sizes round-trip byte for byte (each size has its
// own copy path).
TEST(CoverageChannel, ElementSizesRoundTrip) {
    for (size_t size : {size_t(1), size_t(2), size_t(3), size_t(16), size_t(24)}) {
        for (uint64_t capacity : {uint64_t(4), uint64_t(0)}) {
            weft_channel_config cfg;
            weft_channel_config_init(&cfg, size, capacity);
            weft_mpsc_tx* tx = nullptr;
            weft_mpsc_rx* rx = nullptr;
            ASSERT_EQ(weft_mpsc_new(&cfg, &tx, &rx), 0);
            unsigned char in[3][32], out[32];
            for (int k = 0; k < 3; k++) {
                for (size_t i = 0; i < size; i++) in[k][i] = (unsigned char)(0x11 * (k + 1) + i);
                ASSERT_EQ(weft_mpsc_try_send(tx, in[k]), 0);
            }
            for (int k = 0; k < 3; k++) {
                std::memset(out, 0xEE, sizeof out);
                ASSERT_EQ(weft_mpsc_try_recv(rx, out), 0);
                EXPECT_EQ(std::memcmp(out, in[k], size), 0) << size << " " << k;
                EXPECT_EQ(out[size], 0xEE) << size;  // nothing past the element
            }
            EXPECT_EQ(weft_mpsc_try_recv(rx, out), WEFT_EAGAIN);
            weft_mpsc_tx_free(tx);
            EXPECT_EQ(weft_mpsc_try_recv(rx, out), WEFT_ECLOSED);
            weft_mpsc_rx_free(rx);

            // The oneshot copies with the same routine.
            weft_oneshot_tx* otx = nullptr;
            weft_oneshot_rx* orx = nullptr;
            ASSERT_EQ(weft_oneshot_new(&cfg, &otx, &orx), 0);
            ASSERT_EQ(weft_oneshot_send(otx, in[1]), 0);
            std::memset(out, 0xEE, sizeof out);
            ASSERT_EQ(weft_oneshot_try_recv(orx, out), 0);
            EXPECT_EQ(std::memcmp(out, in[1], size), 0) << size;
            weft_oneshot_tx_free(otx);
            weft_oneshot_rx_free(orx);
        }
    }
}

// ---- runtime configuration and environment --------------------------------------------

TEST(CoverageRuntime, TooManyWorkersIsRefused) {
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = 1025;
    weft_runtime* rt = reinterpret_cast<weft_runtime*>(uintptr_t(1));
    EXPECT_EQ(weft_runtime_new(&cfg, &rt), WEFT_EINVAL);
}

// WEFT_PULSE=off|on overrides the program's choice; any other value is
// ignored.
TEST(CoverageRuntime, PulseEnvironmentOverridesTheConfig) {
    struct Case {
        const char* env;
        uint32_t config_mode;
        uint32_t expect;
    };
    const Case cases[] = {
        {"off", WEFT_PULSE_ON, WEFT_PULSE_OFF},
        {"on", WEFT_PULSE_OFF, WEFT_PULSE_ON},
        {"sideways", WEFT_PULSE_OFF, WEFT_PULSE_OFF},
    };
    for (const Case& c : cases) {
        weft_pulse_status probe;
        std::memset(&probe, 0, sizeof probe);
        {
            ScopedEnv env("WEFT_PULSE", c.env);
            weft_pulse_config pc;
            weft_pulse_config_init(&pc);
            pc.mode = c.config_mode;
            weft_runtime_config cfg;
            weft_runtime_config_init(&cfg);
            cfg.workers = 1;
            cfg.pulse = &pc;
            weft_runtime* rt = nullptr;
            ASSERT_EQ(weft_runtime_new(&cfg, &rt), 0) << c.env;
            probe.size = sizeof probe;
            ASSERT_EQ(weft_runtime_pulse_status(rt, &probe), 0);
            EXPECT_EQ(weft_runtime_free(rt), 0);
        }
        if (probe.compiled) {
            EXPECT_EQ(probe.mode, c.expect) << c.env;
        } else {
            EXPECT_EQ(probe.mode, (uint32_t)WEFT_PULSE_OFF) << c.env;
        }
        if (probe.mode == WEFT_PULSE_OFF) {
            EXPECT_EQ(probe.handoff, 0u) << c.env;
            EXPECT_NE(std::strlen(probe.handoff_note), 0u) << c.env;
        }
    }
}

TEST(CoverageRuntime, TimerPollWithoutAWakerIsRefused) {
    weft_runtime* rt = new_runtime(1);
    ASSERT_NE(rt, nullptr);
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, rt), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 3600ll * 1000000000ll), 0);
    EXPECT_EQ(weft_timer_poll(&t, nullptr), WEFT_EINVAL);
    weft_context empty{weft_waker{nullptr, nullptr}};
    EXPECT_EQ(weft_timer_poll(&t, &empty), WEFT_EINVAL);
    EXPECT_EQ(weft_timer_poll(nullptr, &empty), WEFT_EINVAL);
    CountingWaker k;
    weft_context cx = k.cx();
    EXPECT_EQ(weft_timer_poll(&t, &cx), WEFT_PENDING);  // the refusals left it usable
    EXPECT_EQ(k.live(), 1);
    weft_timer_cancel(&t);
    EXPECT_EQ(k.live(), 0);
    EXPECT_EQ(k.wakes.load(), 0);
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// The runtime's name is a Prometheus label value: valid UTF-8 up to U+10FFFF
// passes through, a 4-byte sequence past it becomes U+FFFD per byte.
TEST(CoverageMetrics, NameAtTheTopOfUnicodeIsCheckedAsUtf8) {
    struct Case {
        const char* name;
        const char* label;
    };
    const Case cases[] = {
        {"a\xF4\x8F\xBF\xBF", "runtime=\"a\xF4\x8F\xBF\xBF\""},
        {"a\xF4\x90\x80\x80",
         "runtime=\"a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},
    };
    for (const Case& c : cases) {
        weft_runtime* rt = new_runtime(1, c.name);
        ASSERT_NE(rt, nullptr);
        size_t len = 0;
        ASSERT_EQ(weft_metrics_prometheus(rt, nullptr, 0, &len), WEFT_EAGAIN);
        std::string text(len + 1, '\0');
        ASSERT_EQ(weft_metrics_prometheus(rt, text.data(), text.size(), &len), 0);
        text.resize(len);
        EXPECT_NE(text.find(c.label), std::string::npos) << text.substr(0, 400);
        EXPECT_EQ(weft_runtime_free(rt), 0);
    }
}

// ---- I/O ------------------------------------------------------------------------------

// Runs body(rt) on a one-worker runtime for each backend that can be used
// here (io_uring, epoll), forced through WEFT_IO. Returns how many ran.
template <class F>
int for_each_backend(F body) {
    int ran = 0;
    for (const char* which : {"uring", "epoll"}) {
        weft_runtime* rt = nullptr;
        {
            ScopedEnv env("WEFT_IO", which);
            weft_runtime_config cfg;
            weft_runtime_config_init(&cfg);
            cfg.workers = 1;
            cfg.name = "wcovio";
            int r = weft_runtime_new(&cfg, &rt);
            if (r != 0) {
                // io_uring unusable here: only epoll is ever refused.
                EXPECT_STREQ(which, "uring") << weft_strerror(r);
                continue;
            }
        }
        int want = std::strcmp(which, "uring") == 0 ? WEFT_IO_URING : WEFT_IO_EPOLL;
        EXPECT_EQ(weft_runtime_io_backend(rt), want);
        body(rt, which);
        EXPECT_EQ(weft_runtime_free(rt), 0);
        ran++;
    }
    return ran;
}

int64_t run_op(weft_io_op* op) {
    int64_t result = INT64_MIN;
    EXPECT_EQ(weft_io_op_wait(op, &result), 0);
    weft_io_op_free(op);
    return result;
}

// weft_io_shutdown(SHUT_WR) ends the stream for the peer (it reads EOF) and
// leaves the fd open for reading; weft_io_close closes the fd.
TEST(CoverageIo, ShutdownAndCloseOnEveryBackend) {
    int ran = for_each_backend([](weft_runtime* rt, const char* which) {
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        weft_io_op* op = nullptr;
        ASSERT_EQ(weft_io_shutdown(rt, sv[0], SHUT_WR, &op), 0);
        EXPECT_EQ(run_op(op), 0) << which;
        char c = 0;
        EXPECT_EQ(read(sv[1], &c, 1), 0) << which;  // EOF
        // Still readable from the other direction.
        ASSERT_EQ(write(sv[1], "x", 1), 1);
        char buf[4] = {};
        ASSERT_EQ(weft_io_recv(rt, sv[0], buf, sizeof buf, nullptr, 0, &op), 0);
        EXPECT_EQ(run_op(op), 1) << which;
        EXPECT_EQ(buf[0], 'x');

        ASSERT_EQ(weft_io_close(rt, sv[0], &op), 0);
        EXPECT_EQ(run_op(op), 0) << which;
        errno = 0;
        EXPECT_EQ(fcntl(sv[0], F_GETFD), -1) << which;
        EXPECT_EQ(errno, EBADF) << which;
        // The peer now sees the whole connection gone.
        EXPECT_EQ(read(sv[1], &c, 1), 0) << which;

        // A second close of the same (now free) fd number fails like close(2).
        ASSERT_EQ(weft_io_close(rt, sv[0], &op), 0);
        EXPECT_EQ(run_op(op), -EBADF) << which;
        // Shutdown of a socket that is not connected.
        int s = weft_io_socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_GE(s, 0);
        ASSERT_EQ(weft_io_shutdown(rt, s, SHUT_RDWR, &op), 0);
        EXPECT_EQ(run_op(op), -ENOTCONN) << which;
        close(s);
        close(sv[1]);
    });
    EXPECT_GE(ran, 1);
}

// On epoll, weft_io_close of an fd that another operation waits on wakes
// that operation (io_uring keeps its own reference to the file, so the
// waiter is freed, which cancels it, before the close there).
TEST(CoverageIo, CloseWakesAWaiterOnTheSameFd) {
    int ran = for_each_backend([](weft_runtime* rt, const char* which) {
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        weft_io_op* waiter = nullptr;
        ASSERT_EQ(weft_io_poll_ready(rt, sv[0], POLLIN, &waiter), 0);
        CountingWaker k;
        weft_context cx = k.cx();
        int64_t result = INT64_MIN;
        ASSERT_EQ(weft_io_op_poll(waiter, &cx, &result), WEFT_PENDING) << which;
        bool epoll = std::strcmp(which, "epoll") == 0;
        if (!epoll) {
            weft_io_op_free(waiter);
            waiter = nullptr;
        }
        weft_io_op* op = nullptr;
        ASSERT_EQ(weft_io_close(rt, sv[0], &op), 0);
        EXPECT_EQ(run_op(op), 0) << which;
        if (epoll) {
            ASSERT_TRUE(weft_test::wait_for([&] { return k.wakes.load() > 0; })) << which;
            weft_io_op_free(waiter);
        }
        close(sv[1]);
        ASSERT_TRUE(weft_test::wait_for([&] { return k.live() == 0; })) << which << " live " << k.live();
    });
    EXPECT_GE(ran, 1);
}

TEST(CoverageIo, BadArgumentsAreRefusedAndClearOut) {
    weft_runtime* rt = new_runtime(1);
    ASSERT_NE(rt, nullptr);
    weft_io_op* sentinel = reinterpret_cast<weft_io_op*>(uintptr_t(0x1000));
    weft_io_op* op = sentinel;
    EXPECT_EQ(weft_io_accept(rt, 0, 2u, &op), WEFT_EINVAL);  // an unknown flag
    EXPECT_EQ(op, nullptr);
    EXPECT_EQ(weft_io_accept(rt, 0, 2u, nullptr), WEFT_EINVAL);
    op = sentinel;
    EXPECT_EQ(weft_io_connect(rt, 0, nullptr, 16, &op), WEFT_EINVAL);
    EXPECT_EQ(op, nullptr);
    EXPECT_EQ(weft_io_connect(rt, 0, nullptr, 16, nullptr), WEFT_EINVAL);
    op = sentinel;
    EXPECT_EQ(weft_io_shutdown(rt, 0, 99, &op), WEFT_EINVAL);  // not SHUT_RD/WR/RDWR
    EXPECT_EQ(op, nullptr);
    EXPECT_EQ(weft_io_shutdown(rt, 0, 99, nullptr), WEFT_EINVAL);
    op = sentinel;
    EXPECT_EQ(weft_io_close(rt, -1, &op), WEFT_EINVAL);
    EXPECT_EQ(op, nullptr);
    op = sentinel;
    EXPECT_EQ(weft_io_shutdown(rt, -1, SHUT_RD, &op), WEFT_EINVAL);
    EXPECT_EQ(op, nullptr);
    op = sentinel;
    EXPECT_EQ(weft_io_poll_ready(rt, 0, 0x10000u, &op), WEFT_EINVAL);
    EXPECT_EQ(op, nullptr);
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// WEFT_IO with a value that is neither uring nor epoll is ignored (with a
// line on stderr): the runtime starts on the backend it would have chosen.
TEST(CoverageIo, UnknownWeftIoValueIsIgnored) {
    int plain = 0;
    {
        ScopedEnv env("WEFT_IO", nullptr);
        weft_runtime* rt = new_runtime(1);
        ASSERT_NE(rt, nullptr);
        plain = weft_runtime_io_backend(rt);
        EXPECT_EQ(weft_runtime_free(rt), 0);
    }
    ScopedEnv env("WEFT_IO", "kqueue");
    testing::internal::CaptureStderr();
    weft_runtime* rt = new_runtime(1);
    std::string err = testing::internal::GetCapturedStderr();
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(weft_runtime_io_backend(rt), plain);
    EXPECT_NE(err.find("WEFT_IO must be 'uring' or 'epoll'"), std::string::npos) << err;
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// A status says epoll, for a reason that mentions `because`.
void expect_epoll_because(const weft_io_status& st, const char* because) {
    EXPECT_EQ(st.backend, WEFT_IO_EPOLL);
    ASSERT_NE(st.why, nullptr);
    EXPECT_NE(std::strstr(st.why, because), nullptr) << st.why;
}

// The I/O status of a fresh 1-worker runtime.
weft_io_status runtime_io_status_of_fresh_runtime() {
    weft_io_status st{};
    st.size = sizeof st;
    weft_runtime* rt = new_runtime(1);
    EXPECT_NE(rt, nullptr);
    if (!rt) return st;
    EXPECT_EQ(weft_runtime_io_status(rt, &st), 0);
    EXPECT_EQ(weft_runtime_free(rt), 0);
    return st;
}

// Under Valgrind (seen as its core preload library in LD_PRELOAD) a runtime
// and a thread-per-core executor use epoll, and say why: a thread waiting in
// io_uring_enter would stop every other thread there (kernel/io.cpp,
// under_valgrind). WEFT_IO still decides when set.
TEST(CoverageIo, UnderValgrindEpollIsChosenUnlessWeftIoSaysOtherwise) {
    ScopedEnv io("WEFT_IO", nullptr);
    // Really under Valgrind: a runtime on io_uring would hang this process
    // (the very thing tested), so do not make one.
    const char* real_preload = getenv("LD_PRELOAD");
    bool really_valgrind = real_preload && std::strstr(real_preload, "/vgpreload_core-");
    bool uring_here = false;
    if (!really_valgrind) {
        ScopedEnv preload("LD_PRELOAD", nullptr);
        uring_here = runtime_io_status_of_fresh_runtime().backend == WEFT_IO_URING;
    }
    ScopedEnv preload("LD_PRELOAD", "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so:"
                                    "/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so");
    expect_epoll_because(runtime_io_status_of_fresh_runtime(), "Valgrind");

    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    weft_io_status tst{};
    tst.size = sizeof tst;
    ASSERT_EQ(weft_tpc_io_status(ex, &tst), 0);
    expect_epoll_because(tst, "Valgrind");
    EXPECT_EQ(weft_tpc_free(ex), 0);

    {
        // WEFT_IO=epoll: epoll, and the reason given is the variable's.
        ScopedEnv forced("WEFT_IO", "epoll");
        expect_epoll_because(runtime_io_status_of_fresh_runtime(), "WEFT_IO=epoll");
    }
    // WEFT_IO=uring: the ring, where this machine has one (not checkable
    // where it has none, or under a real Valgrind).
    if (!uring_here) return;
    ScopedEnv forced("WEFT_IO", "uring");
    EXPECT_EQ(runtime_io_status_of_fresh_runtime().backend, WEFT_IO_URING);
}

// A pending operation polled again with another waker: that waker gets the
// completion, the first is released unwoken.
TEST(CoverageIo, RepollWithAnotherWakerMovesTheWake) {
    int ran = for_each_backend([](weft_runtime* rt, const char* which) {
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        char buf[8] = {};
        weft_io_op* op = nullptr;
        ASSERT_EQ(weft_io_recv(rt, sv[0], buf, sizeof buf, nullptr, 0, &op), 0);
        CountingWaker a, b;
        weft_context cxa = a.cx(), cxb = b.cx();
        int64_t result = INT64_MIN;
        ASSERT_EQ(weft_io_op_poll(op, &cxa, &result), WEFT_PENDING) << which;
        ASSERT_EQ(weft_io_op_poll(op, &cxa, &result), WEFT_PENDING) << which;
        EXPECT_EQ(a.clones.load(), 1) << which;
        ASSERT_EQ(weft_io_op_poll(op, &cxb, &result), WEFT_PENDING) << which;
        EXPECT_EQ(a.live(), 0) << which;
        ASSERT_EQ(write(sv[1], "hey", 3), 3);
        ASSERT_TRUE(weft_test::wait_for([&] { return b.wakes.load() > 0; })) << which;
        int r = WEFT_PENDING;
        ASSERT_TRUE(weft_test::wait_for([&] { return (r = weft_io_op_poll(op, &cxb, &result)) != WEFT_PENDING; }))
            << which;
        EXPECT_EQ(r, WEFT_READY) << which;
        EXPECT_EQ(result, 3) << which;
        EXPECT_EQ(std::memcmp(buf, "hey", 3), 0) << which;
        EXPECT_EQ(a.wakes.load(), 0) << which;
        weft_io_op_free(op);
        close(sv[0]);
        close(sv[1]);
        ASSERT_TRUE(weft_test::wait_for([&] { return b.live() == 0; })) << which;
    });
    EXPECT_GE(ran, 1);
}

// Readiness of a regular file: readable at once on both backends; a wait
// for what a file never reports fails with -EPERM on epoll, which refuses
// regular files.
TEST(CoverageIo, PollReadyOnARegularFile) {
    int ran = for_each_backend([](weft_runtime* rt, const char* which) {
        FILE* f = tmpfile();
        ASSERT_NE(f, nullptr);
        weft_io_op* op = nullptr;
        ASSERT_EQ(weft_io_poll_ready(rt, fileno(f), POLLIN, &op), 0);
        int64_t result = run_op(op);
        EXPECT_EQ(result & POLLIN, POLLIN) << which << " " << result;  // always readable
        if (std::strcmp(which, "epoll") == 0) {
            // POLLPRI never holds for a file, so the wait goes to epoll,
            // which refuses regular files: the operation fails with it.
            ASSERT_EQ(weft_io_poll_ready(rt, fileno(f), POLLPRI, &op), 0);
            EXPECT_EQ(run_op(op), -EPERM);
        }
        fclose(f);
    });
    EXPECT_GE(ran, 1);
}

// An operation created on a runtime and first polled after the runtime was
// freed completes with WEFT_ECLOSED (no driver will ever serve it), and can
// still be freed.
TEST(CoverageIo, OperationStartedAfterTheRuntimeIsFreedIsClosed) {
    for (const char* which : {"uring", "epoll"}) {
        weft_runtime* rt = nullptr;
        {
            ScopedEnv env("WEFT_IO", which);
            weft_runtime_config cfg;
            weft_runtime_config_init(&cfg);
            cfg.workers = 1;
            if (weft_runtime_new(&cfg, &rt) != 0) continue;
        }
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        char buf[4];
        weft_io_op* op = nullptr;
        ASSERT_EQ(weft_io_recv(rt, sv[0], buf, sizeof buf, nullptr, 0, &op), 0);
        EXPECT_EQ(weft_runtime_free(rt), 0);
        int64_t result = 0;
        EXPECT_EQ(weft_io_op_wait(op, &result), 0) << which;
        EXPECT_EQ(result, WEFT_ECLOSED) << which;
        weft_io_op_free(op);
        close(sv[0]);
        close(sv[1]);
    }
}

// weft_io_tcp_listen on a port that a listener already holds fails with
// -EADDRINUSE (SO_REUSEADDR only reuses TIME_WAIT ports) and leaks no fd.
TEST(CoverageIo, TcpListenOnAPortInUseFails) {
    uint16_t port = 0;
    int fd = weft_io_tcp_listen("127.0.0.1", 0, 16, &port);
    ASSERT_GE(fd, 0) << weft_strerror(fd);
    ASSERT_NE(port, 0);
    int probe = dup(0);  // the lowest free fd number now
    ASSERT_GE(probe, 0);
    close(probe);
    uint16_t again = 0;
    EXPECT_EQ(weft_io_tcp_listen("localhost", port, 16, &again), -EADDRINUSE);
    int after = dup(0);  // the failed call closed its socket: the same number is free
    EXPECT_EQ(after, probe);
    close(after);
    close(fd);
}

// ---- thread-per-core executor -----------------------------------------------------------

int ready_at_once(void*, weft_context*, void*) { return WEFT_READY; }

// A timer of the executor polled again by its owner: the same waker is kept
// (no clone), another replaces it (the old one released unwoken). A cancel
// from another thread is refused with a line on stderr and leaves it
// registered; the owner's cancel then releases the waker.
TEST(CoverageTpc, TimerRepollAndForeignCancel) {
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    weft_timer t;
    ASSERT_EQ(weft_timer_init(&t, nullptr), 0);
    ASSERT_EQ(weft_timer_sleep_for(&t, 3600ll * 1000000000ll), 0);
    CountingWaker a, b;
    weft_context cxa = a.cx(), cxb = b.cx();
    EXPECT_EQ(weft_timer_poll(&t, &cxa), WEFT_PENDING);
    EXPECT_EQ(weft_timer_poll(&t, &cxa), WEFT_PENDING);
    EXPECT_EQ(a.clones.load(), 1);
    EXPECT_EQ(weft_timer_poll(&t, &cxb), WEFT_PENDING);
    EXPECT_EQ(a.live(), 0);
    EXPECT_EQ(a.wakes.load(), 0);
    EXPECT_EQ(b.live(), 1);

    testing::internal::CaptureStderr();
    std::thread([&] { weft_timer_cancel(&t); }).join();
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("thread-per-core timer cancelled, reset or re-initialised from a thread other"), std::string::npos) << err;
    EXPECT_EQ(b.live(), 1);  // still registered
    weft_timer_cancel(&t);
    EXPECT_EQ(b.live(), 0);
    EXPECT_EQ(b.wakes.load(), 0);
    EXPECT_EQ(weft_tpc_free(ex), 0);
}

// A join handle of a task that completed: polling it is READY at once (no
// waker kept), and its output can be taken.
TEST(CoverageTpc, JoinPollOfACompletedTaskIsReady) {
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    struct Out {
        static int poll(void*, weft_context*, void* out) {
            *static_cast<int*>(out) = 7;
            return WEFT_READY;
        }
    };
    weft_task_desc d{sizeof(d), Out::poll, nullptr, nullptr, sizeof(int)};
    weft_join* j = nullptr;
    ASSERT_EQ(weft_tpc_spawn(ex, &d, &j), 0);
    weft_task_desc quick{sizeof(quick), ready_at_once, nullptr, nullptr, 0};
    ASSERT_EQ(weft_tpc_block_on(ex, &quick, nullptr), 0);  // runs the queued task first
    CountingWaker k;
    weft_context cx = k.cx();
    EXPECT_EQ(weft_join_poll(j, &cx), WEFT_READY);
    EXPECT_EQ(k.clones.load(), 0);
    int v = 0;
    EXPECT_EQ(weft_join_take(j, &v, sizeof v), 0);
    EXPECT_EQ(v, 7);
    weft_join_free(j);
    EXPECT_EQ(weft_tpc_free(ex), 0);
}

// weft_tpc_block_on_task from inside a block_on is refused (it would nest the
// executor's loop): WEFT_EDEADLK, and the state is released (drop_future once).
struct NestProbe {
    weft_tpc* ex;
    int nested = 1;
    std::atomic<int> drops{0};
};
int nested_state_poll(void*, weft_context*) { return WEFT_READY; }
void nested_state_drop(void* state) { (*static_cast<NestProbe**>(state))->drops.fetch_add(1); }
const weft_task_vtable nested_vtable = {nested_state_poll, nested_state_drop, nullptr};

TEST(CoverageTpc, NestedBlockOnTaskIsRefused) {
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    NestProbe probe;
    probe.ex = ex;
    struct Outer {
        static int poll(void* data, weft_context*, void*) {
            auto* p = static_cast<NestProbe*>(data);
            void* st = weft_task_alloc(sizeof(NestProbe*), &nested_vtable);
            if (!st) return WEFT_READY;
            *static_cast<NestProbe**>(st) = p;
            weft_join* j = reinterpret_cast<weft_join*>(uintptr_t(1));
            p->nested = weft_tpc_block_on_task(p->ex, st, &j);
            if (j != nullptr) p->nested = 12345;  // *join must be cleared
            return WEFT_READY;
        }
    };
    weft_task_desc d{sizeof(d), Outer::poll, nullptr, &probe, 0};
    ASSERT_EQ(weft_tpc_block_on(ex, &d, nullptr), 0);
    EXPECT_EQ(probe.nested, WEFT_EDEADLK);
    EXPECT_EQ(probe.drops.load(), 1);
    EXPECT_EQ(weft_tpc_free(ex), 0);
}

// Join handle rules on the executor: a poll with another waker replaces the
// kept one (released unwoken); a free from another thread is refused with a
// line on stderr and leaves the handle usable, so the owner can still abort
// and free it (the task's drop runs once, the waker is released).
TEST(CoverageTpc, JoinWakerReplacedAndForeignFreeRefused) {
    weft_tpc* ex = nullptr;
    ASSERT_EQ(weft_tpc_new(nullptr, &ex), 0);
    struct Never {
        std::atomic<int> drops{0};
        static int poll(void*, weft_context*, void*) { return WEFT_PENDING; }
        static void drop(void* d) { static_cast<Never*>(d)->drops.fetch_add(1); }
    } never;
    weft_task_desc d{sizeof(d), Never::poll, Never::drop, &never, 0};
    weft_join* j = nullptr;
    ASSERT_EQ(weft_tpc_spawn(ex, &d, &j), 0);
    CountingWaker a, b;
    weft_context cxa = a.cx(), cxb = b.cx();
    EXPECT_EQ(weft_join_poll(j, &cxa), WEFT_PENDING);
    EXPECT_EQ(weft_join_poll(j, &cxa), WEFT_PENDING);
    EXPECT_EQ(a.clones.load(), 1);
    EXPECT_EQ(weft_join_poll(j, &cxb), WEFT_PENDING);
    EXPECT_EQ(a.live(), 0);
    EXPECT_EQ(a.wakes.load(), 0);
    EXPECT_EQ(b.live(), 1);

    testing::internal::CaptureStderr();
    int status_elsewhere = 0;
    std::thread([&] {
        status_elsewhere = weft_join_status(j);
        weft_join_free(j);
    }).join();
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(status_elsewhere, WEFT_EINVAL);
    EXPECT_NE(err.find("weft_join_free on a thread-per-core task from a thread other"), std::string::npos) << err;
    EXPECT_EQ(weft_join_status(j), WEFT_EAGAIN);  // still the owner's, still pending
    EXPECT_EQ(weft_join_abort(j), 0);  // queued: dropped when dequeued
    weft_task_desc quick{sizeof(quick), ready_at_once, nullptr, nullptr, 0};
    ASSERT_EQ(weft_tpc_block_on(ex, &quick, nullptr), 0);
    EXPECT_EQ(never.drops.load(), 1);
    EXPECT_EQ(weft_join_status(j), WEFT_ECANCELED);
    EXPECT_EQ(b.wakes.load(), 1);  // the completion woke the kept waker
    weft_join_free(j);
    EXPECT_EQ(b.live(), 0);
    EXPECT_EQ(weft_tpc_free(ex), 0);
    EXPECT_EQ(never.drops.load(), 1);
}

}  // namespace
