// kernel/task.h — the task header that prefixes every task's single
// allocation, and the operations on it that do not depend on a scheduler.
//
// Memory layout of one task (one allocation, from the worker pool):
//
//   [ TaskHeader (128 bytes, 16-aligned) | state: state_size bytes ]
//
// "state" is the caller's: a C task's poll/drop/output, or a C++ coroutine
// frame. The header is never moved.
//
// Who touches what:
//   state       any thread, atomically (task_state.h)
//   queue_next  the thread that holds the task's NOTIFIED ref, while the task
//               sits in a list: an inject queue's front or no-memory list
//               (under the inject mutex; its chunks store pointers and leave
//               queue_next alone), a worker's fired-timer list, a cancel chain
//   owned_*     the worker that linked it (owned_tasks.h); owned_done_next: the
//               completing thread, then that worker (its done stack)
//   join_waker  the join handle while JOIN_WAKER is clear; the runtime (read
//               only) while it is set — see the JOIN_WAKER protocol in
//               task_state.h
//   result, stage
//               the thread that owns RUNNING writes them before
//               transition_to_complete (release); readers read them after
//               observing COMPLETE (acquire)
//   join_taken  the join handle only
//   budget      the thread that owns RUNNING; budget.tier also read (relaxed)
//               by wakers (pulse.h)
//   resume_running
//               written by the runner (or the spawner) before it queues the
//               task, read by the next runner after it dequeued it (the
//               queue orders the two)
#ifndef WEFT_KERNEL_TASK_H
#define WEFT_KERNEL_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "../include/weft/weft.h"
#include "pulse.h"
#include "task_state.h"

namespace weft::kernel {

struct Shared;  // scheduler.h

enum class Stage : uint8_t {
    Future = 0,    // the future is live (never completed, not dropped)
    Finished = 1,  // completed (ready or failed): drop_output runs at dealloc
    Dropped = 2,   // drop_future ran: nothing left to release
};

enum TaskKind : uint8_t {
    TASK_MT = 0,   // the work-stealing runtime (scheduler.h)
    TASK_TPC = 1,  // a thread-per-core executor (tpc.h)
};

struct alignas(16) TaskHeader {
    TaskState state;                 // 8
    Budget budget;                   // 16  pulse.h (beside state: wakers read the tier)
    TaskHeader* queue_next;          // 8   list link (inject queue front / no-memory back, fired timers, ...)
    const weft_task_vtable* vtable;  // 8
    Shared* shared;                  // 8   the runtime that runs it
    // Multi-thread runtime tasks: the owned-task links. Thread-per-core tasks
    // (kind == TASK_TPC) never use those and keep their own fields in the
    // same bytes (kernel/tpc.h).
    union {
        TaskHeader* owned_prev;      // 8
        void* tpc_exec;              //     tpc::Executor* that runs it
        // While owned_shard == OWNED_UNBOUND (never suspended, so in no
        // list): the fork-join group it was spawned into, or nullptr
        // (weft_task_spawn_fork; t_fork_held in scheduler.cpp).
        void* fork_group;
    };
    union {
        TaskHeader* owned_next;      // 8
        uint64_t tpc_identity;       //     the waker identity (tpc.h)
    };
    union {
        TaskHeader* owned_done_next; // 8   owner's done stack (owned_tasks.h)
        uint64_t tpc_flags;          //     owner-thread state (tpc.cpp)
    };
    weft_waker join_waker;           // 16
    uint64_t id;
    uint32_t alloc_size;             // bytes of the whole allocation
    int32_t result;                  // 0, WEFT_ECANCELED or a failure code
    uint16_t owned_shard;
    Stage stage;
    uint8_t join_taken;              // JOIN_TAKEN | JOIN_OBSERVED (below)
    uint8_t orphan;                  // TASK_ORPHAN | TASK_PINNED (below): holds a ref on Shared
    uint8_t spawned;                 // the kernel owns the memory (set at spawn)
    uint8_t resume_running;          // queued while still RUNNING (spawned, or woke itself; see run_task)
    uint8_t kind;                    // TaskKind: which executor runs it (set at spawn)

