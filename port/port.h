// port/port.h — what the kernel needs from the operating system, and nothing
// more: threads, futex wait/wake, a monotonic clock, the CPU count, a mutex.
// Implemented in port/linux/. No STL, no exceptions; every call that can fail
// returns 0 or a negative errno.
#ifndef WEFT_PORT_PORT_H
#define WEFT_PORT_PORT_H

#include <stdint.h>
#include <stddef.h>
#include <atomic>

namespace weft::port {

// ---- clock -----------------------------------------------------------------
// CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall).
uint64_t monotonic_ns();
// CPU time of the calling thread in nanoseconds (CLOCK_THREAD_CPUTIME_ID:
// a real system call, hundreds of ns; not for hot paths).
uint64_t thread_cpu_ns();

// ---- CPUs --------------------------------------------------------------------
// CPUs this process may run on (sched_getaffinity), at least 1.
unsigned cpu_count();

// ---- process-wide memory barrier (membarrier(2)) ------------------------------
// Registers the process for MEMBARRIER_CMD_PRIVATE_EXPEDITED. false (with a
// sentence in *why) when the kernel or a seccomp filter does not allow it.
bool process_barrier_init(const char** why);
// Every running thread of the process executes a full memory barrier before
// this returns (threads not running pass one when next scheduled); a full
// fence for the caller too. Microseconds: IPIs to the CPUs running our threads.
void process_barrier();

// ---- futex -----------------------------------------------------------------
// Sleeps while *word == expected, at most timeout_ns (negative: forever).
// Returns 0 when woken or when the word already differed, -ETIMEDOUT, -EINTR.
int futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns);
// Wakes up to n threads sleeping on word.
void futex_wake(std::atomic<uint32_t>* word, int n);

// ---- threads ---------------------------------------------------------------
struct Thread {
    unsigned long handle = 0;  // pthread_t
};
// Starts fn(arg) on a new thread with the given name (<= 15 chars shown).
int thread_start(Thread* t, void* (*fn)(void*), void* arg, const char* name);
int thread_join(Thread* t);
// Joins t only if it has exited already: 0, or -EBUSY while it still runs.
int thread_try_join(Thread* t);
// Gives the CPU to another runnable thread (sched_yield).
void thread_yield();
// Pins the calling thread to the nth CPU (counting from 0, modulo their
// number) of those this process may run on. 0 or -errno.
int thread_pin_self(unsigned nth);
// The calling thread's kernel thread id (gettid).
int thread_id();
// Lowers thread `tid` (of this process) to SCHED_IDLE: it then runs only on
// a CPU no other thread wants, and any thread that wakes preempts it at once
// (a lower nice value does not: the kernel lets the running thread finish
// its time slice first, milliseconds). *was receives its policy before.
// Lowering needs no privilege; a real-time or already idle thread is left
// alone (-EPERM, -EALREADY). 0 or -errno.
int thread_lower_to_idle(int tid, int* was);
// Raises the calling thread from SCHED_IDLE back to `was` (SCHED_OTHER or
// SCHED_BATCH; the nice value was kept). The kernel treats an idle thread
// as nice 20 here: it needs CAP_SYS_NICE (in the initial user namespace:
// root in a default Docker container lacks it) or an RLIMIT_NICE of at
// least 20 - its nice value (0 by default: -EPERM). 0 or -errno.
int thread_restore_policy(int was);
// Arranges for fn(arg) to run when the calling thread exits (a pthread key
// destructor; not at exit() of the process, and not for the thread that
// calls exit()). One function for the whole process: every call passes the
// same fn. arg must not be null. False when no key could be made.
bool thread_exit_hook(void (*fn)(void*), void* arg);

// ---- mutex -----------------------------------------------------------------
// A three-state futex mutex (Drepper, "Futexes Are Tricky", mutex3):
// 0 unlocked, 1 locked, 2 locked with possible waiters. Uncontended lock and
// unlock are one atomic each and never enter the kernel. Not recursive.
class Mutex {
public:
    void lock() {
        uint32_t c = 0;
        // acquire: pairs with the release in unlock(), so the protected data
        // written by the previous holder is visible.
        if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed))
            return;
        lock_slow(c);
    }
    bool try_lock() {
        uint32_t c = 0;
        return state_.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed);
    }
    void unlock() {
        // release: publishes the critical section to the next holder.
        if (state_.exchange(0, std::memory_order_release) == 2) futex_wake(&state_, 1);
    }

private:
    void lock_slow(uint32_t c);
    std::atomic<uint32_t> state_{0};
};

class LockGuard {
public:
    explicit LockGuard(Mutex& m) : m_(m) { m_.lock(); }
    ~LockGuard() { m_.unlock(); }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;

private:
    Mutex& m_;
};

// ---- memory ------------------------------------------------------------------
void* alloc(size_t size);                 // malloc; nullptr when out of memory
void* alloc_aligned(size_t size, size_t align);
void free(void* p);

// ---- diagnostics -----------------------------------------------------------
// Writes a line to stderr without allocating (used only on fatal paths).
void write_stderr(const char* msg);
[[noreturn]] void fatal(const char* msg);

}  // namespace weft::port

#endif
