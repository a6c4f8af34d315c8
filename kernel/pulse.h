// kernel/pulse.h — preemption without signals: per-task budgets, graduated
// intervention, worker handoff (the user's view: include/weft/weft_pulse.h).
//
// ---- Threads and workers ----------------------------------------------------
// A Worker (scheduler.h) is a set of queues and duties: run queue, LIFO slot,
// fork stack, owned-task list, timer wheel, parker. A thread (ThreadRec
// below) *holds* at most one worker at a time; the runtime starts one thread
// per worker and, when pulse hands a stuck worker over, spare threads.
//
// ---- The handoff state machine -------------------------------------------------
// Each thread publishes, in its own ThreadRec::word, what it is doing:
//
//            poll starts               in-poll owner op (spawn, wake)
//   IDLE ----------------> POLLING <-----------------------------> IN_OP
//    ^  (scheduler code)      |      (op done: back to POLLING)
//    |                        | poll returns
//    +------------------------+
//   any state --(saw it lost its worker)--> RELEASED (touches the worker never again)
//
// and holds `epoch`, the value of Worker::epoch it was given the worker with.
// The monitor thread takes a worker W from a thread H stuck in one poll:
//   1. it sees H's word POLLING (or IN_OP) with the same poll for handoff_ns;
//   2. it picks a spare thread S (or, at the bound, gives up: REFUSED);
//   3. it bumps W.epoch (H's epoch is stale from now on) and runs a process-
//      wide memory barrier (membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED:
//      every thread of the process executes a full fence);
//   4. it reads H's word: POLLING or RELEASED -> commit: S gets W and the new
//      epoch and is woken. IDLE or IN_OP -> H is in code that touches W
//      (scheduler code, or an owner op that passed its check before the
//      barrier): the monitor waits, and retries on its next rounds.
// H checks its epoch against W.epoch at every point where it would touch W
// after a stretch of not touching it: entering IN_OP, leaving POLLING (poll
// end), the top of its scheduler loop, after each park. Each check first
// stores the new state, then (compiler barrier only) loads W.epoch. This is
// an asymmetric Dekker: the cheap side (H, every poll and op) has no fence;
// the barrier in step 3 stands in for it. Either H's store is visible to the
// monitor's read in step 4, or H's load comes after the barrier and sees the
// new epoch. So the monitor never commits while H is between a check that
// passed and the end of the touching that followed it; and once committed,
// every later check of H fails. A failed check at poll end: H finishes the
// task without the worker (the isolation pool, the inject queue, a mutex-
// guarded owned list), stores RELEASED and becomes a spare. A failed IN_OP
// check: the op takes the path a foreign thread would (the inject queue).
// The per-poll cost is two relaxed stores and one load on lines this thread
// owns; the expensive barrier is the monitor's, once per handoff.
//   5. after the commit, if H's word still shows the stuck poll, the monitor
//      lowers H to SCHED_IDLE (ThreadRec::prio_mu; weft_pulse.h
//      stuck_thread): the rest of the hog's poll no longer takes CPU time
//      from the workers. H, once RELEASED, restores its policy, or, without
//      the privilege to raise it again, retires: it exits, and the monitor
//      starts a fresh thread on its record for a later handoff.
//      Tests: Pulse.AStuckThread*.
// A handoff that nothing needs is skipped (pulse.cpp handoff_covered): at
// half the threshold the monitor writes the poll's sequence to H's
// long_poll; H's next in-poll owner op (CoreOp reads it) moves the LIFO
// slot and fork stack to the stealable queue, stores long_poll_ack, and
// from then on queues what it spawns or wakes there. With that done, H
// still spawning or waking (long_poll_ops moved in the last half
// threshold), no I/O in flight, W's timer wheel less than 2 ticks overdue,
// another worker running and H's queue being taken from, the monitor
// leaves W with H and looks again next round. Only H touches
// its worker's private parts; the monitor reads the two words and the
// queue's head. Tests: Pulse.ALongPollThatSpawns*.
// Without membarrier (old kernel, seccomp) there is no handoff: the status
// says why (weft_runtime_pulse_status) and budgets and tiers still work.
// Test: Pulse.HandoffStressLosesNoTask (ThreadSanitizer in CI).
//
// ---- Per-task budget and tiers ------------------------------------------------
// Budget (16 bytes, in TaskHeader): tier, strikes, a run of good polls, the
// budget left at the end of the last poll, the last poll's time and a poll
// count. Written only by the thread that owns the task's RUNNING bit; `tier`
// is also read by wakers (schedule: an ISOLATE task goes to the isolation
// pool), hence atomic. No map, no lock, no allocation on the poll path.
// The remaining budget of the poll in progress lives in a thread-local
// (t_poll.budget): weft_budget_consume is a TLS decrement.
//
// ---- Time -----------------------------------------------------------------------
// Poll time is measured in "pulse ticks": the arch/ cycle counter, calibrated
// once per process against CLOCK_MONOTONIC, or — when the runtime has an
// injected clock — that clock in ns, so tests drive promotion and handoff
// with a manual clock. Wall time: a thread the OS descheduled mid-poll looks
// like a hog. So for a suspect task (one strike already, or above MONITOR)
// the poll also reads CLOCK_THREAD_CPUTIME_ID (a system call, hence only
// then) and a long poll that spent less than half its time on a CPU is
// neither a strike nor a reason to isolate. A first long poll of a clean
// task is counted on wall time alone: with strikes_to_promote >= 2 (the
// default) promotion always needs one poll verified on CPU time.
#ifndef WEFT_KERNEL_PULSE_H
#define WEFT_KERNEL_PULSE_H

