// tests/fuzz/fuzz_tpc.cpp — libFuzzer target: the thread-per-core executor's C
// ABI (weft_tpc.h) driven by a sequence of calls decoded from the input, with
// hostile arguments: bad config sizes, wake modes and flags; NULL, foreign
// and wrong-kind handles; join handles used in every state, twice, and after
// the executor's end; wakers cloned and woken after their task finished,
// after its slot was reused and after the executor was freed.
//
// Bounds per input: at most 64 ops, at most one executor owned by this
// thread and one shard set of one shard; nothing waits without a bound.
// Every return value is checked against what weft_tpc.h allows (abort() on
// a violation), and at the end every task's drop ran exactly once, every
// task spawned onto the executor ran or was dropped, and nothing leaked
// (LeakSanitizer).
#include <weft/weft.h>

#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define FUZZ_NAME "fuzz_tpc"
#include "fuzz_support.h"


namespace {

using fuzz::Reader;

// A C task that follows a script of up to 4 steps, one per poll.
enum Step : uint8_t { S_READY, S_WAKE_BY_REF, S_CLONE_WAKE, S_STORE_WAKER, S_FOREVER, S_FAIL, S_STEPS };

struct Task {
    uint8_t script[4];
    int polls = 0;
    std::atomic<int> drops{0};
    bool has_stored = false;
    weft_waker stored{};  // a clone kept past the task (woken or dropped later)
};

int task_poll(void* data, weft_context* cx, void* out) {
    Task* t = static_cast<Task*>(data);
    uint8_t st = t->script[t->polls < 4 ? t->polls : 3];
    t->polls++;
    switch (st) {
        case S_READY: *static_cast<int32_t*>(out) = 7; return WEFT_READY;
        case S_WAKE_BY_REF: weft_waker_wake_by_ref(&cx->waker); return WEFT_PENDING;
        case S_CLONE_WAKE: weft_waker_wake(weft_waker_clone(&cx->waker)); return WEFT_PENDING;
        case S_STORE_WAKER:
            if (!t->has_stored) {
                t->stored = weft_waker_clone(&cx->waker);
                t->has_stored = true;
            }
            return WEFT_PENDING;
        case S_FOREVER: return WEFT_PENDING;
        default: return -5;  // fails
    }
}
void task_drop(void* data) { static_cast<Task*>(data)->drops.fetch_add(1); }

struct Join {
    weft_join* j;
    Task* t;
    bool taken = false;
};

struct State {
    weft_tpc* ex = nullptr;
    weft_shards* set = nullptr;
    std::vector<Task*> tasks;
    std::vector<Join> joins;
};

weft_task_desc desc_for(Task* t) {
    weft_task_desc d;
    memset(&d, 0, sizeof d);
    d.size = sizeof d;
    d.poll = task_poll;
    d.drop = task_drop;
    d.data = t;
    d.output_size = sizeof(int32_t);
    return d;
}

Task* new_task(State& s, Reader& r) {
    Task* t = new Task;
    for (auto& st : t->script) st = r.u8() % S_STEPS;
    s.tasks.push_back(t);
    return t;
}

// A script block_on can wait for: no step that waits for a wake nobody sends,
// and a last step (repeated for ever) that ends the task.
void make_finite(Task* t) {
    for (auto& st : t->script)
        if (st == S_FOREVER || st == S_STORE_WAKER) st = S_FAIL;
    if (t->script[3] != S_READY && t->script[3] != S_FAIL) t->script[3] = S_READY;
}

void op_config(State& s, Reader& r) {
    weft_tpc_config cfg;
    weft_tpc_config_init(&cfg);
    uint8_t b = r.u8();
    switch (b % 6) {
        case 0: cfg.size = r.u8(); break;
        case 1: cfg.wake = 3 + r.u8(); break;
        case 2: cfg.flags = 2u << (r.u8() % 30); break;
        case 3: cfg.wake = r.u8() % 3; cfg.flags = r.u8() & WEFT_TPC_NO_SPIN; break;
        case 4: CHECK(weft_tpc_new(&cfg, nullptr) == WEFT_EINVAL); return;
        default: CHECK(weft_shards_new(&cfg, nullptr) == WEFT_EINVAL); return;
    }
    bool bad = cfg.size != sizeof cfg || cfg.wake > WEFT_TPC_WAKE_MSG_RING || (cfg.flags & ~WEFT_TPC_NO_SPIN);
    if ((b >> 4) & 1) {
        if (s.set) return;
        cfg.shards = 1;
        weft_shards* set = nullptr;
        int rc = weft_shards_new(&cfg, &set);
        if (bad) {
            CHECK(rc == (cfg.size != sizeof cfg ? WEFT_EVERSION : WEFT_EINVAL));
            CHECK(set == nullptr);
        } else {
            CHECK(rc == 0 && set && weft_shards_count(set) == 1);
            s.set = set;
        }
        return;
    }
    weft_tpc* ex = nullptr;
    int rc = weft_tpc_new(&cfg, &ex);
    if (bad) {
        CHECK(rc == (cfg.size != sizeof cfg ? WEFT_EVERSION : WEFT_EINVAL));
        CHECK(ex == nullptr);
    } else if (s.ex) {
        CHECK(rc == WEFT_EALREADY);  // one per thread
    } else {
        CHECK(rc == 0 && ex && weft_tpc_current() == ex);
        s.ex = ex;
    }
}

void op_spawn(State& s, Reader& r) {
    Task* t = new_task(s, r);
    weft_task_desc d = desc_for(t);
    uint8_t b = r.u8();
    bool want_join = b & 1;
    weft_join* j = nullptr;
    switch ((b >> 1) % 5) {
        case 0: {  // onto the own executor (local), or none
            int rc = weft_tpc_spawn(nullptr, &d, want_join ? &j : nullptr);
            if (s.ex) {
                CHECK(rc == 0);
                if (want_join) s.joins.push_back({j, t});
            } else {
                CHECK(rc == WEFT_EINVAL && t->drops.load() == 1);
            }
            break;
        }
        case 1: {  // onto the shard, from this (foreign) thread: detached only
            weft_tpc* sh = s.set ? weft_shards_get(s.set, 0) : nullptr;
            // Its polls run on the shard's thread: it must not store a waker
            // that op_wake reads on this one.
            for (auto& st : t->script)
                if (st == S_STORE_WAKER) st = S_FOREVER;
            if (!sh) {  // no set: a NULL executor means this thread's own
                int rc = weft_tpc_spawn(nullptr, &d, nullptr);
                CHECK(rc == (s.ex ? 0 : WEFT_EINVAL));
                if (!s.ex) CHECK(t->drops.load() == 1);
                break;
            }
            int rc = weft_tpc_spawn(sh, &d, want_join ? &j : nullptr);
            if (want_join) {
                CHECK(rc == WEFT_EINVAL && t->drops.load() == 1 && j == nullptr);
            } else {
                CHECK(rc == 0);
            }
            break;
        }
        case 2: {  // a bad descriptor
            d.size = sizeof d - 1 - (b >> 4);
            CHECK(weft_tpc_spawn(s.ex, &d, nullptr) == WEFT_EVERSION && t->drops.load() == 1);
            break;
        }
        case 3: {  // a foreign "executor": zeroed memory, not a weft_tpc
            alignas(64) unsigned char fake[256];
            memset(fake, b, sizeof fake);
            int rc = weft_tpc_spawn(reinterpret_cast<weft_tpc*>(fake), &d, nullptr);
            CHECK(rc == WEFT_EINVAL && t->drops.load() == 1);
            break;
        }
        default: {  // block_on on the own executor
            make_finite(t);
            int32_t out = 0;
            int rc = weft_tpc_block_on(s.ex, &d, &out);
            if (!s.ex) {
                CHECK(rc == WEFT_EINVAL && t->drops.load() == 1);
                break;
            }
            CHECK_IN(rc, 0, -5);
            if (rc == 0) CHECK(out == 7);
            CHECK(t->drops.load() == 1);
            break;
        }
    }
}

void op_join(State& s, Reader& r) {
    if (s.joins.empty()) return;
    uint8_t b = r.u8();
    Join& j = s.joins[(b >> 3) % s.joins.size()];
    switch (b & 7) {
        case 0: {
            weft_context cx{weft_waker_noop()};
            int rc = weft_join_poll(j.j, &cx);
            CHECK_IN(rc, WEFT_READY, WEFT_PENDING, WEFT_EINVAL);
            break;
        }
        case 1: CHECK_IN(weft_join_status(j.j), 0, -5, WEFT_ECANCELED, WEFT_EAGAIN, WEFT_EINVAL); break;
        case 2: {
            int32_t out = 0;
            int rc = weft_join_take(j.j, &out, sizeof out);
            CHECK_IN(rc, 0, -5, WEFT_ECANCELED, WEFT_EAGAIN, WEFT_EALREADY, WEFT_EINVAL);
            if (rc == 0) {
                CHECK(!j.taken && out == 7);
                j.taken = true;
            }
            break;
        }
        case 3: CHECK_IN(weft_join_abort(j.j), 0, WEFT_EALREADY, WEFT_EINVAL); break;
        case 4: CHECK_IN(weft_join_wait(j.j, 0), 0, WEFT_EDEADLK, WEFT_EINVAL); break;
        default: break;
    }
}

// Runs the own executor until a task that finishes at once is done: the
// queued tasks get polled on the way.
void op_run(State& s, Reader& r) {
    Task* t = new_task(s, r);
    t->script[0] = S_READY;
    weft_task_desc d = desc_for(t);
    int32_t out = 0;
    int rc = weft_tpc_block_on(s.ex, &d, &out);
    CHECK(rc == (s.ex ? 0 : WEFT_EINVAL));
    CHECK(t->drops.load() == 1);
}

// Wakes the stored wakers (their tasks may be gone, their slots reused).
void op_wake(State& s, Reader& r) {
    uint8_t b = r.u8();
    for (Task* t : s.tasks) {
        if (!t->has_stored) continue;
        if (b & 1) {
            weft_waker c = weft_waker_clone(&t->stored);
            weft_waker_wake(c);
        } else {
            weft_waker_wake_by_ref(&t->stored);
        }
    }
}

// Frees the executor or the set: every task still there is dropped once.
void op_free(State& s, Reader& r) {
    uint8_t b = r.u8();
    if ((b & 1) && s.set) {
        CHECK(weft_tpc_free(weft_shards_get(s.set, 0)) == WEFT_EINVAL);  // shards go with their set
        CHECK(weft_shards_free(s.set) == 0);
        s.set = nullptr;
        return;
    }
    if (!s.ex) return;
    CHECK(weft_tpc_free(s.ex) == 0);
    s.ex = nullptr;
    CHECK(weft_tpc_current() == nullptr);
}

void cleanup(State& s) {
    if (s.ex) CHECK(weft_tpc_free(s.ex) == 0);
    if (s.set) CHECK(weft_shards_free(s.set) == 0);
    // Every task spawned is dropped exactly once (completed tasks' drop runs
    // when they finish; refused ones at once; the rest at the free above).
    for (Task* t : s.tasks) CHECK(t->drops.load() == 1);
    for (Join& j : s.joins) {
        CHECK_IN(weft_join_status(j.j), 0, -5, WEFT_ECANCELED);
        weft_join_free(j.j);
    }
    // Wakers held past everything: waking them must be harmless.
    for (Task* t : s.tasks) {
        if (t->has_stored) {
            weft_waker_wake_by_ref(&t->stored);
            weft_waker_drop(t->stored);
        }
        delete t;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 512) return 0;
    Reader r{data, size};
    State s;
    for (int ops = 0; ops < 64 && !r.empty(); ops++) {
        uint8_t op = r.u8();
        switch (op % 7) {
            case 0: op_config(s, r); break;
            case 1: case 2: op_spawn(s, r); break;
            case 3: op_join(s, r); break;
            case 4: op_run(s, r); break;
            case 5: op_wake(s, r); break;
            default: op_free(s, r); break;
        }
    }
    cleanup(s);
    return 0;
}
