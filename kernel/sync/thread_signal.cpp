// kernel/sync/thread_signal.cpp — the adaptive spin before a blocked plain
// thread's futex sleep (the policy is described in thread_signal.h).
#include "thread_signal.h"

namespace weft::kernel::sync {

namespace {

// Only plain (non-runtime) threads wait here: on a ThreadSignal, or in a
// join wait (scheduler.cpp join_wait), both through this_thread_policy().
// Each thread gets its policy on its first such wait (one sched_getaffinity
// call per thread); `policy` holds a placeholder until `ready`. Owner thread
// only: no atomics.
struct ThreadSpin {
    bool ready;
    SpinPolicy policy;
};
constinit __attribute__((tls_model("initial-exec"))) thread_local ThreadSpin t_spin = {false, SpinPolicy(2)};

// Signal checks between two clock reads. On x86-64 a pause is 10-140
// cycles depending on the CPU, so the clock (a vDSO read, ~20 ns) is read
// every 0.1-2 us and the limit is overshot by about that much at most; where
// the relax hint is a few cycles (aarch64's yield) or nothing (the generic
// and s390x headers), the clock is read more often, which only costs time
// that is being spun away anyway.
constexpr int CHECKS_PER_CLOCK_READ = 32;

}  // namespace

SpinPolicy& ThreadSignal::this_thread_policy() noexcept {
    ThreadSpin& t = t_spin;
    if (!t.ready) {
        t.policy = SpinPolicy(port::cpu_count());
        t.ready = true;
    }
    return t.policy;
}

// The acquire load pairs with the waker's release (ThreadSignal::signal's
// exchange, Parker::unpark's seq_cst exchange): seeing `value` publishes
// what the waker wrote before it.
bool spin_until_equal(const std::atomic<uint32_t>& word, uint32_t value, SpinPolicy& policy,
                      uint64_t limit_ns) noexcept {
    if (!policy.may_spin()) return false;
    uint64_t deadline = port::monotonic_ns() + limit_ns;
    do {
        for (int i = 0; i < CHECKS_PER_CLOCK_READ; i++) {
            if (word.load(std::memory_order_acquire) == value) {
                policy.spun(true);
                return true;
            }
            weft_arch_cpu_relax();
        }
    } while (port::monotonic_ns() < deadline);
    policy.spun(false);
    return false;
}

}  // namespace weft::kernel::sync
