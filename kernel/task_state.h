// kernel/task_state.h — the task state word and every transition of it.
//
// One 64-bit atomic per task packs six flags and a reference count:
//
//   bit 0  RUNNING        a thread owns the future (polling it, or cancelling it)
//   bit 1  COMPLETE       the future is gone; the output (or the failure) is set
//   bit 2  NOTIFIED       the task is (or is about to be) in a run queue
//   bit 3  JOIN_INTEREST  a join handle exists and will read the output
//   bit 4  JOIN_WAKER     the join waker field is published to the runtime
//                         (set: the runtime may read it; clear: the join
//                         handle owns it and may write it)
//   bit 5  CANCELLED      cancellation was requested; the next owner drops it
//   bits 6..63            reference count (REF_ONE = 1 << 6)
//
// The machine (ignoring the JOIN_* and refcount bits):
//
//          spawn                      wake (idle)
//   ----> NOTIFIED --run--> RUNNING <------------- IDLE
//           ^                 |  |  poll Pending     ^
//           |  wake during    |  +-------------------+
//           +--poll (re-queue)+  |
//                                | poll Ready / failure / cancel
//                                v
//                             COMPLETE (terminal; memory lives until refs = 0)
//
// References: one for the owned-task list (released at completion), one for
// each queue entry (the NOTIFIED ref), one for the join handle, one per waker.
//
// Every read-modify-write goes through fetch_update(); every transition is a
// named function returning what the caller must do next. Orderings: all RMWs
// are acq_rel. Acquire pairs each transition with the previous owner's
// release, so whoever takes RUNNING sees the future as the last poller left it,
// and whoever sees COMPLETE sees the output written before it.
//
// This header has no dependencies beyond <atomic> so tests can drive it
// exhaustively (tests/test_task_state.cpp).
// Model-checked by kernel/task_state.pml (SPIN; tests/check_models.sh).
#ifndef WEFT_KERNEL_TASK_STATE_H
#define WEFT_KERNEL_TASK_STATE_H

#include <atomic>
#include <stdint.h>

namespace weft::kernel {

struct Snapshot {
    static constexpr uint64_t RUNNING = 1u << 0;
    static constexpr uint64_t COMPLETE = 1u << 1;
    static constexpr uint64_t NOTIFIED = 1u << 2;
    static constexpr uint64_t JOIN_INTEREST = 1u << 3;
    static constexpr uint64_t JOIN_WAKER = 1u << 4;
    static constexpr uint64_t CANCELLED = 1u << 5;
    static constexpr uint64_t LIFECYCLE = RUNNING | COMPLETE;
    static constexpr unsigned REF_SHIFT = 6;
    static constexpr uint64_t REF_ONE = 1u << REF_SHIFT;
    static constexpr uint64_t FLAGS = REF_ONE - 1;

    uint64_t bits;

    bool running() const { return bits & RUNNING; }
    bool complete() const { return bits & COMPLETE; }
    bool idle() const { return (bits & LIFECYCLE) == 0; }
    bool notified() const { return bits & NOTIFIED; }
    bool join_interest() const { return bits & JOIN_INTEREST; }
    bool join_waker() const { return bits & JOIN_WAKER; }
    bool cancelled() const { return bits & CANCELLED; }
    uint64_t refs() const { return bits >> REF_SHIFT; }

    void set(uint64_t f) { bits |= f; }
    void unset(uint64_t f) { bits &= ~f; }
    void ref_inc() { bits += REF_ONE; }
    void ref_dec() { bits -= REF_ONE; }
};

// What the caller must do after each transition.
enum class ToRunning { Success, Cancelled, Failed, FailedDealloc };
enum class ToIdle { Ok, OkNotified, OkDealloc, Cancelled };
enum class ToNotified { DoNothing, Submit, Dealloc };

class TaskState {
public:
    // A new task: one ref for the owned-task list, one for the run queue entry
    // it is about to get (NOTIFIED), and one for the join handle if any.
    void init(bool with_join) {
        uint64_t s = Snapshot::NOTIFIED | 2 * Snapshot::REF_ONE;
        if (with_join) s += Snapshot::REF_ONE | Snapshot::JOIN_INTEREST;
        word_.store(s, std::memory_order_relaxed);
    }
    // The same refs, but the task starts RUNNING, as if it had woken itself
    // during a poll and been queued still RUNNING (the runner's ref stands
    // for the queue entry; the scheduler sets TaskHeader::resume_running).
    // Its first poll then needs no transition_to_running. Until then only
    // its join handle (abort: CANCELLED | NOTIFIED, not queued again) and
    // the shutdown drain can reach it, and both already handle a task
    // queued while RUNNING; a waker cannot exist before the first poll.
    void init_running(bool with_join) {
        uint64_t s = Snapshot::RUNNING | 2 * Snapshot::REF_ONE;
        if (with_join) s += Snapshot::REF_ONE | Snapshot::JOIN_INTEREST;
        word_.store(s, std::memory_order_relaxed);
    }
    Snapshot load() const { return {word_.load(std::memory_order_acquire)}; }

