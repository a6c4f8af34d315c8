// tests/test_metrics.cpp — weft_metrics.h through libweft.so: the runtime
// snapshot, the per-worker snapshot, the size-versioning rule, and the
// Prometheus text.
//
// Why: metrics are read by dashboards and alerts that nobody watches until
// something is wrong; a counter that silently stops adding up, a histogram
// whose buckets are not cumulative, or a label that breaks the scraper's
// parser all fail quietly. So this file checks:
//   * totals: polls add up to the work done exactly, spawns from a foreign
//     thread count as remote wakes, the summed and per-worker snapshots
//     agree, and the poll-time histogram holds its sample of the polls
//     (one in WEFT_POLL_HIST_SAMPLE_EVERY per thread, exactly) when pulse is
//     on (and none when it is off);
//   * versioning: a bigger caller struct is filled up to weft's size, its
//     tail left alone, size written back; a smaller one is refused;
//   * Prometheus text: parsed line by line with a strict parser of the 0.0.4
//     grammar (HELP/TYPE before each family, name{labels} value, escapes),
//     buckets cumulative and ending at +Inf == _count, totals matching the
//     snapshot; label escaping of \ " newline and of invalid UTF-8 (a name
//     cut in the middle of a character);
//   * buffer sizing: too small gives WEFT_EAGAIN and the exact length, a
//     length query with NULL/0, an exact fit succeeds;
//   * bad input: NULLs, a handle that is not a runtime, out-of-range workers.
// Nothing asserts on elapsed time. The histogram is written just after a
// poll returns, which may be after the poll's task was joined, so the test
// waits (spin_until, no timeout: ctest's catches a hang) for it to catch up.
// The runtimes run pulse without worker handoff and without the ISOLATE
// tier (steady_pulse): a thread descheduled mid-poll on a loaded machine
// must not change what the counters say.
#include <gtest/gtest.h>

#include <chrono>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <weft/weft.h>

#include "test_support.h"

using weft_test::spin_until;

