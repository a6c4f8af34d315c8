// kernel/scheduler.cpp — see scheduler.h for the design and the shutdown
// protocol; task_state.h for the task state machine.
#include "scheduler.h"
#include "io.h"

#include <new>

#include "pool.h"
#include "sync/thread_signal.h"

namespace weft::kernel {

constinit __attribute__((tls_model("initial-exec"))) thread_local Worker* t_worker = nullptr;
constinit __attribute__((tls_model("initial-exec"))) thread_local Shared* t_runtime = nullptr;
constinit __attribute__((tls_model("initial-exec"))) thread_local PollTls t_poll{};

namespace {
// The pulse tick at the end of this thread's last sampled poll (the start of
// the current window, pulse_poll_timed), or 0. Reset to 0 wherever a thread
// may spend long between polls without it being a poll's fault: searching,
// parking, firing timers, taking a worker, an isolation thread's wait.
__attribute__((tls_model("initial-exec"))) thread_local uint64_t t_win_start = 0;

// This thread's CPU time when the poll in progress began, read only for a
// suspect task (a strike already, or above MONITOR); 0 otherwise. See
// pulse_poll_end: it tells a descheduled thread from a hog.
__attribute__((tls_model("initial-exec"))) thread_local uint64_t t_cpu_start = 0;
}  // namespace

namespace {

// The task being polled on this thread (t_worker: scheduler.h).
__attribute__((tls_model("initial-exec"))) thread_local TaskHeader* t_current = nullptr;

// Finished children of one fork-join group whose count this thread holds
// (weft_fork_done): flush(group, n) counts them (flush_fork_held), before the
// thread polls any task that is not a never-suspended child of that group
// (one that has not finished, so the group is still pending), and
// before it looks for work elsewhere, parks, stops or goes on without its
// worker. n == 0: none held. Per thread, not per worker: a thread that loses
// its worker in a child's poll (pulse.h) keeps what it holds until that poll
// ends, and the group cannot complete before then anyway.
struct ForkHeld {
    void* group;
    weft_fork_flush_fn flush;
    uint32_t n;
};
constinit __attribute__((tls_model("initial-exec"))) thread_local ForkHeld t_fork_held = {nullptr, nullptr, 0};

// Counts the fork-join children this thread holds; the flush may wake the
// group's parent. Mostly between polls (run_task, worker_loop); inside one
// when a poll reports another group (weft_fork_done).
__attribute__((noinline)) void flush_fork_held() {
    ForkHeld h = t_fork_held;
    t_fork_held.n = 0;
    h.flush(h.group, h.n);
}
// Set while a future's drop function runs (run_drop_future: cancel_task,
// where it sees that task as t_current, and a refused spawn's release):
// weft_fork_done holds nothing in a drop (the worker may park right after a
// cancellation: cancel_owned).
__attribute__((tls_model("initial-exec"))) thread_local bool t_dropping = false;

// Runs t's drop_future (if any) as a drop (t_dropping).
void run_drop_future(TaskHeader* t) {
    if (!t->vtable->drop_future) return;
    bool was_dropping = t_dropping;
    t_dropping = true;
    t->vtable->drop_future(t->state_ptr());
    t_dropping = was_dropping;
}
// Set when the task being polled wakes itself (see run_task).
__attribute__((tls_model("initial-exec"))) thread_local bool t_self_woken = false;
// Set while complete() wakes the task awaiting the finished one's JoinHandle
// (see schedule_local).
__attribute__((tls_model("initial-exec"))) thread_local bool t_waking_joiner = false;
// Task ids come from a global counter in blocks, so a spawn does no shared
// RMW (next_task_id, scheduler.h).
std::atomic<uint64_t> g_id_blocks{0};

}  // namespace

constinit __attribute__((tls_model("initial-exec"))) thread_local uint64_t t_id_next = 0;
constinit __attribute__((tls_model("initial-exec"))) thread_local uint64_t t_id_end = 0;

uint64_t next_task_id_block() {
    // relaxed: only uniqueness matters.
    uint64_t b = g_id_blocks.fetch_add(1, std::memory_order_relaxed);
    t_id_next = b * ID_BLOCK + 1;  // ids start at 1; 0 means "none"
    t_id_end = (b + 1) * ID_BLOCK + 1;
    return t_id_next++;
}

namespace {

void shared_release(Shared* sh);
void dealloc(TaskHeader* t);

// ---- overflow and closed-queue handling -----------------------------------

void drop_queue_entry(TaskHeader* t);

// Where a local queue's overflow goes. A closed inject queue (shutdown) takes
// nothing: each task is dropped like a drained entry.
// Test: Shutdown.LocalQueueOverflowAfterCloseLosesNoTask.
struct InjectSink {
    Shared* sh;
    void push_batch(TaskHeader* const* tasks, uint32_t n) {
        if (!sh->inject.push_batch(tasks, n))
            for (uint32_t i = 0; i < n; i++) drop_queue_entry(tasks[i]);
    }
};

// ---- idle / notify ----------------------------------------------------------

// After publishing a task that only a parked worker could run (inject
// queue): wakes one if nobody is searching. Required for liveness.
void notify_parked(Shared* sh) {
    // The pusher's half of the no-lost-wake-up protocol (idle.h).
    if (!sh->idle.should_notify()) return;
    int w = sh->idle.worker_to_notify();
    if (w >= 0) sh->workers[w].parker.unpark();
}

// Pushes t onto the inject queue from a thread that is not a worker of sh
// and wakes a worker. Once the push is visible a worker may run t to
// completion and shutdown may free Shared, so the pusher holds its own
// reference on Shared (holders) across push and notify. Taking it is safe:
// until the push the caller's reference on t keeps Shared alive (t is not
// complete, so shutdown step 5 makes it an orphan holding Shared).
// Test: Shutdown.ForeignWakeByValueRacesFree. Returns false when closed
// (the caller still holds t's queue ref).
bool remote_push(Shared* sh, TaskHeader* t) {
    sh->holders.fetch_add(1, std::memory_order_relaxed);
    bool ok = sh->inject.push(t);
    if (ok) notify_parked(sh);
    shared_release(sh);
    return ok;
}

// After pushing onto this worker's own queue. Not only for parallelism: if
// this worker is then stuck in a long poll, only another worker can run the
// task, so an idle worker must not go to sleep without seeing it (test:
// Cpp.ForkJoinLastTwoChildrenFinishTogetherAfterParentLeft, which hung when
// this was a plain racy read). It is the pusher's half of the idle protocol
// (idle.h), done with a SeqCst fence and a plain load rather than an RMW on
// the idle word: a fence needs no ownership of that shared cache line, which
// every local push would otherwise pull back and forth between workers. The
// parker's half is the fence after to_parked in park(). (ThreadSanitizer does
// not model fences; the tests exercise the protocol instead.)
__attribute__((noinline)) void notify_parked_local_slow(Shared* sh) {
    int w = sh->idle.worker_to_notify();
    if (w >= 0) sh->workers[w].parker.unpark();
}
inline void notify_parked_local(Shared* sh) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sh->idle.may_want_notify()) notify_parked_local_slow(sh);
}

// The deferred pusher's half for yields queued quietly behind other tasks
// (schedule_local sets w->unannounced): publish; full fence; read the idle
// word, done before this worker's next poll starts, so that no poll can run
// long (a task busy-waiting on the queued one, with the other workers
// parked) while a pushed task has not been offered. Between the push and
// here this worker runs only scheduler code, which neither parks (its queue
// is not empty) nor polls; the fairness tick, which runs user callbacks,
// announces first (next_task). A pop from the local queue is a CAS, whose
// barrier serves as the fence (pop_local: free on x86-64); before a task
// from anywhere else, run_task fences.
inline void announce_pushes(Worker* w) {
    w->unannounced = false;
    notify_parked_local(w->shared);
}
inline TaskHeader* pop_local(Worker* w) {
    TaskHeader* t = w->queue.pop();
    if (!t) return nullptr;
    prefetch_task_rest(t);
    if (w->unannounced) {
        w->unannounced = false;
        weft_arch_fence_after_rmw();  // the pop's CAS, after the pushes
        if (w->shared->idle.may_want_notify()) notify_parked_local_slow(w->shared);
    }
    return t;
}

bool work_pending(Shared* sh) {
    for (uint32_t i = 0; i < sh->nworkers; i++)
        if (sh->workers[i].queue.has_stealable()) return true;
    return !sh->inject.is_empty();
}

// ---- owned-task lists (owned_tasks.h) -----------------------------------------

// A task completed on this thread. Returns true when the caller releases
// the list's reference now (the task was unlinked here, or never linked);
// false when it is in no list any more, or its owner will unlink it later
// (reap) and release the reference then.
bool owned_remove(Shared* sh, TaskHeader* t) {
    uint16_t shard = t->owned_shard;
    if (shard == OWNED_UNLINKED) return false;
    if (shard == OWNED_UNBOUND) {
        t->owned_shard = OWNED_UNLINKED;
        return true;
    }
    if (shard == OWNED_LOOSE) {
        port::LockGuard g(sh->loose_mu);
        sh->loose.unlink(t);
        t->owned_shard = OWNED_UNLINKED;
        return true;
    }
    Worker* w = t_worker;
    if (w && w->shared == sh && w->index == shard) {
        w->owned.list.unlink(t);
        t->owned_shard = OWNED_UNLINKED;
        return true;
    }
    sh->workers[shard].owned.push_done(t);
    return false;
}

// Owner only: releases the tasks that completed on other threads.
void reap(Worker* w) {
    TaskHeader* t = w->owned.take_done();
    while (t) {
        TaskHeader* next = t->owned_done_next;
        if (t->state.ref_dec()) dealloc(t);
        t = next;
    }
}

// ---- completion ---------------------------------------------------------------

void dealloc(TaskHeader* t) {
    if (t->stage == Stage::Finished) {
        if (t->vtable->drop_output) t->vtable->drop_output(t->state_ptr());
    } else if (t->stage == Stage::Future) {
        // Unreachable by the protocol (a live future holds the owned-list ref);
        // kept so that a broken invariant leaks nothing.
        run_drop_future(t);
    }
    t->stage = Stage::Dropped;
    if (t->join_waker.vtable) {
        weft_waker w = t->join_waker;
        t->join_waker = weft_waker{nullptr, nullptr};
        w.vtable->drop(w.data);
    }
    // TASK_ORPHAN and TASK_PINNED each hold a reference on Shared.
    Shared* orphan_of = t->orphan ? t->shared : nullptr;
    uint32_t shared_refs = (t->orphan & TASK_ORPHAN ? 1u : 0u) + (t->orphan & TASK_PINNED ? 1u : 0u);
    pool::free(t, t->alloc_size);
    for (uint32_t i = 0; i < shared_refs; i++) shared_release(orphan_of);
}

