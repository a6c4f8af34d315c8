// kernel/timer.cpp — see timer.h for the design and the entry states.
#include "timer.h"

#include <new>

#include "scheduler.h"
#include "wake_list.h"

namespace weft::kernel {

namespace {

// Build with -DWEFT_TIMER_ONE_WHEEL=1 to get one wheel for the whole runtime
// instead of one per worker: the alternative measured in timer.h (every
// worker then answers for that wheel).
#ifndef WEFT_TIMER_ONE_WHEEL
#define WEFT_TIMER_ONE_WHEEL 0
#endif

// A worker's own wheel: its index (one wheel per worker), or the only one.
// Not `worker % ntimer_shards`: a division on every timer registration
// (timer/insert_cancel/runtime: 24.7 -> 24.1 ns).
uint32_t own_shard(uint32_t worker) { return WEFT_TIMER_ONE_WHEEL ? 0 : worker; }


uint64_t deadline_to_tick(Shared* sh, uint64_t deadline_ns) {
    if (deadline_ns <= sh->timer_epoch_ns) return 0;
    uint64_t d = deadline_ns - sh->timer_epoch_ns;
    return d / TICK_NS + (d % TICK_NS != 0);  // round up: never early
}
uint64_t now_to_tick(Shared* sh, uint64_t now_ns) {
    return now_ns <= sh->timer_epoch_ns ? 0 : (now_ns - sh->timer_epoch_ns) / TICK_NS;
}

// Whether a registration of e with waker w borrows it (timer.h, "Borrowed
// wakers"): a deadline at least BORROW_AHEAD_TICKS ahead (a timeout, most
// likely cancelled), w weft's own task waker, and e wholly inside that
// task's allocation. w is a live waker, so its header may be read.
bool borrows_waker(const TimerEntry* e, const weft_waker* w, uint64_t when, uint64_t now_tick) {
    if (when < now_tick + BORROW_AHEAD_TICKS || w->vtable != &task_waker_vtable) return false;
    const TaskHeader* t = static_cast<const TaskHeader*>(w->data);
    // One unsigned compare: an entry below the header wraps to a huge offset.
    uintptr_t offset = reinterpret_cast<uintptr_t>(e) - reinterpret_cast<uintptr_t>(t);
    return offset <= t->alloc_size - sizeof(TimerEntry);
}
static_assert(sizeof(TaskHeader) >= sizeof(TimerEntry), "borrows_waker: alloc_size - sizeof(TimerEntry) must not wrap");

// The registration's hold on its waker, given back (outside the lock: a
// foreign drop may re-enter timers). A borrowed waker holds nothing.
void release_waker(weft_waker w, bool borrowed) {
    if (!borrowed) weft_waker_drop(w);
}

void publish_next(TimerShard& s) { s.next_tick.store(s.wheel.next_expiration(), std::memory_order_relaxed); }

// Advances s to now_tick and wakes what expired. The caller holds s.mu; it is
// released here (and re-taken between batches of wakes).
uint32_t fire_locked(Worker* w, TimerShard& s, uint64_t now_tick) {
    TimerWheel::List expired;
    s.wheel.advance(now_tick, expired);
    publish_next(s);
    uint32_t fired = 0;
    for (;;) {
        // A batch of entries, each task's header asked for first: the wakes
        // after the lock, and the transitions made under it for borrowed
        // wakers (timer.h), then find their lines on the way, and the misses
        // of a batch overlap instead of following one another (`timers`:
        // 424 -> 411 ns per task). A prefetch never faults, whatever the
        // waker's data is.
        TimerEntry* taken[WakeList::CAPACITY];
        uint32_t n = 0;
        while (n < WakeList::CAPACITY) {
            WheelEntry* we = expired.pop_front();
            if (!we) break;
            TimerEntry* e = static_cast<TimerEntry*>(we);
            __builtin_prefetch(e->waker.data, 1, 3);
            taken[n++] = e;
        }
        WakeList batch;
        // Tasks woken through a borrowed waker: notified here, under the
        // lock, and scheduled with the batch.
        TaskHeader* notified[WakeList::CAPACITY];
        uint32_t nnotified = 0;
        for (uint32_t i = 0; i < n; i++) {
            TimerEntry* e = taken[i];
            if (!e->waker_borrowed) {
                batch.push(e->waker);
            } else {
                // SAFETY: REGISTERED and we hold the lock: the entry, and
                // the task whose memory holds it, are alive (timer.h). A
                // wake by reference, its transition made here: a reference
                // is taken only for the queue entry of an idle task.
                TaskHeader* t = static_cast<TaskHeader*>(const_cast<void*>(e->waker.data));
                // FIRING first (timer.h): the transition's release publishes
                // it to the poll that the wake causes.
                e->state.store(TimerEntry::FIRING, std::memory_order_relaxed);
                if (t->state.transition_to_notified_by_ref() == ToNotified::Submit) notified[nnotified++] = t;
                e->waker_borrowed = false;
            }
            // release: the owner that reads FIRED may free the entry; nothing
            // here touches it afterwards.
            e->state.store(TimerEntry::FIRED, std::memory_order_release);
        }
        fired += n;
        bool more = !expired.empty();
        // Wake outside the lock: a waker may run foreign code, or re-enter
        // timers (a task woken here cannot run on this thread until we return,
        // but a foreign waker could register a timer in this very wheel).
        // Entries still on `expired` stay REGISTERED meanwhile, and their
        // owners can cancel them: they take the lock and unlink from this
        // list like from a slot.
        s.mu.unlock();
        w->waking_timers = true;
        batch.wake_all();
        // Each holds the queue entry's reference its transition took.
        for (uint32_t i = 0; i < nnotified; i++) schedule(notified[i], false);
        w->waking_timers = false;
        flush_fired(w);
        if (!more) return fired;
        s.mu.lock();
    }
}

}  // namespace

int timers_init(Shared* sh) {
    uint32_t n = WEFT_TIMER_ONE_WHEEL ? 1 : sh->nworkers;
    void* mem = port::alloc_aligned(sizeof(TimerShard) * n, alignof(TimerShard));
    if (!mem) return WEFT_ENOMEM;
    sh->timer_shards = static_cast<TimerShard*>(mem);
    // SAFETY: mem holds n TimerShard-sized, TimerShard-aligned slots.
    for (uint32_t i = 0; i < n; i++) new (&sh->timer_shards[i]) TimerShard();
    sh->ntimer_shards = n;
    sh->timer_epoch_ns = sh->clock.now();
    return 0;
}

void timers_destroy(Shared* sh) {
    for (uint32_t i = 0; i < sh->ntimer_shards; i++) sh->timer_shards[i].~TimerShard();
    port::free(sh->timer_shards);
    sh->timer_shards = nullptr;
    sh->ntimer_shards = 0;
}

void timers_shutdown(Shared* sh) {
    // Every task has been cancelled (steps 3-5), so the entries still here
    // belong to C callers outside tasks: they become CLOSED (a later poll
    // reports WEFT_ECLOSED) and nothing fires any more. Their wakers are
    // dropped outside the lock.
    for (uint32_t i = 0; i < sh->ntimer_shards; i++) {
        TimerShard& s = sh->timer_shards[i];
        TimerWheel::List all;
        s.mu.lock();
        s.closed = true;
        s.wheel.advance(TimerWheel::NONE - 1, all);  // takes every entry out
        s.next_tick.store(TimerWheel::NONE, std::memory_order_relaxed);
        WakeList drops;
        for (;;) {
            WheelEntry* we = all.pop_front();
            if (we) {
                TimerEntry* e = static_cast<TimerEntry*>(we);
                if (!e->waker_borrowed) drops.push(e->waker);
                e->waker_borrowed = false;
                // release: a later poll or cancel of the entry (acquire) sees
                // CLOSED and never touches the wheel again.
                e->state.store(TimerEntry::CLOSED, std::memory_order_release);
                if (drops.can_push()) continue;
            }
            // Drop outside the lock: a foreign waker's drop may cancel
            // another timer of this wheel (entries still on `all` are
            // REGISTERED at level EXPIRED; timer_cancel unlinks them).
            s.mu.unlock();
            drops.drop_all();
            if (!we) break;
            s.mu.lock();
        }
    }
}

uint64_t runtime_now(Shared* sh) { return sh->clock.now(); }

Clock& process_clock() {
    // Constant-initialised (no static guard: the kernel is built without
    // thread-safe statics); fn == nullptr is CLOCK_MONOTONIC.
    static constinit Clock clock;
    return clock;
}

// The tick timers_fire fires up to, from one raw reading of the clock (read
// when first needed). It is published exactly (Clock::observe) before
// anything fires: whoever acts on a reading past a deadline observes it
// first (clock.h), so no task woken here reads an earlier now(). now()
// itself may trail the source by up to PUBLISH_STEP_NS, which would leave a
// worker that woke at its deadline to park once more for the difference.
struct FireClock {
    Shared* sh;
    uint64_t raw = 0;
    uint64_t tick = TimerWheel::NONE;
    bool published = false;
    uint64_t now_tick() {
        if (tick == TimerWheel::NONE) {
            raw = sh->clock.raw();
            tick = now_to_tick(sh, raw);
        }
        return tick;
    }
    void publish() {
        if (!published) sh->clock.observe(raw);
        published = true;
    }
};

uint32_t timers_fire(Worker* w, bool idle) {
    Shared* sh = w->shared;
    uint32_t own_idx = own_shard(w->index);
    TimerShard& own = sh->timer_shards[own_idx];
    uint64_t own_next = own.next_tick.load(std::memory_order_relaxed);
    uint32_t n = sh->ntimer_shards;
    // A busy worker also looks at one other wheel per call, in turn: one
    // whose owner left it TIMER_HELP_AFTER_TICKS overdue (descheduled by the OS,
    // or stuck in a long poll before pulse hands it over) is fired here.
    TimerShard* other = nullptr;
    uint64_t other_next = TimerWheel::NONE;
    if (!idle && n > 1) {
        uint32_t i = w->timer_help_next;
        if (i == own_idx) i = (i + 1) % n;
        w->timer_help_next = (i + 1) % n;
        other = &sh->timer_shards[i];
        other_next = other->next_tick.load(std::memory_order_relaxed);
    }
    if (!idle && own_next == TimerWheel::NONE && other_next == TimerWheel::NONE) return 0;  // the common case
    FireClock clock{sh};
    uint32_t fired = 0;
    if (own_next != TimerWheel::NONE && own_next <= clock.now_tick()) {
        clock.publish();
        own.mu.lock();
        fired += fire_locked(w, own, clock.now_tick());
    }
    if (!idle) {
        // Never waits: the owner (or another helper) holding the lock is at it.
        if (other_next != TimerWheel::NONE && other_next + TIMER_HELP_AFTER_TICKS <= clock.now_tick() && other->mu.try_lock()) {
            clock.publish();
            fired += fire_locked(w, *other, clock.now_tick());
        }
        return fired;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (i == own_idx) continue;
        TimerShard& s = sh->timer_shards[i];
        uint64_t next = s.next_tick.load(std::memory_order_relaxed);
        if (next == TimerWheel::NONE || next > clock.now_tick()) continue;
        // Its owner is busy (or about to do it): help, but never wait.
        if (!s.mu.try_lock()) continue;
        clock.publish();
        fired += fire_locked(w, s, clock.now_tick());
    }
    return fired;
}

bool timers_overdue(Shared* sh, uint32_t worker, uint64_t ticks) {
    uint64_t next = sh->timer_shards[own_shard(worker)].next_tick.load(std::memory_order_relaxed);
    return next != TimerWheel::NONE && next + ticks <= now_to_tick(sh, sh->clock.raw());
}

int64_t timers_park_timeout(Worker* w) {
    Shared* sh = w->shared;
    uint32_t own_idx = own_shard(w->index);
    uint64_t best = sh->timer_shards[own_idx].next_tick.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < sh->ntimer_shards; i++) {
        if (i == own_idx) continue;
        // A parked worker sleeps until its own deadline; only the wheels of
        // busy workers need a stand-in (a racy hint: a stale read costs an
        // extra wake-up, or the busy worker fires its own timers late).
        if (sh->workers[i].parked_hint.load(std::memory_order_relaxed)) continue;
        uint64_t next = sh->timer_shards[i].next_tick.load(std::memory_order_relaxed);
        if (next < best) best = next;
    }
    if (best == TimerWheel::NONE) return -1;
    // The source itself, not now(), which may trail it (FireClock above).
    uint64_t now = sh->clock.raw();
    // Saturating: a far deadline (up to ~584 years of ticks) must not wrap.
    uint64_t max_tick = (~uint64_t(0) - sh->timer_epoch_ns) / TICK_NS;
    uint64_t deadline = best >= max_tick ? ~uint64_t(0) : sh->timer_epoch_ns + best * TICK_NS;
    if (deadline <= now) return 0;
    uint64_t left = deadline - now;
    return left > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)left;
}

