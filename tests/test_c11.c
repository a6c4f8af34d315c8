/* tests/test_c11.c — a strict C11 program (-std=c11 -Wall -Wextra -pedantic
 * -Werror) that uses nothing but weft.h.
 *
 * Why: weft.h is the only header a C or FFI user gets, and it must compile as
 * C11 without a warning (static inline helpers, struct layouts, macros) and
 * work end to end from C: create a runtime, spawn tasks with output, join
 * them, abort one that never finishes, sleep on a weft_timer, and free
 * everything. It also checks that drop functions ran exactly once, with plain
 * counters.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <weft/weft.h>

static int failures = 0;
#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                       \
        }                                                                     \
    } while (0)

struct square {
    int64_t in;
    int drops; /* written by the runtime (drop), read after the join */
};

/* Yields once, then writes in*in. */
static int square_poll(void* data, weft_context* cx, void* output) {
    struct square* s = (struct square*)data;
    int64_t v;
    if (s->in >= 0) {
        s->in = -1 - s->in; /* first poll: remember we yielded */
        weft_waker_wake_by_ref(&cx->waker);
        return WEFT_PENDING;
    }
    v = (-1 - s->in) * (-1 - s->in);
    memcpy(output, &v, sizeof v);
    return WEFT_READY;
}

static void square_drop(void* data) { ((struct square*)data)->drops++; }

/* Never finishes and keeps no waker: only an abort ends it. */
static int forever_poll(void* data, weft_context* cx, void* output) {
    (void)data;
    (void)cx;
    (void)output;
    return WEFT_PENDING;
}

/* A C sleep: the timer lives in the task's data, is armed on the first poll
 * and cancelled by the drop function (which runs in every outcome). */
struct nap {
    weft_timer timer;
    int armed;
    int drops;
    uint64_t deadline;
};

static int nap_poll(void* data, weft_context* cx, void* output) {
    struct nap* n = (struct nap*)data;
    int r;
    uint64_t woke;
    if (!n->armed) {
        if (weft_timer_init(&n->timer, NULL) != 0) return WEFT_EINVAL;
        if (weft_timer_sleep_for(&n->timer, 2000000) != 0) return WEFT_EINVAL; /* 2 ms */
        n->deadline = weft_timer_deadline(&n->timer);
        n->armed = 1;
    }
    r = weft_timer_poll(&n->timer, cx);
    if (r != WEFT_READY) return r; /* WEFT_PENDING, or an error that fails the task */
    woke = weft_now();
    memcpy(output, &woke, sizeof woke);
    return WEFT_READY;
}

static void nap_drop(void* data) {
    struct nap* n = (struct nap*)data;
    if (n->armed) weft_timer_cancel(&n->timer);
    n->drops++;
}

int main(void) {
    weft_runtime_config cfg;
    weft_runtime* rt = NULL;
    weft_join* joins[8];
    struct square sq[8];
    struct square never = {0, 0};
    weft_join* never_join = NULL;
    weft_task_desc d;
    int i, rc;

    CHECK(weft_version() == WEFT_VERSION_NUMBER);
    CHECK(strlen(weft_strerror(WEFT_ECLOSED)) > 0);

    weft_runtime_config_init(&cfg);
    cfg.workers = 2;
    cfg.name = "c11";
    rc = weft_runtime_new(&cfg, &rt);
    CHECK(rc == 0);
    if (rc != 0) return 1;
    CHECK(weft_runtime_workers(rt) == 2);

    for (i = 0; i < 8; i++) {
        sq[i].in = i + 1;
        sq[i].drops = 0;
        memset(&d, 0, sizeof d);
        d.size = sizeof d;
        d.poll = square_poll;
        d.drop = square_drop;
        d.data = &sq[i];
        d.output_size = sizeof(int64_t);
        CHECK(weft_spawn(rt, &d, &joins[i]) == 0);
    }

    memset(&d, 0, sizeof d);
    d.size = sizeof d;
    d.poll = forever_poll;
    d.drop = square_drop;
    d.data = &never;
    CHECK(weft_spawn(rt, &d, &never_join) == 0);

    for (i = 0; i < 8; i++) {
        int64_t out = 0;
        CHECK(weft_join_wait(joins[i], -1) == 0);
        CHECK(weft_join_status(joins[i]) == 0);
        CHECK(weft_join_take(joins[i], &out, sizeof out) == 0);
        CHECK(out == (int64_t)(i + 1) * (i + 1));
        CHECK(weft_join_take(joins[i], &out, sizeof out) == WEFT_EALREADY);
        CHECK(sq[i].drops == 1);
        weft_join_free(joins[i]);
    }

    CHECK(weft_join_status(never_join) == WEFT_EAGAIN);
    CHECK(weft_join_abort(never_join) == 0);
    CHECK(weft_join_wait(never_join, -1) == 0);
    CHECK(weft_join_status(never_join) == WEFT_ECANCELED);
    CHECK(never.drops == 1);
    weft_join_free(never_join);

    /* Timers from C: a sleeping task wakes after its deadline, never before. */
    {
        struct nap n;
        weft_join* j = NULL;
        uint64_t woke = 0;
        memset(&n, 0, sizeof n);
        memset(&d, 0, sizeof d);
        d.size = sizeof d;
        d.poll = nap_poll;
        d.drop = nap_drop;
        d.data = &n;
        d.output_size = sizeof(uint64_t);
        CHECK(weft_spawn(rt, &d, &j) == 0);
        CHECK(weft_join_wait(j, -1) == 0);
        CHECK(weft_join_status(j) == 0);
        CHECK(weft_join_take(j, &woke, sizeof woke) == 0);
        CHECK(n.armed == 1);
        CHECK(woke >= n.deadline);
        CHECK(n.drops == 1);
        weft_join_free(j);
        CHECK(weft_now() >= woke);
        CHECK(weft_runtime_now(rt) >= woke);
    }

    CHECK(weft_runtime_free(rt) == 0);
    if (failures) {
        fprintf(stderr, "test_c11: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_c11: ok\n");
    return 0;
}
