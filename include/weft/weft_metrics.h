/* weft_metrics.h — metrics in the C ABI. Include <weft/weft.h>, which
 * includes this.
 *
 * Every worker keeps its own counters (polls, steals, parks, budget-forced
 * yields, ...) and a histogram of how long its polls took. Only the thread
 * that runs the worker writes them; readers take a snapshot without stopping
 * or slowing the runtime. Each counter is exact for its worker and never goes
 * down, but a snapshot is not atomic as a whole: two counters (or two
 * workers) may be read a few polls apart. Counters start at 0 when the
 * runtime starts and are never reset (compute rates from differences).
 *
 * Three ways to read them:
 *
 *     weft_metrics m;                        // the whole runtime, summed
 *     memset(&m, 0, sizeof m);
 *     m.size = sizeof m;
 *     weft_runtime_metrics(rt, &m);
 *
 *     weft_worker_metrics_ex w;              // one worker
 *     memset(&w, 0, sizeof w);
 *     w.size = sizeof w;
 *     weft_runtime_worker_metrics_ex(rt, 0, &w);
 *
 *     char buf[16384]; size_t len;           // Prometheus text, per worker
 *     if (weft_metrics_prometheus(rt, buf, sizeof buf, &len) == WEFT_EAGAIN)
 *         ...                                // grow to len + 1 (+ headroom)
 *
 * Versioning: weft_metrics and weft_worker_metrics_ex may grow new fields at
 * their end. weft accepts any size at least that of the first version, fills
 * the fields it knows that fit in the caller's size, leaves the rest of the
 * caller's struct untouched (zero it first: counters this library does not
 * have then read 0) and sets `size` to the number of bytes it filled.
 * A smaller size is refused with WEFT_EVERSION.
 *
 * The poll-time histogram is recorded only when pulse is on (weft_pulse.h;
 * the default). With WEFT_PULSE_OFF, or a build with the hooks compiled out,
 * it stays all zero while `polls` still counts. A poll whose worker was
 * handed to a spare thread while it ran is counted in `polls` but not in
 * the histogram.
 */
#ifndef WEFT_WEFT_METRICS_H
#define WEFT_WEFT_METRICS_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- poll-time histogram ------------------------------------------------ */
/* A sample: each runtime thread times one poll in WEFT_POLL_HIST_SAMPLE_EVERY
 * (its 1st, 65th, 129th, ...; chosen by count, so the sample is unbiased) and
 * counts it here. Timing every poll would cost two cycle-counter reads per
 * poll, several percent of a small task's run. Multiply by
 * WEFT_POLL_HIST_SAMPLE_EVERY to estimate all polls.
 * Buckets of poll durations, powers of two in nanoseconds:
 *   [0]       0 ns      .. 256 ns   (< 2^8)
 *   [i]       2^(i+7)   .. 2^(i+8)  (lower bound included, upper excluded)
 *   [23]      2^30 ns (about 1.07 s) and longer
 * weft_poll_hist_lower_ns / weft_poll_hist_upper_ns give the bounds. */
#define WEFT_POLL_HIST_BUCKETS 24
#define WEFT_POLL_HIST_SAMPLE_EVERY 64

/* The smallest duration (ns) bucket i holds; 0 for i >= the bucket count. */
static inline uint64_t weft_poll_hist_lower_ns(uint32_t i) {
    if (i == 0 || i >= WEFT_POLL_HIST_BUCKETS) return 0;
    return (uint64_t)128 << i;
}
/* The first duration (ns) past bucket i; UINT64_MAX for the last bucket
 * (no upper bound) and for i >= the bucket count. */
static inline uint64_t weft_poll_hist_upper_ns(uint32_t i) {
    if (i >= WEFT_POLL_HIST_BUCKETS - 1) return UINT64_MAX;
    return (uint64_t)256 << i;
}

/* ---- snapshots ------------------------------------------------------------ */
/* The whole runtime: every worker's counters and histogram summed. */
typedef struct weft_metrics {
    size_t size;               /* set by the caller (see Versioning above) */
    uint32_t workers;          /* worker threads summed over */
    uint32_t _reserved;        /* 0 */
    uint64_t polls;            /* task polls */
    uint64_t steals;           /* successful steal operations */
    uint64_t stolen_tasks;     /* tasks moved by them */
    uint64_t overflows;        /* local-queue overflow batches to the inject queue */
    uint64_t parks;            /* times a worker went to sleep */
    uint64_t lifo_polls;       /* polls straight from the LIFO slot */
    uint64_t inject_pops;      /* tasks taken from the inject queue */
    uint64_t fork_exposed;     /* fork-stack tasks offered to thieves */
    uint64_t budget_yields;    /* awaits refused because the task's budget was spent */
    uint64_t tier_changes;     /* pulse tier promotions + demotions */
    uint64_t handoffs;         /* times a worker was taken from a stuck thread */
    uint64_t handoffs_refused; /* ... would have been, but no spare thread was allowed */
    uint64_t remote_wakes;     /* spawns and wakes pushed from outside the workers */
    uint64_t poll_hist[WEFT_POLL_HIST_BUCKETS]; /* polls per duration bucket */
} weft_metrics;

