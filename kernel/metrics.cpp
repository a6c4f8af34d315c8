// kernel/metrics.cpp — the metrics part of the C ABI (weft_metrics.h): per-
// worker counters and poll-time histograms, summed snapshots, and the
// Prometheus text rendering.
//
// Threads: every function here only reads. The counters (WorkerMetrics,
// scheduler.h) are written by the thread that holds their worker with relaxed
// load + store, and InjectQueue::remote_pushes under the inject lock; we read
// each with one relaxed load, so every value read is one the counter really
// had (no torn reads: they are std::atomic), and values only grow. Nothing
// orders the loads against each other: a snapshot is a set of per-counter
// exact values taken a few instructions apart, not one instant. Where the
// text must be consistent with itself (a histogram's buckets, _count and
// +Inf), the values are read once into locals and everything is derived from
// those copies.
//
// No allocation, no libc formatting: the text is written by hand (Out below)
// so the same code both measures and writes, and cannot disagree with itself.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../include/weft/weft.h"
#include "scheduler.h"

using namespace weft::kernel;

static_assert(POLL_HIST_BUCKETS == WEFT_POLL_HIST_BUCKETS, "weft_metrics.h and scheduler.h disagree on the histogram");

namespace {

Shared* as_shared(const weft_runtime* rt) {
    // SAFETY: as in abi.cpp: the handle is the Shared* weft_runtime_new gave
    // (these functions only read it, hence the const_cast). A real one is
    // aligned to alignof(Shared); anything else is refused before it is
    // read as a Shared (that read would be undefined: UBSan reports it,
    // tests/test_metrics.cpp BadInputGetsACode). The magic check catches
    // most stale or foreign pointers but is not a guarantee.
    if (!rt || reinterpret_cast<uintptr_t>(rt) % alignof(Shared) != 0) return nullptr;
    Shared* sh = reinterpret_cast<Shared*>(const_cast<weft_runtime*>(rt));
    return sh->magic == Shared::MAGIC ? sh : nullptr;
}

uint64_t rd(const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); }

// The first published layouts end after poll_hist. When fields are added,
// these stay as they are (freeze them at the end of version 1) so that old
// callers' sizes are still accepted.
constexpr size_t METRICS_V1_SIZE = offsetof(weft_metrics, poll_hist) + sizeof(uint64_t) * WEFT_POLL_HIST_BUCKETS;
constexpr size_t WORKER_METRICS_EX_V1_SIZE =
    offsetof(weft_worker_metrics_ex, poll_hist) + sizeof(uint64_t) * WEFT_POLL_HIST_BUCKETS;
static_assert(METRICS_V1_SIZE <= sizeof(weft_metrics), "");
static_assert(WORKER_METRICS_EX_V1_SIZE <= sizeof(weft_worker_metrics_ex), "");

// Copies the first min(caller's size, ours) bytes of `full` (built on our
// stack, size field included) into the caller's struct and sets its size to
// that count: the caller's bytes past it are untouched (weft_metrics.h,
// Versioning).
void copy_versioned(void* out, const void* full, size_t ours) {
    size_t theirs;
    memcpy(&theirs, out, sizeof theirs);
    size_t n = theirs < ours ? theirs : ours;
    memcpy(out, full, n);
    memcpy(out, &n, sizeof n);
}

// All of one worker's counters, read once each (relaxed; see the top).
struct WorkerSnap {
    uint64_t polls, steals, stolen_tasks, overflows, parks, lifo_polls, inject_pops, fork_exposed;
    uint64_t budget_yields, tier_changes, handoffs, handoffs_refused;
    uint64_t hist[WEFT_POLL_HIST_BUCKETS];
};

void snap_worker(const WorkerMetrics& m, WorkerSnap* s) {
    s->polls = rd(m.polls);
    s->steals = rd(m.steals);
    s->stolen_tasks = rd(m.stolen_tasks);
    s->overflows = rd(m.overflows);
    s->parks = rd(m.parks);
    s->lifo_polls = rd(m.lifo_polls);
    s->inject_pops = rd(m.inject_pops);
    s->fork_exposed = rd(m.fork_exposed);
    s->budget_yields = rd(m.budget_yields);
    s->tier_changes = rd(m.tier_changes);
    s->handoffs = rd(m.handoffs);
    s->handoffs_refused = rd(m.handoffs_refused);
    for (uint32_t i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) s->hist[i] = rd(m.poll_hist[i]);
}

