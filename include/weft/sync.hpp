// weft/sync.hpp — part of the C++ API; include <weft/weft.hpp>, which includes this.
//
// Awaitable synchronisation over the C ABI of weft_sync.h:
//
//   weft::Semaphore sem(10);          auto permit = co_await sem.acquire(3);
//   weft::Mutex<int> m(0);            { auto g = co_await m.lock(); ++*g; }
//   weft::RwLock<Cfg> cfg;            auto r = co_await cfg.read();  auto w = co_await cfg.write();
//   weft::Notify n;                   co_await n.notified();  ...  n.notify_one();
//   auto [tx, rx] = weft::mpsc::channel<std::string>(16);
//   co_await tx.send("hi");           std::optional<std::string> v = co_await rx.recv();
//   auto [otx, orx] = weft::oneshot::channel<int>();  otx.send(1);  co_await orx.recv();
//   weft::Barrier b(4);               bool leader = (co_await b.wait()).is_leader();
//
// Every wait also has a try_ form (never waits) and a _blocking form for
// plain threads outside the runtime (throws weft::Error(WEFT_EDEADLK) on a
// worker). Dropping an awaiter that is waiting (the task was aborted or the
// runtime shut down) cancels the wait: a queued lock or permit request
// leaves the queue and gives back what it was given; an unsent value is
// destroyed with the awaiter, never leaked.
//
// Values in channels: trivially copyable T travel inline (memcpy); any other
// T (std::string, std::unique_ptr...) is moved into a heap box and the box
// pointer travels, so no T is ever memcpy'd. A send on a closed channel
// gives the value back (SendResult::rejected); values still queued when the
// channel goes away are destroyed exactly once.
#ifndef WEFT_SYNC_HPP
#define WEFT_SYNC_HPP

#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "weft.hpp"

namespace weft {

namespace detail {

// The cooperative budget (weft_pulse.h) for sync awaitables: every
// awaiter's fast path costs one unit; when the budget is spent it takes the
// suspending path, whose poll (kernel/sync_abi.cpp) wakes the task and
// reports pending, so the task yields at this await.
inline bool sync_budget_allows_fast_path() noexcept { return weft_budget_consume(1) == 0; }

inline void check(int r, const char* what) {
    if (r < 0) throw Error(r, what);
}

// An awaiter that waits through a weft_wait. D provides:
//   bool try_now()              the non-waiting attempt (true: done)
//   void prepare(weft_wait*)    prepares the wait (weft_X_...(w, ...))
//   void complete(int code)     the wait finished with WEFT_READY or an error
//   R    await_resume()
// The awaiter lives in the coroutine frame while suspended (never moved);
// destroying it while it waits cancels the wait.
// Movable until it is first awaited (so that weft::timeout and other
// adapters can take it by value): the weft_wait may be prepared by then
// (Notify::notified prepares at creation), but not yet polled, and the C ABI
// allows moving such a wait bytewise. A derived awaiter whose prepare()
// hands the kernel a pointer into itself (a send's or receive's slot) must
// prepare only in await_suspend, where it is also polled. Moving an awaiter
// that was polled calls std::terminate (as weft::Sleep does): its waiter may
// be linked into the primitive's queue at its address.
template <class D>
class WaitAwaiter {
public:
    WaitAwaiter() = default;
    WaitAwaiter(WaitAwaiter&& o) noexcept : prepared_(o.prepared_) {
        if (o.polled_) std::terminate();
        if (prepared_) {
            std::memcpy(static_cast<void*>(&w_), &o.w_, sizeof w_);
            o.prepared_ = false;  // the wait is ours now: o must not drop it
        }
    }
    WaitAwaiter(const WaitAwaiter&) = delete;
    WaitAwaiter& operator=(const WaitAwaiter&) = delete;
    ~WaitAwaiter() {
        if (prepared_) weft_wait_drop(&w_);
    }