/* One worker (weft_runtime_worker_metrics in weft.h is the first, fixed-size
 * version of this; it stays as it is). */
typedef struct weft_worker_metrics_ex {
    size_t size;               /* set by the caller (see Versioning above) */
    uint32_t worker;           /* set by weft: the worker index asked for */
    uint32_t _reserved;        /* 0 */
    uint64_t polls;            /* the fields mean what they mean in weft_metrics */
    uint64_t steals;
    uint64_t stolen_tasks;
    uint64_t overflows;
    uint64_t parks;
    uint64_t lifo_polls;
    uint64_t inject_pops;
    uint64_t fork_exposed;
    uint64_t budget_yields;
    uint64_t tier_changes;
    uint64_t handoffs;
    uint64_t handoffs_refused;
    uint64_t poll_hist[WEFT_POLL_HIST_BUCKETS];
} weft_worker_metrics_ex;

/* Fills *out with the runtime's totals. 0; WEFT_EINVAL when rt is NULL or
 * not a live runtime, or out is NULL; WEFT_EVERSION when out->size is
 * smaller than the first version of weft_metrics. */
WEFT_API int weft_runtime_metrics(const weft_runtime* rt, weft_metrics* out);
/* Fills *out for worker index `worker` (0 .. weft_runtime_workers - 1).
 * Codes as weft_runtime_metrics; WEFT_EINVAL also for a worker out of range. */
WEFT_API int weft_runtime_worker_metrics_ex(const weft_runtime* rt, uint32_t worker,
                                            weft_worker_metrics_ex* out);

/* ---- Prometheus text ------------------------------------------------------ */
/* Renders the current values in the Prometheus text exposition format 0.0.4
 * (Content-Type: text/plain; version=0.0.4), ready to serve on /metrics:
 *
 *   weft_polls_total, weft_steals_total, weft_stolen_tasks_total,
 *   weft_overflows_total, weft_parks_total, weft_lifo_polls_total,
 *   weft_inject_pops_total, weft_fork_exposed_total, weft_budget_yields_total,
 *   weft_tier_changes_total, weft_handoffs_total, weft_handoffs_refused_total
 *       counters, one sample per worker: {runtime="<name>",worker="<i>"}
 *   weft_remote_wakes_total
 *       counter, one sample for the runtime: {runtime="<name>"}
 *   weft_poll_duration_seconds
 *       histogram per worker: cumulative _bucket lines with le = the upper
 *       bounds above in seconds (2.56e-07 .. 1.073741824, then +Inf), _sum
 *       and _count. _count is the sum of the buckets (equal to the +Inf
 *       bucket). _sum is an ESTIMATE, since weft counts polls per bucket and
 *       does not add up durations: every poll counts as the middle of its
 *       bucket (128 ns for [0], 1.5 * 2^(i+7) ns for [i]), and those of the
 *       last, open bucket as 2^30 ns. Use the buckets for quantiles; _sum
 *       / _count is good to about a factor of 1.5.
 *       The buckets are [lower, upper) while Prometheus's le is <=: a poll of
 *       exactly 256 ns is counted under le="5.12e-07", not "2.56e-07".
 *
 * <name> is the runtime's name (weft_runtime_config.name, as the runtime
 * keeps it: at most 11 bytes), escaped as the format requires (\\ \" \n);
 * bytes that are not valid UTF-8 are replaced by U+FFFD. Two runtimes with
 * the same name give the same labels: name them apart.
 *
 * Writes the text and a terminating NUL into buf and sets *len to the length
 * of the text (without the NUL). Returns 0; WEFT_EINVAL when rt is not a live
 * runtime, len is NULL, or buf is NULL with cap > 0; WEFT_EAGAIN when cap is
 * too small for the text and its NUL: then *len is the length the text has
 * (buf holds "" when cap > 0) — call again with a buffer of *len + 1 bytes.
 * The counters keep moving between the calls and may gain digits, so give
 * some headroom (e.g. *len + 1 + 256) or loop until it fits. buf = NULL with
 * cap = 0 asks for the length only (WEFT_EAGAIN, *len set). */
WEFT_API int weft_metrics_prometheus(const weft_runtime* rt, char* buf, size_t cap, size_t* len);

#ifdef __cplusplus
}
#endif

#endif
