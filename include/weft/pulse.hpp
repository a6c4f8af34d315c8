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

#include <functional>

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
//
// The hooks take any callable. weft's core cannot catch exceptions, so the
// callable runs inside a try: whatever it throws is reported as a
// WEFT_FAILURE_HOOK failure (weft.h, "failures") and never reaches the
// scheduler. With hooks set, the PulseConfig must outlive the runtime (the
// runtime keeps a pointer to it), and the hooks must not be changed once the
// runtime is made; it cannot be copied or moved.
struct PulseConfig {
    weft_pulse_config c;
    PulseConfig() { weft_pulse_config_init(&c); }
    PulseConfig(const PulseConfig&) = delete;
    PulseConfig& operator=(const PulseConfig&) = delete;

    // Called once per promotion into WARN (weft_pulse_config.on_warn).
    void on_warn(std::function<void(uint64_t task_id, uint64_t poll_ns)> fn) {
        warn_ = std::move(fn);
        c.on_warn = warn_ ? &call_warn : nullptr;
        c.ctx = this;
    }
    // Every tier change and handoff (weft_pulse_config.on_event).
    void on_event(std::function<void(const weft_pulse_event&)> fn) {
        event_ = std::move(fn);
        c.on_event = event_ ? &call_event : nullptr;
        c.ctx = this;
    }

private:
    static void call_warn(void* ctx, uint64_t task_id, uint64_t poll_ns) noexcept {
        try {
            static_cast<PulseConfig*>(ctx)->warn_(task_id, poll_ns);
        } catch (...) {
            detail::report_current_exception(WEFT_FAILURE_HOOK, task_id);
        }
    }
    static void call_event(void* ctx, const weft_pulse_event* ev) noexcept {
        try {
            static_cast<PulseConfig*>(ctx)->event_(*ev);
        } catch (...) {
            detail::report_current_exception(WEFT_FAILURE_HOOK, ev->task_id);
        }
    }
    std::function<void(uint64_t, uint64_t)> warn_;
    std::function<void(const weft_pulse_event&)> event_;
};

}  // namespace weft

#endif