namespace {

// ---- helpers ---------------------------------------------------------------------

// Pulse on (poll times recorded) but without worker handoff and the ISOLATE
// tier: a worker whose thread is descheduled for a while on a loaded machine
// would otherwise be handed over, and that poll (rightly) left out of the
// histogram, which would make "the histogram holds every poll" depend on
// timing.
weft_pulse_config steady_pulse() {
    weft_pulse_config pc;
    weft_pulse_config_init(&pc);
    pc.max_spare_threads = 0;
    pc.isolation_threads = 0;
    return pc;
}

weft_runtime* new_runtime(uint32_t workers, const char* name = "mtest", const weft_pulse_config* pulse = nullptr) {
    weft_pulse_config steady = steady_pulse();
    if (!pulse) pulse = &steady;
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = workers;
    cfg.name = name;
    cfg.pulse = pulse;
    weft_runtime* rt = nullptr;
    int r = weft_runtime_new(&cfg, &rt);
    EXPECT_EQ(r, 0) << weft_strerror(r);
    return rt;
}

// READY at once.
int poll_ready(void*, weft_context*, void*) { return WEFT_READY; }

// Yields (*remaining) times, then READY: remaining + 1 polls.
int poll_yield(void* data, weft_context* cx, void*) {
    int* remaining = static_cast<int*>(data);
    if (*remaining == 0) return WEFT_READY;
    --*remaining;
    weft_waker_wake_by_ref(&cx->waker);
    return WEFT_PENDING;
}

constexpr int kYields = 20;

// Spawns `ready` one-poll tasks and `yielders` tasks of kYields + 1 polls
// from this (foreign) thread and joins them all. Returns the polls done.
uint64_t run_tasks(weft_runtime* rt, int ready, int yielders) {
    std::vector<weft_join*> joins;
    std::vector<int> remaining(yielders, kYields);
    for (int i = 0; i < ready + yielders; i++) {
        weft_task_desc d;
        std::memset(&d, 0, sizeof d);
        d.size = sizeof d;
        if (i < ready) {
            d.poll = poll_ready;
        } else {
            d.poll = poll_yield;
            d.data = &remaining[i - ready];
        }
        weft_join* j = nullptr;
        EXPECT_EQ(weft_spawn(rt, &d, &j), 0);
        if (j) joins.push_back(j);
    }
    for (weft_join* j : joins) {
        EXPECT_EQ(weft_join_wait(j, -1), 0);
        EXPECT_EQ(weft_join_status(j), 0);
        weft_join_free(j);
    }
    return (uint64_t)ready + (uint64_t)yielders * (kYields + 1);
}

weft_metrics snapshot(weft_runtime* rt) {
    weft_metrics m;
    std::memset(&m, 0, sizeof m);
    m.size = sizeof m;
    EXPECT_EQ(weft_runtime_metrics(rt, &m), 0);
    return m;
}

weft_worker_metrics_ex worker_snapshot(weft_runtime* rt, uint32_t w) {
    weft_worker_metrics_ex m;
    std::memset(&m, 0, sizeof m);
    m.size = sizeof m;
    EXPECT_EQ(weft_runtime_worker_metrics_ex(rt, w, &m), 0);
    return m;
}

uint64_t hist_sum(const uint64_t (&h)[WEFT_POLL_HIST_BUCKETS]) {
    uint64_t s = 0;
    for (uint64_t v : h) s += v;
    return s;
}

// Whether this runtime records poll times (pulse on and compiled in).
bool histogram_recorded(weft_runtime* rt) {
    weft_pulse_status st;
    std::memset(&st, 0, sizeof st);
    st.size = sizeof st;
    EXPECT_EQ(weft_runtime_pulse_status(rt, &st), 0);
    return st.mode == WEFT_PULSE_ON && st.compiled;
}

// The histogram's sample of a worker's polls: each thread times its 1st,
// 65th, 129th... poll. Exact here: these runtimes have no handoff, so each
// worker is polled by one thread, which polls nothing else.
uint64_t sampled(uint64_t polls) {
    return (polls + WEFT_POLL_HIST_SAMPLE_EVERY - 1) / WEFT_POLL_HIST_SAMPLE_EVERY;
}

// After the tasks are joined: waits until every sampled poll is in the
// histogram (polls is counted before a poll, the histogram just after it).
void wait_histogram_caught_up(weft_runtime* rt) {
    for (uint32_t w = 0; w < weft_runtime_workers(rt); w++) {
        spin_until([&] {
            weft_worker_metrics_ex m = worker_snapshot(rt, w);
            return hist_sum(m.poll_hist) >= sampled(m.polls);
        });
    }
}

// The text, grown until it fits (the documented way to call it).
std::string prometheus(weft_runtime* rt) {
    size_t len = 0;
    EXPECT_EQ(weft_metrics_prometheus(rt, nullptr, 0, &len), WEFT_EAGAIN);
    for (int attempt = 0; attempt < 100; attempt++) {
        std::string buf(len + 1 + 256, '\x7f');
        int r = weft_metrics_prometheus(rt, buf.data(), buf.size(), &len);
        if (r == 0) {
            EXPECT_EQ(buf[len], '\0');
            EXPECT_EQ(std::strlen(buf.c_str()), len);
            buf.resize(len);
            return buf;
        }
        EXPECT_EQ(r, WEFT_EAGAIN);
    }
    ADD_FAILURE() << "the text never fit";
    return {};
}

// ---- a strict parser of the text format 0.0.4 -----------------------------------

struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;  // unescaped values
    std::string value_text;
    double value = 0;
};

struct Family {
    std::string type;  // from # TYPE
    bool help = false;
};

struct Parsed {
    std::vector<Sample> samples;           // in text order
    std::map<std::string, Family> families; // by family name
    std::vector<std::string> family_order;  // as their TYPE lines appear
};

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] >> 6) != 2) return false;
        i += n;
    }
    return true;
}

// Which family a sample belongs to: a histogram's _bucket/_sum/_count
// samples belong to the histogram.
std::string family_of(const std::string& name, const Parsed& p) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        size_t n = std::strlen(suffix);
        if (name.size() > n && name.compare(name.size() - n, n, suffix) == 0) {
            std::string base = name.substr(0, name.size() - n);
            auto it = p.families.find(base);
            if (it != p.families.end() && it->second.type == "histogram") return base;
        }
    }
    return name;
}

