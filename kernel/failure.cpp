// kernel/failure.cpp — failure reports, handlers and policies (failure.h).
#include "failure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../port/port.h"
#include "scheduler.h"
#include "tpc.h"

namespace weft::kernel {

constinit __attribute__((tls_model("initial-exec"))) thread_local Shared* t_failure_runtime = nullptr;

namespace {

// The process-wide target: threads of no runtime.
FailureTarget g_process;
port::Mutex g_process_mu;  // guards g_process.fn / ctx / policy

// weft_task_failure_note: descriptions of failures that tasks are about to
// return, keyed by task id, so a note never consumed (the task had a join
// handle) cannot be attached to another task; the oldest is overwritten.
// Not thread-local: 8 x 256 bytes of TLS would eat glibc's static TLS
// surplus (every kernel thread_local is initial-exec, so that a dlopen()ed
// libweft.so needs no __tls_get_addr and no dynamic loader in DT_NEEDED).
// Failures are rare: a lock is fine.
constexpr size_t NOTE_BYTES = 256;
constexpr uint32_t NOTES = 8;
struct Note {
    uint64_t task;
    char text[NOTE_BYTES];
};
port::Mutex g_notes_mu;
Note g_notes[NOTES];     // guarded by g_notes_mu
uint32_t g_notes_next;   // guarded by g_notes_mu

// A handler that reports a failure from inside itself is not called again
// deeper than this (its reports count as unhandled): no unbounded recursion.
constexpr uint32_t MAX_REPORT_DEPTH = 4;
constinit __attribute__((tls_model("initial-exec"))) thread_local uint32_t t_report_depth = 0;

const char* kind_name(int kind) {
    switch (kind) {
    case WEFT_FAILURE_TASK: return "a detached task failed";
    case WEFT_FAILURE_DROP: return "releasing a task failed";
    case WEFT_FAILURE_WAKE: return "a waker failed";
    case WEFT_FAILURE_HOOK: return "a user hook failed";
    default: return "failure";
    }
}

[[noreturn]] void abort_with(const weft_failure& f) {
    char line[512];
    snprintf(line, sizeof line,
             "weft: unhandled failure, policy WEFT_FAILURE_ABORT: %s (task %llu, code %d: %s): %s\n",
             kind_name(f.kind), (unsigned long long)f.task_id, f.code, weft_strerror(f.code), f.message);
    port::write_stderr(line);
    abort();
}

Shared* target_runtime() {
    if (Shared* sh = t_failure_runtime) return sh;
    return current_runtime();
}

}  // namespace

int report_failure(const weft_failure& f, Shared* to) {
    Shared* sh = to ? to : target_runtime();
    FailureTarget& tg = sh ? sh->failures : g_process;
    tg.reported.fetch_add(1, std::memory_order_relaxed);
    tg.by_kind[f.kind].fetch_add(1, std::memory_order_relaxed);
    weft_failure_fn fn;
    void* ctx;
    uint32_t policy;
    if (sh) {
        fn = tg.fn;  // fixed before the runtime's handle was returned
        ctx = tg.ctx;
        policy = tg.policy;
    } else {
        port::LockGuard g(g_process_mu);
        fn = tg.fn;
        ctx = tg.ctx;
        policy = tg.policy;
    }
    if (fn && t_report_depth < MAX_REPORT_DEPTH) {
        t_report_depth++;
        int r = fn(ctx, &f);
        t_report_depth--;
        if (r == 0) return 0;
    }
    tg.unhandled.fetch_add(1, std::memory_order_relaxed);
    switch (policy) {
    case WEFT_FAILURE_ABORT: abort_with(f);
    case WEFT_FAILURE_SHUTDOWN:
        if (sh) failure_shutdown(sh);
        break;
    default: break;
    }
    return 1;
}

void report_task_failure(Shared* to, uint64_t task_id, int code, const char* message) {
    weft_failure f{};
    f.size = sizeof f;
    f.kind = WEFT_FAILURE_TASK;
    f.code = code;
    f.task_id = task_id;
    f.message = message ? message : weft_strerror(code);
    report_failure(f, to);
}

void report_detached_failure(Shared* to, uint64_t task_id, int code) {
    const char* message = nullptr;
    char note[NOTE_BYTES];
    {
        port::LockGuard g(g_notes_mu);
        for (Note& n : g_notes) {
            if (n.task != task_id) continue;
            memcpy(note, n.text, NOTE_BYTES);
            n.task = 0;
            if (note[0]) message = note;
            break;
        }
    }
    report_task_failure(to, task_id, code, message);
}

void report_unread_failure(const TaskHeader* t) {
    char msg[200];
    snprintf(msg, sizeof msg, "the task failed and its join handle was freed without reading the outcome: %s",
             weft_strerror(t->result));
    report_task_failure(failure_target_of(t), t->id, t->result, msg);
}

void failure_shutdown(Shared* sh) {
    bool expected = false;
    if (!sh->failed.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return;
    sh->failures.shut_down.store(1, std::memory_order_relaxed);
    // Every spawn reads owned_closed (acquire) and refuses; release so a
    // spawner that sees it also sees `failed`.
    sh->owned_closed.store(true, std::memory_order_release);
    // Parked workers make their first cancelling pass now (park() reads
    // `failed` on waking); busy ones at their next fairness tick.
    for (uint32_t i = 0; i < sh->nworkers; i++) sh->workers[i].parker.unpark();
}

}  // namespace weft::kernel

using namespace weft::kernel;
namespace port = weft::port;

extern "C" {

int weft_report_failure(const weft_failure* failure) {
    if (!failure || failure->size != sizeof(weft_failure)) return WEFT_EINVAL;
    if (failure->kind <= 0 || failure->kind >= WEFT_FAILURE_KINDS) return WEFT_EINVAL;
    weft_failure f = *failure;
    if (!f.message) f.message = "(no message)";
    return report_failure(f);
}

void weft_task_failure_note(const char* message) {
    uint64_t id = weft_task_current_id();
    if (!id || !message) return;
    size_t n = strnlen(message, NOTE_BYTES - 1);
    port::LockGuard g(g_notes_mu);
    Note& slot = g_notes[g_notes_next++ % NOTES];
    slot.task = id;
    memcpy(slot.text, message, n);
    slot.text[n] = 0;
}

int weft_failure_handler_set(weft_failure_fn fn, void* ctx, uint32_t policy) {
    if (policy != WEFT_FAILURE_IGNORE && policy != WEFT_FAILURE_ABORT) return WEFT_EINVAL;
    port::LockGuard g(g_process_mu);
    g_process.fn = fn;
    g_process.ctx = fn ? ctx : nullptr;
    g_process.policy = policy;
    return 0;
}

int weft_failure_stats_get(const weft_runtime* rt, weft_failure_stats* out) {
    if (!out || out->size != sizeof(weft_failure_stats)) return out ? WEFT_EVERSION : WEFT_EINVAL;
    const FailureTarget* tg = &g_process;
    if (rt) {
        const Shared* sh = reinterpret_cast<const Shared*>(rt);
        if (sh->magic != Shared::MAGIC) return WEFT_EINVAL;
        tg = &sh->failures;
    }
    out->reported = tg->reported.load(std::memory_order_relaxed);
    out->unhandled = tg->unhandled.load(std::memory_order_relaxed);
    for (int k = 0; k < 16; k++) out->by_kind[k] = k < WEFT_FAILURE_KINDS ? tg->by_kind[k].load(std::memory_order_relaxed) : 0;
    out->shut_down = tg->shut_down.load(std::memory_order_relaxed);
    out->_reserved = 0;
    return 0;
}

}  // extern "C"
