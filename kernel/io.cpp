// kernel/io.cpp — I/O operations and the per-worker drivers (io.h).
//
// An operation's life (IoOp::phase), guarded by IoOp::mu:
//
//   NEW --first poll--> IN_KERNEL --completion--> DONE
//    |                     ^  (io_uring: an SQE on the poller's driver, or a
//    |                     |   request on a driver's remote list first;
//    +--> REMOTE ----------+   epoll: a waiter on the fd's readiness entry,
//         (io_uring, a poll     retried by the next poll after a wake-up)
//          on a thread that
//          holds no worker)
//
// A multishot accept stays IN_KERNEL while the kernel keeps it armed and
// queues the fds it accepts (IoOp::acc). Free (weft_io_op_free) marks the op
// dropped; IN_KERNEL on io_uring also submits an IORING_OP_ASYNC_CANCEL, and
// the op lives on (the kernel's reference) until its last CQE.
//
// user_data of an SQE: the IoOp*, or one of the tags below (never a valid
// pointer: IoOp is 16-byte aligned).
#include "io.h"

#include <errno.h>
#include <linux/time_types.h>
#include <new>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "../port/io_sys.h"
#include "pool.h"
#include "scheduler.h"
#include "tpc.h"
#include "weft/weft_pulse.h"

namespace weft::kernel {

namespace {

constexpr uint64_t TAG_IGNORE = 1;  // a cancel's own CQE
constexpr uint64_t TAG_WAKE = 2;    // the eventfd read
constexpr uint64_t TAG_MASK = 15;   // a user_data with any of these bits is a tag, not an IoOp*
                                    // (kernel/tpc.cpp's tags are 5..7 in the low byte)
constexpr unsigned RING_ENTRIES = 256;
constexpr int MAX_IOV = 64;
constexpr int MAX_ADDR = 128;

enum Kind : uint8_t { K_RECV, K_SEND, K_READ, K_WRITE, K_READV, K_WRITEV, K_ACCEPT, K_CONNECT, K_CLOSE,
                      K_SHUTDOWN, K_POLL };
enum Phase : uint8_t { NEW, REMOTE, IN_KERNEL, DONE };

}  // namespace

// ---- buffers ------------------------------------------------------------------

}  // namespace weft::kernel

struct weft_buf {
    std::atomic<uint32_t> refs;
    size_t capacity;
    alignas(16) unsigned char data[];
};

