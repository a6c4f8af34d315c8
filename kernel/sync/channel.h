// kernel/sync/channel.h — the multi-producer single-consumer channel (bounded
// and unbounded) and the oneshot channel. Elements are fixed-size byte blobs
// (elem_size, given at creation) copied in and out with memcpy; an optional
// elem_drop callback releases elements still queued when the channel goes
// away (the C++ wrappers box non-trivially-copyable values and delete them
// there).
//
// ---- Chan (mpsc) ----
// Bounded (capacity >= 1): capacity comes from a Semaphore of `capacity`
// permits. A sender takes a permit (fair, FIFO, cancel-safe: semaphore.h),
// then claims a ring slot with tail.fetch_add and publishes it with the
// slot's sequence number; the receiver reads the slot at `head` once its
// sequence says it is written, and returns the permit. No lock on either
// side: a send to a waiting receiver costs a permit CAS, a fetch_add, a
// release store and the receiver-waker RMW (atomic_waker.h).
// Why a claimed slot is always free: a slot is reused `ring` (>= capacity)
// claims later; at most `capacity` claims hold a permit at once and the
// receiver returns the permit only after it has read the slot, in order. So
// when claim i happens, claim i - ring has been read. Each slot's sequence
// word makes that an explicit happens-before edge (Vyukov's bounded queue):
// seq == i: free for claim i; seq == i + 1: claim i is written; the
// receiver sets seq = i + ring after reading claim i.
// Unbounded (capacity 0): a growable ring under a port::Mutex (sends never
// wait; contention is the senders' own). Same receiver-waker protocol.
//
// Closing: the receiver's close() (or drop) closes the semaphore (waiting
// and later sends fail with WEFT_ECLOSED and keep their value) and sets
// RX_CLOSED; the receiver may still drain what was queued. When the last
// sender handle goes, TX_CLOSED is set and the receiver woken: recv then
// returns WEFT_ECLOSED once the queue is empty.
// Lifetime: every handle (each sender, the receiver) holds one reference, and
// so does every prepared wait of the C ABI (retain/release_ref), so that a
// wait outliving the handles it was made from still points at a live
// channel (it then sees the channel closed); the last one frees the channel and drops the elements still queued (a send that
// raced with the receiver's drop leaves its element there: dropped, not
// leaked, as in Tokio).
//
// Threads: senders anywhere; the receiver belongs to one thread or task at a
// time (it registers the one receiver waker).
//
// ---- Oneshot ----
// One value, one sender, one receiver. state bits: SENT, TAKEN (the value
// left the slot: received, or handed back to a sender that found the
// receiver gone), TX_DROPPED, RX_DROPPED. The sender copies the value in and
// sets SENT with one fetch_or; if that fetch_or shows RX_DROPPED, the value
// is handed back (WEFT_ECLOSED, the caller's copy stays the owner).
#ifndef WEFT_KERNEL_SYNC_CHANNEL_H
#define WEFT_KERNEL_SYNC_CHANNEL_H

#include <atomic>
#include <stddef.h>
#include <stdint.h>

#include "../../arch/padding.h"
#include "../../include/weft/weft.h"
#include "../../port/port.h"
#include "../semaphore.h"
#include "atomic_waker.h"

namespace weft::kernel::sync {

using ElemDrop = void (*)(void* elem, void* ctx);

// What a C ABI handle of a channel points at: a tag naming the kind of
// handle (a sender or a receiver of an mpsc or a oneshot channel) and the
// channel. The receivers' (and the oneshot sender's) tags live in the
// channel object; every mpsc sender has a tag of its own (allocated by the
// ABI layer), so that a receiver passed as a sender, or a sender freed
// twice, is told apart from a live handle of the right kind (WEFT_EINVAL)
// instead of being trusted. The magic is zeroed when the handle is freed.
struct HandleTag {
    uint64_t magic;
    void* owner;  // the Chan or Oneshot
};

struct SendWaiter {
    SemWaiter sem;
    const void* value = nullptr;
};

class Chan {
public:
    // Handle tags (checked by the ABI layer).
    static constexpr uint64_t MAGIC_TX = 0x7765667454584348ull;
    static constexpr uint64_t MAGIC_RX = 0x7765667452584348ull;
    static constexpr uint32_t TX_CLOSED = 1, RX_CLOSED = 2;
    static constexpr uint64_t MAX_CAPACITY = uint64_t(1) << 30;
    static constexpr size_t MAX_ELEM = 1u << 20;
    // A bounded ring is allocated whole at creation: refuse more than this
    // many bytes of it, so that a hostile capacity x elem_size gets an error
    // rather than an out-of-memory kill.
    static constexpr uint64_t MAX_RING_BYTES = uint64_t(1) << 30;

