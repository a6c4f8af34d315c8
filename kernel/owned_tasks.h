// kernel/owned_tasks.h — every suspended task of a runtime, so that shutdown
// can find and drop the tasks that no run queue holds.
//
// At shutdown a live task is in one of three places: in a run queue (LIFO
// slot, fork stack, local or inject queue), running on a worker (its poll
// returns before the worker is joined), or suspended, waiting for a wake that
// may never come. The drains find the first kind and the workers finish the
// second; only suspended tasks need a list. So a task is linked lazily: the
// worker that polled it links it into its own list just before the task's
// first transition to idle, while that worker still owns RUNNING (so nobody
// can complete it concurrently). A task that completes in its first poll —
// most leaf tasks — never touches a list. Until then its owned_shard is
// OWNED_UNBOUND and the list's reference is simply held (released at
// completion, or by the drain that cancels it).
//
// A linked task lives in its linking worker W's list, touched only by W
// (plain pointers, no atomics). If it completes on W, W unlinks it at once.
// If it completes elsewhere (it was stolen or woken onto another worker), the
// completing thread pushes it onto W's `done` stack (lock-free, one CAS) and
// W unlinks it later (reap(), before parking and every INJECT_INTERVAL
// polls). Until then the list's reference keeps the task's memory alive.
//
// Closing (shutdown step 1): spawns check `owned_closed` (local) or the
// inject queue's closed flag (remote). A worker may still link a task after
// close; that is harmless: the lists are walked only after every worker has
// been joined (step 5), and that walk sees everything the workers linked
// (thread join orders it).
//
// Memory orderings: the `done` stack push is a release CAS, reap's exchange
// is acquire, so the owner sees the completer's writes (result, stage) before
// it releases the reference that may free the task.
#ifndef WEFT_KERNEL_OWNED_TASKS_H
#define WEFT_KERNEL_OWNED_TASKS_H

#include <atomic>
#include <stdint.h>

#include "../arch/padding.h"
#include "../port/port.h"
#include "task.h"

namespace weft::kernel {

inline constexpr uint16_t OWNED_UNBOUND = 0xFFFF;   // never suspended: in no list yet
inline constexpr uint16_t OWNED_UNLINKED = 0xFFFE;  // unlinked after completion
inline constexpr uint16_t OWNED_LOOSE = 0xFFFD;     // in Shared::loose (no worker's list; pulse)

// One intrusive doubly linked list (owned_prev / owned_next).
struct OwnedList {
    TaskHeader* head = nullptr;

    void push(TaskHeader* t) {
        t->owned_prev = nullptr;
        t->owned_next = head;
        if (head) head->owned_prev = t;
        head = t;
    }
    void unlink(TaskHeader* t) {
        if (t->owned_prev) t->owned_prev->owned_next = t->owned_next; else head = t->owned_next;
        if (t->owned_next) t->owned_next->owned_prev = t->owned_prev;
        t->owned_prev = t->owned_next = nullptr;
    }
    TaskHeader* pop() {
        TaskHeader* t = head;
        if (t) unlink(t);
        return t;
    }
};

// A worker's part: the list (owner only) and the stack of its tasks that
// completed on other threads (pushed by anyone, drained by the owner).
struct WorkerOwned {
    OwnedList list;                                                // owner only
    alignas(WEFT_CACHE_LINE) std::atomic<TaskHeader*> done{nullptr};  // MPSC stack via owned_done_next

    void push_done(TaskHeader* t) {
        TaskHeader* head = done.load(std::memory_order_relaxed);
        do {
            t->owned_done_next = head;
        } while (!done.compare_exchange_weak(head, t, std::memory_order_release, std::memory_order_relaxed));
    }
    // Owner only: unlinks every task completed elsewhere; returns them as a
    // list through owned_done_next (the caller releases their references).
    TaskHeader* take_done() {
        if (!done.load(std::memory_order_relaxed)) return nullptr;
        TaskHeader* l = done.exchange(nullptr, std::memory_order_acquire);
        for (TaskHeader* t = l; t; t = t->owned_done_next) {
            list.unlink(t);
            t->owned_shard = OWNED_UNLINKED;
        }
        return l;
    }
};

}  // namespace weft::kernel

#endif
