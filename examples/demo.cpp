// examples/demo.cpp — a short tour of weft, run by `make run`.
//
// It starts a weft::Runtime and runs the scheduling workloads that bench/
// measures (shared/BENCHMARKS.md), each with a check of its result:
//
//   spawn_many_local   a task spawns many small tasks and awaits them all
//   spawn_many_remote  the main thread (outside the runtime) spawns them
//   yield_many         tasks that yield to the scheduler over and over
//   chained_spawn      each task spawns the next, a long chain
//   skynet             a tree of tasks, fan-out 10, depth 6: 1,111,111 tasks
//   timers             100,000 tasks sleep 0-10 ms each; how late did they wake?
//   starvation         a ticker sleeps 1 ms over and over while one CPU hog per
//                      worker spins 100 ms without awaiting: once with pulse
//                      (weft's preemption) off, once on; how late did it tick?
//   tcp_echo           an echo server and its clients on loopback
//   tpc_shards         the thread-per-core executor: one shard per worker, each
//                      spawning tasks on its own thread, then a token passed
//                      round the shards (every hop a cross-thread wake)
//
// Each scene repeats its workload for about a second (the tour takes about
// six seconds; starvation runs once), then a table shows the median round of
// each, and the demo exits nonzero if any check failed.
//
//   demo [--workers N] [--quick]
//
// --workers N sets the number of worker threads (default 2); --quick runs one
// round of tiny sizes in well under a second (the test suite runs it that way).
//
// tcp_echo runs an echo server and its clients on loopback, all in the runtime
// (io_uring, or epoll where io_uring cannot be used); tpc_shards runs on a
// weft::tpc::ShardSet beside it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include <weft/io.hpp>
#include <weft/sync.hpp>
#include <weft/tpc.hpp>
#include <weft/weft.hpp>

namespace {

// ---- the workloads -----------------------------------------------------------
// Each is ordinary weft code: coroutines returning weft::Task<T>, spawned with
// weft::spawn (from inside a task) or Runtime::spawn (from outside).

// The smallest useful task: bump a shared counter. The counter outlives every
// task that uses it, because whoever spawns them waits for all of them.
weft::Task<void> bump(std::atomic<uint64_t>& counter) {
    counter.fetch_add(1, std::memory_order_relaxed);
    co_return;
}

// Inside a task: spawn n tasks, then await every join handle.
weft::Task<uint64_t> spawn_many_local(uint64_t n) {
    std::atomic<uint64_t> counter{0};
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(n);
    for (uint64_t i = 0; i < n; i++) handles.push_back(weft::spawn(bump(counter)));
    for (auto& h : handles) co_await h;
    co_return counter.load();
}

// From the main thread, which is not a worker: spawn n tasks, then block on
// each join handle.
uint64_t spawn_many_remote(weft::Runtime& rt, uint64_t n) {
    std::atomic<uint64_t> counter{0};
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(n);
    for (uint64_t i = 0; i < n; i++) handles.push_back(rt.spawn(bump(counter)));
    for (auto& h : handles) h.join();
    return counter.load();
}

// A task that goes to the back of its worker's queue `yields` times.
weft::Task<uint64_t> yielder(uint64_t yields) {
    uint64_t done = 0;
    for (; done < yields; done++) co_await weft::yield_now();
    co_return done;
}

weft::Task<uint64_t> yield_many(uint64_t tasks, uint64_t yields) {
    std::vector<weft::JoinHandle<uint64_t>> handles;
    for (uint64_t i = 0; i < tasks; i++) handles.push_back(weft::spawn(yielder(yields)));
    uint64_t total = 0;
    for (auto& h : handles) total += co_await h;
    co_return total;
}

// Each link spawns the next and awaits it; the last link completes first and
// its result ripples back up the chain. Returns the number of links.
weft::Task<uint64_t> chain(uint64_t left) {
    if (left == 0) co_return 0;
    auto next = weft::spawn(chain(left - 1));
    co_return 1 + co_await next;
}

// Skynet: a node of `size` leaves spawns 10 children of size/10 and sums
// what they return; a leaf returns its number. The sum over leaves
// 0 .. size-1 is size * (size - 1) / 2. The children are spawned as one
// fork-join batch: each is its own task, run depth-first on this worker
// unless an idle worker steals it, and the parent wakes once, when the last
// one finishes.
weft::Task<uint64_t> skynet(uint64_t num, uint64_t size) {
    if (size == 1) co_return num;
    weft::ForkJoin<uint64_t> children(10);
    for (uint64_t i = 0; i < 10; i++) children.spawn(skynet(num + i * (size / 10), size / 10));
    co_await children;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < 10; i++) sum += children[i];
    co_return sum;
}

