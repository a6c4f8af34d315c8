// tests/test_sync_kernel.cpp — the kernel sync primitives driven directly,
// single-threaded and deterministic: WakeList, the batch semaphore and the
// bounded/unbounded channel against sequential models (RapidCheck), every
// waiter state under cancellation, close while waiting, fairness, Notify's
// permit and generation rules, and the wakers' reference counts (no waker is
// leaked or consumed twice on any path).
//
// Why: the semaphore is the base of every lock and of bounded channels; its
// FIFO assignment, partial grants and cancel-returns-permits rules are easy
// to get subtly wrong and hard to hit with threads. A model check explores
// thousands of operation orders in milliseconds, and shrinks a failure to a
// minimal sequence.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "../kernel/semaphore.h"
#include "../kernel/sync/channel.h"
#include "../kernel/sync/notify.h"
#include "../kernel/sync/thread_signal.h"
#include "../kernel/wake_list.h"

using weft::kernel::SemWaiter;
using weft::kernel::Semaphore;
using weft::kernel::WakeList;
using weft::kernel::sync::Chan;
using weft::kernel::sync::Notify;
using weft::kernel::sync::NotifyWaiter;
using weft::kernel::sync::SendWaiter;
using weft::kernel::sync::SpinPolicy;
using weft::kernel::sync::ThreadSignal;

