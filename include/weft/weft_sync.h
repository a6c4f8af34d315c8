/* weft_sync.h — part of the C ABI; include <weft/weft.h>, which includes this.
 *
 * Synchronisation for tasks and plain threads: a fair semaphore, Mutex,
 * RwLock, Notify, oneshot and mpsc channels, Barrier.
 *
 * Waiting from a task: every operation that can wait has three forms.
 *   weft_X_try_...(...)      never waits: 0, WEFT_EAGAIN, or an error.
 *   weft_X_...(w, ...)       prepares the wait in a caller-allocated weft_wait
 *                            (no allocation); then weft_wait_poll(w, cx) from
 *                            the task's poll function returns WEFT_READY,
 *                            WEFT_PENDING (cx's waker will be woken), or a
 *                            negative error. Poll again after a wake.
 *   weft_X_..._blocking(...) blocks a plain thread. From a runtime worker
 *                            thread it returns WEFT_EDEADLK (it would stall
 *                            the runtime) and does nothing. Before it sleeps
 *                            in the kernel, a blocked thread may spin for up
 *                            to 5 us, only while such spins have recently
 *                            caught the wake-up on that thread, and never
 *                            with one usable CPU.
 * A prepared weft_wait must stay at the same address until it completes or
 * is dropped with weft_wait_drop(), which cancels it: a queued acquire leaves
 * the queue and returns any permits already given to it, a queued
 * notification it received is passed on, an unsent value stays the
 * caller's, a receive takes its task's waker back from the channel.
 * weft_wait_drop is safe at any time after preparing (also after completion:
 * then it does nothing, and also after the object was freed); call it
 * whenever you abandon a wait. Before its first weft_wait_poll, a prepared
 * weft_wait may be moved (copied bytewise; the old copy is then forgotten,
 * not dropped): nothing refers to its address yet.
 *
 * Freeing an object while waits on it are prepared or queued is allowed: a
 * prepared wait keeps the object's memory alive until it finishes or is
 * dropped, and sees what the free function says (fails with WEFT_ECLOSED,
 * or is released).
 *
 * Fairness: waiters are served first come, first served. A large acquire
 * (or a writer of an RwLock) is never starved by a stream of small ones.
 *
 * Values: channels carry fixed-size elements (elem_size bytes, set at
 * creation) copied in and out with memcpy. A send that fails (closed)
 * leaves the value the caller's: nothing is lost silently. elem_drop, if
 * given, is called on elements still queued when the channel is freed.
 *
 * Handles are checked: NULL, or an object of the wrong kind (a channel's
 * receiver passed as its sender...) or already freed (most of the time),
 * gives WEFT_EINVAL rather than a crash.
 * Threads: any function from any thread, except that a channel's receiver
 * belongs to one thread or task at a time.
 */
#ifndef WEFT_WEFT_SYNC_H
#define WEFT_WEFT_SYNC_H

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- waits ------------------------------------------------------------------ */
/* Storage for one pending operation (opaque; 128 bytes, 8-aligned). */
typedef struct weft_wait {
    uint64_t opaque_[16];
} weft_wait;

/* WEFT_READY, WEFT_PENDING, or a negative code (WEFT_ECLOSED...). Polling a
 * wait that already completed returns WEFT_EINVAL. */
WEFT_API int weft_wait_poll(weft_wait* w, weft_context* cx);
/* Cancels a pending wait (see above). NULL or completed: no-op. */
WEFT_API void weft_wait_drop(weft_wait* w);

/* ---- semaphore ------------------------------------------------------------- */
typedef struct weft_semaphore weft_semaphore;
#define WEFT_SEMAPHORE_MAX_PERMITS ((uint64_t)0x1fffffffffffffffull)

WEFT_API int weft_semaphore_new(uint64_t permits, weft_semaphore** out);
/* Closes (pending and prepared acquires fail with WEFT_ECLOSED) and frees.
 * NULL: no-op. */
WEFT_API void weft_semaphore_free(weft_semaphore* s);
/* 0, WEFT_EAGAIN (not enough permits, or others queued first), WEFT_ECLOSED,
 * WEFT_EINVAL (n > WEFT_SEMAPHORE_MAX_PERMITS: could never succeed). */
WEFT_API int weft_semaphore_try_acquire(weft_semaphore* s, uint64_t n);
WEFT_API int weft_semaphore_acquire(weft_wait* w, weft_semaphore* s, uint64_t n);
WEFT_API int weft_semaphore_acquire_blocking(weft_semaphore* s, uint64_t n);
/* Adds n permits (waking queued acquires in order). WEFT_EINVAL (and
 * nothing added) if the free permits plus those already assigned to queued
 * acquires would pass WEFT_SEMAPHORE_MAX_PERMITS. */
