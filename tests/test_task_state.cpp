// tests/test_task_state.cpp — kernel::TaskState (kernel/task_state.h), the
// packed state word every task's safety rests on.
//
// Why: a wrong bit in one transition is a task polled twice at once, a lost
// wake-up, a leak or a use-after-free, and such bugs hide from end-to-end
// tests for months. So this file checks, against a reference model written
// here from the protocol described in task_state.h (not from its code):
//   1. every transition, in every reachable combination of the six flags and
//      several reference counts: the outcome the caller is told and the exact
//      bits left behind (a transition that declines leaves the word as is);
//   2. every transition's CAS-retry path, deterministically: the word sits on
//      a page made read-only, so the transition's first write traps; the trap
//      handler changes the word the way a concurrent thread could (a wake, an
//      abort, a clone, a completion...) and lets the write retry. The outcome
//      must then be the model's for the *changed* word — what the transition
//      reports must come from the attempt that counted, never a stale one;
//   3. whole lifecycles, and real threads racing the same transitions
//      (exactly one Submit per idle period, refs exact at the end).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "../kernel/task_state.h"
#include "test_support.h"

using weft::kernel::Snapshot;
using weft::kernel::TaskState;
using weft::kernel::ToIdle;
using weft::kernel::ToNotified;
using weft::kernel::ToRunning;

namespace {

// ---- the reference model ----------------------------------------------------
// The layout is the documented one (task_state.h header comment); spelled out
// here so that a change to it is a deliberate, visible test change.
constexpr uint64_t kRunning = 1u << 0, kComplete = 1u << 1, kNotified = 1u << 2, kJoinInterest = 1u << 3,
                   kJoinWaker = 1u << 4, kCancelled = 1u << 5;
constexpr unsigned kRefShift = 6;
static_assert(Snapshot::RUNNING == kRunning && Snapshot::COMPLETE == kComplete && Snapshot::NOTIFIED == kNotified &&
                  Snapshot::JOIN_INTEREST == kJoinInterest && Snapshot::JOIN_WAKER == kJoinWaker &&
                  Snapshot::CANCELLED == kCancelled && Snapshot::REF_SHIFT == kRefShift,
              "the documented layout of the state word");

struct Model {
    bool running = false, complete = false, notified = false, join_interest = false, join_waker = false,
         cancelled = false;
    uint64_t refs = 0;

