// kernel/scheduler.h — the multi-thread work-stealing scheduler.
//
// Three levels of run queue per worker, looked at in this order:
//   1. the LIFO slot: one task, owner-only. A task woken by the running task
//      goes here and runs next, with hot caches (message passing, spawn then
//      await). Capped: after MAX_LIFO_POLLS consecutive LIFO runs, if other
//      tasks are waiting (local or inject queue, fork stack), the slot's task
//      goes to the back of the local queue, so two tasks waking each other
//      cannot starve the rest; with nothing waiting the chain goes on, but
//      its polls count toward the fairness tick below (the worker's timers
//      and I/O). The slot is not stealable:
//      a worker stuck in a long poll keeps that one task waiting (the pulse
//      issue's handoff addresses stuck workers as a whole).
//   2. the local queue (local_queue.h), 256 entries, stealable.
//   3. the inject queue (inject_queue.h), shared, looked at first every
//      INJECT_INTERVAL polls (fairness) and whenever the local queue is empty.
// Beside them, the fork stack: children spawned by a fork-join batch
// (WEFT_SPAWN_FORK, weft::ForkJoin) go onto a private, owner-only stack that
// is run newest-first, right after the LIFO slot and before the local queue.
// A divide-and-conquer tree then runs depth-first, keeping only depth x
// fan-out tasks alive (the FIFO local queue alone would expand it
// breadth-first: for skynet, a million live tasks and constant overflow).
// Load balance: whenever some worker is idle, the local queue is empty and
// the stack is not, the *oldest* half (the largest remaining subtrees; at
// least one, at most FORK_EXPOSE_BATCH) moves to the local queue, where idle
// workers steal from it. Like the LIFO slot, the tasks still on the stack
// cannot be stolen while their worker is stuck in a long poll; handing a
// stuck worker's queues to another thread is the pulse subsystem's job. Fairness: every INJECT_INTERVAL
// polls the inject queue and then the local queue are served first, so a
// large tree cannot starve other tasks. Completion counts: a batch's
// children that run here one after another report to weft_fork_done, and
// the thread keeps their count (scheduler.cpp, ForkHeld) until it polls a
// task that is not an unfinished child of that batch (one never suspended),
// runs out of tasks, stops, or ends a poll without its worker; the batch's
// last child counts them all in one atomic update.
// Idle workers steal half of a random victim's queue (at most half the
// workers search at once) and then park on a futex (idle.h, parker.h).
//
// Threads: a Worker is held by one thread at a time (a ThreadRec, pulse.h):
// one started per worker, plus spares when pulse hands a stuck worker over.
// A Worker's fields are its holder's, except `queue` (stealers), `parker`
// (wakers), `epoch`/`holder` (the monitor) and the metrics (read racily by
// snapshots). Shared is read by everyone; its mutable parts are atomics or
// under their own locks.
//
// Shutdown (weft_runtime_free), each step closing one race:
//   1. close the inject queue and the owned-task list: no spawn or remote
//      wake can enqueue a task after this; spawns fail with WEFT_ECLOSED and
//      run the task's drop function.
//   2. raise `shutdown` and unpark every worker.
//   3. stop the pulse monitor (so no handoff starts another thread), close
//      the isolation queue and join its threads, then join every runtime
//      thread (workers' and spares'). Each holder, on leaving its loop,
//      drains its LIFO slot, fork
//      stack and local queue (drop_queue_entry): a task that was never
//      suspended, or that is queued still owning RUNNING, is cancelled there;
//      any other only loses the entry's ref (step 5 finds it). The drain loops
//      until all three are empty, since a cancelled task's drop function may
//      wake another. Nothing runs any more.
//   4. drain the inject queue the same way; 4b. the isolation queue; 4c.
//      every worker once more (one whose holder let it go in a handoff that
//      shutdown cut short has nobody else to drain it).
//   5. pop every task left in the owned lists (every suspended task,
//      owned_tasks.h; and Shared::loose, tasks that first suspended on a
//      thread holding no worker) and cancel it on this thread. Wherever a task is
//      cancelled (steps 3-5), drop_future runs exactly once and the join
//      handle sees WEFT_ECANCELED; and a task that may still be referenced
//      afterwards (a join handle, a waker held by foreign code) becomes an
//      orphan holding a reference on Shared, so a late wake never touches
//      freed memory.
//      5a. I/O (io_shutdown): cancel what the kernel still holds and wait
//      for every completion, so no buffer lent to the kernel is freed while
//      it may still write it; the rings and epoll sets close.
//      5b. empty every timer wheel (timers_shutdown): a timer still
//      registered now belongs to a C caller outside any task (a task's
//      timers were cancelled when its future was dropped); it becomes
//      CLOSED, its waker is dropped and it never fires. This comes after 5
//      so that the futures dropped there can still unregister their timers.
//   6. drop the runtime handle's reference on Shared; the last holder frees it
//      (an orphan task, or a remote pusher still notifying: remote_push).
#ifndef WEFT_KERNEL_SCHEDULER_H
#define WEFT_KERNEL_SCHEDULER_H

