// kernel/parker.h — put one thread to sleep until another says "go".
//
// state: EMPTY (0) -> PARKED (1) by the sleeper, any -> NOTIFIED (2) by a
// waker. An unpark that arrives before the park is remembered (NOTIFIED), so
// it is never lost; the futex wait only sleeps while the word is PARKED.
//
//   park():    NOTIFIED->EMPTY: return at once.
//              EMPTY->PARKED, then futex_wait(PARKED) until NOTIFIED->EMPTY.
//   unpark():  swap(NOTIFIED); if the previous value was PARKED, futex_wake.
//
// Orderings: unpark's swap is release (what the waker did before is
// published); park's NOTIFIED->EMPTY CAS is acquire (the sleeper sees it).
// Model-checked by kernel/park.pml (SPIN; tests/check_models.sh).
//
// A worker with an I/O driver sleeps in the driver instead (park_in): state
// PARKED_DRIVER (3), and unpark() wakes it by writing the driver's eventfd
// (kernel/io.h has the protocol). Only PARKED_DRIVER gets the write: a
// sleeper that is awake costs its wakers no syscall (the sleeping flag).
#ifndef WEFT_KERNEL_PARKER_H
#define WEFT_KERNEL_PARKER_H

#include <atomic>
#include <stdint.h>

#include "../port/io_sys.h"
#include "../port/port.h"

namespace weft::kernel {

class Parker {
public:
    static constexpr uint32_t EMPTY = 0, PARKED = 1, NOTIFIED = 2, PARKED_DRIVER = 3;

    // The eventfd that wakes this parker while it sleeps in a driver (-1:
    // none). Set once before the worker starts; wake_writes counts writes.
    void set_wake_fd(int fd, std::atomic<uint64_t>* wake_writes) {
        wake_fd_ = fd;
        wake_writes_ = wake_writes;
    }

    // Sleeps through wait(ctx, timeout_ns), a wait in the driver that returns
    // on a completion, the eventfd, the timeout or a signal. Returns true
    // when an unpark() came (before or during the wait).
    template <class Wait>
    bool park_in(int64_t timeout_ns, Wait&& wait) {
        uint32_t exp = NOTIFIED;
        if (state_.compare_exchange_strong(exp, EMPTY, std::memory_order_acquire)) return true;
        exp = EMPTY;
        // seq_cst: the wakers' exchange and this CAS are RMWs of one word,
        // so one of them comes first: either this fails (NOTIFIED) or the
        // waker sees PARKED_DRIVER and writes the eventfd.
        if (!state_.compare_exchange_strong(exp, PARKED_DRIVER, std::memory_order_seq_cst)) {
            state_.exchange(EMPTY, std::memory_order_acquire);
            return true;
        }
        wait(timeout_ns);
        return state_.exchange(EMPTY, std::memory_order_acquire) == NOTIFIED;
    }

    // Returns true when woken by unpark(), false on timeout (timeout_ns >= 0).
    bool park(int64_t timeout_ns = -1) {
        uint32_t exp = NOTIFIED;
        if (state_.compare_exchange_strong(exp, EMPTY, std::memory_order_acquire)) return true;
        exp = EMPTY;
        if (!state_.compare_exchange_strong(exp, PARKED, std::memory_order_acquire)) {
            // Must have been NOTIFIED in between.
            state_.exchange(EMPTY, std::memory_order_acquire);
            return true;
        }
        uint64_t deadline = timeout_ns >= 0 ? port::monotonic_ns() + (uint64_t)timeout_ns : 0;
        for (;;) {
            int64_t left = -1;
            if (timeout_ns >= 0) {
                uint64_t now = port::monotonic_ns();
                left = now >= deadline ? 0 : (int64_t)(deadline - now);
            }
            if (left != 0) port::futex_wait(&state_, PARKED, left);
            exp = NOTIFIED;
            if (state_.compare_exchange_strong(exp, EMPTY, std::memory_order_acquire)) return true;
            if (timeout_ns >= 0 && port::monotonic_ns() >= deadline) {
                // Time is up: leave PARKED, unless a notify raced in.
                exp = PARKED;
                if (state_.compare_exchange_strong(exp, EMPTY, std::memory_order_acquire)) return false;
                state_.exchange(EMPTY, std::memory_order_acquire);
                return true;
            }
            // Spurious wake-up: sleep again.
        }
    }

    // The state word, for a sleeper that watches it for NOTIFIED before it
    // parks (scheduler.cpp join_wait); park() then returns at once.
    const std::atomic<uint32_t>& word() const { return state_; }

    void unpark() {
        uint32_t prev = state_.exchange(NOTIFIED, std::memory_order_seq_cst);
        if (prev == PARKED) {
            port::futex_wake(&state_, 1);
        } else if (prev == PARKED_DRIVER) {
            port::eventfd_signal(wake_fd_);
            wake_writes_->fetch_add(1, std::memory_order_relaxed);
        }
    }

private:
    std::atomic<uint32_t> state_{EMPTY};
    int wake_fd_ = -1;
    std::atomic<uint64_t>* wake_writes_ = nullptr;
};

}  // namespace weft::kernel

#endif