WEFT_API int weft_semaphore_release(weft_semaphore* s, uint64_t n);
WEFT_API int weft_semaphore_close(weft_semaphore* s);
WEFT_API int weft_semaphore_is_closed(const weft_semaphore* s);
/* Free permits right now (0 while anyone is queued). */
WEFT_API uint64_t weft_semaphore_available(const weft_semaphore* s);

/* ---- mutex (fair) -------------------------------------------------------------- */
typedef struct weft_mutex weft_mutex;
WEFT_API int weft_mutex_new(weft_mutex** out);
/* Frees; tasks still waiting to lock fail with WEFT_ECLOSED. */
WEFT_API void weft_mutex_free(weft_mutex* m);
/* 0 or WEFT_EAGAIN (held, or others queued first). */
WEFT_API int weft_mutex_try_lock(weft_mutex* m);
WEFT_API int weft_mutex_lock(weft_wait* w, weft_mutex* m);
WEFT_API int weft_mutex_lock_blocking(weft_mutex* m);
/* 0, or WEFT_EINVAL if the mutex is not locked (the unlock is refused: it
 * would let two holders in). */
WEFT_API int weft_mutex_unlock(weft_mutex* m);

/* ---- rwlock (fair: a queued writer holds back later readers) ------------------- */
typedef struct weft_rwlock weft_rwlock;
WEFT_API int weft_rwlock_new(weft_rwlock** out);
/* Frees; tasks still waiting fail with WEFT_ECLOSED. */
WEFT_API void weft_rwlock_free(weft_rwlock* l);
WEFT_API int weft_rwlock_try_read(weft_rwlock* l);
WEFT_API int weft_rwlock_try_write(weft_rwlock* l);
WEFT_API int weft_rwlock_read(weft_wait* w, weft_rwlock* l);
WEFT_API int weft_rwlock_write(weft_wait* w, weft_rwlock* l);
WEFT_API int weft_rwlock_read_blocking(weft_rwlock* l);
WEFT_API int weft_rwlock_write_blocking(weft_rwlock* l);
/* 0, or WEFT_EINVAL where the lock can tell it was not held that way (a
 * read_unlock with no reader and no writer, a write_unlock while only
 * readers or nobody hold it); the unlock is then refused. */
WEFT_API int weft_rwlock_read_unlock(weft_rwlock* l);
WEFT_API int weft_rwlock_write_unlock(weft_rwlock* l);

/* ---- notify ------------------------------------------------------------------ */
/* notify_one wakes the longest-waiting waiter, or stores one permit (at most
 * one) for the next wait if nobody waits. notify_waiters wakes every waiter
 * registered now and every wait prepared (weft_notify_notified) before the
 * call; it stores no permit. */
typedef struct weft_notify weft_notify;
WEFT_API int weft_notify_new(weft_notify** out);
/* Frees; waits still queued or prepared are released as by notify_waiters. */
WEFT_API void weft_notify_free(weft_notify* n);
WEFT_API int weft_notify_notify_one(weft_notify* n);
WEFT_API int weft_notify_notify_waiters(weft_notify* n);
WEFT_API int weft_notify_notified(weft_wait* w, weft_notify* n);
WEFT_API int weft_notify_wait_blocking(weft_notify* n);

/* ---- channels ------------------------------------------------------------------ */
typedef struct weft_channel_config {
    size_t size;          /* sizeof(weft_channel_config) */
    size_t elem_size;     /* bytes per element, 0 .. 1 MiB */
    uint64_t capacity;    /* mpsc: 0 = unbounded, else 1 .. 2^30, and the ring
                           * (capacity rounded up to a power of two, times
                           * elem_size + 8 rounded up to 8) at most 1 GiB;
                           * oneshot: ignored */
    /* Optional: releases an element still queued when the channel is freed. */
    void (*elem_drop)(void* elem, void* ctx);
    void* drop_ctx;
} weft_channel_config;
/* Fills *cfg: size set, the given element size and capacity, no elem_drop. */
WEFT_API void weft_channel_config_init(weft_channel_config* cfg, size_t elem_size, uint64_t capacity);

/* Multi-producer, single-consumer. Bounded: a send waits while `capacity`
 * elements are queued (fair: senders are served in order). Unbounded: a
 * send never waits. */