namespace weft::kernel {

struct IoOp;
struct FdEntry;

// Waiter on an fd's readiness (epoll). The links and `entry` are guarded
// by the FdEntry's mutex; `home` (the entry of op->fd) by the op's.
struct EpWait {
    IoOp* prev = nullptr;
    IoOp* next = nullptr;
    uint32_t interest = 0;  // EPOLLIN / EPOLLOUT
    FdEntry* entry = nullptr;  // linked on it
    FdEntry* home = nullptr;
    uint64_t gen = 0;          // the entry's gen when it linked (ep_event's wake-all pass)
};

struct alignas(16) IoOp {
    IoState* st = nullptr;  // where it submits: a runtime's I/O state or a tpc executor's
    Shared* sh = nullptr;   // the runtime it holds a reference on (nullptr: st's own count)
    // One for the user's handle, one while the kernel holds the op (io_uring,
    // uring_prep to the last CQE), one per remote request or epoll event in
    // hand. fetch_sub is acq_rel (op_release): the last one sees every
    // write of the others before freeing.
    std::atomic<uint32_t> refs{1};
    port::Mutex mu;
    Kind kind = K_RECV;
    Phase phase = NEW;
    bool dropped = false;       // the user freed it
    bool cancel_sent = false;
    bool timed_out = false;
    bool multishot = false;     // the user asked for it: a stream of accepts
    bool ms_kernel = true;      // try the kernel's multishot accept (cleared on -EINVAL)
    bool armed = false;         // multishot: the kernel still holds it
    bool ep_fired = false;      // epoll: readiness came since the last attempt
    bool connect_started = false;  // epoll connect: connect() returned EINPROGRESS
    bool has_waker = false;
    bool timer_on = false;
    // Completers that took the waker under mu and have not finished waking
    // it (take_waker / wake_taken). The release decrement pairs with
    // op_wait's acquire load: its stack Parker outlives every unpark.
    std::atomic<uint32_t> waking{0};
    int fd = -1;
    int aux = 0;  // msg flags, shutdown how, poll events
    int64_t offset = -1;
    void* ptr = nullptr;
    uint32_t len = 0;
    int iovcnt = 0;
    struct iovec* iov = nullptr;
    weft_buf* keep = nullptr;
    unsigned addrlen = 0;
    alignas(8) unsigned char addr[MAX_ADDR];
    int64_t result = 0;
    weft_waker waker{nullptr, nullptr};
    // io_uring: where it was submitted. epoll: the driver whose set holds the
    // fd of this wait (its counts; read and written under the FdEntry's mu
    // while the wait is linked).
    Driver* driver = nullptr;
    IoOp* remote_next = nullptr;
    bool remote_cancel = false; // the remote request is a cancel
    int64_t timeout_ns = 0;
    // The time limit. `timer` while a thread of a runtime or an executor
    // polls it (timer_on); its waker is op_timer_waker, which holds a
    // reference on the op, so an entry left in a wheel that the freeing
    // thread may not touch (another executor's) keeps the op alive until it
    // fires or its executor closes it. A plain thread (weft_io_op_wait) has
    // no wheel: `deadline_ns` (monotonic) instead, which its park honours.
    weft_timer timer;
    void* timer_exec = nullptr;  // the tpc executor whose wheel holds `timer`, or nullptr (a runtime's)
    uint64_t deadline_ns = 0;
    // multishot accept: accepted fds not yet taken (a ring)
    int* acc = nullptr;
    uint32_t acc_head = 0, acc_n = 0, acc_cap = 0;
    int acc_error = 0;          // a terminal error after the queue drains
    EpWait ep;
};

// ---- the epoll fd table -------------------------------------------------------
// Readiness state per fd, for the whole runtime: pages of FD_PAGE entries,
// allocated on first use and never freed before the runtime (an event for a
// closed fd then finds a live, empty entry). The fd's registration is
// EPOLLONESHOT on one driver's epoll set (the first to wait on it), re-armed
// by every wait with the union of the waiters' interests: arming checks the
// current readiness (level), so a wait never misses data that arrived
// between the EAGAIN and the arming.
struct FdEntry {
    port::Mutex mu;
    Driver* driver = nullptr;  // the driver whose epoll set holds the fd; nullptr: none
    IoOp* head = nullptr;  // waiters (EpWait links)
    uint64_t gen = 0;      // bumped by each wake-all pass (ep_event)
};
constexpr uint32_t FD_PAGE = 4096, FD_PAGES = 1024;  // fds up to 4M
struct FdTable {
    // Set once per page by fd_entry's CAS (acq_rel: publishes the constructed
    // entries), read with acquire by anyone; freed only by io_destroy.
    std::atomic<FdEntry*> pages[FD_PAGES] = {};
};

namespace {

// ---- status ---------------------------------------------------------------------

}  // namespace

struct IoState {
    IoBackend backend = IO_NONE;
    int uring_error = 0;
    const char* why = "";
    Shared* sh = nullptr;       // the multi-thread runtime, or nullptr (a tpc executor's)
    Driver* drivers = nullptr;  // ndrivers: one per worker, or one (tpc)
    uint32_t ndrivers = 0;
    FdTable* fds = nullptr;
    // Round-robin pick of a driver for threads holding no worker; relaxed:
    // any driver will do, it only spreads the load.
    std::atomic<uint32_t> remote_rr{0};
    // tpc only: the executor's reference and one per operation (a runtime's
    // state lives as long as the runtime, which its operations retain).
    // fetch_sub acq_rel: the last one sees every write before freeing.
    std::atomic<uint32_t> refs{1};
    // tpc only: wakes the executor after a push on the remote list.
    void (*notify)(void*) = nullptr;
    void* notify_arg = nullptr;
    // epoll: set (once, relaxed) by the first wait on an fd's readiness. Until
    // then no epoll set holds anything but its driver's wake eventfd, which
    // only a parking worker needs, so the busy worker's look every fairness
    // tick (io_tick) skips its epoll_wait(0): a system call per 61 polls, which
    // made yield_many ~17% slower on epoll than on io_uring, in a runtime that
    // does no I/O at all (a container whose seccomp profile refuses io_uring).
    // Seen late, the flag costs a tick's delay at most: a parking worker
    // always waits on its set.
    std::atomic<bool> ep_waited{false};
};

namespace {

inline IoState* io_state(Shared* sh) { return static_cast<IoState*>(sh->io); }
inline Driver* driver_of(Worker* w) { return w->io; }

void op_release(IoOp* op);
void state_release(IoState* st);

// Whether the calling thread is the tpc executor that owns st.
inline bool owner_of_tpc_state(const IoState* st) { return tpc::t_exec && tpc::t_exec->io == st; }

// ---- waking ------------------------------------------------------------------------

// Takes the op's waker out (under mu) for a wake after the unlock.
inline weft_waker take_waker(IoOp* op) {
    weft_waker w{nullptr, nullptr};
    if (op->has_waker) {
        w = op->waker;
        op->has_waker = false;
        op->waking.fetch_add(1, std::memory_order_relaxed);
    }
    return w;
}
inline void wake_taken(IoOp* op, weft_waker w) {
    if (!w.vtable) return;
    w.vtable->wake(w.data);
    op->waking.fetch_sub(1, std::memory_order_release);
}

// The waker an op's timeout timer holds (data: the op): a reference on the
// op per clone; a wake passes on to the op's current waker.
// SAFETY (the casts below): `p` is always the IoOp* that op_timer_poll put
// in the waker, kept alive by the reference this waker holds.
void op_timer_forward(IoOp* op) {
    weft_waker w;
    {
        port::LockGuard g(op->mu);
        w = take_waker(op);
    }
    wake_taken(op, w);
}
weft_waker op_timer_clone(const void* p);
void op_timer_wake(const void* p) {
    IoOp* op = static_cast<IoOp*>(const_cast<void*>(p));
    op_timer_forward(op);
    op_release(op);
}
void op_timer_wake_by_ref(const void* p) { op_timer_forward(static_cast<IoOp*>(const_cast<void*>(p))); }
void op_timer_drop(const void* p) { op_release(static_cast<IoOp*>(const_cast<void*>(p))); }
const weft_waker_vtable op_timer_vtable = {op_timer_clone, op_timer_wake, op_timer_wake_by_ref, op_timer_drop};
weft_waker op_timer_clone(const void* p) {
    // relaxed: the cloning thread holds a reference already (like every
    // other reference taken on an op); op_release's acq_rel orders the end.
    static_cast<IoOp*>(const_cast<void*>(p))->refs.fetch_add(1, std::memory_order_relaxed);
    return weft_waker{p, &op_timer_vtable};
}

// Polls op's timer (under op->mu) with op_timer_waker. Not through
// weft_timer_poll: its budget check may wake the waker at once, and the
// forward would take op->mu, held here.
int op_timer_poll(IoOp* op) {
    // SAFETY: weft_timer_init made op->timer a TimerEntry.
    TimerEntry* e = reinterpret_cast<TimerEntry*>(&op->timer);
    weft_waker w{op, &op_timer_vtable};
    return e->tpc() ? tpc::timer_poll(e, &w) : timer_poll(e, &w);
}

// Whether this thread may cancel op's timer (a tpc executor's wheel is its
// own thread's alone; a runtime's takes a lock).
inline bool timer_cancellable_here(const IoOp* op) { return !op->timer_exec || op->timer_exec == tpc::t_exec; }

// Stores the poller's waker (under mu), cloning it only when it changed.
inline void set_waker(IoOp* op, const weft_waker* w) {
    if (op->has_waker) {
        if (weft_waker_will_wake(&op->waker, w)) return;
        op->waker.vtable->drop(op->waker.data);
    }
    op->waker = w->vtable->clone(w->data);
    op->has_waker = true;
}

// ---- io_uring ----------------------------------------------------------------------

void post_wake_read(Driver* d) {
    if (d->wake_posted) return;
    struct io_uring_sqe* sqe = d->ring.get_sqe();
    if (!sqe) {
        d->ring.submit();
        sqe = d->ring.get_sqe();
        if (!sqe) return;  // retried at the next park
    }
    sqe->opcode = IORING_OP_READ;
    sqe->fd = d->wake_fd;
    sqe->addr = (uint64_t)(uintptr_t)&d->wake_buf;
    sqe->len = sizeof d->wake_buf;
    sqe->off = (uint64_t)-1;
    sqe->user_data = TAG_WAKE;
    d->wake_posted = true;
}

// A free SQE, submitting what is queued when the SQ is full.
struct io_uring_sqe* sqe_for(Driver* d) {
    struct io_uring_sqe* sqe = d->ring.get_sqe();
    if (!sqe) {
        d->enters.fetch_add(1, std::memory_order_relaxed);
        d->ring.submit();
        sqe = d->ring.get_sqe();
    }
    return sqe;
}

// Fills an SQE for op (its phase becomes IN_KERNEL; the kernel's reference
// is taken). Called by the driver's holder with op->mu held. Returns false
// when no SQE could be had (the op completes with -EBUSY).
bool uring_prep(Driver* d, IoOp* op) {
    struct io_uring_sqe* sqe = sqe_for(d);
    if (!sqe) return false;
    sqe->fd = op->fd;
    sqe->user_data = (uint64_t)(uintptr_t)op;
    switch (op->kind) {
    case K_RECV:
        sqe->opcode = IORING_OP_RECV;
        sqe->addr = (uint64_t)(uintptr_t)op->ptr;
        sqe->len = op->len;
        sqe->msg_flags = (uint32_t)op->aux;
        break;
    case K_SEND:
        sqe->opcode = IORING_OP_SEND;
        sqe->addr = (uint64_t)(uintptr_t)op->ptr;
        sqe->len = op->len;
        sqe->msg_flags = (uint32_t)op->aux | MSG_NOSIGNAL;
        break;
    case K_READ:
    case K_WRITE:
        sqe->opcode = op->kind == K_READ ? IORING_OP_READ : IORING_OP_WRITE;
        sqe->addr = (uint64_t)(uintptr_t)op->ptr;
        sqe->len = op->len;
        sqe->off = (uint64_t)op->offset;  // -1: the current position
        break;
    case K_READV:
    case K_WRITEV:
        sqe->opcode = op->kind == K_READV ? IORING_OP_READV : IORING_OP_WRITEV;
        sqe->addr = (uint64_t)(uintptr_t)op->iov;
        sqe->len = (uint32_t)op->iovcnt;
        sqe->off = (uint64_t)op->offset;
        break;
    case K_ACCEPT:
        sqe->opcode = IORING_OP_ACCEPT;
        sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
        if (op->multishot && op->ms_kernel) {
            // Multishot accept (5.19): one SQE, a CQE per connection. An
            // older kernel answers -EINVAL, and the op goes on with one
            // accept at a time (uring_complete).
            sqe->ioprio |= IORING_ACCEPT_MULTISHOT;
            op->armed = true;
        }
        break;
    case K_CONNECT:
        sqe->opcode = IORING_OP_CONNECT;
        sqe->addr = (uint64_t)(uintptr_t)op->addr;
        sqe->off = op->addrlen;
        break;
    case K_CLOSE:
        sqe->opcode = IORING_OP_CLOSE;
        break;
    case K_SHUTDOWN:
        sqe->opcode = IORING_OP_SHUTDOWN;
        sqe->len = (uint32_t)op->aux;
        break;
    case K_POLL:
        sqe->opcode = IORING_OP_POLL_ADD;
        sqe->poll32_events = (uint32_t)op->aux;
        break;
    }
    op->phase = IN_KERNEL;
    op->driver = d;
    op->refs.fetch_add(1, std::memory_order_relaxed);
    d->in_flight++;
    d->submitted.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void uring_cancel(Driver* d, IoOp* op) {
    struct io_uring_sqe* sqe = sqe_for(d);
    if (!sqe) return;  // the op completes by itself, or at shutdown
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->addr = (uint64_t)(uintptr_t)op;
    sqe->user_data = TAG_IGNORE;
}

void acc_push(IoOp* op, int fd) {
    if (op->dropped) {
        port::close_fd(fd);
        return;
    }
    if (op->acc_n == op->acc_cap) {
        uint32_t cap = op->acc_cap ? op->acc_cap * 2 : 16;
        int* n = static_cast<int*>(port::alloc(sizeof(int) * cap));
        if (!n) {
            port::close_fd(fd);  // out of memory: the peer sees a reset
            return;
        }
        for (uint32_t i = 0; i < op->acc_n; i++) n[i] = op->acc[(op->acc_head + i) % op->acc_cap];
        port::free(op->acc);
        op->acc = n;
        op->acc_cap = cap;
        op->acc_head = 0;
    }
    op->acc[(op->acc_head + op->acc_n++) % op->acc_cap] = fd;
}

// One CQE for op, on the driver's holder.
void uring_complete(Driver* d, IoOp* op, int32_t res, uint32_t flags) {
    bool last = true;
    weft_waker w;
    {
        port::LockGuard g(op->mu);
        if (op->kind == K_ACCEPT && op->multishot) {
            if (flags & IORING_CQE_F_MORE) last = false;
            if (res >= 0) {
                acc_push(op, res);
            } else if (res == -EINVAL && op->armed && !op->cancel_sent) {
                op->ms_kernel = false;  // no multishot accept here: one at a time from now on
            } else if (!op->dropped) {
                op->acc_error = op->timed_out && res == -ECANCELED ? WEFT_ETIMEDOUT : res;
            }
            if (last) {
                op->armed = false;
                op->phase = DONE;
            }
        } else {
            op->result = op->timed_out && res == -ECANCELED ? WEFT_ETIMEDOUT : res;
            op->phase = DONE;
        }
        w = take_waker(op);
    }
    wake_taken(op, w);
    if (last) {
        // Counted once per submission, at its last CQE (a multishot accept
        // has many), so the status's in_flight stays exact.
        d->completed.fetch_add(1, std::memory_order_relaxed);
        d->in_flight--;
        op_release(op);
    }
}

// Takes the remote requests (under remote_mu) and serves them.
void take_remote(Driver* d) {
    // seq_cst (a plain load on x86-64): the close's Dekker pair with
    // push_remote (uring_drain).
    if (!d->remote_any.load(std::memory_order_seq_cst)) return;
    IoOp* list;
    {
        port::LockGuard g(d->remote_mu);
        list = d->remote_head;
        d->remote_head = d->remote_tail = nullptr;
        d->remote_any.store(false, std::memory_order_relaxed);
    }
    while (list) {
        IoOp* op = list;
        list = op->remote_next;
        op->remote_next = nullptr;
        bool release = false;
        weft_waker w{nullptr, nullptr};
        {
            port::LockGuard g(op->mu);
            if (op->remote_cancel) {
                op->remote_cancel = false;
                if (op->phase == IN_KERNEL && !d->closed.load(std::memory_order_relaxed)) uring_cancel(d, op);
                release = true;  // the request's reference
            } else if (op->phase == REMOTE) {
                release = true;  // the request's reference (uring_prep takes the kernel's)
                // Draining (uring_drain): the cancel of everything was
                // already queued, so an op submitted now would outlive it.
                if (op->dropped || d->draining.load(std::memory_order_relaxed) ||
                    d->closed.load(std::memory_order_relaxed)) {
                    op->result = op->timed_out ? WEFT_ETIMEDOUT : WEFT_ECANCELED;
                    op->phase = DONE;
                } else if (!uring_prep(d, op)) {
                    op->result = -EBUSY;
                    op->phase = DONE;
                }
                if (op->phase == DONE) w = take_waker(op);
            }
        }
        wake_taken(op, w);
        if (release) op_release(op);
    }
}

void push_remote(Driver* d, IoOp* op, bool cancel) {
    op->refs.fetch_add(1, std::memory_order_relaxed);  // the request's reference
    op->remote_cancel = cancel;
    {
        port::LockGuard g(d->remote_mu);
        if (d->remote_tail) d->remote_tail->remote_next = op; else d->remote_head = op;
        d->remote_tail = op;
        // seq_cst: on a tpc executor, the store side of the Dekker pair
        // with its sleeping flag (tpc.h); a release store would do for the
        // worker's parker, whose unpark is an RMW on its own state word.
        d->remote_any.store(true, std::memory_order_seq_cst);
    }
    if (d->worker) d->worker->parker.unpark();
    else d->st->notify(d->st->notify_arg);
    // The driver closed meanwhile (its holder's last take_remote may have
    // run before our push): serve the request here, where it completes
    // with WEFT_ECANCELED. seq_cst pairs with the close (uring_drain):
    // either we see it, or its take_remote sees our push.
    if (d->closed.load(std::memory_order_seq_cst)) take_remote(d);
}

uint32_t uring_reap(Driver* d) {
    uint32_t woken = 0;
    while (struct io_uring_cqe* cqe = d->ring.peek_cqe()) {
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        uint32_t flags = cqe->flags;
        d->ring.cq_advance(1);
        if (ud == TAG_WAKE) {
            d->wake_posted = false;
            continue;
        }
        if (ud & TAG_MASK) continue;  // TAG_IGNORE
        uring_complete(d, reinterpret_cast<IoOp*>((uintptr_t)ud), res, flags);
        woken++;
    }
    return woken;
}

// ---- epoll ---------------------------------------------------------------------

FdEntry* fd_entry(IoState* st, int fd) {
    FdTable* t = st->fds;
    uint32_t page = (uint32_t)fd / FD_PAGE;
    if (page >= FD_PAGES) return nullptr;
    FdEntry* p = t->pages[page].load(std::memory_order_acquire);
    if (!p) {
        void* mem = port::alloc(sizeof(FdEntry) * FD_PAGE);
        if (!mem) return nullptr;
        FdEntry* fresh = static_cast<FdEntry*>(mem);
        for (uint32_t i = 0; i < FD_PAGE; i++) new (&fresh[i]) FdEntry();
        // acq_rel: publish the constructed entries, or see the winner's.
        if (t->pages[page].compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) {
            p = fresh;
        } else {
            port::free(fresh);
        }
    }
    return &p[(uint32_t)fd % FD_PAGE];
}

uint32_t interest_of(const FdEntry* e) {
    uint32_t m = 0;
    for (IoOp* o = e->head; o; o = o->ep.next) m |= o->ep.interest;
    return m;
}

// Arms e (under e->mu) for its waiters' interests: in the set it is in, or
// else in d_if_new's.
int ep_arm(FdEntry* e, int fd, Driver* d_if_new) {
    uint32_t m = interest_of(e);
    if (!m) return 0;
    uint32_t ev = m | EPOLLONESHOT | EPOLLRDHUP;
    if (e->driver) {
        int r = port::epoll_ctl_mod(e->driver->epfd, fd, ev, (uint64_t)fd);
        if (r != -ENOENT) return r;
        e->driver = nullptr;  // the fd was closed and its number reused
    }
    int r = port::epoll_ctl_add(d_if_new->epfd, fd, ev, (uint64_t)fd);
    if (r == 0) e->driver = d_if_new;
    return r;
}

void ep_unlink(IoOp* op) {
    FdEntry* e = op->ep.entry;
    if (op->ep.prev) op->ep.prev->ep.next = op->ep.next; else e->head = op->ep.next;
    if (op->ep.next) op->ep.next->ep.prev = op->ep.prev;
    op->ep.prev = op->ep.next = nullptr;
    op->ep.entry = nullptr;
}

// Registers op as a waiter for `interest` on its fd (under op->mu). Returns
// 0, or -errno when the fd cannot be watched (the op completes with it).
int ep_wait(IoState* st, IoOp* op, uint32_t interest) {
    if (!op->ep.home) op->ep.home = fd_entry(st, op->fd);
    FdEntry* e = op->ep.home;
    if (!e) return -ENOMEM;
    // Where an fd not in any set goes: a worker's own set, else any (epoll_ctl
    // may be called from any thread, and the waiter is woken by whichever
    // set reports the fd).
    Driver* d = st->sh ? io_current_driver(st->sh) : &st->drivers[0];
    if (!d) d = &st->drivers[st->remote_rr.fetch_add(1, std::memory_order_relaxed) % st->ndrivers];
    if (d->closed.load(std::memory_order_acquire)) return WEFT_ECLOSED;
    port::LockGuard g(e->mu);
    if (op->ep.entry) return 0;  // already waiting
    // Again under the entry's lock: shutdown marks every driver closed, then
    // wakes each entry's waiters under its lock (ep_wake_all). A wait linked
    // after that would never be woken.
    if (d->closed.load(std::memory_order_acquire)) return WEFT_ECLOSED;
    Driver* before = e->driver;
    op->ep.interest = interest;
    op->ep.entry = e;
    op->ep.gen = e->gen;
    op->ep.prev = nullptr;
    op->ep.next = e->head;
    if (e->head) e->head->ep.prev = op;
    e->head = op;
    int r = ep_arm(e, op->fd, d);
    if (r < 0) {
        ep_unlink(op);
        return r;  // EPERM: a regular file, which epoll refuses; the op fails with it
    }
    op->phase = IN_KERNEL;
    // Counted like io_uring's submissions (status): a wait the kernel holds,
    // on the driver whose set holds the fd (added there by an earlier wait,
    // perhaps from another worker): that driver's worker reports it, and the
    // counts say whether I/O may complete on it (io_may_complete,
    // io_quiet_hint).
    op->driver = e->driver ? e->driver : d;  // (armed: always set)
    op->driver->submitted.fetch_add(1, std::memory_order_relaxed);
    if (before && before != op->driver) {
        // The fd moved to op->driver's set (its number was closed outside
        // weft and reused: ep_arm's ENOENT): the waiters already linked are
        // reported by that set now, so they count there too.
        for (IoOp* o = e->head; o; o = o->ep.next) {
            if (o == op || o->driver == op->driver) continue;
            o->driver->completed.fetch_add(1, std::memory_order_relaxed);
            op->driver->submitted.fetch_add(1, std::memory_order_relaxed);
            o->driver = op->driver;
        }
    }
    if (!st->ep_waited.load(std::memory_order_relaxed)) st->ep_waited.store(true, std::memory_order_relaxed);
    return 0;
}

void ep_cancel_wait(IoOp* op) {
    FdEntry* e = op->ep.home;
    if (!e) return;
    port::LockGuard g(e->mu);
    if (op->ep.entry) {
        ep_unlink(op);
        op->driver->completed.fetch_add(1, std::memory_order_relaxed);
    }
}

int ep_event_batch(FdEntry* e, int fd, uint32_t events, uint64_t before_gen);

// Wakes the waiters of fd that `events` satisfies; re-arms for the rest.
// In batches of 64 (taken under the entry's lock, woken after it). A
// readiness event wakes one batch: the rest stay armed, and the set reports
// the fd again. A wake-all (events ~0u: a close, the shutdown) is not
// repeated by the set, so it takes every waiter linked when it began (it
// used to stop after one batch: a 65th waiter was never woken), and only
// those: a woken waiter that retries and links again (a close wakes before
// it closes) is not taken a second time, so the pass ends after
// ceil(waiters / 64) batches. Tests: Io.EveryWaiterOnOneFdEndsWhenTheRuntimeIsFreed,
// Io.EveryWaiterOnOneFdEndsWhenItIsClosed.
void ep_event(IoState* st, int fd, uint32_t events) {
    FdEntry* e = fd_entry(st, fd);
    if (!e) return;
    if (events != ~0u) {
        ep_event_batch(e, fd, events, UINT64_MAX);
        return;
    }
    uint64_t stop;
    {
        port::LockGuard g(e->mu);
        stop = ++e->gen;  // waiters linked from now on are not this pass's
    }
    while (ep_event_batch(e, fd, events, stop) == 64) {
    }
}

// One batch of ep_event: waiters linked before generation before_gen; returns
// how many it woke (at most 64).
int ep_event_batch(FdEntry* e, int fd, uint32_t events, uint64_t before_gen) {
    IoOp* ops[64];
    int n = 0;
    {
        port::LockGuard g(e->mu);
        uint32_t any = EPOLLERR | EPOLLHUP;
        IoOp* o = e->head;
        while (o && n < 64) {
            IoOp* next = o->ep.next;
            uint32_t hit = events & (o->ep.interest | any | (o->ep.interest & EPOLLIN ? (uint32_t)EPOLLRDHUP : 0u));
            if (o->ep.gen >= before_gen) hit = 0;  // linked after this wake-all began
            if (hit) {
                ep_unlink(o);
                o->driver->completed.fetch_add(1, std::memory_order_relaxed);
                // Keeps o alive past e->mu: its user may free it meanwhile.
                o->refs.fetch_add(1, std::memory_order_relaxed);
                ops[n++] = o;
            }
            o = next;
        }
        // A wake-all's fd is going away (or its waiters linked after it
        // began armed it themselves): no re-arm.
        if (e->head && e->driver && events != ~0u) ep_arm(e, fd, e->driver);
    }
    // Lock order is op, then entry (ep_wait): the ops' locks come after.
    for (int i = 0; i < n; i++) {
        IoOp* o = ops[i];
        weft_waker w;
        {
            port::LockGuard g(o->mu);
            o->ep_fired = true;
            w = take_waker(o);
        }
        wake_taken(o, w);
        op_release(o);
    }
    return n;
}

uint32_t ep_dispatch(Driver* d, int64_t timeout_ns) {
    port::EpollEvent evs[64];
    d->enters.fetch_add(1, std::memory_order_relaxed);
    int n = port::epoll_wait_ns(d->epfd, evs, 64, timeout_ns);
    uint32_t woken = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].data == UINT64_MAX) {
            port::eventfd_drain(d->wake_fd);
            continue;
        }
        ep_event(d->st, (int)evs[i].data, evs[i].events);
        woken++;
    }
    return woken;
}

