// kernel/sync/notify.cpp — the slow paths of Notify (see notify.h).
#include "notify.h"

#include "thread_signal.h"

namespace weft::kernel::sync {

namespace {
void drop_waker(weft_waker w) {
    if (w.vtable) w.vtable->drop(w.data);
}
}  // namespace

bool Notify::try_consume(NotifyWaiter* w, uint64_t& cur) noexcept {
    for (;;) {
        if ((cur & ~S_MASK) != w->generation) return true;  // notify_waiters ran since init
        if ((cur & S_MASK) != NOTIFIED) return false;
        // acquire: pairs with notify_one's release (the notifier's writes).
        if (state_.compare_exchange_weak(cur, (cur & ~S_MASK) | EMPTY, std::memory_order_acquire,
                                         std::memory_order_relaxed))
            return true;
    }
}

int Notify::enqueue(NotifyWaiter* w, weft_waker waker) noexcept {
    lock_.lock();
    uint64_t cur = state_.load(std::memory_order_acquire);
    for (;;) {
        if (try_consume(w, cur)) {
            lock_.unlock();
            drop_waker(waker);
            w->stage = NotifyWaiter::FINISHED;
            return WEFT_READY;
        }
        // EMPTY or WAITING here; a lock-free notify_one may still turn EMPTY
        // into NOTIFIED, so the switch to WAITING is a CAS.
        // The list is published by the unlock (notifiers that see WAITING take
        // the lock); acquire on failure because a failed CAS may have read a
        // permit that try_consume then takes (pairs with notify_one's release).
        if (state_.compare_exchange_weak(cur, (cur & ~S_MASK) | WAITING, std::memory_order_acquire,
                                         std::memory_order_acquire))
            break;
    }
    w->waker = waker;
    w->done.store(NotifyWaiter::NOT_DONE, std::memory_order_relaxed);
    waiters_.push_back(w);
    w->stage = NotifyWaiter::QUEUED;
    lock_.unlock();
    return WEFT_PENDING;
}

int Notify::poll(NotifyWaiter* w, const weft_waker* waker) noexcept {
    if (w->stage == NotifyWaiter::FINISHED) return WEFT_READY;
    if (w->stage == NotifyWaiter::IDLE) {
        uint64_t cur = state_.load(std::memory_order_acquire);
        if (try_consume(w, cur)) {
            w->stage = NotifyWaiter::FINISHED;
            return WEFT_READY;
        }
        weft_waker mine = waker ? waker->vtable->clone(waker->data) : weft_waker{nullptr, nullptr};
        return enqueue(w, mine);
    }
    // QUEUED. acquire: pairs with the notifier's release store of `done`.
    if (w->done.load(std::memory_order_acquire) != NotifyWaiter::NOT_DONE) {
        w->stage = NotifyWaiter::FINISHED;
        return WEFT_READY;
    }
    if (!waker) return WEFT_PENDING;
    lock_.lock();
    uint32_t d = w->done.load(std::memory_order_relaxed);  // written under the lock
    bool same = d == NotifyWaiter::NOT_DONE && w->waker.vtable && weft_waker_will_wake(&w->waker, waker);
    lock_.unlock();
    if (d == NotifyWaiter::NOT_DONE && !same) {
        weft_waker fresh = waker->vtable->clone(waker->data);
        weft_waker old{nullptr, nullptr};
        lock_.lock();
        d = w->done.load(std::memory_order_relaxed);
        if (d == NotifyWaiter::NOT_DONE) {
            old = w->waker;
            w->waker = fresh;
            fresh = weft_waker{nullptr, nullptr};
        }
        lock_.unlock();
        drop_waker(old);
        drop_waker(fresh);
    }
    if (d != NotifyWaiter::NOT_DONE) {
        // (No fence needed: `done` was read under lock_, whose acquire pairs
        // with the completer's unlock, which came after its writes.)
        w->stage = NotifyWaiter::FINISHED;
        return WEFT_READY;
    }
    return WEFT_PENDING;
}

void Notify::notify_one_locked(WakeList& wakes) noexcept {
    NotifyWaiter* w = waiters_.pop_front();
    if (!w) {
        // Nobody queued: store the permit (S is EMPTY or NOTIFIED here;
        // lock-free notify_one may race, so CAS). release: as notify_one.
        uint64_t cur = state_.load(std::memory_order_relaxed);
        while (!state_.compare_exchange_weak(cur, (cur & ~S_MASK) | NOTIFIED, std::memory_order_release,
                                             std::memory_order_relaxed)) {
        }
        return;
    }
    if (waiters_.empty()) {
        // WAITING -> EMPTY. Only lock holders change a WAITING state.
        uint64_t cur = state_.load(std::memory_order_relaxed);
        state_.store((cur & ~S_MASK) | EMPTY, std::memory_order_relaxed);
    }
    wakes.push(w->waker);
    w->waker = weft_waker{nullptr, nullptr};
    // release: the notifier's writes reach the waiter; last access to w.
    w->done.store(NotifyWaiter::BY_ONE, std::memory_order_release);
}

void Notify::notify_one_slow() noexcept {
    WakeList wakes;
    lock_.lock();
    uint64_t cur = state_.load(std::memory_order_relaxed);
    if ((cur & S_MASK) != WAITING) {
        lock_.unlock();
        notify_one();  // the waiters left meanwhile: take the lock-free path
        return;
    }
    notify_one_locked(wakes);
    lock_.unlock();
    wakes.wake_all();
}

void Notify::notify_waiters() noexcept {
    WakeList wakes;
    IntrusiveList<NotifyWaiter> batch;  // on our stack; guarded by lock_ like waiters_
    lock_.lock();
    // New generation; WAITING -> EMPTY (the list moves to `batch`), a stored
    // permit stays. Only lock holders leave WAITING, but a lock-free
    // notify_one may turn EMPTY into NOTIFIED: CAS. release: as notify_one.
    uint64_t cur = state_.load(std::memory_order_relaxed);
    for (;;) {
        uint64_t s = cur & S_MASK;
        uint64_t next = (cur & ~S_MASK) + GEN_ONE + (s == WAITING ? EMPTY : s);
        if (state_.compare_exchange_weak(cur, next, std::memory_order_release, std::memory_order_relaxed)) break;
    }
    batch.splice_back(waiters_);
    // Waiters that queue from now on belong to the new generation and are not
    // in `batch`. A waiter in `batch` that is dropped meanwhile unlinks itself
    // under the lock (it does not need to know which list holds it).
    wakes.complete_in_batches(batch, lock_, [](NotifyWaiter* w) {
        weft_waker k = w->waker;
        w->waker = weft_waker{nullptr, nullptr};
        // release: last access to w (see notify_one_locked).
        w->done.store(NotifyWaiter::BY_ALL, std::memory_order_release);
        return k;
    });
    lock_.unlock();
    wakes.wake_all();
}

void Notify::cancel_slow(NotifyWaiter* w) noexcept {
    WakeList wakes;
    weft_waker old{nullptr, nullptr};
    lock_.lock();
    if (IntrusiveList<NotifyWaiter>::is_linked(w)) {
        // In waiters_ or in a notify_waiters batch? Every notify_waiters bumps
        // the generation and moves all of waiters_ into its batch, and a
        // waiter only queues while the generation is its own: so it is in
        // waiters_ exactly when the generation has not moved since.
        uint64_t cur = state_.load(std::memory_order_relaxed);
        bool in_main_list = (cur & ~S_MASK) == w->generation;
        IntrusiveList<NotifyWaiter>::remove(w);
        old = w->waker;
        w->waker = weft_waker{nullptr, nullptr};
        // The last waiter of waiters_ left: WAITING -> EMPTY. (One in a
        // batch is not counted in S any more.)
        if (in_main_list && (cur & S_MASK) == WAITING && waiters_.empty())
            state_.store((cur & ~S_MASK) | EMPTY, std::memory_order_relaxed);  // only lock holders leave WAITING
    } else if (w->done.load(std::memory_order_relaxed) == NotifyWaiter::BY_ONE) {
        // Notified by notify_one but dropped before seeing it: pass it on, so
        // the notification is not lost.
        notify_one_locked(wakes);
    }
    lock_.unlock();
    wakes.wake_all();
    drop_waker(old);
}

void Notify::wait_blocking() noexcept {
    NotifyWaiter w;
    init_waiter(&w);
    uint64_t cur = state_.load(std::memory_order_acquire);
    if (try_consume(&w, cur)) return;
    ThreadSignal signal;
    int r = enqueue(&w, signal.waker());
    (void)r;
    // Queued: the waker is consumed exactly once, by the notifier that sets
    // `done`. Ready at once: enqueue dropped it (already signalled).
    signal.wait();
}

}  // namespace weft::kernel::sync
