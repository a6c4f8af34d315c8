/* weft_pulse.h — preemption without signals, in the C ABI. Include
 * <weft/weft.h>, which includes this.
 *
 * A cooperative task that computes without awaiting monopolises its worker.
 * weft measures every poll and intervenes per task, in tiers:
 *
 *   MONITOR  measure only (every task starts here)
 *   WARN     counted, reported through on_warn and on_event
 *   YIELD    the task's cooperative budget per poll is reduced
 *   ISOLATE  the task runs on the isolation pool's own threads from now on,
 *            so it can no longer delay the workers' other tasks
 *
 * A poll of slow_poll_ns or longer is a strike; strikes_to_promote strikes
 * move the task one tier up. good_polls_to_demote polls in a row that are
 * shorter move it one tier down. A poll that outlives handoff_ns costs its
 * worker (below) and puts the task straight into ISOLATE.
 * Which polls are timed: reading the cycle counter costs about 13 ns, so a
 * thread times one poll in WEFT_POLL_HIST_SAMPLE_EVERY (weft_metrics.h),
 * every poll of a task with a strike or above MONITOR, and every poll for a
 * while after a sampled window of polls took slow_poll_ns. A task's first
 * long poll is therefore sometimes missed (it is caught at its next one);
 * a poll that never ends is the monitor's, which needs no timestamps.
 * A suspect's long poll during which its thread was mostly off the CPU
 * (CLOCK_THREAD_CPUTIME_ID) is no strike: a loaded machine is not a hog.
 *
 * Cooperative budget: every poll starts with `budget` units (yield_budget in
 * the YIELD tier and above). Runtime awaitables (channel and lock operations,
 * timers, weft::checkpoint) consume one unit each; once the budget is spent,
 * they wake the task and report "not ready", so a busy task yields at its
 * next await. A CPU loop in C consumes explicitly:
 *
 *     for (;;) {
 *         ... a slice of work ...
 *         WEFT_BUDGET_CHECKPOINT(cx);   // returns WEFT_PENDING when spent
 *     }
 *
 * (the poll function resumes where it left off: its state must say where).
 *
 * Worker handoff: a monitor thread watches the poll each worker is in. A
 * worker stuck in one poll for handoff_ns loses its run queue, LIFO slot,
 * fork stack and timers to a spare thread, so the tasks queued behind the
 * hog keep running. The stuck thread finishes its poll, gives the task to
 * the isolation pool and becomes a spare itself. At most max_spare_threads
 * spare threads exist; at the bound a stuck worker keeps its queues (other
 * workers still steal from its run queue and fire its timers) and the event
 * WEFT_PULSE_HANDOFF_REFUSED is reported.
 *
 * The stuck thread's priority (stuck_thread): by default the monitor lowers
 * it to SCHED_IDLE when it takes the worker, so the rest of the poll gets
 * very little CPU time while other threads want it (the kernel's weight 3,
 * against 1024 for nice 0), and a worker thread that wakes (a timer, I/O)
 * preempts it at once. Without this, with more hogs than CPUs, every wake
 * waited for a hog's time slice: in the starvation_2x benchmark (four hogs,
 * two workers, two CPUs) ticks 3-8 ms late for as long as the hogs ran
 * (bench/RESULTS.md). When the poll ends the thread restores its policy
 * and becomes a spare. Raising a thread's priority again needs CAP_SYS_NICE
 * in the initial user namespace (root in a default Docker container lacks
 * it) or an RLIMIT_NICE of at least 20 minus the thread's nice value
 * (setrlimit(2)); without either, the thread exits instead, and a later
 * handoff starts a fresh thread on its record once it is gone (the bound
 * counts records; spare_threads below too). WEFT_STUCK_THREAD_KEEP leaves
 * the priority alone: choose it when a task may hold an OS lock (a
 * std::mutex) across a long poll that other threads wait for, since an
 * idle-priority holder runs slowly while the CPUs are busy. (The runtime's
 * own locks, taken briefly by that thread at the poll's end, are waited
 * for by sleeping, so they cost its waiters time, not CPU.)
 *
 * A long poll that keeps spawning or waking tasks (a task spawning 100,000
 * others in one poll) keeps its worker when nothing needs a spare thread:
 * half-way to handoff_ns the monitor asks the thread to stop using its LIFO
 * slot and fork stack, and at handoff_ns it leaves the worker alone while
 * another worker runs tasks, its run queue is empty or being taken from, and
 * it has no I/O in flight. Its timers are fired by the other workers. It is
 * handed over as soon as one of those stops being true. Event
 * WEFT_PULSE_HANDOFF_COVERED, once per such poll. A spare thread there would
 * only compete for the CPUs: the `timers` benchmark's p99 lateness went from
 * 6-9 ms to about 2.3 ms (bench/RESULTS.md, Timers, session 12).
 */
#ifndef WEFT_WEFT_PULSE_H
#define WEFT_WEFT_PULSE_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tiers and events ----------------------------------------------------- */
#define WEFT_TIER_MONITOR 0
#define WEFT_TIER_WARN 1
#define WEFT_TIER_YIELD 2
#define WEFT_TIER_ISOLATE 3

