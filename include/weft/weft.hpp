// weft.hpp — C++20 wrappers over the C ABI (weft.h): RAII handles,
// coroutine tasks, awaitable join handles. Header-only; uses the standard
// library freely. No exception ever crosses into the C ABI: a coroutine's
// exception is caught by its promise and rethrown from its JoinHandle.
//
//   weft::Runtime rt(2);
//   int v = rt.block_on([]() -> weft::Task<int> {
//       auto h = weft::spawn([]() -> weft::Task<int> { co_return 41; }());
//       co_return co_await h + 1;
//   }());
//
// Memory: a Task's coroutine frame lives in the kernel task's state (after a
// small result box): one allocation per task, from the calling worker's pool
// (weft_task_alloc). A spawned task's frame is destroyed when it completes.
#ifndef WEFT_WEFT_HPP
#define WEFT_WEFT_HPP

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <atomic>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "weft.h"

namespace weft {

// A weft error code as an exception (for the wrappers' unexpected failures:
// a spawn on a closed runtime, an aborted task's result).
class Error : public std::runtime_error {
public:
    explicit Error(int code, const std::string& what)
        : std::runtime_error(what + ": " + weft_strerror(code)), code_(code) {}
    int code() const noexcept { return code_; }

private:
    int code_;
};

// Thrown from a JoinHandle whose task was cancelled.
class Cancelled : public Error {
public:
    Cancelled() : Error(WEFT_ECANCELED, "weft: awaited task") {}
};

template <class T = void>
class Task;
template <class T = void>
class JoinHandle;

namespace detail {

// Throws Error(code, what). Out of line and cold: an inline throw builds a
// std::string in the caller, which then saves registers and sets up a frame
// on every call of a hot path (weft::spawn, weft::tpc::spawn).
[[noreturn, gnu::noinline, gnu::cold]] inline void throw_error(int code, const char* what) {
    throw Error(code, what);
}
[[noreturn, gnu::noinline, gnu::cold]] inline void throw_error_suffix(int code, const char* what,
                                                                   const char* suffix) {
    throw Error(code, std::string(what) + suffix);
}

// The context of the task being polled on this thread (set around resume).
inline constinit thread_local weft_context* current_cx = nullptr;

inline weft_context* require_cx(const char* what) {
    weft_context* cx = current_cx;
    if (!cx) throw_error_suffix(WEFT_EINVAL, what, " outside a weft task");
    return cx;
}

// Failure containment (weft.h, "failures"). Call inside a catch handler:
// the current exception's what(), or a fixed text for a non-std exception.
inline const char* current_exception_text() noexcept {
    try {
        throw;
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "an exception not derived from std::exception";
    }
}
// Reports the exception being handled (inside a catch handler) as a failure
// of the given kind; never throws.
inline void report_current_exception(int kind, uint64_t task_id) noexcept {
    weft_failure f{};
    f.size = sizeof f;
    f.kind = kind;
    f.code = WEFT_ETASKFAILED;
    f.task_id = task_id;
    f.message = current_exception_text();
    weft_report_failure(&f);
}

// Set by FinalAwaiter when a frame being destroyed reached its final
// suspend point (see destroy_reporting).
inline constinit thread_local void* dropped_at_final = nullptr;

struct PromiseBase {
    // The outermost promise of this task, and the innermost coroutine that is
    // currently suspended (the one a poll must resume). A Task awaited inline
    // (co_await task) runs in its parent's kernel task.
    PromiseBase* root = this;
    std::coroutine_handle<> leaf;
    std::coroutine_handle<> continuation;  // set when awaited inline
    std::exception_ptr exception;
    bool done = false;
    // Set while the frame is being destroyed (not finished: cancelled,
    // dropped): an exception thrown by a local's destructor then reaches
    // unhandled_exception, and is a drop failure, not the task's result.
    bool dropping = false;

    // Root only: what the suspended awaiter waits for. A task can be polled
    // without its awaiter being ready (a stale or foreign waker, a wake meant
    // for an earlier await); the poll then asks ready(arg, cx), which re-arms
    // the waker and says whether to resume. nullptr: resume on any poll.
    // ready_arg is read only while ready is set (wait_for sets both), so
    // the coroutine's ramp leaves it uninitialised.
    bool (*ready)(void* arg, weft_context* cx) = nullptr;
    void* ready_arg;

    // Set when spawned by a ForkJoin: called once, when the coroutine finishes
    // (cancelled = false) or its frame is destroyed unfinished (true).
    // fork_block and fork_index are read only by fork_done (ForkJoin::spawn
    // sets all three): uninitialised until then.
    void (*fork_done)(PromiseBase* self, bool cancelled) = nullptr;
    void* fork_block;
    std::size_t fork_index;

    ~PromiseBase() {
        if (fork_done) std::exchange(fork_done, nullptr)(this, true);
    }