    void* state_ptr() { return reinterpret_cast<char*>(this) + sizeof(TaskHeader); }
    static TaskHeader* from_state(void* state) {
        // SAFETY: every state pointer handed out by weft_task_alloc sits exactly
        // sizeof(TaskHeader) bytes after its header, in the same allocation.
        return reinterpret_cast<TaskHeader*>(static_cast<char*>(state) - sizeof(TaskHeader));
    }
};
static_assert(sizeof(TaskHeader) % 16 == 0 && sizeof(TaskHeader) <= 128, "state stays 16-aligned");
static_assert(sizeof(TaskHeader) == 112, "the header grew: every task's allocation grows with it");

// Asks for the first 256 bytes of a task about to run: its header and the
// start of its state (a coroutine frame), which the poll touches first. A
// queued task is often cold: spawned by another core, or last run
// milliseconds ago (a timer's task). Issued one task ahead, the misses overlap
// the current task's run instead of stalling the next one (`timers`: 450 ->
// 422 ns per task; the header alone gave 447). A prefetch never faults, so a
// task that a thief takes meanwhile, or one smaller than 256 bytes, is
// harmless. Asking for more lines ahead (6) helped `timers` as much as
// prefetch_task_rest below but cost yield_many 3% (its small hot tasks).
inline constexpr uint32_t PREFETCH_AHEAD_BYTES = 256;
inline void prefetch_task(const TaskHeader* t) {
    const char* p = reinterpret_cast<const char*>(t);
    for (uint32_t off = 0; off < PREFETCH_AHEAD_BYTES; off += 64) __builtin_prefetch(p + off, 1);
}
// The rest of a larger task (up to 512 bytes) when it is about to run, its
// size now known from the header: the poll then finds those lines coming
// in together instead of missing on each in turn (`timers`, 400-byte tasks:
// 399 -> 391 ns per task; yield_many unchanged). Only for a task taken from
// a queue (local, stolen, injected), which is likely cold; not for one from
// the LIFO slot or the fork stack, which this worker spawned just before
// (there the loop was 22 of skynet's ~810 instructions per task). A task
// woken into the LIFO slot (a channel's receiver, an I/O completion) or put
// on the fork stack by a handoff or a timer batch may be cold and larger
// than 256 bytes; those go without (ping_pong, whose tasks are woken so,
// measured unchanged).
inline void prefetch_task_rest(const TaskHeader* t) {
    const char* p = reinterpret_cast<const char*>(t);
    uint32_t end = t->alloc_size < 512 ? t->alloc_size : 512;
    for (uint32_t off = PREFETCH_AHEAD_BYTES; off < end; off += 64) __builtin_prefetch(p + off, 1);
}

// orphan bits. Either one means the task holds a reference on its Shared
// (holders), released by dealloc.
inline constexpr uint8_t TASK_ORPHAN = 1;  // its runtime was freed while it was alive
inline constexpr uint8_t TASK_PINNED = 2;  // it failed with a join handle left: the
                                           // handle may report it after the runtime
                                           // is freed (failure.h)

// join_taken bits (the join handle's thread only).
inline constexpr uint8_t JOIN_TAKEN = 1;     // weft_join_take copied the output
inline constexpr uint8_t JOIN_OBSERVED = 2;  // the handle read the final status
// A failure the join handle is dropped without having read (failure.h): it
// is reported then, since the completion saw a handle and reported nothing.
inline bool failure_unobserved(const TaskHeader* t) {
    return t->result < 0 && t->result != WEFT_ECANCELED && !(t->join_taken & JOIN_OBSERVED);
}

// The waker of a task: data is the TaskHeader*.
extern const weft_waker_vtable task_waker_vtable;

inline weft_waker task_waker(TaskHeader* t) { return weft_waker{t, &task_waker_vtable}; }

}  // namespace weft::kernel

#endif
