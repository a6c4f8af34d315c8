/* weft.h — the C ABI of weft, an async runtime kernel for Linux.
 *
 * This is the only header a C or FFI user needs. It compiles as C11 and C++.
 *
 * Conventions
 *   - Every symbol starts with weft_, every macro with WEFT_.
 *   - Functions return 0 (or a documented non-negative value) on success and a
 *     negative WEFT_E* code on failure; weft_strerror() turns a code into a
 *     sentence. Bad input is reported, never crashed on, where weft can tell.
 *   - Objects are opaque handles. Config structs begin with a `size` field set
 *     to sizeof(the struct) by the caller, so they can grow without breaking
 *     old callers.
 *   - A task is a poll function, a drop function and an output slot: the same
 *     shape as Rust's Future. A waker is {data, vtable} with clone / wake /
 *     wake_by_ref / drop, the same shape as Rust's RawWaker.
 *
 * Threads: every function may be called from any thread unless it says
 * otherwise. A weft_join* belongs to one thread at a time (move it, don't
 * share it). None is async-signal-safe, waking a waker included (a wake may
 * take a lock and allocate): from a signal handler, write to a pipe or an
 * eventfd that a task reads.
 */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/* ---- version ------------------------------------------------------------ */
#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_NUMBER (WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 + WEFT_VERSION_PATCH)
/* The version of the library actually loaded, as WEFT_VERSION_NUMBER. */
WEFT_API int weft_version(void);
WEFT_API const char* weft_version_string(void);

/* ---- errors ------------------------------------------------------------- */
#define WEFT_OK 0
#define WEFT_EINVAL (-22)     /* an argument is invalid (null, out of range) */
#define WEFT_ENOMEM (-12)     /* out of memory */
#define WEFT_ECLOSED (-32)    /* the runtime (or object) is shut down / closed */
#define WEFT_ECANCELED (-125) /* the task was cancelled before it completed */
#define WEFT_EAGAIN (-11)     /* not ready yet; try again later */
#define WEFT_ETIMEDOUT (-110) /* a wait ran out of time */
#define WEFT_EDEADLK (-35)    /* a blocking call was made from a runtime worker */
#define WEFT_EALREADY (-114)  /* the result was already taken */
#define WEFT_EVERSION (-95)   /* a struct's size field is not one weft knows */
#define WEFT_EAGAIN_THREAD (-1011) /* could not start a thread */
#define WEFT_ETASKFAILED (-1012)   /* the task failed (C++: threw an exception) */
/* A sentence for any weft code (or negative errno); never NULL. */
WEFT_API const char* weft_strerror(int code);

/* ---- wakers --------------------------------------------------------------- */
typedef struct weft_waker_vtable {
    /* Returns a new waker for the same task (adds a reference). */
    struct weft_waker (*clone)(const void* data);
    /* Wakes the task and releases this waker (consumes it). */
    void (*wake)(const void* data);
    /* Wakes the task; the waker stays valid. */
    void (*wake_by_ref)(const void* data);
    /* Releases the waker without waking. */
    void (*drop)(const void* data);
} weft_waker_vtable;

typedef struct weft_waker {
    const void* data;
    const weft_waker_vtable* vtable;
} weft_waker;

static inline weft_waker weft_waker_clone(const weft_waker* w) { return w->vtable->clone(w->data); }
static inline void weft_waker_wake(weft_waker w) { w.vtable->wake(w.data); }
static inline void weft_waker_wake_by_ref(const weft_waker* w) { w->vtable->wake_by_ref(w->data); }
static inline void weft_waker_drop(weft_waker w) { w.vtable->drop(w.data); }
/* Whether two wakers wake the same task (same data and vtable). */
static inline int weft_waker_will_wake(const weft_waker* a, const weft_waker* b) {
    return a->data == b->data && a->vtable == b->vtable;
}

/* What a poll function receives: the waker of the task being polled
 * (borrowed: clone it to keep it past the poll). */
typedef struct weft_context {
    weft_waker waker;
} weft_context;

/* Poll results. A poll function returns WEFT_READY, WEFT_PENDING, or a
 * negative code, which completes the task as failed with that code. */
#define WEFT_PENDING 0
#define WEFT_READY 1

