// weft/time.hpp — time in the C++ API: weft::clock, sleep, sleep_until,
// timeout and interval. Include <weft/weft.hpp>, which includes this.
//
//   co_await weft::sleep(5ms);
//   co_await weft::sleep_until(weft::clock::now() + 1s);
//   auto r = co_await weft::timeout(100ms, weft::spawn(work()));   // r.timed_out, *r
//   weft::Interval tick(10ms);
//   for (;;) { co_await tick.tick(); ... }
//
// Timers have 1 ms resolution and never fire early (weft_time.h). Durations
// are clamped, never undefined: a negative duration is zero (due at once), a
// duration too large for 64-bit nanoseconds means "never".
#ifndef WEFT_TIME_HPP
#define WEFT_TIME_HPP

#include <chrono>
#include <ratio>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>

#include "weft.hpp"

namespace weft {

// The runtime's clock: CLOCK_MONOTONIC (or the runtime's injected clock)
// behind weft's never-backwards guard. A steady std::chrono clock; its
// CLOCK_MONOTONIC readings advance in steps of about a microsecond (weft_now
// in weft_time.h), so time work shorter than that with std::chrono::steady_clock.
struct clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<clock, duration>;
    static constexpr bool is_steady = true;
    // Clamped to INT64_MAX (an injected clock may run past 2^63 ns).
    static time_point now() noexcept {
        std::uint64_t ns = weft_now();
        constexpr std::uint64_t MAX = static_cast<std::uint64_t>(std::numeric_limits<rep>::max());
        return time_point(duration(static_cast<rep>(ns > MAX ? MAX : ns)));
    }
};

namespace detail {

// d in nanoseconds, clamped to [0, INT64_MAX] (see the header comment).
template <class Rep, class Period>
std::int64_t clamp_ns(std::chrono::duration<Rep, Period> d) noexcept {
    using D = std::chrono::duration<Rep, Period>;
    if (!(d > D::zero())) return 0;  // also catches a NaN floating duration
    // Compare in the wider of the two types: a duration at or above the
    // largest representable nanosecond count saturates.
    using Common = std::chrono::duration<long double, std::nano>;
    if (Common(d) >= Common(std::chrono::nanoseconds::max())) return std::numeric_limits<std::int64_t>::max();
    // An integer period whose nanosecond factor is a fraction (1/3 s):
    // duration_cast multiplies before it divides, and the product overflows
    // long before the result would. The long double value is exact enough.
    using Factor = std::ratio_divide<Period, std::nano>;
    if constexpr (std::is_integral_v<Rep> && Factor::num != 1 && Factor::den != 1)
        return static_cast<std::int64_t>(Common(d).count());
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// a + b for a deadline, saturating at INT64_MAX ("never"; also the largest
// value a clock::time_point holds).
inline std::uint64_t add_saturating(std::uint64_t a, std::int64_t b) noexcept {
    constexpr std::uint64_t MAX = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t ub = static_cast<std::uint64_t>(b);
    return a >= MAX || ub > MAX - a ? MAX : a + ub;
}

}  // namespace detail

// An awaitable that completes at a deadline. Returned by sleep / sleep_until;
// co_await it once. Destroying it while it waits (the task is dropped or
// aborted) unregisters the timer. Movable until first awaited.
class Sleep {
public:
    explicit Sleep(std::uint64_t deadline_ns) noexcept : deadline_(deadline_ns) {}
    Sleep(Sleep&& o) noexcept : deadline_(o.deadline_) {
        // A registered timer lives in a wheel at its address: it cannot move.
        if (o.inited_) std::terminate();
    }
    Sleep(const Sleep&) = delete;
    Sleep& operator=(const Sleep&) = delete;
    ~Sleep() {
        if (inited_) weft_timer_cancel(&timer_);
    }

    clock::time_point deadline() const noexcept {
        return clock::time_point(clock::duration(static_cast<clock::rep>(deadline_)));
    }

