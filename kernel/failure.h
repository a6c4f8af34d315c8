// kernel/failure.h — failure containment: where a failure of user code goes
// when there is nobody to return it to (weft.h, "failures", has the three
// layers from the user's side).
//
// The core is built without exceptions, so it never catches anything: every
// failure reaches it as a value. A poll function's failure is a negative
// code (layer 1: the join handle reports it); a failure in a callback that
// returns nothing (a drop function, a waker, a hook) is caught by the C++
// wrapper around that callback and handed to weft_report_failure. Here a
// report is counted, offered to the target's handler and, when no handler
// takes it, the target's policy applies (layer 3).
//
// Targets. A report goes to the runtime whose thread makes it: a worker,
// spare, isolation or monitor thread of that runtime, or the thread running
// weft_runtime_free's final drains (t_runtime, t_failure_runtime). Drops
// and cancellations run on those threads, so what a drop function reports
// lands on the task's runtime. The kernel's own reports about a task go to
// its runtime while it lives (failure_target_of): a failed task with a join
// handle left pins its Shared (TASK_PINNED, one `holders` reference until
// the task is freed), so the handle can ask whether the runtime was freed
// (Shared::freed) and report to the process-wide target if so. Any other
// thread (a foreign thread, a thread-per-core executor) reports to the
// process-wide target. A runtime's handler and policy are fixed before its
// handle is returned; the process-wide ones change under a mutex.
//
// Shutting down by policy (WEFT_FAILURE_SHUTDOWN): `failed` is raised once;
// spawns are refused from then on (owned_closed, which every spawn reads),
// and every worker cancels the tasks it owns (cancel_owned: its owned list
// and the loose list, each cancelled as weft_join_abort does) whenever it is
// about to park and at every fairness tick, so a task that was queued when
// the flag rose and suspends later is caught on the next pass. Parked
// workers are unparked to make their first pass. Nothing is freed here:
// weft_runtime_free still runs its steps as usual.
#ifndef WEFT_KERNEL_FAILURE_H
#define WEFT_KERNEL_FAILURE_H

#include <atomic>
#include <stdint.h>

#include "../include/weft/weft.h"

namespace weft::kernel {

struct Shared;
struct Worker;
struct TaskHeader;

// A report target: a runtime's (in Shared) or the process's.
struct FailureTarget {
    weft_failure_fn fn = nullptr;
    void* ctx = nullptr;
    uint32_t policy = WEFT_FAILURE_IGNORE;
    // Counters: failures are rare, so plain RMWs (relaxed: statistics only).
    std::atomic<uint64_t> reported{0};
    std::atomic<uint64_t> unhandled{0};
    std::atomic<uint64_t> by_kind[WEFT_FAILURE_KINDS] = {};
    std::atomic<uint32_t> shut_down{0};
};

// The runtime whose weft_runtime_free is draining on this thread (set for
// the duration of its steps 3-5), or whose monitor thread this is, or nullptr.
extern constinit __attribute__((tls_model("initial-exec"))) thread_local Shared* t_failure_runtime;

// Reports f to `to`, or (nullptr) to the target of the calling thread (see
// above). 0: a handler took it; 1: unhandled, the policy applied.
int report_failure(const weft_failure& f, Shared* to = nullptr);
// The runtime a task's failures go to, when it is known to be alive: the
// task's own if this thread is one of its threads (or is freeing it), or if
// the task is pinned (it failed with a handle left: its Shared stays
// allocated) and the runtime was not freed yet. Otherwise nullptr: the
// thread's target. Never a freed runtime. Defined in scheduler.h.
inline Shared* failure_target_of(const TaskHeader* t);

// Reports WEFT_FAILURE_TASK for task_id (code, message: NULL for the
// code's description) to `to` (nullptr: the thread's target).
void report_task_failure(Shared* to, uint64_t task_id, int code, const char* message);
// Layer 1 for a task completed as failed with no join handle left: reports
// WEFT_FAILURE_TASK with the message its poll noted (weft_task_failure_note)
// or the code's description. `to` and task_id were read from the task
// before its completion was published (it may be gone by now).
void report_detached_failure(Shared* to, uint64_t task_id, int code);
// Layer 1 for a failed task whose join handle is freed without having read
// the outcome (join_free): reports WEFT_FAILURE_TASK. The caller holds the
// handle's reference and has seen COMPLETE.
void report_unread_failure(const TaskHeader* t);
// WEFT_FAILURE_SHUTDOWN: raises sh->failed (once) and unparks every worker.
void failure_shutdown(Shared* sh);
// A worker of a failed runtime: cancels every task it owns (and the loose
// list's). Owner thread only.
void cancel_owned(Worker* w);

}  // namespace weft::kernel

#endif
