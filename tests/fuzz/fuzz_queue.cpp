// tests/fuzz/fuzz_queue.cpp — libFuzzer target: kernel::LocalQueue and
// kernel::TimerWheel driven single-threaded from the input and checked
// against simple models (a std::deque per queue; a set of live deadlines for
// the wheel). Any divergence calls abort() so the fuzzer reports it.
//
// Input: byte 0 picks the queue capacity (4 or 256) and the start index
// (including values just below 2^32 to cross the wrap); the rest is a stream
// of ops. Queue ops and wheel ops are interleaved; both structures live for
// one input.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <vector>

#include "../../kernel/local_queue.h"
#include "../../kernel/timer_wheel.h"

#define FUZZ_NAME "fuzz_queue"
#include "fuzz_support.h"

using weft::kernel::LocalQueue;
using weft::kernel::TaskHeader;
using weft::kernel::TimerWheel;
using weft::kernel::WheelEntry;

namespace {

using fuzz::Reader;

struct Sink {
    std::vector<TaskHeader*> got;
    void push_batch(TaskHeader* const* tasks, uint32_t n) {
        CHECK(n > 0);
        for (uint32_t i = 0; i < n; i++) got.push_back(tasks[i]);
    }
};

const uint32_t kStarts[] = {0u, 1u, UINT32_MAX - 2, UINT32_MAX - 1, UINT32_MAX, UINT32_MAX - 130, 0x80000000u - 3, 0x7fffff00u};

template <uint32_t CAP>
struct QueueHarness {
    LocalQueue<CAP> q[2];
    std::deque<TaskHeader*> model[2];
    std::vector<TaskHeader> tasks;
    size_t next_task = 0;
    Sink sink;

    explicit QueueHarness(uint32_t start, size_t max_tasks) : tasks(max_tasks) {
        q[0].reset_for_test(start);
        q[1].reset_for_test(start + 7 * (start & 1));
    }

    void check_len(int i) { CHECK(q[i].len() == model[i].size()); CHECK(q[i].is_empty() == model[i].empty()); }

    void push(int i) {
        if (next_task >= tasks.size()) return;
        TaskHeader* t = &tasks[next_task++];
        sink.got.clear();
        uint32_t moved = q[i].push_back(t, sink);
        if (model[i].size() < CAP) {
            CHECK(moved == 0);
            CHECK(sink.got.empty());
            model[i].push_back(t);
        } else {
            // Overflow: the older half plus the new task, in order.
            CHECK(moved == CAP / 2 + 1);
            CHECK(sink.got.size() == moved);
            for (uint32_t k = 0; k < CAP / 2; k++) {
                CHECK(sink.got[k] == model[i].front());
                model[i].pop_front();
            }
            CHECK(sink.got.back() == t);
            model[i].push_back(t);
            // The new task went to the sink, not the ring.
            model[i].pop_back();
        }
        check_len(i);
    }

    void pop(int i) {
        TaskHeader* t = q[i].pop();
        if (model[i].empty()) {
            CHECK(t == nullptr);
        } else {
            CHECK(t == model[i].front());
            model[i].pop_front();
        }
        check_len(i);
    }

    void steal(int src, int dst) {
        uint32_t stolen = 12345;
        TaskHeader* t = q[src].steal_into(q[dst], &stolen);
        size_t n_src = model[src].size();
        if (model[dst].size() > CAP / 2) {
            CHECK(t == nullptr);
            CHECK(stolen == 12345);  // returned before stealing
        } else {
            size_t n = n_src - n_src / 2;
            CHECK(stolen == n);
            if (n == 0) {
                CHECK(t == nullptr);
            } else {
                for (size_t k = 0; k + 1 < n; k++) {
                    model[dst].push_back(model[src].front());
                    model[src].pop_front();
                }
                CHECK(t == model[src].front());
                model[src].pop_front();
            }
        }
        check_len(src);
        check_len(dst);
    }

    void op(uint8_t b) {
        switch (b % 8) {
            case 0: case 1: case 2: push((b >> 3) & 1); break;
            case 3: {  // a burst of pushes, to reach overflow quickly
                int i = (b >> 3) & 1;
                for (uint32_t k = 0; k < (b >> 4) * (CAP / 8 + 1); k++) push(i);
                break;
            }
            case 4: case 5: pop((b >> 3) & 1); break;
            case 6: steal((b >> 3) & 1, 1 - ((b >> 3) & 1)); break;
            case 7: {  // a burst of pops
                int i = (b >> 3) & 1;
                for (uint32_t k = 0; k < (b >> 4) * 2 + 1; k++) pop(i);
                break;
            }
        }
    }
};

// ---- timer wheel --------------------------------------------------------------

struct Entry : WheelEntry {
    int state = 0;  // 0 idle, 1 in the wheel, 2 expired (idle again)
};

struct WheelHarness {
    TimerWheel w;
    Entry e[32];

