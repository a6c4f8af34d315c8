// include/weft/pulse.hpp — the cooperative budget in C++ (weft_pulse.h has
// the whole story: tiers, handoff, the isolation pool).
//
//     for (auto& item : big_batch) {
//         process(item);
//         co_await weft::checkpoint();   // yields only when the budget is spent
//     }
//
// checkpoint() costs one budget unit and a few ns while budget is left; when
// it is spent the task goes to the back of its worker's queue and resumes
// there (with a fresh budget) after the others had their turn.
#ifndef WEFT_PULSE_HPP
#define WEFT_PULSE_HPP

#include "weft.hpp"

namespace weft {

// co_await weft::checkpoint(): a yield point that only yields when the
// task's budget for this poll is spent. Outside a task, or with pulse off,
// it never suspends.
struct checkpoint {
    uint32_t units = 1;
    bool await_ready() const noexcept { return weft_budget_consume(units) == 0; }
    void await_suspend(std::coroutine_handle<>) {
        weft_context* cx = detail::require_cx("co_await weft::checkpoint()");
        weft_waker_wake_by_ref(&cx->waker);
    }
    void await_resume() const noexcept {}
};

// For a loop in a coroutine: `for (...) { work(); WEFT_CHECKPOINT(); }`.
#define WEFT_CHECKPOINT() co_await ::weft::checkpoint{}

// A synchronous check for code that is not a coroutine: consumes n units and
// says whether the caller should yield now.
inline bool budget_spent(uint32_t n = 1) noexcept { return weft_budget_consume(n) != 0; }

// Pulse settings for weft::Runtime(cfg): cfg.pulse = &pulse.c.
struct PulseConfig {
    weft_pulse_config c;
    PulseConfig() { weft_pulse_config_init(&c); }
};

}  // namespace weft

#endif