// The thread that owns RUNNING has set result/stage. Publishes COMPLETE,
// wakes the join handle, releases the runner's ref and (if still linked) the
// owned list's ref.
void complete(TaskHeader* t, uint32_t runner_refs) {
    // Nobody else can reach a task that never suspended (in no owned list),
    // has no join handle and whose only references are the runner's and the
    // list's (2: no waker is held anywhere; acquire: a waker dropped on
    // another thread is done with it). Nothing can read COMPLETE or take a
    // reference any more (a timer that borrows this task's waker, timer.h,
    // may still fire until the drop below cancels it: a wake by reference
    // of a running task, which sets NOTIFIED and takes nothing), so it is
    // freed without the state word's RMW: one
    // locked instruction fewer for every detached or ForkJoin task that
    // finishes in its first poll (skynet's children, chained_spawn's links).
    // Not for a failure (result < 0, not cancelled): that path reports it.
    if (t->owned_shard == OWNED_UNBOUND && runner_refs == 1 && (t->result >= 0 || t->result == WEFT_ECANCELED)) {
        Snapshot s = t->state.load();
        if (s.refs() == 2 && !s.join_interest()) {
            t->owned_shard = OWNED_UNLINKED;
            dealloc(t);
            return;
        }
    }
    // Unlinking first is fine: only a joined-workers shutdown walks the lists.
    uint32_t refs = runner_refs + (owned_remove(t->shared, t) ? 1 : 0);
    // Read before COMPLETE is published: after it, another holder may free t.
    int result = t->result;
    uint64_t id = t->id;
    Shared* failure_to = nullptr;
    bool failed = __builtin_expect(result < 0, 0) && result != WEFT_ECANCELED;
    if (failed) {
        failure_to = failure_target_of(t);
        // The join handle may report this failure after the runtime is
        // freed (join_free): pin Shared until the task is deallocated, so
        // that report can still read whether the runtime lives (failure.h).
        // Before COMPLETE is published, so whoever deallocates sees the pin.
        t->orphan |= TASK_PINNED;
        t->shared->holders.fetch_add(1, std::memory_order_relaxed);
    }
    TaskState::Completed c = t->state.transition_to_complete(refs);
    // Failure containment, layer 1 (failure.h): a failure nobody can join.
    if (failed && !c.after.join_interest()) report_detached_failure(failure_to, id, result);
    if (c.kept_ref) {
        // JOIN_WAKER set: the field is ours to read until we clear the bit.
        t_waking_joiner = true;
        t->join_waker.vtable->wake_by_ref(t->join_waker.data);
        t_waking_joiner = false;
        Snapshot after = t->state.unset_join_waker_after_complete();
        if (!after.join_interest()) {
            // The handle went away meanwhile and left the waker to us.
            weft_waker w = t->join_waker;
            t->join_waker = weft_waker{nullptr, nullptr};
            w.vtable->drop(w.data);
        }
        if (t->state.ref_dec()) dealloc(t);
    } else if (c.dealloc) {
        dealloc(t);
    }
}

// Drops the future of a task whose RUNNING bit the caller owns, and completes
// it as cancelled.
void cancel_task(TaskHeader* t, uint32_t runner_refs) {
    if (t->stage == Stage::Future) {
        t->stage = Stage::Dropped;
        TaskHeader* prev = t_current;
        t_current = t;
        run_drop_future(t);
        t_current = prev;
    }
    t->result = WEFT_ECANCELED;
    complete(t, runner_refs);
}

// ---- running ------------------------------------------------------------------

void schedule_local(Worker* w, TaskHeader* t, bool is_yield);

// ---- pulse hooks (pulse.h) --------------------------------------------------------

#if WEFT_PULSE
inline uint64_t pulse_ticks(Shared* sh) {
    return sh->pulse.ticks_are_ns ? sh->clock.raw() : weft_arch_cycles();
}
inline uint64_t pulse_ticks_to_ns(const Shared* sh, uint64_t ticks) {
    if (sh->pulse.ticks_are_ns) return ticks;
    return (uint64_t)(((unsigned __int128)ticks * sh->pulse_ns_mult) >> 32);
}

// Hist bucket of a poll of ns nanoseconds (scheduler.h, WorkerMetrics).
inline uint32_t poll_bucket(uint64_t ns) {
    uint32_t width = ns ? 64 - (uint32_t)__builtin_clzll(ns) : 0;
    if (width <= 8) return 0;
    uint32_t b = width - 8;
    return b < POLL_HIST_BUCKETS - 1 ? b : POLL_HIST_BUCKETS - 1;
}

void set_tier(Shared* sh, Worker* w, TaskHeader* t, uint8_t to, uint64_t poll_ns) {
    uint8_t from = t->budget.tier.load(std::memory_order_relaxed);
    if (from == to) return;
    t->budget.tier.store(to, std::memory_order_relaxed);
    t->budget.strikes = 0;
    t->budget.good_polls = 0;
    if (w) WorkerMetrics::bump(w->metrics.tier_changes);
    pulse_event(sh, WEFT_PULSE_TIER_CHANGE, w ? w->index : UINT32_MAX, t->id, poll_ns, from, to);
    if (to == TIER_WARN && from < TIER_WARN && sh->pulse.on_warn) sh->pulse.on_warn(sh->pulse.ctx, t->id, poll_ns);
}

// Polls timed with the cycle counter: one in POLL_SAMPLE_EVERY (the poll-time
// histogram's sample, and a window check), every poll of a suspect task (a
// strike already, or above MONITOR), and every poll for a while after a
// window looked slow. Reading the counter costs about 13 ns on a virtual
// machine, twice per timed poll; timing every poll made the scheduling
// workloads 20-44% slower (bench/RESULTS.md). A hog is still caught: its
// long poll makes its window slow, so its next polls are timed, and a poll
// that never ends is the monitor's (pulse.cpp).
constexpr uint32_t POLL_SAMPLE_EVERY = WEFT_POLL_HIST_SAMPLE_EVERY;
constexpr uint32_t PRECISE_ALWAYS = UINT32_MAX;  // an injected clock: time every poll

// A poll to time (pulse_poll_begin): its budget by the task's tier, and in
// t_poll whether it is the histogram's sample and its start. Out of line,
// like everything a timed poll does: the common poll keeps only a flag in a
// register.
__attribute__((noinline)) void pulse_poll_stamp(Shared* sh, const TaskHeader* t) {
    PollTls& tl = t_poll;
    uint8_t tier = t->budget.tier.load(std::memory_order_relaxed);
    uint8_t suspect = (uint8_t)(t->budget.strikes | tier);
    tl.budget = sh->pulse.budget_of_tier[tier & 3];
    bool sampled = false;
    if (tl.sample_in == 0) {
        // The countdown ran out: a sample, or (precise) one more timed poll.
        if (tl.precise_polls == 0) {
            tl.sample_in = POLL_SAMPLE_EVERY;
            sampled = true;
        } else {
            tl.sample_in = 1;
            if (--tl.sampled_in == 0) {
                tl.sampled_in = POLL_SAMPLE_EVERY;
                sampled = true;
            }
        }
    }
    tl.stamp_sampled = sampled;
    // CLOCK_THREAD_CPUTIME_ID is a real system call (hundreds of ns): only
    // for a task whose polls already looked long.
    t_cpu_start = suspect && sh->pulse.verify_cpu ? port::thread_cpu_ns() : 0;
    tl.stamp_t0 = pulse_ticks(sh);
}

// Makes this thread time its next polls (precise_polls of them, or all:
// PRECISE_ALWAYS). The countdown then runs out at every poll; the sample's
// count goes on in sampled_in (pulse_poll_stamp) and comes back to the
// countdown when the run ends (pulse_poll_timed), so the histogram still
// samples exactly every POLL_SAMPLE_EVERY-th poll (weft_metrics.h: chosen by
// count, unbiased).
inline void pulse_time_next_polls(uint32_t n) {
    if (t_poll.precise_polls == 0) t_poll.sampled_in = t_poll.sample_in;
    t_poll.precise_polls = n;
    t_poll.sample_in = 1;
}

// Budget's tier and strikes, read as one 16-bit word: zero for a clean task
// (MONITOR, no strike). Only the thread that holds the task's RUNNING bit
// writes them (this one now, or an earlier runner, ordered before us by the
// RUNNING transition or the queue), so this plain read races with nothing:
// wakers only read the tier. (A plain read of an atomic byte: fine with GCC
// and Clang, which the kernel is built with.)
static_assert(offsetof(Budget, tier) == 0 && offsetof(Budget, strikes) == 1 && sizeof(std::atomic<uint8_t>) == 1,
              "tier and strikes are the budget's first two bytes");
inline uint16_t tier_and_strikes(const TaskHeader* t) {
    uint16_t v;
    __builtin_memcpy(&v, static_cast<const void*>(&t->budget), sizeof v);
    return v;
}

// Before a poll: the task's budget, and (with handoff) this thread's word.
// Returns whether the poll is timed (then pulse_poll_stamp has stamped it).
// The common poll (a clean task, not the sample) costs a 16-bit load, the
// default budget's store and the countdown; a suspect task's or a timed
// poll's work is pulse_poll_stamp's.
inline bool pulse_poll_begin(Shared* sh, TaskHeader* t, bool may_lose) {
    PollTls& tl = t_poll;  // one TLS address for all of it
    tl.budget = sh->pulse.budget_of_tier[TIER_MONITOR];
    // One countdown decides the sample and a precise run (pulse_poll_stamp);
    // a suspect's polls are all timed.
    bool timed = (--tl.sample_in == 0) | (tier_and_strikes(t) != 0);
    if (__builtin_expect(timed, 0)) pulse_poll_stamp(sh, t);
    if (may_lose) {
        uint64_t seq = tl.seq + 4;
        tl.seq = seq;
        // release: the scheduler code before it (touching the worker) is
        // visible to a monitor that reads POLLING and hands the worker over.
        tl.thread->word.store(seq | ThreadRec::POLLING, std::memory_order_release);
        tl.in_user_poll = true;
    }
    return timed;
}

// A poll that cost its thread the worker (a handoff): the task goes to the
// isolation pool, unless the thread was shown to be descheduled (computed
// == false), which is not the task's doing. Returns kept.
inline bool pulse_lost_tier(Shared* sh, TaskHeader* t, bool kept, uint64_t ns, bool computed) {
    if (!kept && computed && sh->pulse.top_tier == TIER_ISOLATE) set_tier(sh, nullptr, t, TIER_ISOLATE, ns);
    return kept;
}