#include <atomic>
#include <stdint.h>

#include "../arch/arch.h"
#include "../arch/padding.h"
#include "../include/weft/weft_pulse.h"
#include "../port/port.h"
#include "parker.h"

#ifndef WEFT_PULSE
#define WEFT_PULSE 1  // 0: the hooks are compiled out (CMake option WEFT_PULSE)
#endif

namespace weft::kernel {

struct Worker;
struct Shared;
struct TaskHeader;

enum Tier : uint8_t { TIER_MONITOR = 0, TIER_WARN = 1, TIER_YIELD = 2, TIER_ISOLATE = 3 };

struct Budget {
    // tier and strikes first, in this order: the poll's start reads both as
    // one 16-bit word (scheduler.cpp tier_and_strikes, static_assert there).
    std::atomic<uint8_t> tier{TIER_MONITOR};
    uint8_t strikes = 0;
    uint16_t good_polls = 0;      // well-behaved polls in a row (demotion)
    uint16_t remaining = 0;       // budget left when the last poll returned
    uint16_t reserved = 0;
    uint32_t last_poll_ns = 0;    // of the last timed poll; saturating
    uint32_t timed_polls = 0;     // polls timed (scheduler.cpp: a sample, or all of a suspect's)
};
static_assert(sizeof(Budget) == 16, "the budget record is 16 bytes");

// The runtime's pulse settings, resolved from weft_pulse_config.
struct PulseSettings {
    bool on = false;            // hooks run
    bool handoff = false;       // a monitor thread exists and membarrier works
    uint8_t top_tier = TIER_ISOLATE;
    // Budget per poll, indexed by Tier: `budget` for MONITOR and WARN,
    // `yield_budget` for YIELD and ISOLATE (weft_pulse_config).
    uint32_t budget_of_tier[4] = {128, 128, 16, 16};
    uint32_t strikes_to_promote = 2;
    uint32_t good_polls_to_demote = 256;
    uint32_t max_spares = 0;
    uint32_t isolation_threads = 1;
    bool lower_stuck = true;    // a stuck thread runs at SCHED_IDLE (weft_pulse.h stuck_thread)
    uint64_t slow_poll_ns = 1000000;
    uint64_t handoff_ns = 10000000;
    uint64_t slow_poll_ticks = 0;   // the same in pulse ticks
    uint64_t handoff_ticks = 0;
    bool ticks_are_ns = false;      // injected clock: ticks are its ns
    // Check a suspect's long poll against the thread's CPU time (off with an
    // injected clock: a test's clock step is not CPU time).
    bool verify_cpu = false;
    void (*on_warn)(void*, uint64_t, uint64_t) = nullptr;
    void (*on_event)(void*, const void*) = nullptr;  // weft_pulse_event
    void* ctx = nullptr;
    const char* handoff_note = "";
};

// One OS thread of the runtime (see the state machine above).
struct alignas(WEFT_CACHE_LINE) ThreadRec {
    static constexpr uint64_t IDLE = 0, POLLING = 1, IN_OP = 2, RELEASED = 3;
    // -- written by this thread only (relaxed/release), read by the monitor --
    std::atomic<uint64_t> word{IDLE};       // (poll sequence << 2) | state
    // The poll (sequence, state bits clear) in which this thread gave up its
    // LIFO slot and fork stack because the monitor asked (long_poll below):
    // from then on, until that poll returns, what it spawns or wakes goes to
    // its worker's stealable queue (scheduler.cpp schedule_in_long_poll).
    std::atomic<uint64_t> long_poll_ack{0};
    // In-poll owner ops since then (counted by schedule_in_long_poll): the
    // monitor leaves the worker only to a poll that keeps making them.
    std::atomic<uint64_t> long_poll_ops{0};
    // -- written by the monitor --
    // A poll (sequence) the monitor found running for half the handoff
    // threshold: the thread's next in-poll owner op donates (above).
    std::atomic<uint64_t> long_poll{0};
    // -- written by the monitor (or runtime_new) before waking this thread --
    alignas(WEFT_CACHE_LINE) Parker parker;  // a spare sleeps here
    std::atomic<Worker*> given{nullptr};     // the worker to hold next
    uint32_t given_epoch = 0;
    // -- the stuck thread's priority (weft_pulse.h, stuck_thread) --
    // After a handoff's commit the monitor lowers the stuck thread to
    // SCHED_IDLE, under prio_mu and only while the thread's word still shows
    // the stuck poll; the thread, once it let the worker go (RELEASED,
    // stored before it takes prio_mu), reads and clears `lowered` under
    // prio_mu, then restores its policy. So a thread that already left the
    // poll is never lowered, and a lowered one always sees `lowered`. One
    // that cannot restore it retires (exits).
    port::Mutex prio_mu;
    // Written under prio_mu; atomic for one reader outside it: the thread's
    // own judgement of its stuck poll's CPU time (scheduler.cpp
    // pulse_poll_timed), a hint.
    std::atomic<bool> lowered{false};
    int lowered_from = 0;             // prio_mu: the policy it had
    // Kernel thread id: stored by the thread at its start (0 again when it
    // retires), read by the monitor to lower it. relaxed: the monitor reads
    // it only after an acquire load of `word` showing a poll, which the
    // thread stored (release) after its tid.
    std::atomic<int> tid{0};
    // -- fixed --
    Shared* shared = nullptr;
    uint32_t index = 0;
    bool started = false;
    // Guarded by Shared::spare_mu. ACTIVE: holds a worker or is about to
    // look for one; WAITING: on the idle-spare stack; RESERVED: popped by
    // the monitor for a handoff not committed yet (a spurious wake-up must
    // not put it back on the stack: it would be given two workers);
    // RETIRED: the thread exited (it could not raise its priority again):
    // the monitor joins it and starts a fresh thread on the record when it
    // needs a spare (pulse.cpp take_spare).
    enum SpareState : uint8_t { ACTIVE, WAITING, RESERVED, RETIRED };
    SpareState spare_state = ACTIVE;
    ThreadRec* next_spare = nullptr;        // the idle-spare stack (Shared::spare_mu)
    port::Thread thread;
};

// The isolation pool: threads that run ISOLATE-tier tasks, fed by a queue.
struct IsolationPool;

// ---- thread-local state of the calling thread (scheduler.cpp) ----
// The per-poll state of this thread, in one struct so that the poll hooks
// reach all of it from one TLS address (separate thread_locals cost a GOT
// load each in a shared library, and an address computation each in the
// executable).
struct PollTls {
    // Budget left in the poll in progress; UNMETERED between polls (and
    // always with pulse off): weft_budget_consume then asks nothing. A
    // configured budget is at most 0xFFFF (pulse.cpp), so the sentinel
    // cannot be a real budget, and one store per poll end says "not in a
    // poll" (there was a separate flag: two more stores per poll).
    static constexpr uint32_t UNMETERED = UINT32_MAX;
    uint32_t budget = UNMETERED;
    // The Worker::epoch this thread was given its worker with (the handoff
    // state machine above).
    uint32_t epoch = 0;
    // This runtime thread's record (nullptr on other threads).
    ThreadRec* thread = nullptr;
    // This thread's poll sequence: its ThreadRec::word without the state
    // bits. Only this thread writes its word, so the copy here is exact, and
    // each store of the word (scheduler.cpp, CoreOp) takes the sequence
    // from here rather than loading the word first.
    uint64_t seq = 0;
    // Polls until the next timed one (scheduler.cpp, pulse_poll_begin): the
    // poll-time histogram's sample every POLL_SAMPLE_EVERY polls, or every
    // poll while precise_polls != 0 (then sampled_in counts down to the
    // sample, and is the countdown again when the run ends). Not next to
    // `budget`: the poll's start writes both, and the compiler would merge
    // the two stores through a vector register (three instructions more).
    uint32_t sample_in = 1;
    uint32_t precise_polls = 0;   // polls to time regardless (a slow window)
    uint32_t sampled_in = 1;      // while precise: polls until the next sample
    // Inside a user poll of a worker this thread may lose (pulse on with
    // handoff): owner ops must then be guarded (CoreOp).
    bool in_user_poll = false;
    // A timed poll's stamp (scheduler.cpp pulse_poll_stamp): whether it is
    // the histogram's sample, and its start in pulse ticks.
    bool stamp_sampled = false;
    uint64_t stamp_t0 = 0;
};
extern constinit __attribute__((tls_model("initial-exec"))) thread_local PollTls t_poll;

// weft_budget_consume(n) for the kernel's own awaitables (timers, I/O, sync):
// the common answer (unmetered, or budget left) inline; the call only when
// the budget runs out.
inline bool budget_spent(uint32_t n) {
    uint32_t left = t_poll.budget;
    if (left == PollTls::UNMETERED) return false;
    if (__builtin_expect(left >= n, 1)) {
        t_poll.budget = left - n;
        return false;
    }
    return weft_budget_consume(n) != 0;
}

// ---- time ----
// Cycles per microsecond of the counter, calibrated once (0 = use the clock).
uint64_t pulse_cycles_per_us();
inline uint64_t pulse_cycles_to_ns(uint64_t cycles, uint64_t per_us) {
    return per_us ? cycles * 1000 / per_us : cycles;
}

// CoreOp (the in-poll owner-op guard) is in scheduler.h, next to Worker.

}  // namespace weft::kernel

#endif