    // Whether create() accepts this element size and capacity.
    static bool size_ok(size_t elem_size, uint64_t capacity) noexcept;
    // nullptr when out of memory. capacity 0 = unbounded. size_ok() holds.
    static Chan* create(size_t elem_size, uint64_t capacity, ElemDrop drop, void* ctx) noexcept;

    // ---- handles ----
    void add_sender() noexcept;
    void drop_sender() noexcept;
    void drop_receiver() noexcept;
    // A reference that is not a handle (a prepared wait). The caller holds
    // a reference already (a handle) while it retains.
    void retain() noexcept {
        // relaxed: the caller's reference keeps the count above 0; nothing
        // is published by taking one.
        refs_.fetch_add(1, std::memory_order_relaxed);
    }
    void release_ref() noexcept;

    // ---- send ----
    // 0, WEFT_EAGAIN (bounded and full), WEFT_ECLOSED, WEFT_ENOMEM (unbounded
    // growth failed). On failure the value stays the caller's.
    int try_send(const void* value) noexcept;
    // WEFT_READY, WEFT_PENDING, or an error (value not taken).
    int poll_send(SendWaiter* w, const weft_waker* waker) noexcept;
    // A send abandoned: a permit it was granted goes back, and the receiver
    // is woken to look again: after a close, it waits for every permit
    // (try_recv_slow). Unconditional: the wake after the permit's return is
    // what orders the two (a wake that found no waker means the receiver's
    // later registration sees the permit back).
    void cancel_send(SendWaiter* w) noexcept {
        if (!bounded()) return;
        sem_.cancel(&w->sem);
        rx_waker_.wake();
    }
    int send_blocking(const void* value) noexcept;

    // ---- receive (the receiver only) ----
    // 0 (out filled), WEFT_EAGAIN (empty), WEFT_ECLOSED (empty and no sender
    // left, or closed by the receiver and drained, with no send granted
    // room before the close still to push).
    int try_recv(void* out) noexcept {
        // Inline fast refusal (the common "nothing yet" of an awaiting
        // receiver, looked at up to three times per message): the next slot
        // is not written and the channel is open. The same two loads, in
        // the same order, as the out-of-line path below makes, so the
        // answer is the one it would give.
        // acquire (both): as in pop() and try_recv_slow().
        if (bounded() && seq_of(slot(head_))->load(std::memory_order_acquire) != head_ + 1 &&
            !(flags_.load(std::memory_order_acquire) & (TX_CLOSED | RX_CLOSED)))
            return WEFT_EAGAIN;
        return try_recv_slow(out);
    }
    // WEFT_READY (out filled), WEFT_PENDING, WEFT_ECLOSED.
    int poll_recv(void* out, const weft_waker* waker) noexcept;
    int recv_blocking(void* out) noexcept;
    void close() noexcept;
    // An abandoned receive: the receiver's waker slot forgets *id's task
    // (see AtomicWaker::clear_if_will_wake). The receiver only.
    void forget_rx_waker(const weft_waker* id) noexcept { rx_waker_.clear_if_will_wake(id); }

    bool bounded() const noexcept { return capacity_ != 0; }
    size_t elem_size() const noexcept { return elem_size_; }
    bool is_closed() const noexcept { return flags_.load(std::memory_order_acquire) & RX_CLOSED; }