    bool await_ready() {
        if (!sync_budget_allows_fast_path()) return false;
        return self()->try_now();
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        weft_context* cx = require_cx("co_await of a weft sync primitive");
        if (!prepared_) {
            self()->prepare(&w_);
            prepared_ = true;
        }
        polled_ = true;
        int r = weft_wait_poll(&w_, cx);
        if (r == WEFT_PENDING) {
            PromiseBase::wait_for(h, &ready, this);
            return true;
        }
        finish(r);
        return false;
    }

protected:
    // For awaiters that must prepare at creation (Notify::notified).
    void prepare_now() {
        self()->prepare(&w_);
        prepared_ = true;
    }
    weft_wait* wait() noexcept { return &w_; }
    // Cancels the wait if it is prepared and not finished (a derived
    // destructor that must act after the cancellation calls it first).
    void cancel() noexcept {
        if (prepared_) {
            prepared_ = false;
            weft_wait_drop(&w_);
        }
    }

private:
    D* self() noexcept { return static_cast<D*>(this); }
    void finish(int r) {
        self()->complete(r);
        prepared_ = false;
        weft_wait_drop(&w_);  // completed: releases nothing, just retires it
    }
    static bool ready(void* p, weft_context* cx) {
        auto* a = static_cast<WaitAwaiter*>(p);
        int r = weft_wait_poll(&a->w_, cx);
        if (r == WEFT_PENDING) return false;  // spurious wake: the poll re-armed the waker
        a->finish(r);
        return true;
    }

    weft_wait w_;
    bool prepared_ = false;
    bool polled_ = false;  // from the first poll on, the awaiter may not move
};

// How a T travels through a byte channel (see the top of this file).
template <class T>
struct Carrier {
    static constexpr bool inline_ = std::is_trivially_copyable_v<T> && std::is_trivially_default_constructible_v<T>;
    using Slot = std::conditional_t<inline_, T, T*>;

    template <class U>
    static Slot pack(U&& v) {
        if constexpr (inline_) {
            return T(std::forward<U>(v));
        } else {
            return new T(std::forward<U>(v));
        }
    }
    // Takes the value out of a slot that owns it (frees the box).
    static T unpack(Slot& s) {
        if constexpr (inline_) {
            return s;
        } else {
            std::unique_ptr<T> box(std::exchange(s, nullptr));
            return T(std::move(*box));
        }
    }
    // Destroys the value a slot owns.
    static void discard(Slot& s) noexcept {
        if constexpr (!inline_) delete std::exchange(s, nullptr);
    }
    // elem_drop for values left in a channel. noexcept: a destructor that
    // throws terminates here rather than unwinding into the kernel.
    static void drop_elem(void* elem, void*) noexcept {
        if constexpr (!inline_) {
            T* p;
            std::memcpy(&p, elem, sizeof p);
            delete p;
        }
    }
    static weft_channel_config config(uint64_t capacity) {
        weft_channel_config cfg;
        weft_channel_config_init(&cfg, sizeof(Slot), capacity);
        if constexpr (!inline_) cfg.elem_drop = &drop_elem;
        return cfg;
    }
};

}  // namespace detail

// ---- Semaphore ------------------------------------------------------------------

// A fair (FIFO) counting semaphore; acquire(n) takes n permits at once.
class Semaphore {
public:
    // Permits given back when destroyed (RAII), unless forget()-ten.
    class [[nodiscard]] Permit {
    public:
        Permit() = default;
        Permit(Semaphore* s, uint64_t n) noexcept : s_(s), n_(n) {}
        Permit(Permit&& o) noexcept : s_(std::exchange(o.s_, nullptr)), n_(o.n_) {}
        Permit& operator=(Permit&& o) noexcept {
            if (this != &o) {
                release();
                s_ = std::exchange(o.s_, nullptr);
                n_ = o.n_;
            }
            return *this;
        }
        ~Permit() { release(); }
        uint64_t count() const noexcept { return s_ ? n_ : 0; }
        // Keeps the permits taken (they are not returned).
        void forget() noexcept { s_ = nullptr; }
        void release() noexcept {
            if (s_) weft_semaphore_release(std::exchange(s_, nullptr)->s_, n_);
        }