    // Makes the task's next poll call ready(arg) before resuming.
    template <class P>
    static void wait_for(std::coroutine_handle<P> h, bool (*ready)(void*, weft_context*), void* arg) noexcept {
        PromiseBase* root = h.promise().root;
        root->ready = ready;
        root->ready_arg = arg;
    }

    struct FinalAwaiter {
        bool await_ready() noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            PromiseBase& p = h.promise();
            if (p.dropping) {
                // The frame is being destroyed and a local's destructor
                // threw: the exception went to unhandled_exception (reported)
                // and the coroutine ran on to here instead of finishing the
                // destroy (GCC and Clang both do). It did not finish: no
                // `done`, no fork_done, no continuation (that would resume
                // a parent being destroyed). destroy_reporting destroys the
                // rest (parameters, promise) from this point.
                dropped_at_final = h.address();
                return std::noop_coroutine();
            }
            p.done = true;
            if (p.fork_done) std::exchange(p.fork_done, nullptr)(&p, false);
            if (p.continuation) {
                p.root->leaf = p.continuation;
                return p.continuation;
            }
            return std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };

    std::suspend_always initial_suspend() noexcept { return {}; }
    FinalAwaiter final_suspend() noexcept { return {}; }
    void unhandled_exception() noexcept {
        if (dropping) {
            report_current_exception(WEFT_FAILURE_DROP, weft_task_current_id());
            return;
        }
        exception = std::current_exception();
    }
};

template <class T>
struct Promise;

// Destroys a frame (its promise's `dropping` set when it never finished) and
// reports what its destructors throw: a local's exception arrives through
// unhandled_exception and leaves the frame at its final suspend point
// (FinalAwaiter), so it is destroyed a second time from there; a
// parameter's propagates out of destroy() and is caught here.
inline void destroy_reporting(std::coroutine_handle<> h) noexcept {
    void* prev = std::exchange(dropped_at_final, nullptr);
    try {
        h.destroy();
    } catch (...) {
        report_current_exception(WEFT_FAILURE_DROP, weft_task_current_id());
    }
    if (std::exchange(dropped_at_final, prev) != h.address()) return;
    try {
        h.destroy();
    } catch (...) {
        report_current_exception(WEFT_FAILURE_DROP, weft_task_current_id());
    }
}

// A task's memory (one kernel allocation, its "state"):
//   [ ResultBox<T>, padded to 16 bytes ][ coroutine frame ]
// A spawned task's frame is destroyed as soon as the task completes, after
// its result has been moved into the box: its parameters and whatever they
// own (a channel sender, a lock guard, a file) are released when the task
// finishes, as with a Rust future, not when the join handle goes away. The
// box lives until the kernel frees the task (drop_output), so the join
// handle can still take the result.
// Field order: the pointer first, so that for void and small T the box is 16
// bytes, not 32 (Task<void>'s whole allocation then fits the pool's 256-byte
// class instead of 320: a fifth less memory touched per task).
template <class T>
struct ResultBox {
    std::exception_ptr exception;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
    bool frame_alive = true;
    // The memory belongs to a Task object (never spawned, or awaited
    // inline): the frame's operator delete frees it. Cleared by
    // Task::release (spawn): from then on the kernel frees it, after its
    // drop callback returns.
    bool owned_by_task = true;
    // Set by TaskVTable::poll when the task completed without an exception,
    // as its last touch of the state: the value is in the box. A JoinHandle
    // that sees it takes the result from the box without asking the kernel
    // for the status (JoinHandle::take). release (poll) / acquire (the
    // handle): the value written before it is visible to the handle's
    // thread (on the multi-thread runtime another worker may still be
    // returning from the poll; the handle touches nothing but the box, and
    // the kernel, which holds its own reference, frees the memory only after
    // the handle's weft_join_free). Failed and cancelled tasks never set it:
    // their status comes from the kernel, as before.
    std::atomic<bool> succeeded{false};
};
template <class T>
inline constexpr std::size_t box_bytes = (sizeof(ResultBox<T>) + 15) & ~std::size_t(15);
// SAFETY: weft_task_alloc returns 16-byte aligned state; the box sits at its
// start and the frame box_bytes later (so the frame stays 16-aligned).
template <class T>
ResultBox<T>* box_of_state(void* state) noexcept {
    static_assert(alignof(ResultBox<T>) <= 16, "weft::Task<T> results aligned beyond 16 bytes are not supported");
    return static_cast<ResultBox<T>*>(state);
}
template <class T>
void* frame_of_state(void* state) noexcept {
    return static_cast<char*>(state) + box_bytes<T>;
}
template <class T>
void* state_of_frame(void* frame) noexcept {
    return static_cast<char*>(frame) - box_bytes<T>;
}

// The kernel vtable of a Task<T> spawned as a kernel task.
// SAFETY: from_address(frame) needs the frame to start where operator new's
// block starts. GCC and Clang (and MSVC) lay frames out that way; the frame
// pointer a handle wraps is the allocation itself.
template <class T>
struct TaskVTable {
    static int poll(void* state, weft_context* cx) noexcept {
        auto h = std::coroutine_handle<Promise<T>>::from_address(frame_of_state<T>(state));
        PromiseBase& p = h.promise();
        weft_context* prev = current_cx;
        current_cx = cx;
        if (p.ready) {
            if (!p.ready(p.ready_arg, cx)) {
                current_cx = prev;
                return WEFT_PENDING;  // polled early: the awaiter re-armed its waker
            }
            p.ready = nullptr;
        }
        p.leaf.resume();
        current_cx = prev;
        if (!p.done) return WEFT_PENDING;
        // Finished: keep the result, release everything else now.
        ResultBox<T>* box = box_of_state<T>(state);
        h.promise().move_result_to(*box);
        destroy_finished(h);
        box->frame_alive = false;
        if (!box->exception) {
            box->succeeded.store(true, std::memory_order_release);  // last touch (ResultBox::succeeded)
            return WEFT_READY;
        }
        // Failed: if the task turns out to be detached, the report says what
        // was thrown (weft_task_failure_note copies the text).
        try {
            std::rethrow_exception(box->exception);
        } catch (...) {
            weft_task_failure_note(current_exception_text());
        }
        return WEFT_ETASKFAILED;
    }
    // drop_future (never completed: cancelled, refused) and drop_output
    // (completed; the frame is already gone): the kernel frees the memory
    // after this.
    static void drop(void* state) noexcept {
        ResultBox<T>* box = box_of_state<T>(state);
        if (box->frame_alive) {
            // Never completed (cancelled, refused, dropped at shutdown).
            auto h = std::coroutine_handle<Promise<T>>::from_address(frame_of_state<T>(state));
            h.promise().dropping = true;  // a local's destructor throwing: a drop failure
            destroy_frame(h);
            box->frame_alive = false;
            // The box was never filled (no value, no exception): it owns
            // nothing, so it is left as it is, and a JoinHandle still
            // holding the task may read it (JoinHandle::release).
            return;
        }
        // The result. Its destructor is std::optional's, which is noexcept:
        // a T whose destructor throws ends the program here, as it would in
        // any standard container (weft cannot catch it).
        box->~ResultBox<T>();
    }
    // Destroys the frame (and, through the Task objects it holds, any
    // inline-awaited child frames). operator delete leaves this frame's
    // memory to the kernel. A destructor that throws while the frame is
    // destroyed (a parameter's; a local's goes to unhandled_exception) is
    // reported: the frame's memory is the kernel's, so nothing leaks here.
    static void destroy_frame(std::coroutine_handle<Promise<T>> h) noexcept {
        if (__builtin_expect(h.promise().dropping, 0)) {
            destroy_reporting(h);
        } else {
            destroy_finished(h);
        }
    }
    // A frame that finished (poll saw `done`, so `dropping` is clear): only
    // the parameters and the promise are left.
    static void destroy_finished(std::coroutine_handle<Promise<T>> h) noexcept {
        try {
            h.destroy();
        } catch (...) {
            report_current_exception(WEFT_FAILURE_DROP, weft_task_current_id());
        }
    }
    // drop_output: the task completed, so poll destroyed the frame already;
    // only the result is left. A leaf, unlike drop's frame path.
    static void drop_output(void* state) noexcept {
        ResultBox<T>* box = box_of_state<T>(state);
        if (__builtin_expect(box->frame_alive, 0)) return drop(state);  // not expected: drop handles both
        box->~ResultBox<T>();
    }
    static constexpr weft_task_vtable vtable{poll, drop, drop_output};
};

template <class T>
struct PromiseAlloc : PromiseBase {
    static void* operator new(std::size_t n) {
        void* state = weft_task_alloc(box_bytes<T> + n, &TaskVTable<T>::vtable);
        if (!state) throw std::bad_alloc();
        new (state) ResultBox<T>();
        return frame_of_state<T>(state);
    }
    static void operator delete(void* frame, std::size_t) noexcept {
        void* state = state_of_frame<T>(frame);
        if (!box_of_state<T>(state)->owned_by_task) return;  // a spawned task's memory: the kernel's
        box_of_state<T>(state)->~ResultBox<T>();
        weft_task_free_state(state);
    }
};

template <class T>
struct Promise : PromiseAlloc<T> {
    std::optional<T> value;
    Task<T> get_return_object() noexcept;
    template <class U>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        value.emplace(std::forward<U>(v));
    }
    T take() {
        if (this->exception) std::rethrow_exception(this->exception);
        return std::move(*value);
    }
    // The box is empty (never filled): swapping hands the exception over
    // without releasing the box's (null) one first.
    void move_result_to(ResultBox<T>& box) noexcept {
        box.exception.swap(this->exception);
        if (!value) return;  // threw, or a ForkJoin took it already
        try {
            box.value.emplace(std::move(*value));
        } catch (...) {
            box.exception = std::current_exception();  // T's move constructor threw
        }
    }
};

template <>
struct Promise<void> : PromiseAlloc<void> {
    Task<void> get_return_object() noexcept;
    void return_void() noexcept {}
    void take() {
        if (this->exception) std::rethrow_exception(this->exception);
    }
    void move_result_to(ResultBox<void>& box) noexcept { box.exception.swap(this->exception); }
};

}  // namespace detail