/* ---- runtime ----------------------------------------------------------- */
typedef struct weft_runtime weft_runtime;
struct weft_failure; /* defined below, with failure containment */
typedef struct weft_runtime_config {
    size_t size;            /* sizeof(weft_runtime_config) */
    uint32_t workers;       /* worker threads; 0 = one per CPU */
    uint32_t flags;         /* reserved, 0 */
    const char* name;       /* thread name prefix, or NULL for "weft" */
    /* Optional clock (tests freeze, step and rewind time with it): returns
     * monotonic nanoseconds; weft guards it against going backwards
     * (weft_time.h). NULL: CLOCK_MONOTONIC. Called from any thread. */
    uint64_t (*clock)(void* ctx);
    void* clock_ctx;
    /* Preemption settings (weft_pulse.h); NULL: the defaults (pulse on). */
    const struct weft_pulse_config* pulse;
    /* Failure containment (see "failures" below): what this runtime does
     * with a failure that no handler took (WEFT_FAILURE_IGNORE, the default;
     * WEFT_FAILURE_SHUTDOWN; WEFT_FAILURE_ABORT), and an optional handler
     * called for every failure reported on this runtime's threads. */
    uint32_t failure_policy;
    uint32_t _reserved2;    /* 0 */
    int (*on_failure)(void* ctx, const struct weft_failure* failure);
    void* on_failure_ctx;
} weft_runtime_config;

/* Fills *cfg with the defaults (size set, one worker per CPU). */
WEFT_API void weft_runtime_config_init(weft_runtime_config* cfg);
/* Starts a multi-thread work-stealing runtime. cfg may be NULL (defaults). */
WEFT_API int weft_runtime_new(const weft_runtime_config* cfg, weft_runtime** out);
/* Shuts the runtime down and frees it: spawning fails from now on, every task
 * still queued or suspended is dropped exactly once (its drop function runs),
 * and every worker thread is joined. Join handles stay valid (they report
 * WEFT_ECANCELED) and must still be freed. Must not be called from a worker of
 * the same runtime (returns WEFT_EDEADLK). NULL is a no-op. */
WEFT_API int weft_runtime_free(weft_runtime* rt);
/* Number of worker threads. */
WEFT_API uint32_t weft_runtime_workers(const weft_runtime* rt);
/* The runtime whose worker calls this, or NULL on any other thread. */
WEFT_API weft_runtime* weft_runtime_current(void);

/* Per-worker counters, read without stopping the runtime (each counter is
 * exact for its worker; the set is not one atomic snapshot). */
typedef struct weft_worker_metrics {
    size_t size;             /* sizeof(weft_worker_metrics), set by the caller */
    uint64_t polls;          /* task polls */
    uint64_t steals;         /* successful steal operations */
    uint64_t stolen_tasks;   /* tasks moved by them */
    uint64_t overflows;      /* local-queue overflow batches to the inject queue */
    uint64_t parks;          /* times the worker went to sleep */
    uint64_t lifo_polls;     /* polls straight from the LIFO slot */
    uint64_t inject_pops;    /* tasks taken from the inject queue */
    uint64_t fork_exposed;   /* fork-stack tasks offered to thieves */
} weft_worker_metrics;
/* Fills *out for worker index `worker` (0 .. weft_runtime_workers - 1). */
WEFT_API int weft_runtime_worker_metrics(const weft_runtime* rt, uint32_t worker, weft_worker_metrics* out);

/* ---- tasks ------------------------------------------------------------- */
typedef struct weft_join weft_join;

/* C task: poll(data, cx, output) is called until it returns WEFT_READY (output
 * written) or a negative code (failure). drop(data) is called exactly once,
 * when the task completes, is cancelled, or is refused (spawn on a closed
 * runtime). output points to output_size bytes owned by the task, zeroed at
 * spawn, handed to the join handle once. */
typedef int (*weft_poll_fn)(void* data, weft_context* cx, void* output);
typedef void (*weft_drop_fn)(void* data);

typedef struct weft_task_desc {
    size_t size;             /* sizeof(weft_task_desc) */
    weft_poll_fn poll;       /* required */
    weft_drop_fn drop;       /* optional */
    void* data;              /* passed to poll and drop */
    size_t output_size;      /* bytes of output, 0..WEFT_MAX_OUTPUT */
} weft_task_desc;
#define WEFT_MAX_OUTPUT 4096

/* Spawns a task onto rt (or, when rt is NULL, onto the runtime of the calling
 * worker, or the thread-per-core executor of the calling thread: weft_tpc.h). When join is non-NULL, *join receives the handle; otherwise the
 * task is detached. On failure the task's drop function has already run. */
WEFT_API int weft_spawn(weft_runtime* rt, const weft_task_desc* desc, weft_join** join);

/* Raw tasks: the caller lays out its own state inside the task's single
 * allocation (the C++ wrappers put the coroutine frame there).
 *   poll(state, cx): WEFT_READY, WEFT_PENDING or a negative failure code.
 *   drop_future(state): the task will never be polled again and did not
 *       complete (cancelled, shut down, refused): release the future.
 *   drop_output(state): the task completed and its memory is being freed:
 *       release the output.
 * Exactly one of drop_future / drop_output runs for every allocated task. */
