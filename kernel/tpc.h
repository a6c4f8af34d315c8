// kernel/tpc.h — the thread-per-core executor (include/weft/weft_tpc.h).
//
// One executor = one thread, one ready queue (an intrusive FIFO through
// TaskHeader::queue_next), one io_uring (or, without io_uring, poll(2) on an
// eventfd). Tasks are only ever touched by the executor's thread, so the
// local paths — spawn, wake, poll, complete — use plain loads and stores: no
// atomic read-modify-write, no lock, no fence.
//
// Cross-thread wakes. A waker's data is an Identity, not a pointer:
//
//   bits 63..32  generation of the task's slot (>= 1, so data is never 0)
//   bits 31..22  executor slot: index into g_mailboxes (MAX_EXECUTORS)
//   bits 21..0   task slot: index into that mailbox's slot chunks
//
// Everything a foreign thread touches lives in a Mailbox, and mailboxes and
// their slot chunks are never freed (an executor that ends hands its mailbox
// to the next executor that starts; the memory high-water mark stays). So a
// waker held past its task, its executor, or the process's last executor
// reads only live memory, and its generation says it is stale:
//
//   Slot::identity
//                 written by the owner only (store-release): the identity of
//                 the slot's task, generation included; its generation is
//                 bumped each time the slot's task goes away (finished,
//                 cancelled, dropped at shutdown), so an identity from
//                 before no longer matches. (The whole identity, not the
//                 generation alone: a spawn then reads its task's identity
//                 in one load instead of packing it; the exec and slot bits
//                 of a slot never change, since a mailbox keeps its index.)
//   Slot::queued  0/1: set by the waking thread (exchange), cleared by the
//                 owner when it takes the slot off the wake stack. Only the
//                 thread that flips it 0 -> 1 pushes the slot, so a slot is
//                 on the stack at most once and wakes merge while it is.
//
// The wake stack is a Treiber stack of slot indices (+1) through
// Slot::remote_next; producers push with a CAS, the owner takes the whole
// stack with one exchange (no pop of single entries, hence no ABA), reverses
// it, and for each entry reads remote_next *before* clearing queued (after
// the clear the slot may be pushed again and remote_next rewritten).
//
//   remote wake(id):                     owner drain:
//     if slot.identity != id: stale        h = wake_head.exchange(0)
//     if queued.exchange(1): merged        for each slot s in h (FIFO):
//     push s on wake_head                    next = s.remote_next
//     if owner sleeping: signal it           s.queued.exchange(0)   (acq_rel)
//                                            if s.task: schedule it
//
// The acq_rel exchange on the owner's side reads the latest `queued`, so a
// wake that merged (saw 1) is ordered before it, and the poll that follows
// sees what that waker published before waking.
//
// A stale identity whose generation still matched when the waker checked,
// and whose slot was freed and reused before the owner drained it, wakes
// the slot's new task once: a spurious wake, which every poll function must
// tolerate anyway (the C++ wrappers re-check their awaiter). It never
// touches freed memory and never loses a wake.
//
// Sleeping flag (Dekker, both sides sequentially consistent):
//
//   owner park:                           producer (after its push):
//     sleeping.store(1)                     if sleeping.load() &&
//     if wake_head || spawn_head ||             sleeping.exchange(0): signal
//        stop: sleeping.store(0), return
//     wait in the ring / poll(2)
//     sleeping.store(0)
//
// Either the owner sees the push, or the producer sees sleeping == 1 and
// signals; a wake while the owner is awake costs no system call. Signal:
// write the mailbox's eventfd (never closed, so a late write can only cause
// one spurious wake-up), which an IORING_OP_READ in the owner's ring
// completes; or, from a sibling shard of the same set whose ring can,
// IORING_OP_MSG_RING into the owner's ring (the set closes its rings only
// after every shard thread is joined, so the fd is valid while a sibling
// can send).
//
// Model-checked by kernel/tpc_wake.pml (SPIN; tests/check_models.sh): the
// queued flag, the wake stack and the sleeping flag lose no wake-up; three
// mutations (clear queued before reading remote_next, park without the
// re-check, never signal) are caught.
//
// Remote spawns use a second Treiber stack of TaskHeader* (through
// queue_next) whose low bit is CLOSED: the owner sets it at shutdown and
// drops what it takes; a spawn that finds it set drops its own task.
// Every task is therefore run or dropped exactly once.
#ifndef WEFT_KERNEL_TPC_H
#define WEFT_KERNEL_TPC_H

