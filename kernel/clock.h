// kernel/clock.h — the runtime's notion of "now", in nanoseconds.
//
// The source is CLOCK_MONOTONIC read through the vDSO (port::monotonic_ns, no
// system call), or a function the embedder injects (weft_runtime_config's
// clock / clock_ctx: tests freeze it, step it, make it jump).
//
// Why the guard: CLOCK_MONOTONIC is specified never to go backwards, but on
// some virtual machines it does — a vCPU migrated between hosts whose TSCs are
// not synchronised, or a buggy clocksource, reports a time a few microseconds
// (sometimes much more) before one another thread already saw. Timer code
// that subtracts two readings would then get a huge unsigned difference, a
// deadline computed from the earlier reading would fire early, and the timer
// wheel's `elapsed` could step back over slots it already emptied. So every
// reading goes through Clock::now(), which never returns a value smaller than
// one it already returned, on any thread: time may stand still while the
// source catches up, it never runs backwards. An injected clock goes through
// the same guard (the tests make it jump backwards on purpose).
//
// Cost: one relaxed load, and a CAS only when the reading is at least
// PUBLISH_STEP_NS newer than the last one published. Closer readings return
// the published time unchanged: CLOCK_MONOTONIC's now() advances in steps of
// at least a microsecond (under contention a step can be shorter: observe
// publishes whatever it read). Why: publishing every nanosecond-newer reading
// made every read a write to one shared word, so threads reading the clock at
// once took its cache line from each other on every read (weft-micro
// clock/guarded_now, 2 threads: 59.7 ns per read against 23.1 on one thread;
// the timers workload, 2 clock reads per task: 6% of its time). An injected
// clock is exact (the tests step it by single nanoseconds). Clocks are read
// at scheduler maintenance, before parking and when user code asks — never
// per poll; a timer registration usually reads nothing (reached(), and
// timer.h registration_due).
#ifndef WEFT_KERNEL_CLOCK_H
#define WEFT_KERNEL_CLOCK_H

#include <atomic>
#include <stdint.h>

#include "../arch/arch.h"
#include "../port/port.h"

namespace weft::kernel {

using ClockFn = uint64_t (*)(void* ctx);

class Clock {
public:
    // fn == nullptr: CLOCK_MONOTONIC.
    void init(ClockFn fn, void* ctx) {
        fn_ = fn;
        ctx_ = ctx;
        last_.store(0, std::memory_order_relaxed);
        last_.store(now(), std::memory_order_relaxed);
    }

    bool injected() const { return fn_ != nullptr; }

    // Readings of CLOCK_MONOTONIC closer than this to the published time
    // return the published time (above).
    static constexpr uint64_t PUBLISH_STEP_NS = 1000;

    // The source's reading, raised to the largest value already returned;
    // for CLOCK_MONOTONIC, held at the published time until the source is
    // PUBLISH_STEP_NS past it. Every value returned was published first, so
    // no thread can later get a smaller one.
    uint64_t now() {
        if (fn_) return observe(fn_(ctx_));
        uint64_t r = port::monotonic_ns();
        // relaxed: as in observe. r < prev wraps to a huge difference and
        // goes to observe, which holds time at prev.
        uint64_t prev = last_.load(std::memory_order_relaxed);
        if (r - prev < PUBLISH_STEP_NS) return prev;
        return observe(r);
    }

    // The source's reading without the guard, for callers that only compare
    // it with a deadline and give it back to nobody (is a wheel due? how long
    // to sleep?): no write to the shared guard word, so workers reading the
    // clock at once do not bounce its line.
    // Whoever acts on a reading that passed a deadline must observe() it
    // first, so that no thread later sees an earlier time.
    uint64_t raw() const { return fn_ ? fn_(ctx_) : port::monotonic_ns(); }

    // A time the clock has certainly reached, for a check that may only err
    // late (a timer registration: is the deadline already due?). For
    // CLOCK_MONOTONIC it reads nothing: the published time, which trails the
    // source by however long nobody has read the clock (a busy runtime reads
    // it all the time; `timers`: one vDSO read of three per task saved).
    // An injected source is read (now()): tests move it by hand and expect
    // each move to count at once. Published already.
    uint64_t reached() {
        if (fn_) return now();
        // relaxed: as in observe.
        return last_.load(std::memory_order_relaxed);
    }

    // Publishes a raw reading to the guard (exactly: a caller that saw it
    // pass a deadline needs every later now() to be past it too); returns
    // the guarded time, max(raw, the published time).
    uint64_t observe(uint64_t raw) {
        // relaxed: last_ carries no other data; only its own modification
        // order matters, and an RMW always reads the latest value in it.
        uint64_t prev = last_.load(std::memory_order_relaxed);
        while (raw > prev) {
            if (last_.compare_exchange_weak(prev, raw, std::memory_order_relaxed)) return raw;
        }
        return prev;  // the source went backwards (or stood still): hold time
    }

private:
    ClockFn fn_ = nullptr;
    void* ctx_ = nullptr;
    // Its own line: a publication by one thread must not take the line that
    // holds fn_ (read by every now()) from the others.
    alignas(WEFT_CACHE_LINE) std::atomic<uint64_t> last_{0};
};

// The process-wide guarded CLOCK_MONOTONIC (weft_now() off any runtime).
Clock& process_clock();

}  // namespace weft::kernel

#endif