// ---- Prometheus text ----------------------------------------------------------

// Counts every byte it is given and stores those that fit before the NUL's
// place (cap - 1). One pass both measures and writes.
struct Out {
    char* buf;
    size_t cap;
    size_t len = 0;

    void put(const char* s, size_t n) {
        if (buf && len < cap) {
            size_t room = cap - 1 - len;  // cap >= 1 here: len < cap
            memcpy(buf + len, s, n < room ? n : room);
        }
        len += n;
    }
    void put(const char* s) { put(s, strlen(s)); }
    void put_u64(uint64_t v) {
        char tmp[20];  // UINT64_MAX has 20 digits
        size_t i = sizeof tmp;
        do {
            tmp[--i] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        put(tmp + i, sizeof tmp - i);
    }
    // ns as decimal seconds, trailing zeros dropped ("0.000000128", "3",
    // "1.5"): Prometheus parses values as Go floats, so any decimal is fine.
    void put_seconds(uint64_t ns) {
        put_u64(ns / 1000000000u);
        uint64_t frac = ns % 1000000000u;
        if (!frac) return;
        char tmp[10];
        tmp[0] = '.';
        for (int i = 9; i >= 1; i--) {
            tmp[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        size_t n = 10;
        while (tmp[n - 1] == '0') n--;
        put(tmp, n);
    }
};

// The label value `runtime`: the name's bytes with \ " and newline escaped
// (the format's three escapes), and any byte that does not start or belong to
// a valid UTF-8 sequence replaced by U+FFFD (label values must be UTF-8; a
// name cut at 11 bytes can end in half a character).
void put_label_value(Out& o, const char* s, size_t n) {
    static const char REPLACEMENT[] = "\xEF\xBF\xBD";
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (c == '\\') o.put("\\\\", 2);
            else if (c == '"') o.put("\\\"", 2);
            else if (c == '\n') o.put("\\n", 2);
            else o.put(s + i, 1);
            i++;
            continue;
        }
        // Length and the valid range of the second byte (RFC 3629 table:
        // no overlongs, no surrogates, nothing past U+10FFFF).
        size_t need = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        bool ok = need != 0 && i + need <= n;
        for (size_t k = 1; ok && k < need; k++) {
            unsigned char d = (unsigned char)s[i + k];
            ok = k == 1 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
        }
        if (ok) {
            o.put(s + i, need);
            i += need;
        } else {
            o.put(REPLACEMENT, 3);
            i++;  // resynchronise on the next byte
        }
    }
}

// le of bucket i (its upper bound, 2^(i+8) ns) in seconds, as Go's
// FormatFloat(x, 'g', -1, 64) writes it; the last bucket is +Inf.
const char* const LE[WEFT_POLL_HIST_BUCKETS] = {
    "2.56e-07",    "5.12e-07",    "1.024e-06",   "2.048e-06",   "4.096e-06",   "8.192e-06",
    "1.6384e-05",  "3.2768e-05",  "6.5536e-05",  "0.000131072", "0.000262144", "0.000524288",
    "0.001048576", "0.002097152", "0.004194304", "0.008388608", "0.016777216", "0.033554432",
    "0.067108864", "0.134217728", "0.268435456", "0.536870912", "1.073741824", "+Inf",
};

// What _sum counts a poll of bucket i as (weft_metrics.h): the middle of the
// bucket, the lower bound for the open last one.
uint64_t bucket_estimate_ns(uint32_t i) {
    if (i == 0) return 128;
    if (i == WEFT_POLL_HIST_BUCKETS - 1) return (uint64_t)1 << 30;
    return (uint64_t)192 << i;  // 1.5 * 2^(i+7)
}

struct CounterFamily {
    const char* name;  // without the weft_ prefix and _total suffix
    const char* help;
    std::atomic<uint64_t> WorkerMetrics::*field;
};

const CounterFamily COUNTERS[] = {
    {"polls", "Task polls.", &WorkerMetrics::polls},
    {"steals", "Successful steal operations (each moves one or more tasks).", &WorkerMetrics::steals},
    {"stolen_tasks", "Tasks moved from other workers' queues by steals.", &WorkerMetrics::stolen_tasks},
    {"overflows", "Local run-queue overflow batches moved to the inject queue.", &WorkerMetrics::overflows},
    {"parks", "Times the worker went to sleep for lack of work.", &WorkerMetrics::parks},
    {"lifo_polls", "Polls of a task taken straight from the LIFO slot.", &WorkerMetrics::lifo_polls},
    {"inject_pops", "Tasks taken from the runtime-wide inject queue.", &WorkerMetrics::inject_pops},
    {"fork_exposed", "Fork-join child tasks offered to thieves.", &WorkerMetrics::fork_exposed},
    {"budget_yields", "Awaits refused because the task's cooperative budget was spent.",
     &WorkerMetrics::budget_yields},
    {"tier_changes", "Pulse tier promotions and demotions after polls on this worker.",
     &WorkerMetrics::tier_changes},
    {"handoffs", "Times this worker was taken from a thread stuck in one poll.", &WorkerMetrics::handoffs},
    {"handoffs_refused", "Handoffs not done because the spare-thread bound was reached.",
     &WorkerMetrics::handoffs_refused},
};

void put_labels(Out& o, const Shared* sh, uint32_t worker, bool with_worker) {
    o.put("{runtime=\"");
    put_label_value(o, sh->name, strnlen(sh->name, sizeof sh->name));
    o.put("\"");
    if (with_worker) {
        o.put(",worker=\"");
        o.put_u64(worker);
        o.put("\"");
    }
}

void render(Out& o, const Shared* sh) {
    // The counters, one family at a time (the format wants a family's
    // samples together, after its HELP and TYPE).
    for (const CounterFamily& f : COUNTERS) {
        o.put("# HELP weft_");
        o.put(f.name);
        o.put("_total ");
        o.put(f.help);
        o.put("\n# TYPE weft_");
        o.put(f.name);
        o.put("_total counter\n");
        for (uint32_t w = 0; w < sh->nworkers; w++) {
            o.put("weft_");
            o.put(f.name);
            o.put("_total");
            put_labels(o, sh, w, true);
            o.put("} ");
            o.put_u64(rd(sh->workers[w].metrics.*f.field));
            o.put("\n");
        }
    }

    o.put("# HELP weft_remote_wakes_total Spawns and wakes pushed onto the runtime from outside its workers.\n"
          "# TYPE weft_remote_wakes_total counter\n"
          "weft_remote_wakes_total");
    put_labels(o, sh, 0, false);
    o.put("} ");
    o.put_u64(sh->inject.remote_pushes());
    o.put("\n");

    o.put("# HELP weft_poll_duration_seconds Poll durations of a sample: one poll in 64 per thread, "
          "chosen by count (recorded only with pulse on). "
          "_sum is an estimate: each poll counts as the middle of its bucket, "
          "those of 1.073741824 s or more as 1.073741824 s.\n"
          "# TYPE weft_poll_duration_seconds histogram\n");
    for (uint32_t w = 0; w < sh->nworkers; w++) {
        WorkerSnap s;
        snap_worker(sh->workers[w].metrics, &s);  // once: buckets, +Inf and _count agree
        uint64_t cum = 0, sum_ns = 0;
        for (uint32_t i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) {
            cum += s.hist[i];
            uint64_t part;
            // Saturate rather than wrap (it would take centuries of polls).
            if (__builtin_mul_overflow(s.hist[i], bucket_estimate_ns(i), &part) ||
                __builtin_add_overflow(sum_ns, part, &sum_ns))
                sum_ns = UINT64_MAX;
            o.put("weft_poll_duration_seconds_bucket");
            put_labels(o, sh, w, true);
            o.put(",le=\"");
            o.put(LE[i]);
            o.put("\"} ");
            o.put_u64(cum);
            o.put("\n");
        }
        o.put("weft_poll_duration_seconds_sum");
        put_labels(o, sh, w, true);
        o.put("} ");
        o.put_seconds(sum_ns);
        o.put("\nweft_poll_duration_seconds_count");
        put_labels(o, sh, w, true);
        o.put("} ");
        o.put_u64(cum);
        o.put("\n");
    }
}

}  // namespace