// The end of a timed poll: records it, moves the task between tiers.
__attribute__((noinline)) bool pulse_poll_timed(Shared* sh, Worker* w, TaskHeader* t, bool kept, uint32_t left) {
    uint64_t now = pulse_ticks(sh);
    uint64_t t0 = t_poll.stamp_t0;
    uint64_t ticks = now > t0 ? now - t0 : 0;
    uint64_t ns = pulse_ticks_to_ns(sh, ticks);
    Worker* mw = kept ? w : nullptr;
    if (t_poll.precise_polls != 0 && t_poll.precise_polls != PRECISE_ALWAYS && --t_poll.precise_polls == 0)
        t_poll.sample_in = t_poll.sampled_in;  // the run is over: the sample's count goes on
    if (t_poll.stamp_sampled) {
        // The window since the last sample (POLL_SAMPLE_EVERY polls and the
        // scheduler's work between them): if it took a slow poll's time,
        // time every poll for a while to find out whose.
        if (t_win_start && now - t_win_start >= sh->pulse.slow_poll_ticks && t_poll.precise_polls == 0)
            pulse_time_next_polls(2 * POLL_SAMPLE_EVERY);
        t_win_start = now;
        if (mw) WorkerMetrics::bump(mw->metrics.poll_hist[poll_bucket(ns)]);
    }
    Budget& b = t->budget;
    b.timed_polls++;  // wraps; a count for task dumps
    b.last_poll_ns = ns < UINT32_MAX ? (uint32_t)ns : UINT32_MAX;
    b.remaining = left < 0xFFFF ? (uint16_t)left : 0xFFFF;
    bool slow = ticks >= sh->pulse.slow_poll_ticks;
    if (slow && t_cpu_start) {
        // A suspect's long poll: did it compute, or was the thread
        // descheduled (a loaded machine, a VM's stolen time)? Less than half
        // the wall time on a CPU is not the task's doing: no strike, and not
        // a good poll either.
        uint64_t cpu = port::thread_cpu_ns() - t_cpu_start;
        // A poll whose thread the monitor lowered to SCHED_IDLE after
        // taking its worker (pulse.h step 5) was starved by that from then
        // on: judged on its first handoff_ns, when it ran as before.
        uint64_t judged = ns;
        if (!kept && t_poll.thread->lowered.load(std::memory_order_relaxed) && judged > sh->pulse.handoff_ns)
            judged = sh->pulse.handoff_ns;
        if (cpu * 2 < judged) return pulse_lost_tier(sh, t, kept, ns, false);
    }
    if (slow) {
        b.good_polls = 0;
        if (++b.strikes >= sh->pulse.strikes_to_promote) {
            uint8_t tier = b.tier.load(std::memory_order_relaxed);
            if (tier < sh->pulse.top_tier) set_tier(sh, mw, t, (uint8_t)(tier + 1), ns);
            b.strikes = 0;
        }
    } else if (b.tier.load(std::memory_order_relaxed) != TIER_MONITOR) {
        if (++b.good_polls >= sh->pulse.good_polls_to_demote) {
            uint8_t tier = b.tier.load(std::memory_order_relaxed);
            set_tier(sh, mw, t, (uint8_t)(tier - 1), ns);
        }
    }
    return pulse_lost_tier(sh, t, kept, ns, true);
}

// After a poll. Returns false when this thread lost w during the poll (then
// w is not touched). *spent: the poll used up its budget.
inline bool pulse_poll_end(Shared* sh, Worker* w, TaskHeader* t, bool timed, bool may_lose, bool* spent) {
    PollTls& tl = t_poll;
    bool kept = true;
    uint32_t left = tl.budget;
    tl.budget = PollTls::UNMETERED;  // between polls: weft_budget_consume asks nothing
    *spent = left == 0;
    if (may_lose) {
        tl.in_user_poll = false;
        tl.thread->word.store(tl.seq | ThreadRec::IDLE, std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);  // store, then load (pulse.h)
        kept = w->epoch.load(std::memory_order_relaxed) == t_poll.epoch;
    }
    if (__builtin_expect(timed, 0)) return pulse_poll_timed(sh, w, t, kept, left);
    // Untimed: a clean task whose window looked fine. A poll that lost the
    // worker lasted at least handoff_ns (the monitor's measure).
    if (__builtin_expect(!kept, 0)) return pulse_lost_tier(sh, t, kept, sh->pulse.handoff_ns, true);
    return true;
}
#endif

inline bool task_isolated(const Shared* sh, const TaskHeader* t) {
#if WEFT_PULSE
    return sh->isolation && t->budget.tier.load(std::memory_order_relaxed) == TIER_ISOLATE;
#else
    (void)sh;
    (void)t;
    return false;
#endif
}

// Queues a task from a thread that holds no worker of its runtime (or must
// not use it): the isolation pool for an isolated task, else the inject
// queue. The caller holds a queue ref (or RUNNING, resume_running set).
void schedule_coreless(Shared* sh, TaskHeader* t) {
    bool ok = task_isolated(sh, t) ? isolation_push(sh, t) : remote_push(sh, t);
    if (!ok) drop_queue_entry(t);  // closed: shutting down
}

// After a poll on a thread that holds no worker (an isolation thread, or one
// that lost its worker during this poll).
void after_poll_coreless(Shared* sh, TaskHeader* t, int r) {
    if (r == WEFT_PENDING && __builtin_expect(sh->failed.load(std::memory_order_relaxed), 0)) {
        // Shut down by the failure policy: no worker may walk the loose list
        // again (they may all be parked), so cancel it now (failure.h).
        cancel_task(t, 1);
        return;
    }
    if (r == WEFT_PENDING) {
        if (t_self_woken) {
            t->resume_running = 1;
            schedule_coreless(sh, t);
            return;
        }
        if (t->owned_shard == OWNED_UNBOUND) {
            port::LockGuard g(sh->loose_mu);
            t->owned_shard = OWNED_LOOSE;
            sh->loose.push(t);
        }
        switch (t->state.transition_to_idle()) {
        case ToIdle::Ok:
            return;
        case ToIdle::OkDealloc:
            dealloc(t);
            return;
        case ToIdle::OkNotified:
            schedule_coreless(sh, t);
            return;
        case ToIdle::Cancelled:
            cancel_task(t, 1);
            return;
        }
    }
    t->result = r < 0 ? r : 0;
    t->stage = Stage::Finished;
    complete(t, 1);
}

// This thread lets its worker go for good (pulse.h: RELEASED). The poll
// sequence is kept: it only grows on a thread, so the monitor's ask and this
// thread's ack of an old poll never match a later one. release: what the
// thread did to the worker is visible to the monitor that reads RELEASED.
inline void store_released(ThreadRec* me) {
    me->word.store(t_poll.seq | ThreadRec::RELEASED, std::memory_order_release);
}

// The monitor gave this thread's worker to another thread while it was in
// t's poll: finish t without the worker, and let the worker go for good.
__attribute__((noinline)) void finish_after_losing_worker(Shared* sh, TaskHeader* t, int r) {
    t_current = nullptr;
    t_worker = nullptr;
    store_released(t_poll.thread);
    after_poll_coreless(sh, t, r);
    if (t_fork_held.n != 0) flush_fork_held();  // held in t's poll
}

// Takes RUNNING for a dequeued task. Returns false when there is nothing to
// poll (the task was cancelled, completed or freed here).
inline bool begin_run(TaskHeader* t) {
    if (t->resume_running) {
        // Queued while still RUNNING (spawned so, or it woke itself): we own
        // the future already. Honour a cancellation that arrived meanwhile.
        t->resume_running = 0;
        if (t->state.load().cancelled()) {
            cancel_task(t, 1);
            return false;
        }
        return true;
    }
    switch (t->state.transition_to_running()) {
    case ToRunning::Success:
        return true;
    case ToRunning::Cancelled:
        cancel_task(t, 1);
        return false;
    case ToRunning::Failed:
        return false;
    case ToRunning::FailedDealloc:
        dealloc(t);
        return false;
    }
    return false;
}

// Whether this thread may keep holding its fork-join counts while it polls
// t: t is a child of the same group that has never suspended (fork_group is
// valid only then; one that yielded counts too). t has not finished, so the
// group cannot complete before it does: holding the counts delays nobody.
inline bool fork_held_across(const TaskHeader* t) {
    return t->owned_shard == OWNED_UNBOUND && t->fork_group == t_fork_held.group;
}

// Returns false when this thread lost w during the poll (pulse.h): the task
// has been dealt with, and the caller must not touch w again.
bool run_task(Worker* w, TaskHeader* t) {
    if (__builtin_expect(w->unannounced, 0)) announce_pushes(w);  // t came from elsewhere than pop_local
    if (t_fork_held.n != 0 && !fork_held_across(t)) {
        TaskHeader* before = w->lifo;
        flush_fork_held();
        // The flush may have been the group's last count and woken its
        // parent into the LIFO slot (outside a poll; a task already there
        // went to the queue). It runs before t, as it would have after the
        // last child's own poll: from the slot it would wait out t's poll,
        // unstealable (a t that waits for the parent would wait for ever).
        // t has not begun: it is still a queue entry, so it goes back to the
        // queue, at the back and stealable (not to the slot, where the
        // parent's poll could strand it the same way), and is offered.
        TaskHeader* woken = w->lifo;
        if (woken && woken != before) {
            w->lifo = nullptr;
            InjectSink sink{w->shared};
            if (w->queue.push_back(t, sink)) WorkerMetrics::bump(w->metrics.overflows);
            notify_parked_local(w->shared);
            t = woken;
        }
    }
    if (!begin_run(t)) return true;
    // The failure policy shut the runtime down (failure.h): a task queued or
    // yielding is cancelled here rather than polled; suspended ones are
    // cancelled by cancel_owned. One relaxed load of a read-mostly line.
    if (__builtin_expect(w->shared->failed.load(std::memory_order_relaxed), 0)) {
        cancel_task(t, 1);
        return true;
    }
    WorkerMetrics::bump(w->metrics.polls);
    weft_context cx{task_waker(t)};
    t_current = t;
    t_self_woken = false;
    int r;
    bool spent = false;  // pulse: the poll used up its budget
    // Whether t may be in the ISOLATE tier now. Only a timed poll can change
    // a tier (pulse_poll_timed; a poll that lost the worker returned
    // already), and a task not timed at its poll's start was clean
    // (MONITOR): so after an untimed poll it is not isolated. With pulse off
    // there are no tiers and no isolation pool (pulse_start).
    bool maybe_isolated = false;
#if WEFT_PULSE
    Shared* sh = w->shared;
    if (__builtin_expect(sh->pulse.on, 1)) {
        bool may_lose = sh->pulse.handoff;
        bool timed = pulse_poll_begin(sh, t, may_lose);
        maybe_isolated = timed;
        r = t->vtable->poll(t->state_ptr(), &cx);
        if (__builtin_expect(!pulse_poll_end(sh, w, t, timed, may_lose, &spent), 0)) {
            finish_after_losing_worker(sh, t, r);
            return false;
        }
    } else
#endif
    {
        r = t->vtable->poll(t->state_ptr(), &cx);
    }
    t_current = nullptr;
    if (r == WEFT_PENDING) {
        if (t_self_woken) {
            // It woke itself (a yield): back of the queue, still RUNNING and
            // holding the runner's ref. Saves the wake, idle and running
            // transitions (three atomic RMWs). A wake from elsewhere during
            // the poll set NOTIFIED; the next poll that returns Pending
            // re-queues it once more, which is harmless.
            t->resume_running = 1;
            if (__builtin_expect(maybe_isolated && task_isolated(w->shared, t), 0)) {
                schedule_coreless(w->shared, t);
                return true;
            }
#if WEFT_PULSE
            // Its budget ran out (a busy task yielding at an await or a
            // checkpoint): look at the timers now, not at the next fairness
            // tick, so that a timer that came due during a run of such polls
            // queues its task ahead of this one. One clock read per spent
            // budget (starvation_checkpoint: p99 lateness).
            if (__builtin_expect(spent, 0) && timers_fire(w, false)) t_win_start = 0;
#endif
            schedule_local(w, t, true);
            return true;
        }
        if (t->owned_shard == OWNED_UNBOUND) {
            // About to suspend for the first time: link it while we still own
            // RUNNING, so shutdown can find it (owned_tasks.h).
            t->owned_shard = (uint16_t)w->index;
            w->owned.list.push(t);
        }
        switch (t->state.transition_to_idle()) {
        case ToIdle::Ok:
            return true;
        case ToIdle::OkDealloc:
            dealloc(t);
            return true;
        case ToIdle::OkNotified:
            // Woken during its own poll: it goes behind the others (a yield).
            schedule(t, true);
            return true;
        case ToIdle::Cancelled:
            cancel_task(t, 1);
            return true;
        }
    }
    t->result = r < 0 ? r : 0;
    t->stage = Stage::Finished;
    complete(t, 1);
    return true;
}