#include <atomic>
#include <stddef.h>
#include <stdint.h>

#include "../arch/padding.h"
#include "../include/weft/weft.h"
#include "../port/uring.h"
#include "pool.h"
#include "task.h"
#include "timer.h"

namespace weft::kernel {
struct IoState;  // kernel/io.h
}

namespace weft::kernel::tpc {

inline constexpr uint32_t EXEC_BITS = 10;
inline constexpr uint32_t SLOT_BITS = 22;
inline constexpr uint32_t MAX_EXECUTORS = 1u << EXEC_BITS;  // executors alive at once
inline constexpr uint32_t MAX_SLOTS = 1u << SLOT_BITS;      // live tasks per executor
inline constexpr uint32_t CHUNK_SHIFT = 12;
inline constexpr uint32_t CHUNK_SLOTS = 1u << CHUNK_SHIFT;
inline constexpr uint32_t MAX_CHUNKS = MAX_SLOTS / CHUNK_SLOTS;

struct Identity {
    static constexpr uint64_t GEN_ONE = uint64_t(1) << 32;
    static uint64_t pack(uint32_t gen, uint32_t exec, uint32_t slot) {
        return (uint64_t)gen << 32 | (uint64_t)exec << SLOT_BITS | slot;
    }
    static uint32_t gen(uint64_t id) { return (uint32_t)(id >> 32); }
    static uint32_t exec(uint64_t id) { return (uint32_t)(id >> SLOT_BITS) & (MAX_EXECUTORS - 1); }
    static uint32_t slot(uint64_t id) { return (uint32_t)id & (MAX_SLOTS - 1); }
};
static_assert(sizeof(void*) == 8, "a waker identity is packed into the 64-bit data pointer");

struct Slot {
    std::atomic<uint64_t> identity;     // owner writes; any thread reads (generation >= 1)
    std::atomic<uint32_t> queued;       // see the header comment
    std::atomic<uint32_t> remote_next;  // wake-stack link: slot index + 1, 0 = end
    uint32_t free_next;                 // owner: free-list link (index + 1)
    TaskHeader* task;                   // owner: the live task, or nullptr
};
// 32 bytes since the identity is 64-bit (24 before): a power of two, so a
// slot's address is a shift, not a multiply.
static_assert(sizeof(Slot) == 32, "a slot grew");

struct Chunk {
    Slot slots[CHUNK_SLOTS];
};

// Everything other threads may touch; never freed (see above).
struct alignas(WEFT_CACHE_LINE) Mailbox {
    static constexpr uintptr_t SPAWN_CLOSED = 1;

    // Written by waking threads (CAS), taken by the owner (exchange).
    alignas(WEFT_CACHE_LINE) std::atomic<uint32_t> wake_head{0};
    // Written by spawning threads (CAS), taken by the owner.
    alignas(WEFT_CACHE_LINE) std::atomic<uintptr_t> spawn_head{0};
    // The owner's park flag and stop request (read by everyone on a wake).
    alignas(WEFT_CACHE_LINE) std::atomic<uint32_t> sleeping{0};
    std::atomic<uint32_t> stop{0};
    // Ring fd that siblings of set_id may MSG_RING (-1: use the eventfd).
    std::atomic<int> msg_ring_fd{-1};
    std::atomic<uint64_t> set_id{0};
    // Counted by the signalling thread (already in a system call).
    std::atomic<uint64_t> signals{0};
    std::atomic<uint64_t> msg_ring_signals{0};
    int eventfd = -1;  // created with the mailbox, never closed
    // The buffer of the eventfd read armed in the owner's ring. Here, not in
    // the Executor: a read the kernel completes while a closed ring is
    // still being torn down writes into memory that is never freed.
    uint64_t efd_buf = 0;

