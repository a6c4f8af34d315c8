// kernel/owned_tasks.h — every live (not yet completed) task of a runtime, so
// that shutdown can find and drop the suspended ones.
//
// Sharded: SHARDS intrusive doubly linked lists, each under its own mutex on
// its own cache line; a task lives in shard (id % SHARDS). A task is linked at
// spawn (holding the list's reference) and unlinked when it completes.
// Closing (shutdown step 1) happens under every shard's lock, so after it no
// spawn can link a task; spawn checks `closed` under the same lock.
#ifndef WEFT_KERNEL_OWNED_TASKS_H
#define WEFT_KERNEL_OWNED_TASKS_H

#include <stdint.h>

#include "../arch/padding.h"
#include "../port/port.h"
#include "task.h"

namespace weft::kernel {

class OwnedTasks {
public:
    static constexpr uint32_t SHARDS = 64;

    // Returns false when closed (the task is not linked).
    bool bind(TaskHeader* t) {
        Shard& s = *shards_[t->owned_shard = (uint16_t)(t->id % SHARDS)];
        port::LockGuard g(s.mu);
        if (s.closed) return false;
        t->owned_prev = nullptr;
        t->owned_next = s.head;
        if (s.head) s.head->owned_prev = t;
        s.head = t;
        return true;
    }

    // Unlinks t if it is linked. Returns whether it was (and so whether the
    // caller now holds the list's reference).
    bool remove(TaskHeader* t) {
        Shard& s = *shards_[t->owned_shard];
        port::LockGuard g(s.mu);
        if (!t->owned_prev && s.head != t) return false;
        if (t->owned_prev) t->owned_prev->owned_next = t->owned_next; else s.head = t->owned_next;
        if (t->owned_next) t->owned_next->owned_prev = t->owned_prev;
        t->owned_prev = t->owned_next = nullptr;
        return true;
    }

    void close() {
        for (uint32_t i = 0; i < SHARDS; i++) {
            port::LockGuard g(shards_[i]->mu);
            shards_[i]->closed = true;
        }
    }

    // Unlinks and returns one task, or nullptr when all shards are empty.
    TaskHeader* pop_any() {
        for (uint32_t i = 0; i < SHARDS; i++) {
            Shard& s = *shards_[i];
            port::LockGuard g(s.mu);
            TaskHeader* t = s.head;
            if (!t) continue;
            s.head = t->owned_next;
            if (s.head) s.head->owned_prev = nullptr;
            t->owned_prev = t->owned_next = nullptr;
            return t;
        }
        return nullptr;
    }

private:
    struct Shard {
        port::Mutex mu;
        TaskHeader* head = nullptr;  // guarded by mu
        bool closed = false;         // guarded by mu
    };
    arch::CachePadded<Shard> shards_[SHARDS];
};

}  // namespace weft::kernel

#endif
