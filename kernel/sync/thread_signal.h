// kernel/sync/thread_signal.h — the waker a plain (non-runtime) thread uses to
// block in a sync primitive: a futex word on the blocked thread's stack.
//
// The problem it solves: a blocking call (weft_mutex_lock_blocking,
// weft_mpsc_recv_blocking, ...) queues a waiter whose waker points into the
// caller's stack frame. The waker is called by another thread *after* that
// thread has released the primitive's lock, so "my waiter is done" (seen
// under the lock, or through the waiter's done flag) does not mean "nobody
// will touch my stack any more". The caller may only return once the waker
// itself has been consumed.
//
// The protocol: a ThreadSignal's waker is never cloned by the kernel (it is
// placed directly into one waiter slot), and every waker stored in a slot is
// consumed exactly once, by wake or by drop (WakeList's guarantee; drop when
// a slot is emptied without waking). Both wake and drop do the same thing:
// swap the word to SIGNALLED and, only if the sleeper was in the futex, wake
// it. The swap is the waker's last access to the memory — futex_wake only
// uses the address as a key, and a stray futex wake of whatever lives at that
// address later is a spurious wake-up, which every futex waiter tolerates.
// So wait() returning (word == SIGNALLED) means the stack frame is free.
//
//   word: WAITING (0) --sleeper--> SLEEPING (1)   (about to futex_wait)
//         any --wake/drop--> SIGNALLED (2)        (once; final)
//
// Before it moves the word to SLEEPING, wait() may watch it for a few
// microseconds while it is still WAITING (the adaptive spin, below): a
// waker that comes meanwhile finds WAITING and makes no syscall.
//
// Orderings: the swap is release (what the waker did before — filling the
// waiter, publishing a message — is visible to the woken thread); wait()'s
// loads and CAS are acquire and pair with it.
//
// Thread safety: one owner thread (the blocked one) calls reset/wait; the
// waker may be called from any thread, once.
#ifndef WEFT_KERNEL_SYNC_THREAD_SIGNAL_H
#define WEFT_KERNEL_SYNC_THREAD_SIGNAL_H

#include <atomic>
#include <stdint.h>

#include "../../arch/arch.h"
#include "../../include/weft/weft.h"
#include "../../port/port.h"

namespace weft::kernel::sync {

// The bookkeeping of ThreadSignal's adaptive spin (see the comment in
// ThreadSignal), kept apart from the clock so it can be tested alone. One per
// blocked thread: no sharing, no atomics.
class SpinPolicy {
public:
    static constexpr uint32_t MAX_SKIP = 256;

    constexpr explicit SpinPolicy(unsigned cpus) noexcept : one_cpu_(cpus <= 1) {}

    // Whether this wait may spin before it sleeps. Counts a skipped wait.
    bool may_spin() noexcept {
        if (one_cpu_) return false;
        if (skip_ == 0) return true;
        skip_--;
        return false;
    }
    // The spin that may_spin() allowed ended: hit (the signal came) or miss.
    // A hit halves the penalty; a miss doubles it (1, 2, 4 ... MAX_SKIP) and
    // skips the spin for that many of the next waits.
    void spun(bool hit) noexcept {
        if (hit) {
            penalty_ /= 2;
            return;
        }
        uint32_t next = penalty_ == 0 ? 1u : 2u * penalty_;
        penalty_ = next < MAX_SKIP ? next : MAX_SKIP;
        skip_ = penalty_;
    }
    uint32_t skip() const noexcept { return skip_; }
    uint32_t penalty() const noexcept { return penalty_; }

private:
    uint32_t skip_ = 0;     // waits left that go straight to the futex
    uint32_t penalty_ = 0;  // the skip the next miss sets (after doubling)
    bool one_cpu_;
};

// The adaptive spin itself: watches `word` until it reads `value` (acquire)
// for up to limit_ns, when `policy` allows a spin, and tells the policy how
// it went. True when the value came. Shared by ThreadSignal::wait and the
// join wait of a plain thread (scheduler.cpp join_wait).
bool spin_until_equal(const std::atomic<uint32_t>& word, uint32_t value, SpinPolicy& policy,
                      uint64_t limit_ns) noexcept;

class ThreadSignal {
public:
    static constexpr uint32_t WAITING = 0, SLEEPING = 1, SIGNALLED = 2;
    // Before the futex sleep, wait() may spin for up to SPIN_LIMIT_NS, but
    // only while spinning has been paying off on this thread (SpinPolicy
    // above, spin_until_equal in thread_signal.cpp). Why both halves:
    //  - A sleeping thread's wake-up costs a futex_wake in the waker, and on a
    //    virtual machine whose other vCPU is halted another ~20 us before the
    //    woken thread runs. When the answer comes within a few microseconds
    //    (a thread-per-core shard answering the main thread), a spin turns a
    //    17-20 us round trip into about 1 us and spares the waker's syscall.
    //  - When the threads outnumber the cores, the spinner competes with the
    //    thread that is about to wake it: measured on the 2-vCPU development
    //    machine (bench cross_thread_wake, 2 workers + the main thread), every
    //    unconditional spin — pause loops of 1-100 us, sched_yield loops —
    //    made the round trip slower (7-100 us against 6). A spin that ends
    //    without the signal therefore makes the next waits of this thread
    //    skip the spin, for twice as many waits after each further miss (up
    //    to SpinPolicy::MAX_SKIP): once capped (after 9 misses in a row), a
    //    thread whose spins do not pay spins once per MAX_SKIP + 1 waits,
    //    for SPIN_LIMIT_NS plus up to ~2 us of overshoot. One CPU: never.
    // The policy is per thread, for all primitives together (a thread that
    // mixes short mutex waits with long channel receives mostly does not
    // spin), and reads the thread's CPU count once (a later affinity change
    // is only seen through hits and misses).
    static constexpr uint64_t SPIN_LIMIT_NS = 5000;