    private:
        Semaphore* s_ = nullptr;
        uint64_t n_ = 0;
    };

    explicit Semaphore(uint64_t permits) { detail::check(weft_semaphore_new(permits, &s_), "weft::Semaphore"); }
    ~Semaphore() { weft_semaphore_free(s_); }
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;

    class [[nodiscard]] Acquire : public detail::WaitAwaiter<Acquire> {
    public:
        Acquire(Semaphore* s, uint64_t n) noexcept : s_(s), n_(n) {}
        bool try_now() {
            code_ = weft_semaphore_try_acquire(s_->s_, n_);
            return code_ != WEFT_EAGAIN;
        }
        void prepare(weft_wait* w) { detail::check(weft_semaphore_acquire(w, s_->s_, n_), "weft::Semaphore::acquire"); }
        void complete(int r) noexcept { code_ = r == WEFT_READY ? 0 : r; }
        Permit await_resume() {
            detail::check(code_, "weft::Semaphore::acquire");
            return Permit(s_, n_);
        }

    private:
        Semaphore* s_;
        uint64_t n_;
        int code_ = 0;
    };

    // co_await: a Permit, or throws weft::Error(WEFT_ECLOSED) once closed.
    Acquire acquire(uint64_t n = 1) noexcept { return Acquire(this, n); }
    std::optional<Permit> try_acquire(uint64_t n = 1) {
        int r = weft_semaphore_try_acquire(s_, n);
        if (r == WEFT_EAGAIN) return std::nullopt;
        detail::check(r, "weft::Semaphore::try_acquire");
        return Permit(this, n);
    }
    Permit acquire_blocking(uint64_t n = 1) {
        detail::check(weft_semaphore_acquire_blocking(s_, n), "weft::Semaphore::acquire_blocking");
        return Permit(this, n);
    }
    void release(uint64_t n = 1) { detail::check(weft_semaphore_release(s_, n), "weft::Semaphore::release"); }
    void close() noexcept { weft_semaphore_close(s_); }
    bool is_closed() const noexcept { return weft_semaphore_is_closed(s_) == 1; }
    uint64_t available() const noexcept { return weft_semaphore_available(s_); }
    weft_semaphore* native() const noexcept { return s_; }

private:
    weft_semaphore* s_ = nullptr;
};

// ---- Mutex ------------------------------------------------------------------------

struct Unit {};

// A fair async mutex owning a T. Lock it with co_await m.lock() (tasks),
// try_lock(), or lock_blocking() (plain threads); the guard unlocks.
template <class T = Unit>
class Mutex {
public:
    class [[nodiscard]] Guard {
    public:
        explicit Guard(Mutex* m) noexcept : m_(m) {}
        Guard(Guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
        Guard& operator=(Guard&&) = delete;
        ~Guard() { unlock(); }
        T& operator*() const noexcept { return m_->value_; }
        T* operator->() const noexcept { return &m_->value_; }
        void unlock() noexcept {
            if (m_) weft_mutex_unlock(std::exchange(m_, nullptr)->m_);
        }

    private:
        Mutex* m_;
    };

    class [[nodiscard]] Lock : public detail::WaitAwaiter<Lock> {
    public:
        explicit Lock(Mutex* m) noexcept : m_(m) {}
        bool try_now() noexcept { return weft_mutex_try_lock(m_->m_) == 0; }
        void prepare(weft_wait* w) { detail::check(weft_mutex_lock(w, m_->m_), "weft::Mutex::lock"); }
        void complete(int r) noexcept { code_ = r == WEFT_READY ? 0 : r; }
        Guard await_resume() {
            detail::check(code_, "weft::Mutex::lock");
            return Guard(m_);
        }

    private:
        Mutex* m_;
        int code_ = 0;
    };

