// kernel/io.h — the I/O driver: one per worker, io_uring or epoll.
//
// Ownership. Each Worker owns a Driver (an io_uring instance, or an epoll set)
// and an eventfd the driver watches. Only the thread holding the worker
// touches the driver's ring, so it needs no lock (an epoll set is the
// kernel's to lock: any thread registers fds in it with epoll_ctl, and only
// the holder waits on it); a pulse
// handoff (pulse.h) moves the worker to a spare thread and the driver with
// it, so a worker stuck in a long poll does not hold up the completions of
// the operations submitted on it: the spare reaps them (tokio-rs/tokio#6315,
// case 3). Another thread that must reach a driver (an operation polled on a
// thread holding no worker, a cancel from a foreign thread) queues a request
// on the driver's remote list and wakes the worker (Driver::remote).
//
// Sleeping in the driver. A worker with nothing to run parks in its driver
// instead of on the futex (Parker::park_in): io_uring_enter(GETEVENTS, wait 1,
// timeout = next timer deadline), submitting what it queued in the same call,
// or epoll_wait. A waker on another thread reaches it through the eventfd,
// which the ring always has a read posted on (or the epoll set watches). The
// sleeping flag is the Parker's state word (parker.h): the eventfd write is
// made only when the worker is in state PARKED_DRIVER, never when it is
// awake. Protocol (both sides RMW the same word, so they are totally ordered):
//   sleeper: post the eventfd read (if not posted); CAS EMPTY -> PARKED_DRIVER;
//            wait in the kernel; exchange(EMPTY).
//   waker:   prev = exchange(NOTIFIED); PARKED_DRIVER -> write the eventfd,
//            PARKED -> futex_wake, else nothing (the sleeper is awake and
//            will see NOTIFIED before it sleeps: its CAS fails).
// A write that lands after the sleeper woke for another reason leaves one
// eventfd completion behind: the next wait returns at once (a spurious wake,
// which the scheduler tolerates), and the read is posted again.
// Model-checked by kernel/driver_park.pml (SPIN; tests/check_models.sh): no
// lost wake-up, and three mutations (a waker that ignores PARKED_DRIVER, a
// read not posted again, a plain store instead of the CAS) are caught.
//
// Operations (IoOp). Created by the ABI (weft_io_*), started by the first
// poll: on io_uring, an SQE on the polling thread's driver (submitted at the
// next park or maintenance tick: see io_tick); on epoll, the non-blocking
// syscall right away, and on EAGAIN a waiter on the fd's readiness entry.
// References: one for the user, one while the kernel holds the operation
// (io_uring: from submission to the last CQE), so freeing a running
// operation only cancels it, and its buffer (`keep`) stays alive until the
// kernel is done with it.
#ifndef WEFT_KERNEL_IO_H
#define WEFT_KERNEL_IO_H

#include <atomic>
#include <stdint.h>

#include "../port/port.h"
#include "../port/uring.h"
#include "weft/weft.h"
#include "weft/weft_io.h"
#include "weft/weft_time.h"

