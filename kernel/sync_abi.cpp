// kernel/sync_abi.cpp — the C ABI of the sync primitives (weft_sync.h) over
// kernel/semaphore.h and kernel/sync/.
//
// Objects: every handle points at a magic number naming its kind (zeroed
// when the handle is freed), so a NULL, foreign, freed or wrong-kind handle
// is reported as WEFT_EINVAL in most cases instead of crashing. Semaphore,
// Mutex, RwLock, Notify and Barrier handles are the object itself; Mutex and
// RwLock are semaphores (1 permit; RW_WRITE permits) of that capacity, in an
// object of their own kind. Channel handles are tags (channel.h): each mpsc
// sender has its own, the receivers' and the oneshot sender's live in the
// channel.
//
// Lifetime: every object is reference counted: its handle holds one
// reference, and so does every prepared weft_wait on it, from preparation
// until the poll that finishes it or weft_wait_drop. Freeing a handle closes
// the object (waits fail or are released as the header says) and drops the
// handle's reference; the memory goes with the last reference. Without
// that, a wait that was granted (a lock handed over, a notify_one) but not
// yet observed, or prepared and not yet polled, would touch freed memory
// when it is polled or dropped after the free. Blocking calls hold a
// reference for their duration too.
//
// Waits: a weft_wait holds a WaitOp: which operation, on what, and the
// kernel waiter node (placement-constructed for that kind). poll and drop
// dispatch on the kind. Every poll path goes through wait_poll(), where the
// cooperative budget is consumed (coop_budget_allows_poll).
#include <atomic>
#include <new>
#include <string.h>
#include <type_traits>

#include "../include/weft/weft.h"
#include "scheduler.h"
#include "semaphore.h"
#include "sync/barrier.h"
#include "sync/channel.h"
#include "sync/notify.h"

using namespace weft::kernel;
using namespace weft::kernel::sync;
namespace port = weft::port;