#include <atomic>
#include <stdint.h>
#include <new>

#include "../arch/padding.h"
#include "../port/port.h"
#include "clock.h"
#include "failure.h"
#include "idle.h"
#include "inject_queue.h"
#include "local_queue.h"
#include "owned_tasks.h"
#include "parker.h"
#include "pool.h"
#include "pulse.h"
#include "task.h"
#include "timer.h"

namespace weft::kernel {

// weft_runtime_new refuses more workers. A timer's wheel index (one wheel
// per worker) is 16 bits (TimerEntry::shard).
inline constexpr uint32_t MAX_WORKERS = 1024;
static_assert(MAX_WORKERS - 1 <= UINT16_MAX, "TimerEntry::shard holds a worker index");
inline constexpr uint32_t LOCAL_QUEUE_CAPACITY = 256;
inline constexpr uint32_t INJECT_INTERVAL = 61;
inline constexpr uint32_t MAX_LIFO_POLLS = 3;
// Room for a flat batch of 10,000 children without spilling into the local
// queue (and from there, overflowing into the inject queue). 128 KiB per worker.
inline constexpr uint32_t FORK_STACK_CAPACITY = 16384;
// At most this many fork-stack tasks are offered to thieves at once.
inline constexpr uint32_t FORK_EXPOSE_BATCH = 32;
// How long a searching worker that found nothing keeps looking before it
// parks. Parking and being woken cost a futex round trip and two context
// switches (several microseconds); a burst of spawns would otherwise park
// and wake the idle workers once per task batch. While it spins the worker
// counts as searching, so pushers skip the wake-up syscall. Bounded, so an
// idle runtime still goes to sleep at once in CPU terms. The spinner calls
// sched_yield every few microseconds (spin_search): a thread woken onto its
// CPU (the plain thread a task just answered) runs then, not when the spin
// ends: Linux 6.18 (EEVDF) did not preempt the spinner for it here, and the
// woken thread waited out the 50 us. The cost: on a CPU shared with another
// runnable thread, a yield can keep the spinner off the CPU for a time
// slice (about a millisecond) while it still counts as searching, so
// pushers meanwhile wake nobody; before, a preemption of the spinner had
// the same effect, only rarer. The spinner gives the CPU to that thread
// either way, and the pusher's own worker still runs what it pushed.
inline constexpr uint64_t SEARCH_SPIN_NS = 50000;

inline constexpr uint32_t POLL_HIST_BUCKETS = 24;

// Counters written only by their worker (relaxed load + store, no RMW), read
// racily by snapshots.
struct WorkerMetrics {
    std::atomic<uint64_t> polls{0};
    std::atomic<uint64_t> steals{0};        // successful steal operations
    std::atomic<uint64_t> stolen_tasks{0};  // tasks moved by them
    std::atomic<uint64_t> overflows{0};     // local queue overflow batches
    std::atomic<uint64_t> parks{0};
    std::atomic<uint64_t> lifo_polls{0};
    std::atomic<uint64_t> inject_pops{0};
    std::atomic<uint64_t> fork_exposed{0};  // fork-stack tasks moved to the queue
    // Pulse (pulse.h). Counted by whichever thread holds this worker.
    std::atomic<uint64_t> budget_yields{0};     // awaits refused because the budget was spent
    std::atomic<uint64_t> tier_changes{0};      // promotions + demotions after polls here
    std::atomic<uint64_t> handoffs{0};          // times this worker was taken from a stuck thread
    std::atomic<uint64_t> handoffs_refused{0};  // ... would have been, at the spare-thread bound
    // Poll durations, log2 buckets: [0] < 256 ns, [i] in [2^(i+7), 2^(i+8))
    // ns, [POLL_HIST_BUCKETS-1] >= 2^30 ns. Only with pulse on.
    std::atomic<uint64_t> poll_hist[POLL_HIST_BUCKETS] = {};

