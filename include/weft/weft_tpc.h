/* weft_tpc.h — the thread-per-core executor (reached through weft.h).
 *
 * A second executor, for services that shard work by core: one thread, one
 * ready queue and one io_uring per executor, no work stealing, and tasks that
 * need not be thread-safe (a task is only ever polled on its executor's
 * thread). Tasks and wakers have the same shapes as on the multi-thread
 * runtime: weft_task_desc / weft_task_alloc tasks, weft_join handles,
 * weft_waker wakers. Code written against those moves between the two.
 *
 * Two ways to run executors:
 *   - weft_tpc_new(): an executor owned by the calling thread, driven by
 *     weft_tpc_block_on() on that thread;
 *   - weft_shards_new(): N executors, each on its own thread (pinned to a CPU
 *     on request), running until weft_shards_free(); weft_shards_get() gives
 *     each one's weft_tpc* so any thread can spawn onto a chosen shard.
 *
 * Wakers are safe to use from any thread and stay safe forever: a waker's
 * data is the task's identity (executor slot, task index, generation), not a
 * pointer. A wake on the executor's own thread schedules the task directly
 * (no atomic read-modify-write); a wake from any other thread pushes the
 * identity onto the executor's lock-free queue and, only when the executor
 * is parked, interrupts its io_uring wait (eventfd write, or an
 * IORING_OP_MSG_RING from a sibling shard). A wake for a task that finished,
 * whose index was reused, or whose executor is gone is recognised by its
 * generation and ignored. Cloning and dropping a waker cost nothing.
 *
 * Join handles of tasks on this executor belong to the executor's thread:
 * poll, take, abort and free them there (weft_join_wait is refused: it would
 * block the only thread that can finish the task). A task spawned onto an
 * executor from another thread is detached (pass join = NULL); get results
 * back through a channel (weft_sync.h), whose wakers work across executors.
 *
 * Timers work here: weft_timer_init(t, NULL) on an executor's thread binds
 * the timer to that executor's own wheel (no lock), and its park sleeps no
 * longer than the next deadline; weft::sleep, weft::timeout and
 * weft::interval (time.hpp) work unchanged. weft_spawn / weft_task_spawn
 * with rt NULL spawn onto the calling thread's executor, so weft::spawn and
 * weft::ForkJoin work here too.
 *
 * I/O works here: weft_io_* (weft_io.h) with rt NULL on an executor's
 * thread creates an operation on that executor's own driver: its io_uring
 * is the ring the executor parks in (one ring per executor), or, where
 * io_uring cannot be used, an epoll set of its own (the same choice and the
 * same WEFT_IO variable as a runtime's). Completions are reaped by the
 * executor's thread and wake the task that waits, with no lock and no
 * cross-thread traffic; the C++ wrappers (io.hpp: TcpListener, TcpStream,
 * UdpSocket, fs::File) pass rt NULL by default and so work unchanged. An
 * operation is best polled on its executor's thread; polled (or freed)
 * elsewhere it is handed to the executor through a queue, which the
 * executor serves while it runs (a weft_tpc_new executor: inside
 * weft_tpc_block_on). Freeing the
 * executor cancels what the kernel still holds and waits for the answers;
 * an operation that outlives it completes with WEFT_ECLOSED.
 *
 * Not on this executor (yet): the preemption budget (weft_budget_consume
 * always allows). */
#ifndef WEFT_WEFT_TPC_H
#define WEFT_WEFT_TPC_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_tpc weft_tpc;
typedef struct weft_shards weft_shards;

/* How a wake from another thread interrupts a parked executor. */
#define WEFT_TPC_WAKE_DEFAULT 0  /* the faster of the two where both work (see bench/RESULTS.md) */
#define WEFT_TPC_WAKE_EVENTFD 1  /* write the executor's eventfd, read by an SQE in its ring */
#define WEFT_TPC_WAKE_MSG_RING 2 /* between shards of one set: IORING_OP_MSG_RING from the
                                  * waking shard's ring (other threads still use the eventfd) */

typedef struct weft_tpc_config {
    size_t size;          /* sizeof(weft_tpc_config) */
    uint32_t shards;      /* weft_shards_new: executors (threads); 0 = one per CPU. Ignored by weft_tpc_new */
    uint32_t wake;        /* WEFT_TPC_WAKE_* */
    int32_t pin;          /* weft_shards_new: 1 = pin shard i to the i-th CPU this process may use */
    uint32_t flags;       /* WEFT_TPC_* flags below, or 0 */
    const char* name;     /* thread name prefix, or NULL for "weft-tpc" */
} weft_tpc_config;

/* An idle executor watches its queues for 50 us before it sleeps, so a wake
 * from another thread soon after usually costs no system call and no
 * context switch. This flag makes it sleep at once (less CPU burnt, slower
 * cross-thread wakes). */
#define WEFT_TPC_NO_SPIN 1u