namespace {

constexpr uint64_t MAGIC_SEM = 0x7765667453454d41ull;
constexpr uint64_t MAGIC_MUTEX = 0x776566744d555458ull;
constexpr uint64_t MAGIC_RWLOCK = 0x7765667452574c4bull;
constexpr uint64_t MAGIC_NOTIFY = 0x776566744e4f5446ull;
constexpr uint64_t MAGIC_BARRIER = 0x7765667442415252ull;
// A writer takes every reader slot: at most RW_WRITE readers at once.
constexpr uint64_t RW_WRITE = uint64_t(1) << 30;

// The reference-counted ABI objects: `magic` first, then `refs`.
struct SemObj {
    uint64_t magic;
    std::atomic<uint64_t> refs{1};
    Semaphore sem;
    // max: the capacity (1 for a mutex, RW_WRITE for an rwlock): a release
    // past it is an unlock of a lock that is not held (semaphore.h).
    SemObj(uint64_t m, uint64_t permits, uint64_t max) : magic(m), sem(permits, max) {}
};
struct NotifyObj {
    uint64_t magic = MAGIC_NOTIFY;
    std::atomic<uint64_t> refs{1};
    Notify notify;
};
struct BarrierObj {
    uint64_t magic = MAGIC_BARRIER;
    std::atomic<uint64_t> refs{1};
    Barrier barrier;
    explicit BarrierObj(uint64_t n) : barrier(n) {}
};

template <class T, class... A>
T* make(A... a) {
    void* mem = port::alloc(sizeof(T));
    // SAFETY: a fresh malloc block of sizeof(T) bytes (T needs no more than
    // malloc's alignment: every member is at most 8-aligned).
    return mem ? new (mem) T(a...) : nullptr;
}
template <class T>
void unmake(T* p) {
    // volatile: a plain store right before free() is a dead store the
    // compiler removes, and then a stale handle would still pass its check.
    *static_cast<volatile uint64_t*>(&p->magic) = 0;
    p->~T();
    port::free(p);
}
template <class T>
void retain(T* o) {
    // relaxed: the caller holds a reference (the handle it came through), so
    // the count cannot reach 0 meanwhile; taking one publishes nothing.
    o->refs.fetch_add(1, std::memory_order_relaxed);
}
template <class T>
void release(T* o) {
    // acq_rel: the last holder sees every other holder's writes before it
    // frees (the release half publishes ours).
    if (o->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) unmake(o);
}

// SAFETY (all as_* below): the opaque handle types are never defined; a
// handle is the pointer its _new (or _clone) function returned: the object,
// or for channels a HandleTag. The magic check rejects NULL and most stale
// or wrong-kind pointers; it is not a guarantee against arbitrary garbage.
SemObj* as_sem(const void* h, uint64_t magic) {
    SemObj* o = static_cast<SemObj*>(const_cast<void*>(h));
    return o && o->magic == magic ? o : nullptr;
}
NotifyObj* as_notify(weft_notify* h) {
    NotifyObj* o = reinterpret_cast<NotifyObj*>(h);
    return o && o->magic == MAGIC_NOTIFY ? o : nullptr;
}
HandleTag* as_tag(const void* h, uint64_t magic) {
    HandleTag* t = static_cast<HandleTag*>(const_cast<void*>(h));
    return t && t->magic == magic ? t : nullptr;
}
Chan* as_tx(const weft_mpsc_tx* h) {
    HandleTag* t = as_tag(h, Chan::MAGIC_TX);
    return t ? static_cast<Chan*>(t->owner) : nullptr;
}
Chan* as_rx(const weft_mpsc_rx* h) {
    HandleTag* t = as_tag(h, Chan::MAGIC_RX);
    return t ? static_cast<Chan*>(t->owner) : nullptr;
}
Oneshot* as_otx(const weft_oneshot_tx* h) {
    HandleTag* t = as_tag(h, Oneshot::MAGIC_TX);
    return t ? static_cast<Oneshot*>(t->owner) : nullptr;
}
Oneshot* as_orx(const weft_oneshot_rx* h) {
    HandleTag* t = as_tag(h, Oneshot::MAGIC_RX);
    return t ? static_cast<Oneshot*>(t->owner) : nullptr;
}
BarrierObj* as_barrier(weft_barrier* h) {
    BarrierObj* b = reinterpret_cast<BarrierObj*>(h);
    return b && b->magic == MAGIC_BARRIER ? b : nullptr;
}

// Blocking calls from a runtime worker would stall every task queued behind
// the caller (and deadlock when the releaser is one of them).
bool on_worker() { return current_runtime() != nullptr; }

// ---- weft_wait ----------------------------------------------------------------------

enum class Kind : uint32_t { None = 0, SemAcquire, MpscSend, MpscRecv, OneshotRecv, Notified, BarrierWait };
constexpr uint32_t WAIT_MAGIC = 0x57414954;  // "WAIT"

// A receive's record of the waker it left in the channel's receiver slot
// (not owned: only compared), so that dropping the wait can take it back.
struct RecvNode {
    weft_waker registered{nullptr, nullptr};
};

struct WaitOp {
    uint32_t magic;
    Kind kind;
    void* obj;   // SemObj*, Chan*, Oneshot*, NotifyObj*, BarrierObj*: one reference held until finished or dropped
    void* out;   // receive destination
    uint64_t n;  // permits
    bool finished;  // the poll that finished it released the reference
    union Node {
        SemWaiter sem;
        SendWaiter send;
        NotifyWaiter notify;
        BarrierWaiter barrier;
        RecvNode recv;
        Node() {}
        ~Node() {}
    } node;
};
static_assert(sizeof(WaitOp) <= sizeof(weft_wait), "weft_wait is large enough");
// wait_drop's fast path for a finished wait runs no node destructor.
static_assert(std::is_trivially_destructible_v<SemWaiter> && std::is_trivially_destructible_v<SendWaiter> &&
                  std::is_trivially_destructible_v<NotifyWaiter> && std::is_trivially_destructible_v<BarrierWaiter> &&
                  std::is_trivially_destructible_v<RecvNode>,
              "wait nodes need no destructor once finished");
static_assert(alignof(WaitOp) <= alignof(weft_wait), "weft_wait is aligned enough");

WaitOp* as_wait(weft_wait* w) {
    // SAFETY: weft_wait is caller storage of the right size and alignment
    // (static_asserts above); a prepared one holds a WaitOp constructed by
    // begin(). The magic catches an unprepared (e.g. zeroed) one.
    WaitOp* op = reinterpret_cast<WaitOp*>(w);
    return w && op->magic == WAIT_MAGIC ? op : nullptr;
}

void retain_obj(Kind kind, void* obj) {
    switch (kind) {
    case Kind::SemAcquire: retain(static_cast<SemObj*>(obj)); break;
    // A send holds a sender count while prepared: the receiver must not see
    // "no sender left" (closed, final) before it pushed or was dropped.
    case Kind::MpscSend: static_cast<Chan*>(obj)->add_sender(); break;
    case Kind::MpscRecv: static_cast<Chan*>(obj)->retain(); break;
    case Kind::OneshotRecv: static_cast<Oneshot*>(obj)->retain(); break;
    case Kind::Notified: retain(static_cast<NotifyObj*>(obj)); break;
    case Kind::BarrierWait: retain(static_cast<BarrierObj*>(obj)); break;
    default: break;
    }
}
void release_obj(Kind kind, void* obj) {
    switch (kind) {
    case Kind::SemAcquire: release(static_cast<SemObj*>(obj)); break;
    case Kind::MpscSend: static_cast<Chan*>(obj)->drop_sender(); break;
    case Kind::MpscRecv: static_cast<Chan*>(obj)->release_ref(); break;
    case Kind::OneshotRecv: static_cast<Oneshot*>(obj)->release_ref(); break;
    case Kind::Notified: release(static_cast<NotifyObj*>(obj)); break;
    case Kind::BarrierWait: release(static_cast<BarrierObj*>(obj)); break;
    default: break;
    }
}

// obj: reached through a live handle by the caller (so retaining is safe).
WaitOp* begin(weft_wait* w, Kind kind, void* obj) {
    // SAFETY: see as_wait; any previous content is overwritten (a caller
    // reusing a pending wait without dropping it first is a misuse the
    // contract rules out: it leaks that wait's reference).
    WaitOp* op = new (w) WaitOp;
    op->magic = WAIT_MAGIC;
    op->kind = kind;
    op->obj = obj;
    op->out = nullptr;
    op->n = 0;
    op->finished = false;
    switch (kind) {
    case Kind::SemAcquire: new (&op->node.sem) SemWaiter(); break;
    case Kind::MpscSend: new (&op->node.send) SendWaiter(); break;
    case Kind::Notified: new (&op->node.notify) NotifyWaiter(); break;
    case Kind::BarrierWait: new (&op->node.barrier) BarrierWaiter(); break;
    case Kind::MpscRecv:
    case Kind::OneshotRecv: new (&op->node.recv) RecvNode(); break;
    default: break;
    }
    retain_obj(kind, obj);
    return op;
}

// The cooperative budget (pulse.h): every poll of a sync wait costs the task
// one unit; once its budget is spent the wait reports pending (after waking
// the task), so a task that always finds its channel ready still yields.
// Outside a task (blocking variants) nothing is metered.
inline bool coop_budget_allows_poll() { return !budget_spent(1); }

int wait_poll(WaitOp* op, weft_context* cx) {
    if (op->finished) return WEFT_EINVAL;
    if (!coop_budget_allows_poll()) {
        weft_waker_wake_by_ref(&cx->waker);
        return WEFT_PENDING;
    }
    const weft_waker* waker = cx ? &cx->waker : nullptr;
    if (op->kind == Kind::MpscRecv) {
        // The hottest wait (every awaited channel message): dispatched and
        // finished here without the generic switches below. Same steps as
        // the MpscRecv case there.
        Chan* c = static_cast<Chan*>(op->obj);
        int r = c->poll_recv(op->out, waker);
        if (r == WEFT_PENDING) {
            if (waker) op->node.recv.registered = *waker;
            return r;
        }
        op->finished = true;
        c->release_ref();
        return r;
    }
    int r;
    switch (op->kind) {
    case Kind::SemAcquire:
        r = static_cast<SemObj*>(op->obj)->sem.poll_acquire(&op->node.sem, op->n, waker);
        break;
    case Kind::MpscSend: r = static_cast<Chan*>(op->obj)->poll_send(&op->node.send, waker); break;
    case Kind::MpscRecv:
        r = static_cast<Chan*>(op->obj)->poll_recv(op->out, waker);
        if (r == WEFT_PENDING && waker) op->node.recv.registered = *waker;
        break;
    case Kind::OneshotRecv:
        r = static_cast<Oneshot*>(op->obj)->poll_recv(op->out, waker);
        if (r == WEFT_PENDING && waker) op->node.recv.registered = *waker;
        break;
    case Kind::Notified: r = static_cast<NotifyObj*>(op->obj)->notify.poll(&op->node.notify, waker); break;
    case Kind::BarrierWait:
        r = static_cast<BarrierObj*>(op->obj)->barrier.poll(&op->node.barrier, waker);
        break;
    default: return WEFT_EINVAL;
    }
    if (r != WEFT_PENDING) {
        // Finished: the kernel waiter needs nothing from the object any more
        // (each poll's last access to the object came before it returned).
        op->finished = true;
        release_obj(op->kind, op->obj);
    }
    return r;
}

void wait_drop(WaitOp* op) {
    // A finished wait released its reference: the object may be gone, and
    // its waiter is FINISHED (cancel would do nothing), so only the node is
    // retired.
    if (op->finished) {
        // The common retire after a completed poll: every node type is
        // trivially destructible (asserted after WaitOp), so there is nothing to
        // run; only the wait is marked unprepared.
        op->magic = 0;
        op->kind = Kind::None;
        return;
    }
    bool live = true;
    switch (op->kind) {
    case Kind::SemAcquire:
        if (live) static_cast<SemObj*>(op->obj)->sem.cancel(&op->node.sem);
        op->node.sem.~SemWaiter();
        break;
    case Kind::MpscSend:
        if (live) static_cast<Chan*>(op->obj)->cancel_send(&op->node.send);
        op->node.send.~SendWaiter();
        break;
    case Kind::Notified:
        if (live) static_cast<NotifyObj*>(op->obj)->notify.cancel(&op->node.notify);
        op->node.notify.~NotifyWaiter();
        break;
    case Kind::BarrierWait:
        if (live) static_cast<BarrierObj*>(op->obj)->barrier.cancel(&op->node.barrier);
        op->node.barrier.~BarrierWaiter();
        break;
    case Kind::MpscRecv:
        // Take our waker back: left in the channel, it would keep the task
        // (its memory) alive until the next send or the channel's free.
        if (live && op->node.recv.registered.vtable)
            static_cast<Chan*>(op->obj)->forget_rx_waker(&op->node.recv.registered);
        op->node.recv.~RecvNode();
        break;
    case Kind::OneshotRecv:
        if (live && op->node.recv.registered.vtable)
            static_cast<Oneshot*>(op->obj)->forget_rx_waker(&op->node.recv.registered);
        op->node.recv.~RecvNode();
        break;
    default: break;
    }
    if (live) release_obj(op->kind, op->obj);
    op->magic = 0;
    op->kind = Kind::None;
}

int sem_new(uint64_t magic, uint64_t permits, uint64_t max, void** out) {
    if (!out) return WEFT_EINVAL;
    *out = nullptr;
    if (permits > max) return WEFT_EINVAL;
    SemObj* o = make<SemObj>(magic, permits, max);
    if (!o) return WEFT_ENOMEM;
    *out = o;
    return 0;
}
void sem_free(const void* h, uint64_t magic) {
    SemObj* o = as_sem(h, magic);
    if (!o) return;
    o->magic = 0;    // the handle is dead; the object may live on for its waits
    o->sem.close();  // queued and prepared acquires fail with WEFT_ECLOSED
    release(o);
}
int sem_wait(weft_wait* w, const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!w || !o || n > o->sem.capacity()) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::SemAcquire, o);
    op->n = n;
    return 0;
}
int sem_blocking(const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!o || n > o->sem.capacity()) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    retain(o);  // a free meanwhile fails us (WEFT_ECLOSED) but cannot pull the memory away
    int r = o->sem.acquire_blocking(n);
    release(o);
    return r;
}
int sem_try(const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!o || n > o->sem.capacity()) return WEFT_EINVAL;  // could never succeed
    return o->sem.try_acquire(n);
}
int sem_release(const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!o) return WEFT_EINVAL;
    return o->sem.release(n);
}