    uint64_t delta(Reader& r) {
        uint8_t kind = r.u8();
        switch (kind % 8) {
            case 0: return 1 + (kind >> 3);
            case 1: return 1 + r.u8();
            case 2: return 1 + r.u64(2);
            case 3: {  // around level boundaries: 64^k +- a little
                unsigned k = 1 + (kind >> 3) % 6;
                uint64_t base = uint64_t(1) << (6 * k);
                return base + (int8_t)r.u8();
            }
            case 4: return 1 + r.u64(4);
            case 5: return 1 + r.u64(6);  // past the levels' 2^36 span
            case 6: return r.u64(8);
            default: return ~uint64_t(0);  // saturates below
        }
    }

    void check_counts() {
        uint64_t live = 0;
        uint64_t min_when = ~uint64_t(0);
        for (Entry& x : e)
            if (x.state == 1) {
                live++;
                min_when = std::min(min_when, x.when);
                CHECK(x.when > w.elapsed());  // otherwise it should have expired
            }
        CHECK(w.count() == live);
        CHECK(w.empty() == (live == 0));
        uint64_t nx = w.next_expiration();
        if (live == 0) {
            CHECK(nx == TimerWheel::NONE);
        } else {
            CHECK(nx <= min_when);     // never later than the earliest entry
            CHECK(nx > w.elapsed());   // and always ahead
        }
    }

    void insert(Entry& x, uint64_t d) {
        if (x.state == 1) return;
        uint64_t el = w.elapsed();
        if (el == ~uint64_t(0)) return;  // nothing can be after the end of time
        uint64_t when = d > ~uint64_t(0) - el ? ~uint64_t(0) : el + d;
        if (when <= el) when = el + 1;
        x.when = when;
        CHECK(!x.is_linked());
        uint64_t before = w.next_expiration();
        uint64_t slot = w.insert(&x);
        CHECK(slot <= when);
        CHECK(slot > el);
        CHECK(w.next_expiration() == std::min(before, slot));
        x.state = 1;
    }

    void remove(Entry& x) {
        if (x.state != 1) return;
        w.remove(&x);
        CHECK(!x.is_linked());
        x.state = 0;
    }

    void advance(uint64_t now) {
        uint64_t old = w.elapsed();
        TimerWheel::List out;
        w.advance(now, out);
        CHECK(w.elapsed() == std::max(old, now));
        bool got[32] = {};
        while (WheelEntry* we = out.pop_front()) {
            Entry* x = static_cast<Entry*>(we);
            size_t i = (size_t)(x - e);
            CHECK(i < 32);
            CHECK(!got[i]);                      // never twice
            got[i] = true;
            CHECK(x->state == 1);                // only live entries expire
            CHECK(x->when <= now);               // never early
            CHECK(x->level == TimerWheel::EXPIRED);
            CHECK(!x->is_linked());
            x->state = 2;
        }
        for (size_t i = 0; i < 32; i++)
            if (e[i].state == 1) CHECK(e[i].when > now);  // never late
        check_counts();
    }

    void op(uint8_t b, Reader& r) {
        Entry& x = e[(b >> 3) & 31];
        switch (b % 8) {
            case 0: case 1: case 2: insert(x, delta(r)); break;
            case 3: remove(x); break;
            case 4: case 5: {
                uint64_t el = w.elapsed();
                uint64_t d = delta(r);
                advance(d > ~uint64_t(0) - el ? ~uint64_t(0) : el + d);
                break;
            }
            case 6: {  // advance to exactly an entry's deadline, or to the next expiration
                uint64_t t = x.state == 1 ? x.when : w.next_expiration();
                if (t != TimerWheel::NONE) advance(t - (b & 0x80 ? 1 : 0));
                else advance(w.elapsed());
                break;
            }
            case 7:
                if (b & 0x80) {
                    advance(w.elapsed() / 2);  // a now in the past: nothing moves
                } else {
                    uint64_t el = w.elapsed();
                    uint64_t d = delta(r);
                    uint64_t now = d > ~uint64_t(0) - el ? ~uint64_t(0) : el + d;
                    bool was_empty = w.empty();
                    w.catch_up_if_empty(now);
                    CHECK(w.elapsed() == (was_empty ? std::max(el, now) : el));
                }
                break;
        }
        check_counts();
    }

    void finish() {
        for (Entry& x : e) remove(x);
        CHECK(w.empty());
    }
};

template <uint32_t CAP>
void run(uint32_t start, Reader& r) {
    auto qh = std::make_unique<QueueHarness<CAP>>(start, r.n * 17 + 8);
    auto wh = std::make_unique<WheelHarness>();
    while (!r.empty()) {
        uint8_t b = r.u8();
        if (b & 1) qh->op(b >> 1);
        else wh->op(b >> 1 | (r.u8() & 0x80), r);
    }
    // Drain: everything pushed comes out exactly once, in model order.
    for (int i = 0; i < 2; i++)
        while (!qh->model[i].empty()) qh->pop(i);
    CHECK(qh->q[0].pop() == nullptr && qh->q[1].pop() == nullptr);
    wh->finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    Reader r{data + 1, size - 1};
    uint8_t h = data[0];
    uint32_t start = kStarts[(h >> 1) % (sizeof kStarts / sizeof kStarts[0])];
    if (h & 1) run<256>(start, r);
    else run<4>(start, r);
    return 0;
}
