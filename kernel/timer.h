// kernel/timer.h — timers: entries, the per-worker wheels, and how workers
// drive them.
//
// A timer entry is the caller's memory (weft_timer in C, the sleep awaitable
// in C++): registering links it into a wheel, nothing is allocated.
//
// Wheels: one per worker (a "shard"), each behind its own futex mutex. A
// task registers its timer in the wheel of the worker it is polled on, so
// registrations from different workers never contend; a timer registered
// from a thread outside the runtime goes to a wheel chosen round-robin, and
// if that makes the wheel's next deadline earlier, its worker is unparked so
// that it re-arms its park timeout. The alternative, one wheel for the whole
// runtime behind one lock (build with -DWEFT_TIMER_ONE_WHEEL=1, timer.cpp),
// was measured under the `timers` workload (100,000 sleeps in [0, 10) ms,
// weft-bench timers) on 2 workers, 4 interleaved rounds each, 2-vCPU VM,
// 2026-11-21:
//                        median iteration     lateness p50      p99
//     per-worker wheels  66.7 - 77.1 ms       0.91 - 0.94 ms    1.61 - 1.70 ms
//     one shared wheel   75.4 - 84.4 ms       0.95 - 0.96 ms    1.84 - 2.08 ms
// Per-worker wheels win in every round (about 10% on the iteration, 10-20%
// on p99): registrations never contend, and a worker fires its own wheel
// without taking a lock other workers want. Decision: per-worker wheels.
//
// Who fires: each worker advances its own wheel at scheduler maintenance
// (every INJECT_INTERVAL polls), whenever it runs out of local work, and
// whenever it wakes from parking; a parked worker sleeps at most until its
// wheel's next deadline. A worker that goes idle also fires the expired
// timers of wheels whose workers are busy (try-lock, never waits), and parks
// no longer than their next deadline *as it was when it parked*: a timer
// that a busy worker registers in its own wheel afterwards, earlier than
// that, does not wake the parked worker (that would cost a futex wake on
// every such registration); it is fired by its owner, at its next
// maintenance. A busy worker also looks at one other wheel at each
// maintenance, in turn, and fires it if it is a whole tick overdue (its
// owner descheduled, or stuck in a long poll that pulse left it, pulse.cpp
// handoff_covered). A worker stuck in one long poll is otherwise the pulse
// subsystem's to hand over (DESIGN.md, "Isolate"), timers included.
//
// Entry states (TimerEntry::state; transitions under the wheel's lock except
// where noted):
//   UNSET       no deadline yet (weft_timer_init)
//   IDLE        deadline set, not in a wheel (reset; or cancelled)
//   REGISTERED  in a wheel with a waker (poll); the wheel lock guards `waker`
//               and `waker_borrowed`
//   FIRED       taken out of the wheel, waker woken; the firing thread does
//               not touch the entry after storing FIRED (release), so the
//               owner may free it as soon as it reads FIRED (acquire)
//   CLOSED      the runtime shut down while the entry was registered
//               (shutdown cleared the wheels); the waker was dropped
//   FIRING      a borrowed waker's wake in progress (below); only while the
//               firing thread holds the lock: a poll or cancel that sees it
//               takes the lock, and then finds FIRED
// Only the owner of the entry resets, polls and cancels it (one thread at a
// time); firing and shutdown are the only other writers.
//
// Borrowed wakers. A registration normally clones the poll's waker (a
// reference on the task) and a cancel drops it: two atomic read-modify-writes
// on the task's state word for every timeout that never fires. When the
// deadline is far (BORROW_AHEAD_TICKS or more: a timeout, which is mostly
// cancelled, not a short sleep, which fires) and the entry lies inside the
// memory of the very task that the waker wakes (a timer in a C task's state,
// or a weft::sleep awaited directly in a spawned coroutine's own frame; not
// weft::timeout, whose timer is in an inline child's frame, a separate
// allocation), the entry holds the waker without a reference
// (`waker_borrowed`).
//
// Why that is safe: every timer is cancelled before its memory is freed
// (weft_time.h). While an entry is REGISTERED its memory, and with it the
// task's header, is alive, and a cancel of a REGISTERED entry takes the
// wheel's lock; so a thread that holds the lock and sees REGISTERED may
// touch the header.
//
// How it fires: under the lock, the firing thread stores FIRING, makes a
// wake by reference's state transition (transition_to_notified_by_ref),
// stores FIRED, and schedules the task after unlocking if the transition
// said so.
//   - The transition takes a reference only for the queue entry of an idle
//     task, never one from a running or completed task: the scheduler frees
//     those without a read-modify-write when it sees no other reference
//     (complete()'s fast path, join_free's solo path: "nothing can take a
//     new reference without holding one"). A clone from nothing would break
//     that (kernel/task_state.pml models the firer, -DBORROWED_TIMER, and
//     catches the clone as mutation ts-timer-clones).
//   - FIRING before the transition: the poll that the wake causes reads the
//     entry after acquiring the task's word, so it sees FIRING or FIRED,
//     never REGISTERED, which it would answer "pending" without the lock,
//     losing the wake (mutation ts-timer-no-firing).
//
// Figures (the 2026-11-23 host): insert + cancel of a timer in a task's
// state 19 ns (timer/insert_cancel/runtime_in_task), against 24 outside the
// task's memory. Short sleeps are left to the clone: borrowed for every
// deadline, the `timers` workload (100,000 sleeps of 0-10 ms, all firing)
// kept its iteration time but its p99 lateness went from 2.05 to 2.77 ms
// (medians of 10 alternating runs; the cause not found: the firing thread's
// transitions under the lock were one suspect, made after it for a test,
// and the p99 stayed between the two). Linux's timer wheel rests on the same
// split: timeouts are mostly cancelled before they expire, timers fire.
#ifndef WEFT_KERNEL_TIMER_H
#define WEFT_KERNEL_TIMER_H

