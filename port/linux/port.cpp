// port/linux/port.cpp — the Linux implementation of port/port.h, written
// against libc and raw syscalls (futex has no libc wrapper).
#include "../port.h"
#include "../../arch/arch.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace weft::port {

uint64_t monotonic_ns() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t thread_cpu_ns() {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

unsigned cpu_count() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return (unsigned)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

int futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts;
    struct timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    // SAFETY: std::atomic<uint32_t> is a plain 32-bit word (static_assert below),
    // which is what FUTEX_WAIT reads atomically in the kernel.
    long r = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, tsp, nullptr, 0);
    if (r == 0) return 0;
    if (errno == EAGAIN) return 0;
    return -errno;
}
static_assert(sizeof(std::atomic<uint32_t>) == 4, "futex word is 32 bits");

void futex_wake(std::atomic<uint32_t>* word, int n) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

int thread_start(Thread* t, void* (*fn)(void*), void* arg, const char* name) {
    pthread_t th;
    int r = pthread_create(&th, nullptr, fn, arg);
    if (r != 0) return -r;
    if (name) {
        char buf[16];
        size_t n = strlen(name);
        if (n > 15) n = 15;
        memcpy(buf, name, n);
        buf[n] = 0;
        pthread_setname_np(th, buf);
    }
    t->handle = (unsigned long)th;
    return 0;
}

int thread_join(Thread* t) {
    int r = pthread_join((pthread_t)t->handle, nullptr);
    return -r;
}

int thread_try_join(Thread* t) { return -pthread_tryjoin_np((pthread_t)t->handle, nullptr); }

void thread_yield() { sched_yield(); }

namespace {
pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
// Written once by make_exit_key; pthread_once orders that before every
// caller's reads.
pthread_key_t exit_key;
bool exit_key_ok = false;
// Stored by every thread_exit_hook call (all pass the same fn) before the
// thread's value is set, so a thread's destructor reads it after its own store.
std::atomic<void (*)(void*)> exit_fn{nullptr};
void exit_key_dtor(void* arg) { exit_fn.load(std::memory_order_relaxed)(arg); }
void make_exit_key() { exit_key_ok = pthread_key_create(&exit_key, exit_key_dtor) == 0; }
}  // namespace

bool thread_exit_hook(void (*fn)(void*), void* arg) {
    exit_fn.store(fn, std::memory_order_relaxed);
    pthread_once(&exit_key_once, make_exit_key);
    return exit_key_ok && pthread_setspecific(exit_key, arg) == 0;
}

int thread_pin_self(unsigned nth) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return -errno;
    int n = CPU_COUNT(&allowed);
    if (n <= 0) return -EINVAL;
    unsigned want = nth % (unsigned)n, seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (seen++ != want) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return -pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    }
    return -EINVAL;
}

int thread_id() { return (int)syscall(SYS_gettid); }

int thread_lower_to_idle(int tid, int* was) {
    int policy = sched_getscheduler(tid);
    if (policy < 0) return -errno;
    if (policy == SCHED_IDLE) return -EALREADY;
    if (policy != SCHED_OTHER && policy != SCHED_BATCH) return -EPERM;  // real-time: not ours to lower
    struct sched_param sp {};
    if (sched_setscheduler(tid, SCHED_IDLE, &sp) != 0) return -errno;
    *was = policy;
    return 0;
}

int thread_restore_policy(int was) {
    struct sched_param sp {};
    return sched_setscheduler(0, was, &sp) == 0 ? 0 : -errno;
}

void Mutex::lock_slow(uint32_t c) {
    // Critical sections in weft are a few dozen instructions: spin a little
    // (reads only) before paying for a futex sleep and wake-up.
    for (int i = 0; i < 100 && c != 0; i++) {
        weft_arch_cpu_relax();
        c = state_.load(std::memory_order_relaxed);
        if (c == 0) {
            uint32_t z = 0;
            if (state_.compare_exchange_strong(z, 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
            c = z;
        }
    }
    // c is 1 or 2: somebody holds it. Mark it contended (2) and sleep until
    // we take it in the contended state (we cannot know whether others wait).
    if (c != 2) c = state_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
        futex_wait(&state_, 2, -1);
        c = state_.exchange(2, std::memory_order_acquire);
    }
}

void* alloc(size_t size) { return malloc(size); }
void* alloc_aligned(size_t size, size_t align) {
    void* p = nullptr;
    if (align < sizeof(void*)) align = sizeof(void*);
    if (posix_memalign(&p, align, size) != 0) return nullptr;
    return p;
}
void free(void* p) { ::free(p); }

void write_stderr(const char* msg) {
    size_t n = strlen(msg);
    while (n > 0) {
        ssize_t w = write(2, msg, n);
        if (w <= 0) return;
        msg += w;
        n -= (size_t)w;
    }
}

void fatal(const char* msg) {
    write_stderr("weft: fatal: ");
    write_stderr(msg);
    write_stderr("\n");
    abort();
}

// ---- process-wide memory barrier -------------------------------------------------

namespace {
std::atomic<int> g_barrier{0};  // 0 unknown, 1 registered, 2 unavailable
const char* g_barrier_why = "";
long membarrier_call(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }
}  // namespace

bool process_barrier_init(const char** why) {
    int s = g_barrier.load(std::memory_order_acquire);
    if (s == 0) {
        long cmds = membarrier_call(MEMBARRIER_CMD_QUERY);
        if (cmds < 0) {
            g_barrier_why = "membarrier(2) is not available (old kernel or a seccomp filter)";
            s = 2;
        } else if (!(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
            g_barrier_why = "membarrier(2) lacks MEMBARRIER_CMD_PRIVATE_EXPEDITED (kernel older than 4.14)";
            s = 2;
        } else if (membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) {
            g_barrier_why = "membarrier(2) refused to register this process";
            s = 2;
        } else {
            s = 1;
        }
        // Racing first callers compute the same answer; registering twice is harmless.
        g_barrier.store(s, std::memory_order_release);
    }
    *why = s == 1 ? "" : g_barrier_why;
    return s == 1;
}

void process_barrier() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace weft::port