// The epoll backend's attempt at op (under op->mu): the non-blocking call,
// and a wait on readiness when it would block. Returns true when done
// (op->result set).
bool ep_attempt(IoState* st, IoOp* op) {
    int64_t r = 0;
    uint32_t interest = EPOLLIN;
    switch (op->kind) {
    case K_RECV: r = port::sys_recv(op->fd, op->ptr, op->len, op->aux); break;
    case K_SEND: r = port::sys_send(op->fd, op->ptr, op->len, op->aux); interest = EPOLLOUT; break;
    case K_READ: r = port::sys_pread(op->fd, op->ptr, op->len, op->offset); break;
    case K_WRITE: r = port::sys_pwrite(op->fd, op->ptr, op->len, op->offset); interest = EPOLLOUT; break;
    case K_READV: r = port::sys_preadv(op->fd, op->iov, op->iovcnt, op->offset); break;
    case K_WRITEV: r = port::sys_pwritev(op->fd, op->iov, op->iovcnt, op->offset); interest = EPOLLOUT; break;
    case K_ACCEPT: r = port::sys_accept(op->fd); break;
    case K_CONNECT:
        interest = EPOLLOUT;
        if (!op->connect_started) {
            r = port::sys_connect(op->fd, reinterpret_cast<const struct sockaddr*>(op->addr), op->addrlen);
            if (r == -EINPROGRESS) {
                op->connect_started = true;
                r = -EAGAIN;
            }
        } else {
            int ready = port::sys_poll_now(op->fd, POLLOUT);
            r = ready < 0 ? ready : ready == 0 ? -EAGAIN : port::sys_socket_error(op->fd);
        }
        break;
    case K_CLOSE: {
        // Waiters on this fd would never hear of it again: wake them all,
        // forget the registration (the close removes the fd from its set),
        // close, and wake whoever linked meanwhile (a waiter of the first
        // pass that retried before the close found the fd still open and
        // waited again). Their retry then fails with EBADF.
        ep_event(st, op->fd, ~0u);
        if (FdEntry* e = fd_entry(st, op->fd)) {
            port::LockGuard g(e->mu);
            e->driver = nullptr;
        }
        r = port::close_fd(op->fd);
        ep_event(st, op->fd, ~0u);
        break;
    }
    case K_SHUTDOWN: r = port::sys_shutdown(op->fd, op->aux); break;
    case K_POLL: {
        int ready = port::sys_poll_now(op->fd, (uint32_t)op->aux);
        r = ready == 0 ? -EAGAIN : ready;
        interest = (((uint32_t)op->aux & POLLIN) ? (uint32_t)EPOLLIN : 0u) | (((uint32_t)op->aux & POLLOUT) ? (uint32_t)EPOLLOUT : 0u);
        if (!interest) interest = EPOLLIN;
        break;
    }
    }
    if (r == -EINTR) r = -EAGAIN;
    if (r == -EAGAIN || r == -EWOULDBLOCK) {
        op->ep_fired = false;
        int w = ep_wait(st, op, interest);
        if (w == 0) return false;
        r = w;
    }
    if (op->kind == K_ACCEPT && op->multishot) {
        if (r >= 0) acc_push(op, (int)r); else op->acc_error = (int)r;
    } else {
        op->result = r;
    }
    op->phase = DONE;
    return true;
}