int check_cfg(const weft_channel_config* cfg, bool mpsc) {
    if (!cfg) return WEFT_EINVAL;
    if (cfg->size != sizeof(weft_channel_config)) return WEFT_EVERSION;
    if (cfg->elem_size > Chan::MAX_ELEM) return WEFT_EINVAL;
    if (mpsc && !Chan::size_ok(cfg->elem_size, cfg->capacity)) return WEFT_EINVAL;
    return 0;
}

}  // namespace

extern "C" {

// ---- waits ----
int weft_wait_poll(weft_wait* w, weft_context* cx) {
    WaitOp* op = as_wait(w);
    if (!op || !cx || !cx->waker.vtable) return WEFT_EINVAL;
    return wait_poll(op, cx);
}
void weft_wait_drop(weft_wait* w) {
    if (WaitOp* op = as_wait(w)) wait_drop(op);
}

// ---- semaphore ----
int weft_semaphore_new(uint64_t permits, weft_semaphore** out) {
    return sem_new(MAGIC_SEM, permits, Semaphore::MAX_PERMITS, reinterpret_cast<void**>(out));
}
void weft_semaphore_free(weft_semaphore* s) { sem_free(s, MAGIC_SEM); }
int weft_semaphore_try_acquire(weft_semaphore* s, uint64_t n) { return sem_try(s, MAGIC_SEM, n); }
int weft_semaphore_acquire(weft_wait* w, weft_semaphore* s, uint64_t n) { return sem_wait(w, s, MAGIC_SEM, n); }
int weft_semaphore_acquire_blocking(weft_semaphore* s, uint64_t n) { return sem_blocking(s, MAGIC_SEM, n); }
int weft_semaphore_release(weft_semaphore* s, uint64_t n) { return sem_release(s, MAGIC_SEM, n); }
int weft_semaphore_close(weft_semaphore* s) {
    SemObj* o = as_sem(s, MAGIC_SEM);
    if (!o) return WEFT_EINVAL;
    o->sem.close();
    return 0;
}
int weft_semaphore_is_closed(const weft_semaphore* s) {
    SemObj* o = as_sem(s, MAGIC_SEM);
    if (!o) return WEFT_EINVAL;
    return o->sem.is_closed() ? 1 : 0;
}
uint64_t weft_semaphore_available(const weft_semaphore* s) {
    SemObj* o = as_sem(s, MAGIC_SEM);
    return o ? o->sem.available() : 0;
}

// ---- mutex ----
int weft_mutex_new(weft_mutex** out) { return sem_new(MAGIC_MUTEX, 1, 1, reinterpret_cast<void**>(out)); }
void weft_mutex_free(weft_mutex* m) { sem_free(m, MAGIC_MUTEX); }
int weft_mutex_try_lock(weft_mutex* m) { return sem_try(m, MAGIC_MUTEX, 1); }
int weft_mutex_lock(weft_wait* w, weft_mutex* m) { return sem_wait(w, m, MAGIC_MUTEX, 1); }
int weft_mutex_lock_blocking(weft_mutex* m) { return sem_blocking(m, MAGIC_MUTEX, 1); }
int weft_mutex_unlock(weft_mutex* m) { return sem_release(m, MAGIC_MUTEX, 1); }

// ---- rwlock ----
int weft_rwlock_new(weft_rwlock** out) {
    return sem_new(MAGIC_RWLOCK, RW_WRITE, RW_WRITE, reinterpret_cast<void**>(out));
}
void weft_rwlock_free(weft_rwlock* l) { sem_free(l, MAGIC_RWLOCK); }
int weft_rwlock_try_read(weft_rwlock* l) { return sem_try(l, MAGIC_RWLOCK, 1); }
int weft_rwlock_try_write(weft_rwlock* l) { return sem_try(l, MAGIC_RWLOCK, RW_WRITE); }
int weft_rwlock_read(weft_wait* w, weft_rwlock* l) { return sem_wait(w, l, MAGIC_RWLOCK, 1); }
int weft_rwlock_write(weft_wait* w, weft_rwlock* l) { return sem_wait(w, l, MAGIC_RWLOCK, RW_WRITE); }
int weft_rwlock_read_blocking(weft_rwlock* l) { return sem_blocking(l, MAGIC_RWLOCK, 1); }
int weft_rwlock_write_blocking(weft_rwlock* l) { return sem_blocking(l, MAGIC_RWLOCK, RW_WRITE); }
int weft_rwlock_read_unlock(weft_rwlock* l) { return sem_release(l, MAGIC_RWLOCK, 1); }
int weft_rwlock_write_unlock(weft_rwlock* l) { return sem_release(l, MAGIC_RWLOCK, RW_WRITE); }

// ---- notify ----
int weft_notify_new(weft_notify** out) {
    if (!out) return WEFT_EINVAL;
    NotifyObj* o = make<NotifyObj>();
    *out = reinterpret_cast<weft_notify*>(o);
    return o ? 0 : WEFT_ENOMEM;
}
void weft_notify_free(weft_notify* n) {
    NotifyObj* o = as_notify(n);
    if (!o) return;
    o->magic = 0;                // the handle is dead; the object may live on for its waits
    o->notify.notify_waiters();  // queued and prepared waits are released
    release(o);
}
int weft_notify_notify_one(weft_notify* n) {
    NotifyObj* o = as_notify(n);
    if (!o) return WEFT_EINVAL;
    o->notify.notify_one();
    return 0;
}
int weft_notify_notify_waiters(weft_notify* n) {
    NotifyObj* o = as_notify(n);
    if (!o) return WEFT_EINVAL;
    o->notify.notify_waiters();
    return 0;
}
int weft_notify_notified(weft_wait* w, weft_notify* n) {
    NotifyObj* o = as_notify(n);
    if (!w || !o) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::Notified, o);
    o->notify.init_waiter(&op->node.notify);
    return 0;
}
int weft_notify_wait_blocking(weft_notify* n) {
    NotifyObj* o = as_notify(n);
    if (!o) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    retain(o);  // see sem_blocking
    o->notify.wait_blocking();
    release(o);
    return 0;
}

