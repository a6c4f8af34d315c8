// kernel/wake_list.h — a fixed batch of wakers collected under a lock and
// woken after it is released.
//
// Why: waking a task runs foreign code (a scheduler push, a futex syscall, a
// callback of some other runtime). Doing that while holding a waiter-queue
// lock lengthens the critical section and can deadlock if the woken code
// touches the same primitive. So every primitive that wakes waiters does:
//
//   WakeList wakes;                       // on the stack, no allocation
//   lock();
//   while (waiter = next()) { if (!wakes.can_push()) { unlock(); wakes.wake_all(); lock(); } wakes.push(..) }
//   unlock();
//   wakes.wake_all();                     // or let the destructor do it
//
// More than CAPACITY waiters are woken in batches of CAPACITY (the caller
// unlocks, wakes the batch, and relocks; see Notify::notify_waiters).
//
// The guard: every waker pushed is consumed exactly once — woken by
// wake_all(), or by the destructor if the owner returns (or unwinds) without
// calling it. wake_all() removes an entry *before* calling it, so an entry
// is never woken twice, whatever the wake call does. The kernel is built
// without exceptions; a waker must not throw (that is the C ABI's contract:
// no exception crosses it), and the C++ wrappers only hand the kernel task
// wakers, which never throw.
//
// Thread safety: a WakeList belongs to the thread that declared it.
#ifndef WEFT_KERNEL_WAKE_LIST_H
#define WEFT_KERNEL_WAKE_LIST_H

#include <stdint.h>

#include "../include/weft/weft.h"
#include "intrusive_list.h"

namespace weft::kernel {

class WakeList {
public:
    static constexpr uint32_t CAPACITY = 32;

    WakeList() noexcept = default;
    WakeList(const WakeList&) = delete;
    WakeList& operator=(const WakeList&) = delete;
    ~WakeList() { wake_all(); }

    bool can_push() const noexcept { return n_ < CAPACITY; }
    bool empty() const noexcept { return head_ == n_; }
    uint32_t size() const noexcept { return n_ - head_; }

    // Takes ownership of w (a waker with no vtable is ignored). The caller
    // checks can_push() first; pushing onto a full list is a kernel bug.
    void push(weft_waker w) noexcept {
        if (!w.vtable) return;
        wakers_[n_++] = w;
    }

    // Wakes (consumes) every collected waker in the order pushed (FIFO, as
    // the waiters queued) and empties the list. Call with no lock held.
    void wake_all() noexcept {
        while (head_ != n_) {
            weft_waker w = wakers_[head_++];  // removed before the call: never woken twice
            w.vtable->wake(w.data);
        }
        head_ = n_ = 0;
    }

    // Drops (releases without waking) every collected waker; for waiters
    // that will never be woken (timer wheels emptied at shutdown).
    void drop_all() noexcept {
        while (head_ != n_) {
            weft_waker w = wakers_[head_++];
            w.vtable->drop(w.data);
        }
        head_ = n_ = 0;
    }

    // Completes every waiter of `detached` (a list already taken out of the
    // primitive's queue, on the caller's stack), collecting wakers here.
    // lock (held on entry and on return) guards the list: waiters still on
    // it may unlink themselves (cancel) while a full batch is woken with the
    // lock released. take(w) returns w's waker and marks w done (its last
    // access to w). The caller unlocks, then calls wake_all().
    template <class W, class Tag, class Lock, class Take>
    void complete_in_batches(IntrusiveList<W, Tag>& detached, Lock& lock, Take take) noexcept {
        while (W* w = detached.front()) {
            if (!can_push()) {
                lock.unlock();
                wake_all();
                lock.lock();
                continue;
            }
            detached.pop_front();
            push(take(w));
        }
    }

private:
    weft_waker wakers_[CAPACITY];  // [head_, n_) are owned; the rest are garbage
    uint32_t head_ = 0;
    uint32_t n_ = 0;
};

}  // namespace weft::kernel

#endif
