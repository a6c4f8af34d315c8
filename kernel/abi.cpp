// kernel/abi.cpp — the C ABI (include/weft/weft.h) over the kernel.
//
// Every entry point validates its arguments and returns a code; nothing here
// trusts a pointer it can check. Handles are kernel objects cast to opaque
// types: weft_runtime* is a Shared*, weft_join* is a TaskHeader* holding the
// join reference.
#include <stddef.h>
#include <string.h>

#include <new>

#include "../include/weft/weft.h"
#include "pool.h"
#include "scheduler.h"
#include "tpc.h"

using namespace weft::kernel;

namespace {

Shared* as_shared(weft_runtime* rt) {
    // SAFETY: weft_runtime is never defined; the handle is the Shared* that
    // weft_runtime_new returned. The magic check catches most stale or
    // foreign pointers (a freed runtime has magic 0) but is not a guarantee.
    Shared* sh = reinterpret_cast<Shared*>(rt);
    return sh && sh->magic == Shared::MAGIC ? sh : nullptr;
}
// SAFETY: weft_join is never defined; a join handle is the TaskHeader* that
// weft_spawn / weft_task_spawn handed out, and it holds a reference that
// keeps the header alive until weft_join_free.
TaskHeader* as_task(weft_join* j) { return reinterpret_cast<TaskHeader*>(j); }
const TaskHeader* as_task(const weft_join* j) { return reinterpret_cast<const TaskHeader*>(j); }

// ---- C tasks: weft_task_desc over a raw task ---------------------------------
struct CTask {
    weft_poll_fn poll;
    weft_drop_fn drop;
    void* data;
    size_t output_size;
    bool dropped;
    alignas(16) unsigned char output[];  // output_size bytes
};

void ctask_drop_once(CTask* c) {
    if (c->dropped) return;
    c->dropped = true;
    if (c->drop) c->drop(c->data);
}
int ctask_poll(void* state, weft_context* cx) {
    CTask* c = static_cast<CTask*>(state);
    int r = c->poll(c->data, cx, c->output);
    if (r != WEFT_PENDING) ctask_drop_once(c);  // done with data: ready or failed
    return r;
}
void ctask_drop_future(void* state) { ctask_drop_once(static_cast<CTask*>(state)); }
void ctask_drop_output(void*) {}
const weft_task_vtable ctask_vtable = {ctask_poll, ctask_drop_future, ctask_drop_output};

int check_desc(const weft_task_desc* d) {
    if (!d || d->size < sizeof(weft_task_desc) - 0) return d ? WEFT_EVERSION : WEFT_EINVAL;
    if (!d->poll || d->output_size > WEFT_MAX_OUTPUT) return WEFT_EINVAL;
    return 0;
}

static_assert(sizeof(TimerEntry) <= sizeof(weft_timer), "weft_timer is too small for a TimerEntry");
static_assert(alignof(TimerEntry) <= alignof(weft_timer), "weft_timer is under-aligned for a TimerEntry");
// SAFETY: weft_timer_init constructs a TimerEntry in the caller's weft_timer;
// the magic catches a zeroed or foreign one, and with the state's range most
// other uninitialised memory (not a guarantee: 16 bits of magic, which
// weft_timer_init also asks of the memory it is given, to cancel a timer
// initialised again while it waits).
TimerEntry* as_timer(weft_timer* t) {
    TimerEntry* e = reinterpret_cast<TimerEntry*>(t);
    return t && (e->magic == TimerEntry::MAGIC_RT || e->magic == TimerEntry::MAGIC_TPC) &&
                   e->state.load(std::memory_order_relaxed) <= TimerEntry::FIRING
               ? e
               : nullptr;
}
// The hot calls' check: a runtime's timer (one compare), else as_timer's.
TimerEntry* as_runtime_timer(weft_timer* t) {
    TimerEntry* e = reinterpret_cast<TimerEntry*>(t);
    return t && e->magic == TimerEntry::MAGIC_RT ? e : nullptr;
}

}  // namespace

namespace weft::kernel {
int ctask_new(const weft_task_desc* desc, TaskHeader** out) {
    int r = check_desc(desc);
    if (r != 0) {
        // The task is not ours to keep: honour "drop runs exactly once".
        if (desc && desc->drop) desc->drop(desc->data);
        return r;
    }
    TaskHeader* t = task_alloc(sizeof(CTask) + desc->output_size, &ctask_vtable);
    if (!t) {
        if (desc->drop) desc->drop(desc->data);
        return WEFT_ENOMEM;
    }
    CTask* c = static_cast<CTask*>(t->state_ptr());
    c->poll = desc->poll;
    c->drop = desc->drop;
    c->data = desc->data;
    c->output_size = desc->output_size;
    c->dropped = false;
    memset(c->output, 0, desc->output_size);
    *out = t;
    return 0;
}
}  // namespace weft::kernel