int weft_runtime_worker_metrics(const weft_runtime* rt, uint32_t worker, weft_worker_metrics* out) {
    Shared* sh = as_shared(rt);
    if (!sh || !out) return WEFT_EINVAL;
    if (out->size != sizeof(weft_worker_metrics)) return WEFT_EVERSION;
    if (worker >= sh->nworkers) return WEFT_EINVAL;
    const WorkerMetrics& m = sh->workers[worker].metrics;
    out->polls = rd(m.polls);
    out->steals = rd(m.steals);
    out->stolen_tasks = rd(m.stolen_tasks);
    out->overflows = rd(m.overflows);
    out->parks = rd(m.parks);
    out->lifo_polls = rd(m.lifo_polls);
    out->inject_pops = rd(m.inject_pops);
    out->fork_exposed = rd(m.fork_exposed);
    return 0;
}

int weft_runtime_worker_metrics_ex(const weft_runtime* rt, uint32_t worker, weft_worker_metrics_ex* out) {
    Shared* sh = as_shared(rt);
    if (!sh || !out) return WEFT_EINVAL;
    if (out->size < WORKER_METRICS_EX_V1_SIZE) return WEFT_EVERSION;
    if (worker >= sh->nworkers) return WEFT_EINVAL;
    WorkerSnap s;
    snap_worker(sh->workers[worker].metrics, &s);
    weft_worker_metrics_ex m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    m.worker = worker;
    m.polls = s.polls;
    m.steals = s.steals;
    m.stolen_tasks = s.stolen_tasks;
    m.overflows = s.overflows;
    m.parks = s.parks;
    m.lifo_polls = s.lifo_polls;
    m.inject_pops = s.inject_pops;
    m.fork_exposed = s.fork_exposed;
    m.budget_yields = s.budget_yields;
    m.tier_changes = s.tier_changes;
    m.handoffs = s.handoffs;
    m.handoffs_refused = s.handoffs_refused;
    memcpy(m.poll_hist, s.hist, sizeof m.poll_hist);
    copy_versioned(out, &m, sizeof m);
    return 0;
}