// Timers: each task sleeps until a deadline and records how late it woke
// (weft never wakes a timer early; its wheel has 1 ms ticks, so up to about
// a millisecond late is by design).
struct Lateness {
    std::vector<uint64_t> ns;  // one slot per task
    std::atomic<uint64_t> early{0};
};

weft::Task<void> sleeper(std::chrono::microseconds d, uint64_t* late, std::atomic<uint64_t>* early) {
    auto deadline = weft::clock::now() + d;
    co_await weft::sleep_until(deadline);
    auto now = weft::clock::now();
    if (now < deadline) early->fetch_add(1, std::memory_order_relaxed);
    *late = now > deadline ? (uint64_t)(now - deadline).count() : 0;
}

weft::Task<void> sleep_many(uint64_t n, Lateness* out) {
    uint64_t x = 88172645463325252ull;  // xorshift64, as in the benchmark
    std::vector<weft::JoinHandle<void>> handles;
    handles.reserve(n);
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        handles.push_back(weft::spawn(sleeper(std::chrono::microseconds(x % 10000), &out->ns[i], &out->early)));
    }
    for (auto& h : handles) co_await h;
}

// Starvation: a ticker sleeps 1 ms, `ticks` times, and records how late each
// tick woke, while CPU hogs spin for a while without ever awaiting, so each
// hog's whole spin is one poll. With one hog per worker every worker is stuck
// inside a hog: with pulse off nothing fires the ticker's timer until a hog
// finishes. With pulse on (the default) a monitor thread sees a worker stuck
// in one poll for 10 ms and hands its queues and timers to a spare thread,
// which wakes the ticker.
constexpr auto kTick = std::chrono::milliseconds(1);

weft::Task<void> ticker(uint64_t ticks, uint64_t* late, std::atomic<uint64_t>* early) {  // late[ticks], ns
    for (uint64_t i = 0; i < ticks; i++) {
        auto deadline = weft::clock::now() + kTick;
        co_await weft::sleep_until(deadline);
        auto now = weft::clock::now();
        if (now < deadline) early->fetch_add(1, std::memory_order_relaxed);
        late[i] = now > deadline ? (uint64_t)(now - deadline).count() : 0;
    }
}

weft::Task<void> hog(std::chrono::milliseconds spin) {
    auto end = weft::clock::now() + spin;
    while (weft::clock::now() < end) {
    }
    co_return;
}

struct Starvation {
    uint32_t hogs = 0;
    uint64_t ticks = 0;       // ticks recorded
    uint64_t early = 0;       // ticks that woke before their deadline (must be 0)
    double max_ms = 0;        // the latest tick
    double p99_ms = 0;        // nearest rank
    uint64_t handoffs = 0;     // stuck workers whose queues went to a spare thread
    uint64_t refused = 0;      // ... that found no spare thread left
    bool handoff_possible = false;
    std::string handoff_note;  // why not, from weft_runtime_pulse_status
};