namespace {

// A waker that counts: clones add a reference, wake/drop remove one.
struct Counter {
    int refs = 0;   // live clones
    int wakes = 0;  // wake + wake_by_ref calls
};
weft_waker counter_clone(const void* p);
void counter_wake(const void* p) {
    auto* c = static_cast<Counter*>(const_cast<void*>(p));
    c->wakes++;
    c->refs--;
}
void counter_wake_by_ref(const void* p) { static_cast<Counter*>(const_cast<void*>(p))->wakes++; }
void counter_drop(const void* p) { static_cast<Counter*>(const_cast<void*>(p))->refs--; }
const weft_waker_vtable counter_vtable = {counter_clone, counter_wake, counter_wake_by_ref, counter_drop};
weft_waker counter_clone(const void* p) {
    static_cast<Counter*>(const_cast<void*>(p))->refs++;
    return weft_waker{p, &counter_vtable};
}
// A borrowed waker (as a weft_context carries it).
weft_waker borrowed(Counter* c) { return weft_waker{c, &counter_vtable}; }

// ---- WakeList ------------------------------------------------------------------------

TEST(WakeList, WakesEveryWakerOnceInOrder) {
    Counter c[WakeList::CAPACITY];
    {
        WakeList l;
        for (auto& k : c) {
            ASSERT_TRUE(l.can_push());
            l.push(counter_clone(&k));
        }
        EXPECT_FALSE(l.can_push());
        EXPECT_EQ(l.size(), WakeList::CAPACITY);
        l.wake_all();
        EXPECT_TRUE(l.empty());
        EXPECT_TRUE(l.can_push());
    }
    for (auto& k : c) {
        EXPECT_EQ(k.wakes, 1);
        EXPECT_EQ(k.refs, 0);
    }
}

TEST(WakeList, GuardWakesWhatWasLeft) {
    Counter a, b;
    {
        WakeList l;
        l.push(counter_clone(&a));
        l.push(counter_clone(&b));
        l.push(weft_waker{nullptr, nullptr});  // ignored
        // the owner returns early: the destructor wakes them
    }
    EXPECT_EQ(a.wakes, 1);
    EXPECT_EQ(b.wakes, 1);
    EXPECT_EQ(a.refs + b.refs, 0);
}

// A waker whose wake pushes into... nothing: checks re-entrancy safety: a
// wake that runs wake_all on the same list again must not double-wake.
struct Reentrant {
    WakeList* list;
    int wakes = 0;
};
void re_wake(const void* p) {
    auto* r = static_cast<Reentrant*>(const_cast<void*>(p));
    r->wakes++;
    r->list->wake_all();  // the entry was removed before this call
}
void re_nop(const void*) {}
weft_waker re_clone(const void* p);
const weft_waker_vtable re_vtable = {re_clone, re_wake, re_wake, re_nop};
weft_waker re_clone(const void* p) { return weft_waker{p, &re_vtable}; }

TEST(WakeList, EntryIsRemovedBeforeItsWakeRuns) {
    WakeList l;
    Reentrant r1{&l}, r2{&l};
    l.push(weft_waker{&r1, &re_vtable});
    l.push(weft_waker{&r2, &re_vtable});
    l.wake_all();
    EXPECT_EQ(r1.wakes, 1);
    EXPECT_EQ(r2.wakes, 1);
}

// ---- semaphore: targeted cases ----------------------------------------------------------

TEST(Semaphore, FastPathAndQueue) {
    Semaphore s(3);
    EXPECT_EQ(s.try_acquire(2), 0);
    EXPECT_EQ(s.available(), 1u);
    Counter c;
    weft_waker w = borrowed(&c);
    SemWaiter a;
    EXPECT_EQ(s.poll_acquire(&a, 3, &w), WEFT_PENDING);  // takes the 1 free permit, waits for 2
    EXPECT_TRUE(s.has_waiters());
    EXPECT_EQ(s.available(), 0u);
    EXPECT_EQ(c.refs, 1);
    EXPECT_EQ(s.try_acquire(1), WEFT_EAGAIN) << "FIFO: a newcomer may not pass a queued waiter";
    EXPECT_EQ(s.release(1), 0);
    EXPECT_EQ(c.wakes, 0) << "partially served: not woken";
    EXPECT_EQ(s.release(2), 0);  // one to finish a, one to the counter
    EXPECT_EQ(c.wakes, 1);
    EXPECT_EQ(c.refs, 0);
    EXPECT_EQ(s.poll_acquire(&a, 3, &w), WEFT_READY);
    EXPECT_FALSE(s.has_waiters());
    EXPECT_EQ(s.available(), 1u);
}

TEST(Semaphore, LargeAcquireIsNotStarvedByAFloodOfSmallOnes) {
    // 100 permits in total, handed around by 1-permit holders that release
    // and immediately re-acquire; a 100-permit acquire queued behind them
    // must complete once the current holders are done, since the
    // re-acquires queue behind it.
    Semaphore s(100);
    for (int i = 0; i < 100; i++) ASSERT_EQ(s.try_acquire(1), 0);
    Counter big_c;
    weft_waker big_w = borrowed(&big_c);
    SemWaiter big;
    ASSERT_EQ(s.poll_acquire(&big, 100, &big_w), WEFT_PENDING);
    std::deque<std::unique_ptr<SemWaiter>> small;
    Counter small_c;
    weft_waker small_w = borrowed(&small_c);
    for (int i = 0; i < 100; i++) {
        s.release(1);  // a holder finishes...
        auto w = std::make_unique<SemWaiter>();
        EXPECT_EQ(s.poll_acquire(w.get(), 1, &small_w), WEFT_PENDING) << "...and its re-acquire waits behind the big one";
        small.push_back(std::move(w));
    }
    EXPECT_EQ(big_c.wakes, 1);
    EXPECT_EQ(s.poll_acquire(&big, 100, &big_w), WEFT_READY);
    EXPECT_EQ(small_c.wakes, 0);
    s.release(100);
    EXPECT_EQ(small_c.wakes, 100) << "more than one WakeList batch";
    for (auto& w : small) EXPECT_EQ(s.poll_acquire(w.get(), 1, &small_w), WEFT_READY);
    EXPECT_EQ(s.available(), 0u);
    EXPECT_EQ(small_c.refs + big_c.refs, 0);
}

TEST(Semaphore, CancelInEveryWaiterState) {
    Semaphore s(0);
    Counter c;
    weft_waker w = borrowed(&c);
    // idle (never polled)
    SemWaiter idle;
    s.cancel(&idle);
    // queued, nothing assigned
    SemWaiter q;
    ASSERT_EQ(s.poll_acquire(&q, 5, &w), WEFT_PENDING);
    s.cancel(&q);
    EXPECT_FALSE(s.has_waiters());
    EXPECT_EQ(c.refs, 0) << "the stored waker is dropped";
    // queued, partially assigned: its permits go to the next waiter
    SemWaiter part, next;
    ASSERT_EQ(s.poll_acquire(&part, 5, &w), WEFT_PENDING);
    ASSERT_EQ(s.poll_acquire(&next, 2, &w), WEFT_PENDING);
    s.release(3);  // part has 3 of 5
    EXPECT_EQ(c.wakes, 0);
    s.cancel(&part);  // 3 back: next (needs 2) completes, 1 goes to the counter
    EXPECT_EQ(c.wakes, 1);
    EXPECT_EQ(s.poll_acquire(&next, 2, &w), WEFT_READY);
    EXPECT_EQ(s.available(), 1u);
    // assigned but never observed: everything goes back
    SemWaiter unseen;
    ASSERT_EQ(s.poll_acquire(&unseen, 4, &w), WEFT_PENDING);
    s.release(3);
    EXPECT_EQ(c.wakes, 2);
    s.cancel(&unseen);
    EXPECT_EQ(s.available(), 4u);
    // finished: nothing
    s.cancel(&next);
    EXPECT_EQ(s.available(), 4u);
    EXPECT_EQ(c.refs, 0);
}

TEST(Semaphore, RepollWithAnotherWakerSwapsIt) {
    Semaphore s(0);
    Counter a, b;
    weft_waker wa = borrowed(&a), wb = borrowed(&b);
    SemWaiter x;
    ASSERT_EQ(s.poll_acquire(&x, 1, &wa), WEFT_PENDING);
    ASSERT_EQ(s.poll_acquire(&x, 1, &wa), WEFT_PENDING);  // spurious: same waker, no clone
    EXPECT_EQ(a.refs, 1);
    ASSERT_EQ(s.poll_acquire(&x, 1, &wb), WEFT_PENDING);  // moved to another task
    EXPECT_EQ(a.refs, 0);
    EXPECT_EQ(b.refs, 1);
    s.release(1);
    EXPECT_EQ(a.wakes, 0);
    EXPECT_EQ(b.wakes, 1);
    EXPECT_EQ(s.poll_acquire(&x, 1, &wb), WEFT_READY);
}

TEST(Semaphore, CloseWakesEveryWaiterWithAnError) {
    Semaphore s(1);
    Counter c;
    weft_waker w = borrowed(&c);
    std::vector<std::unique_ptr<SemWaiter>> ws;
    for (int i = 0; i < 70; i++) {  // more than two WakeList batches
        ws.push_back(std::make_unique<SemWaiter>());
        ASSERT_EQ(s.poll_acquire(ws.back().get(), 2, &w), WEFT_PENDING);
    }
    s.close();
    EXPECT_EQ(c.wakes, 70);
    EXPECT_EQ(c.refs, 0);
    for (auto& x : ws) EXPECT_EQ(s.poll_acquire(x.get(), 2, &w), WEFT_ECLOSED);
    EXPECT_EQ(s.try_acquire(1), WEFT_ECLOSED);
    SemWaiter late;
    EXPECT_EQ(s.poll_acquire(&late, 1, &w), WEFT_ECLOSED);
    for (auto& x : ws) s.cancel(x.get());  // harmless after close
    EXPECT_EQ(c.refs, 0);
}

// A waker whose clone runs code against the semaphore itself: the foreign
// clone runs between the acquire's failed fast path and its queueing
// (poll_acquire_slow clones outside the lock), which makes that window, a
// race between threads otherwise, deterministic.
struct MeddlingWaker {
    Semaphore* sem;
    bool close;  // false: release one permit
    int clones = 0, drops = 0;
};
weft_waker meddling_clone(const void* p);
void meddling_drop(const void* p) { static_cast<MeddlingWaker*>(const_cast<void*>(p))->drops++; }
const weft_waker_vtable meddling_vtable = {meddling_clone, meddling_drop, [](const void*) {}, meddling_drop};
weft_waker meddling_clone(const void* p) {
    auto* m = static_cast<MeddlingWaker*>(const_cast<void*>(p));
    if (m->clones++ == 0) {
        if (m->close) m->sem->close();
        else EXPECT_EQ(m->sem->release(1), 0);
    }
    return weft_waker{p, &meddling_vtable};
}

// Polls a 1-permit acquire of s (whose one permit is taken first) with m's
// waker; m's clone meddles in the window.
int poll_with_meddler(Semaphore& s, MeddlingWaker& m, SemWaiter* a) {
    EXPECT_EQ(s.try_acquire(1), 0);
    weft_waker w{&m, &meddling_vtable};
    int r = s.poll_acquire(a, 1, &w);
    EXPECT_FALSE(s.has_waiters());
    EXPECT_EQ(m.clones, 1);
    EXPECT_EQ(m.drops, 1) << "the clone the waiter did not keep is dropped";
    return r;
}

TEST(Semaphore, PermitsFreedBeforeTheWaiterQueuesAreTakenWithoutWaiting) {
    Semaphore s(1);
    MeddlingWaker m{&s, false};
    SemWaiter a;
    EXPECT_EQ(poll_with_meddler(s, m, &a), WEFT_READY) << "the permit released meanwhile is taken, not waited for";
    EXPECT_EQ(s.available(), 0u);
    EXPECT_EQ(s.release(1), 0);
}

TEST(Semaphore, ClosedBeforeTheWaiterQueuesFailsWithoutQueueing) {
    Semaphore s(1);
    MeddlingWaker m{&s, true};
    SemWaiter a;
    EXPECT_EQ(poll_with_meddler(s, m, &a), WEFT_ECLOSED);
    weft_waker w{&m, &meddling_vtable};
    EXPECT_EQ(s.poll_acquire(&a, 1, &w), WEFT_EINVAL) << "a finished waiter is not polled again";
}

TEST(Semaphore, ReleaseOverflowIsRefused) {
    Semaphore s(Semaphore::MAX_PERMITS - 1);
    EXPECT_EQ(s.release(1), 0);
    EXPECT_EQ(s.release(1), WEFT_EINVAL);
    EXPECT_EQ(s.release(Semaphore::MAX_PERMITS + 1), WEFT_EINVAL);
    EXPECT_EQ(s.available(), Semaphore::MAX_PERMITS);
}

// A capacity (a mutex's 1): a release past it is refused, on the fast path
// (nobody queued) and on the slow path (permits assigned to a queued waiter
// count as given out).
TEST(Semaphore, ReleaseBeyondTheCapacityIsRefused) {
    Counter c;
    weft_waker w = borrowed(&c);
    Semaphore s(1, 1);
    EXPECT_EQ(s.release(1), WEFT_EINVAL) << "not held";
    EXPECT_EQ(s.try_acquire(1), 0);
    EXPECT_EQ(s.release(2), WEFT_EINVAL);
    Semaphore rw(4, 4);  // an rwlock of 4 reader slots
    EXPECT_EQ(rw.try_acquire(1), 0);
    SemWaiter writer;
    EXPECT_EQ(rw.poll_acquire(&writer, 4, &w), WEFT_PENDING);  // takes 3, waits for 1
    EXPECT_EQ(rw.release(4), WEFT_EINVAL) << "a write unlock while only a reader holds it";
    EXPECT_EQ(rw.release(2), WEFT_EINVAL);
    EXPECT_EQ(rw.release(1), 0);
    EXPECT_EQ(rw.poll_acquire(&writer, 4, &w), WEFT_READY);
    EXPECT_EQ(rw.release(1), 0) << "indistinguishable from the writer's own permits";
    EXPECT_EQ(rw.available(), 1u);
    EXPECT_EQ(c.refs, 0);
}

// close() detaches the whole queue before it wakes anyone: a release and a
// cancel that run while it wakes a batch (here: from the first wake) neither
// grant a waiter queued before the close nor lose a permit.
struct CloseGap {
    Semaphore* s;
    SemWaiter* victim;
    bool fired = false;
    static weft_waker clone(const void* p) { return weft_waker{p, &vt}; }
    static void wake(const void* p) {
        auto* g = static_cast<CloseGap*>(const_cast<void*>(p));
        if (g->fired) return;
        g->fired = true;
        EXPECT_EQ(g->s->release(2), 0);
        g->s->cancel(g->victim);
    }
    static void drop(const void*) {}
    static const weft_waker_vtable vt;
};
const weft_waker_vtable CloseGap::vt = {CloseGap::clone, CloseGap::wake, CloseGap::wake, CloseGap::drop};

TEST(Semaphore, CloseDetachesTheQueueBeforeWaking) {
    Semaphore s(1);
    constexpr int N = 2 * WakeList::CAPACITY + 3;
    std::vector<std::unique_ptr<SemWaiter>> ws;
    CloseGap g{&s, nullptr};
    weft_waker w{&g, &CloseGap::vt};
    for (int i = 0; i < N; i++) {
        ws.push_back(std::make_unique<SemWaiter>());
        // The first asks for 2: takes the 1 and queues; the others queue.
        EXPECT_EQ(s.poll_acquire(ws.back().get(), i == 0 ? 2 : 1, &w), WEFT_PENDING);
    }
    g.victim = ws.back().get();
    s.close();
    EXPECT_TRUE(g.fired);
    for (int i = 0; i < N - 1; i++) EXPECT_EQ(s.poll_acquire(ws[i].get(), i == 0 ? 2 : 1, &w), WEFT_ECLOSED) << i;
    EXPECT_EQ(s.available(), 3u) << "the first waiter's permit came back, and the release counted";
    EXPECT_FALSE(s.has_waiters());
}

// ---- semaphore: property test against a sequential model -----------------------------

struct SemModel {
    struct W {
        uint64_t needed, rem;
        bool queued, done, closed, finished;
        bool woken = false;  // the kernel woke it (completed while queued)
    };
    uint64_t permits;
    bool closed = false;
    std::vector<W> ws;          // by waiter id
    std::deque<size_t> queue;  // ids