    // Claimed by one executor at a time (acquire/release hands over the
    // owner-only fields below from one executor to the next).
    alignas(WEFT_CACHE_LINE) std::atomic<uint32_t> claimed{0};
    uint32_t free_head = 0;  // owner: free slots (index + 1)
    uint32_t nslots = 0;     // owner: slots created so far
    std::atomic<Chunk*> chunks[MAX_CHUNKS] = {};

    // The owner's view: idx < nslots, so its chunk exists.
    Slot* owned_slot(uint32_t idx) const {
        return &chunks[idx >> CHUNK_SHIFT].load(std::memory_order_relaxed)->slots[idx & (CHUNK_SLOTS - 1)];
    }
    // Any thread's view: nullptr when the chunk was never created.
    Slot* slot(uint32_t idx) const {
        Chunk* c = chunks[idx >> CHUNK_SHIFT].load(std::memory_order_acquire);
        return c ? &c->slots[idx & (CHUNK_SLOTS - 1)] : nullptr;
    }
};

// Owner-thread state of a task (TaskHeader::tpc_flags).
enum : uint64_t {
    ST_MASK = 3,
    ST_IDLE = 0,     // waiting for a wake
    ST_READY = 1,    // on the ready queue
    ST_RUNNING = 2,  // being polled
    ST_DONE = 3,     // finished or dropped; the slot is free again
    F_WOKEN = 4,     // woken while RUNNING: queue it again after the poll
    F_CANCEL = 8,    // abort requested: drop instead of polling
    F_JOIN = 16,     // a join handle holds the header
    F_JOIN_WAKER = 32,  // join_waker holds a waker to wake at completion
    F_ORPHAN = 64,   // its executor is gone (join handles still work)
};

struct ShardSet;

struct Executor {
    static constexpr uint64_t MAGIC = 0x7770632d65786563ull;  // "wpc-exec"
    uint64_t magic = MAGIC;
    uint32_t index = 0;  // mailbox slot (Identity::exec)
    uint32_t shard = 0;  // index in its set
    Mailbox* mb = nullptr;
    ShardSet* set = nullptr;
    uint64_t set_id = 0;

    // ---- owner thread only ----
    TaskHeader* ready_head = nullptr;
    TaskHeader* ready_tail = nullptr;
    uint32_t wake_mode = 0;
    bool spin = true;         // spin before parking (not WEFT_TPC_NO_SPIN)
    bool closing = false;     // shutdown began: spawns refused, wakes ignored
    bool in_block_on = false;
    bool own_pool = false;    // created the thread's pool cache (weft_tpc_new)
    bool efd_read_armed = false;
    bool can_msg_ring = false;  // this executor's ring may send MSG_RING
    bool cqe_skip = false;      // IORING_FEAT_CQE_SKIP

    // ---- counters: written by the owner (load + store), read by anyone ----
    // Here, beside the fields every spawn and poll touches, not after the
    // timer wheel and the ring (a few kilobytes further: one more cache line
    // per spawn and per poll).
    std::atomic<uint64_t> polls{0}, spawned_local{0}, spawned_remote{0}, wakes_local{0}, wakes_remote{0},
        wakes_stale{0}, parks{0};
    // Tasks that gave their slot back (finished, cancelled, dropped). The
    // live count (weft_tpc_metrics::live_tasks) is spawned_local +
    // spawned_remote - ended: every task that gets a slot is counted in one
    // of the two, so a spawn writes one counter, not two. ended is stored
    // with release, and read first with acquire: a reader then sees at
    // least the spawns of the tasks it counts as ended (never a negative
    // count).
    std::atomic<uint64_t> ended{0};

