/* examples/hello.c — weft from plain C11: spawn tasks, wait for their output. */
#include <stdio.h>
#include <weft/weft.h>

/* A task that counts down, yielding to the scheduler between steps. */
struct countdown {
    int left;
};

static int countdown_poll(void* data, weft_context* cx, void* output) {
    struct countdown* c = data;
    if (c->left > 0) {
        c->left--;
        weft_waker_wake_by_ref(&cx->waker); /* poll me again soon */
        return WEFT_PENDING;
    }
    *(int*)output = 42;
    return WEFT_READY;
}

int main(void) {
    weft_runtime* rt;
    int r = weft_runtime_new(NULL, &rt);
    if (r != 0) {
        fprintf(stderr, "weft_runtime_new: %s\n", weft_strerror(r));
        return 1;
    }
    struct countdown c = {3};
    weft_task_desc desc = {sizeof desc, countdown_poll, NULL, &c, sizeof(int)};
    weft_join* join;
    if ((r = weft_spawn(rt, &desc, &join)) != 0) {
        fprintf(stderr, "weft_spawn: %s\n", weft_strerror(r));
        return 1;
    }
    int out = 0;
    weft_join_wait(join, -1);
    r = weft_join_take(join, &out, sizeof out);
    weft_join_free(join);
    printf("task finished: status=%d output=%d\n", r, out);
    weft_runtime_free(rt);
    return r == 0 && out == 42 ? 0 : 1;
}