// A lazily started coroutine. Either spawn it (weft::spawn, Runtime::spawn)
// to run it as its own task, or co_await it to run it inline in the caller's
// task.
template <class T>
class [[nodiscard]] Task {
public:
    using promise_type = detail::Promise<T>;
    using handle_type = std::coroutine_handle<promise_type>;

    explicit Task(handle_type h) noexcept : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    ~Task() { reset(); }

    // Inline await: runs the child in the caller's task (no spawn).
    struct Awaiter {
        handle_type h;
        bool await_ready() const noexcept { return !h || h.done(); }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
            detail::PromiseBase& pp = parent.promise();
            detail::PromiseBase& cp = h.promise();
            cp.root = pp.root;
            cp.continuation = parent;
            pp.root->leaf = h;
            return h;
        }
        T await_resume() { return h.promise().take(); }
    };
    Awaiter operator co_await() && noexcept { return Awaiter{h_}; }

    // Gives up ownership of the frame (used by spawn): its memory is the
    // kernel's from now on (weft_task_spawn and friends free it, on failure
    // too), so the frame's operator delete leaves it alone.
    handle_type release() noexcept {
        if (h_) detail::box_of_state<T>(detail::state_of_frame<T>(h_.address()))->owned_by_task = false;
        return std::exchange(h_, {});
    }

