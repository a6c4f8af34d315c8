// kernel/sync_abi.cpp — the C ABI of the sync primitives (weft_sync.h) over
// kernel/semaphore.h and kernel/sync/.
//
// Objects: every handle is a kernel object whose first field is a magic
// number naming its kind (zeroed when freed), so a NULL, foreign, freed or
// wrong-kind handle is reported as WEFT_EINVAL in most cases instead of
// crashing. Mutex and RwLock are semaphores (1 permit; RW_WRITE permits) in
// an object of their own kind.
//
// Waits: a weft_wait holds a WaitOp: which operation, on what, and the
// kernel waiter node (placement-constructed for that kind). poll and drop
// dispatch on the kind. Every poll path goes through wait_poll(), the one
// place where a cooperative-budget check will go (issue 5: channel and lock
// awaits consume the task's budget and report pending when it is spent).
#include <new>
#include <string.h>

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
// A writer takes every reader slot: at most RW_WRITE readers at once.
constexpr uint64_t RW_WRITE = uint64_t(1) << 30;

struct SemObj {
    uint64_t magic;
    Semaphore sem;
    SemObj(uint64_t m, uint64_t permits) : magic(m), sem(permits) {}
};
struct NotifyObj {
    uint64_t magic = MAGIC_NOTIFY;
    Notify notify;
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
    p->magic = 0;
    p->~T();
    port::free(p);
}

// SAFETY (all as_* below): the opaque handle types are never defined; a
// handle is the kernel object pointer its _new function returned. The magic
// check rejects NULL and most stale or wrong-kind pointers; it is not a
// guarantee against arbitrary garbage.
SemObj* as_sem(const void* h, uint64_t magic) {
    SemObj* o = static_cast<SemObj*>(const_cast<void*>(h));
    return o && o->magic == magic ? o : nullptr;
}
NotifyObj* as_notify(weft_notify* h) {
    NotifyObj* o = reinterpret_cast<NotifyObj*>(h);
    return o && o->magic == MAGIC_NOTIFY ? o : nullptr;
}
Chan* as_chan(const void* h) {
    Chan* c = static_cast<Chan*>(const_cast<void*>(h));
    return c && c->magic == Chan::MAGIC_TX ? c : nullptr;
}
Oneshot* as_oneshot(const void* h) {
    Oneshot* o = static_cast<Oneshot*>(const_cast<void*>(h));
    return o && o->magic == Oneshot::MAGIC_ ? o : nullptr;
}
Barrier* as_barrier(weft_barrier* h) {
    Barrier* b = reinterpret_cast<Barrier*>(h);
    return b && b->magic == Barrier::MAGIC_ ? b : nullptr;
}

// Blocking calls from a runtime worker would stall every task queued behind
// the caller (and deadlock when the releaser is one of them).
bool on_worker() { return current_runtime() != nullptr; }

// ---- weft_wait ----------------------------------------------------------------------

enum class Kind : uint32_t { None = 0, SemAcquire, MpscSend, MpscRecv, OneshotRecv, Notified, BarrierWait };
constexpr uint32_t WAIT_MAGIC = 0x57414954;  // "WAIT"

struct WaitOp {
    uint32_t magic;
    Kind kind;
    void* obj;   // Semaphore*, Chan*, Oneshot*, Notify*, Barrier*
    void* out;   // receive destination
    uint64_t n;  // permits
    bool finished;
    union Node {
        SemWaiter sem;
        SendWaiter send;
        NotifyWaiter notify;
        BarrierWaiter barrier;
        Node() {}
        ~Node() {}
    } node;
};
static_assert(sizeof(WaitOp) <= sizeof(weft_wait), "weft_wait is large enough");
static_assert(alignof(WaitOp) <= alignof(weft_wait), "weft_wait is aligned enough");

WaitOp* as_wait(weft_wait* w) {
    // SAFETY: weft_wait is caller storage of the right size and alignment
    // (static_asserts above); a prepared one holds a WaitOp constructed by
    // begin(). The magic catches an unprepared (e.g. zeroed) one.
    WaitOp* op = reinterpret_cast<WaitOp*>(w);
    return w && op->magic == WAIT_MAGIC ? op : nullptr;
}

WaitOp* begin(weft_wait* w, Kind kind, void* obj) {
    // SAFETY: see as_wait; any previous content is overwritten (a caller
    // reusing a pending wait without dropping it first is a misuse the
    // contract rules out).
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
    default: break;
    }
    return op;
}

// The cooperative-budget hook (issue 5): every poll of a sync wait passes
// here first. Today it always lets the poll proceed.
inline bool coop_budget_allows_poll() { return true; }

