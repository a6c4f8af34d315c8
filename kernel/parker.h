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
#ifndef WEFT_KERNEL_PARKER_H
#define WEFT_KERNEL_PARKER_H

#include <atomic>
#include <stdint.h>

#include "../port/port.h"

namespace weft::kernel {

class Parker {
public:
    static constexpr uint32_t EMPTY = 0, PARKED = 1, NOTIFIED = 2;

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

    void unpark() {
        if (state_.exchange(NOTIFIED, std::memory_order_release) == PARKED) port::futex_wake(&state_, 1);
    }

private:
    std::atomic<uint32_t> state_{EMPTY};
};

}  // namespace weft::kernel

#endif
