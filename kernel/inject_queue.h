// kernel/inject_queue.h — the runtime-wide, unbounded run queue: tasks
// spawned or woken from outside the workers, and local-queue overflow.
//
// Under a plain mutex (contention is low: workers look here every 61 polls
// and when their own queue is empty). `len_` mirrors the length outside the
// lock so that an empty check costs one load. Closing is done under the same
// lock as pushing, so after close() returns no push can succeed (shutdown
// step 1).
//
// Storage, in pop order:
//   front_   an intrusive list (TaskHeader::queue_next), used only when a
//            chunk cannot be allocated for a push to the front;
//   chunks   a deque of task pointers in 4 KiB chunks (510 each): pushes
//            to the back fill the last chunk upwards, pushes to the front
//            (expired timers' tasks, which are late already) fill the first
//            one downwards. Chunks are allocated as the queue grows and
//            freed as it drains; the last chunk stays in place when it
//            empties and one more is kept as a spare, so a queue that fills
//            and empties again allocates nothing (8 KiB kept at most).
//            malloc runs under the lock, once per 510 tasks of growth; free
//            runs after the lock is released;
//   back_    an intrusive list, FIFO, used only when a chunk cannot be
//            allocated: the queue never refuses a task for want of memory.
// A push goes to the chunks only while back_ is empty, and pops take back_
// only once the chunks are empty, so every task in a chunk is older than
// every task in back_: the whole is FIFO (front_ aside).
// Why pointers, not only a list: a local queue overflows 129 tasks at a
// time, all written by the spawning worker a moment ago, and the worker that
// pops them runs on another core. With a list the popper had to load each
// task's queue_next to find the next one: a chain of dependent cache misses
// (one per task, about 100 ns here), taken under the lock. From a chunk it
// copies pointers; each task's header is first touched when it runs
// (spawn_many_local: 133 -> 59 ns per task; pull_from_inject had been 26% of
// its cycles). The same held for the front, a list until expired timers'
// tasks, pushed there by one worker and popped by another, made pop_n 5% of
// the `timers` workload's cycles.
#ifndef WEFT_KERNEL_INJECT_QUEUE_H
#define WEFT_KERNEL_INJECT_QUEUE_H

#include <atomic>
#include <stdint.h>

#include "../port/port.h"
#include "task.h"

namespace weft::kernel {

// Where chunks come from: libc, through port/. Tests substitute an
// allocator that fails, to reach the back_ list.
struct PortChunkMemory {
    static void* alloc(size_t size) { return port::alloc(size); }
    static void free(void* p) { port::free(p); }
};

template <class Memory>
class InjectQueueWith {
public:
    InjectQueueWith() = default;
    InjectQueueWith(const InjectQueueWith&) = delete;
    InjectQueueWith& operator=(const InjectQueueWith&) = delete;
    // The owner drains the queue first (shutdown step 4); this frees the
    // chunks only.
    ~InjectQueueWith() {
        while (Chunk* c = first_) {
            first_ = c->next;
            Memory::free(c);
        }
        if (spare_) Memory::free(spare_);
    }