    ThreadSignal() noexcept = default;
    ThreadSignal(const ThreadSignal&) = delete;
    ThreadSignal& operator=(const ThreadSignal&) = delete;

    // A waker that signals this object. Hand it to exactly one waiter slot.
    weft_waker waker() noexcept { return weft_waker{this, &VTABLE}; }

    // Re-arms for another registration. Only after wait() returned (the
    // previous waker is consumed) or before the first registration.
    void reset() noexcept { word_.store(WAITING, std::memory_order_relaxed); }

    bool signalled() const noexcept { return word_.load(std::memory_order_acquire) == SIGNALLED; }

    // Blocks until the waker has been consumed (woken or dropped).
    void wait() noexcept {
        if (word_.load(std::memory_order_acquire) == SIGNALLED) return;
        if (spin_with(this_thread_policy(), SPIN_LIMIT_NS)) return;
        for (;;) {
            uint32_t v = word_.load(std::memory_order_acquire);
            if (v == SIGNALLED) return;
            // acquire on success/failure: a SIGNALLED seen here must publish
            // the waker's writes like the load above.
            if (v == WAITING && !word_.compare_exchange_strong(v, SLEEPING, std::memory_order_acquire,
                                                               std::memory_order_acquire))
                continue;  // it became SIGNALLED meanwhile
            port::futex_wait(&word_, SLEEPING, -1);
        }
    }

    // The spin before the futex sleep, when `policy` allows one: watches
    // the word for up to limit_ns and tells the policy whether the signal
    // came. True when it did (acquire: as wait()'s loads; the word stays
    // WAITING throughout). wait() passes this thread's policy; public so
    // that tests can drive both outcomes with a policy of their own.
    bool spin_with(SpinPolicy& policy, uint64_t limit_ns) noexcept {
        return spin_until_equal(word_, SIGNALLED, policy, limit_ns);
    }

    // The calling thread's policy (a thread_local, set up on first use).
    static SpinPolicy& this_thread_policy() noexcept;

private:
    static void signal(const void* p) noexcept {
        auto* self = static_cast<ThreadSignal*>(const_cast<void*>(p));
        std::atomic<uint32_t>* word = &self->word_;
        // release: publishes everything the waker did before. After this swap
        // *self may be gone (the owner's wait() can return); only the address
        // is used below, as a futex key.
        if (word->exchange(SIGNALLED, std::memory_order_release) == SLEEPING) port::futex_wake(word, 1);
    }
    static weft_waker clone(const void* p) noexcept {
        // Never called by weft: a ThreadSignal waker lives in one slot only.
        // A foreign clone would break the "consumed exactly once" rule.
        port::fatal("weft: internal error: a blocking-thread waker was cloned");
        (void)p;
    }
    static void drop(const void* p) noexcept { signal(p); }
    static constexpr weft_waker_vtable VTABLE = {clone, signal, signal, drop};

    std::atomic<uint32_t> word_{WAITING};
};

}  // namespace weft::kernel::sync

#endif