// On a fresh runtime of `workers` workers with pulse on or off: spawn the
// ticker, then one hog per worker; wait for all of them. What pulse did
// comes from the runtime's metrics (weft_metrics.h).
Starvation starve(uint32_t workers, bool pulse_on, uint64_t ticks, std::chrono::milliseconds spin) {
    weft::PulseConfig pulse;
    pulse.c.mode = pulse_on ? WEFT_PULSE_ON : WEFT_PULSE_OFF;
    weft_runtime_config cfg;
    weft_runtime_config_init(&cfg);
    cfg.workers = workers;
    cfg.pulse = &pulse.c;
    weft::Runtime rt(cfg);

    Starvation s;
    s.hogs = rt.workers();
    std::vector<uint64_t> late(ticks);
    std::atomic<uint64_t> early{0};
    auto tick = rt.spawn(ticker(ticks, late.data(), &early));
    std::vector<weft::JoinHandle<void>> hogs;
    for (uint32_t i = 0; i < s.hogs; i++) hogs.push_back(rt.spawn(hog(spin)));
    for (auto& h : hogs) h.join();
    tick.join();

    std::sort(late.begin(), late.end());
    s.ticks = late.size();
    s.early = early.load();
    s.max_ms = (double)late.back() / 1e6;
    s.p99_ms = (double)late[(late.size() * 99 + 99) / 100 - 1] / 1e6;  // nearest rank: ceil(0.99 n) - 1
    weft_metrics m{};
    m.size = sizeof m;
    if (weft_runtime_metrics(rt.get(), &m) == 0) {
        s.handoffs = m.handoffs;
        s.refused = m.handoffs_refused;
    }
    weft_pulse_status st{};
    st.size = sizeof st;
    if (weft_runtime_pulse_status(rt.get(), &st) == 0) {
        s.handoff_possible = st.handoff != 0;
        s.handoff_note = st.handoff_note ? st.handoff_note : "";
    }
    return s;
}

// ---- sizes -------------------------------------------------------------------

struct Sizes {
    uint64_t spawn_tasks;     // spawn_many_local and spawn_many_remote
    uint64_t yield_tasks;     // yield_many: tasks ...
    uint64_t yields;          // ... each yielding this many times
    uint64_t chain_links;     // chained_spawn
    unsigned skynet_depth;    // skynet: 10^depth leaves
    uint64_t sleepers;        // timers
    uint64_t ticks;           // starvation: the ticker's 1 ms sleeps ...
    std::chrono::milliseconds hog_spin;  // ... while each hog spins this long
    uint64_t echo_conns;      // tcp_echo: connections ...
    uint64_t echo_trips;      // ... each making this many 64-byte round trips
    uint64_t tpc_tasks;       // tpc_shards: local tasks per shard ...
    uint64_t tpc_laps;        // ... and laps of the token round the shards
};
constexpr Sizes kNormal{100'000, 200, 1'000, 1'000, 6, 100'000, 100, std::chrono::milliseconds(100), 64, 200,
                        10'000, 1'000};
constexpr Sizes kQuick{1'000, 20, 100, 100, 4, 1'000, 20, std::chrono::milliseconds(30), 8, 20, 100, 10};

// ---- the thread-per-core executor: shards, local spawns, a token ring ------------

// Waits on `in`, rings `out`, `laps` times; then reports its spawns' count.
weft::Task<void> shard_relay(uint64_t tasks, weft::Notify* in, weft::Notify* out, uint64_t laps,
                             weft::mpsc::Sender<uint64_t> done_arg) {
    auto done = std::move(done_arg);
    // The same coroutine as the spawn_many_local scene: on a shard, weft::spawn
    // is a local spawn (no atomics on that path).
    uint64_t spawned = co_await spawn_many_local(tasks);
    for (uint64_t i = 0; i < laps; i++) {
        co_await in->notified();
        out->notify_one();
    }
    (void)co_await done.send(spawned);
}

