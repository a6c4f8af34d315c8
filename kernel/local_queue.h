// kernel/local_queue.h — a worker's bounded run queue: one producer (the
// owning worker pushes and pops at either end it owns), many stealers.
//
// Layout. A ring of CAP task pointers (CAP a power of two, 256 in the
// runtime; tests shrink it to 4 to reach wrap-around and overflow cases).
//
//   head  (64-bit atomic, concurrently updated by the owner and stealers)
//         packs two 32-bit indices: the high half is the *steal* head, the
//         low half is the *real* head.
//           steal == real : nobody is stealing.
//           steal != real : a stealer has claimed [steal, real) and is
//                           copying those slots out; the owner must not
//                           overwrite them, and no second stealer may start.
//         Indices are 32 bits though the ring has 256 slots so that a head
//         value cannot repeat (ABA) during one stealer's CAS window unless
//         the owner pushes 2^32 tasks meanwhile.
//   tail  (32-bit atomic, written only by the owner, read by stealers).
//
// Orderings. The owner writes a slot (relaxed) and then tail (release);
// a stealer reads tail (acquire) before reading slots, so it sees the slot
// writes. A stealer's claim CAS on head (acq_rel) orders its slot reads after
// the owner's last writes to those slots (the owner only reuses a slot after
// seeing head advance past it, acquire). Slots are atomics with relaxed
// access so racing reads are defined behaviour (the claim protocol makes the
// value that is used the right one).
//
// Overflow: when the ring is full, the owner moves half of it plus the new
// task to the inject queue in one batch (one lock). A push during a steal
// (ring full, steal != real) sends just the task to the inject queue.
//
// Covered by tests/test_local_queue.cpp (wrap-around seam, overflow, steal
// races under many threads).
// Model-checked by kernel/local_queue.pml (SPIN; tests/check_models.sh).
#ifndef WEFT_KERNEL_LOCAL_QUEUE_H
#define WEFT_KERNEL_LOCAL_QUEUE_H

#include <atomic>
#include <stdint.h>

#include "../arch/padding.h"
#include "task.h"

namespace weft::kernel {

template <uint32_t CAP>
class LocalQueue {
    static_assert(CAP >= 4 && (CAP & (CAP - 1)) == 0, "capacity is a power of two");
    static constexpr uint32_t MASK = CAP - 1;

public:
    static constexpr uint32_t capacity = CAP;

    LocalQueue() { reset_for_test(0); }

    // Test seam: start every index at `start` (e.g. near 2^32 to exercise
    // wrap-around). Only valid while the queue is empty and unshared.
    void reset_for_test(uint32_t start) {
        head_.store(pack(start, start), std::memory_order_relaxed);
        tail_.store(start, std::memory_order_relaxed);
        for (uint32_t i = 0; i < CAP; i++) buffer_[i].store(nullptr, std::memory_order_relaxed);
    }

