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
        w->remaining -= give;
        n -= give;
        if (w->remaining != 0) break;  // n is 0 now: the head took everything
        if (!wakes.can_push()) {
            // A full batch: wake it without the lock, then carry on. The head
            // is still queued (we have not touched it beyond `remaining`), so
            // a cancel meanwhile returns what it got.
            w->remaining = give;  // undo; it is re-served after relocking
            n += give;
            lock_.unlock();
            wakes.wake_all();
            lock_.lock();
            continue;
        }
        waiters_.pop_front();
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
        uint64_t add = n > MAX_PERMITS - permits ? MAX_PERMITS - permits : n;  // saturate (documented in weft_sync.h)
        uint64_t next = ((cur & ~WAITERS) + (add << SHIFT));
        // release: the permits carry the releaser's writes to the next
        // fast-path acquirer.
        if (state_.compare_exchange_weak(cur, next, std::memory_order_release, std::memory_order_relaxed)) return;
    }
}

void Semaphore::release_slow(uint64_t n) noexcept {
    WakeList wakes;
    lock_.lock();
    release_locked(n, wakes);
    lock_.unlock();
    wakes.wake_all();
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
        // Still waiting: leave the queue and hand back what we were given.
        // Even with nothing to give, release_locked clears WAITERS when we
        // were the last waiter.
        waiters_.remove(w);
        old = w->waker;
        w->waker = weft_waker{nullptr, nullptr};
        release_locked(w->needed - w->remaining, wakes);
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
    lock_.lock();
    // acq_rel: later acquires (acquire loads) see CLOSED; nothing to publish
    // beyond that.
    state_.fetch_or(CLOSED, std::memory_order_acq_rel);
    uint64_t returned = 0;
    while (SemWaiter* w = waiters_.front()) {
        if (!wakes.can_push()) {
            lock_.unlock();
            wakes.wake_all();
            lock_.lock();
            continue;
        }
        waiters_.pop_front();
        returned += w->needed - w->remaining;
        wakes.push(w->waker);
        w->waker = weft_waker{nullptr, nullptr};
        // release: our last access to w (see release_locked).
        w->done.store(SemWaiter::CLOSED, std::memory_order_release);
    }
    release_locked(returned, wakes);  // queue empty: adds them and clears WAITERS
    lock_.unlock();
    wakes.wake_all();
}

}  // namespace weft::kernel
