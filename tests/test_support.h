// tests/test_support.h — helpers shared by the C++ tests: stress-count scaling
// for sanitizer builds, and a bounded spin-wait that never asserts on time.
//
// Sanitizer builds (WEFT_TEST_SANITIZED, set by tests/CMakeLists.txt) run the
// same code with smaller loop counts: ThreadSanitizer is 5-15x slower, and
// the races these loops hunt show up in far fewer iterations under it
// anyway. Normal builds run the full counts.
#ifndef WEFT_TESTS_TEST_SUPPORT_H
#define WEFT_TESTS_TEST_SUPPORT_H

#include <sched.h>

#include <chrono>

#include <cstdint>

namespace weft_test {

#if defined(WEFT_TEST_SANITIZED) || defined(WEFT_TEST_INSTRUMENTED)
inline constexpr bool kSanitized = true;
inline constexpr uint64_t kScaleDiv = 10;
#else
inline constexpr bool kSanitized = false;
inline constexpr uint64_t kScaleDiv = 1;
#endif

// A stress count: n in normal builds, n / 10 (at least 1) under sanitizers.
constexpr uint64_t scaled(uint64_t n) { return n / kScaleDiv ? n / kScaleDiv : 1; }

// Waits until pred() holds, giving the CPU away between checks (the suite
// runs on 2 cores with more threads than that); false once `seconds` pass
// without pred(), so a test can fail with a message instead of hanging until
// ctest's timeout. The deadline only turns a hang into a failure; nothing
// measures it, and no assertion ever depends on how long something took.
template <class Pred>
bool wait_for(Pred pred, int seconds = 60) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    uint32_t spins = 0;
    while (!pred()) {
        if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        if (std::chrono::steady_clock::now() > deadline) return pred();
        sched_yield();
    }
    return true;
}

// wait_for for long runs (10^7 wakes, thousands of round trips), whose total
// time depends on the machine (qemu, a sanitizer, a loaded CI host): the
// deadline restarts whenever progress() returns a new value, so only a run
// that stops moving for `stall_seconds` (a lost wake-up leaves it parked)
// fails here; a slow one that keeps moving is left to ctest's TIMEOUT.
template <class Pred, class Progress>
bool wait_while_progressing(Pred pred, Progress progress, int stall_seconds = 60) {
    auto last = progress();
    bool moved = false;
    auto done_or_moved = [&] {
        moved = false;
        if (pred()) return true;
        auto now = progress();
        moved = now != last;
        last = now;
        return moved;
    };
    while (wait_for(done_or_moved, stall_seconds)) {
        if (!moved) return true;  // pred() held
    }
    return pred();
}

// wait_for without a way out: ctest's per-test TIMEOUT turns a lost
// wake-up into a failure.
template <class Pred>
void spin_until(Pred pred) {
    while (!wait_for(pred, 3600)) {
    }
}

}  // namespace weft_test

#endif
