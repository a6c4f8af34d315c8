// kernel/sync/channel.cpp — mpsc and oneshot channels (see channel.h).
#include "channel.h"

#include <new>
#include <string.h>

#include "../../arch/arch.h"
#include "thread_signal.h"

namespace weft::kernel::sync {

namespace {
void drop_waker(weft_waker w) {
    if (w.vtable) w.vtable->drop(w.data);
}
// Copies one element. The sizes the C++ wrappers use (a scalar, a pointer
// box, a small struct) get a fixed-size copy the compiler turns into one or
// two moves; a libc memcpy call costs more than the copy for 8 bytes. The
// buffers never overlap (a slot and the caller's storage).
inline void copy_elem(void* dst, const void* src, size_t n) {
    switch (n) {
    case 0: return;
    case 1: __builtin_memcpy(dst, src, 1); return;
    case 2: __builtin_memcpy(dst, src, 2); return;
    case 4: __builtin_memcpy(dst, src, 4); return;
    case 8: __builtin_memcpy(dst, src, 8); return;
    case 16: __builtin_memcpy(dst, src, 16); return;
    default: memcpy(dst, src, n); return;
    }
}
uint64_t round_up_pow2(uint64_t v) {
    uint64_t p = 1;
    while (p < v) p <<= 1;
    return p;
}
}  // namespace

// ---- Chan: lifetime -------------------------------------------------------------

Chan::Chan(size_t elem_size, uint64_t capacity, ElemDrop drop, void* ctx) noexcept
    : elem_size_(elem_size), capacity_(capacity), drop_(drop), drop_ctx_(ctx), sem_(capacity) {}

bool Chan::size_ok(size_t elem_size, uint64_t capacity) noexcept {
    if (elem_size > MAX_ELEM || capacity > MAX_CAPACITY) return false;
    if (capacity == 0) return true;  // unbounded: grows as it is used
    // Both factors are bounded above (2^30 slots, 2^20 + 8 bytes): no overflow.
    uint64_t stride = (sizeof(uint64_t) + elem_size + 7) & ~uint64_t(7);
    return round_up_pow2(capacity) * stride <= MAX_RING_BYTES;
}

Chan* Chan::create(size_t elem_size, uint64_t capacity, ElemDrop drop, void* ctx) noexcept {
    if (!size_ok(elem_size, capacity)) return nullptr;
    size_t head = (sizeof(Chan) + 15) & ~size_t(15);
    size_t stride = (sizeof(uint64_t) + elem_size + 7) & ~size_t(7);
    uint64_t ring = capacity ? round_up_pow2(capacity) : 0;
    size_t size = head + (size_t)ring * stride;
    void* mem = port::alloc_aligned(size, alignof(Chan));
    if (!mem) return nullptr;
    // SAFETY: mem is a fresh block of `size` bytes aligned for Chan.
    Chan* c = new (mem) Chan(elem_size, capacity, drop, ctx);
    c->alloc_size_ = size;
    if (ring) {
        c->slots_ = static_cast<unsigned char*>(mem) + head;
        c->mask_ = ring - 1;
        c->stride_ = stride;
        // SAFETY: each slot starts 8-aligned (head is 16-aligned, stride a
        // multiple of 8); its first 8 bytes become the sequence word.
        // Slot i is free for claim i (seq == i); written, it holds i + 1.
        for (uint64_t i = 0; i < ring; i++) new (c->slot(i)) std::atomic<uint64_t>(i);
    }
    return c;
}

void Chan::destroy() noexcept {
    // Last reference: no other thread can touch the channel. Drop what is
    // still queued (sends the receiver never took).
    if (bounded()) {
        for (;;) {
            unsigned char* s = slot(head_);
            if (seq_of(s)->load(std::memory_order_acquire) != head_ + 1) break;
            if (drop_) drop_(s + sizeof(uint64_t), drop_ctx_);
            head_++;
        }
    } else {
        for (uint64_t i = 0; i < q_len_; i++) {
            if (drop_) drop_(q_buf_ + ((q_head_ + i) % q_cap_) * elem_size_, drop_ctx_);
        }
        port::free(q_buf_);
    }
    drop_waker(rx_waker_.take());
    // volatile: a plain store right before free() is a dead store the
    // compiler may remove, and a stale handle would then pass its check.
    *static_cast<volatile uint64_t*>(&rx_tag.magic) = 0;
    this->~Chan();
    port::free(this);
}

void Chan::release_ref() noexcept {
    // acq_rel: the last holder sees every other holder's writes before it
    // frees (the release half publishes ours).
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
}

void Chan::add_sender() noexcept {
    // relaxed: the caller holds a sender handle, so neither count can reach
    // 0 meanwhile; nothing is published by a clone.
    senders_.fetch_add(1, std::memory_order_relaxed);
    refs_.fetch_add(1, std::memory_order_relaxed);
}

void Chan::drop_sender() noexcept {
    // acq_rel: the last sender's flag below must come after every sender's
    // pushes (release half), and it must see them (acquire half) so that the
    // receiver, seeing TX_CLOSED, sees all the data.
    if (senders_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // release: the receiver's acquire load of flags_ then sees every push.
        flags_.fetch_or(TX_CLOSED, std::memory_order_release);
        rx_waker_.wake();
    }
    release_ref();
}

void Chan::close() noexcept {
    if (bounded()) sem_.close();  // waiting senders fail; their values stay theirs
    if (!bounded()) lock_.lock();  // unbounded pushes check RX_CLOSED under the lock
    // release: senders' acquire loads see it.
    flags_.fetch_or(RX_CLOSED, std::memory_order_release);
    if (!bounded()) lock_.unlock();
}

void Chan::drop_receiver() noexcept {
    close();
    // Drop what is queued now; anything a racing sender adds later is
    // dropped by destroy().
    if (bounded()) {
        while (true) {
            unsigned char* s = slot(head_);
            if (seq_of(s)->load(std::memory_order_acquire) != head_ + 1) break;
            if (drop_) drop_(s + sizeof(uint64_t), drop_ctx_);
            seq_of(s)->store(head_ + mask_ + 1, std::memory_order_release);  // as in pop()
            head_++;
            sem_.release(1);
        }
    } else {
        lock_.lock();
        for (; q_len_ != 0; q_len_--, q_head_ = (q_head_ + 1) % q_cap_)
            if (drop_) drop_(q_buf_ + q_head_ * elem_size_, drop_ctx_);
        lock_.unlock();
    }
    drop_waker(rx_waker_.take());
    release_ref();
}

// ---- Chan: send -------------------------------------------------------------------

void Chan::push_ring(const void* value) noexcept {
    // relaxed: the claim only has to be unique; the data is published by
    // the slot's release store below.
    uint64_t idx = tail_.fetch_add(1, std::memory_order_relaxed);
    unsigned char* s = slot(idx);
    // The permit guarantees the receiver has read this slot's previous
    // element (see channel.h), but that is a counting argument, not a
    // happens-before edge: acquire the receiver's "free for idx" store so
    // our write is ordered after its read. The loop practically never spins
    // (the receiver frees the slot before it returns the permit); it is
    // there for the memory model (ThreadSanitizer found the missing edge:
    // Sync.MpscManySendersOneReceiver).
    while (seq_of(s)->load(std::memory_order_acquire) != idx) weft_arch_cpu_relax();
    copy_elem(s + sizeof(uint64_t), value, elem_size_);
    // release: the element bytes before the sequence number (the receiver's
    // acquire load pairs with it).
    seq_of(s)->store(idx + 1, std::memory_order_release);
    rx_waker_.wake();
}

int Chan::push_unbounded(const void* value) noexcept {
    lock_.lock();
    // relaxed: RX_CLOSED is set under this lock.
    if (flags_.load(std::memory_order_relaxed) & RX_CLOSED) {
        lock_.unlock();
        return WEFT_ECLOSED;
    }
    if (q_len_ == q_cap_) {
        uint64_t ncap = q_cap_ ? q_cap_ * 2 : 8;
        unsigned char* nbuf = static_cast<unsigned char*>(port::alloc(ncap * (elem_size_ ? elem_size_ : 1)));
        if (!nbuf) {
            lock_.unlock();
            return WEFT_ENOMEM;
        }
        for (uint64_t i = 0; i < q_len_; i++)
            memcpy(nbuf + i * elem_size_, q_buf_ + ((q_head_ + i) % q_cap_) * elem_size_, elem_size_);
        port::free(q_buf_);
        q_buf_ = nbuf;
        q_cap_ = ncap;
        q_head_ = 0;
    }
    copy_elem(q_buf_ + ((q_head_ + q_len_) % q_cap_) * elem_size_, value, elem_size_);
    q_len_++;
    lock_.unlock();
    rx_waker_.wake();
    return 0;
}

int Chan::try_send(const void* value) noexcept {
    if (!bounded()) return push_unbounded(value);
    int r = sem_.try_acquire(1);
    if (r != 0) return r;  // EAGAIN (full) or ECLOSED
    push_ring(value);
    return 0;
}

int Chan::poll_send(SendWaiter* w, const weft_waker* waker) noexcept {
    if (!bounded()) {
        int r = push_unbounded(w->value);
        w->sem.stage = SemWaiter::FINISHED;
        return r == 0 ? WEFT_READY : r;
    }
    int r = sem_.poll_acquire(&w->sem, 1, waker);
    if (r != WEFT_READY) return r;
    push_ring(w->value);
    return WEFT_READY;
}

int Chan::send_blocking(const void* value) noexcept {
    if (!bounded()) return push_unbounded(value);
    int r = sem_.acquire_blocking(1);
    if (r != 0) return r;
    push_ring(value);
    return 0;
}

// ---- Chan: receive ------------------------------------------------------------------

bool Chan::pop(void* out) noexcept {
    if (bounded()) {
        unsigned char* s = slot(head_);
        // acquire: pairs with the sender's release store; the bytes are there.
        if (seq_of(s)->load(std::memory_order_acquire) != head_ + 1) return false;
        copy_elem(out, s + sizeof(uint64_t), elem_size_);
        // release: our read happens before the write of the sender that
        // claims this slot next (claim head_ + ring; its acquire load pairs).
        seq_of(s)->store(head_ + mask_ + 1, std::memory_order_release);
        head_++;
        sem_.release(1);  // the room goes back to the senders
        return true;
    }
    lock_.lock();
    if (q_len_ == 0) {
        lock_.unlock();
        return false;
    }
    copy_elem(out, q_buf_ + q_head_ * elem_size_, elem_size_);
    q_head_ = (q_head_ + 1) % q_cap_;
    q_len_--;
    lock_.unlock();
    return true;
}

int Chan::try_recv_slow(void* out) noexcept {
    if (pop(out)) return 0;
    // acquire: pairs with the last sender's release (TX_CLOSED): every push
    // is visible, so one more look decides between "empty" and "closed".
    uint32_t f = flags_.load(std::memory_order_acquire);
    if (f & (TX_CLOSED | RX_CLOSED)) {
        if (pop(out)) return 0;
        // Closed by the receiver while senders live: one that was granted
        // room before the close (a permit: try_send, or a queued send the
        // last receive made room for) may still be about to push it. Its
        // value must reach the receiver, and "closed" must be final: so
        // closed only once every permit is back (a closed semaphore grants
        // none). The push, or the send's cancel, wakes the receiver.
        if (!(f & TX_CLOSED) && bounded() && sem_.available() != capacity_) return WEFT_EAGAIN;
        return WEFT_ECLOSED;
    }
    return WEFT_EAGAIN;
}

int Chan::poll_recv(void* out, const weft_waker* waker) noexcept {
    int r = try_recv(out);
    if (r != WEFT_EAGAIN) return r == 0 ? WEFT_READY : r;
    rx_waker_.register_by_ref(waker);
    // Look again after registering: a send that came before the
    // registration did not see our waker (atomic_waker.h).
    r = try_recv(out);
    if (r != WEFT_EAGAIN) return r == 0 ? WEFT_READY : r;
    return WEFT_PENDING;
}

int Chan::recv_blocking(void* out) noexcept {
    ThreadSignal signal;
    for (;;) {
        int r = try_recv(out);
        if (r != WEFT_EAGAIN) return r;
        signal.reset();
        rx_waker_.register_owned(signal.waker());
        r = try_recv(out);
        if (r != WEFT_EAGAIN) {
            // Take our waker back before `signal` goes out of scope. If a
            // sender is waking it right now, take() gets nothing and the
            // sender's wake consumes it; either way wait() then returns.
            drop_waker(rx_waker_.take());
            signal.wait();
            return r;
        }
        signal.wait();  // consumed by a sender's wake: look again
    }
}

// ---- Oneshot --------------------------------------------------------------------------

Oneshot* Oneshot::create(size_t elem_size, ElemDrop drop, void* ctx) noexcept {
    static_assert(sizeof(Oneshot) % 8 == 0, "the value slot after the object is 8-aligned");
    void* mem = port::alloc(sizeof(Oneshot) + (elem_size ? elem_size : 1));
    if (!mem) return nullptr;
    // SAFETY: a fresh block of sizeof(Oneshot) + elem_size bytes (malloc alignment).
    return new (mem) Oneshot(elem_size, drop, ctx);
}

void Oneshot::release_ref() noexcept {
    // acq_rel: the last holder sees the other's writes before it frees.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    uint32_t s = state_.load(std::memory_order_relaxed);
    if ((s & SENT) && !(s & TAKEN) && drop_) drop_(value(), drop_ctx_);
    drop_waker(rx_waker_.take());
    // volatile: see Chan::destroy.
    *static_cast<volatile uint64_t*>(&tx_tag.magic) = 0;
    *static_cast<volatile uint64_t*>(&rx_tag.magic) = 0;
    this->~Oneshot();
    port::free(this);
}

int Oneshot::send(const void* v) noexcept {
    if (sender_used_) return WEFT_EALREADY;
    // acquire: a receiver that dropped published nothing we need, but the
    // check saves the copy.
    if (state_.load(std::memory_order_acquire) & RX_DROPPED) return WEFT_ECLOSED;
    sender_used_ = true;
    copy_elem(value(), v, elem_size_);
    // acq_rel: release publishes the value to the receiver's acquire load;
    // acquire sees whether (and that) the receiver left.
    uint32_t prev = state_.fetch_or(SENT, std::memory_order_acq_rel);
    if (prev & RX_DROPPED) {
        // The receiver is gone and will never read it: hand it back (the
        // caller's bytes are still the value) and make sure the final free
        // does not drop it as well.
        state_.fetch_or(TAKEN, std::memory_order_relaxed);
        return WEFT_ECLOSED;
    }
    rx_waker_.wake();
    return 0;
}

void Oneshot::drop_sender() noexcept {
    if (!sender_used_) {
        // release: the receiver (acquire) sees it; it then stops waiting.
        state_.fetch_or(TX_DROPPED, std::memory_order_release);
        rx_waker_.wake();
    }
    release_ref();
}

int Oneshot::try_recv(void* out) noexcept {
    // acquire: pairs with the sender's fetch_or (the value bytes).
    uint32_t s = state_.load(std::memory_order_acquire);
    // A prepared receive polled after the receiver's free: it fails (the
    // free says so). Taking the value would give it two owners: a send
    // that saw RX_DROPPED keeps it too (send).
    if (s & RX_DROPPED) return WEFT_ECLOSED;
    if (s & TAKEN) return WEFT_EALREADY;
    if (s & SENT) {
        copy_elem(out, value(), elem_size_);
        // relaxed: only the receiver reads TAKEN before the final free, which
        // is ordered by the refcount's acq_rel.
        state_.fetch_or(TAKEN, std::memory_order_relaxed);
        return 0;
    }
    if (s & TX_DROPPED) return WEFT_ECLOSED;
    return WEFT_EAGAIN;
}

int Oneshot::poll_recv(void* out, const weft_waker* waker) noexcept {
    int r = try_recv(out);
    if (r != WEFT_EAGAIN) return r == 0 ? WEFT_READY : r;
    rx_waker_.register_by_ref(waker);
    r = try_recv(out);
    if (r != WEFT_EAGAIN) return r == 0 ? WEFT_READY : r;
    return WEFT_PENDING;
}

int Oneshot::recv_blocking(void* out) noexcept {
    ThreadSignal signal;
    for (;;) {
        int r = try_recv(out);
        if (r != WEFT_EAGAIN) return r;
        signal.reset();
        rx_waker_.register_owned(signal.waker());
        r = try_recv(out);
        if (r != WEFT_EAGAIN) {
            drop_waker(rx_waker_.take());  // see Chan::recv_blocking
            signal.wait();
            return r;
        }
        signal.wait();
    }
}

void Oneshot::drop_receiver() noexcept {
    // acq_rel: the sender's fetch_or then sees RX_DROPPED, or we see SENT
    // (and the final free drops the value).
    state_.fetch_or(RX_DROPPED, std::memory_order_acq_rel);
    drop_waker(rx_waker_.take());
    release_ref();
}

}  // namespace weft::kernel::sync