// ---- op lifetime -------------------------------------------------------------------

void op_release(IoOp* op) {
    if (op->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // No timer is registered now: a registered one holds a reference.
    if (op->has_waker) op->waker.vtable->drop(op->waker.data);
    for (uint32_t i = 0; i < op->acc_n; i++) port::close_fd(op->acc[(op->acc_head + i) % op->acc_cap]);
    port::free(op->acc);
    port::free(op->iov);
    weft_buf_free(op->keep);
    Shared* sh = op->sh;
    IoState* st = op->st;
    op->~IoOp();
    pool::free(op, sizeof(IoOp));
    if (sh) runtime_release(sh);
    else state_release(st);
}

// Starts op (under op->mu) on the poller's driver, or queues it on one.
void op_start(IoOp* op) {
    IoState* st = op->st;
    // Started after the runtime's shutdown (a plain thread's operation): no
    // driver will ever serve it.
    if (st->drivers[0].closed.load(std::memory_order_acquire)) {
        op->result = WEFT_ECLOSED;
        op->phase = DONE;
        return;
    }
    if (st->backend == IO_EPOLL) {
        ep_attempt(st, op);
        return;
    }
    if (!st->sh) {
        // A tpc executor's state: its own thread submits directly.
        if (owner_of_tpc_state(st)) {
            Driver* d = &st->drivers[0];
            if (!uring_prep(d, op)) {
                op->result = -EBUSY;
                op->phase = DONE;
            }
            return;
        }
        Driver* d = &st->drivers[0];
        op->phase = REMOTE;
        op->driver = d;
        push_remote(d, op, false);
        return;
    }
    Shared* sh = st->sh;
    Worker* w = t_worker;
    if (w && w->shared == sh) {
        CoreOp guard(w);
        if (guard.ok) {
            Driver* d = driver_of(w);
            bool closed = d->closed.load(std::memory_order_relaxed);
            if (closed || !uring_prep(d, op)) {
                op->result = closed ? WEFT_ECLOSED : -EBUSY;
                op->phase = DONE;
            }
            return;
        }
    }
    // A thread holding no worker: a driver's holder submits it.
    Driver* d = &st->drivers[st->remote_rr.fetch_add(1, std::memory_order_relaxed) % st->ndrivers];
    op->phase = REMOTE;
    op->driver = d;
    push_remote(d, op, false);
}

// Cancels op in the kernel (io_uring; under op->mu).
void op_cancel(IoOp* op) {
    if (op->phase != IN_KERNEL || op->cancel_sent) return;
    op->cancel_sent = true;
    Driver* d = op->driver;
    // Closed: io_shutdown has waited for every operation the kernel held.
    if (d->closed.load(std::memory_order_acquire)) return;
    if (!d->worker && owner_of_tpc_state(d->st)) {
        uring_cancel(d, op);
        return;
    }
    Worker* w = t_worker;
    if (w && w->io == d) {
        CoreOp guard(w);
        if (guard.ok) {
            uring_cancel(d, op);
            return;
        }
    }
    push_remote(d, op, true);
}

inline bool uring(const IoOp* op) { return op->st->backend == IO_URING; }

}  // namespace