    void release(uint64_t k) {
        while (k && !queue.empty()) {
            W& h = ws[queue.front()];
            uint64_t give = std::min(k, h.rem);
            h.rem -= give;
            k -= give;
            if (h.rem == 0) {
                h.queued = false;
                h.done = true;
                h.woken = true;
                queue.pop_front();
            }
        }
        if (queue.empty()) permits += k;
    }
};

RC_GTEST_PROP(SemaphoreModel, MatchesSequentialModel, ()) {
    uint64_t initial = *rc::gen::inRange<uint64_t>(0, 6);
    Semaphore s(initial);
    SemModel m{initial, false, {}, {}};
    std::vector<std::unique_ptr<SemWaiter>> real;
    std::vector<std::unique_ptr<Counter>> counters;
    auto ops = *rc::gen::container<std::vector<std::pair<uint8_t, uint8_t>>>(
        rc::gen::pair(rc::gen::inRange<uint8_t>(0, 7), rc::gen::inRange<uint8_t>(0, 8)));
    for (auto [op, arg] : ops) {
        switch (op) {
        case 0: {  // try_acquire
            uint64_t n = arg % 5;
            int r = s.try_acquire(n);
            int want;
            if (m.closed) want = WEFT_ECLOSED;
            else if (n == 0 || (m.queue.empty() && m.permits >= n)) want = 0;
            else want = WEFT_EAGAIN;
            if (want == 0) m.permits -= n;
            RC_ASSERT(r == want);
            break;
        }
        case 1: {  // start an acquire (first poll)
            uint64_t n = 1 + arg % 5;
            real.push_back(std::make_unique<SemWaiter>());
            counters.push_back(std::make_unique<Counter>());
            weft_waker w = borrowed(counters.back().get());
            int r = s.poll_acquire(real.back().get(), n, &w);
            SemModel::W mw{n, n, false, false, false, false};
            int want;
            if (m.closed) {
                want = WEFT_ECLOSED;
                mw.finished = true;
            } else if (m.queue.empty() && m.permits >= n) {
                m.permits -= n;
                want = WEFT_READY;
                mw.finished = true;
            } else {
                uint64_t take = m.queue.empty() ? m.permits : 0;
                m.permits -= take;
                mw.rem = n - take;
                mw.queued = true;
                m.queue.push_back(m.ws.size());
                want = WEFT_PENDING;
            }
            m.ws.push_back(mw);
            RC_ASSERT(r == want);
            break;
        }
        case 2: {  // re-poll a waiter
            if (m.ws.empty()) break;
            size_t id = arg % m.ws.size();
            SemModel::W& mw = m.ws[id];
            if (mw.finished) break;
            weft_waker w = borrowed(counters[id].get());
            int r = s.poll_acquire(real[id].get(), mw.needed, &w);
            int want = mw.done ? WEFT_READY : mw.closed ? WEFT_ECLOSED : WEFT_PENDING;
            if (want != WEFT_PENDING) mw.finished = true;
            if (want == WEFT_READY) mw.done = false;  // observed: the permits are the holder's
            RC_ASSERT(r == want);
            break;
        }
        case 3: {  // cancel a waiter
            if (m.ws.empty()) break;
            size_t id = arg % m.ws.size();
            SemModel::W& mw = m.ws[id];
            s.cancel(real[id].get());
            if (mw.finished) break;
            mw.finished = true;
            if (mw.queued) {
                for (auto it = m.queue.begin(); it != m.queue.end(); ++it)
                    if (*it == id) {
                        m.queue.erase(it);
                        break;
                    }
                mw.queued = false;
                m.release(mw.needed - mw.rem);
            } else if (mw.done) {
                mw.done = false;
                m.release(mw.needed);
            }
            break;
        }
        case 4: {  // release
            uint64_t k = arg % 6;
            RC_ASSERT(s.release(k) == 0);
            m.release(k);
            break;
        }
        case 5: {  // close (rarely)
            if (arg != 0) break;
            s.close();
            m.closed = true;
            for (size_t id : m.queue) {
                m.ws[id].queued = false;
                m.ws[id].closed = true;
                m.ws[id].woken = true;
                m.permits += m.ws[id].needed - m.ws[id].rem;
            }
            m.queue.clear();
            break;
        }
        default: {  // a holder of permits gives some back (like 4 but from an acquired waiter)
            break;
        }
        }
        // Invariants after every step.
        RC_ASSERT(s.available() == m.permits);
        RC_ASSERT(s.has_waiters() == !m.queue.empty());
        for (size_t id = 0; id < m.ws.size(); id++) {
            const SemModel::W& mw = m.ws[id];
            // woken exactly once, exactly when completed while queued
            RC_ASSERT(counters[id]->wakes == (mw.woken ? 1 : 0));
            RC_ASSERT(counters[id]->refs == (mw.queued ? 1 : 0));
        }
    }
    for (auto& w : real) s.cancel(w.get());
    for (auto& c : counters) RC_ASSERT(c->refs == 0);
}

// ---- channel: property test against a sequential model ---------------------------------

// Bounded or unbounded Chan of uint32_t, one task-like sender with pending
// sends, one receiver. Model: the queue contents, the FIFO of pending sends
// and which of them hold a permit.
RC_GTEST_PROP(ChannelModel, MatchesSequentialModel, ()) {
    uint64_t cap = *rc::gen::inRange<uint64_t>(0, 4);  // 0 = unbounded
    Chan* c = Chan::create(sizeof(uint32_t), cap, nullptr, nullptr);
    RC_ASSERT(c != nullptr);
    struct PS {
        uint32_t value;
        bool granted, finished;
    };
    std::deque<uint32_t> q;          // model queue
    std::vector<PS> ps;              // pending sends by id
    std::deque<size_t> waiting;      // ids waiting for a permit, FIFO
    uint64_t in_flight = 0;          // granted, not yet pushed
    bool rx_closed = false, tx_closed = false;
    std::vector<std::unique_ptr<SendWaiter>> real;
    Counter rxc, txc;
    uint32_t next = 1;
    auto free_slots = [&]() -> uint64_t { return cap - q.size() - in_flight; };
    auto grant = [&]() {
        while (cap && !waiting.empty() && free_slots() > 0) {
            ps[waiting.front()].granted = true;
            in_flight++;
            waiting.pop_front();
        }
    };
    auto ops = *rc::gen::container<std::vector<std::pair<uint8_t, uint8_t>>>(
        rc::gen::pair(rc::gen::inRange<uint8_t>(0, 6), rc::gen::inRange<uint8_t>(0, 8)));
    for (auto [op, arg] : ops) {
        switch (op) {
        case 0: {  // try_send
            if (tx_closed) break;
            uint32_t v = next++;
            int r = c->try_send(&v);
            int want = rx_closed ? WEFT_ECLOSED : (cap && (!waiting.empty() || free_slots() == 0)) ? WEFT_EAGAIN : 0;
            if (want == 0) q.push_back(v);
            RC_ASSERT(r == want);
            break;
        }
        case 1: {  // start an async send
            if (tx_closed) break;
            uint32_t v = next++;
            real.push_back(std::make_unique<SendWaiter>());
            real.back()->value = &ps.emplace_back(PS{v, false, false}).value;
            // (ps may reallocate: re-point every waiter's value below)
            for (size_t i = 0; i < real.size(); i++) real[i]->value = &ps[i].value;
            weft_waker w = borrowed(&txc);
            int r = c->poll_send(real.back().get(), &w);
            int want;
            if (rx_closed) want = WEFT_ECLOSED;
            else if (!cap || (waiting.empty() && free_slots() > 0)) want = WEFT_READY;
            else want = WEFT_PENDING;
            if (want == WEFT_READY) q.push_back(v);
            if (want != WEFT_PENDING) ps.back().finished = true;
            else waiting.push_back(ps.size() - 1);
            RC_ASSERT(r == want);
            break;
        }
        case 2: {  // re-poll a pending send
            if (ps.empty()) break;
            size_t id = arg % ps.size();
            if (ps[id].finished) break;
            weft_waker w = borrowed(&txc);
            int r = c->poll_send(real[id].get(), &w);
            int want = ps[id].granted ? WEFT_READY : rx_closed ? WEFT_ECLOSED : WEFT_PENDING;
            if (want == WEFT_READY) {
                q.push_back(ps[id].value);
                in_flight--;
            }
            if (want != WEFT_PENDING) ps[id].finished = true;
            if (want == WEFT_ECLOSED)
                for (auto it = waiting.begin(); it != waiting.end(); ++it)
                    if (*it == id) {
                        waiting.erase(it);
                        break;
                    }
            RC_ASSERT(r == want);
            break;
        }
        case 3: {  // cancel a pending send
            if (ps.empty()) break;
            size_t id = arg % ps.size();
            c->cancel_send(real[id].get());
            if (ps[id].finished) break;
            ps[id].finished = true;
            if (ps[id].granted) {
                in_flight--;
            } else {
                for (auto it = waiting.begin(); it != waiting.end(); ++it)
                    if (*it == id) {
                        waiting.erase(it);
                        break;
                    }
            }
            if (!rx_closed) grant();
            break;
        }
        case 4: {  // receive
            uint32_t out = 0;
            weft_waker w = borrowed(&rxc);
            int r = c->poll_recv(&out, &w);
            if (!q.empty()) {
                RC_ASSERT(r == WEFT_READY);
                RC_ASSERT(out == q.front());
                q.pop_front();
                if (!rx_closed) grant();
            } else {
                // Closed is final: after the receiver's close, not while a
                // send granted room before it is still to push.
                bool closed = tx_closed || (rx_closed && in_flight == 0);
                RC_ASSERT(r == (closed ? WEFT_ECLOSED : WEFT_PENDING));
            }
            break;
        }
        case 5: {  // close the receiver (rarely), or drop the only sender
            if (arg == 0 && !rx_closed) {
                c->close();
                rx_closed = true;
                waiting.clear();  // they fail on their next poll
            } else if (arg == 1 && !tx_closed && in_flight == 0 && waiting.empty()) {
                c->drop_sender();
                tx_closed = true;
            }
            break;
        }
        }
        // Every pending send that was granted a permit has been woken.
        RC_ASSERT(txc.refs >= 0);
    }
    for (auto& w : real) c->cancel_send(w.get());
    RC_ASSERT(txc.refs == 0);
    if (!tx_closed) c->drop_sender();
    c->drop_receiver();
    RC_ASSERT(rxc.refs == 0);
}

// ---- channel: the receiver waker and values left behind ---------------------------------

int g_dropped = 0;
void count_drop(void* elem, void*) {
    uint32_t v;
    std::memcpy(&v, elem, sizeof v);
    g_dropped += (int)v;
}

TEST(Channel, ValuesLeftBehindAreDroppedOnce) {
    for (uint64_t cap : {0u, 4u}) {
        g_dropped = 0;
        Chan* c = Chan::create(sizeof(uint32_t), cap, count_drop, nullptr);
        for (uint32_t v : {1u, 10u, 100u}) ASSERT_EQ(c->try_send(&v), 0);
        uint32_t out;
        ASSERT_EQ(c->try_recv(&out), 0);
        EXPECT_EQ(out, 1u);
        c->drop_receiver();  // 10 and 100 dropped here
        EXPECT_EQ(g_dropped, 110);
        uint32_t v = 1000;
        EXPECT_EQ(c->try_send(&v), WEFT_ECLOSED) << "the value stays the caller's";
        c->drop_sender();
        EXPECT_EQ(g_dropped, 110) << "nothing dropped twice";
    }
}

TEST(Channel, LastSenderGoneEndsTheStreamAfterTheQueue) {
    Chan* c = Chan::create(sizeof(uint32_t), 2, nullptr, nullptr);
    Counter rx;
    weft_waker w = borrowed(&rx);
    uint32_t out;
    EXPECT_EQ(c->poll_recv(&out, &w), WEFT_PENDING);
    c->add_sender();
    uint32_t v = 7;
    ASSERT_EQ(c->try_send(&v), 0);
    EXPECT_EQ(rx.wakes, 1);
    c->drop_sender();
    c->drop_sender();
    EXPECT_EQ(c->poll_recv(&out, &w), WEFT_READY);
    EXPECT_EQ(out, 7u);
    EXPECT_EQ(c->poll_recv(&out, &w), WEFT_ECLOSED);
    c->drop_receiver();
    EXPECT_EQ(rx.refs, 0);
}

// ---- Notify ---------------------------------------------------------------------------

TEST(Notify, NotifyOneStoresOnePermit) {
    Notify n;
    Counter c;
    weft_waker w = borrowed(&c);
    n.notify_one();
    n.notify_one();  // at most one permit
    NotifyWaiter a, b;
    n.init_waiter(&a);
    n.init_waiter(&b);
    EXPECT_EQ(n.poll(&a, &w), WEFT_READY);
    EXPECT_EQ(n.poll(&b, &w), WEFT_PENDING);
    n.notify_one();
    EXPECT_EQ(c.wakes, 1);
    EXPECT_EQ(n.poll(&b, &w), WEFT_READY);
    EXPECT_EQ(c.refs, 0);
}

TEST(Notify, NotifyWaitersWakesQueuedAndCreatedButStoresNothing) {
    Notify n;
    Counter c;
    weft_waker w = borrowed(&c);
    std::vector<std::unique_ptr<NotifyWaiter>> q;
    for (int i = 0; i < 40; i++) {
        q.push_back(std::make_unique<NotifyWaiter>());
        n.init_waiter(q.back().get());
        ASSERT_EQ(n.poll(q.back().get(), &w), WEFT_PENDING);
    }
    NotifyWaiter created;  // created before the call, never polled
    n.init_waiter(&created);
    n.notify_waiters();
    EXPECT_EQ(c.wakes, 40);
    for (auto& x : q) EXPECT_EQ(n.poll(x.get(), &w), WEFT_READY);
    EXPECT_EQ(n.poll(&created, &w), WEFT_READY);
    NotifyWaiter after;
    n.init_waiter(&after);
    EXPECT_EQ(n.poll(&after, &w), WEFT_PENDING) << "no permit stored";
    n.cancel(&after);
    EXPECT_EQ(c.refs, 0);
}

TEST(Notify, DroppedNotifiedWaiterPassesItOn) {
    Notify n;
    Counter c;
    weft_waker w = borrowed(&c);
    NotifyWaiter a, b;
    n.init_waiter(&a);
    n.init_waiter(&b);
    ASSERT_EQ(n.poll(&a, &w), WEFT_PENDING);
    ASSERT_EQ(n.poll(&b, &w), WEFT_PENDING);
    n.notify_one();          // a is chosen...
    n.cancel(&a);            // ...but dropped before it saw it
    EXPECT_EQ(n.poll(&b, &w), WEFT_READY) << "b got the notification instead";
    // dropped with nobody behind: it becomes the permit
    NotifyWaiter x, y;
    n.init_waiter(&x);
    ASSERT_EQ(n.poll(&x, &w), WEFT_PENDING);
    n.notify_one();
    n.cancel(&x);
    n.init_waiter(&y);
    EXPECT_EQ(n.poll(&y, &w), WEFT_READY);
    // a queued waiter cancelled: nothing happens to others
    NotifyWaiter z;
    n.init_waiter(&z);
    ASSERT_EQ(n.poll(&z, &w), WEFT_PENDING);
    n.cancel(&z);
    NotifyWaiter t;
    n.init_waiter(&t);
    EXPECT_EQ(n.poll(&t, &w), WEFT_PENDING);
    n.cancel(&t);
    EXPECT_EQ(c.refs, 0);
}

// ---- ThreadSignal's adaptive spin ------------------------------------------

TEST(SpinPolicy, OneCpuNeverSpins) {
    SpinPolicy p(1);
    for (int i = 0; i < 10; i++) EXPECT_FALSE(p.may_spin());
    SpinPolicy none(0);  // 0 is treated as one CPU
    EXPECT_FALSE(none.may_spin());
}

TEST(SpinPolicy, EachMissDoublesTheSkippedWaitsUpToTheCap) {
    SpinPolicy p(2);
    uint32_t expected = 1;
    for (int miss = 0; miss < 12; miss++) {
        ASSERT_TRUE(p.may_spin()) << "miss " << miss;
        p.spun(false);
        ASSERT_EQ(p.skip(), expected) << "miss " << miss;
        for (uint32_t i = 0; i < expected; i++) ASSERT_FALSE(p.may_spin()) << "skipped wait " << i;
        expected = expected * 2 < SpinPolicy::MAX_SKIP ? expected * 2 : SpinPolicy::MAX_SKIP;
    }
    EXPECT_EQ(p.skip(), 0u);
    EXPECT_TRUE(p.may_spin()) << "after the capped skip, a wait probes again";
}

TEST(SpinPolicy, HitsHalveThePenaltyUntilMissesCostOneWait) {
    SpinPolicy p(4);
    for (int miss = 0; miss < 4; miss++) {  // penalty 1, 2, 4, 8
        ASSERT_TRUE(p.may_spin());
        p.spun(false);
        while (p.skip() > 0) p.may_spin();
    }
    for (int hit = 0; hit < 4; hit++) {  // 8 -> 4 -> 2 -> 1 -> 0; a hit skips nothing
        ASSERT_TRUE(p.may_spin());
        p.spun(true);
        ASSERT_EQ(p.skip(), 0u);
    }
    ASSERT_TRUE(p.may_spin());
    p.spun(false);
    EXPECT_EQ(p.skip(), 1u) << "the penalty was back to zero, so one miss skips one wait";
}

TEST(ThreadSignal, SignalledBeforeTheWaitReturnsAtOnceAndResetRearms) {
    ThreadSignal s;
    weft_waker w = s.waker();
    w.vtable->wake(w.data);
    EXPECT_TRUE(s.signalled());
    s.wait();
    s.reset();
    EXPECT_FALSE(s.signalled());
    weft_waker d = s.waker();
    d.vtable->drop(d.data);  // a dropped waker releases the sleeper too
    s.wait();
    EXPECT_TRUE(s.signalled());
}

// The spin's two outcomes, driven with a policy of the test's own: a signal
// that is already there is a hit (the penalty halves, nothing is skipped);
// a spin that sees none is a miss (the next wait skips the spin).
TEST(ThreadSignal, SpinHitsWhenSignalledAndMissesOtherwise) {
    SpinPolicy p(2);
    ThreadSignal quiet;
    EXPECT_FALSE(quiet.spin_with(p, 2000)) << "nobody signals: the spin runs out";
    EXPECT_EQ(p.skip(), 1u);
    EXPECT_FALSE(quiet.spin_with(p, 2000)) << "the skipped wait does not spin";
    EXPECT_EQ(p.skip(), 0u);
    EXPECT_FALSE(quiet.spin_with(p, 2000));
    EXPECT_EQ(p.penalty(), 2u);
    EXPECT_FALSE(quiet.spin_with(p, 2000));  // skipped
    EXPECT_FALSE(quiet.spin_with(p, 2000));  // skipped
    ThreadSignal ready;
    weft_waker w = ready.waker();
    w.vtable->wake(w.data);
    EXPECT_TRUE(ready.spin_with(p, 2000)) << "the signal is there: a hit";
    EXPECT_EQ(p.penalty(), 1u);
    EXPECT_EQ(p.skip(), 0u);
    ready.wait();  // returns at once
}

// Every wait returns whichever way the signal finds the waiter: before its
// spin, during it, or asleep in the futex after it (how often each happens
// depends on the machine's timing; SpinHitsWhenSignalledAndMissesOtherwise
// covers both outcomes deterministically). What is asserted: every wait
// returns, and sees what the waker wrote before waking it (the release /
// acquire pairing, which ThreadSanitizer checks on these plain writes).
TEST(ThreadSignal, EveryWaitIsReleasedWhetherSpinningOrAsleep) {
    constexpr int ROUNDS = 3000;
    ThreadSignal signals[2];
    std::vector<int> seen(ROUNDS, 0);  // written by the waker, plainly
    std::atomic<int> posted{-1};
    std::thread waker([&] {
        for (int i = 0; i < ROUNDS; i++) {
            while (posted.load(std::memory_order_acquire) != i) std::this_thread::yield();
            if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(i % 50));
            seen[i] = i + 1;
            weft_waker w = signals[i % 2].waker();
            w.vtable->wake(w.data);
        }
    });
    int wrong = 0;
    for (int i = 0; i < ROUNDS; i++) {
        ThreadSignal& s = signals[i % 2];
        s.reset();
        posted.store(i, std::memory_order_release);
        s.wait();
        if (seen[i] != i + 1) wrong++;
    }
    waker.join();
    EXPECT_EQ(wrong, 0) << "a wait returned before the waker's write was visible";
}

}  // namespace