private:
    void reset() noexcept {
        if (!h_) return;
        handle_type h = std::exchange(h_, {});
        if (!h.done()) h.promise().dropping = true;
        // What its destructors throw is reported (failure containment,
        // weft.h). If a parameter's destructor threw, operator delete did not
        // run and the frame's memory is lost (C++ gives no way back to it).
        // Never released, so the box says the memory is ours: operator
        // delete frees it.
        detail::destroy_reporting(h);
    }
    handle_type h_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
    auto h = std::coroutine_handle<Promise<T>>::from_promise(*this);
    this->leaf = h;
    return Task<T>(h);
}
inline Task<void> Promise<void>::get_return_object() noexcept {
    auto h = std::coroutine_handle<Promise<void>>::from_promise(*this);
    this->leaf = h;
    return Task<void>(h);
}
}  // namespace detail

// The handle of a spawned task. co_await it inside a task, or join() it from
// a thread outside the runtime. Dropping it detaches the task (it keeps
// running). The result is delivered exactly once.
template <class T>
class [[nodiscard]] JoinHandle {
public:
    JoinHandle() = default;
    explicit JoinHandle(weft_join* j) noexcept : j_(j) {}
    // state: the task's state (what weft_task_spawn was given; the same as
    // weft_join_state(j)), for the completed-task fast path (take()).
    JoinHandle(weft_join* j, void* state) noexcept : j_(j), state_(state) {}
    JoinHandle(JoinHandle&& o) noexcept : j_(std::exchange(o.j_, nullptr)), state_(std::exchange(o.state_, nullptr)) {}
    JoinHandle& operator=(JoinHandle&& o) noexcept {
        if (this != &o) {
            release(j_, state_);
            j_ = std::exchange(o.j_, nullptr);
            state_ = std::exchange(o.state_, nullptr);
        }
        return *this;
    }
    JoinHandle(const JoinHandle&) = delete;
    JoinHandle& operator=(const JoinHandle&) = delete;
    ~JoinHandle() { release(j_, state_); }  // taken or moved-from handles: no call

    bool valid() const noexcept { return j_ != nullptr; }
    // The C handle (still owned by this object).
    weft_join* native_handle() const noexcept { return j_; }
    bool is_finished() const noexcept { return j_ && weft_join_finished(j_) == 1; }
    uint64_t id() const noexcept { return weft_join_task_id(j_); }
    // Requests cancellation; co_await / join() then throws weft::Cancelled.
    void abort() noexcept {
        if (j_) weft_join_abort(j_);
    }
    // Lets the task run on without a handle.
    void detach() noexcept { release(std::exchange(j_, nullptr), std::exchange(state_, nullptr)); }

    bool await_ready() const noexcept { return succeeded() || is_finished(); }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (weft_join_poll(j_, detail::require_cx("co_await JoinHandle")) != WEFT_PENDING) return false;
        detail::PromiseBase::wait_for(h, &ready, this);
        return true;
    }
    T await_resume() { return take(); }

    // Blocks a thread outside the runtime until the task finishes.
    T join() {
        if (!j_) throw Error(WEFT_EINVAL, "weft::JoinHandle::join on an empty handle");
        int r = weft_join_wait(j_, -1);
        if (r != 0) throw Error(r, "weft::JoinHandle::join");
        return take();
    }