    template <class... A>
    explicit Mutex(A&&... a) : value_(std::forward<A>(a)...) {
        detail::check(weft_mutex_new(&m_), "weft::Mutex");
    }
    ~Mutex() { weft_mutex_free(m_); }
    Mutex(const Mutex&) = delete;
    Mutex& operator=(const Mutex&) = delete;

    Lock lock() noexcept { return Lock(this); }
    std::optional<Guard> try_lock() noexcept {
        if (weft_mutex_try_lock(m_) != 0) return std::nullopt;
        return std::optional<Guard>(std::in_place, this);
    }
    Guard lock_blocking() {
        detail::check(weft_mutex_lock_blocking(m_), "weft::Mutex::lock_blocking");
        return Guard(this);
    }
    weft_mutex* native() const noexcept { return m_; }

private:
    weft_mutex* m_ = nullptr;
    T value_;
};

// ---- RwLock -----------------------------------------------------------------------

// A fair reader-writer lock owning a T: many readers or one writer; a queued
// writer holds back readers that come after it, so writers are not starved.
template <class T = Unit>
class RwLock {
public:
    template <bool Write>
    class [[nodiscard]] Guard {
    public:
        explicit Guard(RwLock* l) noexcept : l_(l) {}
        Guard(Guard&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
        Guard& operator=(Guard&&) = delete;
        ~Guard() { unlock(); }
        std::conditional_t<Write, T&, const T&> operator*() const noexcept { return l_->value_; }
        std::conditional_t<Write, T*, const T*> operator->() const noexcept { return &l_->value_; }
        void unlock() noexcept {
            if (!l_) return;
            RwLock* l = std::exchange(l_, nullptr);
            if constexpr (Write) {
                weft_rwlock_write_unlock(l->l_);
            } else {
                weft_rwlock_read_unlock(l->l_);
            }
        }

    private:
        RwLock* l_;
    };
    using ReadGuard = Guard<false>;
    using WriteGuard = Guard<true>;

    template <bool Write>
    class [[nodiscard]] Acquire : public detail::WaitAwaiter<Acquire<Write>> {
    public:
        explicit Acquire(RwLock* l) noexcept : l_(l) {}
        bool try_now() noexcept {
            return (Write ? weft_rwlock_try_write(l_->l_) : weft_rwlock_try_read(l_->l_)) == 0;
        }
        void prepare(weft_wait* w) {
            detail::check(Write ? weft_rwlock_write(w, l_->l_) : weft_rwlock_read(w, l_->l_), "weft::RwLock");
        }
        void complete(int r) noexcept { code_ = r == WEFT_READY ? 0 : r; }
        Guard<Write> await_resume() {
            detail::check(code_, "weft::RwLock");
            return Guard<Write>(l_);
        }

    private:
        RwLock* l_;
        int code_ = 0;
    };

    template <class... A>
    explicit RwLock(A&&... a) : value_(std::forward<A>(a)...) {
        detail::check(weft_rwlock_new(&l_), "weft::RwLock");
    }
    ~RwLock() { weft_rwlock_free(l_); }
    RwLock(const RwLock&) = delete;
    RwLock& operator=(const RwLock&) = delete;