// One round: every shard spawns its tasks, then the token goes `laps` times
// round the ring of shards. Returns the tasks counted on all shards.
uint64_t tpc_round(weft::tpc::ShardSet& shards, uint64_t tasks, uint64_t laps) {
    uint32_t n = shards.size();
    std::vector<weft::Notify> bells(n);
    auto [tx, rx] = weft::mpsc::channel<uint64_t>(n);
    for (uint32_t i = 0; i < n; i++) shards.spawn_on(i, shard_relay(tasks, &bells[i], &bells[(i + 1) % n], laps, tx));
    bells[0].notify_one();
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += rx.recv_blocking().value_or(0);
    return total;
}

// ---- I/O: a TCP echo server and its clients, all on the runtime ----------------

weft::Task<void> echo_connection(weft::net::TcpStream s) {
    weft::Buffer buf(4096);
    for (;;) {
        auto n = co_await s.read(buf);
        if (!n.ok() || n.value() == 0) co_return;
        if (!(co_await s.write_all(buf, 0, n.value())).ok()) co_return;
    }
}

weft::Task<void> echo_accept(weft::net::TcpListener* listener, uint64_t conns) {
    std::vector<weft::JoinHandle<void>> served;
    for (uint64_t i = 0; i < conns; i++) {
        auto s = co_await listener->accept();
        if (!s.ok()) break;
        served.push_back(weft::spawn(echo_connection(std::move(s).value())));
    }
    for (auto& h : served) co_await h;
}

// One client: `trips` round trips of 64 bytes, each checked byte for byte.
// Returns the round trips that came back intact.
weft::Task<uint64_t> echo_client(uint16_t port, uint64_t id, uint64_t trips) {
    auto c = co_await weft::net::TcpStream::connect("127.0.0.1", port);
    if (!c.ok()) co_return 0;
    weft::net::TcpStream s = std::move(c).value();
    weft::Buffer out(64), in(64);
    uint64_t good = 0;
    for (uint64_t t = 0; t < trips; t++) {
        for (size_t i = 0; i < 64; i++) static_cast<char*>(out.data())[i] = (char)(id * 31 + t + i);
        if (!(co_await s.write_all(out, 0, 64)).ok()) break;
        size_t got = 0;
        while (got < 64) {
            auto n = co_await s.read(in, got, 64 - got);
            if (!n.ok() || n.value() == 0) co_return good;
            got += n.value();
        }
        good += std::equal(static_cast<char*>(in.data()), static_cast<char*>(in.data()) + 64,
                           static_cast<char*>(out.data()));
    }
    co_return good;
}

weft::Task<uint64_t> tcp_echo(uint64_t conns, uint64_t trips) {
    auto l = weft::net::TcpListener::bind("127.0.0.1", 0);
    if (!l.ok()) co_return 0;
    weft::net::TcpListener listener = std::move(l).value();
    auto server = weft::spawn(echo_accept(&listener, conns));
    std::vector<weft::JoinHandle<uint64_t>> clients;
    for (uint64_t i = 0; i < conns; i++) clients.push_back(weft::spawn(echo_client(listener.local_port(), i, trips)));
    uint64_t good = 0;
    for (auto& c : clients) good += co_await c;
    co_await server;
    co_return good;
}

uint64_t pow10(unsigned n) {
    uint64_t v = 1;
    while (n--) v *= 10;
    return v;
}

// ---- the tour: scenes, a progress line, a table ---------------------------------

// One round of a scene: what it spawned and whether its result checked out.
struct Round {
    uint64_t tasks = 0;  // tasks spawned
    bool ok = false;
    std::string check;   // what was checked, in words
    bool per_task = true;  // false: ns/task means nothing here (shown as -)
};

// A scene: its rounds' median wall time and its last round's check.
struct Result {
    std::string scene;
    Round last;
    int rounds = 0;
    double median_ms = 0;
};

// "[3/5] yield_many ... 130 rounds, done in 1007 ms". On a terminal the line
// also counts rounds while the scene runs (\r updates); otherwise it is
// written once.
class Progress {
public:
    explicit Progress(int total) : total_(total), tty_(isatty(STDOUT_FILENO) == 1) {}

