// kernel/pulse.cpp — the monitor thread, the isolation pool, calibration and
// the pulse part of the C ABI. The design and the handoff protocol are in
// pulse.h; the poll hooks are in scheduler.cpp (run_task).
#include "pulse.h"

#include <stdlib.h>
#include <string.h>

#include <new>

#include "../include/weft/weft.h"
#include "io.h"
#include "scheduler.h"
#include "timer.h"

namespace weft::kernel {

// ---- calibration ---------------------------------------------------------------

namespace {
std::atomic<uint64_t> g_cycles_per_us{0};  // 0: not measured yet
constexpr uint64_t UNUSABLE = ~(uint64_t)0;
}  // namespace

uint64_t pulse_cycles_per_us() {
    uint64_t v = g_cycles_per_us.load(std::memory_order_acquire);
    if (v) return v == UNUSABLE ? 0 : v;
    // Once per process: count cycles over 2 ms of CLOCK_MONOTONIC. Two
    // runtimes calibrating at once both measure; either result is fine.
    uint64_t t0 = port::monotonic_ns(), c0 = weft_arch_cycles();
    uint64_t t1, c1;
    do {
        weft_arch_cpu_relax();
        t1 = port::monotonic_ns();
        c1 = weft_arch_cycles();
    } while (t1 - t0 < 2000000);
    uint64_t per_us = c1 > c0 ? (c1 - c0) * 1000 / (t1 - t0) : 0;
    // Fewer than 10 ticks per microsecond (a slow timebase) is too coarse to
    // time short polls; the clock is used instead.
    g_cycles_per_us.store(per_us >= 10 ? per_us : UNUSABLE, std::memory_order_release);
    return per_us >= 10 ? per_us : 0;
}

// ---- events ----------------------------------------------------------------------

void pulse_event(Shared* sh, uint32_t kind, uint32_t worker, uint64_t task_id, uint64_t poll_ns, uint8_t from,
                 uint8_t to) {
    if (!sh->pulse.on_event) return;
    weft_pulse_event ev{};
    ev.kind = kind;
    ev.worker = worker;
    ev.task_id = task_id;
    ev.poll_ns = poll_ns;
    ev.from_tier = from;
    ev.to_tier = to;
    sh->pulse.on_event(sh->pulse.ctx, &ev);
}

// ---- configuration ------------------------------------------------------------------

namespace {
void config_defaults(weft_pulse_config* c) {
    for (size_t i = 0; i < sizeof(*c); i++) reinterpret_cast<unsigned char*>(c)[i] = 0;
    c->size = sizeof(*c);
    c->mode = WEFT_PULSE_ON;
    c->budget = 128;
    c->yield_budget = 16;
    c->strikes_to_promote = 2;
    c->good_polls_to_demote = 256;
    c->max_spare_threads = UINT32_MAX;  // resolved to 2 x workers
    c->isolation_threads = 1;
    c->slow_poll_ns = 1000000;
    c->handoff_ns = 10000000;
}
}  // namespace

int pulse_configure(Shared* sh, const weft_pulse_config* user) {
    weft_pulse_config c;
    config_defaults(&c);
    if (user) {
        if (user->size != sizeof(weft_pulse_config)) return WEFT_EVERSION;
        c = *user;
    }
    if (c.mode != WEFT_PULSE_ON && c.mode != WEFT_PULSE_OFF) return WEFT_EINVAL;
    // An operator's switch, over whatever the program chose (weft_pulse.h).
    if (const char* env = getenv("WEFT_PULSE")) {
        if (strcmp(env, "off") == 0) c.mode = WEFT_PULSE_OFF;
        else if (strcmp(env, "on") == 0) c.mode = WEFT_PULSE_ON;
    }
    if (c.budget == 0 || c.budget > 0xFFFF || c.yield_budget == 0 || c.yield_budget > c.budget) return WEFT_EINVAL;
    if (c.strikes_to_promote == 0 || c.strikes_to_promote > 255 || c.good_polls_to_demote == 0 ||
        c.good_polls_to_demote > 0xFFFF)
        return WEFT_EINVAL;
    if (c.slow_poll_ns == 0 || c.handoff_ns == 0) return WEFT_EINVAL;
    if (c.isolation_threads > 64) return WEFT_EINVAL;
    if (c.stuck_thread != WEFT_STUCK_THREAD_IDLE && c.stuck_thread != WEFT_STUCK_THREAD_KEEP) return WEFT_EINVAL;
    if (c.max_spare_threads == UINT32_MAX) c.max_spare_threads = 2 * sh->nworkers;
    if (c.max_spare_threads > 4096) return WEFT_EINVAL;
    PulseSettings& p = sh->pulse;
    p.on = WEFT_PULSE != 0 && c.mode == WEFT_PULSE_ON;
    p.budget_of_tier[TIER_MONITOR] = p.budget_of_tier[TIER_WARN] = c.budget;
    p.budget_of_tier[TIER_YIELD] = p.budget_of_tier[TIER_ISOLATE] = c.yield_budget;
    p.strikes_to_promote = c.strikes_to_promote;
    p.good_polls_to_demote = c.good_polls_to_demote;
    p.isolation_threads = c.isolation_threads;
    p.lower_stuck = c.stuck_thread == WEFT_STUCK_THREAD_IDLE;
    p.top_tier = c.isolation_threads ? TIER_ISOLATE : TIER_YIELD;
    p.slow_poll_ns = c.slow_poll_ns;
    p.handoff_ns = c.handoff_ns;
    p.on_warn = c.on_warn;
    p.on_event = reinterpret_cast<void (*)(void*, const void*)>(c.on_event);
    p.ctx = c.ctx;
    if (!p.on) {
        p.handoff = false;
        p.handoff_note = WEFT_PULSE ? "pulse is off (WEFT_PULSE_OFF)" : "pulse was compiled out (WEFT_PULSE=0)";
        p.max_spares = 0;
        return 0;
    }
    // Time: an injected clock drives pulse too (tests); else the cycle counter.
    p.ticks_are_ns = sh->clock.injected();
    p.verify_cpu = !p.ticks_are_ns;
    if (!p.ticks_are_ns) {
        sh->pulse_cycles_per_us = pulse_cycles_per_us();
        if (sh->pulse_cycles_per_us == 0) p.ticks_are_ns = true;
    }
    if (p.ticks_are_ns) {
        p.slow_poll_ticks = p.slow_poll_ns;
        p.handoff_ticks = p.handoff_ns;
    } else {
        uint64_t per_us = sh->pulse_cycles_per_us;
        sh->pulse_ns_mult = (1000ull << 32) / per_us;
        p.slow_poll_ticks = p.slow_poll_ns * per_us / 1000;
        p.handoff_ticks = p.handoff_ns * per_us / 1000;
    }
    p.max_spares = c.max_spare_threads;
    if (p.max_spares == 0) {
        p.handoff = false;
        p.handoff_note = "max_spare_threads is 0";
    } else if (!port::process_barrier_init(&p.handoff_note)) {
        p.handoff = false;
        p.max_spares = 0;
    } else {
        p.handoff = true;
        p.handoff_note = "";
    }
    return 0;
}

// ---- the isolation pool -----------------------------------------------------------

struct IsolationPool {
    InjectQueue queue;
    std::atomic<uint32_t> seq{0};      // futex word: bumped on every push
    std::atomic<uint32_t> waiters{0};
    std::atomic<bool> stop{false};
    Shared* sh = nullptr;
    uint32_t nthreads = 0;
    uint32_t started = 0;
    port::Thread threads[64];
};

bool isolation_push(Shared* sh, TaskHeader* t) {
    IsolationPool* p = sh->isolation;
    if (!p->queue.push_batch(&t, 1)) return false;
    // seq_cst pair with the waiter: it counts itself, then re-checks the queue.
    p->seq.fetch_add(1, std::memory_order_seq_cst);
    if (p->waiters.load(std::memory_order_seq_cst)) port::futex_wake(&p->seq, 1);
    return true;
}

namespace {
void* isolation_main(void* arg) {
    IsolationPool* p = static_cast<IsolationPool*>(arg);
    Shared* sh = p->sh;
    t_runtime = sh;
    for (;;) {
        if (TaskHeader* t = p->queue.pop()) {
            run_task_coreless(sh, t);
            continue;
        }
        if (p->stop.load(std::memory_order_acquire)) break;
        uint32_t s = p->seq.load(std::memory_order_seq_cst);
        p->waiters.fetch_add(1, std::memory_order_seq_cst);
        if (p->queue.is_empty() && !p->stop.load(std::memory_order_acquire)) port::futex_wait(&p->seq, s, -1);
        p->waiters.fetch_sub(1, std::memory_order_seq_cst);
    }
    t_runtime = nullptr;
    return nullptr;
}
}  // namespace

// ---- the monitor ----------------------------------------------------------------------

struct Monitor {
    port::Thread thread;
    bool started = false;
    std::atomic<bool> stop{false};
    Parker parker;
    struct Pending {
        bool active = false;
        ThreadRec* from = nullptr;   // the stuck holder
        ThreadRec* to = nullptr;     // the spare (not started yet when fresh)
        bool fresh = false;
        bool reported = false;
        uint32_t epoch = 0;
        uint64_t poll_ns = 0;
        uint64_t seq = 0;            // the stuck poll (its sequence, state bits clear)
    };
    Pending* pending = nullptr;      // one per worker
    uint64_t* refused_seq = nullptr; // the poll a refusal was reported for
    struct Seen {                    // the poll a worker's holder was last seen in
        ThreadRec* holder = nullptr;
        uint64_t seq = 0;
        uint64_t since = 0;          // pulse ticks when first seen
    };
    Seen* seen = nullptr;            // one per worker
    struct Cover {                   // a long poll left with its worker (handoff_covered)
        ThreadRec* holder = nullptr;
        uint64_t seq = 0;
        uint64_t ops = 0;            // the thread's long_poll_ops when last seen moving
        uint64_t ops_since = 0;      // pulse ticks then
        uint32_t taken = 0;          // the worker's queue's taken() when last seen moving
        uint64_t taken_since = 0;    // pulse ticks then
        uint64_t reported = ~(uint64_t)0;  // the poll the event was reported for
        // The monitor's round when it last asked a poll on this worker to
        // give up its LIFO slot: the poll of `holder->long_poll`, which only
        // this monitor writes, and only here (a thread's sequence only grows).
        uint64_t asked_round = 0;
    };
    Cover* cover = nullptr;          // one per worker
    uint64_t round = 0;              // the monitor's looks so far
};

// Rounds a thread asked to give up its LIFO slot gets to answer before it can
// lose its worker: a poll first seen past half the threshold (the monitor
// was descheduled, or a test's injected clock jumped) is asked and judged in
// the same round otherwise. At the default threshold the half-way ask comes
// about 4 rounds before the handoff anyway.
constexpr uint64_t ANSWER_ROUNDS = 4;

namespace {

// A spare for a handoff: an idle one, or a record to start a thread on at
// commit (fresh): a retired thread's, or a new one below the bound.
ThreadRec* take_spare(Shared* sh, bool* fresh) {
    uint32_t n = sh->threads_started.load(std::memory_order_relaxed);
    ThreadRec* retired = nullptr;
    {
        port::LockGuard g(sh->spare_mu);
        if (ThreadRec* s = sh->spares) {
            sh->spares = s->next_spare;
            s->spare_state = ThreadRec::RESERVED;
            *fresh = false;
            return s;
        }
        // A retired thread's record, once the thread is gone: it exits at
        // idle priority, which may take long on busy CPUs, so the monitor
        // never waits for it (a new record below the bound, or a refusal).
        for (uint32_t k = 0; k < n && !retired; k++) {
            ThreadRec* r = &sh->threads[k];
            if (r->spare_state == ThreadRec::RETIRED && port::thread_try_join(&r->thread) == 0) retired = r;
        }
        if (retired) {
            retired->spare_state = ThreadRec::RESERVED;
            retired->started = false;  // joined: the record takes a new thread like a fresh one
            *fresh = true;
            return retired;
        }
    }
    if (n >= sh->thread_cap) return nullptr;  // the bound (weft_pulse.h)
    *fresh = true;
    // Only the monitor starts threads after runtime_new: a plain store.
    sh->threads_started.store(n + 1, std::memory_order_release);
    return &sh->threads[n];
}

// After a commit: the stuck thread h runs the rest of poll `seq` at
// SCHED_IDLE (weft_pulse.h, stuck_thread; ThreadRec::prio_mu says why this
// never lowers a thread that left the poll, nor one that would not notice).
void lower_stuck_thread(Shared* sh, ThreadRec* h, uint64_t seq) {
    if (!sh->pulse.lower_stuck) return;
    port::LockGuard g(h->prio_mu);
    uint64_t word = h->word.load(std::memory_order_acquire);
    uint64_t st = word & 3;
    if ((word & ~(uint64_t)3) != seq || (st != ThreadRec::POLLING && st != ThreadRec::IN_OP)) return;
    int tid = h->tid.load(std::memory_order_relaxed);
    int was = 0;
    if (!h->lowered.load(std::memory_order_relaxed) && tid != 0 && port::thread_lower_to_idle(tid, &was) == 0) {
        h->lowered.store(true, std::memory_order_relaxed);
        h->lowered_from = was;
    }
}

// Step 4 of the handoff (pulse.h). Returns true when done.
bool try_commit(Shared* sh, Monitor* m, uint32_t i) {
    Monitor::Pending& p = m->pending[i];
    Worker* w = &sh->workers[i];
    for (int spin = 0; spin < 256; spin++) {
        uint64_t st = p.from->word.load(std::memory_order_acquire) & 3;
        if (st == ThreadRec::POLLING || st == ThreadRec::RELEASED) {
            ThreadRec* s = p.to;
            // Reported before the spare can run anything (a test that sees
            // the spare's work also sees the event).
            if (!p.reported) pulse_event(sh, WEFT_PULSE_HANDOFF, i, 0, p.poll_ns, 0, 0);
            p.reported = true;
            s->given_epoch = p.epoch;
            s->given.store(w, std::memory_order_release);
            w->holder.store(s, std::memory_order_release);
            if (p.fresh) {
                // Out of threads: the worker stays pending (its old holder
                // lets go at its next check; nobody runs it meanwhile) and
                // the start is retried next round.
                if (start_thread(sh, s, "s", s->index) != 0) return false;
            } else {
                s->parker.unpark();
            }
            p.active = false;
            if (st == ThreadRec::POLLING) lower_stuck_thread(sh, p.from, p.seq);
            return true;
        }
        // IDLE: in scheduler code; it may be parking: wake it to look.
        if (st == ThreadRec::IDLE) w->parker.unpark();
        weft_arch_cpu_relax();
    }
    return false;
}

void begin_handoff(Shared* sh, Monitor* m, uint32_t i, ThreadRec* h, uint64_t word, uint64_t poll_ns) {
    Worker* w = &sh->workers[i];
    bool fresh = false;
    ThreadRec* s = take_spare(sh, &fresh);
    if (!s) {
        // At the bound: the worker stays with its stuck thread. Its run
        // queue is still stolen from and its timers fired by the others.
        if (m->refused_seq[i] != word) {
            m->refused_seq[i] = word;
            WorkerMetrics::bump(w->metrics.handoffs_refused);
            pulse_event(sh, WEFT_PULSE_HANDOFF_REFUSED, i, 0, poll_ns, 0, 0);
        }
        return;
    }
    Monitor::Pending& p = m->pending[i];
    p.active = true;
    p.from = h;
    p.to = s;
    p.fresh = fresh;
    p.reported = false;
    p.poll_ns = poll_ns;
    p.seq = word & ~(uint64_t)3;
    p.epoch = w->epoch.load(std::memory_order_relaxed) + 1;
    w->epoch.store(p.epoch, std::memory_order_relaxed);
    port::process_barrier();
    try_commit(sh, m, i);
}

// A worker whose thread h has been in poll `seq` for the handoff threshold:
// is everything it owes done by others without a spare thread? Then the
// monitor leaves it with h (asked again every round) instead of starting a
// spare that would compete with h and the other workers for the CPUs. Yes
// when all of:
//   - h gave up its LIFO slot and fork stack in this poll (long_poll_ack:
//     it spawned or woke something after the monitor asked; a hog that does
//     neither is handed over as before), so what it queues is stealable;
//   - it keeps doing so: its last in-poll spawn or wake is less than half
//     the threshold old (a poll that stopped spawning is a hog from then on);
//   - its I/O driver has nothing in flight (only its thread reaps that);
//   - its timer wheel is not more than a tick past what busy workers fire
//     (timer.cpp; parked workers may not be watching it);
//   - some other worker is running tasks: its thread is in scheduler code
//     or parked (it finds w's queue when it looks for work: what h queues
//     wakes one), or in a poll younger than half the threshold;
//   - w's queue is empty, or someone took from it in the last half
//     threshold (stealers; its overflow goes to the inject queue, which
//     every worker serves).
bool handoff_covered(Shared* sh, Monitor* m, uint32_t i, ThreadRec* h, uint64_t seq, uint64_t now) {
    Worker* w = &sh->workers[i];
    uint64_t half = sh->pulse.handoff_ticks / 2;
    // acquire: pairs with the ack's release (a record of the order only:
    // the monitor never touches the slot or the stack).
    if (h->long_poll_ack.load(std::memory_order_acquire) != seq) return false;
    if (!io_quiet_hint(w)) return false;
    if (timers_overdue(sh, i, TIMER_HELP_AFTER_TICKS + 1)) return false;
    bool others_run = false;
    for (uint32_t j = 0; j < sh->nworkers && !others_run; j++) {
        if (j == i || m->pending[j].active) continue;
        ThreadRec* hj = sh->workers[j].holder.load(std::memory_order_acquire);
        uint64_t wj = hj->word.load(std::memory_order_acquire);
        uint64_t st = wj & 3;
        if (st == ThreadRec::IDLE) {
            others_run = true;
        } else if (st == ThreadRec::POLLING || st == ThreadRec::IN_OP) {
            Monitor::Seen& sj = m->seen[j];
            others_run = sj.holder != hj || sj.seq != (wj & ~(uint64_t)3) || now - sj.since < half;
        }
    }
    if (!others_run) return false;
    Monitor::Cover& c = m->cover[i];
    uint64_t ops = h->long_poll_ops.load(std::memory_order_relaxed);
    uint32_t taken = w->queue.taken();
    if (c.holder != h || c.seq != seq) {
        c.holder = h;
        c.seq = seq;
        c.ops = ops;
        c.ops_since = now;
        c.taken = taken;
        c.taken_since = now;
        return true;
    }
    if (ops != c.ops) {
        c.ops = ops;
        c.ops_since = now;
    }
    if (taken != c.taken || w->queue.is_empty()) {
        c.taken = taken;
        c.taken_since = now;
    }
    return now - c.ops_since < half && now - c.taken_since < half;
}

void* monitor_main(void* arg) {
    Shared* sh = static_cast<Shared*>(arg);
    Monitor* m = sh->monitor;
    // The hooks it calls (on_event) report their failures to this runtime
    // (failure.h); the monitor is not one of its task threads (t_runtime).
    t_failure_runtime = sh;
    // An eighth of the threshold between looks: a poll's age is known to a
    // period (from when it was first seen), and the monitor wakes when a
    // watched poll comes due. Clamped to [0.2 ms, 50 ms].
    uint64_t period = sh->pulse.handoff_ns / 8;
    if (period < 200000) period = 200000;
    if (period > 50000000) period = 50000000;
    // How long every worker must have looked parked before the monitor
    // sleeps until one leaves park (below): about 200 ms of looks, at least
    // 2. After only 2 looks (2.5 ms at the default period), a server whose
    // worker parks between requests (1 connection: every round trip) had its
    // monitor fall asleep and be woken again all the time, a futex wake and
    // wait each: 0.050 system calls per echo round trip, against 0.020 for
    // the periodic looks alone (bench/RESULTS.md, issue 6). A runtime idle
    // for good still stops waking after 200 ms.
    constexpr uint64_t QUIET_NS_BEFORE_SLEEP = 200000000;
    uint64_t rounds = QUIET_NS_BEFORE_SLEEP / period;
    const uint32_t quiet_rounds_to_sleep = rounds < 2 ? 2 : (uint32_t)rounds;
    uint32_t quiet_rounds = 0;
    while (!m->stop.load(std::memory_order_acquire)) {
        uint64_t now = sh->pulse.ticks_are_ns ? sh->clock.raw() : weft_arch_cycles();
        bool busy = false;
        uint64_t sleep_ns = period;  // shortened to wake when a watched poll comes due
        for (uint32_t i = 0; i < sh->nworkers; i++) {
            if (m->pending[i].active) {
                busy = true;
                try_commit(sh, m, i);
                continue;
            }
            ThreadRec* h = sh->workers[i].holder.load(std::memory_order_acquire);
            uint64_t word = h->word.load(std::memory_order_acquire);
            uint64_t st = word & 3;
            if (st != ThreadRec::POLLING && st != ThreadRec::IN_OP) continue;
            busy = true;
            // Polls are not time-stamped (a cycle-counter read per poll is
            // too dear, scheduler.cpp): a poll is known by its sequence
            // number, and its age is the time since the monitor first saw
            // it, an underestimate by at most one period.
            Monitor::Seen& seen = m->seen[i];
            uint64_t seq = word & ~(uint64_t)3;
            if (seen.holder != h || seen.seq != seq) {
                seen.holder = h;
                seen.seq = seq;
                seen.since = now;
                continue;
            }
            uint64_t age = now > seen.since ? now - seen.since : 0;
            // Half the threshold: ask the thread to give up what only it can
            // run (pulse.h ThreadRec::long_poll), so that a long poll that
            // spawns can keep its worker (handoff_covered).
            uint64_t half = sh->pulse.handoff_ticks / 2;
            Monitor::Cover& c = m->cover[i];
            if (age >= half && h->long_poll.load(std::memory_order_relaxed) != seq) {
                h->long_poll.store(seq, std::memory_order_relaxed);
                c.asked_round = m->round;
            }
            if (age >= sh->pulse.handoff_ticks) {
                uint64_t ns = sh->pulse.ticks_are_ns ? age : (uint64_t)(((unsigned __int128)age * sh->pulse_ns_mult) >> 32);
                if (handoff_covered(sh, m, i, h, seq, now)) {
                    if (c.reported != seq) {
                        c.reported = seq;
                        pulse_event(sh, WEFT_PULSE_HANDOFF_COVERED, i, 0, ns, 0, 0);
                    }
                    continue;
                }
                // Past half the threshold, so asked above (this round or
                // earlier) and c.asked_round is that ask's.
                if (m->round - c.asked_round < ANSWER_ROUNDS && h->long_poll_ack.load(std::memory_order_relaxed) != seq)
                    continue;  // asked only just now: its answer may be on the way
                begin_handoff(sh, m, i, h, seq, ns);
            } else if (!sh->pulse.ticks_are_ns) {
                // Wake when this poll comes due (half-way, then in full)
                // rather than up to a period later: handed over between 1 and
                // 1 + 1/8 x handoff_ns. (With an injected clock, time moves
                // when the test says.)
                uint64_t due = age < half ? half : sh->pulse.handoff_ticks;
                uint64_t left = (uint64_t)(((unsigned __int128)(due - age) * sh->pulse_ns_mult) >> 32);
                if (left < sleep_ns) sleep_ns = left < 50000 ? 50000 : left;
            }
        }
        m->round++;
        quiet_rounds = busy ? 0 : quiet_rounds + 1;
        if (quiet_rounds >= quiet_rounds_to_sleep && sh->idle.all_parked()) {
            // Idle runtime: sleep until a worker leaves park (scheduler.cpp
            // park() calls monitor_wake). Dekker on seq_cst: we publish
            // monitor_idle, then look at the idle word; a worker changes the
            // idle word, then reads monitor_idle. One of us sees the other.
            sh->monitor_idle.store(true, std::memory_order_seq_cst);
            if (sh->idle.all_parked() && !m->stop.load(std::memory_order_acquire)) m->parker.park(-1);
            sh->monitor_idle.store(false, std::memory_order_seq_cst);
            quiet_rounds = 0;
            continue;
        }
        m->parker.park((int64_t)sleep_ns);
    }
    return nullptr;
}

}  // namespace

void monitor_wake(Shared* sh) {
    if (sh->monitor && sh->monitor_idle.exchange(false, std::memory_order_seq_cst)) sh->monitor->parker.unpark();
}

// ---- lifecycle -------------------------------------------------------------------------

int pulse_start(Shared* sh) {
    if (!sh->pulse.on) return 0;
    if (sh->pulse.isolation_threads) {
        void* mem = port::alloc_aligned(sizeof(IsolationPool), alignof(IsolationPool));
        if (!mem) return WEFT_ENOMEM;
        IsolationPool* p = new (mem) IsolationPool();
        p->sh = sh;
        p->nthreads = sh->pulse.isolation_threads;
        sh->isolation = p;
        for (uint32_t i = 0; i < p->nthreads; i++) {
            char name[16] = "weft-iso";
            name[8] = (char)('0' + i % 10);
            name[9] = 0;
            if (port::thread_start(&p->threads[i], isolation_main, p, name) != 0) return WEFT_EAGAIN_THREAD;
            p->started = i + 1;
        }
    }
    if (sh->pulse.handoff) {
        void* mem = port::alloc_aligned(sizeof(Monitor), alignof(Monitor));
        if (!mem) return WEFT_ENOMEM;
        Monitor* m = new (mem) Monitor();
        sh->monitor = m;
        m->pending = static_cast<Monitor::Pending*>(port::alloc(sizeof(Monitor::Pending) * sh->nworkers));
        m->refused_seq = static_cast<uint64_t*>(port::alloc(sizeof(uint64_t) * sh->nworkers));
        m->seen = static_cast<Monitor::Seen*>(port::alloc(sizeof(Monitor::Seen) * sh->nworkers));
        m->cover = static_cast<Monitor::Cover*>(port::alloc(sizeof(Monitor::Cover) * sh->nworkers));
        if (!m->pending || !m->refused_seq || !m->seen || !m->cover) return WEFT_ENOMEM;
        for (uint32_t i = 0; i < sh->nworkers; i++) {
            new (&m->pending[i]) Monitor::Pending();
            new (&m->seen[i]) Monitor::Seen();
            new (&m->cover[i]) Monitor::Cover();
            m->refused_seq[i] = ~(uint64_t)0;
        }
        char name[16] = "weft-pulse";
        if (port::thread_start(&m->thread, monitor_main, sh, name) != 0) return WEFT_EAGAIN_THREAD;
        m->started = true;
    }
    return 0;
}

void pulse_stop_threads(Shared* sh) {
    if (Monitor* m = sh->monitor) {
        m->stop.store(true, std::memory_order_release);
        m->parker.unpark();
        if (m->started) port::thread_join(&m->thread);
        m->started = false;
    }
    if (IsolationPool* p = sh->isolation) {
        p->queue.close();
        p->stop.store(true, std::memory_order_release);
        p->seq.fetch_add(1, std::memory_order_seq_cst);
        port::futex_wake(&p->seq, 1 << 30);
        for (uint32_t i = 0; i < p->started; i++) port::thread_join(&p->threads[i]);
        p->started = 0;
    }
}

void pulse_drain(Shared* sh) {
    IsolationPool* p = sh->isolation;
    if (!p) return;
    TaskHeader* batch[32];
    for (;;) {
        uint32_t n = p->queue.pop_n(batch, 32);
        if (n == 0) break;
        for (uint32_t i = 0; i < n; i++) drop_queue_entry_ext(batch[i]);
    }
}

void pulse_destroy(Shared* sh) {
    if (Monitor* m = sh->monitor) {
        port::free(m->pending);
        port::free(m->refused_seq);
        port::free(m->seen);
        port::free(m->cover);
        m->~Monitor();
        port::free(m);
        sh->monitor = nullptr;
    }
    if (IsolationPool* p = sh->isolation) {
        p->~IsolationPool();
        port::free(p);
        sh->isolation = nullptr;
    }
}

bool pulse_thread_release_priority(ThreadRec* me) {
    bool lowered;
    int from;
    {
        // After RELEASED (the caller's): the monitor lowers it no more.
        port::LockGuard g(me->prio_mu);
        lowered = me->lowered.load(std::memory_order_relaxed);
        from = me->lowered_from;
        me->lowered.store(false, std::memory_order_relaxed);
    }
    if (!lowered || port::thread_restore_policy(from) == 0) return true;
    // An idle-priority spare would run the worker it is given at idle
    // priority: this thread retires instead (weft_pulse.h, stuck_thread).
    me->tid.store(0, std::memory_order_relaxed);
    port::LockGuard g(me->shared->spare_mu);
    me->spare_state = ThreadRec::RETIRED;
    return false;
}

}  // namespace weft::kernel