    // Owner only. Returns the number of tasks moved to the sink (0 normally).
    // Sink has push_batch(tasks, n): an array of n tasks, oldest first.
    template <class Sink>
    inline __attribute__((always_inline)) uint32_t push_back(TaskHeader* task, Sink& sink) {
        // Fast path: room in the ring (the owner is the only writer of tail).
        uint32_t steal = steal_of(head_.load(std::memory_order_acquire));
        uint32_t tail = tail_.load(std::memory_order_relaxed);
        if (tail - steal < CAP) {
            buffer_[tail & MASK].store(task, std::memory_order_relaxed);
            tail_.store(tail + 1, std::memory_order_release);
            return 0;
        }
        return push_back_slow(task, sink);
    }

private:
    template <class Sink>
    __attribute__((noinline)) uint32_t push_back_slow(TaskHeader* task, Sink& sink) {
        for (;;) {
            uint64_t head = head_.load(std::memory_order_acquire);
            uint32_t steal = steal_of(head);
            uint32_t real = real_of(head);
            // safety: the owner is the only writer of tail.
            uint32_t tail = tail_.load(std::memory_order_relaxed);
            if (tail - steal < CAP) {
                buffer_[tail & MASK].store(task, std::memory_order_relaxed);
                tail_.store(tail + 1, std::memory_order_release);
                return 0;
            }
            if (steal != real) {
                // A stealer is about to free half the ring; do not wait for it.
                sink.push_batch(&task, 1);
                return 1;
            }
            uint32_t moved = push_overflow(task, real, tail, sink);
            if (moved) return moved;
            // A stealer got in between; the ring has room now. Retry.
        }
    }

public:
    // Owner only.
    TaskHeader* pop() {
        uint64_t head = head_.load(std::memory_order_acquire);
        uint32_t idx;
        for (;;) {
            uint32_t steal = steal_of(head);
            uint32_t real = real_of(head);
            uint32_t tail = tail_.load(std::memory_order_relaxed);
            if (real == tail) return nullptr;
            uint32_t next_real = real + 1;
            // When nobody steals, both halves move together.
            uint64_t next = steal == real ? pack(next_real, next_real) : pack(steal, next_real);
            if (head_.compare_exchange_weak(head, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
                idx = real;
                // The next task, for its run (task.h).
                if (next_real != tail) prefetch_task(buffer_[next_real & MASK].load(std::memory_order_relaxed));
                break;
            }
        }
        return buffer_[idx & MASK].load(std::memory_order_relaxed);
    }

    // Called by the owner of `dst` (a different queue): moves half of this
    // queue's tasks into dst and returns one of them to run, or nullptr.
    TaskHeader* steal_into(LocalQueue& dst, uint32_t* stolen_out = nullptr) {
        uint32_t dst_tail = dst.tail_.load(std::memory_order_relaxed);
        uint32_t dst_steal = steal_of(dst.head_.load(std::memory_order_acquire));
        if (dst_tail - dst_steal > CAP / 2) return nullptr;  // no room for half of a full queue
        uint32_t n = steal_into2(dst, dst_tail);
        if (stolen_out) *stolen_out = n;
        if (n == 0) return nullptr;
        n -= 1;
        TaskHeader* ret = dst.buffer_[(dst_tail + n) & MASK].load(std::memory_order_relaxed);
        if (n > 0) dst.tail_.store(dst_tail + n, std::memory_order_release);
        return ret;
    }

    // Any thread; a racy estimate except for the owner.
    uint32_t len() const {
        uint64_t head = head_.load(std::memory_order_acquire);
        uint32_t tail = tail_.load(std::memory_order_acquire);
        return tail - real_of(head);
    }
    bool is_empty() const { return len() == 0; }
    // How many tasks have ever left by the head (pops, steals, overflow),
    // mod 2^32: a watcher on another thread tells from it whether anyone
    // takes from this queue.
    uint32_t taken() const { return real_of(head_.load(std::memory_order_acquire)); }
    // Whether a stealer would find anything (the owner's queue has > 0 tasks).
    bool has_stealable() const { return len() > 0; }

private:
    static uint32_t steal_of(uint64_t h) { return (uint32_t)(h >> 32); }
    static uint32_t real_of(uint64_t h) { return (uint32_t)h; }
    static uint64_t pack(uint32_t steal, uint32_t real) { return ((uint64_t)steal << 32) | real; }

    template <class Sink>
    uint32_t push_overflow(TaskHeader* task, uint32_t head, uint32_t tail, Sink& sink) {
        constexpr uint32_t NUM = CAP / 2;
        if (tail - head != CAP) return 0;  // a stealer took some; caller retries
        uint64_t prev = pack(head, head);
        // Claim the older half. Fails if a stealer (or nothing else: only the
        // owner pops) moved head meanwhile; then there is room again.
        if (!head_.compare_exchange_strong(prev, pack(head + NUM, head + NUM), std::memory_order_acq_rel,
                                           std::memory_order_acquire))
            return 0;
        TaskHeader* batch[NUM + 1];
        for (uint32_t i = 0; i < NUM; i++) batch[i] = buffer_[(head + i) & MASK].load(std::memory_order_relaxed);
        batch[NUM] = task;
        sink.push_batch(batch, NUM + 1);
        return NUM + 1;
    }

    // Claims half of this queue for dst and copies it. Returns the count.
    uint32_t steal_into2(LocalQueue& dst, uint32_t dst_tail) {
        uint64_t prev = head_.load(std::memory_order_acquire);
        uint64_t next;
        uint32_t n;
        for (;;) {
            uint32_t src_steal = steal_of(prev);
            uint32_t src_real = real_of(prev);
            if (src_steal != src_real) return 0;  // another stealer is at work
            uint32_t src_tail = tail_.load(std::memory_order_acquire);
            n = src_tail - src_real;
            n -= n / 2;
            if (n == 0) return 0;
            uint32_t steal_to = src_real + n;
            next = pack(src_steal, steal_to);
            if (head_.compare_exchange_weak(prev, next, std::memory_order_acq_rel, std::memory_order_acquire)) break;
        }
        uint32_t first = steal_of(next);
        for (uint32_t i = 0; i < n; i++) {
            TaskHeader* t = buffer_[(first + i) & MASK].load(std::memory_order_relaxed);
            dst.buffer_[(dst_tail + i) & MASK].store(t, std::memory_order_relaxed);
        }
        // Finish the steal: steal head catches up with the real head (which
        // the owner may have advanced by popping meanwhile).
        prev = next;
        for (;;) {
            uint32_t real = real_of(prev);
            uint64_t done = pack(real, real);
            if (head_.compare_exchange_weak(prev, done, std::memory_order_acq_rel, std::memory_order_acquire))
                return n;
        }
    }

    // Concurrently updated by the owner and every stealer.
    std::atomic<uint64_t> head_;
    // Only updated by the owner, read by stealers. Kept off head's line so
    // the owner's pushes do not bounce the line stealers CAS on.
    alignas(WEFT_CACHE_LINE) std::atomic<uint32_t> tail_;
    alignas(WEFT_CACHE_LINE) std::atomic<TaskHeader*> buffer_[CAP];
};

}  // namespace weft::kernel

#endif