namespace {

int resolve_runtime(weft_runtime* rt, Shared** out) {
    if (rt) {
        Shared* sh = as_shared(rt);
        if (!sh) return WEFT_EINVAL;
        *out = sh;
        return 0;
    }
    Shared* cur = current_runtime();
    if (!cur) return WEFT_EINVAL;
    *out = cur;
    return 0;
}

}  // namespace

extern "C" {

int weft_version(void) { return WEFT_VERSION_NUMBER; }
const char* weft_version_string(void) { return "0.1.0"; }

const char* weft_strerror(int code) {
    switch (code) {
    case WEFT_OK: return "success";
    case WEFT_EINVAL:
        return "invalid argument: a required pointer is NULL, a handle is not a live weft object, or a value is out "
               "of range; check the call's arguments against weft.h";
    case WEFT_ENOMEM: return "out of memory: weft could not allocate the task or runtime";
    case WEFT_ECLOSED:
        return "the runtime is shutting down or closed; the task was not started (its drop function has run)";
    case WEFT_ECANCELED: return "the task was cancelled (aborted, or dropped at runtime shutdown) before it finished";
    case WEFT_EAGAIN: return "not finished yet; poll or wait again later";
    case WEFT_ETIMEDOUT: return "the wait timed out before the task finished";
    case WEFT_EDEADLK:
        return "a blocking call was made on a runtime worker thread, which would stall the runtime; await the join "
               "handle (weft_join_poll / co_await) instead";
    case WEFT_EALREADY: return "already done: the task finished already, or its output was already taken";
    case WEFT_EVERSION:
        return "the struct's size field does not match this weft version; set size = sizeof(the struct) and "
               "rebuild against this weft.h";
    case WEFT_EAGAIN_THREAD: return "could not start a worker thread (thread limit or memory); use fewer workers";
    case WEFT_ETASKFAILED: return "the task failed (a C++ task threw an exception; the join handle rethrows it)";
    default: break;
    }
    if (code < 0 && code > -4096) {  // errno range (and no overflow on INT_MIN)
        const char* s = strerror(-code);
        return s ? s : "unknown error";
    }
    return "unknown code (not an error)";
}

void weft_runtime_config_init(weft_runtime_config* cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = sizeof(*cfg);
}

int weft_runtime_new(const weft_runtime_config* cfg, weft_runtime** out) {
    if (!out) return WEFT_EINVAL;
    *out = nullptr;
    weft_runtime_config c;
    weft_runtime_config_init(&c);
    if (cfg) {
        // Callers built against older headers pass the struct without the
        // clock fields (CLOCK_MONOTONIC) or without `pulse` (the defaults).
        if (cfg->size == offsetof(weft_runtime_config, clock) || cfg->size == offsetof(weft_runtime_config, pulse) ||
            cfg->size == offsetof(weft_runtime_config, failure_policy)) {
            memcpy(&c, cfg, cfg->size);
            c.size = sizeof(c);
        } else if (cfg->size == sizeof(weft_runtime_config)) {
            c = *cfg;
        } else {
            return WEFT_EVERSION;
        }
    }
    if (c.flags != 0 || c._reserved2 != 0) return WEFT_EINVAL;
    if (c.failure_policy > WEFT_FAILURE_ABORT) return WEFT_EINVAL;
    Shared* sh = nullptr;
    int r = runtime_new(c.workers, c.name, c.clock, c.clock_ctx, c.pulse, &sh);
    if (r != 0) return r;
    // No task can run before the handle is returned, and every report comes
    // from a task or a drop: these are set before any reader (failure.h).
    sh->failures.fn = c.on_failure;
    sh->failures.ctx = c.on_failure_ctx;
    sh->failures.policy = c.failure_policy;
    *out = reinterpret_cast<weft_runtime*>(sh);
    return 0;
}

int weft_runtime_free(weft_runtime* rt) {
    if (!rt) return 0;
    Shared* sh = as_shared(rt);
    if (!sh) return WEFT_EINVAL;
    return runtime_free(sh);
}

uint32_t weft_runtime_workers(const weft_runtime* rt) {
    Shared* sh = as_shared(const_cast<weft_runtime*>(rt));
    return sh ? sh->nworkers : 0;
}

weft_runtime* weft_runtime_current(void) { return reinterpret_cast<weft_runtime*>(current_runtime()); }

int weft_spawn(weft_runtime* rt, const weft_task_desc* desc, weft_join** join) {
    if (join) *join = nullptr;
    int r = check_desc(desc);
    if (r != 0) {
        // The task is not ours to keep: honour "drop runs exactly once".
        if (desc && desc->drop) desc->drop(desc->data);
        return r;
    }
    // rt NULL on a thread-per-core executor's thread: spawn there (the same
    // code runs on either executor).
    if (!rt && !t_runtime && tpc::t_exec) return weft_tpc_spawn(nullptr, desc, join);
    Shared* sh;
    if ((r = resolve_runtime(rt, &sh)) != 0) {
        if (desc->drop) desc->drop(desc->data);
        return r;
    }
    TaskHeader* t;
    if ((r = ctask_new(desc, &t)) != 0) return r;
    r = task_spawn(sh, t, join != nullptr);
    if (r == 0 && join) *join = reinterpret_cast<weft_join*>(t);
    return r;
}

// weft_task_alloc when the pool has no block cached (a call to malloc).
static __attribute__((noinline)) void* task_alloc_uncached(size_t state_size, const weft_task_vtable* vtable) {
    TaskHeader* t = task_alloc(state_size, vtable);
    return t ? t->state_ptr() : nullptr;
}

void* weft_task_alloc(size_t state_size, const weft_task_vtable* vtable) {
    if (!vtable || !vtable->poll || state_size > TASK_STATE_MAX) return nullptr;
    size_t total = task_alloc_size(state_size);
    // A block from this thread's cache: no call on this path, so it saves no
    // registers; a miss tail-calls the general allocation.
    void* mem = pool::alloc_cached(total);
    if (__builtin_expect(!mem, 0)) return task_alloc_uncached(state_size, vtable);
    return task_init(mem, total, vtable)->state_ptr();
}

int weft_task_spawn_ex(weft_runtime* rt, void* state, weft_join** join, uint32_t flags) {
    if (join) *join = nullptr;
    if (!state) return WEFT_EINVAL;
    TaskHeader* t = TaskHeader::from_state(state);
    if (!rt && t_runtime && flags <= WEFT_SPAWN_FORK) {
        // The common case: a task spawning onto its own runtime.
        int r = task_spawn(t_runtime, t, join != nullptr, flags != 0);
        if (r == 0 && join) *join = reinterpret_cast<weft_join*>(t);
        return r;
    }
    if (!rt && !t_runtime && tpc::t_exec && flags <= WEFT_SPAWN_FORK) {
        // A thread-per-core executor's thread: a local spawn there (a fork
        // child is an ordinary local task: nothing to steal it anyway).
        return weft_tpc_task_spawn(nullptr, state, join);
    }
    Shared* sh;
    int r = (flags & ~WEFT_SPAWN_FORK) ? WEFT_EINVAL : resolve_runtime(rt, &sh);
    if (r != 0) {
        task_release_unspawned(t);
        return r;
    }
    r = task_spawn(sh, t, join != nullptr, (flags & WEFT_SPAWN_FORK) != 0);
    if (r == 0 && join) *join = reinterpret_cast<weft_join*>(t);
    return r;
}

int weft_task_spawn_fork(void* state, void* group) {
    if (!state) return WEFT_EINVAL;
    TaskHeader* t = TaskHeader::from_state(state);
    if (!group) {
        task_release_unspawned(t);
        return WEFT_EINVAL;
    }
    if (t_runtime) return task_spawn(t_runtime, t, false, true, group);
    // Elsewhere a group is only a name: a thread-per-core executor's local
    // spawn, or the refusal that weft_task_spawn_ex gives.
    return weft_task_spawn_ex(nullptr, state, nullptr, WEFT_SPAWN_FORK);
}

int weft_task_spawn(weft_runtime* rt, void* state, weft_join** join) {
    return weft_task_spawn_ex(rt, state, join, 0);
}

void weft_task_release_unspawned(void* state) {
    if (state) task_release_unspawned(TaskHeader::from_state(state));
}

void weft_task_free_state(void* state) {
    if (!state) return;
    TaskHeader* t = TaskHeader::from_state(state);
    if (t->spawned) return;
    t->stage = Stage::Dropped;
    pool::free(t, t->alloc_size);
}

uint64_t weft_task_current_id(void) {
    TaskHeader* t = current_task();
    if (!t) t = tpc::current_task();
    return t ? t->id : 0;
}

int weft_join_poll(weft_join* join, weft_context* cx) {
    if (!join || !cx || !cx->waker.vtable) return WEFT_EINVAL;
    TaskHeader* t = as_task(join);
    return t->kind == TASK_TPC ? tpc::join_poll(t, &cx->waker) : join_poll(t, &cx->waker);
}

int weft_join_wait(weft_join* join, int64_t timeout_ns) {
    if (!join) return WEFT_EINVAL;
    TaskHeader* t = as_task(join);
    return t->kind == TASK_TPC ? tpc::join_wait(t, timeout_ns) : join_wait(t, timeout_ns);
}

// Whether the task behind a usable handle has finished (its result is
// final): COMPLETE, or ST_DONE on a thread-per-core executor. Not the status
// (a task may fail with WEFT_EAGAIN as its own code).
static bool task_finished(const TaskHeader* t) {
    return t->kind == TASK_TPC ? tpc::join_finished(t) : t->state.load().complete();
}

int weft_join_status(const weft_join* join) {
    if (!join) return WEFT_EINVAL;
    const TaskHeader* t = as_task(join);
    if (t->kind == TASK_TPC && !tpc::join_usable(t)) return WEFT_EINVAL;  // not from this thread
    // The handle has seen the outcome: a failure is not reported again when
    // the handle is freed (failure.h). Written by the handle's thread only.
    if (task_finished(t)) const_cast<TaskHeader*>(t)->join_taken |= JOIN_OBSERVED;
    return t->kind == TASK_TPC ? tpc::join_status(t) : join_status(t);
}

int weft_join_finished(const weft_join* join) {
    if (!join) return WEFT_EINVAL;
    const TaskHeader* t = as_task(join);
    if (t->kind == TASK_TPC && !tpc::join_usable(t)) return WEFT_EINVAL;  // not from this thread
    return task_finished(t) ? 1 : 0;
}

int weft_join_report_failure(weft_join* join, const char* message) {
    if (!join) return WEFT_EINVAL;
    TaskHeader* t = as_task(join);
    if (t->kind == TASK_TPC && !tpc::join_usable(t)) return WEFT_EINVAL;
    if (!task_finished(t)) return WEFT_EAGAIN;
    int st = t->result;
    if (!failure_unobserved(t)) return WEFT_EALREADY;  // read already, or not a failure
    t->join_taken |= JOIN_OBSERVED;
    report_task_failure(failure_target_of(t), t->id, st, message);
    return 0;
}

int weft_join_take(weft_join* join, void* dst, size_t dst_size) {
    if (!join) return WEFT_EINVAL;
    TaskHeader* t = as_task(join);
    if (t->vtable != &ctask_vtable) return WEFT_EINVAL;  // raw tasks: read weft_join_state
    if (t->kind == TASK_TPC && !tpc::join_usable(t)) return WEFT_EINVAL;  // not from this thread
    int st = t->kind == TASK_TPC ? tpc::join_status(t) : join_status(t);
    if (task_finished(t)) t->join_taken |= JOIN_OBSERVED;
    if (st != 0) return st;
    CTask* c = static_cast<CTask*>(t->state_ptr());
    if (t->join_taken & JOIN_TAKEN) return WEFT_EALREADY;
    if (c->output_size && (!dst || dst_size < c->output_size)) return WEFT_EINVAL;
    if (c->output_size) memcpy(dst, c->output, c->output_size);
    t->join_taken |= JOIN_TAKEN;
    return 0;
}

void* weft_join_state(weft_join* join) { return join ? as_task(join)->state_ptr() : nullptr; }

int weft_join_abort(weft_join* join) {
    if (!join) return WEFT_EINVAL;
    TaskHeader* t = as_task(join);
    return t->kind == TASK_TPC ? tpc::join_abort(t) : join_abort(t);
}

void weft_join_free(weft_join* join) {
    if (!join) return;
    TaskHeader* t = as_task(join);
    if (t->kind == TASK_TPC) {
        tpc::join_free(t);
    } else {
        join_free(t);
    }
}

uint64_t weft_join_task_id(const weft_join* join) { return join ? as_task(join)->id : 0; }

int weft_block_on(weft_runtime* rt, const weft_task_desc* desc, void* output) {
    if (!rt) {
        if (desc && desc->drop) desc->drop(desc->data);
        return WEFT_EINVAL;
    }
    if (current_runtime()) {
        if (desc && desc->drop) desc->drop(desc->data);
        return WEFT_EDEADLK;
    }
    weft_join* j = nullptr;
    int r = weft_spawn(rt, desc, &j);
    if (r != 0) return r;
    r = weft_join_wait(j, -1);
    if (r == 0) r = weft_join_take(j, output, desc->output_size);
    weft_join_free(j);
    return r;
}

static weft_waker noop_clone(const void*);
static void noop_fn(const void*) {}
static const weft_waker_vtable noop_vtable = {noop_clone, noop_fn, noop_fn, noop_fn};
static weft_waker noop_clone(const void*) { return weft_waker{nullptr, &noop_vtable}; }
weft_waker weft_waker_noop(void) { return weft_waker{nullptr, &noop_vtable}; }

// ---- time and timers (weft_time.h) -------------------------------------------

uint64_t weft_now(void) {
    if (Shared* sh = current_runtime()) return runtime_now(sh);
    return process_clock().now();
}

uint64_t weft_runtime_now(weft_runtime* rt) {
    Shared* sh = as_shared(rt);
    return sh ? runtime_now(sh) : 0;
}

int weft_runtime_clock_changed(weft_runtime* rt) {
    Shared* sh = as_shared(rt);
    if (!sh) return WEFT_EINVAL;
    runtime_clock_changed(sh);
    return 0;
}

// Unregisters t, whichever wheel holds it (nothing for memory that is not
// a timer). 0, or WEFT_EINVAL when a thread-per-core timer's executor is
// another thread's (it stays registered: tpc::timer_cancel).
static int cancel_timer(weft_timer* t) {
    if (TimerEntry* e = as_runtime_timer(t)) {
        timer_cancel(e);
        return 0;
    }
    TimerEntry* e = as_timer(t);
    return e ? tpc::timer_cancel(e) : 0;
}

int weft_timer_init(weft_timer* t, weft_runtime* rt) {
    if (!t) return WEFT_EINVAL;
    Shared* sh = nullptr;
    tpc::Executor* ex = nullptr;
    if (!rt && !current_runtime() && tpc::t_exec) {
        ex = tpc::t_exec;  // a thread-per-core executor's thread: its wheel
    } else {
        int r = resolve_runtime(rt, &sh);
        if (r != 0) return r;
    }
    // Re-initialising a waiting timer: unregister it first (refused for a
    // thread-per-core timer registered on another thread's executor: it
    // stays linked in that wheel, so its memory must not be rebuilt).
    if (cancel_timer(t) != 0) return WEFT_EINVAL;
    // SAFETY: weft_timer is caller memory of the right size and alignment
    // (static_asserts above); a TimerEntry is constructed in it here.
    TimerEntry* e = new (t) TimerEntry;
    e->owner = ex ? static_cast<void*>(ex) : static_cast<void*>(sh);
    e->magic = ex ? TimerEntry::MAGIC_TPC : TimerEntry::MAGIC_RT;
    return 0;
}

int weft_timer_reset(weft_timer* t, uint64_t deadline_ns) {
    if (TimerEntry* e = as_runtime_timer(t)) {
        timer_reset(e, deadline_ns);
        return 0;
    }
    TimerEntry* e = as_timer(t);
    return e ? tpc::timer_reset(e, deadline_ns) : WEFT_EINVAL;
}

int weft_timer_sleep_for(weft_timer* t, int64_t duration_ns) {
    TimerEntry* e = as_timer(t);
    if (!e || duration_ns < 0) return WEFT_EINVAL;
    uint64_t now = e->tpc() ? process_clock().now() : runtime_now(e->rt());
    uint64_t d = (uint64_t)duration_ns;
    uint64_t deadline = d > ~uint64_t(0) - now ? ~uint64_t(0) : now + d;
    if (e->tpc()) return tpc::timer_reset(e, deadline);
    timer_reset(e, deadline);
    return 0;
}

int weft_timer_poll(weft_timer* t, weft_context* cx) {
    TimerEntry* e = as_runtime_timer(t);
    bool tpc_timer = !e && (e = as_timer(t)) != nullptr;
    if (!e || !cx || !cx->waker.vtable) return WEFT_EINVAL;
    if (e->state.load(std::memory_order_relaxed) == TimerEntry::UNSET) return WEFT_EINVAL;
    if (tpc_timer) return tpc::timer_poll(e, &cx->waker);
    // The cooperative budget (weft_pulse.h): a task looping over timers that
    // are always due still yields.
    if (budget_spent(1)) {
        weft_waker_wake_by_ref(&cx->waker);
        return WEFT_PENDING;
    }
    return timer_poll(e, &cx->waker);
}

void weft_timer_cancel(weft_timer* t) { (void)cancel_timer(t); }  // a refusal was reported on stderr

uint64_t weft_timer_deadline(const weft_timer* t) {
    TimerEntry* e = as_timer(const_cast<weft_timer*>(t));
    return e ? e->deadline_ns : 0;
}

void* weft_alloc(size_t size) { return pool::alloc(size); }
void weft_free(void* p, size_t size) { pool::free(p, size); }

}  // extern "C"
