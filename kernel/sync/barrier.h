// kernel/sync/barrier.h — Barrier: n parties wait until all n have arrived;
// then all are released together and exactly one of them (the last to
// arrive) is the leader. Reusable: the next n arrivals form a new round.
//
// Cancellation: a waiter dropped before its round completes leaves the
// round (its arrival is withdrawn), so the round still needs n live parties.
// That is what a task that gave up waiting means; counting it would release
// the others with one party missing.
//
// close() (the C ABI's free) fails the waiters of the gathering round and
// every later arrival with WEFT_ECLOSED, so a party is never left waiting
// for a round that can no longer complete.
//
// All state is under lock_ except the waiter's `done` flag (written under the
// lock as the releaser's last access to the waiter, read by the owner
// without it: the protocol of semaphore.h).
#ifndef WEFT_KERNEL_SYNC_BARRIER_H
#define WEFT_KERNEL_SYNC_BARRIER_H

#include <atomic>
#include <stdint.h>

#include "../../include/weft/weft.h"
#include "../../port/port.h"
#include "../intrusive_list.h"
#include "../wake_list.h"

namespace weft::kernel::sync {

struct BarrierWaiter : ListLink<> {
    enum Stage : uint8_t { IDLE = 0, QUEUED = 1, FINISHED = 2 };
    weft_waker waker{nullptr, nullptr};  // lock
    static constexpr uint32_t NOT_DONE = 0, RELEASED = 1, CLOSED = 2;
    std::atomic<uint32_t> done{NOT_DONE};
    uint8_t stage = IDLE;                // owner
    bool leader = false;                 // owner (set when it completes the round)
    uint64_t round = 0;                  // lock: the round it arrived in
};

class Barrier {
public:
    explicit Barrier(uint64_t n) noexcept : n_(n ? n : 1) {}
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    // WEFT_READY (w->leader says whether this one is the leader),
    // WEFT_PENDING, or WEFT_ECLOSED.
    int poll(BarrierWaiter* w, const weft_waker* waker) noexcept;
    void cancel(BarrierWaiter* w) noexcept;
    // Blocks a non-worker thread: 1 for the leader, 0 for the others,
    // WEFT_ECLOSED.
    int wait_blocking() noexcept;
    // Fails the queued waiters and every later arrival with WEFT_ECLOSED.
    void close() noexcept;

private:
    // Arrives; returns WEFT_READY (round completed by us: leader) or queues w
    // with `waker` (owned) and returns WEFT_PENDING.
    int arrive(BarrierWaiter* w, weft_waker waker) noexcept;

    uint64_t n_;
    uint64_t arrived_ = 0;  // lock_: arrivals in the gathering round
    uint64_t round_ = 0;    // lock_: rounds released so far
    bool closed_ = false;   // lock_
    port::Mutex lock_;
    IntrusiveList<BarrierWaiter> waiters_;  // lock_: this round's waiters
};

}  // namespace weft::kernel::sync

#endif
