/* weft_time.h — time and timers in the C ABI. Include <weft/weft.h>, which
 * includes this.
 *
 * Time is nanoseconds of CLOCK_MONOTONIC (or of the clock a runtime was
 * given in weft_runtime_config), read through a guard that never returns a
 * time smaller than one it already returned: some virtual machines' clocks
 * step backwards, and a timer must neither fire early nor compute a negative
 * wait because of it. Timers have 1 ms resolution and deadlines are rounded
 * up, so a timer never fires before its deadline; it fires at most about a
 * millisecond after it (plus scheduling delay).
 *
 * A timer is memory the caller owns (weft_timer: in a task's state, on a
 * stack, in a struct); registering it allocates nothing. Use from C:
 *
 *     weft_timer t;                          // in the task's data
 *     weft_timer_init(&t, NULL);             // NULL: this worker's runtime
 *     weft_timer_sleep_for(&t, 5000000);     // 5 ms from now
 *     ...
 *     int poll(void* data, weft_context* cx, void* out) {
 *         if (weft_timer_poll(&t, cx) == WEFT_PENDING) return WEFT_PENDING;
 *         ...                                // the deadline has passed
 *     }
 *     void drop(void* data) { weft_timer_cancel(&t); }   // before freeing t
 *
 * Rules: a timer is used by one thread at a time (like any future). It must
 * be cancelled before its memory is freed or reused (weft_timer_cancel is
 * cheap and safe in every state). After its runtime is freed, only
 * weft_timer_cancel may be called on it. A timer in a task's own memory (a
 * raw task's state) must be cancelled by the task's drop functions at the
 * latest: the runtime does not keep the task alive for a timer that lies
 * inside it (a far deadline's registration takes no reference on the task,
 * so its cancel releases none).
 */
#ifndef WEFT_WEFT_TIME_H
#define WEFT_WEFT_TIME_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- clocks ------------------------------------------------------------- */
/* The current worker's runtime clock, or the process's guarded
 * CLOCK_MONOTONIC on any other thread, in nanoseconds. The guarded
 * CLOCK_MONOTONIC advances in steps of about a microsecond: a reading less
 * than 1 us after the last time the guard published returns that time, so
 * that threads reading the clock at once do not all write its shared word.
 * To time work shorter than a few microseconds, read clock_gettime directly.
 * An injected clock is returned as it reads (raised to the largest value
 * already returned). */
WEFT_API uint64_t weft_now(void);
/* rt's clock (its injected clock if it has one). 0 if rt is invalid. */
WEFT_API uint64_t weft_runtime_now(weft_runtime* rt);
/* Tells rt that its injected clock (weft_runtime_config.clock) has moved:
 * every worker looks at its timers now instead of at the end of the sleep
 * it computed from the old time. Tests that step a clock call this. */
WEFT_API int weft_runtime_clock_changed(weft_runtime* rt);

/* ---- timers ------------------------------------------------------------- */
typedef struct weft_timer {
    uint64_t _private[8]; /* 64 bytes; layout is weft's */
} weft_timer;

/* Prepares t for rt (NULL: the calling worker's runtime; WEFT_EINVAL on any
 * other thread). The timer has no deadline until weft_timer_reset.
 * A thread-per-core executor's timer (weft_tpc.h) is its thread's alone:
 * init, reset, sleep_for and cancel of one that waits are refused
 * (WEFT_EINVAL; cancel prints why) on any other thread, and it stays
 * registered. */
WEFT_API int weft_timer_init(weft_timer* t, weft_runtime* rt);
/* Sets the deadline to deadline_ns (absolute, in weft_runtime_now(rt)'s
 * clock), unregistering the timer if it was waiting. UINT64_MAX: never.
 * A deadline already passed is due at once (the next poll is WEFT_READY).
 * To save a clock read, the poll compares a deadline more than a tick (1 ms)
 * after the last time weft's clock returned with that time only: if nobody
 * has read weft's clock for over a tick, such a deadline may have passed
 * unseen; it is then registered and fires within a tick, never early. */
WEFT_API int weft_timer_reset(weft_timer* t, uint64_t deadline_ns);
/* The convenience sleep: deadline = now + duration_ns. Negative durations are
 * refused (WEFT_EINVAL); a duration that would overflow saturates to "never". */
WEFT_API int weft_timer_sleep_for(weft_timer* t, int64_t duration_ns);
/* WEFT_READY once the deadline has passed. WEFT_PENDING otherwise, after
 * arranging for cx's waker to be woken when it passes (a later poll with
 * another waker replaces it). WEFT_ECLOSED when the runtime shut down first;
 * WEFT_EINVAL for a zeroed (never initialised) timer or one without a
 * deadline; other uninitialised memory is refused on a best-effort check. */
WEFT_API int weft_timer_poll(weft_timer* t, weft_context* cx);
/* Unregisters the timer (its waker is dropped, nothing fires). Safe in every
 * state, also after the runtime was freed. The deadline is kept: a later
 * poll registers again. */
WEFT_API void weft_timer_cancel(weft_timer* t);
/* The deadline set by reset / sleep_for (0 if none). */
WEFT_API uint64_t weft_timer_deadline(const weft_timer* t);

#ifdef __cplusplus
}
#endif

#endif