typedef struct weft_task_vtable {
    int (*poll)(void* state, weft_context* cx);
    void (*drop_future)(void* state);
    void (*drop_output)(void* state);
} weft_task_vtable;

/* Allocates a task with state_size bytes of state (16-byte aligned) from the
 * calling thread's pool; returns the state pointer or NULL (out of memory or
 * state_size too large). The task must then be spawned or released with
 * weft_task_release_unspawned. */
WEFT_API void* weft_task_alloc(size_t state_size, const weft_task_vtable* vtable);
/* Spawns a task made by weft_task_alloc (rt NULL: the runtime of the calling
 * worker, or the thread-per-core executor of the calling thread). join NULL:
 * the task is detached (no handle is made, which saves the handle's atomic
 * release). On failure drop_future has run and the memory is freed. */
WEFT_API int weft_task_spawn(weft_runtime* rt, void* state, weft_join** join);
/* weft_task_spawn with flags:
 *   WEFT_SPAWN_FORK  the task is a fork-join child of the calling task (on a
 *                    worker of rt): run it depth-first on this worker, newest
 *                    first, before the FIFO queue; it becomes stealable when
 *                    this worker has nothing else to offer. For divide-and-
 *                    conquer batches (weft::ForkJoin uses it). */
#define WEFT_SPAWN_FORK 1u
WEFT_API int weft_task_spawn_ex(weft_runtime* rt, void* state, weft_join** join, uint32_t flags);

/* ---- fork-join groups: completions counted in batches -------------------
 * A join counter that every child of a batch decrements as it finishes costs
 * each child a locked read-modify-write. Children spawned into a group run
 * one after another on their worker's fork stack; there the worker can keep
 * the count of the finished ones and hand it over in one go.
 *
 * weft_task_spawn_fork: weft_task_spawn_ex(NULL, state, NULL, WEFT_SPAWN_FORK)
 *   for a child of `group`, an address that names the batch (its counter)
 *   and stays valid until every child has been counted.
 * weft_fork_done: called from the poll of a child of group as it finishes,
 *   with `uncounted`: how many children of the group the caller's counter
 *   still counts as pending (a relaxed read; at least 1, itself).
 *   Returns how many finished children the caller must count now (this one
 *   and any its thread held: >= 1), or 0: the thread holds the count and
 *   calls flush(group, n) once for all it holds, at the latest before it
 *   polls a task that is not an unfinished child of group (one that never
 *   suspended), and before it looks for work elsewhere, parks, stops, or
 *   goes on after losing its worker in this poll (pulse). So a count is held
 *   only while the thread runs the group's own unfinished children: the
 *   group cannot complete before those finish anyway. If that flush
 *   completes the group, the task it wakes runs next. Nothing is held when
 *   uncounted says that no other child is pending, in a drop_future, or
 *   outside a poll on a worker of the multi-thread runtime; from a
 *   drop_output that runs inside another task's poll, a count may be held
 *   until that poll ends. WEFT_EINVAL: group or flush NULL, or uncounted 0. */
typedef void (*weft_fork_flush_fn)(void* group, uint32_t n);
WEFT_API int weft_task_spawn_fork(void* state, void* group);
WEFT_API int weft_fork_done(void* group, weft_fork_flush_fn flush, uint32_t uncounted);
/* Frees a task that was allocated but never spawned (runs drop_future). */
WEFT_API void weft_task_release_unspawned(void* state);
/* For state that destroys itself (a C++ coroutine frame's operator delete):
 * frees the memory of a never-spawned task without calling the vtable; for a
 * spawned task does nothing (the kernel frees it once its drop callback
 * returns). */
WEFT_API void weft_task_free_state(void* state);
/* The id of the task currently being polled on this thread, or 0. */
WEFT_API uint64_t weft_task_current_id(void);

/* ---- join handles ------------------------------------------------------- */
/* Polls for the task's result from inside a task: returns WEFT_READY once the
 * task has finished (successfully or not: see weft_join_status), or
 * WEFT_PENDING after arranging for cx's waker to be woken when it finishes. */
WEFT_API int weft_join_poll(weft_join* join, weft_context* cx);
/* Blocks the calling (non-worker) thread until the task finishes or
 * timeout_ns passes (negative: forever). 0, WEFT_ETIMEDOUT, WEFT_EDEADLK.
 * Like the _blocking calls of weft_sync.h, it may spin for up to 5 us before
 * sleeping, while such spins keep catching the result on this thread. */
