// kernel/semaphore.cpp — the slow paths of the batch semaphore (see
// semaphore.h for the state word, the waiter state machine and who touches
// what).
#include "semaphore.h"

#include "sync/thread_signal.h"

namespace weft::kernel {

namespace {
void drop_waker(weft_waker w) {
    if (w.vtable) w.vtable->drop(w.data);
}
}  // namespace

void Semaphore::release_locked(uint64_t n, WakeList& wakes) noexcept {
    while (n != 0) {
        SemWaiter* w = waiters_.front();
        if (!w) break;
        uint64_t give = n < w->remaining ? n : w->remaining;
        if (give == w->remaining && !wakes.can_push()) {
            // The head would complete but the batch is full: wake the batch
            // without the lock, then carry on. Nothing was given to the head
            // yet, so whatever happens meanwhile (a cancel, a close that takes
            // the whole queue) sees a consistent queue and `assigned_`; the
            // n permits stay ours.
            lock_.unlock();
            wakes.wake_all();
            lock_.lock();
            continue;
        }
        w->remaining -= give;
        n -= give;
        assigned_ += give;
        if (w->remaining != 0) break;  // n is 0 now: the head took everything
        waiters_.pop_front();
        assigned_ -= w->needed;  // handed over: no longer queued
        wakes.push(w->waker);
        w->waker = weft_waker{nullptr, nullptr};
        // release: everything above (and the releaser's critical section) is
        // visible to the owner's acquire load; this is our last access to w.
        w->done.store(SemWaiter::ACQUIRED, std::memory_order_release);
    }
    if (!waiters_.empty()) return;
    // Nobody waits: the rest goes to the counter and WAITERS is cleared, in
    // one CAS (fast-path acquirers may be racing us once WAITERS is clear).
    uint64_t cur = state_.load(std::memory_order_relaxed);
    for (;;) {
        uint64_t permits = cur >> SHIFT;
        // Saturate: only reachable when other releases overflowed the
        // capacity while we had dropped the lock (see semaphore.h).
        uint64_t add = n > max_ - permits ? max_ - permits : n;
        uint64_t next = ((cur & ~WAITERS) + (add << SHIFT));
        // release: the permits carry the releaser's writes to the next
        // fast-path acquirer.
        if (state_.compare_exchange_weak(cur, next, std::memory_order_release, std::memory_order_relaxed)) return;
    }
}

int Semaphore::release_slow(uint64_t n) noexcept {
    WakeList wakes;
    lock_.lock();
    if (waiters_.empty()) {
        // The queue emptied (WAITERS cleared) since the fast path looked:
        // the counter may hold permits again, so the fast path, which checks
        // them against the capacity, decides.
        lock_.unlock();
        return release(n);
    }
    // Waiters are queued, so the counter is 0 and stays 0 while we hold the
    // lock (fast-path releases come here, fast-path acquires find nothing):
    // what is out there unaccounted for is held by owners, and a release
    // beyond what could be held is a caller bug (an unlock of a lock that
    // is not held).
    if (n > max_ - assigned_) {
        lock_.unlock();
        return WEFT_EINVAL;
    }
    release_locked(n, wakes);
    lock_.unlock();
    wakes.wake_all();
    return 0;
}

int Semaphore::enqueue(SemWaiter* w, uint64_t n, weft_waker waker) noexcept {
    lock_.lock();
    uint64_t cur = state_.load(std::memory_order_relaxed);
    uint64_t take;
    for (;;) {
        if (cur & CLOSED) {
            lock_.unlock();
            drop_waker(waker);
            w->stage = SemWaiter::FINISHED;
            return WEFT_ECLOSED;
        }
        uint64_t avail = cur >> SHIFT;
        if (avail >= n) {
            // Freed since the fast path, and nobody queued (WAITERS implies 0).
            // acquire: as in try_acquire.
            if (state_.compare_exchange_weak(cur, cur - (n << SHIFT), std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
                lock_.unlock();
                drop_waker(waker);
                w->stage = SemWaiter::FINISHED;
                return WEFT_READY;
            }
            continue;
        }
        // Take everything that is free and announce the wait, atomically.
        take = avail;
        uint64_t next = (cur & CLOSED) | WAITERS;
        // acquire: the permits we take carry their releasers' writes.
        if (state_.compare_exchange_weak(cur, next, std::memory_order_acquire, std::memory_order_relaxed)) break;
    }
    w->needed = n;
    w->remaining = n - take;
    assigned_ += take;
    w->waker = waker;
    w->done.store(SemWaiter::NOT_DONE, std::memory_order_relaxed);  // published by the unlock
    waiters_.push_back(w);
    w->stage = SemWaiter::QUEUED;
    lock_.unlock();
    return WEFT_PENDING;
}

int Semaphore::poll_acquire_slow(SemWaiter* w, uint64_t n, const weft_waker* waker) noexcept {
    if (w->stage == SemWaiter::FINISHED) return WEFT_EINVAL;  // polled again after it completed
    if (w->stage == SemWaiter::IDLE) {
        // Clone outside the lock: a foreign clone may run arbitrary code.
        weft_waker mine = waker ? waker->vtable->clone(waker->data) : weft_waker{nullptr, nullptr};
        return enqueue(w, n, mine);
    }
    // QUEUED. acquire: pairs with the release store of the thread that
    // completed us; after it, the waiter is ours alone.
    uint32_t d = w->done.load(std::memory_order_acquire);
    if (d != SemWaiter::NOT_DONE) return done_result(w, d);
    if (!waker) return WEFT_PENDING;
    lock_.lock();
    // relaxed: `done` is only written under the lock we hold.
    d = w->done.load(std::memory_order_relaxed);
    bool same = d == SemWaiter::NOT_DONE && w->waker.vtable && weft_waker_will_wake(&w->waker, waker);
    lock_.unlock();
    if (d != SemWaiter::NOT_DONE) {
        // (No fence needed: `done` was read under lock_, whose acquire pairs
        // with the completer's unlock, which came after its writes.)
        return done_result(w, d);
    }
    if (same) return WEFT_PENDING;  // spurious re-poll from the same task: nothing to do
    // Polled with a different waker (the future moved to another task or a
    // foreign executor): swap it in, cloning outside the lock.
    weft_waker fresh = waker->vtable->clone(waker->data);
    weft_waker old{nullptr, nullptr};
    lock_.lock();
    d = w->done.load(std::memory_order_relaxed);
    if (d == SemWaiter::NOT_DONE) {
        old = w->waker;
        w->waker = fresh;
        fresh = weft_waker{nullptr, nullptr};
    }
    lock_.unlock();
    drop_waker(old);
    drop_waker(fresh);
    if (d != SemWaiter::NOT_DONE) {
        return done_result(w, d);
    }
    return WEFT_PENDING;
}

void Semaphore::cancel_slow(SemWaiter* w) noexcept {
    WakeList wakes;
    weft_waker old{nullptr, nullptr};
    lock_.lock();
    if (IntrusiveList<SemWaiter>::is_linked(w)) {
        IntrusiveList<SemWaiter>::remove(w);
        old = w->waker;
        w->waker = weft_waker{nullptr, nullptr};
        // relaxed: CLOSED is set under lock_, which we hold.
        if (!(state_.load(std::memory_order_relaxed) & CLOSED)) {
            // Still waiting in waiters_: hand back what we were given. Even
            // with nothing to give, release_locked clears WAITERS when we
            // were the last waiter.
            uint64_t given = w->needed - w->remaining;
            assigned_ -= given;
            release_locked(given, wakes);
        }
        // else: in the private list of a close() in progress, which already
        // returned our permits to the counter; serving the queue from here
        // would grant waiters that close() is failing.
    } else if (w->done.load(std::memory_order_relaxed) == SemWaiter::ACQUIRED) {
        // Completed, but the owner never saw it: the permits go back.
        release_locked(w->needed, wakes);
    }
    // (CLOSED: close() already returned what we had.)
    lock_.unlock();
    wakes.wake_all();
    drop_waker(old);
}

int Semaphore::acquire_blocking(uint64_t n) noexcept {
    int r = try_acquire(n);
    if (r != WEFT_EAGAIN) return r;
    sync::ThreadSignal signal;
    SemWaiter w;
    r = enqueue(&w, n, signal.waker());
    if (r == WEFT_PENDING) {
        // The waker is consumed exactly once, by whoever sets `done`; when it
        // has been, nobody touches `w` or `signal` any more.
        signal.wait();
        r = done_result(&w, w.done.load(std::memory_order_acquire));
    } else {
        signal.wait();  // enqueue dropped the waker: already signalled
    }
    return r == WEFT_READY ? 0 : r;
}

void Semaphore::close() noexcept {
    WakeList wakes;
    IntrusiveList<SemWaiter> closing;  // on our stack; guarded by lock_ like waiters_
    lock_.lock();
    // In one critical section: detach the whole queue, and in one CAS set
    // CLOSED, clear WAITERS and give back every permit assigned to the
    // detached waiters. From here on no release can reach them (waiters_ is
    // empty, WAITERS clear), however often we drop the lock below to wake a
    // batch; a cancel of one of them sees CLOSED and only unlinks it.
    closing.splice_back(waiters_);
    uint64_t returned = assigned_;
    assigned_ = 0;
    uint64_t cur = state_.load(std::memory_order_relaxed);
    for (;;) {
        uint64_t permits = cur >> SHIFT;
        uint64_t add = returned > max_ - permits ? max_ - permits : returned;  // cannot saturate: they came from the counter
        uint64_t next = ((cur | CLOSED) & ~WAITERS) + (add << SHIFT);
        // release: later acquirers (acquire loads and CASes) see CLOSED, and
        // the permits given back as the releases that produced them left them.
        if (state_.compare_exchange_weak(cur, next, std::memory_order_release, std::memory_order_relaxed)) break;
    }
    wakes.complete_in_batches(closing, lock_, [](SemWaiter* w) {
        weft_waker k = w->waker;
        w->waker = weft_waker{nullptr, nullptr};
        // release: our last access to w (see release_locked).
        w->done.store(SemWaiter::CLOSED, std::memory_order_release);
        return k;
    });
    lock_.unlock();
    wakes.wake_all();
}

}  // namespace weft::kernel