    // Returns false (and takes nothing) when the queue is closed; the caller
    // still holds the task's ref.
    // Used by remote_push only (a spawn or wake from outside the workers),
    // so it also counts those (metrics).
    bool push(TaskHeader* t) {
        port::LockGuard g(mu_);
        if (closed_) return false;
        push_back_locked(&t, 1);
        // Under the lock: a plain increment, read racily by snapshots.
        remote_pushes_.store(remote_pushes_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return true;
    }
    uint64_t remote_pushes() const { return remote_pushes_.load(std::memory_order_relaxed); }

    // Appends tasks[0..n) in order. Returns false (and takes nothing) when
    // closed.
    bool push_batch(TaskHeader* const* tasks, uint32_t n) {
        port::LockGuard g(mu_);
        if (closed_) return false;
        push_back_locked(tasks, n);
        return true;
    }

    // Puts tasks[0..n) at the front, in that order (tasks[0] is popped
    // first, before anything queued earlier): tasks that are already late
    // (expired timers, scheduler.cpp flush_fired) go before the backlog.
    // Returns false (and takes nothing) when closed.
    bool push_front_batch(TaskHeader* const* tasks, uint32_t n) {
        port::LockGuard g(mu_);
        if (closed_) return false;
        push_front_locked(tasks, n);
        return true;
    }

    // Pops one task, or nullptr.
    TaskHeader* pop() {
        TaskHeader* t;
        return pop_n(&t, 1) ? t : nullptr;
    }

    // Pops up to max tasks into out (oldest first); returns the count.
    uint32_t pop_n(TaskHeader** out, uint32_t max) {
        if (is_empty()) return 0;
        Chunk* unused = nullptr;  // drained chunks beyond the spare, linked through next
        uint32_t n;
        {
            port::LockGuard g(mu_);
            n = pop_n_locked(out, max, &unused);
        }
        while (Chunk* c = unused) {
            unused = c->next;
            Memory::free(c);
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

    // Tests: chunks held (including the spare), and tasks in back_.
    uint32_t chunks_for_test() {
        port::LockGuard g(mu_);
        uint32_t n = spare_ ? 1 : 0;
        for (Chunk* c = first_; c; c = c->next) n++;
        return n;
    }
    uint32_t listed_for_test() {
        port::LockGuard g(mu_);
        uint32_t n = 0;
        for (TaskHeader* t = back_head_; t; t = t->queue_next) n++;
        return n;
    }

    static constexpr uint32_t CHUNK_SLOTS = 510;  // a chunk is 4 KiB

private:
    struct Chunk {
        Chunk* next;
        uint32_t head;  // next slot to pop
        uint32_t tail;  // next slot to fill
        TaskHeader* slots[CHUNK_SLOTS];
    };
    static_assert(sizeof(Chunk) == 4096, "a chunk is one page");

    // relaxed store under the lock; readers of len_ only use it as a hint
    // and take the lock before trusting it. The idle protocol's SeqCst RMWs
    // (idle.h) order it against a parking worker's check.
    void add_len(uint32_t n) { len_.store(len_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }

    // The spare chunk, or a new one; nullptr when none can be allocated.
    Chunk* new_chunk() {
        Chunk* c = spare_;
        if (c) {
            spare_ = nullptr;
            return c;
        }
        return static_cast<Chunk*>(Memory::alloc(sizeof(Chunk)));
    }

    // A chunk with room at the end of the chunk deque, or nullptr when none
    // can be allocated.
    Chunk* chunk_with_room() {
        if (last_ && last_->tail < CHUNK_SLOTS) return last_;
        Chunk* c = new_chunk();
        if (!c) return nullptr;
        c->next = nullptr;
        c->head = c->tail = 0;
        if (last_) last_->next = c; else first_ = c;
        last_ = c;
        return c;
    }

    void push_back_locked(TaskHeader* const* tasks, uint32_t n) {
        add_len(n);
        uint32_t i = 0;
        // The chunks keep FIFO order only while back_ is empty (see top).
        while (i < n && !back_head_) {
            Chunk* c = chunk_with_room();
            if (!c) break;
            uint32_t k = CHUNK_SLOTS - c->tail;
            if (k > n - i) k = n - i;
            for (uint32_t j = 0; j < k; j++) c->slots[c->tail + j] = tasks[i + j];
            c->tail += k;
            i += k;
        }
        for (; i < n; i++) {
            TaskHeader* t = tasks[i];
            t->queue_next = nullptr;
            if (back_tail_) back_tail_->queue_next = t; else back_head_ = t;
            back_tail_ = t;
        }
    }

    // Front pushes fill the first chunk downwards, below its head (the
    // slots there were popped already), or a new chunk prepended with its
    // head at the end. Like back_ for pushes at the back, front_ takes them
    // only when no chunk can be had, and while it holds tasks every front
    // push goes there too: front_ is popped first, so it must only ever hold
    // tasks pushed after those at the chunks' front (the whole stays in
    // order: InjectQueueModel).
    void push_front_locked(TaskHeader* const* tasks, uint32_t n) {
        add_len(n);
        uint32_t i = n;  // tasks[i..n) are placed
        while (i > 0 && !front_) {
            Chunk* c = first_;
            if (c && c->head == c->tail) c->head = c->tail = CHUNK_SLOTS;  // empty: all room is below
            if (!c || c->head == 0) {
                c = chunk_for_front();
                if (!c) break;
            }
            while (i > 0 && c->head > 0) c->slots[--c->head] = tasks[--i];
        }
        while (i > 0) {
            TaskHeader* t = tasks[--i];
            t->queue_next = front_;
            front_ = t;
        }
    }

    // A new chunk before first_, empty with all its room below the head, or
    // nullptr when none can be allocated.
    Chunk* chunk_for_front() {
        Chunk* c = new_chunk();
        if (!c) return nullptr;
        c->head = c->tail = CHUNK_SLOTS;
        c->next = first_;
        first_ = c;
        if (!last_) last_ = c;
        return c;
    }

    // Unlinks the first task of a list through queue_next.
    static TaskHeader* take_first(TaskHeader*& head) {
        TaskHeader* t = head;
        head = t->queue_next;
        t->queue_next = nullptr;
        return t;
    }

    // Chunks drained while a spare is already kept are linked onto *unused,
    // for the caller to free after unlocking.
    uint32_t pop_n_locked(TaskHeader** out, uint32_t max, Chunk** unused) {
        uint32_t n = 0;
        while (n < max && front_) out[n++] = take_first(front_);
        while (n < max && first_) {
            Chunk* c = first_;
            while (n < max && c->head < c->tail) out[n++] = c->slots[c->head++];
            if (c->head < c->tail) break;  // max reached
            if (c == last_) {
                c->head = c->tail = 0;  // empty: reuse it in place
                break;
            }
            first_ = c->next;
            if (spare_) {
                c->next = *unused;
                *unused = c;
            } else {
                spare_ = c;
            }
        }
        while (n < max && back_head_) {
            out[n++] = take_first(back_head_);
            if (!back_head_) back_tail_ = nullptr;
        }
        len_.store(len_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
        return n;
    }

    port::Mutex mu_;
    // guarded by mu_:
    TaskHeader* front_ = nullptr;
    Chunk* first_ = nullptr;  // oldest chunk
    Chunk* last_ = nullptr;   // newest chunk, where pushes go
    Chunk* spare_ = nullptr;  // an emptied chunk kept for the next growth
    TaskHeader* back_head_ = nullptr;
    TaskHeader* back_tail_ = nullptr;
    bool closed_ = false;
    std::atomic<uint32_t> len_{0};            // written under mu_, read anywhere
    std::atomic<uint64_t> remote_pushes_{0};  // written under mu_, read anywhere
};

using InjectQueue = InjectQueueWith<PortChunkMemory>;

}  // namespace weft::kernel

#endif