    static void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
};

struct Shared;
struct IsolationPool;
struct Monitor;
struct Driver;

struct alignas(WEFT_CACHE_LINE) Worker {
    LocalQueue<LOCAL_QUEUE_CAPACITY> queue;  // owner pushes/pops, others steal
    // -- owner only --
    Shared* shared = nullptr;
    TaskHeader* lifo = nullptr;
    uint32_t index = 0;
    uint32_t ticks_to_fairness = INJECT_INTERVAL;  // polls until the next inject-first look
    bool searching = false;
    // A yield was queued behind other tasks without offering it to idle
    // workers yet (scheduler.cpp schedule_local): done before the next poll
    // starts (announce_pushes).
    bool unannounced = false;
    bool failed_seen = false;  // park() woke for the runtime's `failed` already (failure.h)
    // While firing timers (timer.cpp), woken tasks of this runtime are
    // collected here instead of scheduled one by one; flush_fired then
    // queues them (see there).
    bool waking_timers = false;
    bool fired_first = false;  // flush_fired: to the fork stack (after a handoff)
    uint32_t fired_n = 0;
    uint32_t timer_help_next = 0;  // timer.cpp: the other wheel the next busy look checks
    TaskHeader* fired_head = nullptr;
    TaskHeader* fired_tail = nullptr;
    uint64_t rng = 0;
    // The fork stack (see above): a ring, pushed and popped at fork_top,
    // exposed to stealers from fork_bottom. Owner only.
    uint32_t fork_bottom = 0;
    uint32_t fork_top = 0;
    TaskHeader* fork[FORK_STACK_CAPACITY];
    WorkerOwned owned;  // list: owner only; done stack: any thread pushes
    Driver* io = nullptr;  // the I/O driver (io.h): its ring moves with the worker
    // -- the handoff (pulse.h): read by the holder at every check, written
    // by the monitor once per handoff --
    alignas(WEFT_CACHE_LINE) std::atomic<uint32_t> epoch{0};
    std::atomic<ThreadRec*> holder{nullptr};
    // -- written by other threads --
    alignas(WEFT_CACHE_LINE) Parker parker;
    // Set by the owner while it sleeps in park(); read racily by other
    // workers choosing how long they may park (timer.cpp).
    std::atomic<bool> parked_hint{false};
    alignas(WEFT_CACHE_LINE) WorkerMetrics metrics;
};

struct Shared {
    static constexpr uint64_t MAGIC = 0x7765667452554e54ull;  // "weftRUNT"
    uint64_t magic = MAGIC;
    uint32_t nworkers = 0;
    Worker* workers = nullptr;  // nworkers entries, cache-line aligned
    uint32_t* sleepers = nullptr;
    char name[12] = {0};
    alignas(WEFT_CACHE_LINE) InjectQueue inject;
    alignas(WEFT_CACHE_LINE) Idle idle;
    alignas(WEFT_CACHE_LINE) std::atomic<bool> shutdown{false};  // read by workers every loop
    // 1 for the runtime handle + 1 per orphan task (see step 5 above) + 1 per
    // remote pusher in flight (remote_push). Own line: remote pushes write it.
    alignas(WEFT_CACHE_LINE) std::atomic<uint64_t> holders{1};
    // Timers (timer.h): one wheel per worker, the clock, and tick 0.
    TimerShard* timer_shards = nullptr;
    uint32_t ntimer_shards = 0;
    uint64_t timer_epoch_ns = 0;
    std::atomic<uint32_t> timer_rr{0};  // round-robin wheel for foreign threads
    alignas(WEFT_CACHE_LINE) Clock clock;  // own line: every reading may CAS it
    // Raised at shutdown step 1 (release store, by runtime_free); local spawns
    // check it (acquire load) and refuse. A spawn that read it just before the
    // store is still drained or walked: both happen after the workers are
    // joined (owned_tasks.h).
    alignas(WEFT_CACHE_LINE) std::atomic<bool> owned_closed{false};
    // Raised once by the WEFT_FAILURE_SHUTDOWN policy (failure.h); workers
    // read it (relaxed) at each park and fairness tick. Shares owned_closed's
    // read-mostly line.
    std::atomic<bool> failed{false};
    // Raised by weft_runtime_free just before it drops the handle's reference
    // (step 6): a pinned task's late report then goes elsewhere (failure.h).
    std::atomic<bool> freed{false};
    // Failure reports on this runtime's threads (failure.h): the handler and
    // policy are set before the handle is returned, then only read.
    FailureTarget failures;
    // ---- pulse (pulse.h, pulse.cpp) ----
    PulseSettings pulse;
    uint64_t pulse_cycles_per_us = 0;  // 0: ticks are clock ns
    uint64_t pulse_ns_mult = 0;        // ns = ticks * mult >> 32
    ThreadRec* threads = nullptr;      // nworkers + pulse.max_spares records
    uint32_t thread_cap = 0;
    // Records in use. Written by runtime_new, then only by the monitor (a
    // fresh spare); the release store pairs with stop_threads' acquire load
    // (it joins what it counts, after joining the monitor). Status: relaxed.
    std::atomic<uint32_t> threads_started{0};
    port::Mutex spare_mu;
    ThreadRec* spares = nullptr;       // idle spare threads (guarded by spare_mu)
    // Tasks that first suspended on a thread without a worker (isolation
    // pool, a thread that lost its worker): the owned list of no worker.
    port::Mutex loose_mu;
    OwnedList loose;                   // guarded by loose_mu
    IsolationPool* isolation = nullptr;
    Monitor* monitor = nullptr;
    void* io = nullptr;  // io.cpp's state: the backend and the drivers
    // Set by the monitor while it sleeps through an idle runtime; a worker
    // leaving park reads it (seq_cst, the Dekker in pulse.cpp monitor_main)
    // and wakes the monitor. Own line: read on every park exit.
    alignas(WEFT_CACHE_LINE) std::atomic<bool> monitor_idle{false};
};

// An owner operation made from inside a user poll (pulse.h). Outside a poll,
// or without handoff, it is one TLS load and a branch. ok == false: the
// worker was taken; use the path a foreign thread would.
struct CoreOp {
    bool ok;
    bool guarded;
    // ok, in a poll the monitor marked long (pulse.h ThreadRec::long_poll):
    // queue for stealers, not the LIFO slot (scheduler.cpp).
    bool long_poll = false;
    explicit CoreOp(const Worker* w);
    ~CoreOp();
    CoreOp(const CoreOp&) = delete;
    CoreOp& operator=(const CoreOp&) = delete;
};
inline CoreOp::CoreOp(const Worker* w) {
    guarded = t_poll.in_user_poll;
    if (!guarded) {
        ok = true;
        return;
    }
    ThreadRec* me = t_poll.thread;
    uint64_t seq = t_poll.seq;
    me->word.store(seq | ThreadRec::IN_OP, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // store, then load (the barrier is the monitor's)
    ok = w->epoch.load(std::memory_order_relaxed) == t_poll.epoch;
    if (!ok) {
        me->word.store(seq | ThreadRec::POLLING, std::memory_order_relaxed);
        guarded = false;
        return;
    }
    // relaxed: a hint; seen late, the monitor hands the worker over instead.
    long_poll = me->long_poll.load(std::memory_order_relaxed) == seq;
    // An op inside this op (a drop function run by the op waking a task)
    // is covered by this guard: it must not end it early.
    t_poll.in_user_poll = false;
}
inline CoreOp::~CoreOp() {
    if (!guarded) return;
    t_poll.in_user_poll = true;
    ThreadRec* me = t_poll.thread;
    uint64_t seq = t_poll.seq;
    // release: what the op wrote is visible to the monitor (and from it the
    // spare) once it reads POLLING.
    me->word.store(seq | ThreadRec::POLLING, std::memory_order_release);
}

// ---- runtime lifecycle (scheduler.cpp) ----
// clock == nullptr: CLOCK_MONOTONIC (clock.h).
int runtime_new(uint32_t workers, const char* name, ClockFn clock, void* clock_ctx, const weft_pulse_config* pulse,
                Shared** out);
// The clock was moved (an injected one): wake every worker to look at its timers.
void runtime_clock_changed(Shared* sh);
int runtime_free(Shared* sh);
// A reference on Shared (holders) for an object that may outlive the
// runtime handle (an I/O operation); the last release frees Shared.
void runtime_retain(Shared* sh);
void runtime_release(Shared* sh);

// ---- tasks ----
// Allocates a task with state_size bytes of state; nullptr when out of memory.
// Inline: it is on every spawn's path (weft_task_alloc), and the pool's hit
// path is a few instructions.
inline constexpr size_t TASK_STATE_MAX = (size_t)UINT32_MAX - sizeof(TaskHeader) - 64;
inline size_t task_alloc_size(size_t state_size) { return sizeof(TaskHeader) + ((state_size + 15) & ~(size_t)15); }
// The header of a new task in mem (total bytes from the pool).
inline TaskHeader* task_init(void* mem, size_t total, const weft_task_vtable* vt) {
    // SAFETY: mem is a fresh block of `total` bytes, line-aligned (pool.h), large
    // enough for the header followed by the state. Default-initialised (no
    // zeroing of the whole header): the fields read before spawn are set
    // here, the rest by task_spawn.
    TaskHeader* t = new (mem) TaskHeader;
    t->vtable = vt;
    t->alloc_size = (uint32_t)total;
    t->join_waker = weft_waker{nullptr, nullptr};
    t->result = 0;
    t->stage = Stage::Future;
    t->join_taken = 0;
    t->orphan = 0;
    t->spawned = 0;
    t->resume_running = 0;
    t->kind = TASK_MT;
    return t;
}
inline TaskHeader* task_alloc(size_t state_size, const weft_task_vtable* vt) {
    if (state_size > TASK_STATE_MAX) return nullptr;
    size_t total = task_alloc_size(state_size);
    void* mem = pool::alloc(total);
    if (!mem) return nullptr;
    return task_init(mem, total, vt);
}
// Spawns onto sh; on failure the future is dropped and the memory freed.
// fork: a fork-join child of the calling task (WEFT_SPAWN_FORK).
// group: the fork-join group of a fork child (weft_task_spawn_fork), or nullptr.
int task_spawn(Shared* sh, TaskHeader* t, bool with_join, bool fork = false, void* group = nullptr);
// Frees a never-spawned task (drop_future runs).
void task_release_unspawned(TaskHeader* t);
// A C task (weft_task_desc) not yet spawned; on failure desc->drop has run.
int ctask_new(const weft_task_desc* desc, TaskHeader** out);

// ---- wakes and scheduling ----
// Queues the tasks collected while firing timers (Worker::fired_*).
void flush_fired(Worker* w);
void schedule(TaskHeader* t, bool is_yield);
void wake_by_val(TaskHeader* t);
void wake_by_ref(TaskHeader* t);
void drop_ref(TaskHeader* t);

// ---- join handles (the handle is the TaskHeader*, holding one ref) ----
int join_poll(TaskHeader* t, const weft_waker* waker);
int join_wait(TaskHeader* t, int64_t timeout_ns);
int join_status(const TaskHeader* t);
int join_abort(TaskHeader* t);
void join_free(TaskHeader* t);

// ---- pulse (pulse.cpp) ----
// Resolves cfg (may be null) into sh->pulse; starts nothing.
int pulse_configure(Shared* sh, const struct weft_pulse_config* cfg);
// Starts the monitor and the isolation pool (after the workers).
int pulse_start(Shared* sh);
// Shutdown: wakes and joins the monitor, the isolation and spare threads;
// then drops what the isolation queue still holds.
void pulse_stop_threads(Shared* sh);
void pulse_drain(Shared* sh);
void pulse_destroy(Shared* sh);
// Queues t (holding a queue ref) on the isolation pool; false when closed.
bool isolation_push(Shared* sh, TaskHeader* t);
// The monitor after a worker leaves park: wake it if it sleeps.
void monitor_wake(Shared* sh);
// A thread that let its worker go (RELEASED) after a handoff: restores the
// policy the monitor lowered it from, if it did. false: it cannot, and has
// retired (ThreadRec::RETIRED): the caller exits the thread.
bool pulse_thread_release_priority(ThreadRec* me);
// Thread records: the body of every runtime thread (scheduler.cpp).
void* thread_main(void* arg);
int start_thread(Shared* sh, ThreadRec* rec, const char* role, uint32_t num);
// Runs one task on a thread that holds no worker (isolation pool).
void run_task_coreless(Shared* sh, TaskHeader* t);
// Shutdown helpers used by pulse.cpp.
void drop_queue_entry_ext(TaskHeader* t);
void pulse_event(Shared* sh, uint32_t kind, uint32_t worker, uint64_t task_id, uint64_t poll_ns, uint8_t from,
                 uint8_t to);

// ---- the calling thread ----
// The worker running on this thread, if any. initial-exec TLS: one
// instruction to reach, no __tls_get_addr (a few bytes of the static TLS
// surplus glibc keeps for dlopen()ed libraries).
extern constinit __attribute__((tls_model("initial-exec"))) thread_local Worker* t_worker;
// The runtime this thread belongs to (a worker, spare or isolation thread).
extern constinit __attribute__((tls_model("initial-exec"))) thread_local Shared* t_runtime;
// The runtime whose thread this is, or nullptr.
inline Shared* current_runtime() { return t_runtime; }

inline Shared* failure_target_of(const TaskHeader* t) {
    Shared* sh = t->shared;
    if (!sh || (t->orphan & TASK_ORPHAN)) return nullptr;
    if (sh == t_runtime || sh == t_failure_runtime) return sh;
    if ((t->orphan & TASK_PINNED) && !sh->freed.load(std::memory_order_acquire)) return sh;
    return nullptr;
}
TaskHeader* current_task();  // the task being polled here, or nullptr
// A new task id (unique in the process, never 0; no shared RMW per call):
// ids come from a global counter in blocks of ID_BLOCK, handed out from a
// per-thread range. Inline: one compare and one increment on every spawn.
inline constexpr uint64_t ID_BLOCK = 1024;
extern constinit __attribute__((tls_model("initial-exec"))) thread_local uint64_t t_id_next;
extern constinit __attribute__((tls_model("initial-exec"))) thread_local uint64_t t_id_end;
uint64_t next_task_id_block();  // refills the range; returns its first id
inline uint64_t next_task_id() {
    if (__builtin_expect(t_id_next == t_id_end, 0)) return next_task_id_block();
    return t_id_next++;
}

}  // namespace weft::kernel

#endif