int weft_runtime_metrics(const weft_runtime* rt, weft_metrics* out) {
    Shared* sh = as_shared(rt);
    if (!sh || !out) return WEFT_EINVAL;
    if (out->size < METRICS_V1_SIZE) return WEFT_EVERSION;
    weft_metrics m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    m.workers = sh->nworkers;
    for (uint32_t w = 0; w < sh->nworkers; w++) {
        WorkerSnap s;
        snap_worker(sh->workers[w].metrics, &s);
        m.polls += s.polls;
        m.steals += s.steals;
        m.stolen_tasks += s.stolen_tasks;
        m.overflows += s.overflows;
        m.parks += s.parks;
        m.lifo_polls += s.lifo_polls;
        m.inject_pops += s.inject_pops;
        m.fork_exposed += s.fork_exposed;
        m.budget_yields += s.budget_yields;
        m.tier_changes += s.tier_changes;
        m.handoffs += s.handoffs;
        m.handoffs_refused += s.handoffs_refused;
        for (uint32_t i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) m.poll_hist[i] += s.hist[i];
    }
    m.remote_wakes = sh->inject.remote_pushes();
    copy_versioned(out, &m, sizeof m);
    return 0;
}

int weft_metrics_prometheus(const weft_runtime* rt, char* buf, size_t cap, size_t* len) {
    Shared* sh = as_shared(rt);
    if (!sh || !len || (!buf && cap)) return WEFT_EINVAL;
    Out o{buf, cap};
    render(o, sh);
    *len = o.len;
    if (o.len >= cap) {
        // Too small (the NUL needs one more byte): no half a text.
        if (cap) buf[0] = '\0';
        return WEFT_EAGAIN;
    }
    buf[o.len] = '\0';
    return 0;
}