int wait_poll(WaitOp* op, weft_context* cx) {
    if (op->finished) return WEFT_EINVAL;
    if (!coop_budget_allows_poll()) {
        weft_waker_wake_by_ref(&cx->waker);
        return WEFT_PENDING;
    }
    const weft_waker* waker = cx ? &cx->waker : nullptr;
    int r;
    switch (op->kind) {
    case Kind::SemAcquire:
        r = static_cast<Semaphore*>(op->obj)->poll_acquire(&op->node.sem, op->n, waker);
        break;
    case Kind::MpscSend: r = static_cast<Chan*>(op->obj)->poll_send(&op->node.send, waker); break;
    case Kind::MpscRecv: r = static_cast<Chan*>(op->obj)->poll_recv(op->out, waker); break;
    case Kind::OneshotRecv: r = static_cast<Oneshot*>(op->obj)->poll_recv(op->out, waker); break;
    case Kind::Notified: r = static_cast<Notify*>(op->obj)->poll(&op->node.notify, waker); break;
    case Kind::BarrierWait: r = static_cast<Barrier*>(op->obj)->poll(&op->node.barrier, waker); break;
    default: return WEFT_EINVAL;
    }
    if (r != WEFT_PENDING) op->finished = true;
    return r;
}

void wait_drop(WaitOp* op) {
    switch (op->kind) {
    case Kind::SemAcquire:
        static_cast<Semaphore*>(op->obj)->cancel(&op->node.sem);
        op->node.sem.~SemWaiter();
        break;
    case Kind::MpscSend:
        static_cast<Chan*>(op->obj)->cancel_send(&op->node.send);
        op->node.send.~SendWaiter();
        break;
    case Kind::Notified:
        static_cast<Notify*>(op->obj)->cancel(&op->node.notify);
        op->node.notify.~NotifyWaiter();
        break;
    case Kind::BarrierWait:
        static_cast<Barrier*>(op->obj)->cancel(&op->node.barrier);
        op->node.barrier.~BarrierWaiter();
        break;
    default:
        break;  // receives hold nothing (the receiver's waker stays in the channel)
    }
    op->magic = 0;
    op->kind = Kind::None;
}

int sem_new(uint64_t magic, uint64_t permits, void** out) {
    if (!out) return WEFT_EINVAL;
    *out = nullptr;
    if (permits > Semaphore::MAX_PERMITS) return WEFT_EINVAL;
    SemObj* o = make<SemObj>(magic, permits);
    if (!o) return WEFT_ENOMEM;
    *out = o;
    return 0;
}
void sem_free(const void* h, uint64_t magic) {
    SemObj* o = as_sem(h, magic);
    if (!o) return;
    o->sem.close();  // queued waiters fail (and then never touch it again)
    unmake(o);
}
int sem_wait(weft_wait* w, const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!w || !o || n > Semaphore::MAX_PERMITS) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::SemAcquire, &o->sem);
    op->n = n;
    return 0;
}
int sem_blocking(const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!o || n > Semaphore::MAX_PERMITS) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return o->sem.acquire_blocking(n);
}
int sem_try(const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!o) return WEFT_EINVAL;
    return o->sem.try_acquire(n);
}
int sem_release(const void* h, uint64_t magic, uint64_t n) {
    SemObj* o = as_sem(h, magic);
    if (!o) return WEFT_EINVAL;
    return o->sem.release(n);
}

