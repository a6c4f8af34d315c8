// kernel/sync/notify.h — Notify: wake one waiting task (or store a permit
// for the next one), or wake every waiting task.
//
// Semantics (those of tokio::sync::Notify, which users expect):
//   notify_one(): wakes the longest-waiting waiter; if nobody waits, stores
//     one permit (at most one), which the next wait consumes at once. So a
//     notification sent just before the receiver starts waiting is never lost.
//   notify_waiters(): wakes every waiter registered now, and also every
//     waiter *created* (NotifyWaiter::init) before the call that has not
//     polled yet; it stores no permit.
//   A waiter woken by notify_one that is dropped before it observed the
//   notification passes it on (to the next waiter, or as the permit).
//
// The state word: generation << 2 | S, S in {EMPTY, NOTIFIED, WAITING}.
//   EMPTY     nobody waits, no permit
//   NOTIFIED  a permit is stored (nobody waits)
//   WAITING   the waiter list is not empty (changed only under lock_)
//   generation  counts notify_waiters() calls (bumped under lock_)
// notify_one is one CAS when nobody waits (EMPTY/NOTIFIED -> NOTIFIED); a
// wait that finds a permit is one CAS (NOTIFIED -> EMPTY). Everything else
// takes lock_.
//
// A waiter (NotifyWaiter) lives in its owner's memory:
//   IDLE --poll: permit or newer generation--> FINISHED
//   IDLE --poll: queue, clone waker----------> QUEUED
//   QUEUED --notify_one / notify_waiters: unlink, take waker, done = ONE/ALL
//          (release; the notifier's last access) --owner sees done--> FINISHED
//   QUEUED --owner drops it--> FINISHED (forwarding a notify_one it missed)
// `waker` and the link are guarded by lock_; `done` as in semaphore.h.
#ifndef WEFT_KERNEL_SYNC_NOTIFY_H
#define WEFT_KERNEL_SYNC_NOTIFY_H

#include <atomic>
#include <stdint.h>

#include "../../include/weft/weft.h"
#include "../../port/port.h"
#include "../intrusive_list.h"
#include "../wake_list.h"

namespace weft::kernel::sync {

struct NotifyWaiter : ListLink<> {
    enum Stage : uint8_t { IDLE = 0, QUEUED = 1, FINISHED = 2 };
    static constexpr uint32_t NOT_DONE = 0, BY_ONE = 1, BY_ALL = 2;

    uint64_t generation = 0;  // owner: notify_waiters count at init
    weft_waker waker{nullptr, nullptr};  // lock
    std::atomic<uint32_t> done{NOT_DONE};
    uint8_t stage = IDLE;  // owner
};

class Notify {
public:
    static constexpr uint64_t EMPTY = 0, NOTIFIED = 1, WAITING = 2, S_MASK = 3, GEN_ONE = 4;

    Notify() noexcept = default;
    Notify(const Notify&) = delete;
    Notify& operator=(const Notify&) = delete;

    // Prepares a waiter: from now on, a notify_waiters() call completes it.
    void init_waiter(NotifyWaiter* w) noexcept {
        // acquire: pairs with notify_waiters' release bump (not needed for
        // correctness of the generation check, which is ordered by the lock
        // when it matters; cheap on every target).
        w->generation = state_.load(std::memory_order_acquire) & ~S_MASK;
        w->stage = NotifyWaiter::IDLE;
        w->done.store(NotifyWaiter::NOT_DONE, std::memory_order_relaxed);
    }

    void notify_one() noexcept {
        uint64_t cur = state_.load(std::memory_order_relaxed);
        while ((cur & S_MASK) != WAITING) {
            // release: the notifier's writes are visible to the waiter that
            // consumes the permit (acquire CAS in poll).
            if (state_.compare_exchange_weak(cur, (cur & ~S_MASK) | NOTIFIED, std::memory_order_release,
                                             std::memory_order_relaxed))
                return;
        }
        notify_one_slow();
    }
    void notify_waiters() noexcept;

    // WEFT_READY or WEFT_PENDING (waker borrowed, cloned when queued).
    int poll(NotifyWaiter* w, const weft_waker* waker) noexcept;
    void cancel(NotifyWaiter* w) noexcept {
        // A waiter released by notify_waiters needs nothing more. (Whoever
        // owns the Notify keeps it alive until every waiter prepared on it
        // is finished or cancelled: a waiter completed by notify_one must
        // lock it here to pass the notification on. The C ABI counts
        // references for that.)
        // acquire: pairs with the notifier's release store of `done`.
        if (w->stage == NotifyWaiter::QUEUED && w->done.load(std::memory_order_acquire) != NotifyWaiter::BY_ALL)
            cancel_slow(w);
        w->stage = NotifyWaiter::FINISHED;
    }
    // Blocks a non-worker thread until notified (consumes a stored permit).
    void wait_blocking() noexcept;

private:
    // Consumes a permit or sees a newer generation: true = ready.
    bool try_consume(NotifyWaiter* w, uint64_t& cur) noexcept;
    int enqueue(NotifyWaiter* w, weft_waker waker) noexcept;
    void notify_one_slow() noexcept;
    // Under lock_: completes the queue head (collecting its waker) or, with
    // nobody queued, stores the permit.
    void notify_one_locked(WakeList& wakes) noexcept;
    void cancel_slow(NotifyWaiter* w) noexcept;

    std::atomic<uint64_t> state_{EMPTY};
    port::Mutex lock_;
    IntrusiveList<NotifyWaiter> waiters_;  // lock_
};

}  // namespace weft::kernel::sync

#endif