private:
    // Frees a handle whose result was not taken. A task that already failed
    // is reported here with what it threw (failure containment, weft.h),
    // through weft_join_report_failure, which marks it read so the kernel
    // does not report it again. One still running is reported by the kernel
    // if it fails later.
    // state (may be null) lets a handle whose task succeeded skip the check.
    static void release(weft_join* j, void* state) noexcept {
        if (!j) return;  // taken or moved from
        bool ok = state && detail::box_of_state<T>(state)->succeeded.load(std::memory_order_acquire);
        if (!ok && weft_join_finished(j) == 1) {
            detail::ResultBox<T>* box = detail::box_of_state<T>(weft_join_state(j));
            if (box->exception) {
                try {
                    std::rethrow_exception(box->exception);
                } catch (...) {
                    weft_join_report_failure(j, detail::current_exception_text());
                }
            }
        }
        weft_join_free(j);
    }
    static bool ready(void* self, weft_context* cx) {
        return weft_join_poll(static_cast<JoinHandle*>(self)->j_, cx) != WEFT_PENDING;
    }
    // Whether the task completed successfully, read from its result box
    // without a call into the kernel (ResultBox::succeeded). false says
    // nothing: not finished, failed, cancelled, or a handle without state_.
    bool succeeded() const noexcept {
        return state_ && detail::box_of_state<T>(state_)->succeeded.load(std::memory_order_acquire);
    }
    T take() {
        if (succeeded()) {
            // Completed with a value (state_ set, so j_ is too): the same
            // result the status path below would deliver (status 0, no
            // exception), without two kernel calls.
            weft_join* j = std::exchange(j_, nullptr);
            void* state = std::exchange(state_, nullptr);
            if constexpr (std::is_void_v<T>) {
                weft_join_free(j);
                return;
            } else {
                struct Free {
                    weft_join* j;
                    ~Free() { weft_join_free(j); }
                } guard{j};
                return std::move(*detail::box_of_state<T>(state)->value);
            }
        }
        return take_status();
    }
    T take_status() {
        if (!j_) throw Error(WEFT_EALREADY, "weft::JoinHandle: result already taken");
        weft_join* j = std::exchange(j_, nullptr);
        state_ = nullptr;
        struct Free {
            weft_join* j;
            ~Free() { weft_join_free(j); }
        } guard{j};
        int st = weft_join_status(j);
        if (st == WEFT_ECANCELED) throw Cancelled();
        // Not finished, or not usable from this thread (a thread-per-core
        // task's handle off its executor's thread): the box holds nothing.
        if (st == WEFT_EAGAIN || st == WEFT_EINVAL) throw Error(st, "weft::JoinHandle");
        detail::ResultBox<T>* box = detail::box_of_state<T>(weft_join_state(j));
        if (box->exception) std::rethrow_exception(box->exception);
        if constexpr (!std::is_void_v<T>) return std::move(*box->value);
    }
    weft_join* j_ = nullptr;
    void* state_ = nullptr;  // the task's state, or nullptr (unknown: no fast path)
};

namespace detail {
// Takes the frame out of task (which is left empty) for a spawn: the
// kernel's state pointer. An empty Task is refused with "<what> of an empty
// Task". Every spawn wrapper (here and tpc.hpp) goes through it.
template <class T>
void* release_state(Task<T>&& task, const char* what) {
    auto h = task.release();
    if (!h) throw_error_suffix(WEFT_EINVAL, what, " of an empty Task");
    return state_of_frame<T>(h.address());
}
template <class T>
JoinHandle<T> spawn_on(weft_runtime* rt, Task<T>&& task) {
    void* state = release_state(std::move(task), "weft::spawn");
    weft_join* j = nullptr;
    int r = weft_task_spawn(rt, state, &j);
    if (r != 0) throw_error(r, "weft::spawn");
    return JoinHandle<T>(j, state);
}
template <class T>
void spawn_detached_on(weft_runtime* rt, Task<T>&& task) {
    int r = weft_task_spawn(rt, release_state(std::move(task), "weft::spawn_detached"), nullptr);
    if (r != 0) throw_error(r, "weft::spawn_detached");
}
}  // namespace detail

// Spawns onto the runtime of the calling worker (or the thread-per-core
// executor of the calling thread: tpc.hpp).
template <class T>
JoinHandle<T> spawn(Task<T>&& task) {
    return detail::spawn_on<T>(nullptr, std::move(task));
}

// Spawns a task nobody will join: spawn(task).detach() without ever making
// the handle, which saves the handle's reference and its release (an atomic
// read-modify-write on the task, right after the stores that set it up).
// For fire-and-forget work: a connection's handler, the next link of a
// chain. Like spawn, onto the runtime of the calling worker or the thread-
// per-core executor of the calling thread. The result is dropped; a failure
// (an exception) is reported as a detached task's (weft.h, "failures").
template <class T>
void spawn_detached(Task<T>&& task) {
    detail::spawn_detached_on<T>(nullptr, std::move(task));
}