    // A run queue entry is being run: NOTIFIED -> RUNNING. The entry's ref now
    // belongs to the runner. Failed: someone else owns the future (a shutdown
    // claimed it); the caller drops the entry's ref.
    ToRunning transition_to_running() {
        ToRunning out = ToRunning::Success;
        fetch_update([&](Snapshot& s) {
            if (!s.idle()) {
                s.ref_dec();
                out = s.refs() == 0 ? ToRunning::FailedDealloc : ToRunning::Failed;
                return true;
            }
            s.set(Snapshot::RUNNING);
            s.unset(Snapshot::NOTIFIED);
            out = s.cancelled() ? ToRunning::Cancelled : ToRunning::Success;
            return true;
        });
        return out;
    }

    // The poll returned Pending: RUNNING -> idle. If woken during the poll,
    // the runner's ref becomes the new queue entry's ref (OkNotified: the
    // caller must schedule it). Otherwise the runner's ref is dropped.
    // Cancelled: cancellation arrived during the poll; the caller still owns
    // the future (RUNNING stays set) and must cancel it.
    ToIdle transition_to_idle() {
        ToIdle out = ToIdle::Ok;
        fetch_update([&](Snapshot& s) {
            if (s.cancelled()) {
                out = ToIdle::Cancelled;
                return false;
            }
            s.unset(Snapshot::RUNNING);
            if (s.notified()) {
                out = ToIdle::OkNotified;
            } else {
                s.ref_dec();
                out = s.refs() == 0 ? ToIdle::OkDealloc : ToIdle::Ok;
            }
            return true;
        });
        return out;
    }

    // The future finished (or was dropped): RUNNING -> COMPLETE, and the
    // caller's `release` references dropped in the same atomic step, except
    // that one is kept when the join waker must still be woken (JOIN_INTEREST
    // and JOIN_WAKER set): the caller wakes it, calls
    // unset_join_waker_after_complete, and then drops that last ref.
    struct Completed {
        Snapshot after;
        bool kept_ref;  // the caller still holds one reference
        bool dealloc;   // the last reference is gone: the caller frees the task
    };
    Completed transition_to_complete(uint32_t release) {
        Completed out{};
        fetch_update([&](Snapshot& s) {
            s.unset(Snapshot::RUNNING);
            s.set(Snapshot::COMPLETE);
            out.kept_ref = s.join_interest() && s.join_waker();
            s.bits -= (uint64_t)(release - (out.kept_ref ? 1 : 0)) * Snapshot::REF_ONE;
            out.dealloc = s.refs() == 0;
            out.after = s;
            return true;
        });
        return out;
    }

    // A waker consumed by wake(): its ref is transferred to the queue entry
    // (Submit) or dropped.
    ToNotified transition_to_notified_by_val() {
        ToNotified out = ToNotified::DoNothing;
        fetch_update([&](Snapshot& s) {
            if (s.running()) {
                // The runner re-queues it after the poll, with its own ref.
                s.set(Snapshot::NOTIFIED);
                s.ref_dec();
                out = ToNotified::DoNothing;
            } else if (s.complete() || s.notified()) {
                s.ref_dec();
                out = s.refs() == 0 ? ToNotified::Dealloc : ToNotified::DoNothing;
            } else {
                s.set(Snapshot::NOTIFIED);
                out = ToNotified::Submit;
            }
            return true;
        });
        return out;
    }

    // wake_by_ref(): Submit means a new ref was taken for the queue entry.
    ToNotified transition_to_notified_by_ref() {
        ToNotified out = ToNotified::DoNothing;
        fetch_update([&](Snapshot& s) {
            out = ToNotified::DoNothing;  // reset: this may be a retry
            if (s.complete() || s.notified()) return false;
            s.set(Snapshot::NOTIFIED);
            if (s.running()) {
                out = ToNotified::DoNothing;
            } else {
                s.ref_inc();
                out = ToNotified::Submit;
            }
            return true;
        });
        return out;
    }

    // abort(): returns true when the caller must schedule the task (a new ref
    // was taken for the queue entry) so a worker drops it.
    bool transition_to_notified_and_cancel() {
        bool submit = false;
        fetch_update([&](Snapshot& s) {
            submit = false;  // reset: this may be a retry
            if (s.cancelled() || s.complete()) return false;
            s.set(Snapshot::CANCELLED);
            if (s.running() || s.notified()) {
                s.set(Snapshot::NOTIFIED);
                submit = false;
            } else {
                s.set(Snapshot::NOTIFIED);
                s.ref_inc();
                submit = true;
            }
            return true;
        });
        return submit;
    }