    Acquire<false> read() noexcept { return Acquire<false>(this); }
    Acquire<true> write() noexcept { return Acquire<true>(this); }
    std::optional<ReadGuard> try_read() noexcept {
        if (weft_rwlock_try_read(l_) != 0) return std::nullopt;
        return std::optional<ReadGuard>(std::in_place, this);
    }
    std::optional<WriteGuard> try_write() noexcept {
        if (weft_rwlock_try_write(l_) != 0) return std::nullopt;
        return std::optional<WriteGuard>(std::in_place, this);
    }
    ReadGuard read_blocking() {
        detail::check(weft_rwlock_read_blocking(l_), "weft::RwLock::read_blocking");
        return ReadGuard(this);
    }
    WriteGuard write_blocking() {
        detail::check(weft_rwlock_write_blocking(l_), "weft::RwLock::write_blocking");
        return WriteGuard(this);
    }

private:
    weft_rwlock* l_ = nullptr;
    T value_;
};

// ---- Notify -----------------------------------------------------------------------

// notify_one() wakes one waiting task or stores one permit for the next
// notified(); notify_waiters() wakes every task waiting now (and every
// notified() created before the call).
class Notify {
public:
    class [[nodiscard]] Notified : public detail::WaitAwaiter<Notified> {
    public:
        // Prepared at creation: a notify_waiters() after this line wakes it,
        // even before it is awaited.
        explicit Notified(Notify* n) : n_(n) { this->prepare_now(); }
        bool try_now() noexcept { return false; }  // the first poll consumes a stored permit
        void prepare(weft_wait* w) { detail::check(weft_notify_notified(w, n_->n_), "weft::Notify::notified"); }
        void complete(int) noexcept {}
        void await_resume() const noexcept {}

    private:
        Notify* n_;
    };

    Notify() { detail::check(weft_notify_new(&n_), "weft::Notify"); }
    ~Notify() { weft_notify_free(n_); }
    Notify(const Notify&) = delete;
    Notify& operator=(const Notify&) = delete;

    void notify_one() noexcept { weft_notify_notify_one(n_); }
    void notify_waiters() noexcept { weft_notify_notify_waiters(n_); }
    Notified notified() { return Notified(this); }
    void wait_blocking() { detail::check(weft_notify_wait_blocking(n_), "weft::Notify::wait_blocking"); }
    weft_notify* native() const noexcept { return n_; }

private:
    weft_notify* n_ = nullptr;
};

// The result of a send: ok, or the value handed back (closed channel; for
// try_send also a full one: code WEFT_EAGAIN).
template <class T>
struct [[nodiscard]] SendResult {
    int code = 0;                 // 0, WEFT_ECLOSED, WEFT_EAGAIN (try_send: full), WEFT_ENOMEM
    std::optional<T> rejected;    // the value, when not sent
    bool ok() const noexcept { return code == 0; }
    explicit operator bool() const noexcept { return ok(); }
};

// ---- mpsc ---------------------------------------------------------------------------

namespace mpsc {

template <class T>
class Receiver;

// A sending handle; copy it for more senders. When the last one is gone the
// receiver sees the end of the stream (recv returns nullopt once drained).
template <class T>
class Sender {
    using C = detail::Carrier<T>;
    using Slot = typename C::Slot;

public:
    Sender() = default;
    explicit Sender(weft_mpsc_tx* tx) noexcept : tx_(tx) {}
    Sender(const Sender& o) {
        if (o.tx_) detail::check(weft_mpsc_tx_clone(o.tx_, &tx_), "weft::mpsc::Sender copy");
    }
    Sender(Sender&& o) noexcept : tx_(std::exchange(o.tx_, nullptr)) {}
    Sender& operator=(Sender o) noexcept {
        std::swap(tx_, o.tx_);
        return *this;
    }
    ~Sender() { weft_mpsc_tx_free(tx_); }

    class [[nodiscard]] Send : public detail::WaitAwaiter<Send> {
    public:
        template <class U>
        Send(weft_mpsc_tx* tx, U&& v) : tx_(tx), slot_(C::pack(std::forward<U>(v))) {}
        // Before it is awaited only (see WaitAwaiter): the value moves along.
        Send(Send&& o) noexcept
            : detail::WaitAwaiter<Send>(std::move(o)), tx_(o.tx_), slot_(o.slot_), code_(o.code_), sent_(o.sent_) {
            if constexpr (!C::inline_) o.slot_ = nullptr;  // the box is ours: o must not delete it
        }
        ~Send() {
            // Not sent (never awaited, cancelled, or refused and not taken):
            // the value dies here. The base destructor (which would cancel)
            // runs after this one, so cancel first: a cancelled send never
            // reads the slot afterwards.
            this->cancel();
            if (!sent_) C::discard(slot_);
        }
        bool try_now() {
            code_ = weft_mpsc_try_send(tx_, &slot_);
            if (code_ == 0) sent_ = true;
            return code_ != WEFT_EAGAIN;
        }
        void prepare(weft_wait* w) { detail::check(weft_mpsc_send(w, tx_, &slot_), "weft::mpsc::Sender::send"); }
        void complete(int r) noexcept {
            code_ = r == WEFT_READY ? 0 : r;
            if (code_ == 0) sent_ = true;
        }
        SendResult<T> await_resume() {
            SendResult<T> res;
            res.code = code_;
            if (!sent_) {
                res.rejected.emplace(C::unpack(slot_));
                sent_ = true;  // handed back: nothing left to discard
            }
            return res;
        }