// ---- channels ----
void weft_channel_config_init(weft_channel_config* cfg, size_t elem_size, uint64_t capacity) {
    if (!cfg) return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
    cfg->elem_size = elem_size;
    cfg->capacity = capacity;
}

int weft_mpsc_new(const weft_channel_config* cfg, weft_mpsc_tx** tx, weft_mpsc_rx** rx) {
    if (!tx || !rx) return WEFT_EINVAL;
    *tx = nullptr;
    *rx = nullptr;
    int r = check_cfg(cfg, true);
    if (r) return r;
    Chan* c = Chan::create(cfg->elem_size, cfg->capacity, cfg->elem_drop, cfg->drop_ctx);
    if (!c) return WEFT_ENOMEM;
    HandleTag* t = make<HandleTag>(HandleTag{Chan::MAGIC_TX, c});
    if (!t) {
        c->drop_sender();
        c->drop_receiver();  // the last reference: frees it
        return WEFT_ENOMEM;
    }
    // SAFETY: the handles are HandleTags (see as_tx / as_rx).
    *tx = reinterpret_cast<weft_mpsc_tx*>(t);
    *rx = reinterpret_cast<weft_mpsc_rx*>(&c->rx_tag);
    return 0;
}
int weft_mpsc_tx_clone(weft_mpsc_tx* tx, weft_mpsc_tx** out) {
    Chan* c = as_tx(tx);
    if (!c || !out) return WEFT_EINVAL;
    // Each sender has a tag of its own, so freeing one twice is detectable.
    HandleTag* t = make<HandleTag>(HandleTag{Chan::MAGIC_TX, c});
    if (!t) return WEFT_ENOMEM;
    c->add_sender();
    *out = reinterpret_cast<weft_mpsc_tx*>(t);  // SAFETY: as weft_mpsc_new
    return 0;
}
void weft_mpsc_tx_free(weft_mpsc_tx* tx) {
    HandleTag* t = as_tag(tx, Chan::MAGIC_TX);
    if (!t) return;
    Chan* c = static_cast<Chan*>(t->owner);
    unmake(t);
    c->drop_sender();
}
int weft_mpsc_try_send(weft_mpsc_tx* tx, const void* value) {
    Chan* c = as_tx(tx);
    if (!c || (!value && c->elem_size())) return WEFT_EINVAL;
    return c->try_send(value);
}
int weft_mpsc_send(weft_wait* w, weft_mpsc_tx* tx, const void* value) {
    Chan* c = as_tx(tx);
    if (!w || !c || (!value && c->elem_size())) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::MpscSend, c);
    op->node.send.value = value;
    return 0;
}
int weft_mpsc_send_blocking(weft_mpsc_tx* tx, const void* value) {
    Chan* c = as_tx(tx);
    if (!c || (!value && c->elem_size())) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return c->send_blocking(value);
}
int weft_mpsc_try_recv(weft_mpsc_rx* rx, void* out) {
    Chan* c = as_rx(rx);
    if (!c || (!out && c->elem_size())) return WEFT_EINVAL;
    return c->try_recv(out);
}
int weft_mpsc_recv(weft_wait* w, weft_mpsc_rx* rx, void* out) {
    Chan* c = as_rx(rx);
    if (!w || !c || (!out && c->elem_size())) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::MpscRecv, c);
    op->out = out;
    return 0;
}
int weft_mpsc_recv_blocking(weft_mpsc_rx* rx, void* out) {
    Chan* c = as_rx(rx);
    if (!c || (!out && c->elem_size())) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return c->recv_blocking(out);
}
int weft_mpsc_rx_close(weft_mpsc_rx* rx) {
    Chan* c = as_rx(rx);
    if (!c) return WEFT_EINVAL;
    c->close();
    return 0;
}
void weft_mpsc_rx_free(weft_mpsc_rx* rx) {
    Chan* c = as_rx(rx);
    if (!c) return;
    c->rx_tag.magic = 0;  // the handle is dead (the channel may live on for its senders)
    c->drop_receiver();
}