TaskHeader* pull_from_inject(Worker* w) {
    Shared* sh = w->shared;
    if (sh->inject.is_empty()) return nullptr;
    // Take a fair share in one lock: enough to keep busy, not so much that
    // the other workers starve.
    uint32_t want = sh->inject.len() / sh->nworkers + 1;
    uint32_t room = LOCAL_QUEUE_CAPACITY / 2 - w->queue.len();
    if (want > room) want = room;
    if (want > 32) want = 32;
    if (want == 0) want = 1;
    TaskHeader* batch[32];
    uint32_t n = sh->inject.pop_n(batch, want);
    if (n == 0) return nullptr;
    WorkerMetrics::bump(w->metrics.inject_pops, n);
    InjectSink sink{sh};
    for (uint32_t i = 1; i < n; i++) w->queue.push_back(batch[i], sink);
    // The task that runs after batch[0] (the local queue's pop asks for the
    // one after each task it hands out, not for the first).
    if (n > 1) prefetch_task(batch[1]);
    prefetch_task_rest(batch[0]);
    return batch[0];
}

// Moves the oldest fork-stack task to the (empty) local queue, where idle
// workers can steal it.
__attribute__((noinline)) void expose_fork_slow(Worker* w) {
    uint32_t n = (w->fork_top - w->fork_bottom + 1) / 2;  // at least one
    if (n > FORK_EXPOSE_BATCH) n = FORK_EXPOSE_BATCH;
    InjectSink sink{w->shared};
    for (uint32_t i = 0; i < n; i++) w->queue.push_back(w->fork[w->fork_bottom++ % FORK_STACK_CAPACITY], sink);
    WorkerMetrics::bump(w->metrics.fork_exposed, n);
    notify_parked_local(w->shared);
}

// Only when some worker is idle to take it: an exposed task that nobody
// steals is eventually run from the queue by the fairness check, which starts
// another subtree early and turns depth-first into breadth-first (with one
// worker, skynet overflowed the local queue 250 times a run before this).
// Even the last task on the stack is offered: the task this worker runs next
// may never yield (a busy-wait on a sibling), and a task left on the private
// stack behind it could then never run
// (Cpp.ForkJoinLastTwoChildrenFinishTogetherAfterParentLeft).
inline void expose_fork(Worker* w) {
    if (w->fork_top != w->fork_bottom && w->shared->idle.has_idle() && w->queue.is_empty())
        expose_fork_slow(w);
}

TaskHeader* fork_pop(Worker* w) {
    if (w->fork_top == w->fork_bottom) return nullptr;
    return w->fork[--w->fork_top % FORK_STACK_CAPACITY];
}

TaskHeader* next_task(Worker* w) {
    // A task woken into the LIFO slot outside a poll (an I/O completion
    // reaped while parking) runs first; after a poll run_with_lifo takes it.
    if (TaskHeader* t = w->lifo) {
        w->lifo = nullptr;
        return t;
    }
    if (--w->ticks_to_fairness == 0) {
        w->ticks_to_fairness = INJECT_INTERVAL;
        // The tick runs user callbacks (reaped tasks' drop_output, timer
        // and I/O wakers): a quietly queued yield is offered first.
        if (w->unannounced) announce_pushes(w);
        if (__builtin_expect(w->shared->failed.load(std::memory_order_relaxed), 0)) cancel_owned(w);
        reap(w);
        // I/O maintenance while busy: submit what the tasks queued, reap
        // completions (Tokio's event_interval; io.h). Only while other work
        // waits here: a worker with none is about to park, and park submits
        // and waits in one system call (one echo connection: a tick that
        // submitted the task's queued write first made that round trip cost
        // 3 io_uring_enter instead of 2, about 0.01 per round trip; epoll's
        // tick is an epoll_wait of its own). Completions already posted are
        // reaped either way (free on io_uring).
        if (w->io) {
            bool busy = !w->queue.is_empty() || w->fork_top != w->fork_bottom || !w->shared->inject.is_empty();
            // Completions reaped without submitting gave this worker tasks
            // after all: submit now, it is not about to park.
            if (io_tick(w, busy) && !busy) io_tick(w, true);
        }
        if (timers_fire(w, false)) t_win_start = 0;  // expired timers' tasks join the queue's back
        if (TaskHeader* t = w->shared->inject.pop()) {
            prefetch_task_rest(t);
            WorkerMetrics::bump(w->metrics.inject_pops);
            // The tasks left in the local queue now wait behind this one,
            // which may run long: offer them (a lone yielding task was
            // queued without a wake-up, schedule_local).
            if (!w->queue.is_empty()) notify_parked_local(w->shared);
            return t;
        }
        if (TaskHeader* t = pop_local(w)) return t;
    }
    if (TaskHeader* t = fork_pop(w)) {
        expose_fork(w);
        return t;
    }
    if (TaskHeader* t = pop_local(w)) return t;
    if (TaskHeader* t = pull_from_inject(w)) return t;
    // The fairness tick's io_tick may have woken a task into the LIFO slot
    // (after the check at the top). Returning nothing here would send this
    // worker searching with work in hand: a search and a spin for nothing
    // (with one echo connection the last searcher also used to wake a parked
    // worker then, every ~90 round trips: bench/RESULTS.md, issue 6; it now
    // wakes one only for queued work, leave_searching).
    if (TaskHeader* t = w->lifo) {
        w->lifo = nullptr;
        return t;
    }
    return nullptr;
}