    void start(int index, const std::string& scene) {
        prefix_ = "[" + std::to_string(index) + "/" + std::to_string(total_) + "] " + scene + " ...";
        rounds_ = 0;
        std::printf("%s", prefix_.c_str());
        std::fflush(stdout);
        if (!tty_) return;
        stop_ = false;
        ticker_ = std::thread([this] {
            std::unique_lock lock(mu_);
            while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) {
                std::printf("\r%s round %d", prefix_.c_str(), rounds_.load() + 1);
                std::fflush(stdout);
            }
        });
    }

    void round_done() { rounds_++; }

    void finish(bool ok, double total_ms) {
        if (tty_) {
            {
                std::lock_guard lock(mu_);
                stop_ = true;
            }
            cv_.notify_one();
            ticker_.join();
            std::printf("\r%s", prefix_.c_str());
        }
        // On a terminal, trailing spaces cover what the ticker wrote.
        std::printf(" %d round%s, %s in %.0f ms%s\n", rounds_.load(), rounds_ == 1 ? "" : "s",
                    ok ? "done" : "FAILED", total_ms, tty_ ? "          " : "");
        std::fflush(stdout);
    }

private:
    int total_;
    bool tty_;
    std::string prefix_;
    std::atomic<int> rounds_{0};
    std::thread ticker_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
};

using Ms = std::chrono::duration<double, std::milli>;

// Runs round() again and again for about `budget` (at least min_rounds
// times; stops at the first failed round) and reports the median round.
template <class RoundFn>
Result run_scene(Progress& progress, int index, const char* scene, Ms budget, int min_rounds, RoundFn round) {
    Result r;
    r.scene = scene;
    std::vector<double> walls;
    progress.start(index, scene);
    auto start = std::chrono::steady_clock::now();
    do {
        auto t0 = std::chrono::steady_clock::now();
        try {
            r.last = round();
        } catch (const std::exception& e) {
            r.last.ok = false;
            r.last.check = std::string("threw: ") + e.what();
        }
        walls.push_back(Ms(std::chrono::steady_clock::now() - t0).count());
        progress.round_done();
    } while (r.last.ok && ((int)walls.size() < min_rounds || std::chrono::steady_clock::now() - start < budget));
    r.rounds = (int)walls.size();
    std::sort(walls.begin(), walls.end());
    r.median_ms = walls[walls.size() / 2];
    progress.finish(r.last.ok, Ms(std::chrono::steady_clock::now() - start).count());
    return r;
}

std::string expect(uint64_t got, uint64_t want, const char* what) {
    std::string s = std::to_string(got) + " " + what;
    if (got != want) s += " (expected " + std::to_string(want) + ")";
    return s;
}

void print_table(const std::vector<Result>& results) {
    std::printf("\n%-18s %8s %10s %12s %9s  %s\n", "scene", "rounds", "tasks", "wall/round", "ns/task", "check");
    for (const Result& r : results) {
        double ns_per_task = r.last.tasks ? r.median_ms * 1e6 / (double)r.last.tasks : 0.0;
        char per_task[32] = "-";
        if (r.last.per_task) std::snprintf(per_task, sizeof per_task, "%.1f", ns_per_task);
        std::printf("%-18s %8d %10llu %9.2f ms %9s  %s %s\n", r.scene.c_str(), r.rounds,
                    (unsigned long long)r.last.tasks, r.median_ms, per_task, r.last.ok ? "ok" : "FAILED:",
                    r.last.check.c_str());
    }
    std::printf("(wall/round is the median round; ns/task = wall/round / tasks)\n");
}