    private:
        weft_mpsc_tx* tx_;
        Slot slot_;
        int code_ = 0;
        bool sent_ = false;
    };

    // co_await: waits for room (bounded), then sends. SendResult::rejected
    // holds the value if the receiver is closed or gone.
    template <class U = T>
    Send send(U&& v) {
        return Send(tx_, std::forward<U>(v));
    }
    // Never waits: code WEFT_EAGAIN when full, WEFT_ECLOSED when closed;
    // the value comes back in both cases.
    template <class U = T>
    SendResult<T> try_send(U&& v) {
        Slot s = C::pack(std::forward<U>(v));
        SendResult<T> res;
        res.code = weft_mpsc_try_send(tx_, &s);
        if (res.code != 0) res.rejected.emplace(C::unpack(s));
        return res;
    }
    // For plain threads (throws weft::Error(WEFT_EDEADLK) on a worker).
    template <class U = T>
    SendResult<T> send_blocking(U&& v) {
        Slot s = C::pack(std::forward<U>(v));
        SendResult<T> res;
        res.code = weft_mpsc_send_blocking(tx_, &s);
        if (res.code != 0) {
            res.rejected.emplace(C::unpack(s));
            if (res.code == WEFT_EDEADLK || res.code == WEFT_EINVAL) detail::check(res.code, "weft::mpsc::Sender::send_blocking");
        }
        return res;
    }
    bool valid() const noexcept { return tx_ != nullptr; }

private:
    weft_mpsc_tx* tx_ = nullptr;
};

// The receiving handle (one owner at a time; move it).
template <class T>
class Receiver {
    using C = detail::Carrier<T>;
    using Slot = typename C::Slot;

public:
    Receiver() = default;
    explicit Receiver(weft_mpsc_rx* rx) noexcept : rx_(rx) {}
    Receiver(Receiver&& o) noexcept : rx_(std::exchange(o.rx_, nullptr)) {}
    Receiver& operator=(Receiver&& o) noexcept {
        if (this != &o) {
            weft_mpsc_rx_free(rx_);
            rx_ = std::exchange(o.rx_, nullptr);
        }
        return *this;
    }
    ~Receiver() { weft_mpsc_rx_free(rx_); }

    class [[nodiscard]] Recv : public detail::WaitAwaiter<Recv> {
    public:
        explicit Recv(weft_mpsc_rx* rx) noexcept : rx_(rx) {}
        bool try_now() {
            code_ = weft_mpsc_try_recv(rx_, &slot_);
            return code_ != WEFT_EAGAIN;
        }
        void prepare(weft_wait* w) { detail::check(weft_mpsc_recv(w, rx_, &slot_), "weft::mpsc::Receiver::recv"); }
        void complete(int r) noexcept { code_ = r == WEFT_READY ? 0 : r; }
        std::optional<T> await_resume() {
            if (code_ == WEFT_ECLOSED) return std::nullopt;
            detail::check(code_, "weft::mpsc::Receiver::recv");
            return std::optional<T>(C::unpack(slot_));
        }

    private:
        weft_mpsc_rx* rx_;
        Slot slot_{};
        int code_ = 0;
    };