Driver* io_current_driver(Shared* sh) {
    Worker* w = t_worker;
    return w && w->shared == sh ? w->io : nullptr;
}

// ---- scheduler hooks -------------------------------------------------------------

bool io_may_complete(Worker* w) {
    Driver* d = w->io;
    if (!d) return false;
    if (d->backend == IO_URING) return d->ring.sq_pending() != 0 || d->in_flight != 0;
    // epoll: waits registered on this driver's set and not ended yet.
    return d->submitted.load(std::memory_order_relaxed) != d->completed.load(std::memory_order_relaxed);
}

bool io_quiet_hint(const Worker* w) {
    const Driver* d = w->io;
    if (!d) return true;
    // relaxed: counters the holder bumps; a stale read delays a handoff by
    // one monitor period at most, or starts one that was not needed.
    return d->submitted.load(std::memory_order_relaxed) == d->completed.load(std::memory_order_relaxed) &&
           !d->remote_any.load(std::memory_order_relaxed);
}

uint32_t io_tick(Worker* w, bool submit) {
    Driver* d = w->io;
    if (d->backend == IO_EPOLL)
        return submit && d->st->ep_waited.load(std::memory_order_relaxed) ? ep_dispatch(d, 0) : 0;
    take_remote(d);
    if (submit && d->ring.sq_pending()) {
        d->enters.fetch_add(1, std::memory_order_relaxed);
        d->ring.submit();
    }
    return uring_reap(d);
}

uint32_t io_park(Worker* w, int64_t timeout_ns) {
    Driver* d = w->io;
    if (d->backend == IO_EPOLL) {
        uint32_t woken = 0;
        w->parker.park_in(timeout_ns, [&](int64_t t) { woken = ep_dispatch(d, t); });
        return woken;
    }
    take_remote(d);
    uint32_t woken = uring_reap(d);
    if (woken) {
        if (d->ring.sq_pending()) {
            d->enters.fetch_add(1, std::memory_order_relaxed);
            d->ring.submit();
        }
        return woken;
    }
    post_wake_read(d);
    w->parker.park_in(timeout_ns, [&](int64_t t) {
        d->enters.fetch_add(1, std::memory_order_relaxed);
        d->ring.submit_and_wait(1, t);
    });
    take_remote(d);
    return uring_reap(d);
}

// ---- lifecycle ----------------------------------------------------------------------

namespace {

// Whether the process runs under Valgrind, which starts every program it
// runs with its core preload library in LD_PRELOAD (any tool: memcheck,
// callgrind, helgrind...). Valgrind runs one thread at a time and does not
// treat io_uring_enter as a call that may block: a worker waiting in its
// ring keeps every other thread from running, so the thread that would wake
// it never does, and the process hangs (here it did not even answer
// SIGTERM; only SIGKILL ended it). liburing issue #657 and glommio issue
// #582 report the same hang. So under Valgrind weft uses epoll, unless
// WEFT_IO=uring asks for the ring anyway.
bool under_valgrind() {
    const char* preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "/vgpreload_core-") != nullptr;
}

// Chooses the backend (WEFT_IO, then Valgrind, then io_uring with every
// opcode probed, then epoll) and records why. 0, or the error when
// WEFT_IO=uring forces a ring that cannot be had.
int choose_backend(IoState* st) {
    const char* force = getenv("WEFT_IO");
    bool want_epoll = force && strcmp(force, "epoll") == 0;
    bool want_uring = force && strcmp(force, "uring") == 0;
    if (force && !want_epoll && !want_uring) {
        port::write_stderr("weft: WEFT_IO must be 'uring' or 'epoll'; ignoring it\n");
    }
    bool valgrind = !want_uring && !want_epoll && under_valgrind();
    int err = 0;
    bool no_cancel_any = false;
    if (!want_epoll && !valgrind) {
        err = port::uring_probe_available();
        if (err == 0) {
            // The opcodes the operations need (5.6 has them all but
            // SHUTDOWN: 5.11, which EXT_ARG already requires).
            port::Ring probe;
            probe.init(4);
            static const uint8_t need[] = {IORING_OP_RECV, IORING_OP_SEND, IORING_OP_READ, IORING_OP_WRITE,
                                           IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_ACCEPT, IORING_OP_CONNECT,
                                           IORING_OP_CLOSE, IORING_OP_SHUTDOWN, IORING_OP_POLL_ADD,
                                           IORING_OP_ASYNC_CANCEL};
            for (uint8_t op : need) {
                if (!probe.supports(op)) err = -EOPNOTSUPP;
            }
            // And one cancel for all of a ring's requests (5.19): without
            // it, a plain thread's operation that outlives its runtime would
            // never be cancelled (uring_drain).
            if (err == 0 && port::uring_cancel_any_supported(probe) != 1) {
                err = -EOPNOTSUPP;
                no_cancel_any = true;
            }
        }
    }
    st->uring_error = err;
    if (!want_epoll && !valgrind && err == 0) {
        st->backend = IO_URING;
        st->why = want_uring ? "io_uring (forced by WEFT_IO=uring)" : "io_uring (available, every opcode weft needs probed)";
    } else if (want_uring) {
        st->why = "WEFT_IO=uring, but io_uring cannot be used here";
        return err ? err : WEFT_EINVAL;
    } else {
        st->backend = IO_EPOLL;
        if (want_epoll) st->why = "epoll (forced by WEFT_IO=epoll)";
        else if (valgrind)
            st->why = "epoll: running under Valgrind, where a thread waiting in io_uring_enter stops every other "
                      "thread (WEFT_IO=uring forces the ring)";
        else if (err == -ENOSYS) st->why = "epoll: this kernel has no io_uring (ENOSYS)";
        else if (err == -EPERM) st->why = "epoll: io_uring is forbidden here (EPERM: kernel.io_uring_disabled or seccomp)";
        else if (no_cancel_any)
            st->why = "epoll: the kernel's io_uring lacks IORING_ASYNC_CANCEL_ANY (5.19+), which its shutdown needs";
        else if (err == -EOPNOTSUPP) st->why = "epoll: the kernel's io_uring lacks a feature weft needs (5.11+: EXT_ARG, SHUTDOWN)";
        else st->why = "epoll: io_uring could not be set up (see uring_error)";
    }
    if (st->backend == IO_EPOLL) {
        void* mem = port::alloc(sizeof(FdTable));
        if (!mem) return WEFT_ENOMEM;
        st->fds = new (mem) FdTable();
    }
    return 0;
}

// Allocates st's drivers (not set up yet).
int alloc_drivers(IoState* st, uint32_t n) {
    void* mem = port::alloc(sizeof(Driver) * n);
    if (!mem) return WEFT_ENOMEM;
    st->drivers = static_cast<Driver*>(mem);
    st->ndrivers = n;
    for (uint32_t i = 0; i < n; i++) {
        new (&st->drivers[i]) Driver();
        st->drivers[i].st = st;
        st->drivers[i].backend = st->backend;
    }
    return 0;
}

// The driver's ring, or its epoll set watching wake_fd (set before).
int setup_driver(Driver* d) {
    if (d->backend == IO_URING) return d->ring.init(RING_ENTRIES);
    d->epfd = port::epoll_new();
    if (d->epfd < 0) return d->epfd;
    return port::epoll_ctl_add(d->epfd, d->wake_fd, EPOLLIN, UINT64_MAX);
}