/* Fills *cfg with the defaults (size set, one shard per CPU, no pinning). */
WEFT_API void weft_tpc_config_init(weft_tpc_config* cfg);

/* ---- one executor on the calling thread ---------------------------------- */
/* Creates an executor owned by the calling thread (at most one per thread;
 * a second gives WEFT_EALREADY). cfg may be NULL. Its tasks run only inside
 * weft_tpc_block_on on this thread. */
WEFT_API int weft_tpc_new(const weft_tpc_config* cfg, weft_tpc** out);
/* Drops every task still queued or suspended (each drop function runs
 * exactly once) and frees the executor. Owner thread only, outside
 * weft_tpc_block_on (WEFT_EDEADLK from inside a task; WEFT_EINVAL from
 * another thread). Join handles stay valid (WEFT_ECANCELED) until freed. */
WEFT_API int weft_tpc_free(weft_tpc* ex);
/* Spawns desc and runs the executor on the calling (owner) thread until that
 * task finishes; copies its output (desc->output_size bytes) into output.
 * Other tasks keep their state between calls. Returns the task's status. */
WEFT_API int weft_tpc_block_on(weft_tpc* ex, const weft_task_desc* desc, void* output);
/* weft_tpc_block_on for a raw task (weft_task_alloc); *join receives the
 * handle (read the result with weft_join_state, then free it). */
WEFT_API int weft_tpc_block_on_task(weft_tpc* ex, void* state, weft_join** join);

/* ---- spawning ------------------------------------------------------------- */
/* Spawns onto ex (NULL: the executor of the calling thread). On ex's own
 * thread this is the local path: no atomic read-modify-write, no lock; join
 * may receive a handle. From any other thread the task is handed over
 * through ex's lock-free queue and join must be NULL (WEFT_EINVAL
 * otherwise). On failure the task's drop function has already run;
 * WEFT_ECLOSED when ex is shutting down. */
WEFT_API int weft_tpc_spawn(weft_tpc* ex, const weft_task_desc* desc, weft_join** join);
/* The same for a raw task made by weft_task_alloc (the C++ wrappers). */
WEFT_API int weft_tpc_task_spawn(weft_tpc* ex, void* state, weft_join** join);

/* The executor whose task (or block_on) is running on this thread, or NULL. */
WEFT_API weft_tpc* weft_tpc_current(void);
/* ex's shard index in its set (0 for a weft_tpc_new executor). */
WEFT_API uint32_t weft_tpc_index(const weft_tpc* ex);

/* ---- shard sets ----------------------------------------------------------- */
/* Starts cfg->shards executors, one thread each, all running until
 * weft_shards_free. */
WEFT_API int weft_shards_new(const weft_tpc_config* cfg, weft_shards** out);
/* Stops every shard: spawning fails from now on, each shard drops its
 * remaining tasks exactly once, every thread is joined. Must not be called
 * from a shard of the same set (WEFT_EDEADLK). NULL is a no-op. */
WEFT_API int weft_shards_free(weft_shards* set);
WEFT_API uint32_t weft_shards_count(const weft_shards* set);
/* Shard i's executor (valid until weft_shards_free), or NULL. */
WEFT_API weft_tpc* weft_shards_get(weft_shards* set, uint32_t i);

/* ---- observability --------------------------------------------------------- */
typedef struct weft_tpc_metrics {
    size_t size;              /* sizeof(weft_tpc_metrics), set by the caller */
    uint64_t polls;           /* task polls */
    uint64_t spawned_local;   /* spawns on the executor's own thread */
    uint64_t spawned_remote;  /* spawns handed over from other threads */
    uint64_t wakes_local;     /* wakes on the executor's thread that scheduled a task */
    uint64_t wakes_remote;    /* identities taken from the cross-thread queue */
    uint64_t wakes_stale;     /* of those: task gone or index reused (ignored) */
    uint64_t parks;           /* times the executor went to sleep */
    uint64_t signals;         /* cross-thread wakes that had to interrupt a park
                               * (eventfd writes + MSG_RINGs sent to this executor);
                               * the other remote wakes cost no system call */
    uint64_t msg_ring_signals;/* of those: IORING_OP_MSG_RING */
    uint32_t live_tasks;      /* tasks spawned and not yet finished */
    uint32_t uses_ring;       /* 1: parks in io_uring; 0: poll(2) on the eventfd */
} weft_tpc_metrics;
/* Counters of ex, readable from any thread while it runs (each counter exact
 * for its executor, the set not one snapshot). */
WEFT_API int weft_tpc_get_metrics(const weft_tpc* ex, weft_tpc_metrics* out);
/* The executor's I/O driver: its backend, why, and its counters (out->size
 * = sizeof(weft_io_status)). Any thread, while ex lives. */
WEFT_API int weft_tpc_io_status(const weft_tpc* ex, weft_io_status* out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_WEFT_TPC_H */