int check_cfg(const weft_channel_config* cfg) {
    if (!cfg) return WEFT_EINVAL;
    if (cfg->size != sizeof(weft_channel_config)) return WEFT_EVERSION;
    if (cfg->elem_size > Chan::MAX_ELEM || cfg->capacity > Chan::MAX_CAPACITY) return WEFT_EINVAL;
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
    return sem_new(MAGIC_SEM, permits, reinterpret_cast<void**>(out));
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
int weft_mutex_new(weft_mutex** out) { return sem_new(MAGIC_MUTEX, 1, reinterpret_cast<void**>(out)); }
void weft_mutex_free(weft_mutex* m) { sem_free(m, MAGIC_MUTEX); }
int weft_mutex_try_lock(weft_mutex* m) { return sem_try(m, MAGIC_MUTEX, 1); }
int weft_mutex_lock(weft_wait* w, weft_mutex* m) { return sem_wait(w, m, MAGIC_MUTEX, 1); }
int weft_mutex_lock_blocking(weft_mutex* m) { return sem_blocking(m, MAGIC_MUTEX, 1); }
int weft_mutex_unlock(weft_mutex* m) { return sem_release(m, MAGIC_MUTEX, 1); }

// ---- rwlock ----
int weft_rwlock_new(weft_rwlock** out) { return sem_new(MAGIC_RWLOCK, RW_WRITE, reinterpret_cast<void**>(out)); }
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
    o->notify.notify_waiters();  // queued waiters are released and never touch it again
    unmake(o);
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
    WaitOp* op = begin(w, Kind::Notified, &o->notify);
    o->notify.init_waiter(&op->node.notify);
    return 0;
}
int weft_notify_wait_blocking(weft_notify* n) {
    NotifyObj* o = as_notify(n);
    if (!o) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    o->notify.wait_blocking();
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
    int r = check_cfg(cfg);
    if (r) return r;
    Chan* c = Chan::create(cfg->elem_size, cfg->capacity, cfg->elem_drop, cfg->drop_ctx);
    if (!c) return WEFT_ENOMEM;
    // SAFETY: the sender and receiver handles are both the Chan*; the
    // functions taking each type use only their side's operations.
    *tx = reinterpret_cast<weft_mpsc_tx*>(c);
    *rx = reinterpret_cast<weft_mpsc_rx*>(c);
    return 0;
}
int weft_mpsc_tx_clone(weft_mpsc_tx* tx, weft_mpsc_tx** out) {
    Chan* c = as_chan(tx);
    if (!c || !out) return WEFT_EINVAL;
    c->add_sender();
    *out = tx;
    return 0;
}
void weft_mpsc_tx_free(weft_mpsc_tx* tx) {
    if (Chan* c = as_chan(tx)) c->drop_sender();
}
int weft_mpsc_try_send(weft_mpsc_tx* tx, const void* value) {
    Chan* c = as_chan(tx);
    if (!c || (!value && c->elem_size())) return WEFT_EINVAL;
    return c->try_send(value);
}
int weft_mpsc_send(weft_wait* w, weft_mpsc_tx* tx, const void* value) {
    Chan* c = as_chan(tx);
    if (!w || !c || (!value && c->elem_size())) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::MpscSend, c);
    op->node.send.value = value;
    return 0;
}
int weft_mpsc_send_blocking(weft_mpsc_tx* tx, const void* value) {
    Chan* c = as_chan(tx);
    if (!c || (!value && c->elem_size())) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return c->send_blocking(value);
}
int weft_mpsc_try_recv(weft_mpsc_rx* rx, void* out) {
    Chan* c = as_chan(rx);
    if (!c || (!out && c->elem_size())) return WEFT_EINVAL;
    return c->try_recv(out);
}
int weft_mpsc_recv(weft_wait* w, weft_mpsc_rx* rx, void* out) {
    Chan* c = as_chan(rx);
    if (!w || !c || (!out && c->elem_size())) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::MpscRecv, c);
    op->out = out;
    return 0;
}
int weft_mpsc_recv_blocking(weft_mpsc_rx* rx, void* out) {
    Chan* c = as_chan(rx);
    if (!c || (!out && c->elem_size())) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return c->recv_blocking(out);
}
int weft_mpsc_rx_close(weft_mpsc_rx* rx) {
    Chan* c = as_chan(rx);
    if (!c) return WEFT_EINVAL;
    c->close();
    return 0;
}
void weft_mpsc_rx_free(weft_mpsc_rx* rx) {
    if (Chan* c = as_chan(rx)) c->drop_receiver();
}

int weft_oneshot_new(const weft_channel_config* cfg, weft_oneshot_tx** tx, weft_oneshot_rx** rx) {
    if (!tx || !rx) return WEFT_EINVAL;
    *tx = nullptr;
    *rx = nullptr;
    int r = check_cfg(cfg);
    if (r) return r;
    Oneshot* o = Oneshot::create(cfg->elem_size, cfg->elem_drop, cfg->drop_ctx);
    if (!o) return WEFT_ENOMEM;
    *tx = reinterpret_cast<weft_oneshot_tx*>(o);  // SAFETY: as weft_mpsc_new
    *rx = reinterpret_cast<weft_oneshot_rx*>(o);
    return 0;
}
int weft_oneshot_send(weft_oneshot_tx* tx, const void* value) {
    Oneshot* o = as_oneshot(tx);
    if (!o || (!value && o->elem_size())) return WEFT_EINVAL;
    return o->send(value);
}
void weft_oneshot_tx_free(weft_oneshot_tx* tx) {
    if (Oneshot* o = as_oneshot(tx)) o->drop_sender();
}
int weft_oneshot_try_recv(weft_oneshot_rx* rx, void* out) {
    Oneshot* o = as_oneshot(rx);
    if (!o || (!out && o->elem_size())) return WEFT_EINVAL;
    return o->try_recv(out);
}
int weft_oneshot_recv(weft_wait* w, weft_oneshot_rx* rx, void* out) {
    Oneshot* o = as_oneshot(rx);
    if (!w || !o || (!out && o->elem_size())) return WEFT_EINVAL;
    WaitOp* op = begin(w, Kind::OneshotRecv, o);
    op->out = out;
    return 0;
}
int weft_oneshot_recv_blocking(weft_oneshot_rx* rx, void* out) {
    Oneshot* o = as_oneshot(rx);
    if (!o || (!out && o->elem_size())) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return o->recv_blocking(out);
}
void weft_oneshot_rx_free(weft_oneshot_rx* rx) {
    if (Oneshot* o = as_oneshot(rx)) o->drop_receiver();
}

// ---- barrier ----
int weft_barrier_new(uint64_t n, weft_barrier** out) {
    if (!out) return WEFT_EINVAL;
    Barrier* b = make<Barrier>(n);
    *out = reinterpret_cast<weft_barrier*>(b);
    return b ? 0 : WEFT_ENOMEM;
}
void weft_barrier_free(weft_barrier* b) {
    if (Barrier* o = as_barrier(b)) unmake(o);
}
int weft_barrier_wait(weft_wait* w, weft_barrier* b) {
    Barrier* o = as_barrier(b);
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
    Barrier* o = as_barrier(b);
    if (!o) return WEFT_EINVAL;
    if (on_worker()) return WEFT_EDEADLK;
    return o->wait_blocking();
}

}  // extern "C"
