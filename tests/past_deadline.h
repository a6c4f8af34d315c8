// tests/past_deadline.h — a sleep on a deadline that passed after weft's
// clock was last read, shared by test_timers and test_tpc_timers.
//
// The task reads weft's clock, busy-waits on CLOCK_MONOTONIC directly (not
// through weft, so nothing publishes a later time) until 3 ms later, then
// sleeps until 1.5 ms after its reading. The registration compares a
// deadline more than a tick past the time weft's clock has reached with that
// time only (kernel/timer.h registration_due), so it does not see that the
// deadline is due: the timer is registered and must still fire, and not
// early.
#ifndef WEFT_TESTS_PAST_DEADLINE_H
#define WEFT_TESTS_PAST_DEADLINE_H

#include <gtest/gtest.h>

#include <time.h>

#include <chrono>
#include <cstdint>

#include <weft/weft.hpp>

namespace weft_test {

inline uint64_t monotonic_ns_direct() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Completes once the timer fired; asserts that it was not early. Returns
// weft's time then.
inline weft::Task<uint64_t> sleep_until_a_deadline_passed_unseen() {
    uint64_t t = weft_now();
    while (monotonic_ns_direct() < t + 3000000) {
    }
    co_await weft::sleep_until(weft::clock::time_point(std::chrono::nanoseconds(t + 1500000)));
    uint64_t now = weft_now();
    EXPECT_GE(now, t + 1500000) << "fired early";
    co_return now;
}

}  // namespace weft_test

#endif