int timer_poll(TimerEntry* e, const weft_waker* waker) {
    // acquire: pairs with the release store of FIRED / CLOSED.
    uint32_t st = e->state.load(std::memory_order_acquire);
    if (st == TimerEntry::FIRED) return WEFT_READY;
    if (st == TimerEntry::CLOSED) return WEFT_ECLOSED;
    // SAFETY: only a runtime's timer (MAGIC_RT) gets here (abi.cpp dispatches on the magic).
    Shared* sh = static_cast<Shared*>(e->owner);
    if (__builtin_expect(st == TimerEntry::FIRING, 0)) {
        // A firing thread holds the lock and is waking us (timer.h): its
        // FIRED store comes before its unlock.
        TimerShard& s = sh->timer_shards[e->shard];
        s.mu.lock();
        s.mu.unlock();
        return WEFT_READY;
    }
    if (st == TimerEntry::REGISTERED) {
        // Still waiting; make sure the latest waker is the one woken. Only
        // this thread (the owner) writes e->waker; a firing thread only reads
        // it, so reading it here without the lock is no race. Foreign clone
        // and drop functions run outside the lock (they may re-enter timers).
        if (weft_waker_will_wake(&e->waker, waker)) return WEFT_PENDING;
        TimerShard& s = sh->timer_shards[e->shard];
        // e->when is the owner's (written by its registration).
        bool borrow = borrows_waker(e, waker, e->when, now_to_tick(sh, sh->clock.reached()));
        weft_waker fresh = borrow ? *waker : weft_waker_clone(waker);
        weft_waker spare = fresh;
        bool spare_borrowed = borrow;
        s.mu.lock();
        st = e->state.load(std::memory_order_relaxed);
        if (st == TimerEntry::REGISTERED) {
            spare = e->waker;
            spare_borrowed = e->waker_borrowed;
            e->waker = fresh;
            e->waker_borrowed = borrow;
        }
        s.mu.unlock();
        release_waker(spare, spare_borrowed);  // the replaced waker, or ours if it fired meanwhile
        if (st == TimerEntry::FIRED) return WEFT_READY;
        if (st == TimerEntry::CLOSED) return WEFT_ECLOSED;
        return WEFT_PENDING;
    }
    // IDLE (UNSET is refused by the ABI layer): already due? (timer.h
    // registration_due: no clock read for a deadline more than a tick ahead.)
    uint64_t now;
    if (registration_due(sh->clock, e->deadline_ns, &now)) {
        e->state.store(TimerEntry::FIRED, std::memory_order_relaxed);
        return WEFT_READY;
    }
    uint64_t when = deadline_to_tick(sh, e->deadline_ns);
    uint64_t now_tick = now_to_tick(sh, now);
    Worker* w = t_worker;
    // Inside a poll, a worker this thread held may have been handed to a
    // spare meanwhile (pulse.h); then it is a foreign worker for the wake-up
    // below. The check is made again after the insert (below).
    bool in_poll = t_poll.in_user_poll;
    bool on_worker = w && w->shared == sh && (!in_poll || w->epoch.load(std::memory_order_relaxed) == t_poll.epoch);
    uint32_t idx = on_worker ? own_shard(w->index)
                             : sh->timer_rr.fetch_add(1, std::memory_order_relaxed) % sh->ntimer_shards;
    TimerShard& s = sh->timer_shards[idx];
    bool borrow = borrows_waker(e, waker, when, now_tick);
    weft_waker mine = borrow ? *waker : weft_waker_clone(waker);  // outside the lock (foreign code)
    s.mu.lock();
    if (s.closed) {
        s.mu.unlock();
        release_waker(mine, borrow);
        e->state.store(TimerEntry::CLOSED, std::memory_order_relaxed);
        return WEFT_ECLOSED;
    }
    s.wheel.catch_up_if_empty(now_tick);
    if (when <= s.wheel.elapsed()) {
        // The wheel has already passed this tick (another thread advanced it
        // with a newer clock reading than `now`): not early, since the clock
        // has reached that tick. Publish that time (some thread read at least
        // this much) before the caller acts on it.
        sh->clock.observe(sh->timer_epoch_ns + s.wheel.elapsed() * TICK_NS);
        s.mu.unlock();
        release_waker(mine, borrow);
        e->state.store(TimerEntry::FIRED, std::memory_order_relaxed);
        return WEFT_READY;
    }
    e->when = when;
    e->waker = mine;
    e->waker_borrowed = borrow;
    e->shard = (uint16_t)idx;
    e->state.store(TimerEntry::REGISTERED, std::memory_order_relaxed);
    uint64_t before = s.next_tick.load(std::memory_order_relaxed);
    uint64_t expires = s.wheel.insert(e);
    bool earlier = expires < before;
    if (earlier) s.next_tick.store(expires, std::memory_order_relaxed);
    s.mu.unlock();
    if (on_worker && in_poll) {
        // A handoff may have committed between the check above and the
        // insert: the spare then may have computed its sleep from the wheel
        // without our timer, and parked. The handoff's process-wide barrier
        // (pulse.h) splits the two cases: either the insert came before it
        // (the spare, given the worker after, sees the timer), or this load
        // comes after it and sees the new epoch (we wake the spare). The
        // fence keeps the compiler from hoisting the load above the insert.
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (w->epoch.load(std::memory_order_relaxed) != t_poll.epoch) on_worker = false;
    }
    // A parked worker sleeps until the deadline it saw when it parked: if
    // this one is earlier and that worker is not us, wake it to re-arm. An
    // unpark of a worker that is not parked is remembered by its parker and
    // costs it one extra trip round its park loop.
    if (earlier && !(on_worker && sh->ntimer_shards == sh->nworkers)) {
        if (sh->ntimer_shards == sh->nworkers) {
            sh->workers[idx].parker.unpark();
        } else {
            // One wheel for everyone: any parked worker may be the one to fire it.
            for (uint32_t i = 0; i < sh->nworkers; i++)
                if (!(on_worker && i == w->index)) sh->workers[i].parker.unpark();
        }
    }
    return WEFT_PENDING;
}

void timer_cancel_registered(TimerEntry* e) {
    // SAFETY: a runtime's timer (MAGIC_RT), as in timer_poll.
    TimerShard& s = static_cast<Shared*>(e->owner)->timer_shards[e->shard];
    s.mu.lock();
    // Fired meanwhile (a firing thread held the lock; FIRING is over once we
    // hold it): then only FIRED -> IDLE.
    uint32_t st = e->state.load(std::memory_order_relaxed);
    weft_waker old{};
    bool drop = false;  // a reference to give back (not a borrowed waker)
    if (st == TimerEntry::REGISTERED) {
        if (e->level == TimerWheel::EXPIRED) {
            // On a firing thread's batch list, not in the wheel.
            TimerWheel::List::remove(e);
        } else {
            // next_tick is left as it is: at worst too early, which costs a
            // look at this wheel that finds nothing (timer.h: a hint).
            s.wheel.remove(e);
        }
        old = e->waker;
        drop = !e->waker_borrowed;
        e->waker_borrowed = false;
        e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
    } else if (st == TimerEntry::FIRED) {
        e->state.store(TimerEntry::IDLE, std::memory_order_relaxed);
    }
    s.mu.unlock();
    if (drop) weft_waker_drop(old);
}

}  // namespace weft::kernel