    TimerWheel wheel;           // this executor's timers (1 ms ticks from timer_epoch_ns)
    uint64_t timer_epoch_ns = 0;
    uint64_t signals_base = 0;  // the mailbox's counters when this executor took it
    uint64_t msg_ring_base = 0;
    // The executor's I/O (kernel/io.h, io_tpc_*): one driver whose io_uring
    // is the ring the executor parks in (`ring`, nullptr on epoll), or an
    // epoll set that watches the mailbox's eventfd.
    IoState* io = nullptr;
    port::Ring* ring = nullptr;  // owner only; set at init, cleared at destroy
};

// The executor of the calling thread (owner), or nullptr.
extern constinit __attribute__((tls_model("initial-exec"))) thread_local Executor* t_exec;

// The vtable of every task waker on this executor (data: an Identity).
extern const weft_waker_vtable waker_vtable;

// Join-handle operations on a TASK_TPC task (kernel/abi.cpp dispatches here).
int join_poll(TaskHeader* t, const weft_waker* w);
int join_wait(TaskHeader* t, int64_t timeout_ns);
inline bool owns(const Executor* ex) { return t_exec == ex; }
// Join handles belong to the executor's thread while the task runs. Once it
// is finished (ST_DONE: the executor never touches it again) or its executor
// is gone (F_ORPHAN), any thread that holds the handle may use it: that is
// how a handle outlives weft_tpc_free.
inline bool join_usable(const TaskHeader* t) {
    return (t->tpc_flags & F_ORPHAN) || (t->tpc_flags & ST_MASK) == ST_DONE ||
           owns(static_cast<const Executor*>(t->tpc_exec));
}
inline bool join_finished(const TaskHeader* t) { return (t->tpc_flags & ST_MASK) == ST_DONE; }
inline int join_status(const TaskHeader* t) {
    if (!join_usable(t)) return WEFT_EINVAL;
    return (t->tpc_flags & ST_MASK) == ST_DONE ? t->result : WEFT_EAGAIN;
}
int join_abort(TaskHeader* t);
// Frees a finished task's memory (its output dropped first): nothing reads
// the header after this, so no stage update.
inline void dealloc(TaskHeader* t) {
    if (t->stage == Stage::Finished && t->vtable->drop_output) t->vtable->drop_output(t->state_ptr());
    pool::free(t, t->alloc_size);
}
void join_free_slow(TaskHeader* t);
// Inline (weft_join_free): the usual handle is freed after its task
// finished and its result was taken. Finished means usable from any thread
// (join_usable), the executor done with it, and no join waker held (finish
// took it; join_poll sets none on a finished task).
inline void join_free(TaskHeader* t) {
    if (__builtin_expect((t->tpc_flags & ST_MASK) == ST_DONE && !failure_unobserved(t), 1)) {
        dealloc(t);
        return;
    }
    join_free_slow(t);
}
// Timers of this executor (weft_timer_* dispatch here for an entry with
// TimerEntry::MAGIC_TPC; weft_timer_init binds one on an executor's thread). The
// entry is the owner thread's alone: no lock. WEFT_EINVAL from any other
// thread while the executor lives; after its end every registered entry is
// CLOSED and only cancel is meaningful.
int timer_reset(TimerEntry* e, uint64_t deadline_ns);
int timer_poll(TimerEntry* e, const weft_waker* waker);
// 0, or WEFT_EINVAL when a registered entry is cancelled off its executor's
// thread (it stays registered: only that thread may touch the wheel).
int timer_cancel(TimerEntry* e);

// The task being polled by this thread's executor, or nullptr.
TaskHeader* current_task();

}  // namespace weft::kernel::tpc

#endif