// Parses text into *out, reporting every deviation from the grammar as a
// test failure (fatal ones stop the parse).
void parse_into(const std::string& text, Parsed* out) {
    Parsed& p = *out;
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n') << "the last line must end with a newline";
    EXPECT_EQ(text.find('\0'), std::string::npos);
    std::string current;  // the family whose samples are being read
    std::set<std::string> closed;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string line = text.substr(pos, eol - pos);
        pos = eol + 1;
        SCOPED_TRACE(line);
        ASSERT_FALSE(line.empty()) << "no empty lines are written";
        if (line[0] == '#') {
            // "# HELP name text" or "# TYPE name type".
            bool help = line.rfind("# HELP ", 0) == 0, type = line.rfind("# TYPE ", 0) == 0;
            ASSERT_TRUE(help || type) << "only HELP and TYPE comments are written";
            size_t s = 7, e = s;
            while (e < line.size() && name_char(line[e])) e++;
            ASSERT_GT(e, s);
            ASSERT_TRUE(name_start(line[s]));
            std::string fam = line.substr(s, e - s);
            ASSERT_LT(e, line.size());
            ASSERT_EQ(line[e], ' ');
            std::string rest = line.substr(e + 1);
            if (fam != current) {
                EXPECT_EQ(closed.count(fam), 0u) << fam << ": a family's lines must be together";
                if (!current.empty()) closed.insert(current);
                current = fam;
            }
            Family& f = p.families[fam];
            if (help) {
                EXPECT_FALSE(f.help) << "one HELP per family";
                EXPECT_TRUE(f.type.empty()) << "HELP comes before TYPE here";
                EXPECT_FALSE(rest.empty());
                f.help = true;
            } else {
                EXPECT_TRUE(f.type.empty()) << "one TYPE per family";
                EXPECT_TRUE(rest == "counter" || rest == "histogram") << rest;
                f.type = rest;
                p.family_order.push_back(fam);
            }
            continue;
        }
        Sample smp;
        size_t i = 0;
        ASSERT_TRUE(name_start(line[0]));
        while (i < line.size() && name_char(line[i])) i++;
        smp.name = line.substr(0, i);
        ASSERT_LT(i, line.size());
        ASSERT_EQ(line[i], '{') << "every sample here has labels";
        i++;
        for (;;) {
            size_t ks = i;
            ASSERT_LT(i, line.size());
            ASSERT_TRUE(name_start(line[i]) && line[i] != ':');
            while (i < line.size() && name_char(line[i]) && line[i] != ':') i++;
            std::string key = line.substr(ks, i - ks);
            ASSERT_LT(i + 1, line.size());
            ASSERT_EQ(line[i], '=');
            ASSERT_EQ(line[i + 1], '"');
            i += 2;
            std::string val;
            for (;;) {
                ASSERT_LT(i, line.size()) << "unterminated label value";
                char c = line[i++];
                if (c == '"') break;
                if (c == '\\') {
                    ASSERT_LT(i, line.size());
                    char e = line[i++];
                    if (e == '\\') val += '\\';
                    else if (e == '"') val += '"';
                    else if (e == 'n') val += '\n';
                    else ADD_FAILURE() << "bad escape \\" << e;
                } else {
                    val += c;
                }
            }
            EXPECT_TRUE(valid_utf8(val)) << "label values must be UTF-8";
            EXPECT_EQ(smp.labels.count(key), 0u) << "duplicate label " << key;
            smp.labels[key] = val;
            ASSERT_LT(i, line.size());
            if (line[i] == ',') {
                i++;
                continue;
            }
            ASSERT_EQ(line[i], '}');
            i++;
            break;
        }
        ASSERT_LT(i, line.size());
        ASSERT_EQ(line[i], ' ');
        smp.value_text = line.substr(i + 1);
        ASSERT_FALSE(smp.value_text.empty());
        ASSERT_EQ(smp.value_text.find(' '), std::string::npos) << "no timestamps are written";
        char* end = nullptr;
        smp.value = std::strtod(smp.value_text.c_str(), &end);
        EXPECT_EQ(*end, '\0') << "value " << smp.value_text;
        std::string fam = family_of(smp.name, p);
        EXPECT_EQ(fam, current) << "a sample must follow its family's TYPE line";
        EXPECT_EQ(p.families.count(fam), 1u) << smp.name << " has no TYPE line";
        p.samples.push_back(smp);
    }
}

Parsed parse(const std::string& text) {
    Parsed p;
    parse_into(text, &p);
    return p;
}

const char* const kCounters[] = {
    "weft_polls_total",        "weft_steals_total",       "weft_stolen_tasks_total",
    "weft_overflows_total",    "weft_parks_total",        "weft_lifo_polls_total",
    "weft_inject_pops_total",  "weft_fork_exposed_total", "weft_budget_yields_total",
    "weft_tier_changes_total", "weft_handoffs_total",     "weft_handoffs_refused_total",
};

// ---- snapshots --------------------------------------------------------------------