    // The deadline is checked in await_suspend, by the timer's poll (which
    // reads the clock only for a deadline within a tick of the time weft's
    // clock last returned); a due sleep does not suspend there.
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        weft_context* cx = detail::require_cx("co_await weft::sleep");
        if (!inited_) {
            int r = weft_timer_init(&timer_, nullptr);
            if (r != 0) throw Error(r, "weft::sleep");
            inited_ = true;
        }
        weft_timer_reset(&timer_, deadline_);
        status_ = weft_timer_poll(&timer_, cx);
        if (status_ != WEFT_PENDING) return false;
        detail::PromiseBase::wait_for(h, &ready, this);
        return true;
    }
    void await_resume() const {
        if (status_ < 0) throw Error(status_, "weft::sleep");
    }

private:
    static bool ready(void* self, weft_context* cx) {
        Sleep* s = static_cast<Sleep*>(self);
        s->status_ = weft_timer_poll(&s->timer_, cx);
        return s->status_ != WEFT_PENDING;
    }

    std::uint64_t deadline_;
    int status_ = WEFT_READY;
    bool inited_ = false;
    weft_timer timer_{};
};

// Completes once `d` has passed (from now, in the runtime's clock).
template <class Rep, class Period>
Sleep sleep(std::chrono::duration<Rep, Period> d) {
    return Sleep(detail::add_saturating(weft_now(), detail::clamp_ns(d)));
}

// Completes at time point t of weft::clock (or of any steady clock whose
// epoch is CLOCK_MONOTONIC's, such as std::chrono::steady_clock on Linux,
// when the runtime uses the default clock).
template <class Duration>
Sleep sleep_until(std::chrono::time_point<clock, Duration> t) {
    std::int64_t ns = detail::clamp_ns(t.time_since_epoch());
    return Sleep(static_cast<std::uint64_t>(ns));
}

// What weft::timeout yields: whether the deadline passed first, and the
// operation's result when it did not (or when it finished anyway while being
// cancelled).
template <class T>
struct Timed {
    bool timed_out = false;
    std::optional<T> value;
    explicit operator bool() const noexcept { return value.has_value(); }
    T& operator*() { return *value; }
    T* operator->() { return &*value; }
};
template <>
struct Timed<void> {
    bool timed_out = false;
    bool completed = false;
    explicit operator bool() const noexcept { return completed; }
};

namespace detail {

template <class Aw>
using await_result_t = decltype(std::declval<Aw>().await_resume());

template <class A>
auto get_awaiter(A&& a) {
    if constexpr (requires { std::forward<A>(a).operator co_await(); })
        return std::forward<A>(a).operator co_await();
    else
        return std::forward<A>(a);
}

// Runs an awaitable as a task of its own, so that it can be cancelled
// (aborted) without the awaiting task's cooperation.
template <class R, class A>
Task<R> run_awaitable(A a) {
    co_return co_await std::move(a);
}

// Waits until the join handle j is finished; at deadline_ns, aborts its task
// first (then waits for the abort to take effect, so the task no longer
// touches anything the awaiter owns). Yields whether it aborted.
class RaceJoinDeadline {
public:
    RaceJoinDeadline(weft_join* j, std::uint64_t deadline_ns) noexcept : j_(j), deadline_(deadline_ns) {}
    RaceJoinDeadline(const RaceJoinDeadline&) = delete;
    ~RaceJoinDeadline() {
        if (inited_) weft_timer_cancel(&timer_);
    }
    bool await_ready() const noexcept { return weft_join_finished(j_) == 1; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        weft_context* cx = require_cx("co_await weft::timeout");
        int r = weft_timer_init(&timer_, nullptr);
        if (r != 0) throw Error(r, "weft::timeout");
        inited_ = true;
        weft_timer_reset(&timer_, deadline_);
        if (ready(this, cx)) return false;
        PromiseBase::wait_for(h, &ready, this);
        return true;
    }
    bool await_resume() const noexcept { return aborted_; }

private:
    static bool ready(void* self, weft_context* cx) {
        auto* s = static_cast<RaceJoinDeadline*>(self);
        if (weft_join_poll(s->j_, cx) != WEFT_PENDING) return true;
        if (!s->aborted_ && weft_timer_poll(&s->timer_, cx) != WEFT_PENDING) {
            s->aborted_ = true;
            weft_join_abort(s->j_);
            return weft_join_poll(s->j_, cx) != WEFT_PENDING;
        }
        return false;
    }
    weft_join* j_;
    std::uint64_t deadline_;
    bool inited_ = false;
    bool aborted_ = false;
    weft_timer timer_{};
};

template <class T>
Task<Timed<T>> timeout_join(JoinHandle<T> h, std::uint64_t deadline_ns) {
    bool aborted = co_await RaceJoinDeadline(h.native_handle(), deadline_ns);
    Timed<T> out;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(h);
            out.completed = true;
        } else {
            out.value.emplace(co_await std::move(h));
        }
    } catch (const Cancelled&) {
        if (!aborted) throw;  // cancelled by someone else: not a timeout
        out.timed_out = true;
    }
    co_return out;
}

}  // namespace detail

