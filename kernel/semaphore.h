// kernel/semaphore.h — the fair batch semaphore every weft lock and bounded
// channel is built on.
//
// What it promises:
//   - acquire(n) takes n permits at once; waiters are served strictly FIFO,
//     so a large acquire is never starved by a stream of small ones (a small
//     acquire that arrives after a queued large one waits behind it even if
//     permits are free for it).
//   - uncontended acquire and release are one CAS each, no lock.
//   - cancel-safe: a waiter dropped while queued unlinks itself and returns
//     the permits already assigned to it, which may satisfy the waiters
//     behind it.
//   - close() fails every queued and future acquire with WEFT_ECLOSED; an
//     acquire queued before close() is never granted after it.
//   - a capacity (`max`, MAX_PERMITS unless given): a release that would
//     make the free permits plus those already assigned to queued waiters
//     exceed it is refused (WEFT_EINVAL). A mutex (capacity 1) or rwlock
//     uses this to refuse an unlock of a lock that is not held, which would
//     otherwise turn it into a 2-permit semaphore for the rest of its life.
//
// The state word (one atomic): permits << 2 | WAITERS | CLOSED.
//   CLOSED   set once by close(), never cleared.
//   WAITERS  the waiter queue is not empty. Set and cleared only under
//            `lock_`. While it is set, the permit count is 0: the first waiter
//            took every free permit when it queued, and releases go to the
//            queue head instead of the counter. That one bit is what makes
//            the fast paths fair and lock-free: an acquire that sees
//            permits >= n knows nobody waits, and a release that sees WAITERS
//            clear knows it may simply add.
// (Permits and the flags share one word so that "take what is free and
// announce that I wait" is a single CAS: no window in which a release adds
// permits to the counter while a waiter is about to queue.)
//
// A waiter (SemWaiter) lives in the acquirer's memory (a coroutine frame, a
// C caller's weft_wait, a blocked thread's stack) and goes through
//
//   IDLE --poll: permits free--------------------------------> FINISHED
//   IDLE --poll: queue (clone waker, take what is free)-------> QUEUED
//   QUEUED --release assigns the rest: unlink, take waker, done=ACQUIRED-->
//             (the owner's next poll sees done)---------------> FINISHED
//   QUEUED --close: unlink, take waker, done=CLOSED-----------> FINISHED
//   QUEUED --owner drops it (cancel)--------------------------> FINISHED
//
// Who touches what: `remaining`, `waker` and the list link are guarded by
// `lock_` (the link may be in waiters_ or in the private list of a close()
// in progress); `done` is written under the lock, *as the last access of the
// releasing thread to the waiter* (release store), and read by the owner
// without the lock (acquire): once the owner sees done != 0 nobody else will
// touch the waiter, so it may free it. `needed` and `stage` are the owner's.
//
// Threads: any.
#ifndef WEFT_KERNEL_SEMAPHORE_H
#define WEFT_KERNEL_SEMAPHORE_H

#include <atomic>
#include <stdint.h>

#include "../include/weft/weft.h"
#include "../port/port.h"
#include "intrusive_list.h"
#include "wake_list.h"

namespace weft::kernel {

struct SemWaiter : ListLink<> {
    enum Stage : uint8_t { IDLE = 0, QUEUED = 1, FINISHED = 2 };
    static constexpr uint32_t NOT_DONE = 0, ACQUIRED = 1, CLOSED = 2;

    uint64_t needed = 0;     // owner: permits asked for
    uint64_t remaining = 0;  // lock: permits still to be assigned
    weft_waker waker{nullptr, nullptr};  // lock
    std::atomic<uint32_t> done{NOT_DONE};
    uint8_t stage = IDLE;    // owner
};

class Semaphore {
public:
    static constexpr uint64_t CLOSED = 1;
    static constexpr uint64_t WAITERS = 2;
    static constexpr unsigned SHIFT = 2;
    static constexpr uint64_t ONE = uint64_t(1) << SHIFT;
    static constexpr uint64_t MAX_PERMITS = UINT64_MAX >> 3;

    // permits <= max <= MAX_PERMITS (the caller checks).
    explicit Semaphore(uint64_t permits, uint64_t max = MAX_PERMITS) noexcept
        : state_(permits << SHIFT), max_(max) {}
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    // The owner closes it first (closing detaches every waiter) and keeps it
    // alive until every waiter that was ever queued on it has been polled to
    // completion or cancelled (the C ABI counts references for that).

    // 0, WEFT_EAGAIN (not enough free permits, or others are queued), or
    // WEFT_ECLOSED. Lock-free.
    int try_acquire(uint64_t n) noexcept {
        uint64_t cur = state_.load(std::memory_order_relaxed);
        for (;;) {
            if (cur & CLOSED) return WEFT_ECLOSED;
            // WAITERS set implies 0 permits, so this also keeps FIFO order.
            if ((cur >> SHIFT) < n) return WEFT_EAGAIN;
            // acquire: pairs with the release of whoever returned these
            // permits (a lock's critical section is visible to the next holder).
            if (state_.compare_exchange_weak(cur, cur - (n << SHIFT), std::memory_order_acquire,
                                             std::memory_order_relaxed))
                return 0;
        }
    }