namespace weft::kernel {

struct Shared;
struct Worker;
struct IoOp;
struct FdTable;
struct IoState;

enum IoBackend : uint8_t { IO_NONE = 0, IO_URING = WEFT_IO_URING, IO_EPOLL = WEFT_IO_EPOLL };

struct Driver {
    IoState* st = nullptr;      // the state it belongs to (a runtime's, or a tpc executor's)
    Worker* worker = nullptr;   // the multi-thread runtime's worker, or nullptr (tpc)
    IoBackend backend = IO_NONE;
    port::Ring ring;   // io_uring
    int epfd = -1;     // epoll
    int wake_fd = -1;  // the eventfd other threads write to wake the holder
    bool owns_wake_fd = true;  // false on a tpc executor: the fd is its mailbox's
    uint64_t wake_buf = 0;   // the posted eventfd read's target (io_uring)
    bool wake_posted = false;
    // Set by io_shutdown once the kernel holds nothing of this driver's; a
    // late free (after the runtime) then has nothing to cancel.
    std::atomic<bool> closed{false};
    // Set by the holder when its shutdown drain begins: remote requests
    // taken from then on are not submitted (they complete with
    // WEFT_ECANCELED). Atomic only because a pusher that saw `closed` may
    // run take_remote too (push_remote), after the drain set both.
    std::atomic<bool> draining{false};
    // Operations the kernel holds (io_uring only). Holder only; read at
    // shutdown after the threads left.
    uint32_t in_flight = 0;
    // Requests from threads not holding the worker: ops to start or cancel.
    // Guarded by remote_mu. `remote_any`: set (release) by push_remote under
    // the lock, read (acquire) by the holder in take_remote to skip the lock
    // when nothing waits; a set that races the read is seen at the next look
    // (push_remote unparks the worker after it).
    port::Mutex remote_mu;
    IoOp* remote_head = nullptr;
    IoOp* remote_tail = nullptr;
    std::atomic<bool> remote_any{false};
    // Counters (relaxed), read by status and the hints below. io_uring: the
    // holder's. epoll: submitted and completed count the waits on fds in this
    // driver's set, bumped by whichever thread registers or ends one.
    std::atomic<uint64_t> submitted{0};
    std::atomic<uint64_t> completed{0};
    std::atomic<uint64_t> enters{0};
    std::atomic<uint64_t> wake_writes{0};
};

// ---- runtime lifecycle (io.cpp) ----
// Chooses the backend (WEFT_IO, then io_uring, then epoll) and sets up a
// driver per worker. 0 or a negative code (the reason is kept for status).
int io_init(Shared* sh);
// Shutdown, after every runtime thread was joined and every task dropped:
// cancels what the kernel still holds, waits for it, closes rings and fds.
void io_shutdown(Shared* sh);
// Frees what io_init allocated (the last reference on Shared).
void io_destroy(Shared* sh);

// ---- the scheduler's hooks (worker's holder only) ----
// Whether something may arrive through w's driver: SQEs queued and not
// submitted, operations the kernel holds, or (epoll) waits on fds in w's set. A
// worker that finds no work then parks in the driver at once instead of
// spinning first: the spin neither submits nor sees completions (io_uring
// completes them in task work that needs a syscall of this thread; epoll
// needs epoll_wait), so it only delayed them, by up to SEARCH_SPIN_NS.
bool io_may_complete(Worker* w);
// The same question asked from another thread (the pulse monitor), from the
// driver's counters and remote requests alone: a hint, true also when w has
// no driver.
bool io_quiet_hint(const Worker* w);
// Maintenance: takes remote requests and reaps completions already posted
// (no syscall); with `submit`, also submits the queued SQEs (one syscall
// when there are any), and on epoll polls the set (a zero-timeout
// epoll_wait) once anything has waited on an fd (io.cpp IoState::ep_waited;
// before that the set holds only the wake eventfd). Returns the number of
// tasks woken.
uint32_t io_tick(Worker* w, bool submit);
// Sleeps in the driver for at most timeout_ns (-1: no limit), as the
// parker's wait function; wakes tasks whose operations completed. Returns the
// number of tasks woken (they were scheduled on w).
uint32_t io_park(Worker* w, int64_t timeout_ns);

// The driver a task polled on this thread submits to (nullptr: a thread
// holding no worker of sh).
Driver* io_current_driver(Shared* sh);

// ---- the thread-per-core executor's I/O (kernel/tpc.cpp) ----
// A tpc executor has an IoState of its own with one Driver, used only by
// the executor's thread: operations created there (weft_io_* with rt NULL
// on the executor's thread) submit to its ring or epoll set. Its io_uring
// is the executor's ring (the one it parks in), so the executor reaps every
// CQE itself and hands the ones that are not its own tags to io_tpc_cqe.
// Its epoll set watches the mailbox's eventfd (data UINT64_MAX). A request
// from another thread (an operation polled or freed there) is queued on the
// driver's remote list and `notify(arg)` is called after the push, which
// must wake the executor (its park re-checks io_tpc_remote_pending).
// The state is reference-counted: the executor holds one reference, every
// operation one, so an operation that outlives its executor still reads
// live memory and completes with WEFT_ECLOSED.
struct TpcIoConfig {
    int mailbox_fd = -1;           // the executor's eventfd (epoll watches it; never closed here)
    void (*notify)(void*) = nullptr;
    void* notify_arg = nullptr;
};
// 0 with *out set, or a negative code: WEFT_ENOMEM, or io_uring's error when
// WEFT_IO=uring forces a ring that cannot be had.
int io_tpc_new(const TpcIoConfig& cfg, IoState** out);
// The ring (io_uring backend) or nullptr (epoll).
port::Ring* io_tpc_ring(IoState* st);
// One CQE whose user_data is not one of the executor's own tags.
void io_tpc_cqe(IoState* st, uint64_t user_data, int32_t res, uint32_t flags);
// Serves the remote list (owner only); cheap when it is empty.
void io_tpc_take_remote(IoState* st);
// Whether a request from another thread is queued (seq_cst: the executor's
// park reads it after its sleeping flag, the Dekker pair of tpc.h).
bool io_tpc_remote_pending(const IoState* st);
// Whether a completion may still come (operations in the kernel, SQEs not
// submitted, epoll waits registered): the executor then parks at once
// rather than spinning, and submits at every tick.
bool io_tpc_may_complete(const IoState* st);
// Submits the queued SQEs (io_uring), or polls the epoll set without
// waiting. Owner only.
void io_tpc_tick(IoState* st);
// epoll: waits up to timeout_ns (-1: no limit) and dispatches readiness.
void io_tpc_epoll_wait(IoState* st, int64_t timeout_ns);
// Owner thread, after every task was dropped: cancels what the kernel holds
// and waits (bounded) for every answer, reaping through reap(arg) (the
// executor's own reap, which sees its tags too), then closes the driver:
// later operations complete with WEFT_ECLOSED.
void io_tpc_shutdown(IoState* st, void (*reap)(void*), void* arg);
// Closes the ring / epoll set and drops the executor's reference.
void io_tpc_release(IoState* st);
// weft_tpc_io_status.
void io_fill_status(const IoState* st, weft_io_status* out);

}  // namespace weft::kernel

#endif