// The starvation scene's two runs side by side, and what pulse did.
void print_starvation(const Starvation& off, const Starvation& on, const Sizes& size) {
    std::printf("\nstarvation: %u hog%s spin %lld ms on %u worker%s; a ticker sleeps 1 ms, %llu times\n", on.hogs,
                on.hogs == 1 ? "" : "s", (long long)size.hog_spin.count(), on.hogs, on.hogs == 1 ? "" : "s",
                (unsigned long long)size.ticks);
    std::printf("%-9s %12s %12s %9s\n", "pulse", "max late", "p99 late", "handoffs");
    for (const auto& [name, s] : {std::pair<const char*, const Starvation&>{"off", off}, {"on", on}})
        std::printf("%-9s %9.1f ms %9.1f ms %9llu\n", name, s.max_ms, s.p99_ms, (unsigned long long)s.handoffs);
    if (on.handoffs > 0)
        std::printf("(pulse on: %llu stuck worker%s handed %s queues and timers to %s, so the ticker was at most "
                    "%.1f ms late instead of %.1f ms)\n",
                    (unsigned long long)on.handoffs, on.handoffs == 1 ? "" : "s", on.handoffs == 1 ? "its" : "their",
                    on.handoffs == 1 ? "a spare thread" : "spare threads", on.max_ms, off.max_ms);
    else if (!on.handoff_possible)
        std::printf("(pulse on, but worker handoff is off here: %s)\n",
                    on.handoff_note.empty() ? "no reason given" : on.handoff_note.c_str());
    else
        std::printf("(pulse on: no worker handoff happened%s)\n",
                    on.refused ? "; every spare thread was in use" : "");
}

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: demo [--workers N] [--quick]\n"
                 "  --workers N  worker threads (default 2; 0 = one per CPU)\n"
                 "  --quick      one round of tiny sizes, well under a second\n");
}

}  // namespace