int weft_oneshot_new(const weft_channel_config* cfg, weft_oneshot_tx** tx, weft_oneshot_rx** rx) {
    if (!tx || !rx) return WEFT_EINVAL;
    *tx = nullptr;
    *rx = nullptr;
    int r = check_cfg(cfg, false);
    if (r) return r;
    Oneshot* o = Oneshot::create(cfg->elem_size, cfg->elem_drop, cfg->drop_ctx);
    if (!o) return WEFT_ENOMEM;
    *tx = reinterpret_cast<weft_oneshot_tx*>(&o->tx_tag);  // SAFETY: as weft_mpsc_new
    *rx = reinterpret_cast<weft_oneshot_rx*>(&o->rx_tag);
    return 0;
}
int weft_oneshot_send(weft_oneshot_tx* tx, const void* value) {
    Oneshot* o = as_otx(tx);
    if (!o || (!value && o->elem_size())) return WEFT_EINVAL;
    return o->send(value);
}
void weft_oneshot_tx_free(weft_oneshot_tx* tx) {
    Oneshot* o = as_otx(tx);
    if (!o) return;
    o->tx_tag.magic = 0;  // the handle is dead
    o->drop_sender();
}
int weft_oneshot_try_recv(weft_oneshot_rx* rx, void* out) {
    Oneshot* o = as_orx(rx);
    if (!o || (!out && o->elem_size())) return WEFT_EINVAL;
    return o->try_recv(out);
}
int weft_oneshot_recv(weft_wait* w, weft_oneshot_rx* rx, void* out) {
    Oneshot* o = as_orx(rx);
    if (!w || !o || (!out && o->elem_size())) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::OneshotRecv, o);
    op->out = out;
    return 0;
}
int weft_oneshot_recv_blocking(weft_oneshot_rx* rx, void* out) {
    Oneshot* o = as_orx(rx);
    if (!o || (!out && o->elem_size())) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return o->recv_blocking(out);
}
void weft_oneshot_rx_free(weft_oneshot_rx* rx) {
    Oneshot* o = as_orx(rx);
    if (!o) return;
    o->rx_tag.magic = 0;  // the handle is dead
    o->drop_receiver();
}