    // Returns n permits. Lock-free when nobody waits; otherwise the permits
    // go to the queue head(s) in FIFO order, and the waiters that are
    // complete are woken after the lock is released. 0, or WEFT_EINVAL when
    // the free permits plus those assigned to queued waiters would exceed the
    // capacity (nothing is added then).
    int release(uint64_t n) noexcept {
        if (n == 0) return 0;
        if (n > max_) return WEFT_EINVAL;
        uint64_t cur = state_.load(std::memory_order_relaxed);
        while (!(cur & WAITERS)) {
            // WAITERS clear: nobody is queued, so nothing is assigned and the
            // counter alone is checked against the capacity.
            if (n > max_ - (cur >> SHIFT)) return WEFT_EINVAL;
            // release: publishes the releaser's critical section to the
            // next acquirer (its acquire CAS).
            if (state_.compare_exchange_weak(cur, cur + (n << SHIFT), std::memory_order_release,
                                             std::memory_order_relaxed))
                return 0;
        }
        return release_slow(n);
    }

    // Polls the acquire of n permits described by w (see the state machine
    // above): WEFT_READY (the permits are the caller's), WEFT_PENDING (the
    // waker is registered), or WEFT_ECLOSED. waker is borrowed (cloned when
    // the waiter queues). Call again after a wake, until it is not pending.
    int poll_acquire(SemWaiter* w, uint64_t n, const weft_waker* waker) noexcept {
        if (w->stage == SemWaiter::IDLE) {
            int r = try_acquire(n);
            if (r != WEFT_EAGAIN) {
                w->stage = SemWaiter::FINISHED;
                return r == 0 ? WEFT_READY : r;
            }
        }
        return poll_acquire_slow(w, n, waker);
    }

    // Drops an acquire that may be queued: unlinks it and returns the
    // permits assigned to it (also those of a completed acquire whose owner
    // never saw it complete). Idle or finished waiters: nothing to do.
    void cancel(SemWaiter* w) noexcept {
        // A waiter failed by close() needs nothing from the semaphore: close()
        // took back what it had been given. (The semaphore is still alive:
        // see the destructor note above.)
        // acquire: pairs with close()'s release store of `done`.
        if (w->stage == SemWaiter::QUEUED && w->done.load(std::memory_order_acquire) != SemWaiter::CLOSED)
            cancel_slow(w);
        w->stage = SemWaiter::FINISHED;
    }

    // Blocks the calling thread (which must not be a runtime worker: the
    // caller checks) until n permits are acquired: 0 or WEFT_ECLOSED.
    int acquire_blocking(uint64_t n) noexcept;

    // Closes: queued and later acquires fail with WEFT_ECLOSED (their
    // assigned permits go back to the counter); releases still count. The
    // queue is detached in one step under the lock, so a release (or a
    // cancel) that runs while close() wakes its batches cannot grant a
    // waiter that was queued before the close.
    void close() noexcept;

    bool is_closed() const noexcept { return state_.load(std::memory_order_acquire) & CLOSED; }
    // Free permits right now (a snapshot; 0 while anybody waits).
    uint64_t available() const noexcept { return state_.load(std::memory_order_relaxed) >> SHIFT; }
    // Whether any acquire is queued (a snapshot; for tests).
    bool has_waiters() const noexcept { return state_.load(std::memory_order_relaxed) & WAITERS; }
    uint64_t capacity() const noexcept { return max_; }

private:
    // Queues w (or completes it if permits appeared meanwhile). `waker` is
    // owned by the call: stored, or dropped when not needed.
    int enqueue(SemWaiter* w, uint64_t n, weft_waker waker) noexcept;
    int poll_acquire_slow(SemWaiter* w, uint64_t n, const weft_waker* waker) noexcept;
    void cancel_slow(SemWaiter* w) noexcept;
    __attribute__((noinline)) int release_slow(uint64_t n) noexcept;
    // Assigns n permits to the queue in FIFO order; what is left goes to
    // the counter once the queue is empty (clearing WAITERS). Lock held on
    // entry and exit; may drop it in between to wake a full batch. The
    // permits are the caller's to give (checked against the capacity, or
    // taken back from a waiter), so the final add only saturates if
    // concurrent releases overflowed the capacity while the lock was
    // dropped for a batch (WEFT_EINVAL was impossible to give by then).
    void release_locked(uint64_t n, WakeList& wakes) noexcept;
    static int done_result(SemWaiter* w, uint32_t d) noexcept {
        w->stage = SemWaiter::FINISHED;
        return d == SemWaiter::ACQUIRED ? WEFT_READY : WEFT_ECLOSED;
    }

    std::atomic<uint64_t> state_;
    const uint64_t max_;  // capacity (see the top of the file)
    port::Mutex lock_;
    IntrusiveList<SemWaiter> waiters_;  // lock_
    // lock_: permits assigned to the waiters in waiters_ (the sum of
    // needed - remaining); what a release checks against the capacity while
    // the counter is 0 (WAITERS set).
    uint64_t assigned_ = 0;
};

}  // namespace weft::kernel

#endif