// Fork-join: spawn a batch of tasks and await them all through one counter.
// Cheaper than a JoinHandle per task (no join waker, no per-child wake of the
// parent: only the last child to finish wakes it), so it is the natural way
// to write divide-and-conquer code:
//
//   weft::ForkJoin<uint64_t> kids(10);          // inside a task
//   for (int i = 0; i < 10; i++) kids.spawn(child(i));
//   co_await kids;                              // rethrows a child's exception
//   for (size_t i = 0; i < kids.size(); i++) sum += kids[i];
//
// The children are a fork-join group (weft_task_spawn_fork): a worker that
// runs a batch's children one after another keeps their finished count and
// hands it over in one atomic update (weft_fork_done), so a batch of ten
// leaves costs one locked instruction for its count, not ten.
//
// Cancel-safe: the results live in a small pooled control block shared by
// the parent and the children and freed by whoever leaves it last, so a
// parent dropped mid-wait (abort, shutdown) never leaves a child writing into
// freed memory. A child that is cancelled counts as finished with
// weft::Cancelled as its exception.
template <class T>
class ForkJoin {
    using Stored = std::conditional_t<std::is_void_v<T>, bool, T>;
    struct Slot {
        std::optional<Stored> value;
        std::exception_ptr error;
    };
    // One 64-bit word, two counts: children not yet finished (high half:
    // what the parent waits for) and holders of the block (low half: the
    // parent's ForkJoin plus every child not yet finished; the last holder
    // frees it). Both count all `capacity` children up front; the unused
    // ones are returned at the await. Two counts, not one, so that the child
    // that finishes last can wake the parent while it still holds the block
    // (Cpp.ForkJoinLastTwoChildrenFinishTogetherAfterParentLeft).
    static constexpr std::uint64_t PENDING_ONE = std::uint64_t(1) << 32;
    static constexpr std::uint64_t HOLDER_ONE = 1;
    static constexpr std::uint64_t HOLDERS = PENDING_ONE - 1;
    struct Block {
        std::atomic<std::uint64_t> counts;
        std::size_t capacity;
        weft_waker parent;  // cloned: keeps the parent task's header alive
        // SAFETY: the constructor allocates sizeof(Block) + capacity *
        // sizeof(Slot) bytes and placement-news `capacity` Slots right after
        // the Block (alignof(Slot) <= max_align_t, static_assert below).
        Slot* slots() { return reinterpret_cast<Slot*>(this + 1); }
    };
    static_assert(alignof(Slot) <= alignof(std::max_align_t));

public:
    explicit ForkJoin(std::size_t capacity) : capacity_(capacity) {
        weft_context* cx = detail::require_cx("weft::ForkJoin");
        size_ = sizeof(Block) + capacity * sizeof(Slot);
        void* mem = weft_alloc(size_);
        if (!mem) throw std::bad_alloc();
        if (capacity >= (std::size_t(1) << 31)) {
            weft_free(mem, size_);
            throw Error(WEFT_EINVAL, "weft::ForkJoin capacity too large");
        }
        b_ = new (mem) Block{{capacity * PENDING_ONE + (capacity + 1) * HOLDER_ONE}, capacity,
                             weft_waker_clone(&cx->waker)};
        for (std::size_t i = 0; i < capacity; i++) new (&b_->slots()[i]) Slot();
    }
    ForkJoin(const ForkJoin&) = delete;
    ForkJoin& operator=(const ForkJoin&) = delete;
    ~ForkJoin() {
        seal();
        // The parent leaves; the last holder (it or a child) frees the block.
        if ((b_->counts.fetch_sub(HOLDER_ONE, std::memory_order_acq_rel) & HOLDERS) == HOLDER_ONE) destroy(b_);
    }

    // Spawns task onto the current runtime as the next member of the batch.
    void spawn(Task<T>&& task) {
        if (spawned_ == capacity_) throw Error(WEFT_EINVAL, "weft::ForkJoin::spawn beyond its capacity");
        if (sealed_) throw Error(WEFT_EINVAL, "weft::ForkJoin::spawn after co_await");
        auto h = task.release();
        if (!h) throw Error(WEFT_EINVAL, "weft::ForkJoin::spawn of an empty Task");
        detail::PromiseBase& p = h.promise();
        p.fork_done = &child_done;
        p.fork_block = b_;
        p.fork_index = spawned_++;
        // On failure child_done has run (as cancelled).
        int r = weft_task_spawn_fork(detail::state_of_frame<T>(h.address()), b_);
        if (r != 0) throw Error(r, "weft::ForkJoin::spawn");
    }

    std::size_t size() const noexcept { return spawned_; }

    bool await_ready() noexcept {
        seal();
        return all_done(b_);
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
        detail::PromiseBase::wait_for(h, &ready, this);
        // A child that finished between await_ready and here woke the task
        // while it was running; it is polled again and ready() sees it.
        return true;
    }
    void await_resume() {
        for (std::size_t i = 0; i < spawned_; i++)
            if (b_->slots()[i].error) std::rethrow_exception(b_->slots()[i].error);
    }