uint64_t xorshift(uint64_t& s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

TaskHeader* steal_work(Worker* w) {
    Shared* sh = w->shared;
    if (!w->searching) {
        if (!sh->idle.to_searching()) return nullptr;
        w->searching = true;
    }
    uint32_t n = sh->nworkers;
    uint32_t start = (uint32_t)(xorshift(w->rng) % n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t v = (start + i) % n;
        if (v == w->index) continue;
        uint32_t stolen = 0;
        if (TaskHeader* t = sh->workers[v].queue.steal_into(w->queue, &stolen)) {
            prefetch_task_rest(t);
            WorkerMetrics::bump(w->metrics.steals);
            WorkerMetrics::bump(w->metrics.stolen_tasks, stolen);
            return t;
        }
    }
    return pull_from_inject(w);
}

// A searcher that found nothing keeps looking for SEARCH_SPIN_NS (see
// scheduler.h) before parking. Reads only, while nothing turns up: the
// queues' heads and tails and the inject queue's length.
TaskHeader* spin_search(Worker* w) {
    t_win_start = 0;
    Shared* sh = w->shared;
    uint64_t deadline = port::monotonic_ns() + SEARCH_SPIN_NS;
    for (uint32_t round = 1;; round++) {
        // About a microsecond between looks: each look reads the other
        // workers' queue lines, which their owners are writing.
        for (int i = 0; i < 64; i++) weft_arch_cpu_relax();
        if (work_pending(sh)) {
            if (TaskHeader* t = steal_work(w)) return t;
        }
        if (sh->shutdown.load(std::memory_order_relaxed)) return nullptr;
        // Every ~3 us, for ~0.2 us: a thread woken onto this CPU runs now
        // rather than when the spin ends (scheduler.h, SEARCH_SPIN_NS).
        if (round % 4 == 0) port::thread_yield();
        if (round % 8 == 0) {
            if (timers_fire(w, true)) {
                if (TaskHeader* t = next_task(w)) return t;
            }
            if (port::monotonic_ns() >= deadline) return nullptr;
        }
    }
}

void leave_searching(Worker* w) {
    if (!w->searching) return;
    w->searching = false;
    Shared* sh = w->shared;
    if (!sh->idle.from_searching()) return;
    // The last searcher found work. Tasks pushed while it searched woke
    // nobody (their pushers saw a searcher), so if any are still in a queue
    // it wakes another searcher for them. If none are (it took the only
    // one: a task spawned from outside, the head of a chain), a wake would
    // only cost this thread a futex syscall before its task runs and the
    // sleeper a search and a park; on a virtual machine each wake of a
    // halted vCPU also takes tens of microseconds. A push after our RMW
    // sees no searcher and notifies by itself. The fence pairs with a local
    // pusher's (publish; SeqCst fence; load state): if its load saw us
    // still searching, our queue reads below see its task. Not needed
    // against lost wake-ups (every parker rechecks the queues; park.pml,
    // MUT_NO_LAST_SEARCHER), only to get a helper going sooner. The RMW
    // just ran, so it serves as the fence (free on x86-64). With every
    // worker awake there is nobody to wake (notify_parked would find so),
    // and the scan of every queue's line is skipped: one load of the idle
    // word instead, on the way to the task this worker found.
    weft_arch_fence_after_rmw();
    if (sh->idle.may_want_notify() && work_pending(sh)) notify_parked(sh);
}

// Returns false when this thread lost w (pulse.h).
bool run_with_lifo(Worker* w, TaskHeader* t) {
    leave_searching(w);
    if (!run_task(w, t)) return false;
    uint32_t lifo_polls = 0;
    while (TaskHeader* next = w->lifo) {
        w->lifo = nullptr;
        if (++lifo_polls > MAX_LIFO_POLLS) {
            if (!w->queue.is_empty() || w->fork_top != w->fork_bottom || !w->shared->inject.is_empty() ||
                w->shared->shutdown.load(std::memory_order_relaxed)) {
                // Cap reached and other tasks wait (see scheduler.h; the
                // fork stack too, which next_task serves before the queue:
                // without it a chain kept a fork-join child, or the tasks a
                // handoff put there, waiting for ever): to the back of the
                // queue. With nothing waiting the cap would only
                // hand a sequential chain to a thief, a core migration every
                // few polls. At shutdown, too: two tasks that wake each other
                // on this worker form an endless chain, and worker_loop must
                // get to see the flag (found by tests/test_shutdown_stress.cpp:
                // weft_runtime_free waited for ever on such a pair). The
                // shutdown drain drops it.
                InjectSink sink{w->shared};
                if (w->queue.push_back(next, sink)) WorkerMetrics::bump(w->metrics.overflows);
                notify_parked_local(w->shared);
                break;
            }
            // Nothing else waits, so the chain goes on, but its polls count
            // toward the fairness tick: two tasks waking each other never
            // return to next_task, whose tick fires this worker's timers,
            // submits and reaps its I/O and looks at the inject queue (found
            // in review: a 5 ms sleep beside such a pair never ended). When
            // the tick is due the task goes to the (empty) queue, quietly
            // since this worker takes it back right after, and next_task
            // runs the tick first. (Chains that the cap above ends do not
            // count: ping_pong's 1,000 pairs ticked three times as often and
            // lost 13%.)
            if (--w->ticks_to_fairness == 0) {
                w->ticks_to_fairness = 1;
                InjectSink sink{w->shared};
                w->queue.push_back(next, sink);
                break;
            }
        }
        WorkerMetrics::bump(w->metrics.lifo_polls);
        if (!run_task(w, next)) return false;
    }
    return true;
}

// Whether this thread still holds w (pulse.h). Called in scheduler code (the
// word is IDLE), so a failed check needs no barrier of its own.
inline bool still_holds(const Worker* w) {
#if WEFT_PULSE
    return !w->shared->pulse.handoff || w->epoch.load(std::memory_order_relaxed) == t_poll.epoch;
#else
    (void)w;
    return true;
#endif
}

// This thread lost w while in scheduler code: w's state is consistent as it
// is (the searching flag and the idle counts belong to w); give it up.
void release_worker() {
    t_worker = nullptr;
    store_released(t_poll.thread);
}

// Returns false when this thread lost w while parked (pulse.h).
bool park(Worker* w) {
    Shared* sh = w->shared;
    t_win_start = 0;
    if (__builtin_expect(sh->failed.load(std::memory_order_relaxed), 0)) cancel_owned(w);
    reap(w);
    if (w->lifo || w->fork_top != w->fork_bottom || !w->queue.is_empty()) return true;
    // The parker's half of the no-lost-wake-up protocol (idle.h): to_parked
    // is a SeqCst RMW on the idle word; the fence after it pairs with the
    // fence of a local pusher (notify_parked_local), so the queue check
    // below sees any task pushed before that pusher read the idle word.
    // Every parking worker checks, not only the last searcher: a worker that
    // was refused searching (another one searched at that instant) may park
    // after that searcher stopped, and a pusher that saw it still unparked
    // skipped the wake-up; if the pusher is then stuck in a long poll, nobody
    // else would ever look at its queue
    // (Cpp.ForkJoinLastTwoChildrenFinishTogetherAfterParentLeft hung so).
    sh->idle.to_parked(w->index, w->searching);
    w->searching = false;
    w->parked_hint.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (work_pending(sh)) notify_parked(sh);
    WorkerMetrics::bump(w->metrics.parks);
    // A cache holding a burst's memory is trimmed after IDLE_TRIM_NS of
    // uninterrupted sleep (pool.h). Real time, not the runtime's clock.
    uint64_t cached = pool::cached_bytes() + pool::depot_bytes();
    uint64_t trim_at = cached > pool::IDLE_KEEP_BYTES ? port::monotonic_ns() + pool::IDLE_TRIM_NS : 0;
    for (;;) {
        // Sleep until the next timer deadline this worker answers for
        // (timer.h), recomputed on every trip: a timer registered from
        // another thread unparks us to shorten it.
        int64_t timeout = timers_park_timeout(w);
        if (trim_at) {
            uint64_t now = port::monotonic_ns();
            if (now >= trim_at) {
                pool::trim(pool::IDLE_KEEP_BYTES);
                trim_at = 0;
            } else if (timeout < 0 || (int64_t)(trim_at - now) < timeout) {
                timeout = (int64_t)(trim_at - now);
            }
        }
        // With an I/O driver, sleep in it (io.h): completions wake tasks,
        // which land in our queue.
        uint32_t io_woken = 0;
        if (w->io) io_woken = io_park(w, timeout);
        else w->parker.park(timeout);
        if (sh->shutdown.load(std::memory_order_acquire)) {
            sh->idle.unpark_self(w->index);
            break;
        }
        if (__builtin_expect(sh->failed.load(std::memory_order_relaxed), 0) && !w->failed_seen) {
            // The failure policy shut the runtime down: leave park to cancel
            // what this worker owns (the next park() does it).
            w->failed_seen = true;
            if (sh->idle.unpark_self(w->index)) w->searching = true;
            break;
        }
        if (!still_holds(w)) {
            // Handed over while we slept (a handoff that raced the end of a
            // long poll): leave w unparked, as its next holder expects.
            if (sh->idle.unpark_self(w->index)) w->searching = true;
            w->parked_hint.store(false, std::memory_order_relaxed);
            release_worker();
            return false;
        }
        if (!sh->idle.is_parked(w->index)) {
            // A notifier took us off the sleeper list: we are a searcher.
            w->searching = true;
            break;
        }
        if (io_woken) {
            // I/O completions woke tasks into our queue: run them.
            if (sh->idle.unpark_self(w->index)) w->searching = true;
            break;
        }
        // Still listed as parked: a deadline came, a timer was registered,
        // the clock was moved, or a spurious wake-up. Fire what is due; the
        // tasks land in our queue, so leave the sleeper list to run them
        // (unless a notifier took us meanwhile: then we are a searcher).
        if (timers_fire(w, true)) {
            if (sh->idle.unpark_self(w->index)) w->searching = true;
            break;
        }
    }
    w->parked_hint.store(false, std::memory_order_relaxed);
#if WEFT_PULSE
    // The runtime was idle and may be busy again: the monitor sleeps while
    // every worker does (pulse.cpp, monitor_main).
    if (sh->monitor_idle.load(std::memory_order_seq_cst)) monitor_wake(sh);
#endif
    return true;
}

// Shutdown: cancels a task whose future this thread owns, marking it an
// orphan first (scheduler.h, step 5) since handles or wakers may outlive Shared.
void shutdown_cancel(TaskHeader* t) {
    t->orphan = 1;
    t->shared->holders.fetch_add(1, std::memory_order_relaxed);
    cancel_task(t, 1);
}

// Shutdown steps 3 and 4: a run-queue entry that will never run. A task that
// owns RUNNING (re-queued after a self-wake) or that no owned list knows
// (never suspended) is cancelled here; for any other, dropping the entry's
// ref is enough: step 5 finds it in its owner's list.
void drop_queue_entry(TaskHeader* t) {
    if (t->resume_running) {
        t->resume_running = 0;
        shutdown_cancel(t);
        return;
    }
    if (t->owned_shard == OWNED_UNBOUND && t->state.transition_to_shutdown()) {
        shutdown_cancel(t);
        return;
    }
    if (t->state.ref_dec()) dealloc(t);
}

void drain_worker(Worker* w) {
    // Loop until everything is empty: a drop function run by a cancel here
    // may wake another task of this runtime, which lands in the LIFO slot
    // or the local queue again (Shutdown.DropFunctionWakesAnotherTaskDuringDrain).
    for (;;) {
        TaskHeader* t = w->lifo;
        if (t) w->lifo = nullptr;
        else if (!(t = fork_pop(w)) && !(t = w->queue.pop())) break;
        drop_queue_entry(t);
    }
}

// Runs w until shutdown (returns true) or until this thread loses it to a
// handoff (returns false; w is not touched any more).
bool worker_loop(Worker* w) {
    Shared* sh = w->shared;
    while (!sh->shutdown.load(std::memory_order_acquire)) {
        // (No epoch check here: scheduler code runs in state IDLE, where
        // the monitor never commits; the next poll's end or park notices.)
        TaskHeader* t = next_task(w);
        if (!t && t_fork_held.n != 0) {
            // Out of local work: hand over the held counts before looking
            // elsewhere (a child that a thief took may have been the last).
            flush_fork_held();
            t = next_task(w);
        }
        if (!t && timers_fire(w, true)) {
            t_win_start = 0;
            t = next_task(w);
        }
        // Completions already posted cost no syscall to reap.
        if (!t && w->io && io_tick(w, false)) t = next_task(w);
        if (!t) t = steal_work(w);
        // Not while I/O may complete on this worker (io.h, io_may_complete):
        // parking submits what is queued and waits for completions in one
        // syscall; a spin would only hold them back.
        if (!t && w->searching && !io_may_complete(w)) t = spin_search(w);
        if (t) {
            if (!run_with_lifo(w, t)) return false;
            continue;
        }
        if (!park(w)) return false;
    }
    if (t_fork_held.n != 0) flush_fork_held();
    return true;
}

}  // namespace

// WEFT_FAILURE_SHUTDOWN (failure.h).
void cancel_owned(Worker* w) {
    Shared* sh = w->shared;
    reap(w);
    // The cancel transitions first, under nothing but the walk, collecting
    // the tasks to queue through queue_next (free: each was idle, in no
    // queue, and the transition took a queue reference); the scheduling
    // after. Scheduling during the walk could drop a queue entry (the inject
    // queue closed by a weft_runtime_free racing us), whose cancel would
    // complete and unlink a task of the list being walked. The loose list is
    // under loose_mu, so its tasks cannot complete and go while it is held.
    TaskHeader* chain = nullptr;
    for (TaskHeader* t = w->owned.list.head; t; t = t->owned_next) {
        if (!t->state.load().complete() && t->state.transition_to_notified_and_cancel()) {
            t->queue_next = chain;
            chain = t;
        }
    }
    {
        port::LockGuard g(sh->loose_mu);
        for (TaskHeader* t = sh->loose.head; t; t = t->owned_next) {
            if (!t->state.load().complete() && t->state.transition_to_notified_and_cancel()) {
                t->queue_next = chain;
                chain = t;
            }
        }
    }
    while (chain) {
        TaskHeader* next = chain->queue_next;
        schedule(chain, false);
        chain = next;
    }
}