// ---- barrier ----
int weft_barrier_new(uint64_t n, weft_barrier** out) {
    if (!out) return WEFT_EINVAL;
    BarrierObj* b = make<BarrierObj>(n);
    *out = reinterpret_cast<weft_barrier*>(b);
    return b ? 0 : WEFT_ENOMEM;
}
void weft_barrier_free(weft_barrier* b) {
    BarrierObj* o = as_barrier(b);
    if (!o) return;
    o->magic = 0;          // the handle is dead; the object may live on for its waits
    o->barrier.close();    // waiting and prepared parties fail with WEFT_ECLOSED
    release(o);
}
int weft_barrier_wait(weft_wait* w, weft_barrier* b) {
    BarrierObj* o = as_barrier(b);
    if (!w || !o) return WEFT_EINVAL;
    begin(w, Kind::BarrierWait, o);
    return 0;
}
int weft_barrier_wait_is_leader(const weft_wait* w) {
    WaitOp* op = as_wait(const_cast<weft_wait*>(w));
    if (!op || op->kind != Kind::BarrierWait) return WEFT_EINVAL;
    return op->node.barrier.leader ? 1 : 0;
}
int weft_barrier_wait_blocking(weft_barrier* b) {
    BarrierObj* o = as_barrier(b);
    if (!o) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    retain(o);  // see sem_blocking
    int r = o->barrier.wait_blocking();
    release(o);
    return r;
}

}  // extern "C"