    // Results in spawn order (after co_await).
    Stored& operator[](std::size_t i) { return *b_->slots()[i].value; }

private:
    // acquire: pairs with the children's release, so their slots are visible.
    static bool all_done(Block* b) noexcept { return b->counts.load(std::memory_order_acquire) < PENDING_ONE; }
    static bool ready(void* self, weft_context*) { return all_done(static_cast<ForkJoin*>(self)->b_); }
    void seal() noexcept {
        if (sealed_) return;
        sealed_ = true;
        std::uint64_t unused = capacity_ - spawned_;
        if (unused) b_->counts.fetch_sub(unused * (PENDING_ONE + HOLDER_ONE), std::memory_order_acq_rel);
    }
    static void destroy(Block* b) noexcept {
        std::size_t size = sizeof(Block) + b->capacity * sizeof(Slot);
        for (std::size_t i = 0; i < b->capacity; i++) b->slots()[i].~Slot();
        weft_waker_drop(b->parent);
        b->~Block();
        weft_free(b, size);
    }
    static void child_done(detail::PromiseBase* base, bool cancelled) noexcept {
        // On cancellation this runs from ~PromiseBase: the derived promise is
        // already destroyed, so only base fields are touched on that path.
        Block* b = static_cast<Block*>(base->fork_block);
        Slot& slot = b->slots()[base->fork_index];
        if (cancelled) {
            slot.error = std::make_exception_ptr(Cancelled());
        } else if (base->exception) {
            slot.error = std::exchange(base->exception, nullptr);
        } else if constexpr (std::is_void_v<T>) {
            slot.value.emplace(true);
        } else {
            // SAFETY: fork_done is only set by ForkJoin<T>::spawn on a
            // Promise<T>, and this path runs from the final suspend, while
            // the derived promise is alive.
            slot.value.emplace(std::move(*static_cast<detail::Promise<T>*>(base)->value));
        }
        if (cancelled) {
            // From ~PromiseBase (a frame destroyed unfinished): counted now.
            count_finished(b, 1);
            return;
        }
        // The worker may keep the count while it runs this batch's other
        // unfinished children (weft_fork_done): the batch's ten leaves then cost
        // one locked instruction instead of ten. The block stays alive
        // meanwhile: a held child still holds it.
        std::uint64_t cur = b->counts.load(std::memory_order_relaxed);
        int n = weft_fork_done(b, &flush_held, static_cast<std::uint32_t>(cur >> 32));
        if (n > 0) count_finished(b, static_cast<std::uint32_t>(n));
    }
    static void flush_held(void* block, std::uint32_t n) noexcept { count_finished(static_cast<Block*>(block), n); }
    // n finished children counted. One CAS: give up their pending counts and
    // their holder counts together, except that the last to finish keeps one
    // holder count until it has woken the parent. acq_rel: publishes the
    // slots to the parent (acquire in all_done) and, for the last holder,
    // makes every write visible before the free.
    static void count_finished(Block* b, std::uint32_t n) noexcept {
        const std::uint64_t pending = PENDING_ONE * n;
        std::uint64_t cur = b->counts.load(std::memory_order_relaxed);
        bool last;
        do {
            last = (cur >> 32) == n;
            std::uint64_t next = cur - pending - HOLDER_ONE * (last ? n - 1 : n);
            if (b->counts.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed)) break;
        } while (true);
        if (!last) return;  // not the last: others (and maybe the parent) still hold it
        // Every child is done: wake the parent (if it left already, the block's
        // reference keeps its header alive and the wake does nothing).
        weft_waker_wake_by_ref(&b->parent);
        if ((b->counts.fetch_sub(HOLDER_ONE, std::memory_order_acq_rel) & HOLDERS) == HOLDER_ONE) destroy(b);
    }

    Block* b_ = nullptr;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
    std::size_t spawned_ = 0;
    bool sealed_ = false;
};

// Yields to the scheduler: the task goes to the back of its worker's queue.
struct yield_now {
    bool yielded = false;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) {
        weft_context* cx = detail::require_cx("co_await weft::yield_now()");
        weft_waker_wake_by_ref(&cx->waker);
    }
    void await_resume() const noexcept {}
};

// The id of the task running on this thread, 0 outside tasks.
inline uint64_t current_task_id() noexcept { return weft_task_current_id(); }

// RAII runtime. workers = 0: one per CPU.
class Runtime {
public:
    explicit Runtime(uint32_t workers = 0, const char* name = nullptr) {
        weft_runtime_config cfg;
        weft_runtime_config_init(&cfg);
        cfg.workers = workers;
        cfg.name = name;
        int r = weft_runtime_new(&cfg, &rt_);
        if (r != 0) throw Error(r, "weft::Runtime");
    }
    // With a full configuration (e.g. an injected clock for tests).
    explicit Runtime(const weft_runtime_config& cfg) {
        int r = weft_runtime_new(&cfg, &rt_);
        if (r != 0) throw Error(r, "weft::Runtime");
    }
    ~Runtime() { weft_runtime_free(rt_); }
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    weft_runtime* get() const noexcept { return rt_; }
    uint32_t workers() const noexcept { return weft_runtime_workers(rt_); }