    static Model from(uint64_t bits) {
        Model m;
        m.running = bits & kRunning;
        m.complete = bits & kComplete;
        m.notified = bits & kNotified;
        m.join_interest = bits & kJoinInterest;
        m.join_waker = bits & kJoinWaker;
        m.cancelled = bits & kCancelled;
        m.refs = bits >> kRefShift;
        return m;
    }
    uint64_t bits() const {
        return (running ? kRunning : 0) | (complete ? kComplete : 0) | (notified ? kNotified : 0) |
               (join_interest ? kJoinInterest : 0) | (join_waker ? kJoinWaker : 0) | (cancelled ? kCancelled : 0) |
               (refs << kRefShift);
    }
    bool idle() const { return !running && !complete; }
};

std::string describe(uint64_t bits) {
    Model m = Model::from(bits);
    std::string s;
    if (m.running) s += "RUNNING|";
    if (m.complete) s += "COMPLETE|";
    if (m.notified) s += "NOTIFIED|";
    if (m.join_interest) s += "JOIN_INTEREST|";
    if (m.join_waker) s += "JOIN_WAKER|";
    if (m.cancelled) s += "CANCELLED|";
    return s + "refs=" + std::to_string(m.refs);
}

// States the protocol can reach. RUNNING and COMPLETE are exclusive (the
// lifecycle is idle -> running -> complete), and an idle CANCELLED task is
// always NOTIFIED (abort queues it; shutdown takes RUNNING instead).
bool reachable(const Model& m) {
    if (m.running && m.complete) return false;
    if (m.idle() && m.cancelled && !m.notified) return false;
    return true;
}

// Every flag combination that is reachable, at several reference counts
// (including one far from the flag bits, to catch carries into them).
std::vector<uint64_t> all_states() {
    std::vector<uint64_t> out;
    const uint64_t refs[] = {1, 2, 3, 4, 5, 64, (uint64_t)1 << 40};
    for (uint64_t flags = 0; flags < (1u << kRefShift); flags++) {
        for (uint64_t r : refs) {
            Model m = Model::from(flags | (r << kRefShift));
            if (reachable(m)) out.push_back(m.bits());
        }
    }
    return out;
}

// One transition: its precondition in the protocol (who may call it, in
// which states), the model of what it does, and the real call. Both return
// the outcome as an int; the model also updates the Model in place.
struct Transition {
    std::string name;
    std::function<bool(const Model&)> pre;
    std::function<int(Model&)> model;
    std::function<int(TaskState&)> real;
};

// Snapshot-returning transitions must return exactly the word they left.
constexpr int kBadSnapshot = -1000;

std::vector<Transition> transitions() {
    std::vector<Transition> v;

    // Whoever popped a queue entry: NOTIFIED, and the entry holds a ref.
    v.push_back({"transition_to_running", [](const Model& m) { return m.notified && m.refs >= 1; },
                 [](Model& m) {
                     if (!m.idle()) {  // someone else owns the future: drop the entry's ref
                         m.refs--;
                         return (int)(m.refs == 0 ? ToRunning::FailedDealloc : ToRunning::Failed);
                     }
                     m.running = true;
                     m.notified = false;
                     return (int)(m.cancelled ? ToRunning::Cancelled : ToRunning::Success);
                 },
                 [](TaskState& st) { return (int)st.transition_to_running(); }});

    // The runner after a Pending poll: RUNNING, holding the runner's ref.
    v.push_back({"transition_to_idle", [](const Model& m) { return m.running && m.refs >= 1; },
                 [](Model& m) {
                     if (m.cancelled) return (int)ToIdle::Cancelled;  // unchanged: the runner still owns the future
                     m.running = false;
                     if (m.notified) return (int)ToIdle::OkNotified;  // runner's ref becomes the queue entry's
                     m.refs--;
                     return (int)(m.refs == 0 ? ToIdle::OkDealloc : ToIdle::Ok);
                 },
                 [](TaskState& st) { return (int)st.transition_to_idle(); }});

    // RUNNING -> COMPLETE, releasing `release` refs in the same step, except
    // one kept while the join waker must still be woken.
    for (uint32_t release = 1; release <= 3; release++) {
        v.push_back({"transition_to_complete_" + std::to_string(release),
                     [release](const Model& m) { return m.running && m.refs >= release; },
                     [release](Model& m) {
                         m.running = false;
                         m.complete = true;
                         bool kept = m.join_interest && m.join_waker;
                         m.refs -= release - (kept ? 1 : 0);
                         return (kept ? 2 : 0) + (m.refs == 0 ? 1 : 0);
                     },
                     [release](TaskState& st) {
                         TaskState::Completed c = st.transition_to_complete(release);
                         if (c.after.bits != st.load().bits) return kBadSnapshot;
                         return (c.kept_ref ? 2 : 0) + (c.dealloc ? 1 : 0);
                     }});
    }

    // wake(): consumes the waker's ref; while RUNNING the runner holds another.
    v.push_back({"transition_to_notified_by_val", [](const Model& m) { return m.refs >= (m.running ? 2u : 1u); },
                 [](Model& m) {
                     if (m.running) {  // the runner requeues it after the poll, with its own ref
                         m.notified = true;
                         m.refs--;
                         return (int)ToNotified::DoNothing;
                     }
                     if (m.complete || m.notified) {
                         m.refs--;
                         return (int)(m.refs == 0 ? ToNotified::Dealloc : ToNotified::DoNothing);
                     }
                     m.notified = true;  // the waker's ref moves to the queue entry
                     return (int)ToNotified::Submit;
                 },
                 [](TaskState& st) { return (int)st.transition_to_notified_by_val(); }});

    // wake_by_ref(): the waker keeps its ref; Submit takes a new one.
    v.push_back({"transition_to_notified_by_ref", [](const Model& m) { return m.refs >= 1; },
                 [](Model& m) {
                     if (m.complete || m.notified) return (int)ToNotified::DoNothing;
                     m.notified = true;
                     if (m.running) return (int)ToNotified::DoNothing;
                     m.refs++;
                     return (int)ToNotified::Submit;
                 },
                 [](TaskState& st) { return (int)st.transition_to_notified_by_ref(); }});

    // abort(): the join handle holds a ref and JOIN_INTEREST. true: the
    // caller must queue the task (a new ref was taken for the entry).
    v.push_back({"transition_to_notified_and_cancel", [](const Model& m) { return m.join_interest && m.refs >= 1; },
                 [](Model& m) {
                     if (m.cancelled || m.complete) return 0;
                     bool submit = m.idle() && !m.notified;
                     m.cancelled = true;
                     m.notified = true;
                     if (submit) m.refs++;
                     return submit ? 1 : 0;
                 },
                 [](TaskState& st) { return st.transition_to_notified_and_cancel() ? 1 : 0; }});

    // Shutdown: CANCELLED always; takes RUNNING when nobody owns the future.
    v.push_back({"transition_to_shutdown", [](const Model& m) { return m.refs >= 1; },
                 [](Model& m) {
                     bool claimed = m.idle();
                     m.cancelled = true;
                     if (claimed) m.running = true;
                     return claimed ? 1 : 0;
                 },
                 [](TaskState& st) { return st.transition_to_shutdown() ? 1 : 0; }});

    // Dropping the join handle; true: the handle drops the join waker itself.
    v.push_back({"transition_to_join_handle_dropped", [](const Model& m) { return m.join_interest && m.refs >= 1; },
                 [](Model& m) {
                     m.join_interest = false;
                     if (!m.complete) m.join_waker = false;  // the runtime will never read it now
                     return m.join_waker ? 0 : 1;  // still set: the completer is using it and drops it
                 },
                 [](TaskState& st) { return st.transition_to_join_handle_dropped() ? 1 : 0; }});

    v.push_back({"set_join_waker", [](const Model& m) { return m.join_interest && !m.join_waker; },
                 [](Model& m) {
                     if (m.complete) return 0;
                     m.join_waker = true;
                     return 1;
                 },
                 [](TaskState& st) { return st.set_join_waker() ? 1 : 0; }});

    v.push_back({"unset_join_waker",
                 [](const Model& m) { return m.join_interest && (m.join_waker || m.complete); },
                 [](Model& m) {
                     if (m.complete) return 0;
                     m.join_waker = false;
                     return 1;
                 },
                 [](TaskState& st) { return st.unset_join_waker() ? 1 : 0; }});

    v.push_back({"unset_join_waker_after_complete", [](const Model& m) { return m.complete && m.join_waker; },
                 [](Model& m) {
                     m.join_waker = false;
                     return m.join_interest ? 1 : 0;
                 },
                 [](TaskState& st) {
                     Snapshot s = st.unset_join_waker_after_complete();
                     if (s.bits != st.load().bits) return kBadSnapshot;
                     return s.join_interest() ? 1 : 0;
                 }});

    v.push_back({"ref_inc", [](const Model&) { return true; },
                 [](Model& m) {
                     m.refs++;
                     return 0;
                 },
                 [](TaskState& st) {
                     st.ref_inc();
                     return 0;
                 }});
    for (uint32_t n = 1; n <= 3; n++) {
        v.push_back({"ref_dec_" + std::to_string(n), [n](const Model& m) { return m.refs >= n; },
                     [n](Model& m) {
                         m.refs -= n;
                         return m.refs == 0 ? 1 : 0;
                     },
                     [n](TaskState& st) { return st.ref_dec(n) ? 1 : 0; }});
    }
    return v;
}

// gtest prints a failing parameter: print the name, not 128 bytes of hex.
void PrintTo(const Transition& t, std::ostream* os) { *os << t.name; }

class Transitions : public ::testing::TestWithParam<Transition> {};

std::string transition_name(const ::testing::TestParamInfo<Transition>& info) { return info.param.name; }

// ---- 1. exhaustive, single-threaded ---------------------------------------------

TEST_P(Transitions, MatchModelInEveryReachableState) {
    const Transition& tr = GetParam();
    int checked = 0;
    for (uint64_t bits : all_states()) {
        Model m = Model::from(bits);
        if (!tr.pre(m)) continue;
        TaskState st;
        st.store_for_test(bits);
        int want = tr.model(m);
        int got = tr.real(st);
        uint64_t after = st.load().bits;
        EXPECT_EQ(got, want) << tr.name << " from " << describe(bits);
        EXPECT_EQ(after, m.bits()) << tr.name << " from " << describe(bits) << ": left " << describe(after)
                                   << ", want " << describe(m.bits());
        checked++;
    }
    EXPECT_GT(checked, 0) << "the precondition excludes every state";
}

// ---- 2. the CAS-retry path, made deterministic ------------------------------------
//
// A TaskState alone on its own page. run() makes the page read-only and calls
// the transition: its load works, its first write (the CAS, or the RMW)
// faults. The SIGSEGV handler makes the page writable, replaces the word with
// `interfered` — what a concurrent thread would have written between the
// transition's load and its CAS — and returns, so the write re-executes
// against the changed word. Only the first fault is taken over; any other
// goes to the previous handler.
class TrappedWord {
public:
    TrappedWord() {
        page_size_ = (size_t)sysconf(_SC_PAGESIZE);
        void* p = mmap(nullptr, page_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ok_ = p != MAP_FAILED;
        if (!ok_) return;
        page_ = static_cast<char*>(p);
        // SAFETY: a fresh, page-aligned, writable mapping; TaskState is one atomic.
        st_ = new (page_) TaskState();
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        ok_ = sigaction(SIGSEGV, &sa, &old_segv_) == 0 && sigaction(SIGBUS, &sa, &old_bus_) == 0;
        self_ = this;
    }
    ~TrappedWord() {
        if (!page_) return;
        sigaction(SIGSEGV, &old_segv_, nullptr);
        sigaction(SIGBUS, &old_bus_, nullptr);
        munmap(page_, page_size_);
        self_ = nullptr;
    }
    bool ok() const { return ok_; }

    // Runs f on the word `start`; returns f's result. *trapped says whether
    // the interference happened (f wrote to the word).
    int run(uint64_t start, uint64_t interfered, const std::function<int(TaskState&)>& f, bool* trapped) {
        st_->store_for_test(start);
        interfered_ = interfered;
        trapped_ = false;
        armed_ = true;
        mprotect(page_, page_size_, PROT_READ);
        int r = f(*st_);
        armed_ = false;
        mprotect(page_, page_size_, PROT_READ | PROT_WRITE);  // if it never wrote
        *trapped = trapped_;
        return r;
    }
    uint64_t bits() const { return st_->load().bits; }

private:
    static void on_fault(int sig, siginfo_t* si, void* uctx) {
        TrappedWord* t = self_;
        char* a = static_cast<char*>(si->si_addr);
        if (t && t->armed_ && !t->trapped_ && a >= t->page_ && a < t->page_ + t->page_size_) {
            mprotect(t->page_, t->page_size_, PROT_READ | PROT_WRITE);
            t->st_->store_for_test(t->interfered_);
            t->trapped_ = true;
            return;  // the faulting write runs again, now against `interfered`
        }
        // Not ours: hand it to whoever handled it before (sanitizer, default).
        const struct sigaction& old = sig == SIGBUS ? t->old_bus_ : t->old_segv_;
        if (old.sa_flags & SA_SIGINFO) {
            old.sa_sigaction(sig, si, uctx);
        } else if (old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL) {
            old.sa_handler(sig);
        } else {
            signal(sig, SIG_DFL);  // re-faults into the default action
        }
    }

    static inline TrappedWord* self_ = nullptr;
    size_t page_size_ = 0;
    char* page_ = nullptr;
    TaskState* st_ = nullptr;
    bool ok_ = false;
    volatile bool armed_ = false;
    volatile bool trapped_ = false;
    uint64_t interfered_ = 0;
    struct sigaction old_segv_, old_bus_;
};

// What another thread may do to the word between a transition's load and its
// CAS: each is a real transition of the protocol (or a ref change), applied
// to the model. Returns false when it does not apply to m.
struct Interference {
    const char* name;
    bool (*apply)(Model& m);
};
const Interference kInterferences[] = {
    {"another wake_by_ref queued it",
     [](Model& m) {
         if (m.complete || m.notified) return false;
         m.notified = true;
         if (!m.running) m.refs++;
         return true;
     }},
    {"another wake (by value) while running",
     [](Model& m) {
         if (!m.running || m.notified) return false;
         m.notified = true;  // its ref went away, but a clone was made first: refs unchanged
         return true;
     }},
    {"an abort",
     [](Model& m) {
         if (m.cancelled || m.complete) return false;
         if (m.idle() && !m.notified) m.refs++;
         m.cancelled = true;
         m.notified = true;
         return true;
     }},
    {"a waker was cloned",
     [](Model& m) {
         m.refs++;
         return true;
     }},
    {"a waker was dropped",
     [](Model& m) {
         if (m.refs < 3) return false;
         m.refs--;
         return true;
     }},
    {"it completed on another thread",
     [](Model& m) {
         if (!m.running) return false;
         m.running = false;
         m.complete = true;
         return true;
     }},
    {"the join handle was dropped",
     [](Model& m) {
         if (!m.join_interest) return false;
         m.join_interest = false;
         if (!m.complete) m.join_waker = false;
         return true;
     }},
    {"the join waker was published",
     [](Model& m) {
         if (!m.join_interest || m.join_waker || m.complete) return false;
         m.join_waker = true;
         return true;
     }},
    {"shutdown claimed it",
     [](Model& m) {
         if (m.cancelled && !m.idle()) return false;
         if (m.idle()) m.running = true;
         m.cancelled = true;
         return true;
     }},
};

TEST_P(Transitions, RetryAfterInterferenceMatchesModel) {
    const Transition& tr = GetParam();
    TrappedWord w;
    ASSERT_TRUE(w.ok()) << "mmap/sigaction failed";
    int checked = 0, trapped_count = 0;
    for (uint64_t bits : all_states()) {
        Model start = Model::from(bits);
        if (!tr.pre(start)) continue;
        for (const Interference& in : kInterferences) {
            Model changed = start;
            if (!in.apply(changed) || !reachable(changed) || !tr.pre(changed)) continue;
            bool trapped = false;
            int got = w.run(bits, changed.bits(), tr.real, &trapped);
            uint64_t after = w.bits();
            // Linearizability: the transition happened either before the
            // other thread's change (it never wrote: nothing to trap) or
            // after it (its write trapped and retried).
            Model want = trapped ? changed : start;
            int want_out = tr.model(want);
            if (!trapped) {
                // Not writing is only right if the model does not change the word.
                EXPECT_EQ(start.bits(), want.bits())
                    << tr.name << " from " << describe(bits) << " should have written the word";
            }
            EXPECT_EQ(got, want_out) << tr.name << " from " << describe(bits) << ", then " << in.name << " ("
                                     << describe(changed.bits()) << ") before its CAS: reported outcome " << got
                                     << ", the model says " << want_out << " for the word it finally acted on";
            EXPECT_EQ(after, want.bits()) << tr.name << " from " << describe(bits) << ", then " << in.name
                                          << ": left " << describe(after) << ", want " << describe(want.bits());
            checked++;
            trapped_count += trapped;
        }
    }
    EXPECT_GT(checked, 0);
    EXPECT_GT(trapped_count, 0) << "the trap never fired: the test did not exercise any retry";
}

INSTANTIATE_TEST_SUITE_P(TaskState, Transitions, ::testing::ValuesIn(transitions()), transition_name);

// ---- odds and ends ----------------------------------------------------------------

TEST(TaskState, ReachableStateSpaceIsLarge) {
    // 64 flag combinations minus the unreachable ones, times 7 ref counts.
    EXPECT_GT(all_states().size(), 300u);
}

TEST(TaskState, InitWithAndWithoutJoin) {
    for (bool with_join : {false, true}) {
        TaskState st;
        st.store_for_test(~(uint64_t)0);  // garbage: init must overwrite all of it
        st.init(with_join);
        Model want;
        want.notified = true;  // it is about to be queued
        want.refs = 2;         // owned list + queue entry
        if (with_join) {
            want.join_interest = true;
            want.refs = 3;  // + join handle
        }
        EXPECT_EQ(st.load().bits, want.bits()) << describe(st.load().bits);
    }
}

TEST(TaskState, SnapshotAccessors) {
    for (uint64_t bits : all_states()) {
        Model m = Model::from(bits);
        Snapshot s{bits};
        EXPECT_EQ(s.running(), m.running);
        EXPECT_EQ(s.complete(), m.complete);
        EXPECT_EQ(s.idle(), m.idle());
        EXPECT_EQ(s.notified(), m.notified);
        EXPECT_EQ(s.join_interest(), m.join_interest);
        EXPECT_EQ(s.join_waker(), m.join_waker);
        EXPECT_EQ(s.cancelled(), m.cancelled);
        EXPECT_EQ(s.refs(), m.refs);
    }
}

// ---- whole lifecycles ------------------------------------------------------------

TEST(TaskState, LifecyclePendingWakeReady) {
    TaskState st;
    st.init(true);  // owned + queue + join = 3
    ASSERT_EQ(st.transition_to_running(), ToRunning::Success);
    EXPECT_EQ(st.load().refs(), 3u);
    st.ref_inc();  // the poll clones its waker
    ASSERT_EQ(st.transition_to_idle(), ToIdle::Ok);
    EXPECT_EQ(st.load().refs(), 3u);  // owned + join + waker (the runner's went away)
    ASSERT_EQ(st.transition_to_notified_by_val(), ToNotified::Submit);
    EXPECT_EQ(st.load().refs(), 3u);  // the waker's ref now is the queue entry's
    ASSERT_EQ(st.transition_to_running(), ToRunning::Success);
    // The runner's ref and the owned list's go in the completing step.
    TaskState::Completed done = st.transition_to_complete(2);
    EXPECT_TRUE(done.after.complete());
    EXPECT_FALSE(done.after.running());
    EXPECT_TRUE(done.after.join_interest());
    EXPECT_FALSE(done.kept_ref) << "no join waker was published";
    EXPECT_FALSE(done.dealloc);
    EXPECT_EQ(st.load().refs(), 1u);
    EXPECT_TRUE(st.transition_to_join_handle_dropped());
    EXPECT_TRUE(st.ref_dec()) << "the join handle's ref was the last";
}

// task_spawn's state: queued RUNNING (init_running), so the first poll takes
// the resume_running path with no CAS. What can reach it before that poll:
// its join handle's abort and detach; a waker cannot exist yet.
TEST(TaskState, SpawnedRunningFirstPollNeedsNoTransition) {
    TaskState st;
    st.init_running(true);  // owned + runner's (the queue entry's) + join = 3
    Snapshot s = st.load();
    EXPECT_TRUE(s.running());
    EXPECT_FALSE(s.notified());
    EXPECT_EQ(s.refs(), 3u);
    EXPECT_TRUE(s.join_interest());
    // The first poll returns Pending: the same transition as any poll's end.
    ASSERT_EQ(st.transition_to_idle(), ToIdle::Ok);
    EXPECT_EQ(st.load().refs(), 2u) << "the runner's ref went, as after any poll";
    EXPECT_TRUE(st.load().idle());

    TaskState aborted;
    aborted.init_running(true);
    EXPECT_FALSE(aborted.transition_to_notified_and_cancel()) << "still queued: no second entry";
    EXPECT_TRUE(aborted.load().cancelled()) << "begin_run's resume_running path sees it and cancels";
    EXPECT_EQ(aborted.load().refs(), 3u);

    TaskState detached;
    detached.init_running(false);
    EXPECT_EQ(detached.load().refs(), 2u);
    EXPECT_FALSE(detached.load().join_interest());
}

TEST(TaskState, LifecycleWakeDuringPollRequeues) {
    TaskState st;
    st.init(false);
    ASSERT_EQ(st.transition_to_running(), ToRunning::Success);
    EXPECT_EQ(st.transition_to_notified_by_ref(), ToNotified::DoNothing) << "running: the runner requeues";
    EXPECT_EQ(st.transition_to_notified_by_ref(), ToNotified::DoNothing) << "already notified";
    EXPECT_EQ(st.transition_to_idle(), ToIdle::OkNotified);
    EXPECT_EQ(st.load().refs(), 2u);
    EXPECT_TRUE(st.load().notified());
    EXPECT_EQ(st.transition_to_running(), ToRunning::Success);
}

TEST(TaskState, LifecycleAbortWhileRunning) {
    TaskState st;
    st.init(true);
    ASSERT_EQ(st.transition_to_running(), ToRunning::Success);
    EXPECT_FALSE(st.transition_to_notified_and_cancel()) << "the runner sees it, no queue entry needed";
    EXPECT_EQ(st.transition_to_idle(), ToIdle::Cancelled);
    EXPECT_TRUE(st.load().running()) << "the runner still owns the future to drop it";
    ASSERT_TRUE(st.set_join_waker());  // a join handle is waiting
    TaskState::Completed c = st.transition_to_complete(2);
    EXPECT_TRUE(c.after.complete() && c.after.cancelled());
    EXPECT_TRUE(c.kept_ref) << "one ref kept to wake the join waker";
    Snapshot s = st.unset_join_waker_after_complete();
    EXPECT_TRUE(s.join_interest());
    EXPECT_FALSE(st.ref_dec()) << "the join handle still holds one";
    EXPECT_FALSE(st.transition_to_notified_and_cancel()) << "a second abort does nothing";
    EXPECT_EQ(st.transition_to_notified_by_ref(), ToNotified::DoNothing);
}

TEST(TaskState, LifecycleShutdownOfQueuedTask) {
    TaskState st;
    st.init(false);
    // Shutdown drops the queue entry's ref first (steps 3/4), then claims it.
    EXPECT_FALSE(st.ref_dec());
    EXPECT_TRUE(st.transition_to_shutdown());
    TaskState::Completed c = st.transition_to_complete(1);
    EXPECT_TRUE(c.after.complete() && c.after.cancelled());
    EXPECT_TRUE(c.dealloc) << "the owned list's ref was the last";
    EXPECT_EQ(st.load().refs(), 0u);
}

// ---- concurrency: exactly one Submit per idle period ----------------------------
//
// K threads race one transition on the same word, round after round. Each
// transition's CAS loop retries when another thread got in first, and the
// outcome it reports must be the one of the attempt that finally counted:
// a stale "Submit" from a failed attempt would queue the task twice with one
// reference for two queue entries (a double poll and, later, a use-after-free).

// Runs `rounds` rounds. Before each, prepare(st) runs alone; then K threads
// call op(st, k) at once, each returning whether it must queue the task.
// check(st) then runs alone and returns false on a wrong state.
// Spins hard (the racers must be on CPUs together for the CAS to collide),
// yielding only now and then so that more threads than cores still progress.
template <class Pred>
void hot_spin_until(Pred pred) {
    uint32_t spins = 0;
    while (!pred()) {
        if (++spins % 4096 == 0) std::this_thread::yield();
    }
}

template <class Prepare, class Op, class Check>
void race_rounds(int K, uint64_t rounds, Prepare prepare, Op op, Check check) {
    TaskState st;
    std::atomic<uint64_t> round{0};
    std::atomic<int> arrived{0};
    std::atomic<uint64_t> submits{0};
    uint64_t bad_rounds = 0, bad_submits = 0, first_bad = 0;
    std::vector<std::thread> ts;
    for (int k = 0; k < K; k++) {
        ts.emplace_back([&, k] {
            for (uint64_t r = 1; r <= rounds; r++) {
                hot_spin_until([&] { return round.load(std::memory_order_acquire) >= r; });
                if (op(st, k)) submits.fetch_add(1, std::memory_order_relaxed);
                arrived.fetch_add(1, std::memory_order_acq_rel);
            }
        });
    }
    for (uint64_t r = 1; r <= rounds; r++) {
        prepare(st);
        submits.store(0, std::memory_order_relaxed);
        arrived.store(0, std::memory_order_relaxed);
        round.store(r, std::memory_order_release);
        weft_test::spin_until([&] { return arrived.load(std::memory_order_acquire) == K; });
        uint64_t n = submits.load(std::memory_order_relaxed);
        if (n != 1) {
            bad_submits++;
            if (!first_bad) first_bad = r;
        }
        if (!check(st)) bad_rounds++;
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(bad_submits, 0u) << "rounds in which the task was not queued exactly once, of " << rounds
                               << " (first: round " << first_bad << ")";
    EXPECT_EQ(bad_rounds, 0u) << "rounds that left a wrong state word, of " << rounds;
}

// Two racers: on a 2-core machine both are on a CPU when the round starts,
// which is what makes their CASes collide.
constexpr int kRacers = 2;
// Rounds are barrier-synchronised, which sanitizers make ~50x slower.
constexpr uint64_t kRounds = weft_test::kSanitized ? 300 : 20000;

// Continuous version: every racer wakes the task in a loop; whoever is told
// Submit "runs" it (transition_to_running, then transition_to_idle, again if
// it was woken meanwhile). `queued` mirrors the run queue: a Submit while the
// task is already queued or running is the double-scheduling bug.
template <class Wake>
void hammer_wakes(int K, uint64_t iters, Wake wake) {
    TaskState st;
    st.store_for_test(Model{.refs = 1}.bits());  // idle, the owned list's ref
    std::atomic<int> queued{0};
    std::atomic<uint64_t> doubles{0}, bad{0}, submits{0};
    std::atomic<int> start{0};
    std::vector<std::thread> ts;
    for (int k = 0; k < K; k++) {
        ts.emplace_back([&, k] {
            start.fetch_add(1);
            hot_spin_until([&] { return start.load() == K; });
            for (uint64_t i = 0; i < iters; i++) {
                if (!wake(st, k)) continue;
                submits.fetch_add(1, std::memory_order_relaxed);
                if (queued.exchange(1, std::memory_order_acq_rel) != 0) {
                    doubles.fetch_add(1, std::memory_order_relaxed);
                    continue;  // the state is corrupt from here; just count
                }
                for (;;) {
                    if (st.transition_to_running() != ToRunning::Success) bad.fetch_add(1);
                    queued.store(0, std::memory_order_release);
                    ToIdle r = st.transition_to_idle();
                    if (r == ToIdle::Ok) break;
                    if (r != ToIdle::OkNotified) {
                        bad.fetch_add(1);
                        break;
                    }
                    // Woken during the "poll": requeued with the runner's ref.
                    if (queued.exchange(1, std::memory_order_acq_rel) != 0) doubles.fetch_add(1);
                }
            }
        });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(doubles.load(), 0u) << "a Submit while the task was already queued or running, of "
                                  << submits.load() << " submits";
    EXPECT_EQ(bad.load(), 0u);
    if (doubles.load() == 0) {
        EXPECT_EQ(st.load().refs(), 1u) << "refs back to the owned list's";
    }
    EXPECT_GT(submits.load(), 0u);
}

TEST(TaskState, HammerWakeByRefNeverDoubleSchedules) {
    hammer_wakes(kRacers, weft_test::scaled(2000000),
                 [](TaskState& st, int) { return st.transition_to_notified_by_ref() == ToNotified::Submit; });
}

TEST(TaskState, HammerMixedWakesNeverDoubleSchedule) {
    hammer_wakes(kRacers + 1, weft_test::scaled(2000000), [](TaskState& st, int k) {
        if (k % 2 == 0) return st.transition_to_notified_by_ref() == ToNotified::Submit;
        st.ref_inc();  // clone, then wake by value
        ToNotified out = st.transition_to_notified_by_val();
        return out == ToNotified::Submit;
    });
}

// An idle task after one Pending poll: owned list's ref only.
uint64_t idle_task_bits(bool with_join) {
    Model m;
    m.refs = with_join ? 2 : 1;
    m.join_interest = with_join;
    return m.bits();
}

TEST(TaskState, ConcurrentWakeByRefSubmitsExactlyOnce) {
    race_rounds(
        kRacers, kRounds, [](TaskState& st) { st.store_for_test(idle_task_bits(false)); },
        [](TaskState& st, int) { return st.transition_to_notified_by_ref() == ToNotified::Submit; },
        [](TaskState& st) {
            Snapshot s = st.load();
            return s.notified() && s.idle() && s.refs() == 2;  // + the one queue entry's
        });
}

TEST(TaskState, ConcurrentWakeByValSubmitsExactlyOnce) {
    race_rounds(
        kRacers, kRounds,
        [](TaskState& st) {
            Model m = Model::from(idle_task_bits(false));
            m.refs += kRacers;  // each racer holds a waker
            st.store_for_test(m.bits());
        },
        [](TaskState& st, int) {
            ToNotified out = st.transition_to_notified_by_val();
            return out == ToNotified::Submit;
        },
        [](TaskState& st) {
            Snapshot s = st.load();
            return s.notified() && s.idle() && s.refs() == 2;  // owned + the queue entry (a waker's)
        });
}

TEST(TaskState, ConcurrentMixedWakesSubmitExactlyOnce) {
    race_rounds(
        kRacers, kRounds,
        [](TaskState& st) {
            Model m = Model::from(idle_task_bits(false));
            m.refs += kRacers / 2;  // the odd racers hold a waker each
            st.store_for_test(m.bits());
        },
        [](TaskState& st, int k) {
            ToNotified out = (k % 2) ? st.transition_to_notified_by_val() : st.transition_to_notified_by_ref();
            return out == ToNotified::Submit;
        },
        [](TaskState& st) {
            Snapshot s = st.load();
            return s.notified() && s.idle() && s.refs() == 2;
        });
}

TEST(TaskState, ConcurrentAbortsSubmitExactlyOnce) {
    // Several threads abort the same idle task (a join handle is one thread's
    // at a time, but abort may race wakes and the shutdown path the same way).
    race_rounds(
        kRacers, kRounds, [](TaskState& st) { st.store_for_test(idle_task_bits(true)); },
        [](TaskState& st, int) { return st.transition_to_notified_and_cancel(); },
        [](TaskState& st) {
            Snapshot s = st.load();
            return s.notified() && s.cancelled() && s.idle() && s.refs() == 3;
        });
}

TEST(TaskState, ConcurrentAbortAndWakesSubmitExactlyOnce) {
    race_rounds(
        kRacers, kRounds, [](TaskState& st) { st.store_for_test(idle_task_bits(true)); },
        [](TaskState& st, int k) {
            if (k == 0) return st.transition_to_notified_and_cancel();
            return st.transition_to_notified_by_ref() == ToNotified::Submit;
        },
        [](TaskState& st) {
            Snapshot s = st.load();
            return s.notified() && s.cancelled() && s.idle() && s.refs() == 3;
        });
}

}  // namespace
