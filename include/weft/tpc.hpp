// tpc.hpp — C++20 wrappers over the thread-per-core executor (weft_tpc.h).
//
// The same weft::Task<T>, weft::JoinHandle<T>, weft::yield_now() and sync
// primitives (sync.hpp) as on the multi-thread runtime; only where a task
// runs differs:
//
//   weft::tpc::Executor ex;                       // owned by this thread
//   int v = ex.block_on([]() -> weft::Task<int> {
//       auto h = weft::tpc::spawn([]() -> weft::Task<int> { co_return 41; }());
//       co_return co_await h + 1;                 // both tasks on this thread
//   }());
//
//   weft::tpc::ShardSet shards(4, /*pin=*/true);  // 4 threads, one executor each
//   shards.spawn_on(2, handle_connection(fd));    // from any thread; detached
//
// I/O (io.hpp) works inside these tasks unchanged: with no runtime given,
// an operation goes to the calling thread's executor, whose io_uring (the
// one it parks in) or epoll set serves it (weft_tpc.h).
//
// A JoinHandle of a task on this executor belongs to the executor's thread
// (co_await it there); join() on it throws (it would block the only thread
// that can finish the task). Tasks spawned onto another shard are detached:
// send results back through a channel.
#ifndef WEFT_TPC_HPP
#define WEFT_TPC_HPP

#include <cstdint>
#include <utility>

#include "weft.hpp"

namespace weft::tpc {

namespace detail {
using weft::detail::release_state;  // weft.hpp
}  // namespace detail

// Spawns onto the executor of the calling thread (inside one of its tasks,
// or on the thread that owns a weft::tpc::Executor).
template <class T>
JoinHandle<T> spawn(Task<T>&& task) {
    weft_join* j = nullptr;
    void* state = detail::release_state(std::move(task), "weft::tpc::spawn");
    int r = weft_tpc_task_spawn(nullptr, state, &j);
    if (r != 0) weft::detail::throw_error(r, "weft::tpc::spawn");
    return JoinHandle<T>(j, state);
}

// Spawns a detached task onto ex from any thread.
template <class T>
void spawn_detached(weft_tpc* ex, Task<T>&& task) {
    int r = weft_tpc_task_spawn(ex, detail::release_state(std::move(task), "weft::tpc::spawn_detached"), nullptr);
    if (r != 0) weft::detail::throw_error(r, "weft::tpc::spawn_detached");
}

// The calling thread's executor (nullptr outside one) and its shard index.
inline weft_tpc* current() noexcept { return weft_tpc_current(); }
inline uint32_t current_shard() noexcept { return weft_tpc_index(weft_tpc_current()); }

// An executor owned by the calling thread, driven by block_on.
class Executor {
public:
    explicit Executor(uint32_t wake = WEFT_TPC_WAKE_DEFAULT) {
        weft_tpc_config cfg;
        weft_tpc_config_init(&cfg);
        cfg.wake = wake;
        int r = weft_tpc_new(&cfg, &ex_);
        if (r != 0) throw Error(r, "weft::tpc::Executor");
    }
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;
    ~Executor() { weft_tpc_free(ex_); }

    weft_tpc* native_handle() const noexcept { return ex_; }

    // Runs the executor on this thread until task finishes; returns its
    // result (rethrows its exception; throws weft::Cancelled if aborted).
    template <class T>
    T block_on(Task<T>&& task) {
        weft_join* j = nullptr;
        int r = weft_tpc_block_on_task(ex_, detail::release_state(std::move(task), "weft::tpc::Executor::block_on"),
                                       &j);
        if (!j) throw Error(r, "weft::tpc::Executor::block_on");
        // The task has finished: await_resume takes the result (or throws)
        // without suspending.
        return JoinHandle<T>(j).await_resume();
    }

    template <class T>
    JoinHandle<T> spawn(Task<T>&& task) {
        weft_join* j = nullptr;
        void* state = detail::release_state(std::move(task), "weft::tpc::Executor::spawn");
        int r = weft_tpc_task_spawn(ex_, state, &j);
        if (r != 0) weft::detail::throw_error(r, "weft::tpc::Executor::spawn");
        return JoinHandle<T>(j, state);
    }

    weft_tpc_metrics metrics() const {
        weft_tpc_metrics m{};
        m.size = sizeof(m);
        weft_tpc_get_metrics(ex_, &m);
        return m;
    }
    // The executor's own I/O driver (weft_tpc_io_status).
    weft_io_status io_status() const {
        weft_io_status st{};
        st.size = sizeof(st);
        weft_tpc_io_status(ex_, &st);
        return st;
    }

private:
    weft_tpc* ex_ = nullptr;
};

// N executors, one thread each, running until the set is destroyed (which
// drops every task still alive, exactly once, and joins the threads).
class ShardSet {
public:
    explicit ShardSet(uint32_t shards = 0, bool pin = false, uint32_t wake = WEFT_TPC_WAKE_DEFAULT,
                      const char* name = nullptr, uint32_t flags = 0) {
        weft_tpc_config cfg;
        weft_tpc_config_init(&cfg);
        cfg.shards = shards;
        cfg.pin = pin ? 1 : 0;
        cfg.wake = wake;
        cfg.name = name;
        cfg.flags = flags;
        int r = weft_shards_new(&cfg, &set_);
        if (r != 0) throw Error(r, "weft::tpc::ShardSet");
    }
    explicit ShardSet(const weft_tpc_config& cfg) {
        int r = weft_shards_new(&cfg, &set_);
        if (r != 0) throw Error(r, "weft::tpc::ShardSet");
    }
    ShardSet(const ShardSet&) = delete;
    ShardSet& operator=(const ShardSet&) = delete;
    ~ShardSet() { weft_shards_free(set_); }

    uint32_t size() const noexcept { return weft_shards_count(set_); }
    weft_tpc* shard(uint32_t i) const {
        weft_tpc* ex = weft_shards_get(set_, i);
        if (!ex) throw Error(WEFT_EINVAL, "weft::tpc::ShardSet::shard index out of range");
        return ex;
    }
    // Spawns a detached task onto shard i, from any thread.
    template <class T>
    void spawn_on(uint32_t i, Task<T>&& task) {
        spawn_detached(shard(i), std::move(task));
    }
    weft_tpc_metrics metrics(uint32_t i) const {
        weft_tpc_metrics m{};
        m.size = sizeof(m);
        weft_tpc_get_metrics(shard(i), &m);
        return m;
    }
    weft_io_status io_status(uint32_t i) const {
        weft_io_status st{};
        st.size = sizeof(st);
        weft_tpc_io_status(shard(i), &st);
        return st;
    }
    weft_shards* native_handle() const noexcept { return set_; }

private:
    weft_shards* set_ = nullptr;
};

}  // namespace weft::tpc

#endif