    template <class T>
    JoinHandle<T> spawn(Task<T>&& task) {
        return detail::spawn_on<T>(rt_, std::move(task));
    }
    // weft::spawn_detached onto this runtime.
    template <class T>
    void spawn_detached(Task<T>&& task) {
        detail::spawn_detached_on<T>(rt_, std::move(task));
    }
    // Runs task on the runtime and blocks this (non-worker) thread for its
    // result; rethrows its exception.
    template <class T>
    T block_on(Task<T>&& task) {
        return spawn(std::move(task)).join();
    }

private:
    weft_runtime* rt_ = nullptr;
};

// ---- failure containment (weft.h, "failures") ----------------------------------

// A failure handler backed by a C++ callable, for a runtime's configuration
// or the process-wide target. If the callable throws, reporting failed: the
// failure counts as unhandled and the target's policy applies. It must
// outlive what it is installed in; it cannot be copied or moved.
//
//   weft::FailureHandler log([](const weft_failure& f) { std::cerr << f.message << '\n'; });
//   weft_runtime_config cfg;
//   weft_runtime_config_init(&cfg);
//   log.install(cfg, WEFT_FAILURE_SHUTDOWN);
//   weft::Runtime rt(cfg);
class FailureHandler {
public:
    explicit FailureHandler(std::function<void(const weft_failure&)> fn) : fn_(std::move(fn)) {}
    FailureHandler(const FailureHandler&) = delete;
    FailureHandler& operator=(const FailureHandler&) = delete;

    void install(weft_runtime_config& cfg, uint32_t policy = WEFT_FAILURE_IGNORE) noexcept {
        cfg.on_failure = &call;
        cfg.on_failure_ctx = this;
        cfg.failure_policy = policy;
    }
    // For threads of no runtime (weft_failure_handler_set); policy IGNORE or
    // ABORT. Uninstall (weft_failure_handler_set(nullptr, nullptr, 0))
    // before this object goes away.
    int install_process_wide(uint32_t policy = WEFT_FAILURE_IGNORE) noexcept {
        return weft_failure_handler_set(&call, this, policy);
    }
    static int call(void* ctx, const weft_failure* f) noexcept {
        try {
            static_cast<FailureHandler*>(ctx)->fn_(*f);
            return 0;
        } catch (...) {
            return 1;
        }
    }

private:
    std::function<void(const weft_failure&)> fn_;
};

namespace detail {
// The waker behind make_waker: a reference-counted box around the callable.
template <class F>
struct FnWaker {
    std::atomic<uint32_t> refs{1};
    F fn;
    explicit FnWaker(F f) : fn(std::move(f)) {}

    static const FnWaker* of(const void* d) noexcept { return static_cast<const FnWaker*>(d); }
    static weft_waker clone(const void* d) noexcept {
        // relaxed: a new reference is made from an existing one (as with
        // std::shared_ptr); only the release below needs ordering.
        const_cast<FnWaker*>(of(d))->refs.fetch_add(1, std::memory_order_relaxed);
        return weft_waker{d, &vtable};
    }
    static void call(const void* d) noexcept {
        try {
            const_cast<FnWaker*>(of(d))->fn();
        } catch (...) {
            report_current_exception(WEFT_FAILURE_WAKE, 0);
        }
    }
    static void release(const void* d) noexcept {
        FnWaker* w = const_cast<FnWaker*>(of(d));
        // acq_rel: the last owner sees every other owner's use before deleting.
        if (w->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
        try {
            delete w;
        } catch (...) {
            report_current_exception(WEFT_FAILURE_WAKE, 0);  // F's destructor threw
        }
    }
    static void wake(const void* d) noexcept {
        call(d);
        release(d);
    }
    static constexpr weft_waker_vtable vtable{clone, wake, call, release};
};
}  // namespace detail

// A waker that calls f() each time it is woken, on the waking thread: for
// code outside weft that polls weft objects (a bridge to another event
// loop; a test). The result holds one reference: wake or drop it
// (weft_waker_wake / weft_waker_drop). Whatever f throws is reported as a
// WEFT_FAILURE_WAKE failure and never reaches weft. f must not block.
template <class F>
weft_waker make_waker(F f) {
    auto* w = new detail::FnWaker<F>(std::move(f));
    return weft_waker{w, &detail::FnWaker<F>::vtable};
}

}  // namespace weft

// The rest of the C++ API, one header per subsystem.
#include "time.hpp"  // sleep, sleep_until, timeout, interval
#include "sync.hpp"  // Semaphore, Mutex, RwLock, Notify, channels, Barrier
#include "pulse.hpp"  // checkpoint, the cooperative budget

#endif