#define WEFT_PULSE_TIER_CHANGE 1      /* a task moved tiers (from_tier -> to_tier) */
#define WEFT_PULSE_HANDOFF 2          /* a stuck worker's queues went to a spare thread */
#define WEFT_PULSE_HANDOFF_REFUSED 3  /* ... would have, but max_spare_threads are in use */
#define WEFT_PULSE_HANDOFF_COVERED 4  /* ... was not needed: the others do its work (above) */

typedef struct weft_pulse_event {
    uint32_t kind;      /* WEFT_PULSE_* */
    uint32_t worker;    /* the worker the task was polled on (UINT32_MAX: isolation pool) */
    uint64_t task_id;   /* weft_join_task_id's numbering; 0 when not about one task */
    uint64_t poll_ns;   /* the poll's duration (so far, for a handoff) */
    uint8_t from_tier;
    uint8_t to_tier;
    uint8_t _reserved[6];
} weft_pulse_event;

/* ---- configuration (weft_runtime_config.pulse; NULL = these defaults) ------
 * The environment variable WEFT_PULSE=off (or =on) overrides `mode` for every
 * runtime the process creates: an operator's switch. */
#define WEFT_PULSE_ON 0   /* the default */
#define WEFT_PULSE_OFF 1  /* no hooks run: one predictable branch per poll */

/* weft_pulse_config.stuck_thread (above: the stuck thread's priority) */
#define WEFT_STUCK_THREAD_IDLE 0  /* the default: SCHED_IDLE until its poll ends */
#define WEFT_STUCK_THREAD_KEEP 1  /* its priority is left as it is */

typedef struct weft_pulse_config {
    size_t size;                   /* sizeof(weft_pulse_config) */
    uint32_t mode;                 /* WEFT_PULSE_ON or WEFT_PULSE_OFF */
    uint32_t budget;               /* units per poll; default 128 */
    uint32_t yield_budget;         /* units per poll in YIELD and above; default 16 */
    uint32_t strikes_to_promote;   /* default 2 */
    uint32_t good_polls_to_demote; /* default 256 */
    uint32_t max_spare_threads;    /* default 2 x workers; 0 = no handoff */
    uint32_t isolation_threads;    /* default 1; 0 = no ISOLATE tier (YIELD is the top) */
    uint32_t stuck_thread;         /* WEFT_STUCK_THREAD_IDLE (default) or _KEEP */
    uint64_t slow_poll_ns;         /* a strike; default 1 ms */
    uint64_t handoff_ns;           /* a stuck worker; default 10 ms */
    /* Called on the polling thread once per promotion into WARN, after the
     * poll that caused it. Must not block; may be NULL. */
    void (*on_warn)(void* ctx, uint64_t task_id, uint64_t poll_ns);
    /* Every tier change and handoff (a trace hook). Called on a worker, an
     * isolation thread or the monitor thread. Must not block; may be NULL. */
    void (*on_event)(void* ctx, const weft_pulse_event* ev);
    void* ctx;
} weft_pulse_config;

/* Fills *cfg with the defaults (size set). */
WEFT_API void weft_pulse_config_init(weft_pulse_config* cfg);

/* ---- cooperative budget ----------------------------------------------------- */
/* Consumes n units of the calling task's budget. Returns 1 when the budget is
 * spent and the task should yield now (wake itself, return WEFT_PENDING),
 * otherwise 0. Returns 0 outside a task and when pulse is off. A few ns. */
WEFT_API int weft_budget_consume(uint32_t n);
/* Units left in the calling task's budget for this poll (UINT32_MAX outside
 * a task or when pulse is off). */
WEFT_API uint32_t weft_budget_remaining(void);

/* In a C poll function: yield when the budget is spent. */
#define WEFT_BUDGET_CHECKPOINT(cx)                         \
    do {                                                   \
        if (weft_budget_consume(1)) {                      \
            weft_waker_wake_by_ref(&(cx)->waker);          \
            return WEFT_PENDING;                           \
        }                                                  \
    } while (0)

/* ---- introspection ------------------------------------------------------------ */
/* The tier of the task behind join (WEFT_TIER_*), or a negative code. */
WEFT_API int weft_join_task_tier(const weft_join* join);

typedef struct weft_pulse_status {
    size_t size;               /* sizeof(weft_pulse_status), set by the caller */
    uint32_t mode;             /* WEFT_PULSE_ON / WEFT_PULSE_OFF */
    uint32_t compiled;         /* 0 when the build compiled the hooks out */
    uint32_t handoff;          /* 1 when worker handoff can happen */
    uint32_t spare_threads;    /* spare thread records in use so far (a retired thread's record is reused) */
    uint64_t cycles_per_us;    /* the calibrated cycle counter (0: clock used) */
    const char* handoff_note;  /* why handoff is off, or "" */
} weft_pulse_status;
WEFT_API int weft_runtime_pulse_status(const weft_runtime* rt, weft_pulse_status* out);

#ifdef __cplusplus
}
#endif

#endif