// ---- C ABI ------------------------------------------------------------------------------

using namespace weft::kernel;

extern "C" {

void weft_pulse_config_init(weft_pulse_config* cfg) {
    if (cfg) config_defaults(cfg);
}

int weft_budget_consume(uint32_t n) {
    if (t_poll.budget == PollTls::UNMETERED) return 0;
    if (t_poll.budget >= n) {
        t_poll.budget -= n;
        return 0;
    }
    t_poll.budget = 0;
    // Counted on the worker this thread still holds (not after a handoff).
    Worker* w = t_worker;
    if (w && w->epoch.load(std::memory_order_relaxed) == t_poll.epoch) WorkerMetrics::bump(w->metrics.budget_yields);
    return 1;
}

uint32_t weft_budget_remaining(void) { return t_poll.budget; }  // UNMETERED == UINT32_MAX: not in a poll

int weft_join_task_tier(const weft_join* join) {
    if (!join) return WEFT_EINVAL;
    // SAFETY: a join handle is the TaskHeader* holding the join reference.
    const TaskHeader* t = reinterpret_cast<const TaskHeader*>(join);
    if (t->kind == TASK_TPC) return 0;  // no budgets on the thread-per-core executor
    return t->budget.tier.load(std::memory_order_relaxed);
}

int weft_runtime_pulse_status(const weft_runtime* rt, weft_pulse_status* out) {
    Shared* sh = reinterpret_cast<Shared*>(const_cast<weft_runtime*>(rt));
    if (!sh || sh->magic != Shared::MAGIC || !out) return WEFT_EINVAL;
    if (out->size != sizeof(weft_pulse_status)) return WEFT_EVERSION;
    out->mode = sh->pulse.on ? WEFT_PULSE_ON : WEFT_PULSE_OFF;
    out->compiled = WEFT_PULSE != 0;
    out->handoff = sh->pulse.handoff;
    uint32_t started = sh->threads_started.load(std::memory_order_relaxed);
    out->spare_threads = started > sh->nworkers ? started - sh->nworkers : 0;
    out->cycles_per_us = sh->pulse.ticks_are_ns ? 0 : sh->pulse_cycles_per_us;
    out->handoff_note = sh->pulse.handoff_note;
    return 0;
}

}  // extern "C"