// Runs `op` (any awaitable: a Task, a JoinHandle, a sleep, a channel
// receive...) with a deadline d from now. Yields Timed<R>: timed_out is true
// when the deadline passed first, and then the operation has been cancelled
// and has finished being cancelled before this returns (a JoinHandle's task
// is aborted). An exception thrown by the operation propagates.
// Cost: unless op is a JoinHandle, it runs as a task of its own (one spawn).
template <class Rep, class Period, class A>
auto timeout(std::chrono::duration<Rep, Period> d, A&& op) {
    static_assert(!std::is_lvalue_reference_v<A>, "weft::timeout takes the operation by value: std::move it in");
    std::uint64_t deadline = detail::add_saturating(weft_now(), detail::clamp_ns(d));
    using Op = std::remove_cvref_t<A>;
    if constexpr (requires(Op& o) { o.native_handle(); o.detach(); }) {
        return detail::timeout_join(std::move(op), deadline);  // a JoinHandle<T>
    } else {
        using R = detail::await_result_t<decltype(detail::get_awaiter(std::declval<Op>()))>;
        using T = std::remove_cvref_t<R>;
        return detail::timeout_join<T>(spawn(detail::run_awaitable<T, Op>(std::move(op))), deadline);
    }
}

// Ticks every `period`. The first tick completes at once; tick k is due at
// start + k * period. When ticks are missed (the task was busy), Burst (the
// default) delivers them back to back until caught up, Delay restarts the
// schedule from the late tick, Skip drops the missed ones and keeps the
// original phase.
class Interval {
public:
    enum class Missed { Burst, Delay, Skip };

    template <class Rep, class Period>
    explicit Interval(std::chrono::duration<Rep, Period> period, Missed missed = Missed::Burst)
        : period_(detail::clamp_ns(period)), missed_(missed), next_(weft_now()) {
        if (period_ <= 0) throw Error(WEFT_EINVAL, "weft::Interval with a period <= 0");
    }

    struct TickAwaiter {
        Interval* iv;
        Sleep sleep;
        bool await_ready() { return sleep.await_ready(); }
        template <class P>
        bool await_suspend(std::coroutine_handle<P> h) {
            return sleep.await_suspend(h);
        }
        clock::time_point await_resume() {
            sleep.await_resume();
            return iv->advance();
        }
    };
    // Awaitable: completes at the next tick; yields the tick's scheduled time.
    TickAwaiter tick() { return TickAwaiter{this, Sleep(next_)}; }

    std::chrono::nanoseconds period() const noexcept { return std::chrono::nanoseconds(period_); }

private:
    clock::time_point advance() {
        std::uint64_t due = next_;
        std::uint64_t now = weft_now();
        switch (missed_) {
        case Missed::Burst: next_ = detail::add_saturating(next_, period_); break;
        case Missed::Delay: next_ = detail::add_saturating(now > due ? now : due, period_); break;
        case Missed::Skip: {
            next_ = detail::add_saturating(next_, period_);
            if (now >= next_) {
                // The first tick of the original phase after now.
                std::uint64_t behind = (now - next_) / static_cast<std::uint64_t>(period_) + 1;
                std::uint64_t max_steps = (static_cast<std::uint64_t>(INT64_MAX) - next_) / static_cast<std::uint64_t>(period_);
                next_ = behind > max_steps ? static_cast<std::uint64_t>(INT64_MAX) : next_ + behind * period_;
            }
            break;
        }
        }
        return clock::time_point(clock::duration(static_cast<clock::rep>(due)));
    }

    std::int64_t period_;
    Missed missed_;
    std::uint64_t next_;
};

}  // namespace weft

#endif