#include <atomic>
#include <stdint.h>

#include "../arch/padding.h"
#include "../include/weft/weft.h"
#include "../port/port.h"
#include "clock.h"
#include "timer_wheel.h"

namespace weft::kernel {

struct Shared;
struct Worker;

inline constexpr uint64_t TICK_NS = 1000000;  // 1 ms: the wheel's resolution
// Deadlines this many ticks ahead or more borrow their task's waker (above):
// past level 0 of the wheel.
inline constexpr uint64_t BORROW_AHEAD_TICKS = 64;

// A registration's question: has the deadline passed? Sets *now to a time
// the clock has reached (for the wheel's catch-up). Compared first with the
// published time (Clock::reached), which costs no clock read and answers for
// every deadline more than a tick past it: those are registered, the common
// case. One within a tick of it reads the source: the published time may
// trail by microseconds, and a deadline passed inside the current tick would
// otherwise wait for the tick's end (the wheel fires whole ticks). Only when
// nobody has read the clock for over a tick can a deadline already passed be
// registered; it then fires at the end of the current tick at the latest,
// never early. A yes is published before anyone acts on it.
inline bool registration_due(Clock& clock, uint64_t deadline_ns, uint64_t* now) {
    uint64_t reached = clock.reached();
    *now = reached;
    if (reached >= deadline_ns) return true;
    if (deadline_ns - reached > TICK_NS) return false;
    uint64_t raw = clock.raw();
    if (raw < deadline_ns) {
        if (raw > reached) *now = raw;
        return false;
    }
    clock.observe(raw);
    return true;
}

// 64 bytes (the size of weft_timer; 8-aligned, so not necessarily one cache
// line): a sleep or a timeout lives in its task's memory, and the `timers`
// workload is bound by memory (100,000 sleeping tasks; its task took 416
// bytes, now 384: a pool block of 3 lines of 128 instead of 3.5). The first
// four fields sit in WheelEntry's tail padding (the Itanium C++ ABI of every
// target reuses it; the static_assert below stops a compiler that does not).
struct TimerEntry : WheelEntry {
    // The kind is in the magic, which weft_timer_init writes once: a timer
    // of a multi-thread runtime, or of a thread-per-core executor (tpc.h).
    static constexpr uint16_t MAGIC_RT = 0x746d;   // "tm"
    static constexpr uint16_t MAGIC_TPC = 0x7470;  // "tp"
    enum : uint8_t { UNSET, IDLE, REGISTERED, FIRED, CLOSED, FIRING };  // FIRING last: abi.cpp as_timer checks the range

