// kernel/inject_queue.h — the runtime-wide, unbounded run queue: tasks
// spawned or woken from outside the workers, and local-queue overflow.
//
// Intrusive singly linked list through TaskHeader::queue_next under a plain
// mutex (contention is low: workers look here every 61 polls and when their
// own queue is empty). `len_` mirrors the length outside the lock so that an
// empty check costs one load. Closing is done under the same lock as pushing,
// so after close() returns no push can succeed (shutdown step 1).
#ifndef WEFT_KERNEL_INJECT_QUEUE_H
#define WEFT_KERNEL_INJECT_QUEUE_H

#include <atomic>
#include <stdint.h>

#include "../port/port.h"
#include "task.h"

namespace weft::kernel {

class InjectQueue {
public:
    // Returns false (and links nothing) when the queue is closed; the caller
    // still holds the tasks' refs.
    // Used by remote_push only (a spawn or wake from outside the workers),
    // so it also counts those (metrics).
    bool push(TaskHeader* t) {
        t->queue_next = nullptr;
        port::LockGuard g(mu_);
        if (closed_) return false;
        if (tail_) tail_->queue_next = t; else head_ = t;
        tail_ = t;
        len_.store(len_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        // Under the lock: a plain increment, read racily by snapshots.
        remote_pushes_.store(remote_pushes_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return true;
    }
    uint64_t remote_pushes() const { return remote_pushes_.load(std::memory_order_relaxed); }

    bool push_batch(TaskHeader* first, TaskHeader* last, uint32_t n) {
        port::LockGuard g(mu_);
        if (closed_) return false;
        if (tail_) tail_->queue_next = first; else head_ = first;
        tail_ = last;
        last->queue_next = nullptr;
        // relaxed store under the lock; readers of len_ only use it as a hint
        // and take the lock before trusting it. The idle protocol's SeqCst
        // RMWs (idle.h) order it against a parking worker's check.
        len_.store(len_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
        return true;
    }

    // Links first..last (n tasks) at the front: tasks that are already late
    // (expired timers, scheduler.cpp flush_fired) go before the backlog.
    bool push_front_batch(TaskHeader* first, TaskHeader* last, uint32_t n) {
        port::LockGuard g(mu_);
        if (closed_) return false;
        last->queue_next = head_;
        if (!head_) tail_ = last;
        head_ = first;
        len_.store(len_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
        return true;
    }

    TaskHeader* pop() {
        if (is_empty()) return nullptr;
        port::LockGuard g(mu_);
        return pop_locked();
    }

    // Pops up to max tasks into a list; returns the count (first in *out).
    uint32_t pop_n(TaskHeader** out, uint32_t max) {
        if (is_empty()) return 0;
        port::LockGuard g(mu_);
        uint32_t n = 0;
        while (n < max) {
            TaskHeader* t = pop_locked();
            if (!t) break;
            out[n++] = t;
        }
        return n;
    }

    bool is_empty() const { return len_.load(std::memory_order_acquire) == 0; }
    uint32_t len() const { return len_.load(std::memory_order_acquire); }

    // Shutdown step 1: refuse further pushes. Returns whether it was open.
    bool close() {
        port::LockGuard g(mu_);
        bool was = !closed_;
        closed_ = true;
        return was;
    }

private:
    TaskHeader* pop_locked() {
        TaskHeader* t = head_;
        if (!t) return nullptr;
        head_ = t->queue_next;
        if (!head_) tail_ = nullptr;
        t->queue_next = nullptr;
        len_.store(len_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
        return t;
    }

    port::Mutex mu_;
    TaskHeader* head_ = nullptr;  // guarded by mu_
    TaskHeader* tail_ = nullptr;  // guarded by mu_
    bool closed_ = false;         // guarded by mu_
    std::atomic<uint32_t> len_{0};  // written under mu_, read anywhere
    std::atomic<uint64_t> remote_pushes_{0};  // written under mu_, read anywhere
};

}  // namespace weft::kernel

#endif