typedef struct weft_mpsc_tx weft_mpsc_tx;
typedef struct weft_mpsc_rx weft_mpsc_rx;
/* WEFT_EINVAL for a config out of range (see above), WEFT_ENOMEM. */
WEFT_API int weft_mpsc_new(const weft_channel_config* cfg, weft_mpsc_tx** tx, weft_mpsc_rx** rx);
/* A new sender handle (a handle of its own, freed on its own). */
WEFT_API int weft_mpsc_tx_clone(weft_mpsc_tx* tx, weft_mpsc_tx** out);
/* Frees a sender; when the last goes, the receiver sees WEFT_ECLOSED once
 * the queue is drained. */
WEFT_API void weft_mpsc_tx_free(weft_mpsc_tx* tx);
/* 0, WEFT_EAGAIN (full), WEFT_ECLOSED (receiver closed or gone), WEFT_ENOMEM.
 * On failure *value is untouched and still the caller's. */
WEFT_API int weft_mpsc_try_send(weft_mpsc_tx* tx, const void* value);
/* Prepares a send of *value (read when it completes: keep it valid). */
WEFT_API int weft_mpsc_send(weft_wait* w, weft_mpsc_tx* tx, const void* value);
WEFT_API int weft_mpsc_send_blocking(weft_mpsc_tx* tx, const void* value);
/* 0 (*out filled), WEFT_EAGAIN (empty), WEFT_ECLOSED (empty, and every
 * sender is gone or the receiver closed). */
WEFT_API int weft_mpsc_try_recv(weft_mpsc_rx* rx, void* out);
/* Prepares a receive into *out (elem_size bytes, valid until completion). */
WEFT_API int weft_mpsc_recv(weft_wait* w, weft_mpsc_rx* rx, void* out);
WEFT_API int weft_mpsc_recv_blocking(weft_mpsc_rx* rx, void* out);
/* Closes the receiving side: sends fail from now on; what is queued can
 * still be received. */
WEFT_API int weft_mpsc_rx_close(weft_mpsc_rx* rx);
/* Closes and frees the receiver; queued elements are dropped (elem_drop). */
WEFT_API void weft_mpsc_rx_free(weft_mpsc_rx* rx);

/* Oneshot: one value from one sender to one receiver. */
typedef struct weft_oneshot_tx weft_oneshot_tx;
typedef struct weft_oneshot_rx weft_oneshot_rx;
WEFT_API int weft_oneshot_new(const weft_channel_config* cfg, weft_oneshot_tx** tx, weft_oneshot_rx** rx);
/* 0, WEFT_ECLOSED (receiver gone: *value is still the caller's),
 * WEFT_EALREADY (sent before). */
WEFT_API int weft_oneshot_send(weft_oneshot_tx* tx, const void* value);
/* Frees the sender; unsent, the receiver gets WEFT_ECLOSED. */
WEFT_API void weft_oneshot_tx_free(weft_oneshot_tx* tx);
/* 0, WEFT_EAGAIN, WEFT_ECLOSED (sender gone without sending), WEFT_EALREADY. */
WEFT_API int weft_oneshot_try_recv(weft_oneshot_rx* rx, void* out);
WEFT_API int weft_oneshot_recv(weft_wait* w, weft_oneshot_rx* rx, void* out);
WEFT_API int weft_oneshot_recv_blocking(weft_oneshot_rx* rx, void* out);
/* Frees the receiver; a value sent and not received is dropped. */
WEFT_API void weft_oneshot_rx_free(weft_oneshot_rx* rx);

/* ---- barrier ------------------------------------------------------------------ */
/* n parties (0 counts as 1) wait until all have arrived; the last to arrive
 * is the leader. Reusable. A wait dropped before its round completes
 * withdraws its arrival. */
typedef struct weft_barrier weft_barrier;
WEFT_API int weft_barrier_new(uint64_t n, weft_barrier** out);
/* Frees; parties waiting (and waits prepared, when polled) fail with
 * WEFT_ECLOSED: their round can no longer complete. */
WEFT_API void weft_barrier_free(weft_barrier* b);
WEFT_API int weft_barrier_wait(weft_wait* w, weft_barrier* b);
/* After weft_wait_poll returned WEFT_READY for a barrier wait: 1 if this
 * party was the leader, else 0. */
WEFT_API int weft_barrier_wait_is_leader(const weft_wait* w);
/* 1 for the leader, 0 for the others, or WEFT_EDEADLK / WEFT_EINVAL /
 * WEFT_ECLOSED (freed meanwhile). */
WEFT_API int weft_barrier_wait_blocking(weft_barrier* b);

#ifdef __cplusplus
}
#endif

#endif