int main(int argc, char** argv) {
    uint32_t workers = 2;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--quick") {
            quick = true;
        } else if (arg == "--workers" && i + 1 < argc) {
            char* end = nullptr;
            long n = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || end == argv[i] || n < 0 || n > 1024) {
                std::fprintf(stderr, "demo: --workers wants a number from 0 to 1024, got '%s'\n", argv[i]);
                return 2;
            }
            workers = (uint32_t)n;
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "demo: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }
    const Sizes& size = quick ? kQuick : kNormal;
    // Each scene repeats for about a second (the whole tour: about 5 s);
    // --quick runs each once.
    const Ms budget(quick ? 0 : 1000);
    const int min_rounds = quick ? 1 : 3;

    try {
        weft::Runtime rt(workers);
        std::printf("weft %s demo: %u worker threads%s\n", weft_version_string(), rt.workers(),
                    quick ? " (--quick)" : "");
        weft_io_status io{};
        io.size = sizeof io;
        if (weft_runtime_io_status(rt.get(), &io) == 0) std::printf("I/O backend: %s\n", io.why);
        std::printf("\n");

        Progress progress(9);
        std::vector<Result> results;
        auto scene = [&](int index, const char* name, auto round) {
            results.push_back(run_scene(progress, index, name, budget, min_rounds, round));
        };

        scene(1, "spawn_many_local", [&] {
            uint64_t n = size.spawn_tasks;
            uint64_t ran = rt.block_on(spawn_many_local(n));
            return Round{n + 1, ran == n, expect(ran, n, "tasks ran")};  // + 1: the spawner
        });

        scene(2, "spawn_many_remote", [&] {
            uint64_t n = size.spawn_tasks;
            uint64_t ran = spawn_many_remote(rt, n);
            return Round{n, ran == n, expect(ran, n, "tasks ran")};
        });

        scene(3, "yield_many", [&] {
            uint64_t want = size.yield_tasks * size.yields;
            uint64_t yields = rt.block_on(yield_many(size.yield_tasks, size.yields));
            return Round{size.yield_tasks + 1, yields == want, expect(yields, want, "yields")};
        });

        scene(4, "chained_spawn", [&] {
            uint64_t n = size.chain_links;
            uint64_t links = rt.block_on(chain(n));
            return Round{n + 1, links == n, expect(links, n, "links")};  // + 1: the last, empty link
        });

        scene(5, "skynet", [&] {
            uint64_t leaves = pow10(size.skynet_depth);
            uint64_t want = leaves * (leaves - 1) / 2;  // 499999500000 at depth 6
            uint64_t sum = rt.block_on(skynet(0, leaves));
            uint64_t tasks = (leaves * 10 - 1) / 9;     // 1 + 10 + ... + leaves
            return Round{tasks, sum == want, "depth " + std::to_string(size.skynet_depth) + ", " +
                                                 expect(sum, want, "= sum of the leaves")};
        });

        scene(6, "timers", [&] {
            Lateness lat;
            lat.ns.resize(size.sleepers);
            rt.block_on(sleep_many(size.sleepers, &lat));
            std::sort(lat.ns.begin(), lat.ns.end());
            double p50 = (double)lat.ns[lat.ns.size() / 2] / 1e6;
            double p99 = (double)lat.ns[lat.ns.size() * 99 / 100] / 1e6;
            char buf[96];
            std::snprintf(buf, sizeof buf, "late p50 %.1f ms, p99 %.1f ms; ", p50, p99);
            uint64_t early = lat.early.load();
            return Round{size.sleepers + 1, early == 0, buf + expect(early, 0, "woke early")};
        });

        // Once (a round is two runtimes, pulse off then on), not for a second.
        Starvation starved_off, starved_on;
        results.push_back(run_scene(progress, 7, "starvation", Ms(0), 1, [&] {
            starved_off = starve(workers, false, size.ticks, size.hog_spin);
            starved_on = starve(workers, true, size.ticks, size.hog_spin);
            // Checked: every tick ran and none woke early. How late they
            // were is reported, not checked: on a loaded machine the OS's
            // own scheduling delays them too (as in the timers scene).
            uint64_t want = 2 * size.ticks;
            uint64_t ticks = starved_off.ticks + starved_on.ticks;
            uint64_t early = starved_off.early + starved_on.early;
            char buf[96];
            std::snprintf(buf, sizeof buf, "late max %.1f ms with pulse, %.1f ms without; ", starved_on.max_ms,
                          starved_off.max_ms);
            // Its time is the spin and the ticks, not per-task work: no ns/task.
            return Round{2 * (1 + (uint64_t)starved_on.hogs), ticks == want && early == 0,
                         buf + expect(ticks, want, "ticks") + ", " + expect(early, 0, "woke early"), false};
        }));

        // After the starvation scene's own runtimes: this one's workers again.
        scene(8, "tcp_echo", [&] {
            uint64_t want = size.echo_conns * size.echo_trips;
            uint64_t good = rt.block_on(tcp_echo(size.echo_conns, size.echo_trips));
            char buf[64];
            std::snprintf(buf, sizeof buf, "%llu connections, ", (unsigned long long)size.echo_conns);
            // A task is a round trip here (client and server side).
            return Round{want, good == want, buf + expect(good, want, "64-byte round trips intact")};
        });

        // The thread-per-core executor: one shard per worker, each on its own
        // thread with its own ready queue and ring.
        weft::tpc::ShardSet shards(workers);
        scene(9, "tpc_shards", [&] {
            uint64_t want = (uint64_t)shards.size() * size.tpc_tasks;
            uint64_t got = tpc_round(shards, size.tpc_tasks, size.tpc_laps);
            char buf[96];
            std::snprintf(buf, sizeof buf, "%u shards, token %llu laps, ", shards.size(),
                          (unsigned long long)size.tpc_laps);
            return Round{want, got == want, buf + expect(got, want, "local tasks")};
        });

        print_table(results);
        if (starved_on.ticks > 0) print_starvation(starved_off, starved_on, size);
        int failed = 0;
        for (const Result& r : results) failed += r.last.ok ? 0 : 1;
        if (failed) {
            std::printf("\n%d of %zu scenes FAILED their check\n", failed, results.size());
            return 1;
        }
        std::printf("\nall %zu checks ok\n", results.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo: %s\n", e.what());
        return 1;
    }
}