// epoll at shutdown: every waiter left (a plain thread's operation: the
// tasks' were freed with them) is woken; its retry finds the drivers closed
// and completes with WEFT_ECLOSED.
void ep_wake_all(IoState* st) {
    FdTable* t = st->fds;
    for (uint32_t p = 0; p < FD_PAGES; p++) {
        FdEntry* page = t->pages[p].load(std::memory_order_acquire);
        if (!page) continue;
        for (uint32_t i = 0; i < FD_PAGE; i++) {
            bool waited_on;
            {
                port::LockGuard g(page[i].mu);
                waited_on = page[i].head != nullptr;
            }
            if (waited_on) ep_event(st, (int)(p * FD_PAGE + i), ~0u);
        }
    }
}

// Shutdown of one io_uring driver by its holder: cancel everything the
// kernel holds and wait for every answer (memory an operation lent the
// kernel is released only after it), then close it to new operations.
// `reap` reaps the ring (the driver's own reap, or a tpc executor's).
void uring_drain(Driver* d, void (*reap)(void*), void* arg) {
    d->draining.store(true, std::memory_order_relaxed);  // holder's own flag, read by its take_remote
    take_remote(d);
    struct io_uring_sqe* sqe = sqe_for(d);
    if (sqe) {
        sqe->opcode = IORING_OP_ASYNC_CANCEL;
        // Every request of this ring (5.19; choose_backend chose epoll on
        // a kernel without it).
        sqe->cancel_flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
        sqe->user_data = TAG_IGNORE;
    }
    // Bounded, should an answer never come: past the bound the ring's close
    // cancels the rest (their memory is leaked rather than freed under the
    // kernel).
    uint64_t give_up = port::monotonic_ns() + 5000000000ull;
    while (d->in_flight && port::monotonic_ns() < give_up) {
        d->ring.submit_and_wait(1, 10000000);
        reap(arg);
        take_remote(d);
    }
    d->closed.store(true, std::memory_order_seq_cst);
    take_remote(d);  // requests pushed before the close (push_remote serves later ones)
}

void reap_driver(void* d) { uring_reap(static_cast<Driver*>(d)); }

void close_driver(Driver* d) {
    d->ring.exit();
    if (d->epfd >= 0) port::close_fd(d->epfd);
    d->epfd = -1;
    if (d->owns_wake_fd && d->wake_fd >= 0) port::close_fd(d->wake_fd);
    d->wake_fd = -1;
}

void state_free(IoState* st) {
    if (st->drivers) {
        for (uint32_t i = 0; i < st->ndrivers; i++) {
            close_driver(&st->drivers[i]);
            st->drivers[i].~Driver();
        }
        port::free(st->drivers);
    }
    if (st->fds) {
        for (uint32_t p = 0; p < FD_PAGES; p++) port::free(st->fds->pages[p].load(std::memory_order_relaxed));
        port::free(st->fds);
    }
    st->~IoState();
    port::free(st);
}

void state_release(IoState* st) {
    if (st->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) state_free(st);
}

}  // namespace

int io_init(Shared* sh) {
    void* mem = port::alloc(sizeof(IoState));
    if (!mem) return WEFT_ENOMEM;
    IoState* st = new (mem) IoState();
    st->sh = sh;
    sh->io = st;
    int r = choose_backend(st);
    if (r != 0) return r;
    if ((r = alloc_drivers(st, sh->nworkers)) != 0) return r;
    for (uint32_t i = 0; i < sh->nworkers; i++) {
        Driver* d = &st->drivers[i];
        d->worker = &sh->workers[i];
        int fd = port::eventfd_new();
        if (fd < 0) return fd;
        d->wake_fd = fd;
        if ((r = setup_driver(d)) < 0) return r;
        sh->workers[i].io = d;
        sh->workers[i].parker.set_wake_fd(d->wake_fd, &d->wake_writes);
    }
    return 0;
}

void io_shutdown(Shared* sh) {
    IoState* st = io_state(sh);
    if (!st || !st->drivers) return;
    if (st->backend == IO_EPOLL) {
        for (uint32_t i = 0; i < st->ndrivers; i++) st->drivers[i].closed.store(true, std::memory_order_release);
        ep_wake_all(st);
        return;
    }
    for (uint32_t i = 0; i < st->ndrivers; i++) {
        Driver* d = &st->drivers[i];
        if (d->backend != IO_URING || !d->ring.ok()) {
            d->closed.store(true, std::memory_order_release);
            continue;
        }
        // Requests queued by the last drops (shutdown step 5) are taken first.
        uring_drain(d, reap_driver, d);
    }
}

void io_destroy(Shared* sh) {
    IoState* st = io_state(sh);
    if (!st) return;
    state_free(st);
    sh->io = nullptr;
}

// ---- the thread-per-core executor's I/O ---------------------------------------------

int io_tpc_new(const TpcIoConfig& cfg, IoState** out) {
    *out = nullptr;
    void* mem = port::alloc(sizeof(IoState));
    if (!mem) return WEFT_ENOMEM;
    IoState* st = new (mem) IoState();
    st->notify = cfg.notify;
    st->notify_arg = cfg.notify_arg;
    int r = choose_backend(st);
    if (r == 0) r = alloc_drivers(st, 1);
    if (r == 0) {
        Driver* d = &st->drivers[0];
        d->wake_fd = cfg.mailbox_fd;
        d->owns_wake_fd = false;
        r = setup_driver(d);
        // A ring that cannot be set up after all (memory limits): epoll.
        if (r < 0 && st->backend == IO_URING && !(getenv("WEFT_IO") && strcmp(getenv("WEFT_IO"), "uring") == 0)) {
            d->ring.exit();
            st->uring_error = r;
            st->backend = d->backend = IO_EPOLL;
            st->why = "epoll: io_uring could not be set up (see uring_error)";
            void* fm = port::alloc(sizeof(FdTable));
            st->fds = fm ? new (fm) FdTable() : nullptr;
            r = fm ? setup_driver(d) : WEFT_ENOMEM;
        }
    }
    if (r < 0) {
        state_free(st);
        return r;
    }
    *out = st;
    return 0;
}

port::Ring* io_tpc_ring(IoState* st) { return st->backend == IO_URING ? &st->drivers[0].ring : nullptr; }

void io_tpc_cqe(IoState* st, uint64_t ud, int32_t res, uint32_t flags) {
    if (ud & TAG_MASK) return;  // TAG_IGNORE: a cancel's own answer
    // SAFETY: every other user_data in this ring is the IoOp* uring_prep
    // set, alive until this, its last CQE, releases the kernel's reference.
    uring_complete(&st->drivers[0], reinterpret_cast<IoOp*>((uintptr_t)ud), res, flags);
}

void io_tpc_take_remote(IoState* st) {
    Driver* d = &st->drivers[0];
    if (d->backend == IO_URING) take_remote(d);
}

bool io_tpc_remote_pending(const IoState* st) {
    return st->drivers[0].remote_any.load(std::memory_order_seq_cst);
}

bool io_tpc_may_complete(const IoState* st) {
    const Driver* d = &st->drivers[0];
    if (d->backend == IO_URING) return d->ring.sq_pending() != 0 || d->in_flight != 0;
    return d->submitted.load(std::memory_order_relaxed) != d->completed.load(std::memory_order_relaxed);
}

void io_tpc_tick(IoState* st) {
    Driver* d = &st->drivers[0];
    if (d->backend == IO_EPOLL) {
        if (io_tpc_may_complete(st)) ep_dispatch(d, 0);
        return;
    }
    if (d->ring.sq_pending()) {
        d->enters.fetch_add(1, std::memory_order_relaxed);
        d->ring.submit();
    }
}

void io_tpc_epoll_wait(IoState* st, int64_t timeout_ns) { ep_dispatch(&st->drivers[0], timeout_ns); }

void io_tpc_shutdown(IoState* st, void (*reap)(void*), void* arg) {
    Driver* d = &st->drivers[0];
    if (d->backend == IO_URING) {
        uring_drain(d, reap, arg);
    } else {
        d->closed.store(true, std::memory_order_release);
        ep_wake_all(st);
    }
}

void io_tpc_release(IoState* st) {
    Driver* d = &st->drivers[0];
    d->closed.store(true, std::memory_order_release);
    // The kernel holds nothing of it (io_tpc_shutdown): close the ring and
    // the epoll set now; the memory stays while operations hold references.
    close_driver(d);
    state_release(st);
}