    HandleTag rx_tag{MAGIC_RX, this};  // the receiver handle points here

private:
    Chan(size_t elem_size, uint64_t capacity, ElemDrop drop, void* ctx) noexcept;
    void destroy() noexcept;
    void push_ring(const void* value) noexcept;
    int push_unbounded(const void* value) noexcept;
    bool pop(void* out) noexcept;  // receiver only: true when out was filled
    int try_recv_slow(void* out) noexcept;
    unsigned char* slot(uint64_t idx) noexcept { return slots_ + (idx & mask_) * stride_; }
    static std::atomic<uint64_t>* seq_of(unsigned char* s) noexcept {
        // SAFETY: every bounded slot starts with a std::atomic<uint64_t>
        // placement-constructed by create(); stride_ keeps it 8-aligned.
        return reinterpret_cast<std::atomic<uint64_t>*>(s);
    }

    // -- immutable --
    size_t elem_size_;
    uint64_t capacity_;  // 0 = unbounded
    ElemDrop drop_;
    void* drop_ctx_;
    size_t alloc_size_ = 0;
    // bounded ring: (ring) slots of stride_ bytes = [seq | element]
    unsigned char* slots_ = nullptr;
    uint64_t mask_ = 0;
    size_t stride_ = 0;
    // -- counters, touched by every handle --
    std::atomic<uint64_t> refs_{2};     // each handle: 1 (one sender + the receiver at creation)
    std::atomic<uint64_t> senders_{1};  // live sender handles
    std::atomic<uint32_t> flags_{0};    // TX_CLOSED | RX_CLOSED
    // -- senders --
    alignas(WEFT_CACHE_LINE) std::atomic<uint64_t> tail_{0};  // bounded: next claim (senders, fetch_add)
    Semaphore sem_{0};                                         // bounded: free capacity
    // unbounded queue (lock_): a growable ring of elem_size_-byte elements
    port::Mutex lock_;
    unsigned char* q_buf_ = nullptr;
    uint64_t q_cap_ = 0, q_head_ = 0, q_len_ = 0;
    // -- receiver --
    alignas(WEFT_CACHE_LINE) uint64_t head_ = 0;  // bounded: next slot to read (receiver only)
    AtomicWaker rx_waker_;
};

class Oneshot {
public:
    // Handle tags (checked by the ABI layer).
    static constexpr uint64_t MAGIC_TX = 0x776566744f4e5458ull;
    static constexpr uint64_t MAGIC_RX = 0x776566744f4e5258ull;
    static constexpr uint32_t SENT = 1, TAKEN = 2, TX_DROPPED = 4, RX_DROPPED = 8;

    static Oneshot* create(size_t elem_size, ElemDrop drop, void* ctx) noexcept;

    // 0, WEFT_ECLOSED (receiver gone: the value stays the caller's),
    // WEFT_EALREADY (already sent).
    int send(const void* value) noexcept;
    void drop_sender() noexcept;
    // 0, WEFT_EAGAIN, WEFT_ECLOSED (sender dropped without sending),
    // WEFT_EALREADY (taken already).
    int try_recv(void* out) noexcept;
    int poll_recv(void* out, const weft_waker* waker) noexcept;
    int recv_blocking(void* out) noexcept;
    void drop_receiver() noexcept;
    size_t elem_size() const noexcept { return elem_size_; }
    // As Chan's.
    void retain() noexcept {
        // relaxed: the caller's reference keeps the count above 0.
        refs_.fetch_add(1, std::memory_order_relaxed);
    }
    void release_ref() noexcept;
    void forget_rx_waker(const weft_waker* id) noexcept { rx_waker_.clear_if_will_wake(id); }

    HandleTag tx_tag{MAGIC_TX, this};  // the sender handle points here
    HandleTag rx_tag{MAGIC_RX, this};  // the receiver handle points here

private:
    Oneshot(size_t elem_size, ElemDrop drop, void* ctx) noexcept
        : elem_size_(elem_size), drop_(drop), drop_ctx_(ctx) {}
    unsigned char* value() noexcept { return reinterpret_cast<unsigned char*>(this + 1); }

    size_t elem_size_;
    ElemDrop drop_;
    void* drop_ctx_;
    std::atomic<uint32_t> state_{0};
    std::atomic<uint32_t> refs_{2};
    AtomicWaker rx_waker_;
    bool sender_used_ = false;  // sender only
};

}  // namespace weft::kernel::sync

#endif