WEFT_API int weft_join_wait(weft_join* join, int64_t timeout_ns);
/* Once finished: 0 (completed), WEFT_ECANCELED, or the task's failure code.
 * Before: WEFT_EAGAIN. Reading a finished task's status counts as handling
 * a failure: it is not reported when the handle is freed (see "failures");
 * it records that in the handle, so call it from the thread that owns the
 * handle (like every weft_join_* call but weft_join_abort). */
WEFT_API int weft_join_status(const weft_join* join);
/* 1 once the task has finished, 0 before; WEFT_EINVAL for NULL, or for a
 * thread-per-core task's handle used off its executor's thread while the
 * task runs. Unlike weft_join_status it does not count as reading the
 * outcome. */
WEFT_API int weft_join_finished(const weft_join* join);
/* Copies the output of a completed C task into dst (output_size bytes) and
 * marks it taken: 0, WEFT_EAGAIN (not finished), WEFT_EALREADY (taken), or
 * the status (cancelled/failed). */
WEFT_API int weft_join_take(weft_join* join, void* dst, size_t dst_size);
/* The task's state pointer (raw tasks: read the output in place). */
WEFT_API void* weft_join_state(weft_join* join);
/* Requests cancellation: a task not yet finished is dropped at its next
 * scheduling point instead of being polled; its join reports WEFT_ECANCELED.
 * Returns 0, or WEFT_EALREADY when it already finished. */
WEFT_API int weft_join_abort(weft_join* join);
/* Releases the handle; the task keeps running (detached). NULL is a no-op.
 * A task that failed and whose status was never read (weft_join_status,
 * weft_join_take, a C++ co_await or join) is reported as a
 * WEFT_FAILURE_TASK failure here; one still running is reported when it
 * fails. */
WEFT_API void weft_join_free(weft_join* join);
/* The task's id (unique per process, never 0). */
WEFT_API uint64_t weft_join_task_id(const weft_join* join);

/* ---- failures ---------------------------------------------------------------
 * Failure containment, in three layers:
 *   1. A task that fails (a C poll function returns a negative code; a C++
 *      task throws) completes with that code; its join handle reports it
 *      (C++: JoinHandle rethrows the exception). A task that fails with no
 *      join handle left (detached) is reported here instead (WEFT_FAILURE_TASK).
 *   2. Failures in code weft calls that has nobody to return to -- releasing
 *      a task's future or output (C++: a destructor threw), a waker
 *      (C++: weft::make_waker's callable threw), a user hook (the pulse
 *      on_warn / on_event hooks through weft::PulseConfig) -- are caught by
 *      the C++ wrappers and reported here. C callbacks cannot throw; C++ code
 *      handing weft raw function pointers must not let exceptions escape
 *      them (weft's core is built without exceptions: one would unwind
 *      through the scheduler), which is what the wrappers guarantee.
 *   3. A report about a task (its failure, its drop) goes to the handler of
 *      that task's runtime while the runtime lives; any other report to the
 *      runtime whose thread makes it (weft_runtime_config.on_failure); on a
 *      thread of no runtime, or after the runtime was freed, to the
 *      process-wide handler (weft_failure_handler_set). A handler may be
 *      called from any thread of its runtime, concurrently, from inside the
 *      scheduler (sometimes while a lock of a weft object is held): it must
 *      not block, and must not call weft functions other than
 *      weft_report_failure (nested reports deeper than 4 skip the handler
 *      and count as unhandled). When there is no handler, or the handler
 *      returns nonzero (C++: weft::FailureHandler's callable threw), the
 *      failure is unhandled and the policy applies:
 *        WEFT_FAILURE_IGNORE    count it (weft_failure_stats) and go on;
 *        WEFT_FAILURE_SHUTDOWN  close the runtime: spawns and new I/O
 *                               operations fail with WEFT_ECLOSED, and
 *                               every task still running is cancelled at
 *                               its next scheduling point (its join
 *                               reports WEFT_ECANCELED; a task that
 *                               completed meanwhile keeps its result); the
 *                               runtime must still be freed;
 *        WEFT_FAILURE_ABORT     write the failure to stderr and abort().
 * Whatever happens, the scheduler's own state is never left inconsistent:
 * every failure is caught at the boundary of the user code that raised it. */
#define WEFT_FAILURE_TASK 1  /* a detached task failed (code: its failure code) */
#define WEFT_FAILURE_DROP 2  /* releasing a task's future or output failed */
#define WEFT_FAILURE_WAKE 3  /* a waker failed (wake, clone or drop) */
#define WEFT_FAILURE_HOOK 4  /* a user hook failed (pulse on_warn / on_event) */
#define WEFT_FAILURE_KINDS 5 /* kinds are 1 .. WEFT_FAILURE_KINDS - 1 */