    // Shutdown: marks CANCELLED and, if nobody owns the future, takes it
    // (sets RUNNING). Returns true when the caller now owns the future and
    // must cancel it.
    bool transition_to_shutdown() {
        bool claimed = false;
        fetch_update([&](Snapshot& s) {
            claimed = s.idle();
            s.set(Snapshot::CANCELLED);
            if (claimed) s.set(Snapshot::RUNNING);
            return true;
        });
        return claimed;
    }

    // ---- join handle side -------------------------------------------------

    // Dropping the join handle. Clears JOIN_INTEREST, and JOIN_WAKER too when
    // the task has not completed (the runtime will not read the waker then).
    // Returns true when the handle must drop the join waker itself: JOIN_WAKER
    // is clear afterwards. When the task completed but JOIN_WAKER is still set,
    // the runtime is waking that waker right now and drops it when it sees
    // JOIN_INTEREST gone (unset_join_waker_after_complete).
    bool transition_to_join_handle_dropped(bool* was_complete_out = nullptr) {
        bool drop_waker = true;
        bool was_complete = false;
        fetch_update([&](Snapshot& s) {
            was_complete = s.complete();
            s.unset(Snapshot::JOIN_INTEREST);
            if (!was_complete) s.unset(Snapshot::JOIN_WAKER);
            drop_waker = !s.join_waker();
            return true;
        });
        if (was_complete_out) *was_complete_out = was_complete;
        return drop_waker;
    }

    // join_free's fast path, for a handle that holds no waker and published
    // none (JOIN_WAKER clear, checked by the caller; it stays clear, since
    // only the handle sets it): clears JOIN_INTEREST and drops the handle's
    // ref at once. Returns true when that was the last ref.
    // refuse_if_complete: leave the state alone (Refused) when the task is
    // complete by now (the caller then takes the slow path).
    enum class Unref { Done, Last, Refused };
    Unref transition_to_join_handle_dropped_and_unref(bool refuse_if_complete = false) {
        Unref out = Unref::Done;
        fetch_update([&](Snapshot& s) {
            if (refuse_if_complete && s.complete()) {
                out = Unref::Refused;
                return false;
            }
            s.unset(Snapshot::JOIN_INTEREST);
            s.ref_dec();
            out = s.refs() == 0 ? Unref::Last : Unref::Done;
            return true;
        });
        return out;
    }

    // Publishes the join waker the handle just wrote. Fails (returns the
    // snapshot with COMPLETE) when the task completed first.
    bool set_join_waker() {
        bool ok = true;
        fetch_update([&](Snapshot& s) {
            if (s.complete()) {
                ok = false;
                return false;
            }
            s.set(Snapshot::JOIN_WAKER);
            return true;
        });
        return ok;
    }

    // Takes the join waker field back to overwrite it. Fails when complete.
    bool unset_join_waker() {
        bool ok = true;
        fetch_update([&](Snapshot& s) {
            if (s.complete()) {
                ok = false;
                return false;
            }
            s.unset(Snapshot::JOIN_WAKER);
            return true;
        });
        return ok;
    }

    // Runtime side, after completing and waking the join waker: hands the
    // waker field back to the handle. Returns the new snapshot; if it lacks
    // JOIN_INTEREST the handle is gone and the runtime drops the waker.
    Snapshot unset_join_waker_after_complete() {
        uint64_t prev = word_.fetch_and(~Snapshot::JOIN_WAKER, std::memory_order_acq_rel);
        return {prev & ~Snapshot::JOIN_WAKER};
    }

    // ---- references ----------------------------------------------------------
    void ref_inc() {
        // relaxed: a new ref can only be made from an existing one, which keeps
        // the task alive; nothing is published by the increment itself.
        word_.fetch_add(Snapshot::REF_ONE, std::memory_order_relaxed);
    }
    // Returns true when this dropped the last reference (caller deallocates).
    // acq_rel: release publishes this holder's writes; acquire on the last drop
    // makes every holder's writes visible to the deallocator.
    bool ref_dec(uint64_t n = 1) {
        uint64_t prev = word_.fetch_sub(n * Snapshot::REF_ONE, std::memory_order_acq_rel);
        return (prev >> Snapshot::REF_SHIFT) == n;
    }

    // Test seam.
    void store_for_test(uint64_t bits) { word_.store(bits, std::memory_order_relaxed); }

private:
    // Applies f to a snapshot until the CAS succeeds or f declines (returns
    // false). The single RMW helper behind every transition above. f may run
    // several times (each failed CAS retries with the new value), so every
    // outcome it reports must be assigned on every path of every run — see
    // tests/test_task_state.cpp RetryAfterInterferenceMatchesModel.
    template <class F>
    void fetch_update(F f) {
        uint64_t cur = word_.load(std::memory_order_acquire);
        for (;;) {
            Snapshot s{cur};
            if (!f(s)) return;
            if (word_.compare_exchange_weak(cur, s.bits, std::memory_order_acq_rel, std::memory_order_acquire)) return;
        }
    }

    std::atomic<uint64_t> word_;
};

}  // namespace weft::kernel

#endif
