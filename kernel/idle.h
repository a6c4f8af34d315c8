// kernel/idle.h — which workers sleep, and who wakes whom.
//
// One 32-bit atomic packs two counters:
//   low 16 bits   workers searching for work (stealing)
//   high 16 bits  workers not parked
// plus, under a mutex, the list of parked worker indices.
//
// Rules (the same as Tokio's, which this follows closely):
//   * At most half the workers search at once (to_searching refuses beyond).
//   * Work that becomes stealable calls notify_one(): if nobody searches and
//     somebody sleeps, one sleeper is woken *as a searcher*. One exception
//     (unlike Tokio): a task that yields while nothing else waits on its
//     worker is queued silently, since that worker takes it back next
//     (scheduler.cpp schedule_local; likewise a joiner woken by a task's
//     completion, which is queued like a yield, and a LIFO chain's task put
//     back for the fairness tick, run_with_lifo). Nothing is left behind by it:
//     next_task returns that task before anything else except what the
//     fairness tick takes from the inject queue, and the tick then offers
//     the local queue's tasks (notify) before it runs the inject task.
//   * The last searcher to stop searching because it found work wakes
//     another searcher if work is still queued (pushed while it searched,
//     those pushers woke nobody). Not if it took the only task: that wake
//     would cost the finder a syscall before its task runs and the sleeper a
//     search and a park (scheduler.cpp leave_searching).
//   * Every worker that parks rechecks every queue after leaving the unparked
//     count (not only the last searcher, as in Tokio: a worker refused
//     searching can park after the searcher stopped, unseen by a pusher that
//     then gets stuck in a long poll; scheduler.cpp park()).
//
// No lost wake-up: a remote pusher does "publish task; SeqCst RMW on state
// (read the counters)" (should_notify); a parking worker does "SeqCst RMW on
// state (it leaves the unparked count); SeqCst fence; check every queue"
// (to_parked, then scheduler.cpp park()). RMWs on one atomic are totally
// ordered: if the worker's comes first, the pusher's RMW reads its effect
// and wakes someone; if the pusher's comes first, the worker's RMW reads from
// it (acquire after release), so the worker's recheck sees the task. A local
// pusher (scheduler.cpp notify_parked_local) uses "publish; SeqCst fence;
// load state" instead, which pairs with the parker's fence. A yield queued
// behind other tasks defers that fence and load until just before its
// worker's next poll (scheduler.cpp announce_pushes; after a pop from the
// local queue, the pop's CAS is the fence): between the two the worker runs
// only scheduler code, which cannot park it (its queue holds the task) nor
// run long (the fairness tick, which calls user callbacks, announces
// first), so every task is still offered before any poll that could block
// its worker.
// Model-checked by kernel/park.pml (SPIN; tests/check_models.sh).
#ifndef WEFT_KERNEL_IDLE_H
#define WEFT_KERNEL_IDLE_H

#include <atomic>
#include <stdint.h>

#include "../port/port.h"

namespace weft::kernel {

class Idle {
    static constexpr uint32_t UNPARK_SHIFT = 16;
    static constexpr uint32_t UNPARK_ONE = 1u << UNPARK_SHIFT;
    static constexpr uint32_t SEARCH_MASK = UNPARK_ONE - 1;

public:
    // sleepers: caller-owned array with room for every worker.
    void init(uint32_t workers, uint32_t* sleepers) {
        workers_ = workers;
        sleepers_ = sleepers;
        n_sleepers_ = 0;
        state_.store(workers << UNPARK_SHIFT, std::memory_order_relaxed);
    }

    // Returns the index of a worker to unpark (already counted as unparked and
    // searching), or -1 when nobody should be woken.
    int worker_to_notify() {
        if (!should_wake()) return -1;
        port::LockGuard g(mu_);
        if (!should_wake()) return -1;
        if (n_sleepers_ == 0) return -1;
        // One more unparked, one more searching.
        state_.fetch_add(UNPARK_ONE | 1, std::memory_order_seq_cst);
        return (int)sleepers_[--n_sleepers_];
    }

    // A worker wants to steal. Refused when half the workers already search.
    bool to_searching() {
        uint32_t s = state_.load(std::memory_order_seq_cst);
        if (2 * (s & SEARCH_MASK) >= workers_) return false;
        state_.fetch_add(1, std::memory_order_seq_cst);
        return true;
    }

    // A searcher stops searching. Returns true when it was the last one
    // (the caller must then notify another worker if work remains).
    bool from_searching() {
        uint32_t prev = state_.fetch_sub(1, std::memory_order_seq_cst);
        return (prev & SEARCH_MASK) == 1;
    }

    // A worker parks: it leaves the unparked (and searching) count and joins
    // the sleeper list. The caller then rechecks every queue (see above).
    void to_parked(uint32_t worker, bool searching) {
        port::LockGuard g(mu_);
        uint32_t dec = UNPARK_ONE + (searching ? 1 : 0);
        state_.fetch_sub(dec, std::memory_order_seq_cst);
        sleepers_[n_sleepers_++] = worker;
    }

    // A parked worker woke up. If it is still in the sleeper list it was not
    // chosen by a notifier (spurious wake, shutdown, timer): it removes itself
    // and returns false (it is unparked but not searching). Returns true when
    // a notifier took it off the list (it is unparked *and* searching).
    bool unpark_self(uint32_t worker) {
        port::LockGuard g(mu_);
        for (uint32_t i = 0; i < n_sleepers_; i++) {
            if (sleepers_[i] == worker) {
                sleepers_[i] = sleepers_[--n_sleepers_];
                state_.fetch_add(UNPARK_ONE, std::memory_order_seq_cst);
                return false;
            }
        }
        return true;
    }

    // Whether worker sits in the sleeper list.
    bool is_parked(uint32_t worker) {
        port::LockGuard g(mu_);
        for (uint32_t i = 0; i < n_sleepers_; i++)
            if (sleepers_[i] == worker) return true;
        return false;
    }

    // A racy hint for local pushes (scheduler.cpp notify_parked_local): could
    // waking somebody help? (nobody searching, and somebody parked)
    bool may_want_notify() const {
        uint32_t s = state_.load(std::memory_order_relaxed);
        return (s & SEARCH_MASK) == 0 && (s >> UNPARK_SHIFT) < workers_;
    }

    // Whether every worker is parked (the monitor's idle test; seq_cst: its
    // half of the monitor_idle protocol, pulse.cpp).
    bool all_parked() const { return (state_.load(std::memory_order_seq_cst) >> UNPARK_SHIFT) == 0; }

    // A racy hint: is any worker idle (searching or parked)?
    bool has_idle() const {
        uint32_t s = state_.load(std::memory_order_relaxed);
        return (s & SEARCH_MASK) != 0 || (s >> UNPARK_SHIFT) < workers_;
    }


    // The pusher's half of the protocol above: whether to wake somebody.
    bool should_notify() { return should_wake(); }

private:
    bool should_wake() {
        // A SeqCst RMW, not a load: it is the pusher's half of the no-lost-
        // wake-up argument above (a full barrier after publishing the task).
        uint32_t s = state_.fetch_add(0, std::memory_order_seq_cst);
        return (s & SEARCH_MASK) == 0 && (s >> UNPARK_SHIFT) < workers_;
    }

    std::atomic<uint32_t> state_{0};
    uint32_t workers_ = 0;
    port::Mutex mu_;
    uint32_t* sleepers_ = nullptr;  // guarded by mu_
    uint32_t n_sleepers_ = 0;       // guarded by mu_
};

}  // namespace weft::kernel

#endif
