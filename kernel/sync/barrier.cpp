// kernel/sync/barrier.cpp — see barrier.h.
#include "barrier.h"

#include "thread_signal.h"

namespace weft::kernel::sync {

namespace {
void drop_waker(weft_waker w) {
    if (w.vtable) w.vtable->drop(w.data);
}
}  // namespace

int Barrier::arrive(BarrierWaiter* w, weft_waker waker) noexcept {
    WakeList wakes;
    lock_.lock();
    if (closed_) {
        lock_.unlock();
        drop_waker(waker);
        w->stage = BarrierWaiter::FINISHED;
        return WEFT_ECLOSED;
    }
    if (++arrived_ < n_) {
        w->waker = waker;
        w->round = round_;
        w->done.store(BarrierWaiter::NOT_DONE, std::memory_order_relaxed);  // published by the unlock
        waiters_.push_back(w);
        w->stage = BarrierWaiter::QUEUED;
        lock_.unlock();
        return WEFT_PENDING;
    }
    // The last party: release the round. A new round starts at once, so the
    // waiters are detached from waiters_ before any unlock.
    arrived_ = 0;
    round_++;
    IntrusiveList<BarrierWaiter> round;  // our stack; guarded by lock_ like waiters_
    round.splice_back(waiters_);
    wakes.complete_in_batches(round, lock_, [](BarrierWaiter* o) {
        weft_waker k = o->waker;
        o->waker = weft_waker{nullptr, nullptr};
        // release: our last access to o; its owner's acquire load pairs.
        o->done.store(BarrierWaiter::RELEASED, std::memory_order_release);
        return k;
    });
    lock_.unlock();
    wakes.wake_all();
    drop_waker(waker);
    w->leader = true;
    w->stage = BarrierWaiter::FINISHED;
    return WEFT_READY;
}

int Barrier::poll(BarrierWaiter* w, const weft_waker* waker) noexcept {
    if (w->stage == BarrierWaiter::FINISHED) return WEFT_READY;
    if (w->stage == BarrierWaiter::IDLE) {
        w->leader = false;
        weft_waker mine = waker ? waker->vtable->clone(waker->data) : weft_waker{nullptr, nullptr};
        return arrive(w, mine);
    }
    // acquire: pairs with the releaser's store; w is ours again.
    uint32_t d = w->done.load(std::memory_order_acquire);
    if (d != BarrierWaiter::NOT_DONE) {
        w->stage = BarrierWaiter::FINISHED;
        return d == BarrierWaiter::RELEASED ? WEFT_READY : WEFT_ECLOSED;
    }
    if (!waker) return WEFT_PENDING;
    weft_waker fresh{nullptr, nullptr}, old{nullptr, nullptr};
    lock_.lock();
    // relaxed: `done` is written under the lock we hold.
    d = w->done.load(std::memory_order_relaxed);
    bool done = d != BarrierWaiter::NOT_DONE;
    bool same = !done && w->waker.vtable && weft_waker_will_wake(&w->waker, waker);
    lock_.unlock();
    if (!done && !same) {
        fresh = waker->vtable->clone(waker->data);
        lock_.lock();
        d = w->done.load(std::memory_order_relaxed);  // relaxed: as above
        done = d != BarrierWaiter::NOT_DONE;
        if (!done) {
            old = w->waker;
            w->waker = fresh;
            fresh = weft_waker{nullptr, nullptr};
        }
        lock_.unlock();
    }
    drop_waker(old);
    drop_waker(fresh);
    if (done) {
        w->stage = BarrierWaiter::FINISHED;
        return d == BarrierWaiter::RELEASED ? WEFT_READY : WEFT_ECLOSED;
    }
    return WEFT_PENDING;
}

void Barrier::close() noexcept {
    WakeList wakes;
    IntrusiveList<BarrierWaiter> closing;  // our stack; guarded by lock_ like waiters_
    lock_.lock();
    closed_ = true;
    // The gathering round ends here: a new round number, so a waiter of
    // `closing` cancelled while we wake a batch does not withdraw an arrival
    // from a count that no longer exists (see cancel()).
    arrived_ = 0;
    round_++;
    closing.splice_back(waiters_);
    while (BarrierWaiter* o = closing.front()) {
        if (!wakes.can_push()) {
            lock_.unlock();
            wakes.wake_all();
            lock_.lock();
            continue;
        }
        closing.pop_front();
        wakes.push(o->waker);
        o->waker = weft_waker{nullptr, nullptr};
        // release: our last access to o; its owner's acquire load pairs.
        o->done.store(BarrierWaiter::CLOSED, std::memory_order_release);
    }
    lock_.unlock();
    wakes.wake_all();
}

void Barrier::cancel(BarrierWaiter* w) noexcept {
    if (w->stage == BarrierWaiter::QUEUED) {
        weft_waker old{nullptr, nullptr};
        lock_.lock();
        if (IntrusiveList<BarrierWaiter>::is_linked(w)) {
            // In waiters_ (the round still gathering: withdraw the arrival)
            // or in the list of a round being released right now (its
            // arrival counted in a finished round: nothing to withdraw).
            IntrusiveList<BarrierWaiter>::remove(w);
            old = w->waker;
            w->waker = weft_waker{nullptr, nullptr};
            if (w->round == round_) arrived_--;
        }
        lock_.unlock();
        drop_waker(old);
    }
    w->stage = BarrierWaiter::FINISHED;
}

int Barrier::wait_blocking() noexcept {
    ThreadSignal signal;
    BarrierWaiter w;
    int r = arrive(&w, signal.waker());
    signal.wait();  // queued: consumed by the releaser; otherwise arrive dropped it
    if (r == WEFT_ECLOSED) return r;
    // acquire: pairs with the releaser's (or close()'s) store.
    if (r == WEFT_PENDING && w.done.load(std::memory_order_acquire) == BarrierWaiter::CLOSED) return WEFT_ECLOSED;
    return w.leader ? 1 : 0;
}

}  // namespace weft::kernel::sync