void io_fill_status(const IoState* st, weft_io_status* out) {
    memset(out, 0, sizeof *out);
    out->size = sizeof *out;
    out->backend = st->backend;
    out->uring_impl = WEFT_HAVE_LIBURING ? 1 : 2;
    out->uring_error = st->uring_error;
    out->why = st->why;
    for (uint32_t i = 0; i < st->ndrivers; i++) {
        const Driver* d = &st->drivers[i];
        out->submitted += d->submitted.load(std::memory_order_relaxed);
        out->completed += d->completed.load(std::memory_order_relaxed);
        out->enters += d->enters.load(std::memory_order_relaxed);
        out->wake_writes += d->wake_writes.load(std::memory_order_relaxed);
    }
    out->in_flight = out->submitted >= out->completed ? out->submitted - out->completed : 0;
}

}  // namespace weft::kernel

// ---- the C ABI --------------------------------------------------------------------

using namespace weft::kernel;

extern "C" {

weft_buf* weft_buf_new(size_t capacity) {
    if (capacity == 0 || capacity > ((size_t)1 << 40)) return nullptr;
    void* mem = weft::port::alloc_aligned(sizeof(weft_buf) + capacity, 16);
    if (!mem) return nullptr;
    weft_buf* b = static_cast<weft_buf*>(mem);
    new (&b->refs) std::atomic<uint32_t>(1);
    b->capacity = capacity;
    return b;
}
void* weft_buf_data(const weft_buf* b) { return b ? const_cast<unsigned char*>(b->data) : nullptr; }
size_t weft_buf_capacity(const weft_buf* b) { return b ? b->capacity : 0; }
weft_buf* weft_buf_ref(weft_buf* b) {
    if (b) b->refs.fetch_add(1, std::memory_order_relaxed);
    return b;
}
void weft_buf_free(weft_buf* b) {
    if (b && b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) weft::port::free(b);
}

}  // extern "C"

namespace {

Shared* live_runtime(weft_runtime* rt) {
    Shared* sh = reinterpret_cast<Shared*>(rt);
    if (!sh || sh->magic != Shared::MAGIC) return nullptr;
    return sh;
}

int op_new(weft_runtime* rt, Kind kind, int fd, weft_io_op** out, IoOp** op_out) {
    if (!out) return WEFT_EINVAL;
    *out = nullptr;
    Shared* sh = nullptr;
    IoState* st = nullptr;
    if (rt) {
        sh = live_runtime(rt);
        if (!sh) return WEFT_EINVAL;
        if (sh->owned_closed.load(std::memory_order_acquire) || !sh->io) return WEFT_ECLOSED;
        st = io_state(sh);
    } else if (Shared* cur = current_runtime()) {
        // rt NULL: the runtime of the calling worker thread...
        sh = cur;
        if (sh->owned_closed.load(std::memory_order_acquire) || !sh->io) return WEFT_ECLOSED;
        st = io_state(sh);
    } else if (tpc::t_exec) {
        // ...or the calling thread's thread-per-core executor.
        st = tpc::t_exec->io;
        if (!st || st->drivers[0].closed.load(std::memory_order_acquire) || tpc::t_exec->closing) return WEFT_ECLOSED;
    } else {
        return WEFT_EINVAL;  // rt NULL on a thread that belongs to no runtime and no executor
    }
    if (fd < 0) return WEFT_EINVAL;
    // The worker's block cache (pool.h): an operation per read or write
    // costs no malloc on the hot path.
    void* mem = pool::alloc(sizeof(IoOp));
    if (!mem) return WEFT_ENOMEM;
    IoOp* op = new (mem) IoOp();
    op->st = st;
    op->sh = sh;
    op->kind = kind;
    op->fd = fd;
    if (sh) runtime_retain(sh);
    else st->refs.fetch_add(1, std::memory_order_relaxed);
    *op_out = op;
    *out = reinterpret_cast<weft_io_op*>(op);
    return 0;
}

int buf_op(weft_runtime* rt, Kind kind, int fd, const void* ptr, size_t len, weft_buf* keep, int aux,
           int64_t offset, weft_io_op** out) {
    if ((!ptr && len) || len > (size_t)INT32_MAX || offset < -1) {
        if (out) *out = nullptr;
        return WEFT_EINVAL;
    }
    IoOp* op;
    int r = op_new(rt, kind, fd, out, &op);
    if (r) return r;
    op->ptr = const_cast<void*>(ptr);
    op->len = (uint32_t)len;
    op->aux = aux;
    op->offset = offset;
    op->keep = weft_buf_ref(keep);
    return 0;
}

int vec_op(weft_runtime* rt, Kind kind, int fd, const struct iovec* iov, int iovcnt, weft_buf* keep,
           int64_t offset, weft_io_op** out) {
    if (!iov || iovcnt <= 0 || iovcnt > MAX_IOV || offset < -1) {
        if (out) *out = nullptr;
        return WEFT_EINVAL;
    }
    IoOp* op;
    int r = op_new(rt, kind, fd, out, &op);
    if (r) return r;
    op->iov = static_cast<struct iovec*>(weft::port::alloc(sizeof(struct iovec) * (size_t)iovcnt));
    if (!op->iov) {
        weft_io_op_free(*out);
        *out = nullptr;
        return WEFT_ENOMEM;
    }
    memcpy(op->iov, iov, sizeof(struct iovec) * (size_t)iovcnt);
    op->iovcnt = iovcnt;
    op->offset = offset;
    op->keep = weft_buf_ref(keep);
    return 0;
}

inline IoOp* as_op(weft_io_op* o) { return reinterpret_cast<IoOp*>(o); }

// Takes a finished result (under mu): READY, or PENDING for a multishot
// accept with nothing queued (phase NEW then when it must be started again).
int take_result(IoOp* op, int64_t* result) {
    if (op->kind == K_ACCEPT && op->multishot) {
        int r = WEFT_PENDING;
        if (op->acc_n) {
            *result = op->acc[op->acc_head];
            op->acc_head = (op->acc_head + 1) % op->acc_cap;
            op->acc_n--;
            r = WEFT_READY;
        } else if (op->acc_error) {
            *result = op->acc_error;
            op->acc_error = 0;
            r = WEFT_READY;
        }
        if (op->phase == DONE && op->acc_n == 0 && !op->acc_error) op->phase = NEW;  // next poll re-arms
        return r;
    }
    *result = op->result;
    return WEFT_READY;
}

}  // namespace

extern "C" {

int weft_io_recv(weft_runtime* rt, int fd, void* ptr, size_t len, weft_buf* keep, int msg_flags, weft_io_op** out) {
    return buf_op(rt, K_RECV, fd, ptr, len, keep, msg_flags, -1, out);
}
int weft_io_send(weft_runtime* rt, int fd, const void* ptr, size_t len, weft_buf* keep, int msg_flags,
                 weft_io_op** out) {
    return buf_op(rt, K_SEND, fd, ptr, len, keep, msg_flags, -1, out);
}
int weft_io_read(weft_runtime* rt, int fd, void* ptr, size_t len, weft_buf* keep, int64_t offset, weft_io_op** out) {
    return buf_op(rt, K_READ, fd, ptr, len, keep, 0, offset, out);
}
int weft_io_write(weft_runtime* rt, int fd, const void* ptr, size_t len, weft_buf* keep, int64_t offset,
                  weft_io_op** out) {
    return buf_op(rt, K_WRITE, fd, ptr, len, keep, 0, offset, out);
}
int weft_io_readv(weft_runtime* rt, int fd, const struct iovec* iov, int iovcnt, weft_buf* keep, int64_t offset,
                  weft_io_op** out) {
    return vec_op(rt, K_READV, fd, iov, iovcnt, keep, offset, out);
}
int weft_io_writev(weft_runtime* rt, int fd, const struct iovec* iov, int iovcnt, weft_buf* keep, int64_t offset,
                   weft_io_op** out) {
    return vec_op(rt, K_WRITEV, fd, iov, iovcnt, keep, offset, out);
}
int weft_io_accept(weft_runtime* rt, int listen_fd, unsigned flags, weft_io_op** out) {
    if (flags & ~WEFT_IO_MULTISHOT) {
        if (out) *out = nullptr;
        return WEFT_EINVAL;
    }
    IoOp* op;
    int r = op_new(rt, K_ACCEPT, listen_fd, out, &op);
    if (r) return r;
    op->multishot = flags & WEFT_IO_MULTISHOT;
    return 0;
}
int weft_io_connect(weft_runtime* rt, int fd, const struct sockaddr* addr, unsigned addrlen, weft_io_op** out) {
    if (!addr || addrlen == 0 || addrlen > MAX_ADDR) {
        if (out) *out = nullptr;
        return WEFT_EINVAL;
    }
    IoOp* op;
    int r = op_new(rt, K_CONNECT, fd, out, &op);
    if (r) return r;
    memcpy(op->addr, addr, addrlen);
    op->addrlen = addrlen;
    return 0;
}
int weft_io_close(weft_runtime* rt, int fd, weft_io_op** out) {
    IoOp* op;
    return op_new(rt, K_CLOSE, fd, out, &op);
}
int weft_io_shutdown(weft_runtime* rt, int fd, int how, weft_io_op** out) {
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) {
        if (out) *out = nullptr;
        return WEFT_EINVAL;
    }
    IoOp* op;
    int r = op_new(rt, K_SHUTDOWN, fd, out, &op);
    if (r) return r;
    op->aux = how;
    return 0;
}
int weft_io_poll_ready(weft_runtime* rt, int fd, uint32_t events, weft_io_op** out) {
    if (events == 0 || (events & ~0xffffu)) {
        if (out) *out = nullptr;
        return WEFT_EINVAL;
    }
    IoOp* op;
    int r = op_new(rt, K_POLL, fd, out, &op);
    if (r) return r;
    op->aux = (int)events;
    return 0;
}