// Every runtime thread runs this: it holds the worker it was given until
// shutdown, or until it loses it to a handoff; then it is a spare and waits
// to be given one (pulse.h).
void* thread_main(void* arg) {
    ThreadRec* me = static_cast<ThreadRec*>(arg);
    Shared* sh = me->shared;
    t_poll.thread = me;
    // A record a retired thread left (pulse.cpp take_spare) goes on with its
    // poll sequence: the monitor's and the long-poll records of a sequence
    // number must never match a later poll.
    t_poll.seq = me->word.load(std::memory_order_relaxed) & ~(uint64_t)3;
    me->tid.store(port::thread_id(), std::memory_order_relaxed);
    t_runtime = sh;
#if WEFT_PULSE
    if (sh->pulse.ticks_are_ns) pulse_time_next_polls(PRECISE_ALWAYS);
#endif
    pool::thread_init();
    bool spare_trimmed = false;  // trimmed since this thread last held a worker
    for (;;) {
        Worker* w = me->given.exchange(nullptr, std::memory_order_acquire);
        if (w) {
            spare_trimmed = false;
            {
                port::LockGuard g(sh->spare_mu);
                me->spare_state = ThreadRec::ACTIVE;  // once per worker taken
            }
            t_poll.epoch = me->given_epoch;  // written before `given` (release)
            t_win_start = 0;
            t_worker = w;
            // IDLE, the poll sequence kept (see finish_after_losing_worker).
            me->word.store(t_poll.seq | ThreadRec::IDLE, std::memory_order_relaxed);
            if (t_poll.epoch != 0) {
                // Given by a handoff. The LIFO slot may hold a task the stuck
                // thread woke or spawned in its poll before losing w; the
                // loop only looks at the slot after running a task, so it
                // goes on the fork stack, which runs first (found by CI:
                // the TSan demo hung with a task stranded there).
                if (TaskHeader* l = w->lifo) {
                    w->lifo = nullptr;
                    if (w->fork_top - w->fork_bottom < FORK_STACK_CAPACITY) {
                        w->fork[w->fork_top++ % FORK_STACK_CAPACITY] = l;
                    } else {
                        InjectSink sink{sh};
                        w->queue.push_back(l, sink);
                    }
                }
                // Then fire what is overdue (the stuck thread could not) and
                // run those tasks first (flush_fired).
                WorkerMetrics::bump(w->metrics.handoffs);
                w->fired_first = true;
                timers_fire(w, true);
                w->fired_first = false;
            }
            if (worker_loop(w)) {
                drain_worker(w);  // its drop functions hold no fork counts (t_dropping)
                break;
            }
            // It lost w to a handoff. The monitor may have lowered its
            // priority for the rest of that poll: restored, or it retires.
            t_worker = nullptr;
            if (!pulse_thread_release_priority(me)) break;
            continue;
        }
        if (sh->shutdown.load(std::memory_order_acquire)) break;
        {
            port::LockGuard g(sh->spare_mu);
            if (me->spare_state == ThreadRec::ACTIVE) {
                me->next_spare = sh->spares;
                sh->spares = me;
                me->spare_state = ThreadRec::WAITING;
            }
        }
        if (me->given.load(std::memory_order_acquire)) continue;
        if (!spare_trimmed && pool::cached_bytes() + pool::depot_bytes() > pool::IDLE_KEEP_BYTES) {
            // A spare trims like a parked worker (pool.h), once per wait: the
            // poll it finished without a worker may have freed a burst's
            // memory after every worker parked, and they only look when they
            // park. (Not again while it waits: the depot is shared, and busy
            // threads elsewhere may be filling it for their own use.)
            bool woken = me->parker.park((int64_t)pool::IDLE_TRIM_NS);
            if (!woken) {
                pool::trim(pool::IDLE_KEEP_BYTES);
                spare_trimmed = true;
            }
        } else {
            me->parker.park(-1);
        }
    }
    t_worker = nullptr;
    t_runtime = nullptr;
    t_poll.thread = nullptr;
    pool::thread_exit();
    return nullptr;
}