#define WEFT_FAILURE_IGNORE 0
#define WEFT_FAILURE_SHUTDOWN 1
#define WEFT_FAILURE_ABORT 2

typedef struct weft_failure {
    size_t size;          /* sizeof(weft_failure) */
    int kind;             /* WEFT_FAILURE_* */
    int code;             /* the failure code (WEFT_ETASKFAILED for a C++ exception) */
    uint64_t task_id;     /* the task concerned (weft_join_task_id), or 0 */
    const char* message;  /* what failed (an exception's what()); never NULL; valid during the call */
} weft_failure;
typedef int (*weft_failure_fn)(void* ctx, const weft_failure* failure);

/* For a handle about to be freed whose task failed and was never read:
 * reports the failure now (WEFT_FAILURE_TASK, to the task's runtime) with
 * this message (NULL: the code's description) and marks it read, so freeing
 * the handle reports nothing more. 0, WEFT_EAGAIN (not finished),
 * WEFT_EALREADY (read already, or it did not fail), WEFT_EINVAL. The C++
 * JoinHandle calls it with what the task threw. */
WEFT_API int weft_join_report_failure(weft_join* join, const char* message);
/* Reports a failure (the C++ wrappers call this; C code may too). Routed as
 * described above. Returns 0 when a handler took it, 1 when it was unhandled
 * and the policy applied (ABORT does not return), WEFT_EINVAL for a NULL
 * pointer, a bad kind or size. */
WEFT_API int weft_report_failure(const weft_failure* failure);
/* From inside a poll function about to return a failure code: a one-line
 * description of the failure, used if the task turns out to be detached
 * (copied; at most 255 bytes are kept). The C++ wrappers pass what(). */
WEFT_API void weft_task_failure_note(const char* message);
/* The handler and policy for failures reported on threads of no runtime
 * (a foreign thread waking a weft::make_waker waker, a thread-per-core
 * executor) or about tasks whose runtime was freed. policy:
 * WEFT_FAILURE_IGNORE or WEFT_FAILURE_ABORT (no runtime to shut down:
 * WEFT_EINVAL). fn NULL removes the handler. Replacing or removing it does
 * not wait for calls already running on other threads: keep ctx valid until
 * no thread that may report is left (e.g. until they are joined). */
WEFT_API int weft_failure_handler_set(weft_failure_fn fn, void* ctx, uint32_t policy);

typedef struct weft_failure_stats {
    size_t size;                            /* sizeof(weft_failure_stats), set by the caller */
    uint64_t reported;                      /* failures reported, every kind */
    uint64_t unhandled;                     /* ... that no handler took (the policy applied) */
    uint64_t by_kind[16];                   /* reported, by kind (index 0 unused; room for new kinds) */
    uint32_t shut_down;                     /* 1 once WEFT_FAILURE_SHUTDOWN closed the runtime */
    uint32_t _reserved;
} weft_failure_stats;
/* Counts for rt, or for the process-wide target when rt is NULL. */
WEFT_API int weft_failure_stats_get(const weft_runtime* rt, weft_failure_stats* out);

/* ---- helpers --------------------------------------------------------------- */
/* Spawns desc and blocks the calling non-worker thread until it finishes,
 * copying its output into output (desc->output_size bytes). Returns the
 * task's status. */
WEFT_API int weft_block_on(weft_runtime* rt, const weft_task_desc* desc, void* output);

/* A waker that wakes nothing (for polling outside any task). */
WEFT_API weft_waker weft_waker_noop(void);

/* Memory from the calling worker's pool (on other threads, from the heap
 * the same way): aligned to a cache line and a whole number of lines. Give
 * it back only with weft_free and the same size, never with free(). */
WEFT_API void* weft_alloc(size_t size);
WEFT_API void weft_free(void* p, size_t size);

#ifdef __cplusplus
}
#endif

/* The rest of the ABI, in one file per subsystem (each is self-contained but
 * meant to be reached through this header). */
#include "weft_time.h" /* clock, timers, sleep */
#include "weft_sync.h" /* semaphore, locks, notify, channels, barrier */
#include "weft_pulse.h" /* preemption: budgets, tiers, worker handoff */
#include "weft_metrics.h" /* counters, poll-time histogram, Prometheus text */
#include "weft_io.h" /* I/O: io_uring or epoll; sockets, files, buffers */
#include "weft_tpc.h" /* the thread-per-core executor and shard sets */

#endif /* WEFT_WEFT_H */