    // co_await: the next value, or nullopt once every sender is gone (or the
    // receiver was closed) and the queue is empty.
    Recv recv() noexcept { return Recv(rx_); }
    // nullopt when empty right now (see is_closed to tell "ended").
    std::optional<T> try_recv() {
        Slot s{};
        int r = weft_mpsc_try_recv(rx_, &s);
        if (r == WEFT_EAGAIN || r == WEFT_ECLOSED) return std::nullopt;
        detail::check(r, "weft::mpsc::Receiver::try_recv");
        return std::optional<T>(C::unpack(s));
    }
    std::optional<T> recv_blocking() {
        Slot s{};
        int r = weft_mpsc_recv_blocking(rx_, &s);
        if (r == WEFT_ECLOSED) return std::nullopt;
        detail::check(r, "weft::mpsc::Receiver::recv_blocking");
        return std::optional<T>(C::unpack(s));
    }
    // Refuses further sends; queued values can still be received.
    void close() noexcept { weft_mpsc_rx_close(rx_); }
    bool valid() const noexcept { return rx_ != nullptr; }

private:
    weft_mpsc_rx* rx_ = nullptr;
};

namespace detail_ {
template <class T>
std::pair<Sender<T>, Receiver<T>> make(uint64_t capacity) {
    weft_channel_config cfg = weft::detail::Carrier<T>::config(capacity);
    weft_mpsc_tx* tx = nullptr;
    weft_mpsc_rx* rx = nullptr;
    weft::detail::check(weft_mpsc_new(&cfg, &tx, &rx), "weft::mpsc::channel");
    return {Sender<T>(tx), Receiver<T>(rx)};
}
}  // namespace detail_

// A bounded channel: send waits while `capacity` values are queued (>= 1).
template <class T>
std::pair<Sender<T>, Receiver<T>> channel(uint64_t capacity) {
    if (capacity == 0) throw Error(WEFT_EINVAL, "weft::mpsc::channel: capacity must be at least 1");
    return detail_::make<T>(capacity);
}
// An unbounded channel: send never waits.
template <class T>
std::pair<Sender<T>, Receiver<T>> unbounded_channel() {
    return detail_::make<T>(0);
}

}  // namespace mpsc

// ---- oneshot ------------------------------------------------------------------------

namespace oneshot {

template <class T>
class Sender {
    using C = detail::Carrier<T>;
    using Slot = typename C::Slot;

public:
    Sender() = default;
    explicit Sender(weft_oneshot_tx* tx) noexcept : tx_(tx) {}
    Sender(Sender&& o) noexcept : tx_(std::exchange(o.tx_, nullptr)) {}
    Sender& operator=(Sender&& o) noexcept {
        if (this != &o) {
            weft_oneshot_tx_free(tx_);
            tx_ = std::exchange(o.tx_, nullptr);
        }
        return *this;
    }
    ~Sender() { weft_oneshot_tx_free(tx_); }

    // Never waits. The value comes back when the receiver is gone
    // (WEFT_ECLOSED) or a value was sent already (WEFT_EALREADY).
    template <class U = T>
    SendResult<T> send(U&& v) {
        Slot s = C::pack(std::forward<U>(v));
        SendResult<T> res;
        res.code = weft_oneshot_send(tx_, &s);
        if (res.code != 0) res.rejected.emplace(C::unpack(s));
        return res;
    }

private:
    weft_oneshot_tx* tx_ = nullptr;
};

template <class T>
class Receiver {
    using C = detail::Carrier<T>;
    using Slot = typename C::Slot;

public:
    Receiver() = default;
    explicit Receiver(weft_oneshot_rx* rx) noexcept : rx_(rx) {}
    Receiver(Receiver&& o) noexcept : rx_(std::exchange(o.rx_, nullptr)) {}
    Receiver& operator=(Receiver&& o) noexcept {
        if (this != &o) {
            weft_oneshot_rx_free(rx_);
            rx_ = std::exchange(o.rx_, nullptr);
        }
        return *this;
    }
    ~Receiver() { weft_oneshot_rx_free(rx_); }