TEST(Metrics, TotalsAddUpAndTheHistogramHoldsItsSample) {
    weft_runtime* rt = new_runtime(2);
    constexpr int kReady = 300, kYielders = 8;
    uint64_t expected = run_tasks(rt, kReady, kYielders);
    const bool recorded = histogram_recorded(rt);
    if (recorded) wait_histogram_caught_up(rt);  // hangs (ctest timeout) if a poll is missing

    weft_metrics m = snapshot(rt);
    EXPECT_EQ(m.size, sizeof m);
    EXPECT_EQ(m.workers, 2u);
    EXPECT_EQ(m._reserved, 0u);
    // Every poll counted once: polls >= the tasks spawned, and exactly the
    // polls these tasks need (nothing else runs on this runtime).
    EXPECT_GE(m.polls, (uint64_t)(kReady + kYielders));
    EXPECT_EQ(m.polls, expected);
    // Every spawn came from this thread, i.e. through the inject queue.
    EXPECT_GE(m.remote_wakes, (uint64_t)(kReady + kYielders));
    EXPECT_GE(m.stolen_tasks, m.steals);
    EXPECT_LE(m.lifo_polls, m.polls);
    EXPECT_EQ(m.handoffs, 0u) << "handoff is off here";
    if (recorded) {
        EXPECT_GE(hist_sum(m.poll_hist), m.polls / WEFT_POLL_HIST_SAMPLE_EVERY) << "the histogram holds its sample";
        EXPECT_LE(hist_sum(m.poll_hist), m.polls / WEFT_POLL_HIST_SAMPLE_EVERY + 2);
    } else {
        EXPECT_EQ(hist_sum(m.poll_hist), 0u) << "no poll times without pulse";
    }

    // The per-worker snapshots add up to the totals (the runtime is idle:
    // polls and the histogram no longer move; parks may).
    uint64_t polls = 0, hist[WEFT_POLL_HIST_BUCKETS] = {};
    for (uint32_t w = 0; w < 2; w++) {
        weft_worker_metrics_ex x = worker_snapshot(rt, w);
        EXPECT_EQ(x.size, sizeof x);
        EXPECT_EQ(x.worker, w);
        EXPECT_EQ(hist_sum(x.poll_hist), recorded ? sampled(x.polls) : 0u);
        polls += x.polls;
        for (int i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) hist[i] += x.poll_hist[i];
        // The fixed-size weft.h variant reads the same counters.
        weft_worker_metrics old;
        std::memset(&old, 0, sizeof old);
        old.size = sizeof old;
        ASSERT_EQ(weft_runtime_worker_metrics(rt, w, &old), 0);
        EXPECT_EQ(old.polls, x.polls);
        EXPECT_EQ(old.lifo_polls, x.lifo_polls);
    }
    EXPECT_EQ(polls, m.polls);
    for (int i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) EXPECT_EQ(hist[i], m.poll_hist[i]) << "bucket " << i;

    // More work only adds.
    uint64_t more = run_tasks(rt, 50, 0);
    weft_metrics m2 = snapshot(rt);
    EXPECT_EQ(m2.polls, m.polls + more);
    EXPECT_GE(m2.remote_wakes, m.remote_wakes + 50);
    EXPECT_GE(m2.parks, m.parks);
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// Spins `*spin_ns` in its first poll (a slow window: the thread then times
// every poll for a while), then yields kSlowYields times.
constexpr int kSlowYields = 1000;
struct SlowThenYield {
    uint64_t spin_ns;
    int remaining = kSlowYields;
    bool spun = false;
};
int poll_slow_then_yield(void* data, weft_context* cx, void*) {
    auto* s = static_cast<SlowThenYield*>(data);
    if (!s->spun) {
        s->spun = true;
        auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(s->spin_ns);
        while (std::chrono::steady_clock::now() < end) {
        }
    }
    if (s->remaining == 0) return WEFT_READY;
    --s->remaining;
    weft_waker_wake_by_ref(&cx->waker);
    return WEFT_PENDING;
}

// A slow window makes the thread time every poll for a while (a precise
// run); the histogram's sample must still be every 64th poll by count, not
// one more after each run (e0b395f's first version sampled the poll right
// after the run's start and right after its end).
TEST(Metrics, TheHistogramSampleStaysByCountAcrossSlowWindows) {
    weft_runtime* rt = new_runtime(1);
    ASSERT_NE(rt, nullptr);
    if (!histogram_recorded(rt)) {
        EXPECT_EQ(weft_runtime_free(rt), 0);
        GTEST_SKIP() << "pulse is off or compiled out";
    }
    uint64_t polls = 0;
    for (int round = 0; round < 3; round++) {
        // Longer than slow_poll_ns (1 ms): the window around it is slow.
        SlowThenYield s{3000000};
        weft_task_desc d;
        std::memset(&d, 0, sizeof d);
        d.size = sizeof d;
        d.poll = poll_slow_then_yield;
        d.data = &s;
        weft_join* j = nullptr;
        ASSERT_EQ(weft_spawn(rt, &d, &j), 0);
        ASSERT_EQ(weft_join_wait(j, -1), 0);
        weft_join_free(j);
        polls += kSlowYields + 1;
    }
    wait_histogram_caught_up(rt);
    weft_worker_metrics_ex x = worker_snapshot(rt, 0);
    EXPECT_EQ(x.polls, polls);
    EXPECT_EQ(hist_sum(x.poll_hist), sampled(x.polls)) << "one sample every " << WEFT_POLL_HIST_SAMPLE_EVERY
                                                       << " polls, slow windows or not";
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

TEST(Metrics, PulseOffRecordsNoPollTimes) {
    weft_pulse_config pc;
    weft_pulse_config_init(&pc);
    pc.mode = WEFT_PULSE_OFF;
    weft_runtime* rt = new_runtime(2, "mtest", &pc);
    ASSERT_NE(rt, nullptr);
    EXPECT_FALSE(histogram_recorded(rt));
    uint64_t expected = run_tasks(rt, 100, 2);
    weft_metrics m = snapshot(rt);
    EXPECT_EQ(m.polls, expected);
    EXPECT_EQ(hist_sum(m.poll_hist), 0u);
    EXPECT_EQ(m.budget_yields, 0u);
    EXPECT_EQ(m.tier_changes, 0u);
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

TEST(Metrics, BucketBounds) {
    EXPECT_EQ(weft_poll_hist_lower_ns(0), 0u);
    EXPECT_EQ(weft_poll_hist_upper_ns(0), 256u);
    for (uint32_t i = 1; i + 1 < WEFT_POLL_HIST_BUCKETS; i++) {
        EXPECT_EQ(weft_poll_hist_lower_ns(i), weft_poll_hist_upper_ns(i - 1));
        EXPECT_EQ(weft_poll_hist_upper_ns(i), 2 * weft_poll_hist_lower_ns(i));
    }
    EXPECT_EQ(weft_poll_hist_lower_ns(WEFT_POLL_HIST_BUCKETS - 1), (uint64_t)1 << 30);
    EXPECT_EQ(weft_poll_hist_upper_ns(WEFT_POLL_HIST_BUCKETS - 1), UINT64_MAX);
    EXPECT_EQ(weft_poll_hist_upper_ns(WEFT_POLL_HIST_BUCKETS), UINT64_MAX);
    EXPECT_EQ(weft_poll_hist_lower_ns(WEFT_POLL_HIST_BUCKETS), 0u);
}

// ---- versioning -------------------------------------------------------------------

// A caller built against a later header: its struct is bigger. weft fills
// its own fields, leaves the tail alone and says how much it filled.
TEST(Metrics, BiggerStructsAreFilledUpToWeftsSize) {
    weft_runtime* rt = new_runtime(2);
    run_tasks(rt, 10, 0);
    struct Later {
        weft_metrics m;
        uint64_t newer_field[4];
    } later;
    std::memset(&later, 0xAB, sizeof later);
    later.m.size = sizeof later;
    ASSERT_EQ(weft_runtime_metrics(rt, &later.m), 0);
    EXPECT_EQ(later.m.size, sizeof(weft_metrics));
    EXPECT_EQ(later.m.workers, 2u);
    EXPECT_GE(later.m.polls, 10u);
    for (uint64_t v : later.newer_field) EXPECT_EQ(v, 0xABABABABABABABABull) << "the tail is the caller's";

    struct LaterEx {
        weft_worker_metrics_ex m;
        uint64_t newer_field[4];
    } later_ex;
    std::memset(&later_ex, 0xCD, sizeof later_ex);
    later_ex.m.size = sizeof later_ex;
    ASSERT_EQ(weft_runtime_worker_metrics_ex(rt, 1, &later_ex.m), 0);
    EXPECT_EQ(later_ex.m.size, sizeof(weft_worker_metrics_ex));
    EXPECT_EQ(later_ex.m.worker, 1u);
    EXPECT_EQ(later_ex.m._reserved, 0u);
    for (uint64_t v : later_ex.newer_field) EXPECT_EQ(v, 0xCDCDCDCDCDCDCDCDull);

    // Smaller than the first version: refused, nothing written.
    weft_metrics m;
    std::memset(&m, 0xEE, sizeof m);
    m.size = sizeof m - sizeof(uint64_t);
    EXPECT_EQ(weft_runtime_metrics(rt, &m), WEFT_EVERSION);
    EXPECT_EQ(m.size, sizeof m - sizeof(uint64_t));
    EXPECT_EQ(m.polls, 0xEEEEEEEEEEEEEEEEull);
    m.size = 0;
    EXPECT_EQ(weft_runtime_metrics(rt, &m), WEFT_EVERSION);
    weft_worker_metrics_ex x;
    std::memset(&x, 0, sizeof x);
    x.size = sizeof x - 1;
    EXPECT_EQ(weft_runtime_worker_metrics_ex(rt, 0, &x), WEFT_EVERSION);
    x.size = sizeof(size_t);
    EXPECT_EQ(weft_runtime_worker_metrics_ex(rt, 0, &x), WEFT_EVERSION);
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// ---- bad input ----------------------------------------------------------------------

TEST(Metrics, BadInputGetsACode) {
    weft_runtime* rt = new_runtime(2);
    // Something that is not a runtime: zeros (the magic does not match),
    // and a pointer no runtime can have (misaligned).
    alignas(4096) static unsigned char junk[8192];
    std::memset(junk, 0, sizeof junk);
    weft_runtime* fake = reinterpret_cast<weft_runtime*>(junk);
    weft_runtime* odd = reinterpret_cast<weft_runtime*>(junk + 8);

    weft_metrics m;
    std::memset(&m, 0, sizeof m);
    m.size = sizeof m;
    EXPECT_EQ(weft_runtime_metrics(nullptr, &m), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_metrics(fake, &m), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_metrics(odd, &m), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_metrics(rt, nullptr), WEFT_EINVAL);

    weft_worker_metrics_ex x;
    std::memset(&x, 0, sizeof x);
    x.size = sizeof x;
    EXPECT_EQ(weft_runtime_worker_metrics_ex(nullptr, 0, &x), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_worker_metrics_ex(fake, 0, &x), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_worker_metrics_ex(odd, 0, &x), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_worker_metrics_ex(rt, 0, nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_worker_metrics_ex(rt, 2, &x), WEFT_EINVAL);
    EXPECT_EQ(weft_runtime_worker_metrics_ex(rt, UINT32_MAX, &x), WEFT_EINVAL);

    char buf[64];
    size_t len = 12345;
    EXPECT_EQ(weft_metrics_prometheus(nullptr, buf, sizeof buf, &len), WEFT_EINVAL);
    EXPECT_EQ(weft_metrics_prometheus(fake, buf, sizeof buf, &len), WEFT_EINVAL);
    EXPECT_EQ(weft_metrics_prometheus(odd, buf, sizeof buf, &len), WEFT_EINVAL);
    EXPECT_EQ(weft_metrics_prometheus(rt, buf, sizeof buf, nullptr), WEFT_EINVAL);
    EXPECT_EQ(weft_metrics_prometheus(rt, nullptr, 10, &len), WEFT_EINVAL);
    EXPECT_EQ(len, 12345u) << "nothing written on EINVAL";
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// ---- Prometheus text ----------------------------------------------------------------

TEST(Metrics, PrometheusTextParsesAndAgreesWithTheSnapshot) {
    weft_runtime* rt = new_runtime(2);
    run_tasks(rt, 200, 4);
    const bool recorded = histogram_recorded(rt);
    if (recorded) wait_histogram_caught_up(rt);
    weft_metrics m = snapshot(rt);
    std::string text = prometheus(rt);
    Parsed p = parse(text);
    if (HasFatalFailure()) {
        weft_runtime_free(rt);
        return;
    }

    // The families, in this order, each with HELP and TYPE.
    std::vector<std::string> want(std::begin(kCounters), std::end(kCounters));
    want.push_back("weft_remote_wakes_total");
    want.push_back("weft_poll_duration_seconds");
    EXPECT_EQ(p.family_order, want);
    for (const std::string& f : want) {
        EXPECT_TRUE(p.families[f].help) << f;
        EXPECT_EQ(p.families[f].type, f == "weft_poll_duration_seconds" ? "histogram" : "counter") << f;
    }

    // Counters: one sample per worker, labelled, with integer values.
    std::map<std::string, std::set<std::string>> workers_seen;
    uint64_t polls_total = 0;
    uint64_t remote_wakes = 0;
    int remote_samples = 0;
    // Histogram per worker: bucket values in order, _sum, _count.
    std::map<std::string, std::vector<std::pair<std::string, double>>> buckets;
    std::map<std::string, double> sums, counts;
    for (const Sample& s : p.samples) {
        SCOPED_TRACE(s.name);
        EXPECT_EQ(s.labels.at("runtime"), "mtest");
        if (s.name == "weft_remote_wakes_total") {
            EXPECT_EQ(s.labels.size(), 1u);
            remote_wakes = std::strtoull(s.value_text.c_str(), nullptr, 10);
            remote_samples++;
            continue;
        }
        ASSERT_EQ(s.labels.count("worker"), 1u);
        const std::string& w = s.labels.at("worker");
        EXPECT_TRUE(w == "0" || w == "1") << w;
        if (s.name == "weft_poll_duration_seconds_bucket") {
            EXPECT_EQ(s.labels.size(), 3u);
            buckets[w].push_back({s.labels.at("le"), s.value});
        } else if (s.name == "weft_poll_duration_seconds_sum") {
            EXPECT_EQ(s.labels.size(), 2u);
            sums[w] = s.value;
        } else if (s.name == "weft_poll_duration_seconds_count") {
            EXPECT_EQ(s.labels.size(), 2u);
            counts[w] = s.value;
        } else {
            EXPECT_EQ(s.labels.size(), 2u);
            EXPECT_EQ(s.value_text.find_first_not_of("0123456789"), std::string::npos) << s.value_text;
            EXPECT_TRUE(workers_seen[s.name].insert(w).second) << "one sample per worker";
            if (s.name == "weft_polls_total") polls_total += std::strtoull(s.value_text.c_str(), nullptr, 10);
        }
    }
    for (const char* c : kCounters) EXPECT_EQ(workers_seen[c].size(), 2u) << c;
    EXPECT_EQ(workers_seen.size(), std::size(kCounters));
    EXPECT_EQ(remote_samples, 1);
    EXPECT_EQ(polls_total, m.polls) << "the runtime is idle: polls no longer move";
    EXPECT_GE(remote_wakes, m.remote_wakes);
    EXPECT_GE(remote_wakes, 204u);

    double count_total = 0;
    ASSERT_EQ(buckets.size(), 2u);
    for (auto& [w, bs] : buckets) {
        SCOPED_TRACE("worker " + w);
        ASSERT_EQ(bs.size(), (size_t)WEFT_POLL_HIST_BUCKETS);
        double prev_le = 0, prev = 0;
        for (int i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) {
            const std::string& le = bs[i].first;
            if (i + 1 < WEFT_POLL_HIST_BUCKETS) {
                double v = std::strtod(le.c_str(), nullptr);
                EXPECT_GT(v, prev_le) << "le grows";
                // The upper bound of bucket i, in seconds.
                double want_le = (double)weft_poll_hist_upper_ns((uint32_t)i) * 1e-9;
                EXPECT_NEAR(v, want_le, want_le * 1e-12) << le;
                prev_le = v;
            } else {
                EXPECT_EQ(le, "+Inf");
            }
            EXPECT_GE(bs[i].second, prev) << "buckets are cumulative";
            prev = bs[i].second;
        }
        ASSERT_EQ(counts.count(w), 1u);
        ASSERT_EQ(sums.count(w), 1u);
        EXPECT_EQ(bs.back().second, counts[w]) << "+Inf equals _count";
        EXPECT_GE(sums[w], 0.0);
        if (counts[w] == 0) {
            EXPECT_EQ(sums[w], 0.0);
        }
        // The estimate lies between the buckets' lower and upper bounds.
        double lo = 0, hi = 0, below = 0;
        for (int i = 0; i < WEFT_POLL_HIST_BUCKETS; i++) {
            double n = bs[i].second - below;
            below = bs[i].second;
            lo += n * (double)weft_poll_hist_lower_ns((uint32_t)i) * 1e-9;
            hi += n * (i + 1 < WEFT_POLL_HIST_BUCKETS ? (double)weft_poll_hist_upper_ns((uint32_t)i) * 1e-9
                                                       : (double)weft_poll_hist_lower_ns((uint32_t)i) * 1e-9);
        }
        // Arithmetic on the rendered text, not a measured time: the _sum
        // estimate must lie between its own buckets' bounds times their counts.
        EXPECT_GE(sums[w], lo * (1 - 1e-9));
        EXPECT_LE(sums[w], hi * (1 + 1e-9));
        count_total += counts[w];
    }
    EXPECT_EQ(count_total, (double)hist_sum(m.poll_hist));
    if (recorded) {
        uint64_t want = 0;
        for (uint32_t w = 0; w < m.workers; w++) want += sampled(worker_snapshot(rt, w).polls);
        EXPECT_EQ(count_total, (double)want) << "_count is the sampled polls";
    }
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

// Too small a buffer: WEFT_EAGAIN, the exact length, and "" in the buffer.
TEST(Metrics, PrometheusBufferSizing) {
    weft_runtime* rt = new_runtime(2);
    run_tasks(rt, 20, 0);
    if (histogram_recorded(rt)) wait_histogram_caught_up(rt);
    // An idle runtime's counters may still move (a worker parking), so each
    // check is repeated until the text was the same before and after it.
    bool checked = false;
    for (int attempt = 0; attempt < 1000 && !checked; attempt++) {
        std::string before = prometheus(rt);
        const size_t n = before.size();

        size_t query = 0;
        int rq = weft_metrics_prometheus(rt, nullptr, 0, &query);

        std::string small(n, '\x7f');  // one byte short: no room for the NUL
        size_t small_len = 0;
        int rs = weft_metrics_prometheus(rt, small.data(), small.size(), &small_len);

        std::string tiny(1, '\x7f');
        size_t tiny_len = 0;
        int rt1 = weft_metrics_prometheus(rt, tiny.data(), tiny.size(), &tiny_len);

        std::string exact(n + 1, '\x7f');
        size_t exact_len = 0;
        int re = weft_metrics_prometheus(rt, exact.data(), exact.size(), &exact_len);

        std::string after = prometheus(rt);
        if (before != after) continue;
        checked = true;
        EXPECT_EQ(rq, WEFT_EAGAIN);
        EXPECT_EQ(query, n);
        EXPECT_EQ(rs, WEFT_EAGAIN);
        EXPECT_EQ(small_len, n);
        EXPECT_EQ(small[0], '\0') << "no half a text";
        EXPECT_EQ(rt1, WEFT_EAGAIN);
        EXPECT_EQ(tiny_len, n);
        EXPECT_EQ(tiny[0], '\0');
        EXPECT_EQ(re, 0);
        EXPECT_EQ(exact_len, n);
        EXPECT_EQ(exact.substr(0, n), before);
        EXPECT_EQ(exact[n], '\0');
    }
    EXPECT_TRUE(checked) << "the text never held still";
    EXPECT_EQ(weft_runtime_free(rt), 0);
}

std::string runtime_label(weft_runtime* rt) {
    Parsed p = parse(prometheus(rt));
    EXPECT_FALSE(p.samples.empty());
    std::set<std::string> values;
    for (const Sample& s : p.samples) values.insert(s.labels.at("runtime"));
    EXPECT_EQ(values.size(), 1u);
    return values.empty() ? std::string() : *values.begin();
}

// The runtime name is user text: \ " and newline are escaped, and bytes
// that are not UTF-8 (here also a character cut in half by the 11-byte
// limit) become U+FFFD.
TEST(Metrics, PrometheusEscapesTheRuntimeName) {
    {
        weft_runtime* rt = new_runtime(1, "a\"b\\c\nd\xff");
        ASSERT_NE(rt, nullptr);
        std::string text = prometheus(rt);
        EXPECT_NE(text.find("runtime=\"a\\\"b\\\\c\\nd\xEF\xBF\xBD\""), std::string::npos) << text.substr(0, 400);
        EXPECT_EQ(runtime_label(rt), "a\"b\\c\nd\xEF\xBF\xBD");
        EXPECT_EQ(weft_runtime_free(rt), 0);
    }
    {
        // 10 ASCII bytes + "é" (2 bytes): the runtime keeps 11, half the é.
        weft_runtime* rt = new_runtime(1, "abcdefghij\xC3\xA9");
        ASSERT_NE(rt, nullptr);
        EXPECT_EQ(runtime_label(rt), "abcdefghij\xEF\xBF\xBD");
        EXPECT_EQ(weft_runtime_free(rt), 0);
    }
    {
        // Valid multi-byte UTF-8 passes through.
        weft_runtime* rt = new_runtime(1, "w\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
        ASSERT_NE(rt, nullptr);
        EXPECT_EQ(runtime_label(rt), "w\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
        EXPECT_EQ(weft_runtime_free(rt), 0);
    }
}

}  // namespace