namespace {

void shared_release(Shared* sh) {
    // acq_rel: the last holder sees everything the others did before freeing.
    if (sh->holders.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    sh->magic = 0;
    io_destroy(sh);
    timers_destroy(sh);
    pulse_destroy(sh);
    port::free(sh->sleepers);
    for (uint32_t i = 0; i < sh->nworkers; i++) sh->workers[i].~Worker();
    port::free(sh->workers);
    for (uint32_t i = 0; i < sh->thread_cap; i++) sh->threads[i].~ThreadRec();
    port::free(sh->threads);
    sh->~Shared();
    port::free(sh);
}

inline __attribute__((always_inline)) void schedule_local(Worker* w, TaskHeader* t, bool is_yield) {
    InjectSink sink{w->shared};
    if (__builtin_expect(w->waking_timers, 0)) {
        // Firing timers: collect, flush_fired queues them all at once.
        t->queue_next = nullptr;
        if (w->fired_tail) w->fired_tail->queue_next = t; else w->fired_head = t;
        w->fired_tail = t;
        w->fired_n++;
        return;
    }
    // A task woken because a task it joins finished goes to the back of the
    // queue like a yield, not to the LIFO slot: a joiner usually awaits a
    // batch in order (join all), and from the LIFO slot it ran after every
    // child, found the next one still queued and suspended again, once per
    // child left in the queue. From the back it runs after the queued
    // children (skynet_join_handles 105.6 -> 90.7 ns; spawn_many_local while
    // the other worker is descheduled: 4,076 -> 260 of 10,000 awaits found
    // their child unfinished).
    if (!is_yield && __builtin_expect(!t_waking_joiner, 1)) {
        TaskHeader* prev = w->lifo;
        w->lifo = t;
        if (!prev) return;  // this worker runs it next; nothing to steal
        t = prev;
    } else if (!w->queue.is_empty()) {
        if (!t_current && !t_waking_joiner) {
            // A task that yields (its budget spent, yield_now, woken during
            // its own poll) behind tasks already queued here, queued after
            // its poll (t_current: none runs on this thread now): it is
            // offered to idle workers before this worker's next poll starts
            // (announce_pushes), not here. That next poll usually takes a
            // task from this queue, whose pop is a locked instruction, a full
            // barrier on x86-64, so the offer costs one plain load of the
            // idle word instead of a fence: yield_many (200 tasks yielding on
            // 2 workers) spent a third of its cycles on this fence. Not a
            // joiner: complete() may run a drop_output after waking it.
            if (w->queue.push_back(t, sink)) {
                WorkerMetrics::bump(w->metrics.overflows);
                w->unannounced = false;
                notify_parked_local(w->shared);
            } else {
                w->unannounced = true;
            }
            return;
        }
    } else if (!w->lifo && w->fork_top == w->fork_bottom) {
        // A task that yields while nothing else waits here: this worker
        // takes it back at once (next_task), so waking an idle worker would
        // only have it race us for a task we are about to run. With one busy
        // task that was a futile wake-up per spent budget (cross_thread_wake:
        // about 6,000 in 10,000 round trips). Tokio notifies here; a task
        // in the LIFO slot or on the fork stack makes it notify below.
        w->queue.push_back(t, sink);
        return;
    }
    if (w->queue.push_back(t, sink)) WorkerMetrics::bump(w->metrics.overflows);
    notify_parked_local(w->shared);
}

}  // namespace

// A spawn or wake from inside a poll that the monitor found long (pulse.h,
// ThreadRec::long_poll; pulse.cpp handoff_covered): this thread will not
// take a task for a while, so nothing goes where only it can take it. The
// first such op moves the LIFO slot and the fork stack to the queue and
// says so (long_poll_ack); every one queues its task at the back and offers
// it to idle workers. With the worker's other duties covered too, the
// monitor then leaves the worker with its thread instead of starting a
// spare that would compete for the CPUs (the `timers` root spawning 100,000
// tasks in one poll: p99 lateness and iteration time, bench/RESULTS.md).
static __attribute__((noinline)) void schedule_in_long_poll(Worker* w, TaskHeader* t) {
    InjectSink sink{w->shared};
    ThreadRec* me = t_poll.thread;
    uint64_t seq = t_poll.seq;
    // relaxed: this thread's own earlier store.
    if (me->long_poll_ack.load(std::memory_order_relaxed) != seq) {
        if (TaskHeader* l = w->lifo) {
            w->lifo = nullptr;
            if (w->queue.push_back(l, sink)) WorkerMetrics::bump(w->metrics.overflows);
        }
        while (w->fork_top != w->fork_bottom)
            if (w->queue.push_back(w->fork[w->fork_bottom++ % FORK_STACK_CAPACITY], sink))
                WorkerMetrics::bump(w->metrics.overflows);
        // release: the monitor that reads the ack finds the slot and the
        // stack empty (it never touches them; the ordering is for the record).
        me->long_poll_ack.store(seq, std::memory_order_release);
    }
    // relaxed: only this thread writes it; the monitor compares readings.
    me->long_poll_ops.store(me->long_poll_ops.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (w->queue.push_back(t, sink)) WorkerMetrics::bump(w->metrics.overflows);
    notify_parked_local(w->shared);
}

// Tasks woken by expired timers are late by definition, so they must not
// queue behind a backlog of fresh work. They go to the back of the local
// queue while it has room, and the rest to the *front* of the inject queue
// (never to its back, where a local-queue overflow would put them: behind
// every task spawned in the meantime). Not the LIFO slot: a thousand timers
// expiring in one tick would each displace the previous one.
void flush_fired(Worker* w) {
    TaskHeader* t = w->fired_head;
    uint32_t n = w->fired_n;
    w->fired_head = w->fired_tail = nullptr;
    w->fired_n = 0;
    if (n == 0) return;
    Shared* sh = w->shared;
    if (w->fired_first && w->fork_top - w->fork_bottom + n <= FORK_STACK_CAPACITY) {
        // A worker just taken over from a stuck thread (thread_main): its
        // expired timers' tasks have waited a whole handoff threshold already,
        // so they run before the queue, which may hold more hogs. The fork
        // stack is what runs before the queue; pushed in reverse, they run in
        // firing order (within a batch of 32, the tasks of timers that borrow
        // their waker after the others: timer.cpp fire_locked).
        w->fork_top += n;
        for (uint32_t i = 1; i <= n; i++, t = t->queue_next) w->fork[(w->fork_top - i) % FORK_STACK_CAPACITY] = t;
        notify_parked_local(sh);
        return;
    }
    InjectSink sink{sh};
    uint32_t len = w->queue.len();
    uint32_t room = len < LOCAL_QUEUE_CAPACITY ? LOCAL_QUEUE_CAPACITY - len : 0;
    while (t && room) {
        TaskHeader* next = t->queue_next;
        w->queue.push_back(t, sink);  // room: no overflow (thieves only shrink it)
        t = next;
        n--;
        room--;
    }
    if (t) {
        // The rest to the inject queue's front, as pointers (its popper
        // copies them without touching the tasks). Usually all of them in
        // one push (a flush follows at most a WakeList batch of timer wakes);
        // a foreign waker that woke many tasks makes several pushes, and
        // each goes before the previous one: all of them are late anyway.
        TaskHeader* batch[64];
        while (t) {
            uint32_t k = 0;
            for (; t && k < 64; t = t->queue_next) batch[k++] = t;
            // A closed queue (shutdown) takes nothing: each is dropped like
            // a drained entry.
            if (!sh->inject.push_front_batch(batch, k))
                for (uint32_t i = 0; i < k; i++) drop_queue_entry(batch[i]);
        }
        notify_parked(sh);
    } else {
        notify_parked_local(sh);
    }
}

// ---- waker vtable -----------------------------------------------------------

static weft_waker waker_clone(const void* p) {
    TaskHeader* t = static_cast<TaskHeader*>(const_cast<void*>(p));
    t->state.ref_inc();
    return task_waker(t);
}
static void waker_wake(const void* p) { wake_by_val(static_cast<TaskHeader*>(const_cast<void*>(p))); }
static void waker_wake_by_ref(const void* p) { wake_by_ref(static_cast<TaskHeader*>(const_cast<void*>(p))); }
static void waker_drop(const void* p) { drop_ref(static_cast<TaskHeader*>(const_cast<void*>(p))); }

const weft_waker_vtable task_waker_vtable = {waker_clone, waker_wake, waker_wake_by_ref, waker_drop};

void schedule(TaskHeader* t, bool is_yield) {
    Shared* sh = t->shared;
    if (__builtin_expect(task_isolated(sh, t), 0)) {
        if (!isolation_push(sh, t)) drop_queue_entry(t);  // closed: shutting down
        return;
    }
    Worker* w = t_worker;
    if (w && w->shared == sh) {
        CoreOp op(w);  // a wake from inside a poll: is w still ours? (pulse.h)
        if (__builtin_expect(op.ok, 1)) {
            if (__builtin_expect(op.long_poll, 0)) {
                schedule_in_long_poll(w, t);
                return;
            }
            schedule_local(w, t, is_yield);
            return;
        }
    }
    if (!remote_push(sh, t)) {
        // Closed (shutting down): step 5 cancels the future; drop the entry's ref.
        if (t->state.ref_dec()) dealloc(t);
    }
}

void wake_by_val(TaskHeader* t) {
    if (t == t_current) {
        // A task waking itself during its poll: see run_task.
        t_self_woken = true;
        drop_ref(t);  // never the last: the runner holds one
        return;
    }
    switch (t->state.transition_to_notified_by_val()) {
    case ToNotified::Submit:
        schedule(t, false);
        break;
    case ToNotified::Dealloc:
        dealloc(t);
        break;
    case ToNotified::DoNothing:
        break;
    }
}

void wake_by_ref(TaskHeader* t) {
    if (t == t_current) {
        t_self_woken = true;  // see run_task
        return;
    }
    if (t->state.transition_to_notified_by_ref() == ToNotified::Submit) schedule(t, false);
}

void drop_ref(TaskHeader* t) {
    if (t->state.ref_dec()) dealloc(t);
}

// ---- tasks ----------------------------------------------------------------------

// task_alloc: inline in scheduler.h.

void task_release_unspawned(TaskHeader* t) {
    // The kernel frees the memory below, so a state that frees itself from
    // drop_future (weft_task_free_state) must leave it alone.
    t->spawned = 1;
    if (t->stage == Stage::Future) run_drop_future(t);
    t->stage = Stage::Dropped;
    pool::free(t, t->alloc_size);
}

}  // namespace weft::kernel

// In this file, not abi.cpp: its fast path reads this file's thread-locals.
int weft_fork_done(void* group, weft_fork_flush_fn flush, uint32_t uncounted) {
    using namespace weft::kernel;
    if (__builtin_expect(!group || !flush || uncounted == 0, 0)) return WEFT_EINVAL;
    // Only a poll run by a worker's loop holds a count: that loop is what
    // flushes it (a coreless poll has no worker).
    if (!t_worker || !t_current || t_dropping) return 1;
    ForkHeld& h = t_fork_held;
    // Another group's counts (a poll that reports another group than the
    // child it is: a C caller's own bookkeeping) are counted first.
    if (__builtin_expect(h.n != 0 && (h.group != group || h.flush != flush), 0)) flush_fork_held();
    uint32_t n = h.n + 1;
    if (uncounted <= n) {
        // No other child pending: this is the last one, count all now.
        h.n = 0;
        return (int)n;
    }
    h = ForkHeld{group, flush, n};
    return 0;
}

namespace weft::kernel {

int task_spawn(Shared* sh, TaskHeader* t, bool with_join, bool fork, void* group) {
    t->shared = sh;
    t->fork_group = group;  // read only while owned_shard == OWNED_UNBOUND
    t->id = next_task_id();
    // Queued RUNNING (task_state.h init_running): the first poll skips the
    // state word's CAS (begin_run). skynet: one locked instruction of about
    // five per task.
    t->state.init_running(with_join);
    t->resume_running = 1;
    t->spawned = 1;
    Worker* w = t_worker;
    if (w && w->shared == sh) {
        if (sh->owned_closed.load(std::memory_order_acquire)) {
            task_release_unspawned(t);
            return WEFT_ECLOSED;
        }
        CoreOp op(w);  // a spawn from inside a poll: is w still ours? (pulse.h)
        if (__builtin_expect(op.ok, 1)) {
            t->owned_shard = OWNED_UNBOUND;  // linked if it ever suspends
            if (__builtin_expect(op.long_poll, 0)) {
                schedule_in_long_poll(w, t);
            } else if (!fork) {
                schedule_local(w, t, false);
            } else if (w->fork_top - w->fork_bottom < FORK_STACK_CAPACITY) {
                w->fork[w->fork_top++ % FORK_STACK_CAPACITY] = t;
                expose_fork(w);
            } else {
                schedule_local(w, t, true);  // a large batch: the rest queue FIFO
            }
            return 0;
        }
    }
    t->owned_shard = OWNED_UNBOUND;  // linked if it ever suspends (owned_tasks.h)
    // Closed by the failure policy (failure.h) or by shutdown step 1 (then
    // the inject queue is closed too and remote_push refuses anyway).
    if (__builtin_expect(sh->owned_closed.load(std::memory_order_acquire), 0) || !remote_push(sh, t)) {
        task_release_unspawned(t);
        return WEFT_ECLOSED;
    }
    return 0;
}

// ---- join handles ---------------------------------------------------------------

int join_status(const TaskHeader* t) {
    if (!t->state.load().complete()) return WEFT_EAGAIN;
    return t->result;
}

int join_poll(TaskHeader* t, const weft_waker* waker) {
    Snapshot s = t->state.load();
    if (s.complete()) return WEFT_READY;
    if (s.join_waker()) {
        // Published already: nothing to do if it would wake the same task.
        if (weft_waker_will_wake(&t->join_waker, waker)) return WEFT_PENDING;
        if (!t->state.unset_join_waker()) return WEFT_READY;  // completed first
    }
    // JOIN_WAKER is clear: the field is the handle's to write.
    if (t->join_waker.vtable) t->join_waker.vtable->drop(t->join_waker.data);
    t->join_waker = waker->vtable->clone(waker->data);
    if (!t->state.set_join_waker()) {
        // Completed before we published: the runtime never saw this waker.
        weft_waker w = t->join_waker;
        t->join_waker = weft_waker{nullptr, nullptr};
        w.vtable->drop(w.data);
        return WEFT_READY;
    }
    return WEFT_PENDING;
}

namespace {
// A waker that unparks a thread blocked in join_wait. It has no refcount: the
// Parker lives on the waiter's stack, and join_wait does not return until the
// runtime has stopped using the waker (JOIN_WAKER clear, see below).
void thread_waker_wake(const void* p) { static_cast<Parker*>(const_cast<void*>(p))->unpark(); }
void thread_waker_drop(const void*) {}
weft_waker thread_waker_clone(const void* p);
const weft_waker_vtable thread_waker_vtable = {thread_waker_clone, thread_waker_wake, thread_waker_wake,
                                               thread_waker_drop};
weft_waker thread_waker_clone(const void* p) { return weft_waker{p, &thread_waker_vtable}; }

// Waits until the runtime has handed the join waker field back (it clears
// JOIN_WAKER right after waking it), then empties the field if it holds our
// thread waker. It may hold another: a waker an earlier weft_join_poll
// registered, when join_poll found the task complete before installing
// ours. That one stays for join_free to drop (found by fuzz_abi: overwriting
// it leaked the earlier waker's reference; Runtime.JoinWaitAfterPollKeepsThe
// PolledWakerForFree). Modelled in kernel/task_state.pml (the joiner's join
// wait; its mutations NO_RETRACT, RETRACT_NO_WAIT, RETRACT_ANY_WAKER).
void retract_thread_waker(TaskHeader* t, const Parker* mine) {
    if (!t->state.unset_join_waker()) {
        // Completed: the completer may be inside wake_by_ref on the waker.
        uint32_t spins = 0;
        while (t->state.load().join_waker()) {
            if (++spins < 64) weft_arch_cpu_relax(); else port::thread_yield();
        }
    }
    if (t->join_waker.vtable == &thread_waker_vtable && t->join_waker.data == mine)
        t->join_waker = weft_waker{nullptr, nullptr};
}
}  // namespace

int join_wait(TaskHeader* t, int64_t timeout_ns) {
    if (t_runtime) return WEFT_EDEADLK;
    if (t->state.load().complete()) return 0;
    Parker parker;
    weft_waker w{&parker, &thread_waker_vtable};
    uint64_t deadline = timeout_ns >= 0 ? port::monotonic_ns() + (uint64_t)timeout_ns : 0;
    for (;;) {
        if (join_poll(t, &w) == WEFT_READY) {
            retract_thread_waker(t, &parker);
            return 0;
        }
        int64_t left = -1;
        if (timeout_ns >= 0) {
            uint64_t now = port::monotonic_ns();
            if (now >= deadline) {
                retract_thread_waker(t, &parker);
                return t->state.load().complete() ? 0 : WEFT_ETIMEDOUT;
            }
            left = (int64_t)(deadline - now);
        }
        // A short task's result often comes within microseconds: watch for
        // the unpark first, adaptively, as a blocked ThreadSignal does
        // (thread_signal.h: on a VM whose other vCPU is halted, a futex
        // sleep and wake-up cost ~20 us; the completer's unpark then also
        // skips its futex_wake). Not when the time left is shorter.
        if (left < 0 || (uint64_t)left > sync::ThreadSignal::SPIN_LIMIT_NS)
            sync::spin_until_equal(parker.word(), Parker::NOTIFIED, sync::ThreadSignal::this_thread_policy(),
                                   sync::ThreadSignal::SPIN_LIMIT_NS);
        parker.park(left);
    }
}

int join_abort(TaskHeader* t) {
    if (t->state.load().complete()) return WEFT_EALREADY;
    if (t->state.transition_to_notified_and_cancel()) schedule(t, false);
    return 0;
}

void join_free(TaskHeader* t) {
    Snapshot s = t->state.load();
    // Failure containment (failure.h): a failure this handle never read is
    // reported now. Finished before this load: the completion saw the
    // handle and reported nothing; result is stable (read after COMPLETE).
    bool done = s.complete();
    if (__builtin_expect(done && failure_unobserved(t), 0)) report_unread_failure(t);
    if (done && s.refs() == 1 && !s.join_waker() && !t->join_waker.vtable) {
        // Finished, and the handle's reference is the only one left: no
        // waker is held anywhere, the runner and the owned list let go
        // (each with a release RMW that this acquire load follows), and
        // nothing can take a new reference without holding one (a timer that
        // borrows the task's waker, timer.h, may still fire until dealloc's
        // drop cancels it: a wake by reference of a completed task, which
        // changes nothing). So the handle frees the task without
        // the RMW that would only confirm it (task_state.pml: the joiner's
        // solo path). spawn_many_local: the await loop's join_free was 10%
        // of the cycles, the RMW on a line the other worker wrote last.
        dealloc(t);
        return;
    }
    if (!s.join_waker() && !t->join_waker.vtable) {
        // Nothing published and nothing to drop (detach right after spawn,
        // or after the result was taken and the waker retracted): clear
        // JOIN_INTEREST and drop the handle's ref in one step. Refused
        // when the task completes in between (it saw the handle, so the
        // slow path below must look at its result).
        switch (t->state.transition_to_join_handle_dropped_and_unref(!done)) {
        case TaskState::Unref::Last: dealloc(t); return;
        case TaskState::Unref::Done: return;
        case TaskState::Unref::Refused: break;
        }
    }
    bool was_complete = false;
    bool drop_waker = t->state.transition_to_join_handle_dropped(&was_complete);
    // Completed after the load above, before JOIN_INTEREST went: still ours
    // to report (we hold the handle's ref, so t is alive).
    if (__builtin_expect(was_complete && !done && failure_unobserved(t), 0)) report_unread_failure(t);
    if (drop_waker && t->join_waker.vtable) {
        weft_waker w = t->join_waker;
        t->join_waker = weft_waker{nullptr, nullptr};
        w.vtable->drop(w.data);
    }
    drop_ref(t);
}

// ---- the calling thread --------------------------------------------------------

TaskHeader* current_task() { return t_current; }

// ---- pulse entry points used by pulse.cpp ------------------------------------------

void drop_queue_entry_ext(TaskHeader* t) { drop_queue_entry(t); }

void run_task_coreless(Shared* sh, TaskHeader* t) {
    if (!begin_run(t)) return;
    if (__builtin_expect(sh->failed.load(std::memory_order_relaxed), 0)) {
        cancel_task(t, 1);  // shut down by the failure policy (run_task)
        return;
    }
    t_win_start = 0;  // an isolation thread: it may have waited since its last poll
#if WEFT_PULSE
    if (sh->pulse.ticks_are_ns) pulse_time_next_polls(PRECISE_ALWAYS);
#endif
    weft_context cx{task_waker(t)};
    t_current = t;
    t_self_woken = false;
    int r;
#if WEFT_PULSE
    if (sh->pulse.on) {
        bool timed = pulse_poll_begin(sh, t, false);
        r = t->vtable->poll(t->state_ptr(), &cx);
        bool spent;
        pulse_poll_end(sh, nullptr, t, timed, false, &spent);
    } else
#endif
    {
        r = t->vtable->poll(t->state_ptr(), &cx);
    }
    t_current = nullptr;
    after_poll_coreless(sh, t, r);
}

int start_thread(Shared* sh, ThreadRec* rec, const char* role, uint32_t num) {
    char tname[16];
    uint32_t p = 0;
    for (; sh->name[p] && p < 8; p++) tname[p] = sh->name[p];
    for (uint32_t k = 0; role[k] && p < 10; k++) tname[p++] = role[k];
    tname[p++] = '-';
    uint32_t digits[5], nd = 0;
    do { digits[nd++] = num % 10; num /= 10; } while (num && nd < 5);
    while (nd && p < 15) tname[p++] = (char)('0' + digits[--nd]);
    tname[p] = 0;
    int r = port::thread_start(&rec->thread, thread_main, rec, tname);
    if (r == 0) rec->started = true;
    return r;
}

// ---- runtime lifecycle ----------------------------------------------------------

namespace {
void close_owned(Shared* sh) {
    sh->inject.close();
    sh->owned_closed.store(true, std::memory_order_release);
}
}  // namespace

namespace {
// Stops and joins every thread of sh (after shutdown was raised).
void stop_threads(Shared* sh) {
    pulse_stop_threads(sh);  // the monitor first: no handoff starts a thread after this
    for (uint32_t i = 0; i < sh->nworkers; i++) sh->workers[i].parker.unpark();
    uint32_t n = sh->threads_started.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) sh->threads[i].parker.unpark();
    for (uint32_t i = 0; i < n; i++)
        if (sh->threads[i].started) port::thread_join(&sh->threads[i].thread);
}
}  // namespace

int runtime_new(uint32_t workers, const char* name, ClockFn clock, void* clock_ctx, const weft_pulse_config* pulse,
                Shared** out) {
    if (workers == 0) workers = port::cpu_count();
    if (workers > MAX_WORKERS) return WEFT_EINVAL;
    void* mem = port::alloc_aligned(sizeof(Shared), alignof(Shared));
    if (!mem) return WEFT_ENOMEM;
    Shared* sh = new (mem) Shared();
    sh->nworkers = workers;
    const char* n = name ? name : "weft";
    uint32_t i = 0;
    for (; n[i] && i < sizeof(sh->name) - 1; i++) sh->name[i] = n[i];
    sh->name[i] = 0;
    sh->clock.init(clock, clock_ctx);
    int pr = pulse_configure(sh, pulse);
    if (pr != 0) {
        sh->~Shared();
        port::free(sh);
        return pr;
    }
    sh->thread_cap = workers + (sh->pulse.handoff ? sh->pulse.max_spares : 0);
    sh->sleepers = static_cast<uint32_t*>(port::alloc(sizeof(uint32_t) * workers));
    void* wmem = port::alloc_aligned(sizeof(Worker) * workers, alignof(Worker));
    void* tmem = port::alloc_aligned(sizeof(ThreadRec) * sh->thread_cap, alignof(ThreadRec));
    if (!sh->sleepers || !wmem || !tmem) {
        port::free(sh->sleepers);
        port::free(wmem);
        port::free(tmem);
        sh->~Shared();
        port::free(sh);
        return WEFT_ENOMEM;
    }
    sh->workers = static_cast<Worker*>(wmem);
    sh->threads = static_cast<ThreadRec*>(tmem);
    for (uint32_t k = 0; k < workers; k++) {
        // SAFETY: wmem holds `workers` Worker-sized, Worker-aligned slots.
        Worker* w = new (&sh->workers[k]) Worker();
        w->shared = sh;
        w->index = k;
        w->rng = 0x9E3779B97F4A7C15ull * (k + 1);
    }
    for (uint32_t k = 0; k < sh->thread_cap; k++) {
        // SAFETY: tmem holds thread_cap ThreadRec-sized, -aligned slots.
        ThreadRec* r = new (&sh->threads[k]) ThreadRec();
        r->shared = sh;
        r->index = k;
    }
    sh->idle.init(workers, sh->sleepers);
    if (timers_init(sh) != 0) {
        shared_release(sh);
        return WEFT_ENOMEM;
    }
    if (int r = io_init(sh); r != 0) {
        shared_release(sh);
        return r;
    }
    for (uint32_t k = 0; k < workers; k++) {
        ThreadRec* r = &sh->threads[k];
        r->given_epoch = 0;
        r->given.store(&sh->workers[k], std::memory_order_relaxed);
        sh->workers[k].holder.store(r, std::memory_order_relaxed);
        // Counted before the start: stop_threads joins what it counts.
        sh->threads_started.store(k + 1, std::memory_order_release);
        if (start_thread(sh, r, "", k) != 0) {
            // Stop the ones already started, then report.
            close_owned(sh);
            sh->shutdown.store(true, std::memory_order_release);
            stop_threads(sh);
            shared_release(sh);
            return WEFT_EAGAIN_THREAD;
        }
    }
    if (pulse_start(sh) != 0) {
        close_owned(sh);
        sh->shutdown.store(true, std::memory_order_release);
        stop_threads(sh);
        shared_release(sh);
        return WEFT_EAGAIN_THREAD;
    }
    *out = sh;
    return 0;
}

int runtime_free(Shared* sh) {
    if (t_runtime == sh) return WEFT_EDEADLK;
    // Failures reported by the drops below go to this runtime (failure.h).
    Shared* prev_failure_runtime = t_failure_runtime;
    t_failure_runtime = sh;
    // Steps as numbered in scheduler.h.
    close_owned(sh);                                      // 1
    sh->shutdown.store(true, std::memory_order_release);  // 2
    stop_threads(sh);                                     // 3
    TaskHeader* batch[32];                                // 4
    for (;;) {
        uint32_t n = sh->inject.pop_n(batch, 32);
        if (n == 0) break;
        for (uint32_t i = 0; i < n; i++) drop_queue_entry(batch[i]);
    }
    pulse_drain(sh);  // 4b: the isolation queue
    // 4c: a worker whose holder let it go in a handoff that shutdown cut
    // short has nobody to drain it (pulse.h).
    for (uint32_t i = 0; i < sh->nworkers; i++) drain_worker(&sh->workers[i]);
    // 5. Workers are joined: their lists are ours now. First release the
    // tasks that completed on a thread other than their owner.
    for (uint32_t i = 0; i < sh->nworkers; i++) {
        TaskHeader* t = sh->workers[i].owned.take_done();
        while (t) {
            TaskHeader* next = t->owned_done_next;
            if (t->state.ref_dec()) dealloc(t);
            t = next;
        }
    }
    for (uint32_t i = 0; i <= sh->nworkers; i++) {
        // The workers' lists, then the loose list (pulse: tasks that first
        // suspended on a thread holding no worker).
        OwnedList& list = i < sh->nworkers ? sh->workers[i].owned.list : sh->loose;
        while (TaskHeader* t = list.pop()) {
            t->owned_shard = OWNED_UNLINKED;
            // We hold the list's ref now. Mark the orphan before any release
            // so that whoever drops the last ref keeps Shared alive until then.
            t->orphan = 1;
            sh->holders.fetch_add(1, std::memory_order_relaxed);
            if (t->state.transition_to_shutdown()) {
                cancel_task(t, 1);  // the list's ref stands in for the runner's
            } else {
                if (t->state.ref_dec()) dealloc(t);
            }
        }
    }
    io_shutdown(sh);                                      // 5a
    timers_shutdown(sh);                                  // 5b
    t_failure_runtime = prev_failure_runtime;
    // A pinned task's handle reports elsewhere from now on (failure.h).
    sh->freed.store(true, std::memory_order_release);
    shared_release(sh);                                   // 6
    return 0;
}

void runtime_retain(Shared* sh) { sh->holders.fetch_add(1, std::memory_order_relaxed); }
void runtime_release(Shared* sh) { shared_release(sh); }

void runtime_clock_changed(Shared* sh) {
    for (uint32_t i = 0; i < sh->nworkers; i++) sh->workers[i].parker.unpark();
}

}  // namespace weft::kernel