    class [[nodiscard]] Recv : public detail::WaitAwaiter<Recv> {
    public:
        explicit Recv(weft_oneshot_rx* rx) noexcept : rx_(rx) {}
        bool try_now() {
            code_ = weft_oneshot_try_recv(rx_, &slot_);
            return code_ != WEFT_EAGAIN;
        }
        void prepare(weft_wait* w) { detail::check(weft_oneshot_recv(w, rx_, &slot_), "weft::oneshot::recv"); }
        void complete(int r) noexcept { code_ = r == WEFT_READY ? 0 : r; }
        // The value, or nullopt if the sender went away without sending.
        std::optional<T> await_resume() {
            if (code_ == WEFT_ECLOSED) return std::nullopt;
            detail::check(code_, "weft::oneshot::recv");
            return std::optional<T>(C::unpack(slot_));
        }

    private:
        weft_oneshot_rx* rx_;
        Slot slot_{};
        int code_ = 0;
    };

    Recv recv() noexcept { return Recv(rx_); }
    std::optional<T> try_recv() {
        Slot s{};
        int r = weft_oneshot_try_recv(rx_, &s);
        if (r == WEFT_EAGAIN || r == WEFT_ECLOSED) return std::nullopt;
        detail::check(r, "weft::oneshot::try_recv");
        return std::optional<T>(C::unpack(s));
    }
    std::optional<T> recv_blocking() {
        Slot s{};
        int r = weft_oneshot_recv_blocking(rx_, &s);
        if (r == WEFT_ECLOSED) return std::nullopt;
        detail::check(r, "weft::oneshot::recv_blocking");
        return std::optional<T>(C::unpack(s));
    }

private:
    weft_oneshot_rx* rx_ = nullptr;
};

template <class T>
std::pair<Sender<T>, Receiver<T>> channel() {
    weft_channel_config cfg = detail::Carrier<T>::config(0);
    weft_oneshot_tx* tx = nullptr;
    weft_oneshot_rx* rx = nullptr;
    detail::check(weft_oneshot_new(&cfg, &tx, &rx), "weft::oneshot::channel");
    return {Sender<T>(tx), Receiver<T>(rx)};
}

}  // namespace oneshot

// ---- Barrier -------------------------------------------------------------------------

class Barrier {
public:
    struct WaitResult {
        bool leader = false;
        bool is_leader() const noexcept { return leader; }
    };

    class [[nodiscard]] Wait : public detail::WaitAwaiter<Wait> {
    public:
        explicit Wait(Barrier* b) noexcept : b_(b) {}
        bool try_now() noexcept { return false; }
        void prepare(weft_wait* w) { detail::check(weft_barrier_wait(w, b_->b_), "weft::Barrier::wait"); }
        void complete(int r) noexcept {
            code_ = r == WEFT_READY ? 0 : r;
            leader_ = weft_barrier_wait_is_leader(this->wait()) == 1;
        }
        // Throws weft::Error(WEFT_ECLOSED) if the Barrier was destroyed while
        // this party waited (its round can no longer complete).
        WaitResult await_resume() const {
            detail::check(code_, "weft::Barrier::wait");
            return WaitResult{leader_};
        }

    private:
        Barrier* b_;
        bool leader_ = false;
        int code_ = 0;
    };

    explicit Barrier(uint64_t n) { detail::check(weft_barrier_new(n, &b_), "weft::Barrier"); }
    ~Barrier() { weft_barrier_free(b_); }
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    Wait wait() noexcept { return Wait(this); }
    WaitResult wait_blocking() {
        int r = weft_barrier_wait_blocking(b_);
        detail::check(r, "weft::Barrier::wait_blocking");
        return WaitResult{r == 1};
    }

private:
    weft_barrier* b_ = nullptr;
};

}  // namespace weft

#endif
