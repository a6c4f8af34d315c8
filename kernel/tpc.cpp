// kernel/tpc.cpp — the thread-per-core executor: run loop, local and remote
// spawn, identity wakers, park in io_uring, shard sets, and its C ABI
// (include/weft/weft_tpc.h). The protocols are described in kernel/tpc.h.
#include "tpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "../port/io_sys.h"
#include "../port/port.h"
#include "clock.h"
#include "io.h"
#include "pool.h"
#include "scheduler.h"

namespace weft::kernel::tpc {

constinit __attribute__((tls_model("initial-exec"))) thread_local Executor* t_exec = nullptr;

namespace {

constinit __attribute__((tls_model("initial-exec"))) thread_local TaskHeader* t_cur = nullptr;

// Every mailbox ever created, by executor slot; entries are set once and
// never cleared (mailboxes are never freed: tpc.h).
std::atomic<Mailbox*> g_mailboxes[MAX_EXECUTORS];
// Shard-set ids (never 0: 0 means "no set"). relaxed: only uniqueness
// matters; the id is published to shards by thread start.
std::atomic<uint64_t> g_set_ids{0};

// CQE tags in the executor's ring (its I/O operations' CQEs carry an IoOp*,
// 16-aligned, or io.cpp's tags 1 and 2; io_tpc_cqe takes those).
constexpr uint64_t TAG_EFD = 5;      // the armed eventfd read completed
constexpr uint64_t TAG_MSG = 6;      // a sibling's MSG_RING arrived
constexpr uint64_t TAG_MSG_SRC = 7;  // our MSG_RING failed: (target slot << 8) | TAG_MSG_SRC
constexpr uint32_t POLLS_PER_TICK = 64;  // polls between two looks at the cross-thread queues

void bump(std::atomic<uint64_t>& c) { c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }

Executor* as_exec(weft_tpc* p) {
    // SAFETY: weft_tpc is never defined; the handle is the Executor* that
    // weft_tpc_new / weft_shards_get returned. The magic check catches most
    // stale or foreign pointers but is not a guarantee.
    Executor* ex = reinterpret_cast<Executor*>(p);
    return ex && ex->magic == Executor::MAGIC ? ex : nullptr;
}

// ---- mailboxes ---------------------------------------------------------------

Mailbox* mailbox_create() {
    void* mem = port::alloc_aligned(sizeof(Mailbox), alignof(Mailbox));
    if (!mem) return nullptr;
    Mailbox* mb = new (mem) Mailbox();
    mb->eventfd = port::eventfd_new();
    if (mb->eventfd < 0) {
        mb->~Mailbox();
        port::free(mem);
        return nullptr;
    }
    return mb;
}

int mailbox_claim(Mailbox** out, uint32_t* index) {
    for (uint32_t i = 0; i < MAX_EXECUTORS; i++) {
        Mailbox* mb = g_mailboxes[i].load(std::memory_order_acquire);
        if (!mb) {
            Mailbox* fresh = mailbox_create();
            if (!fresh) return WEFT_ENOMEM;
            // acq_rel: publishes the new mailbox's fields to whoever loads it.
            if (g_mailboxes[i].compare_exchange_strong(mb, fresh, std::memory_order_acq_rel,
                                                       std::memory_order_acquire)) {
                mb = fresh;
            } else {
                port::close_fd(fresh->eventfd);
                fresh->~Mailbox();
                port::free(fresh);
            }
        }
        uint32_t free_ = 0;
        // acquire: pairs with the release in mailbox_release, so the owner-only
        // fields (free list, slot count) are as the last owner left them.
        if (mb->claimed.compare_exchange_strong(free_, 1, std::memory_order_acquire, std::memory_order_relaxed)) {
            *out = mb;
            *index = i;
            return 0;
        }
    }
    return WEFT_ENOMEM;  // MAX_EXECUTORS executors alive at once
}

void mailbox_release(Mailbox* mb) {
    mb->msg_ring_fd.store(-1, std::memory_order_relaxed);
    mb->set_id.store(0, std::memory_order_relaxed);
    mb->claimed.store(0, std::memory_order_release);
}

// ---- slots -------------------------------------------------------------------

// A never-used slot index, or -1 (MAX_SLOTS live tasks, or out of memory).
// exec: the mailbox's index (Identity::exec), the same for every executor
// that claims it.
__attribute__((noinline)) int64_t slot_alloc_fresh(Mailbox* mb, uint32_t exec) {
    if (mb->nslots == MAX_SLOTS) return -1;
    uint32_t idx = mb->nslots;
    uint32_t c = idx >> CHUNK_SHIFT;
    if (!mb->chunks[c].load(std::memory_order_relaxed)) {
        void* mem = port::alloc(sizeof(Chunk));
        if (!mem) return -1;
        // SAFETY: a fresh block of sizeof(Chunk) bytes; every slot starts at
        // generation 1 (data 0 is never a waker identity), not queued, free.
        Chunk* ch = static_cast<Chunk*>(mem);
        for (uint32_t i = 0; i < CHUNK_SLOTS; i++) {
            Slot* s = new (&ch->slots[i]) Slot;
            s->identity.store(Identity::pack(1, exec, (c << CHUNK_SHIFT) + i), std::memory_order_relaxed);
            s->queued.store(0, std::memory_order_relaxed);
            s->remote_next.store(0, std::memory_order_relaxed);
            s->free_next = 0;
            s->task = nullptr;
        }
        // release: a waking thread that finds the chunk sees its slots initialised.
        mb->chunks[c].store(ch, std::memory_order_release);
    }
    mb->nslots = idx + 1;
    return idx;
}

// A free slot index, or -1.
inline int64_t slot_alloc(Mailbox* mb, uint32_t exec) {
    if (mb->free_head) {
        uint32_t idx = mb->free_head - 1;
        mb->free_head = mb->owned_slot(idx)->free_next;
        return idx;
    }
    return slot_alloc_fresh(mb, exec);
}

// The slot's task went away: new generation (stale wakers stop matching),
// back on the free list.
__attribute__((always_inline)) inline void slot_free(Mailbox* mb, uint32_t idx) {
    Slot* s = mb->owned_slot(idx);
    s->task = nullptr;
    s->free_next = mb->free_head;
    mb->free_head = idx + 1;
    uint64_t id;
    // The add carries out exactly when the generation wraps to 0: skip it
    // (generations are >= 1).
    if (__builtin_expect(__builtin_add_overflow(s->identity.load(std::memory_order_relaxed), Identity::GEN_ONE, &id), 0))
        id += Identity::GEN_ONE;
    // release: orders the task's end before the new generation for wakers
    // that read it (they only compare it).
    s->identity.store(id, std::memory_order_release);
}

// ---- the ready queue and task lifecycle (owner thread) ---------------------------

void push_ready(Executor* ex, TaskHeader* t) {
    t->queue_next = nullptr;
    if (ex->ready_tail) {
        ex->ready_tail->queue_next = t;
    } else {
        ex->ready_head = t;
    }
    ex->ready_tail = t;
}

TaskHeader* pop_ready(Executor* ex) {
    TaskHeader* t = ex->ready_head;
    if (t) {
        ex->ready_head = t->queue_next;
        if (!ex->ready_head) ex->ready_tail = nullptr;
    }
    return t;
}

void schedule(Executor* ex, TaskHeader* t) {
    uint64_t f = t->tpc_flags;
    switch (f & ST_MASK) {
    case ST_IDLE:
        t->tpc_flags = f | ST_READY;
        push_ready(ex, t);
        break;
    case ST_RUNNING: t->tpc_flags = f | F_WOKEN; break;
    default: break;  // already queued, or finished
    }
}


// The task is finished (completed, failed, cancelled or dropped): free its
// slot, wake its join handle, free it unless a handle holds it. Inline: run
// in run_one once per task.
__attribute__((always_inline)) inline void finish(Executor* ex, TaskHeader* t) {
    slot_free(ex->mb, Identity::slot(t->tpc_identity));
    // release: see Executor::ended.
    ex->ended.store(ex->ended.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    uint64_t f = t->tpc_flags;
    t->tpc_flags = (f & ~(ST_MASK | F_WOKEN | F_JOIN_WAKER)) | ST_DONE;
    if (f & F_JOIN_WAKER) {
        weft_waker w = t->join_waker;
        t->join_waker = weft_waker{nullptr, nullptr};
        weft_waker_wake(w);  // may be anyone's waker; t is not touched after
    }
    if (!(f & F_JOIN)) dealloc(t);
}

// Drops a task that will never complete (cancelled, or at shutdown).
void drop_task(Executor* ex, TaskHeader* t) {
    t->tpc_flags = (t->tpc_flags & ~ST_MASK) | ST_RUNNING;  // its own wakes are ignored meanwhile
    if (t->stage == Stage::Future) {
        t->stage = Stage::Dropped;
        if (t->vtable->drop_future) t->vtable->drop_future(t->state_ptr());
    }
    t->result = WEFT_ECANCELED;
    finish(ex, t);
}

void run_one(Executor* ex, TaskHeader* t) {
    uint64_t f = t->tpc_flags;
    if (f & F_CANCEL) {
        drop_task(ex, t);
        return;
    }
    t->tpc_flags = (f & ~(ST_MASK | F_WOKEN)) | ST_RUNNING;
    weft_context cx{weft_waker{reinterpret_cast<const void*>(t->tpc_identity), &waker_vtable}};
    TaskHeader* prev = t_cur;
    t_cur = t;
    int r = t->vtable->poll(t->state_ptr(), &cx);
    t_cur = prev;
    bump(ex->polls);
    f = t->tpc_flags;
    if (r == WEFT_PENDING) {
        if (f & F_CANCEL) {
            drop_task(ex, t);
        } else if (f & F_WOKEN) {
            t->tpc_flags = (f & ~(ST_MASK | F_WOKEN)) | ST_READY;
            push_ready(ex, t);
        } else {
            t->tpc_flags = f & ~ST_MASK;  // ST_IDLE
        }
        return;
    }
    t->stage = Stage::Finished;
    // result is still task_init's 0 (only a task's end writes it): a task
    // that succeeded leaves it, and skips the failure test below.
    if (__builtin_expect(r != WEFT_READY, 0)) {
        t->result = r < 0 ? r : WEFT_EINVAL;
        // Failure containment, layer 1 (failure.h): a failure nobody can join
        // goes to the process-wide target (this thread belongs to no runtime).
        if (!(t->tpc_flags & F_JOIN)) report_detached_failure(nullptr, t->id, t->result);
    }
    finish(ex, t);
}

// Gives t the slot s (just taken off the free list or created) and queues it.
__attribute__((always_inline)) inline void adopt_slot(Executor* ex, TaskHeader* t, Slot* s, uint64_t flags) {
    t->tpc_identity = s->identity.load(std::memory_order_relaxed);
    t->tpc_flags = flags | ST_READY;
    s->task = t;
    push_ready(ex, t);  // the caller counts the spawn (Executor::ended)
}

// Gives t a slot and queues it (local spawn, or a remote spawn taken over).
__attribute__((always_inline)) inline int adopt(Executor* ex, TaskHeader* t, uint64_t flags) {
    int64_t idx = slot_alloc(ex->mb, ex->index);
    if (idx < 0) return WEFT_ENOMEM;
    adopt_slot(ex, t, ex->mb->owned_slot((uint32_t)idx), flags);
    return 0;
}

// The header fields a spawn sets. task_alloc (every task's header comes
// from it) already cleared join_waker and orphan.
__attribute__((always_inline)) inline void prepare(TaskHeader* t, Executor* ex) {
    t->kind = TASK_TPC;
    t->shared = nullptr;
    t->tpc_exec = ex;
    t->id = next_task_id();
    t->spawned = 1;
}

// The common local spawn, complete, or false with nothing touched: a slot on
// the free list, an id left in this thread's range, spawns open. Everything
// else (a never-used slot, a new id block, shutdown) goes the full way
// (spawn_local). No call, so weft_tpc_task_spawn's fast path saves no
// registers.
__attribute__((always_inline)) inline bool spawn_local_fast(Executor* ex, TaskHeader* t, bool with_join) {
    Mailbox* mb = ex->mb;
    uint32_t head = mb->free_head;
    if (__builtin_expect(!head || ex->closing || t_id_next == t_id_end, 0)) return false;
    uint32_t idx = head - 1;
    Slot* s = mb->owned_slot(idx);
    mb->free_head = s->free_next;
    t->kind = TASK_TPC;
    t->shared = nullptr;
    t->tpc_exec = ex;
    t->id = t_id_next++;
    t->spawned = 1;
    adopt_slot(ex, t, s, with_join ? (uint64_t)F_JOIN : 0);
    bump(ex->spawned_local);
    return true;
}

__attribute__((always_inline)) inline int spawn_local(Executor* ex, TaskHeader* t, bool with_join) {
    if (__builtin_expect(ex->closing, 0)) {
        task_release_unspawned(t);
        return WEFT_ECLOSED;
    }
    prepare(t, ex);
    int r = adopt(ex, t, with_join ? (uint64_t)F_JOIN : 0);
    if (r != 0) {
        task_release_unspawned(t);
        return r;
    }
    bump(ex->spawned_local);
    return 0;
}

// ---- waking -----------------------------------------------------------------------

void signal(Mailbox* mb, uint32_t target) {
    Executor* src = t_exec;
    if (src && src->can_msg_ring && src->set_id && mb->set_id.load(std::memory_order_relaxed) == src->set_id) {
        int fd = mb->msg_ring_fd.load(std::memory_order_relaxed);
        struct io_uring_sqe* sqe = fd >= 0 ? src->ring->get_sqe() : nullptr;
        if (sqe) {
            // IORING_OP_MSG_RING, IORING_MSG_DATA (addr 0): post a CQE with
            // user_data = off and res = len in the ring behind fd.
            sqe->opcode = IORING_OP_MSG_RING;
            sqe->fd = fd;
            sqe->off = TAG_MSG;
            sqe->len = 0;
            sqe->user_data = (uint64_t)target << 8 | TAG_MSG_SRC;
            if (src->cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            if (src->ring->submit() >= 1) {
                mb->signals.fetch_add(1, std::memory_order_relaxed);
                mb->msg_ring_signals.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            // Not submitted now (it may go with our next enter): the eventfd
            // makes sure; two signals only cost one spurious wake-up.
        }
    }
    mb->signals.fetch_add(1, std::memory_order_relaxed);
    port::eventfd_signal(mb->eventfd);
}

// After a push onto one of mb's stacks: interrupt the owner if it parked.
void notify(Mailbox* mb, uint32_t target) {
    // seq_cst: the load side of the Dekker pair (tpc.h); the push before it
    // was seq_cst too.
    if (!mb->sleeping.load(std::memory_order_seq_cst)) return;
    if (!mb->sleeping.exchange(0, std::memory_order_seq_cst)) return;  // another thread signals
    signal(mb, target);
}

void wake_remote(uint64_t id) {
    uint32_t e = Identity::exec(id);
    Mailbox* mb = g_mailboxes[e].load(std::memory_order_acquire);
    if (!mb) return;
    uint32_t idx = Identity::slot(id);
    Slot* s = mb->slot(idx);
    if (!s || s->identity.load(std::memory_order_acquire) != id) return;  // stale
    // acq_rel: release publishes what this waker wrote before waking; the
    // owner's acq_rel exchange back to 0 acquires it (tpc.h).
    if (s->queued.exchange(1, std::memory_order_acq_rel)) return;  // merged with a queued wake
    uint32_t h = mb->wake_head.load(std::memory_order_relaxed);
    do {
        s->remote_next.store(h, std::memory_order_relaxed);
    } while (!mb->wake_head.compare_exchange_weak(h, idx + 1, std::memory_order_seq_cst, std::memory_order_relaxed));
    notify(mb, e);
}

void wake_by_id(uint64_t id) {
    Executor* ex = t_exec;
    if (ex && ex->index == Identity::exec(id)) {
        // The owner thread: a plain lookup, no atomic read-modify-write.
        if (ex->closing) return;
        Slot* s = ex->mb->slot(Identity::slot(id));
        if (!s || !s->task || s->identity.load(std::memory_order_relaxed) != id) {
            bump(ex->wakes_stale);
            return;
        }
        bump(ex->wakes_local);
        schedule(ex, s->task);
        return;
    }
    wake_remote(id);
}

weft_waker waker_clone(const void* data) { return weft_waker{data, &waker_vtable}; }
void waker_wake(const void* data) { wake_by_id(reinterpret_cast<uint64_t>(data)); }
void waker_drop(const void*) {}

// Takes everything other threads pushed: spawns, then wakes.
void take_spawns(Executor* ex) {
    // acquire: pairs with the spawners' CAS, so each task's fields are visible.
    uintptr_t h = ex->mb->spawn_head.exchange(0, std::memory_order_acquire);
    TaskHeader* rev = nullptr;
    // SAFETY: while not CLOSED the stack holds only TaskHeader* pushed by
    // weft_tpc_task_spawn, 16-aligned (the low bit is free for CLOSED).
    for (TaskHeader* t = reinterpret_cast<TaskHeader*>(h); t;) {
        TaskHeader* next = t->queue_next;
        t->queue_next = rev;
        rev = t;
        t = next;
    }
    while (rev) {
        TaskHeader* t = rev;
        rev = rev->queue_next;
        if (ex->closing || adopt(ex, t, 0) != 0) {
            task_release_unspawned(t);  // at shutdown, or MAX_SLOTS tasks live
            continue;
        }
        bump(ex->spawned_remote);
    }
}

void drain_wakes(Executor* ex) {
    Mailbox* mb = ex->mb;
    uint32_t h = mb->wake_head.exchange(0, std::memory_order_acquire);
    // Reverse (oldest first). remote_next is ours while queued is 1.
    uint32_t rev = 0;
    while (h) {
        Slot* s = mb->owned_slot(h - 1);
        uint32_t next = s->remote_next.load(std::memory_order_relaxed);
        s->remote_next.store(rev, std::memory_order_relaxed);
        rev = h;
        h = next;
    }
    while (rev) {
        Slot* s = mb->owned_slot(rev - 1);
        rev = s->remote_next.load(std::memory_order_relaxed);  // before the slot can be pushed again
        s->queued.exchange(0, std::memory_order_acq_rel);
        if (s->task && !ex->closing) {
            bump(ex->wakes_remote);
            schedule(ex, s->task);
        } else {
            bump(ex->wakes_stale);
        }
    }
}

void arm_eventfd_read(Executor* ex) {
    struct io_uring_sqe* sqe = ex->ring->get_sqe();
    if (!sqe) {
        // The SQ is full of the operations' SQEs: submit them first, or the
        // park would sleep without the read that a wake completes.
        ex->ring->submit();
        sqe = ex->ring->get_sqe();
        if (!sqe) return;  // park() then sleeps briefly and tries again
    }
    sqe->opcode = IORING_OP_READ;
    sqe->fd = ex->mb->eventfd;
    sqe->addr = reinterpret_cast<uint64_t>(&ex->mb->efd_buf);
    sqe->len = sizeof(uint64_t);
    sqe->off = 0;
    sqe->user_data = TAG_EFD;
    ex->efd_read_armed = true;
}

void reap(Executor* ex) {
    while (struct io_uring_cqe* cqe = ex->ring->peek_cqe()) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        ex->ring->cq_advance(1);
        if (ud == TAG_EFD) {
            ex->efd_read_armed = false;
        } else if ((ud & 0xff) == TAG_MSG_SRC) {
            if (res < 0) {
                // Our MSG_RING did not arrive: wake the target the other way.
                Mailbox* mb = g_mailboxes[(ud >> 8) & (MAX_EXECUTORS - 1)].load(std::memory_order_acquire);
                if (mb) port::eventfd_signal(mb->eventfd);
            }
        } else if (ud != TAG_MSG) {  // TAG_MSG: its arrival already ended the wait
            io_tpc_cqe(ex->io, ud, res, flags);  // an I/O operation's completion
        }
    }
}
void reap_cb(void* ex) { reap(static_cast<Executor*>(ex)); }

// ---- timers (owner thread) ----------------------------------------------------------

uint64_t deadline_tick(const Executor* ex, uint64_t deadline_ns) {
    if (deadline_ns <= ex->timer_epoch_ns) return 0;
    uint64_t d = deadline_ns - ex->timer_epoch_ns;
    return d / TICK_NS + (d % TICK_NS != 0);  // round up: never early
}
uint64_t now_tick(const Executor* ex, uint64_t now_ns) {
    return now_ns <= ex->timer_epoch_ns ? 0 : (now_ns - ex->timer_epoch_ns) / TICK_NS;
}

// Wakes the timers whose tick has come.
void fire_timers(Executor* ex) {
    if (ex->wheel.empty()) return;
    uint64_t now = now_tick(ex, process_clock().now());
    if (ex->wheel.next_expiration() > now) return;
    TimerWheel::List due;
    ex->wheel.advance(now, due);
    // A waker may cancel another entry of `due` (timer_cancel unlinks it
    // from this list: it is at level EXPIRED).
    while (WheelEntry* we = due.pop_front()) {
        TimerEntry* e = static_cast<TimerEntry*>(we);
        weft_waker w = e->waker;
        e->state.store(TimerEntry::FIRED, std::memory_order_release);
        weft_waker_wake(w);
    }
}

// ns until the earliest timer (0: due now), or -1 without timers.
int64_t timer_timeout(const Executor* ex) {
    if (ex->wheel.empty()) return -1;
    uint64_t next = ex->wheel.next_expiration();
    if (next >= (UINT64_MAX - ex->timer_epoch_ns) / TICK_NS) return -1;  // years away
    uint64_t at = ex->timer_epoch_ns + next * TICK_NS;
    uint64_t now = process_clock().now();
    return at > now ? (int64_t)(at - now) : 0;
}

// Shutdown: every entry still registered (a C caller's, outside tasks)
// becomes CLOSED; its waker is dropped.
void close_timers(Executor* ex) {
    TimerWheel::List all;
    ex->wheel.advance(TimerWheel::NONE - 1, all);
    while (WheelEntry* we = all.pop_front()) {
        TimerEntry* e = static_cast<TimerEntry*>(we);
        weft_waker w = e->waker;
        e->state.store(TimerEntry::CLOSED, std::memory_order_release);
        weft_waker_drop(w);
    }
}

void poll_remote(Executor* ex) {
    Mailbox* mb = ex->mb;
    if (mb->spawn_head.load(std::memory_order_relaxed)) take_spawns(ex);
    if (mb->wake_head.load(std::memory_order_relaxed)) drain_wakes(ex);
    io_tpc_take_remote(ex->io);
    if (ex->ring && ex->ring->cq_ready()) reap(ex);
}

// Before sleeping, an idle executor watches its queues for SPIN_NS: a
// thread-per-core executor owns its CPU, and a wake that arrives meanwhile
// then costs neither side a system call nor a context switch. Measured
// (bench/RESULTS.md, tpc_cross_thread_wake): 10.3 -> 3.5 us per round trip.
// The spin cannot see I/O completions that need an io_uring_enter to be
// reaped, so it is skipped when the ring has work in flight.
constexpr uint64_t SPIN_NS = 50000;

bool remote_pending(const Executor* ex) {
    const Mailbox* mb = ex->mb;
    return mb->wake_head.load(std::memory_order_relaxed) || mb->spawn_head.load(std::memory_order_relaxed) ||
           mb->stop.load(std::memory_order_relaxed) || io_tpc_remote_pending(ex->io);
}

bool spin_for_work(Executor* ex, uint64_t spin_ns) {
    uint64_t deadline = port::monotonic_ns() + spin_ns;
    do {
        for (int i = 0; i < 64; i++) {
            if (remote_pending(ex)) return true;
            weft_arch_cpu_relax();
        }
    } while (port::monotonic_ns() < deadline);
    return false;
}

void park(Executor* ex) {
    Mailbox* mb = ex->mb;
    int64_t timeout = timer_timeout(ex);
    if (timeout == 0) {  // a timer is due: fire it first
        io_tpc_tick(ex->io);  // but hand the kernel what the polls queued
        return;
    }
    if (ex->spin && !io_tpc_may_complete(ex->io)) {
        bool timer_first = timeout > 0 && (uint64_t)timeout <= SPIN_NS;
        if (spin_for_work(ex, timer_first ? (uint64_t)timeout : SPIN_NS) || timer_first) return;
        if ((timeout = timer_timeout(ex)) == 0) return;
    }
    // seq_cst: the store side of the Dekker pair (tpc.h).
    mb->sleeping.store(1, std::memory_order_seq_cst);
    if (mb->wake_head.load(std::memory_order_seq_cst) || mb->spawn_head.load(std::memory_order_seq_cst) ||
        mb->stop.load(std::memory_order_seq_cst) || io_tpc_remote_pending(ex->io)) {
        mb->sleeping.store(0, std::memory_order_relaxed);
        io_tpc_tick(ex->io);  // not sleeping: submit what the polls queued now
        return;
    }
    bump(ex->parks);
    if (ex->ring) {  // parks in io_uring; else in its epoll set
        if (!ex->efd_read_armed) arm_eventfd_read(ex);
        // Without the read (no SQE could be had) a wake could not end the
        // wait: sleep at most 1 ms, then arm it again.
        if (!ex->efd_read_armed && (timeout < 0 || timeout > 1000000)) timeout = 1000000;
        // Submits the operations' queued SQEs in the same call.
        ex->ring->submit_and_wait(1, timeout);  // -ETIME, -EINTR: look again
        reap(ex);
    } else {
        // epoll: the set watches the mailbox's eventfd (drained there) and
        // the operations' fds.
        io_tpc_epoll_wait(ex->io, timeout);
    }
    mb->sleeping.store(0, std::memory_order_relaxed);
}

// Runs until `until` finishes (block_on), or, with until == nullptr, until
// the mailbox's stop is set (a shard).
void run(Executor* ex, TaskHeader* until) {
    for (;;) {
        if (until ? (until->tpc_flags & ST_MASK) == ST_DONE : ex->mb->stop.load(std::memory_order_relaxed) != 0) {
            return;
        }
        poll_remote(ex);
        fire_timers(ex);
        for (uint32_t n = 0; n < POLLS_PER_TICK && ex->ready_head; n++) {
            TaskHeader* t = pop_ready(ex);
            // Only its own poll finishes `until`: block_on holds its one
            // join handle until run returns, so nothing aborts it
            // meanwhile. A pointer compare per poll, then, not a load of its
            // flags; compared before the poll, which may free t.
            bool is_until = t == until;
            run_one(ex, t);
            if (is_until && (until->tpc_flags & ST_MASK) == ST_DONE) {
                io_tpc_tick(ex->io);  // what the last polls queued goes to the kernel now
                return;
            }
        }
        // Were `until` finished some other way after all, parking could
        // sleep for good: the loop's first test returns instead.
        if (!ex->ready_head && !(until && (until->tpc_flags & ST_MASK) == ST_DONE)) park(ex);
        else io_tpc_tick(ex->io);  // busy: submit the SQEs queued meanwhile (epoll: look at the set)
    }
}

// Shutdown on the owner thread: refuse new spawns, drop every task exactly
// once, forget queued wakes.
void shutdown_tasks(Executor* ex) {
    Mailbox* mb = ex->mb;
    ex->closing = true;
    uintptr_t h = mb->spawn_head.exchange(Mailbox::SPAWN_CLOSED, std::memory_order_acquire);
    for (TaskHeader* t = reinterpret_cast<TaskHeader*>(h & ~Mailbox::SPAWN_CLOSED); t;) {
        TaskHeader* next = t->queue_next;
        task_release_unspawned(t);
        t = next;
    }
    // Unlink the ready queue first: dropping a task may free it.
    for (TaskHeader* t = ex->ready_head; t; t = t->queue_next) t->tpc_flags &= ~ST_MASK;
    ex->ready_head = ex->ready_tail = nullptr;
    for (uint32_t i = 0; i < mb->nslots; i++) {
        Slot* s = mb->owned_slot(i);
        if (TaskHeader* t = s->task) {
            t->tpc_flags |= F_ORPHAN;
            t->orphan = 1;
            drop_task(ex, t);
        }
    }
    close_timers(ex);
    uint32_t w = mb->wake_head.exchange(0, std::memory_order_acquire);
    while (w) {
        Slot* s = mb->owned_slot(w - 1);
        w = s->remote_next.load(std::memory_order_relaxed);
        s->queued.store(0, std::memory_order_release);
    }
}

// The I/O driver's request from another thread (an operation polled or
// freed there) was pushed: wake the owner if it sleeps. arg is the Mailbox,
// never freed, so a late request cannot touch a freed executor; the eventfd
// is enough for these rare requests (no MSG_RING).
void io_notify(void* arg) {
    Mailbox* mb = static_cast<Mailbox*>(arg);
    if (!mb->sleeping.load(std::memory_order_seq_cst)) return;
    if (!mb->sleeping.exchange(0, std::memory_order_seq_cst)) return;
    mb->signals.fetch_add(1, std::memory_order_relaxed);
    port::eventfd_signal(mb->eventfd);
}

int executor_init(Executor* ex, const weft_tpc_config* cfg, ShardSet* set, uint64_t set_id, uint32_t shard) {
    int r = mailbox_claim(&ex->mb, &ex->index);
    if (r != 0) return r;
    Mailbox* mb = ex->mb;
    ex->set = set;
    ex->set_id = set_id;
    ex->shard = shard;
    ex->wake_mode = cfg ? cfg->wake : WEFT_TPC_WAKE_DEFAULT;
    ex->spin = !(cfg && (cfg->flags & WEFT_TPC_NO_SPIN));
    TpcIoConfig io;
    io.mailbox_fd = mb->eventfd;
    io.notify = io_notify;
    io.notify_arg = mb;
    // The backend as for a runtime (WEFT_IO, then io_uring, then epoll).
    if ((r = io_tpc_new(io, &ex->io)) != 0) {
        mailbox_release(mb);
        return r;
    }
    if ((ex->ring = io_tpc_ring(ex->io)) != nullptr) {
        ex->cqe_skip = (ex->ring->features() & IORING_FEAT_CQE_SKIP) != 0;
        // MSG_RING between shards of one set, where the kernel has it (5.18).
        ex->can_msg_ring = set_id != 0 && ex->wake_mode != WEFT_TPC_WAKE_EVENTFD &&
                           ex->ring->supports(IORING_OP_MSG_RING);
        // WEFT_TPC_WAKE_DEFAULT takes MSG_RING where the kernel has it:
        // measured faster than the eventfd (bench/RESULTS.md,
        // tpc_shard_ping_pong_*).
    }
    ex->timer_epoch_ns = process_clock().now();
    ex->signals_base = mb->signals.load(std::memory_order_relaxed);
    ex->msg_ring_base = mb->msg_ring_signals.load(std::memory_order_relaxed);
    mb->stop.store(0, std::memory_order_relaxed);
    mb->sleeping.store(0, std::memory_order_relaxed);
    mb->set_id.store(set_id, std::memory_order_relaxed);
    mb->msg_ring_fd.store(ex->can_msg_ring ? ex->ring->ring_fd() : -1, std::memory_order_relaxed);
    // Queue this incarnation fresh: spawns are open again.
    mb->spawn_head.store(0, std::memory_order_release);
    return 0;
}

// After the owner's shutdown_tasks (and, for a set, after every shard thread
// of the set is joined): close the ring, hand the mailbox back, free.
void executor_destroy(Executor* ex) {
    ex->mb->msg_ring_fd.store(-1, std::memory_order_relaxed);
    if (ex->io) io_tpc_release(ex->io);  // closes the ring
    ex->io = nullptr;
    ex->ring = nullptr;
    mailbox_release(ex->mb);
    ex->magic = 0;
    ex->~Executor();
    port::free(ex);
}

Executor* executor_new() {
    void* mem = port::alloc_aligned(sizeof(Executor), alignof(Executor));
    return mem ? new (mem) Executor() : nullptr;
}


}  // namespace

const weft_waker_vtable waker_vtable = {waker_clone, waker_wake, waker_wake, waker_drop};

struct ShardSet {
    static constexpr uint64_t MAGIC = 0x7770632d73657473ull;
    uint64_t magic = MAGIC;
    uint64_t id = 0;
    uint32_t n = 0;
    int32_t pin = 0;
    Executor** shards = nullptr;
    port::Thread* threads = nullptr;
    uint32_t started = 0;
};

namespace {

void* shard_main(void* arg) {
    Executor* ex = static_cast<Executor*>(arg);
    t_exec = ex;
    pool::thread_init();
    if (ex->set->pin) port::thread_pin_self(ex->shard);
    run(ex, nullptr);
    shutdown_tasks(ex);
    // The dropped tasks' operations were cancelled: wait for the kernel's
    // answers before their buffers can go.
    io_tpc_shutdown(ex->io, reap_cb, ex);
    t_exec = nullptr;
    pool::thread_exit();
    return nullptr;
}

void stop_shards(ShardSet* set) {
    for (uint32_t i = 0; i < set->started; i++) {
        Mailbox* mb = set->shards[i]->mb;
        mb->stop.store(1, std::memory_order_seq_cst);
        notify(mb, set->shards[i]->index);
    }
    for (uint32_t i = 0; i < set->started; i++) port::thread_join(&set->threads[i]);
}

void set_destroy(ShardSet* set) {
    for (uint32_t i = 0; i < set->n; i++) {
        if (set->shards[i]) executor_destroy(set->shards[i]);
    }
    port::free(set->shards);
    port::free(set->threads);
    set->magic = 0;
    port::free(set);
}

int check_config(const weft_tpc_config* cfg) {
    if (!cfg) return 0;
    if (cfg->size != sizeof(weft_tpc_config)) return WEFT_EVERSION;
    if (cfg->wake > WEFT_TPC_WAKE_MSG_RING || (cfg->flags & ~WEFT_TPC_NO_SPIN)) return WEFT_EINVAL;
    return 0;
}

}  // namespace

// ---- join handles (owner thread) --------------------------------------------------


int join_poll(TaskHeader* t, const weft_waker* w) {
    if (!join_usable(t)) return WEFT_EINVAL;
    if ((t->tpc_flags & ST_MASK) == ST_DONE) return WEFT_READY;
    if (t->tpc_flags & F_JOIN_WAKER) {
        if (weft_waker_will_wake(&t->join_waker, w)) return WEFT_PENDING;
        weft_waker_drop(t->join_waker);
    }
    t->join_waker = weft_waker_clone(w);
    t->tpc_flags |= F_JOIN_WAKER;
    return WEFT_PENDING;
}

int join_wait(TaskHeader* t, int64_t) {
    if (!join_usable(t)) return WEFT_EINVAL;
    if ((t->tpc_flags & ST_MASK) == ST_DONE) return 0;
    // Only this thread can finish the task: waiting here would never end.
    return WEFT_EDEADLK;
}


int join_abort(TaskHeader* t) {
    if (!join_usable(t)) return WEFT_EINVAL;
    uint64_t f = t->tpc_flags;
    if ((f & ST_MASK) == ST_DONE) return WEFT_EALREADY;
    t->tpc_flags = f | F_CANCEL;
    // Queued: dropped when dequeued. Running (it aborts itself): after its poll.
    if ((f & ST_MASK) == ST_IDLE) drop_task(static_cast<Executor*>(t->tpc_exec), t);
    return 0;
}

// join_free (tpc.h) past its fast path: a failure never read, or a task
// still running.
void join_free_slow(TaskHeader* t) {
    uint64_t f = t->tpc_flags;
    if ((f & ST_MASK) == ST_DONE) {
        // A failure this handle never read (failure.h): reported here. One
        // thread, no race with the completion, which saw F_JOIN and
        // reported nothing.
        if (failure_unobserved(t)) report_unread_failure(t);
        dealloc(t);
        return;
    }
    if (!join_usable(t)) {
        // Freeing it here could race its executor: leak it instead, loudly.
        port::write_stderr("weft: weft_join_free on a thread-per-core task from a thread other than its executor's; "
                           "the handle is leaked. Free join handles on the executor's thread.\n");
        return;
    }
    // Not finished: the task runs on without a handle, and frees itself.
    t->tpc_flags = f & ~(F_JOIN | F_JOIN_WAKER);
    if (f & F_JOIN_WAKER) {
        weft_waker w = t->join_waker;
        t->join_waker = weft_waker{nullptr, nullptr};
        weft_waker_drop(w);
    }
}

TaskHeader* current_task() { return t_cur; }

// ---- timer entries (abi.cpp's weft_timer_* for entries with MAGIC_TPC) ---------------

int timer_cancel(TimerEntry* e) {
    uint32_t st = e->state.load(std::memory_order_acquire);
    if (st == TimerEntry::FIRED) {
        e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
        return 0;
    }
    if (st != TimerEntry::REGISTERED) return 0;  // IDLE, UNSET, or CLOSED by shutdown
    // SAFETY: only a tpc timer (MAGIC_TPC) gets here (abi.cpp and io.cpp dispatch on the magic).
    Executor* ex = static_cast<Executor*>(e->owner);
    if (!owns(ex)) {
        // Only the executor's thread may touch its wheel; it polled this
        // timer there, so this is a contract violation. Leave it registered
        // rather than corrupt the wheel.
        port::write_stderr("weft: a thread-per-core timer cancelled, reset or re-initialised from a thread other "
                           "than its executor's; the timer stays registered. Do it where it was polled.\n");
        return WEFT_EINVAL;
    }
    if (e->level == TimerWheel::EXPIRED) {
        TimerWheel::List::remove(e);  // on fire_timers' batch list
    } else {
        ex->wheel.remove(e);
    }
    weft_waker w = e->waker;
    e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
    weft_waker_drop(w);
    return 0;
}

int timer_reset(TimerEntry* e, uint64_t deadline_ns) {
    // Refused off the executor's thread: the entry stays registered in the
    // wheel, so it must not be marked IDLE (a poll would insert it twice, a
    // cancel would not unlink it before the caller frees it).
    if (tpc::timer_cancel(e) != 0) return WEFT_EINVAL;
    e->deadline_ns = deadline_ns;
    if (e->state.load(std::memory_order_relaxed) != TimerEntry::CLOSED)
        e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
    return 0;
}

int timer_poll(TimerEntry* e, const weft_waker* waker) {
    uint32_t st = e->state.load(std::memory_order_acquire);
    if (st == TimerEntry::FIRED) return WEFT_READY;
    if (st == TimerEntry::CLOSED) return WEFT_ECLOSED;
    // SAFETY: only a tpc timer (MAGIC_TPC) gets here (abi.cpp and io.cpp dispatch on the magic).
    Executor* ex = static_cast<Executor*>(e->owner);
    if (!owns(ex)) return WEFT_EINVAL;  // polled off its executor's thread
    if (st == TimerEntry::REGISTERED) {
        if (!weft_waker_will_wake(&e->waker, waker)) {
            weft_waker old = e->waker;
            e->waker = weft_waker_clone(waker);
            weft_waker_drop(old);
        }
        return WEFT_PENDING;
    }
    if (ex->closing) {
        // Shutting down (foreign code run by a task's drop, or a completion
        // reaped at the end, polls it): the wheel is being closed, or was,
        // and is no clock any more; as a runtime's closed wheel answers.
        e->state.store(TimerEntry::CLOSED, std::memory_order_relaxed);
        return WEFT_ECLOSED;
    }
    // IDLE: already due? (timer.h registration_due: no clock read for a
    // deadline more than a tick ahead.)
    uint64_t now;
    if (registration_due(process_clock(), e->deadline_ns, &now)) {
        e->state.store(TimerEntry::FIRED, std::memory_order_relaxed);
        return WEFT_READY;
    }
    uint64_t when = deadline_tick(ex, e->deadline_ns);
    ex->wheel.catch_up_if_empty(now_tick(ex, now));
    if (when <= ex->wheel.elapsed()) {
        // The wheel has passed that tick already (it saw a later clock).
        process_clock().observe(ex->timer_epoch_ns + ex->wheel.elapsed() * TICK_NS);
        e->state.store(TimerEntry::FIRED, std::memory_order_relaxed);
        return WEFT_READY;
    }
    e->when = when;
    e->waker = weft_waker_clone(waker);
    e->state.store(TimerEntry::REGISTERED, std::memory_order_relaxed);
    ex->wheel.insert(e);
    return WEFT_PENDING;
}

}  // namespace weft::kernel::tpc

using namespace weft::kernel;
using namespace weft::kernel::tpc;
namespace port = weft::port;

extern "C" {

void weft_tpc_config_init(weft_tpc_config* cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
}

int weft_tpc_new(const weft_tpc_config* cfg, weft_tpc** out) {
    if (!out) return WEFT_EINVAL;
    *out = nullptr;
    int r = check_config(cfg);
    if (r != 0) return r;
    if (t_exec) return WEFT_EALREADY;  // one executor per thread
    if (current_runtime()) return WEFT_EDEADLK;  // a worker of a multi-thread runtime
    Executor* ex = executor_new();
    if (!ex) return WEFT_ENOMEM;
    if ((r = executor_init(ex, cfg, nullptr, 0, 0)) != 0) {
        ex->~Executor();
        port::free(ex);
        return r;
    }
    if (!pool::has_runtime_cache()) {
        pool::thread_init();
        ex->own_pool = true;
    }
    t_exec = ex;
    *out = reinterpret_cast<weft_tpc*>(ex);
    return 0;
}

int weft_tpc_free(weft_tpc* p) {
    if (!p) return 0;
    Executor* ex = as_exec(p);
    if (!ex || ex->set) return WEFT_EINVAL;  // shards are freed with their set
    if (!owns(ex)) return WEFT_EINVAL;
    if (ex->in_block_on) return WEFT_EDEADLK;
    shutdown_tasks(ex);
    // The dropped tasks' operations were cancelled: wait for the kernel's
    // answers before their buffers can go.
    io_tpc_shutdown(ex->io, reap_cb, ex);
    bool own_pool = ex->own_pool;
    t_exec = nullptr;
    executor_destroy(ex);
    if (own_pool) pool::thread_exit();
    return 0;
}

// weft_tpc_task_spawn beyond its fast path.
static __attribute__((noinline)) int tpc_task_spawn_slow(weft_tpc* p, void* state, weft_join** join) {
    if (join) *join = nullptr;
    if (!state) return WEFT_EINVAL;
    TaskHeader* t = TaskHeader::from_state(state);
    Executor* ex = p ? as_exec(p) : t_exec;
    if (ex && owns(ex)) {
        int r = spawn_local(ex, t, join != nullptr);
        if (r == 0 && join) *join = reinterpret_cast<weft_join*>(t);
        return r;
    }
    if (!ex || join) {
        // No executor, or a join handle asked for across threads (a tpc join
        // handle belongs to the executor's thread).
        task_release_unspawned(t);
        return WEFT_EINVAL;
    }
    prepare(t, ex);
    Mailbox* mb = ex->mb;
    uintptr_t h = mb->spawn_head.load(std::memory_order_relaxed);
    do {
        if (h & Mailbox::SPAWN_CLOSED) {
            task_release_unspawned(t);
            return WEFT_ECLOSED;
        }
        t->queue_next = reinterpret_cast<TaskHeader*>(h);
    } while (!mb->spawn_head.compare_exchange_weak(h, reinterpret_cast<uintptr_t>(t), std::memory_order_seq_cst,
                                                   std::memory_order_relaxed));
    notify(mb, ex->index);
    return 0;
}

int weft_tpc_task_spawn(weft_tpc* p, void* state, weft_join** join) {
    // A task spawning onto its own executor (p null or this thread's).
    Executor* ex = t_exec;
    if (__builtin_expect(ex && state && (!p || p == reinterpret_cast<weft_tpc*>(ex)), 1) &&
        spawn_local_fast(ex, TaskHeader::from_state(state), join != nullptr)) {
        if (join) *join = reinterpret_cast<weft_join*>(TaskHeader::from_state(state));
        return 0;
    }
    return tpc_task_spawn_slow(p, state, join);
}

int weft_tpc_spawn(weft_tpc* p, const weft_task_desc* desc, weft_join** join) {
    if (join) *join = nullptr;
    TaskHeader* t;
    int r = ctask_new(desc, &t);
    if (r != 0) return r;
    return weft_tpc_task_spawn(p, t->state_ptr(), join);
}

int weft_tpc_block_on_task(weft_tpc* p, void* state, weft_join** join) {
    if (join) *join = nullptr;
    if (!state) return WEFT_EINVAL;
    TaskHeader* t = TaskHeader::from_state(state);
    Executor* ex = as_exec(p);
    if (!ex || !owns(ex) || ex->set) {
        task_release_unspawned(t);
        return WEFT_EINVAL;
    }
    if (ex->in_block_on) {
        task_release_unspawned(t);
        return WEFT_EDEADLK;
    }
    int r = spawn_local(ex, t, true);
    if (r != 0) return r;
    ex->in_block_on = true;
    run(ex, t);
    ex->in_block_on = false;
    r = t->result;
    t->join_taken |= JOIN_OBSERVED;  // returned to the caller: read (failure.h)
    if (join) {
        *join = reinterpret_cast<weft_join*>(t);
    } else {
        tpc::join_free(t);
    }
    return r;
}

int weft_tpc_block_on(weft_tpc* p, const weft_task_desc* desc, void* output) {
    TaskHeader* t;
    int r = ctask_new(desc, &t);
    if (r != 0) return r;
    weft_join* j = nullptr;
    r = weft_tpc_block_on_task(p, t->state_ptr(), &j);
    if (!j) return r;
    if (r == 0) r = weft_join_take(j, output, desc->output_size);
    weft_join_free(j);
    return r;
}

weft_tpc* weft_tpc_current(void) { return reinterpret_cast<weft_tpc*>(t_exec); }

uint32_t weft_tpc_index(const weft_tpc* p) {
    const Executor* ex = reinterpret_cast<const Executor*>(p);
    return ex && ex->magic == Executor::MAGIC ? ex->shard : 0;
}

int weft_shards_new(const weft_tpc_config* cfg, weft_shards** out) {
    if (!out) return WEFT_EINVAL;
    *out = nullptr;
    int r = check_config(cfg);
    if (r != 0) return r;
    uint32_t n = cfg && cfg->shards ? cfg->shards : port::cpu_count();
    if (n > MAX_EXECUTORS) return WEFT_EINVAL;
    void* mem = port::alloc(sizeof(ShardSet));
    if (!mem) return WEFT_ENOMEM;
    ShardSet* set = new (mem) ShardSet();
    set->id = g_set_ids.fetch_add(1, std::memory_order_relaxed) + 1;
    set->n = n;
    set->pin = cfg ? cfg->pin : 0;
    set->shards = static_cast<Executor**>(port::alloc(sizeof(Executor*) * n));
    set->threads = static_cast<port::Thread*>(port::alloc(sizeof(port::Thread) * n));
    if (!set->shards || !set->threads) {
        set->n = 0;
        set_destroy(set);
        return WEFT_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        set->shards[i] = nullptr;
        new (&set->threads[i]) port::Thread();
    }
    for (uint32_t i = 0; i < n && r == 0; i++) {
        Executor* ex = executor_new();
        if (!ex) {
            r = WEFT_ENOMEM;
            break;
        }
        if ((r = executor_init(ex, cfg, set, set->id, i)) != 0) {
            ex->~Executor();
            port::free(ex);
            break;
        }
        set->shards[i] = ex;
    }
    const char* prefix = cfg && cfg->name ? cfg->name : "weft-tpc";
    for (uint32_t i = 0; i < n && r == 0; i++) {
        char name[16];
        size_t k = strlen(prefix);
        if (k > 10) k = 10;
        memcpy(name, prefix, k);
        name[k++] = '-';
        uint32_t v = i, digits = 1;
        for (uint32_t d = v; d >= 10; d /= 10) digits++;
        for (uint32_t d = digits; d > 0; d--, v /= 10) name[k + d - 1] = (char)('0' + v % 10);
        name[k + digits] = 0;
        if (port::thread_start(&set->threads[i], shard_main, set->shards[i], name) != 0) {
            r = WEFT_EAGAIN_THREAD;
            break;
        }
        set->started = i + 1;
    }
    if (r != 0) {
        stop_shards(set);
        set_destroy(set);
        return r;
    }
    *out = reinterpret_cast<weft_shards*>(set);
    return 0;
}

int weft_shards_free(weft_shards* p) {
    if (!p) return 0;
    ShardSet* set = reinterpret_cast<ShardSet*>(p);
    if (set->magic != ShardSet::MAGIC) return WEFT_EINVAL;
    if (t_exec && t_exec->set == set) return WEFT_EDEADLK;
    // Every shard drops its tasks and exits; rings close only after all are
    // joined, so a sibling's MSG_RING never targets a closed ring.
    stop_shards(set);
    set_destroy(set);
    return 0;
}

uint32_t weft_shards_count(const weft_shards* p) {
    const ShardSet* set = reinterpret_cast<const ShardSet*>(p);
    return set && set->magic == ShardSet::MAGIC ? set->n : 0;
}

weft_tpc* weft_shards_get(weft_shards* p, uint32_t i) {
    ShardSet* set = reinterpret_cast<ShardSet*>(p);
    if (!set || set->magic != ShardSet::MAGIC || i >= set->n) return nullptr;
    return reinterpret_cast<weft_tpc*>(set->shards[i]);
}

int weft_tpc_get_metrics(const weft_tpc* p, weft_tpc_metrics* out) {
    const Executor* ex = reinterpret_cast<const Executor*>(p);
    if (!ex || ex->magic != Executor::MAGIC || !out) return WEFT_EINVAL;
    if (out->size != sizeof(weft_tpc_metrics)) return WEFT_EVERSION;
    auto rd = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
    // Before the spawn counters, with acquire: see Executor::ended.
    uint64_t ended = ex->ended.load(std::memory_order_acquire);
    out->polls = rd(ex->polls);
    out->spawned_local = rd(ex->spawned_local);
    out->spawned_remote = rd(ex->spawned_remote);
    out->wakes_local = rd(ex->wakes_local);
    out->wakes_remote = rd(ex->wakes_remote);
    out->wakes_stale = rd(ex->wakes_stale);
    out->parks = rd(ex->parks);
    out->signals = rd(ex->mb->signals) - ex->signals_base;
    out->msg_ring_signals = rd(ex->mb->msg_ring_signals) - ex->msg_ring_base;
    out->live_tasks = (uint32_t)(out->spawned_local + out->spawned_remote - ended);
    out->uses_ring = ex->ring ? 1 : 0;
    return 0;
}

int weft_tpc_io_status(const weft_tpc* p, weft_io_status* out) {
    const Executor* ex = reinterpret_cast<const Executor*>(p);
    if (!ex || ex->magic != Executor::MAGIC || !out) return WEFT_EINVAL;
    if (out->size != sizeof(weft_io_status)) return WEFT_EVERSION;
    if (!ex->io) return WEFT_ECLOSED;
    io_fill_status(ex->io, out);
    return 0;
}

}  // extern "C"
