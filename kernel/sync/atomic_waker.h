// kernel/sync/atomic_waker.h — one waker slot shared by one registrant (a
// channel's receiver) and any number of wakers (its senders), lock-free.
//
// The protocol is the well-known "atomic waker" (futures-rs / Tokio): a
// state word serialises access to the slot.
//
//   WAITING (0)      idle: the slot may be read or replaced by whoever moves
//                    the state away from WAITING
//   REGISTERING (1)  the registrant is writing the slot
//   WAKING (2)       a waker is taking the slot (or, OR'd into REGISTERING,
//                    a wake arrived while the registrant was writing: the
//                    registrant wakes its own new waker before leaving)
//
// Why a sender never misses a receiver: the sender publishes its message and
// then does an RMW on `state`; the receiver does RMWs on `state` while
// registering and then looks at the queue again. RMWs on one word are totally
// ordered: if the sender's comes first, the receiver's acquire CAS
// synchronises with it and its re-check sees the message; if the receiver's
// comes first, the sender finds the waker in the slot.
//
// Only one thread may register at a time (the single receiver; its handle is
// owned by one task or thread at a time). Any thread may wake.
#ifndef WEFT_KERNEL_SYNC_ATOMIC_WAKER_H
#define WEFT_KERNEL_SYNC_ATOMIC_WAKER_H

#include <atomic>
#include <stdint.h>

#include "../../include/weft/weft.h"

namespace weft::kernel::sync {

class AtomicWaker {
public:
    static constexpr uint32_t WAITING = 0, REGISTERING = 1, WAKING = 2;

    AtomicWaker() noexcept = default;
    AtomicWaker(const AtomicWaker&) = delete;
    AtomicWaker& operator=(const AtomicWaker&) = delete;
    // The owner drops whatever is left (take() and drop) before destroying.

    // Registers a clone of *w (borrowed), unless the slot already holds a
    // waker that wakes the same task (no clone then: the common re-poll).
    void register_by_ref(const weft_waker* w) noexcept { register_impl(w, weft_waker{nullptr, nullptr}); }
    // Registers `owned` (ownership moves to the slot).
    void register_owned(weft_waker owned) noexcept { register_impl(nullptr, owned); }

    // Takes the registered waker, if any and if no other wake is taking it.
    // The caller wakes or drops it.
    weft_waker take() noexcept {
        // acq_rel: acquire pairs with the registrant's release (the slot
        // contents); release publishes the caller's writes (the message) to
        // the registrant's next acquire CAS.
        uint32_t prev = state_.fetch_or(WAKING, std::memory_order_acq_rel);
        if (prev != WAITING) return weft_waker{nullptr, nullptr};  // registrant or another waker handles it
        weft_waker w = slot_;
        slot_ = weft_waker{nullptr, nullptr};
        // We own WAKING exclusively (prev was WAITING: nobody else clears it,
        // and a registrant that sees it backs off without writing `state`),
        // so a plain store ends it. release: the slot is emptied before the
        // next registrant reads it.
        state_.store(WAITING, std::memory_order_release);
        return w;
    }

    void wake() noexcept {
        weft_waker w = take();
        if (w.vtable) w.vtable->wake(w.data);
    }

    // The registrant withdraws: empties the slot if it holds a waker that
    // wakes the same task as *id (borrowed; only compared). Used when a
    // receive is abandoned, so that the channel does not keep the task's
    // waker (and so the task's memory) until the next send or the free.
    // Runs the registrant's side of the protocol, so the registrant's rule
    // applies: one thread at a time, and never concurrently with a register.
    void clear_if_will_wake(const weft_waker* id) noexcept {
        uint32_t cur = WAITING;
        // acquire: the slot's contents as the last waker/registrant left them.
        if (!state_.compare_exchange_strong(cur, REGISTERING, std::memory_order_acquire, std::memory_order_acquire))
            return;  // WAKING: a wake is taking the slot right now and consumes it
        weft_waker old{nullptr, nullptr};
        if (slot_.vtable && weft_waker_will_wake(&slot_, id)) {
            old = slot_;
            slot_ = weft_waker{nullptr, nullptr};
        }
        cur = REGISTERING;
        // acq_rel: as in register_impl (release publishes the slot).
        if (!state_.compare_exchange_strong(cur, WAITING, std::memory_order_acq_rel, std::memory_order_acquire)) {
            // A wake arrived meanwhile and left the slot to us: wake what is
            // left there (another waker than ours, or nothing).
            weft_waker w = slot_;
            slot_ = weft_waker{nullptr, nullptr};
            // acq_rel: hand the slot back empty; see the waker's writes.
            state_.exchange(WAITING, std::memory_order_acq_rel);
            if (w.vtable) w.vtable->wake(w.data);
        }
        if (old.vtable) old.vtable->drop(old.data);
    }

private:
    void register_impl(const weft_waker* by_ref, weft_waker owned) noexcept {
        uint32_t cur = WAITING;
        // acquire: the slot's contents as the last waker/registrant left them.
        if (!state_.compare_exchange_strong(cur, REGISTERING, std::memory_order_acquire, std::memory_order_acquire)) {
            // WAKING: a wake is taking the slot right now. It may take the old
            // waker (or nothing); wake the new one ourselves so the wake is
            // not lost. (REGISTERING cannot be seen: one registrant.)
            if (by_ref) {
                by_ref->vtable->wake_by_ref(by_ref->data);
            } else {
                owned.vtable->wake(owned.data);
            }
            return;
        }
        weft_waker old{nullptr, nullptr};
        if (by_ref) {
            if (!slot_.vtable || !weft_waker_will_wake(&slot_, by_ref)) {
                old = slot_;
                slot_ = by_ref->vtable->clone(by_ref->data);
            }
        } else {
            old = slot_;
            slot_ = owned;
        }
        cur = REGISTERING;
        // acq_rel: release publishes the slot; acquire (on failure) sees the
        // message of the waker that set WAKING meanwhile.
        if (!state_.compare_exchange_strong(cur, WAITING, std::memory_order_acq_rel, std::memory_order_acquire)) {
            // A wake arrived while we wrote the slot (state is
            // REGISTERING|WAKING) and left it to us: take and wake it.
            weft_waker w = slot_;
            slot_ = weft_waker{nullptr, nullptr};
            // acq_rel: hand the slot back empty; see the waker's writes.
            state_.exchange(WAITING, std::memory_order_acq_rel);
            if (old.vtable) old.vtable->drop(old.data);
            if (w.vtable) w.vtable->wake(w.data);
            return;
        }
        if (old.vtable) old.vtable->drop(old.data);
    }

    std::atomic<uint32_t> state_{WAITING};
    weft_waker slot_{nullptr, nullptr};  // guarded by state_ (see above)
};

}  // namespace weft::kernel::sync

#endif