    std::atomic<uint8_t> state{UNSET};
    bool waker_borrowed = false;  // `waker` holds no reference (above); guarded like `waker`
    uint16_t shard = 0;           // the wheel it is registered in (< MAX_WORKERS, scheduler.h)
    uint16_t magic = 0;           // MAGIC_RT or MAGIC_TPC (0: not a timer)
    weft_waker waker;             // guarded by the shard lock while REGISTERED
    void* owner = nullptr;        // the Shared (MAGIC_RT) or tpc::Executor (MAGIC_TPC)
    uint64_t deadline_ns = 0;     // in the owner's clock

    // The multi-thread runtime it belongs to (nullptr for a tpc timer).
    Shared* rt() const { return magic == MAGIC_RT ? static_cast<Shared*>(owner) : nullptr; }
    // The thread-per-core executor it belongs to (nullptr for a runtime's).
    void* tpc() const { return magic == MAGIC_TPC ? owner : nullptr; }
};
static_assert(sizeof(TimerEntry) <= 64, "a timer is 64 bytes (the size of weft_timer)");

struct alignas(WEFT_CACHE_LINE) TimerShard {
    port::Mutex mu;
    bool closed = false;  // guarded by mu: shutdown emptied this wheel
    // The wheel's next_expiration(), published after every change under mu
    // (relaxed store) for lock-free peeks by workers deciding whether to
    // fire or how long to park. Only a hint: a stale value costs an early
    // wake-up or a later look, never a lost timer (the owner re-reads it
    // under the lock).
    std::atomic<uint64_t> next_tick{TimerWheel::NONE};
    TimerWheel wheel;  // guarded by mu
};

// ---- per-runtime state (scheduler.cpp calls these) ----
int timers_init(Shared* sh);      // after the workers exist; 0 or WEFT_ENOMEM
void timers_shutdown(Shared* sh); // shutdown step 5b: empty every wheel
void timers_destroy(Shared* sh);  // frees the shards (Shared is being freed)

// Fires the expired timers this worker is responsible for (its own wheel;
// when `idle`, also other wheels whose deadlines passed; when busy, one other
// wheel in turn if it is TIMER_HELP_AFTER_TICKS overdue). Returns how many
// fired. Woken tasks go to the back of this worker's local queue.
uint32_t timers_fire(Worker* w, bool idle);
// Whether worker `worker`'s wheel has a timer due `ticks` ticks ago or
// earlier (a lock-free peek, for the pulse monitor).
bool timers_overdue(Shared* sh, uint32_t worker, uint64_t ticks);
// How many ticks overdue a wheel may get before a busy worker fires it
// (timers_fire): a whole tick gives the owner its chance first.
inline constexpr uint64_t TIMER_HELP_AFTER_TICKS = 1;
// How long a worker about to park may sleep: ns until the earliest deadline
// of its own wheel and of the wheels of workers that are not parked, or -1
// when there is none.
int64_t timers_park_timeout(Worker* w);

// ---- entries (abi.cpp) ----
// The runtime's clock, and a deadline in ticks (rounded up: never early).
uint64_t runtime_now(Shared* sh);
// WEFT_READY once the deadline has passed; WEFT_PENDING after registering
// waker (cloned, or borrowed: above) to be woken then; WEFT_ECLOSED after
// shutdown.
int timer_poll(TimerEntry* e, const weft_waker* waker);
// timer_cancel's work for an entry seen REGISTERED or FIRING (takes its
// wheel's lock; by then a FIRING entry is FIRED).
void timer_cancel_registered(TimerEntry* e);
// Unregisters (drops the stored waker unless borrowed); a no-op unless
// registered. Inline: most cancels (a reset's, a sleep's destructor after it
// fired) find nothing in a wheel.
inline void timer_cancel(TimerEntry* e) {
    // acquire: pairs with the firing thread's release store of FIRED.
    uint32_t st = e->state.load(std::memory_order_acquire);
    if (st == TimerEntry::FIRED) {
        e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
    } else if (st == TimerEntry::REGISTERED || st == TimerEntry::FIRING) {
        timer_cancel_registered(e);  // FIRING: the lock waits for FIRED
    }
}
// Sets the deadline, unregistering the entry if it was registered.
inline void timer_reset(TimerEntry* e, uint64_t deadline_ns) {
    timer_cancel(e);
    e->deadline_ns = deadline_ns;
    if (e->state.load(std::memory_order_relaxed) != TimerEntry::CLOSED)
        e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
}

}  // namespace weft::kernel

#endif