int weft_io_socket(int domain, int type, int protocol) { return weft::port::sys_socket(domain, type, protocol); }

int weft_io_tcp_listen(const char* host, uint16_t port, int backlog, uint16_t* bound_port) {
    if (!host || backlog < 0) return WEFT_EINVAL;
    // IPv4 dotted quad (or "localhost"), parsed here: no resolver in the kernel.
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    uint32_t ip = 0;
    const char* p = host;
    for (int part = 0; part < 4; part++) {
        if (*p < '0' || *p > '9') return WEFT_EINVAL;
        uint32_t v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint32_t)(*p++ - '0');
            if (++digits > 3 || v > 255) return WEFT_EINVAL;
        }
        ip = ip << 8 | v;
        if (part < 3 && *p++ != '.') return WEFT_EINVAL;
    }
    if (*p) return WEFT_EINVAL;
    return weft::port::sys_tcp_listen(ip, port, backlog ? backlog : 1024, bound_port);
}

int weft_runtime_io_status(const weft_runtime* rt, weft_io_status* out) {
    Shared* sh = live_runtime(const_cast<weft_runtime*>(rt));
    if (!sh || !out) return WEFT_EINVAL;
    if (out->size != sizeof(weft_io_status)) return WEFT_EVERSION;
    IoState* st = static_cast<IoState*>(sh->io);
    if (!st) {
        memset(out, 0, sizeof *out);
        out->size = sizeof *out;
        return WEFT_ECLOSED;
    }
    io_fill_status(st, out);
    return 0;
}

int weft_runtime_io_backend(const weft_runtime* rt) {
    Shared* sh = live_runtime(const_cast<weft_runtime*>(rt));
    if (!sh || !sh->io) return WEFT_EINVAL;
    return static_cast<IoState*>(sh->io)->backend;
}

int weft_io_op_set_timeout(weft_io_op* o, int64_t timeout_ns) {
    IoOp* op = as_op(o);
    if (!op) return WEFT_EINVAL;
    weft::port::LockGuard g(op->mu);
    if (op->phase != NEW || op->timer_on) return WEFT_EALREADY;
    op->timeout_ns = timeout_ns > 0 ? timeout_ns : 0;
    return 0;
}

int weft_io_op_poll(weft_io_op* o, weft_context* cx, int64_t* result) {
    IoOp* op = as_op(o);
    if (!op || !cx || !cx->waker.vtable || !result) return WEFT_EINVAL;
    bool is_uring = uring(op);
    weft::port::LockGuard g(op->mu);
    for (int round = 0; round < 2; round++) {
        if (op->phase == DONE || (op->multishot && (op->acc_n || op->acc_error))) {
            // Ready: an I/O poll that yields a result spends budget (pulse.h).
            if (budget_spent(1)) {
                cx->waker.vtable->wake_by_ref(cx->waker.data);
                return WEFT_PENDING;
            }
            int r = take_result(op, result);
            if (r == WEFT_READY) return r;
        }
        if (op->phase == NEW) {
            if (op->kind != K_ACCEPT && (op->kind == K_RECV || op->kind == K_SEND || op->kind == K_READ ||
                                         op->kind == K_WRITE) && op->len == 0) {
                op->result = 0;
                op->phase = DONE;
                continue;
            }
            set_waker(op, &cx->waker);
            if (op->timeout_ns && !op->timer_on && !op->deadline_ns) {
                // sh NULL (a tpc executor's op): the timer binds to the
                // polling thread's runtime or executor; a plain thread has
                // neither, and gets a deadline its weft_io_op_wait keeps.
                if (weft_timer_init(&op->timer, reinterpret_cast<weft_runtime*>(op->sh)) == 0 &&
                    weft_timer_sleep_for(&op->timer, op->timeout_ns) == 0) {
                    op->timer_on = true;
                    op->timer_exec = !op->sh && !current_runtime() ? tpc::t_exec : nullptr;
                } else {
                    op->deadline_ns = weft::port::monotonic_ns() + (uint64_t)op->timeout_ns;
                }
            }
            op_start(op);
            if (op->phase == DONE) continue;
        } else if (!is_uring && op->phase == IN_KERNEL && op->ep_fired) {
            // epoll: woken by readiness (the entry unlinked us): try again.
            set_waker(op, &cx->waker);
            if (ep_attempt(op->st, op)) continue;
        } else {
            set_waker(op, &cx->waker);
        }
        break;
    }
    if ((op->timer_on || op->deadline_ns) && op->phase != DONE && !op->timed_out) {
        bool expired;
        if (op->timer_on) {
            expired = op_timer_poll(op) == WEFT_READY;
        } else {
            expired = weft::port::monotonic_ns() >= op->deadline_ns;
        }
        if (expired) {
            op->timed_out = true;
            if (is_uring) {
                if (op->phase == IN_KERNEL) op_cancel(op);
                // REMOTE: the holder submits it, the cancel follows it there.
                else if (op->phase == REMOTE) op->dropped = true;
            } else {
                ep_cancel_wait(op);
                op->result = WEFT_ETIMEDOUT;
                op->phase = DONE;
                if (budget_spent(1)) {
                    cx->waker.vtable->wake_by_ref(cx->waker.data);
                    return WEFT_PENDING;
                }
                return take_result(op, result);
            }
        }
    }
    return WEFT_PENDING;
}

}  // extern "C"

namespace {
// The waker of a plain thread in weft_io_op_wait: unparks its stack Parker.
// No refcount: op_wait returns only once no completer holds it (`waking`).
void op_thread_wake(const void* p) { static_cast<Parker*>(const_cast<void*>(p))->unpark(); }
void op_thread_drop(const void*) {}
weft_waker op_thread_clone(const void* p);
const weft_waker_vtable op_thread_vtable = {op_thread_clone, op_thread_wake, op_thread_wake, op_thread_drop};
weft_waker op_thread_clone(const void* p) { return weft_waker{p, &op_thread_vtable}; }
}  // namespace

extern "C" {

int weft_io_op_wait(weft_io_op* o, int64_t* result) {
    IoOp* op = as_op(o);
    if (!op || !result) return WEFT_EINVAL;
    // A worker, or the thread of the executor the op belongs to: blocking
    // it would stop the very thread that must serve the operation.
    if (current_runtime() || (tpc::t_exec && op->st == tpc::t_exec->io)) return WEFT_EDEADLK;
    Parker parker;
    weft_context cx{weft_waker{&parker, &op_thread_vtable}};
    int r;
    while ((r = weft_io_op_poll(o, &cx, result)) == WEFT_PENDING) {
        // A time limit without a wheel (weft_io_op_poll set deadline_ns on
        // this thread): sleep no longer than it; the next poll times out.
        int64_t limit = -1;
        if (op->deadline_ns && !op->timed_out) {
            uint64_t now = weft::port::monotonic_ns();
            limit = op->deadline_ns > now ? (int64_t)(op->deadline_ns - now) : 0;
        }
        parker.park(limit);
    }
    {
        weft::port::LockGuard g(op->mu);
        if (op->has_waker && op->waker.vtable == &op_thread_vtable) op->has_waker = false;
    }
    // A completer that took the waker may still be about to unpark us.
    while (op->waking.load(std::memory_order_acquire) != 0) weft::port::thread_yield();
    return r == WEFT_READY ? 0 : r;
}

void weft_io_op_free(weft_io_op* o) {
    IoOp* op = as_op(o);
    if (!op) return;
    {
        weft::port::LockGuard g(op->mu);
        op->dropped = true;
        if (op->has_waker) {
            op->waker.vtable->drop(op->waker.data);
            op->has_waker = false;
        }
        if (uring(op)) {
            if (op->phase == IN_KERNEL) op_cancel(op);
        } else {
            ep_cancel_wait(op);
        }
        // Cancelled here when this thread may; otherwise it fires (or is
        // closed) on its executor, and its waker's reference keeps the op
        // until then.
        if (op->timer_on && timer_cancellable_here(op)) {
            weft_timer_cancel(&op->timer);
            op->timer_on = false;
        }
    }
    op_release(op);
}

}  // extern "C"
