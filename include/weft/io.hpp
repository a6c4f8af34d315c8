// weft/io.hpp — I/O in the C++ API: buffers, awaitable operations, TCP, UDP
// and files over the C ABI of weft_io.h. Header-only; include it after (or
// instead of) <weft/weft.hpp>.
//
//   auto listener = weft::net::TcpListener::bind("127.0.0.1", 0);  // Result<TcpListener>
//   auto conn = co_await listener->accept();                        // Result<TcpStream>
//   weft::Buffer buf(4096);
//   auto n = co_await conn->read(buf).timeout(5s);                  // Result<size_t>
//   if (!n) std::fprintf(stderr, "read: %s\n", n.message());
//   else co_await conn->write_all(buf, 0, *n);
//
// Errors. Expected I/O failures (a reset peer, a refused connect, a timeout)
// are values, never exceptions: every operation yields a weft::io::Result,
// which holds either the value or the negative errno-style code
// (error(), errno_value(), message()). Exceptions are kept for bugs and
// resources: awaiting outside a weft task, asking a failed Result for its
// value, running out of memory for a Buffer.
//
// Buffers belong to an operation until the kernel is done with them. An
// awaitable dropped while its operation is in the kernel (the task was
// aborted, the runtime shut down) cancels the operation, and the kernel may
// still write into the buffer until that cancellation completes. So every
// operation here takes its memory as a weft::Buffer, whose reference the
// operation holds until then: dropping anything early is always safe. The
// few overloads that take a std::span instead (TcpStream::write, write_all
// and UdpSocket::send of constant data) pass no owner, and weft_io.h's rule
// applies to them: the bytes must stay valid until the runtime is freed
// (static data, say), or the awaitable must never be dropped before it
// completed.
//
// Runtimes. An operation is created on the runtime its object was given
// (bind/connect/open/adopt take an optional weft_runtime*), or, when none was
// given, on the runtime of the worker that creates it. Outside a worker
// without a runtime the operation fails with WEFT_EINVAL. An awaitable is
// co_awaited inside a task; Op::wait() blocks a plain thread instead.
//
// Threads: an object and its awaitables belong to one task at a time (they
// may move between tasks and threads, like a JoinHandle). The descriptor is
// closed when its object is destroyed, after any operation the object owns
// (a listener's accept, a connect) was cancelled. Destroy or close an object
// only while no awaitable made from it is pending: that one would go on
// with a closed descriptor, or with a new one that reused its number.
#ifndef WEFT_IO_HPP
#define WEFT_IO_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "weft.hpp"
#include "weft_io.h"

namespace weft {

// ---- Buffer -------------------------------------------------------------------

// A reference-counted byte buffer owned by weft (weft_buf). Move-only: a
// second owner is made explicitly with share(), so that two names for the
// same bytes are visible in the code. The contents start uninitialised.
class Buffer {
public:
    Buffer() noexcept = default;
    // capacity bytes. Throws std::bad_alloc when out of memory (a resource
    // failure, not an I/O error); capacity 0 gives an empty Buffer.
    explicit Buffer(std::size_t capacity) : b_(capacity ? weft_buf_new(capacity) : nullptr) {
        if (capacity && !b_) throw std::bad_alloc();
    }
    // Takes over one reference to b (may be NULL).
    static Buffer adopt(weft_buf* b) noexcept {
        Buffer out;
        out.b_ = b;
        return out;
    }
    Buffer(Buffer&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
    Buffer& operator=(Buffer&& o) noexcept {
        if (this != &o) weft_buf_free(std::exchange(b_, std::exchange(o.b_, nullptr)));
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { weft_buf_free(b_); }

    // Another owner of the same bytes (adds a reference).
    Buffer share() const noexcept { return adopt(b_ ? weft_buf_ref(b_) : nullptr); }

    char* data() noexcept { return b_ ? static_cast<char*>(weft_buf_data(b_)) : nullptr; }
    const char* data() const noexcept { return b_ ? static_cast<const char*>(weft_buf_data(b_)) : nullptr; }
    std::size_t capacity() const noexcept { return b_ ? weft_buf_capacity(b_) : 0; }
    bool empty() const noexcept { return b_ == nullptr; }

    std::span<char> span() noexcept { return {data(), capacity()}; }
    std::span<const char> span() const noexcept { return {data(), capacity()}; }
    // Bytes [offset, offset + length) as text; precondition: within capacity().
    std::string_view view(std::size_t offset, std::size_t length) const noexcept {
        return {data() + offset, length};
    }

    // The C handle (still owned by this object).
    weft_buf* native_handle() const noexcept { return b_; }
    // Gives up this object's reference.
    weft_buf* release() noexcept { return std::exchange(b_, nullptr); }

private:
    weft_buf* b_ = nullptr;
};

namespace io {

// ---- Result -------------------------------------------------------------------

// The outcome of an I/O call: a value, or a negative errno-style code.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}
    // code < 0: a WEFT_E* code or a negative errno.
    static Result failure(int code) noexcept {
        Result r;
        r.error_ = code;
        return r;
    }

    bool ok() const noexcept { return error_ == 0; }
    explicit operator bool() const noexcept { return ok(); }
    // The value; asking a failed result for it is a bug and throws weft::Error.
    T& value() & { return check(), *value_; }
    const T& value() const& { return check(), *value_; }
    T&& value() && { return check(), std::move(*value_); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    // 0 on success, else the negative code (-ECONNRESET, WEFT_ETIMEDOUT...).
    int error() const noexcept { return error_; }
    // The same as a positive errno (ECONNRESET...), 0 on success.
    int errno_value() const noexcept { return -error_; }
    // A sentence for the error (weft_strerror).
    const char* message() const noexcept { return weft_strerror(error_); }

private:
    Result() = default;
    void check() const {
        if (error_ != 0) throw Error(error_, "weft::io::Result::value() of a failed operation");
    }
    std::optional<T> value_;
    int error_ = 0;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() noexcept = default;
    static Result failure(int code) noexcept {
        Result r;
        r.error_ = code;
        return r;
    }
    bool ok() const noexcept { return error_ == 0; }
    explicit operator bool() const noexcept { return ok(); }
    void value() const {
        if (error_ != 0) throw Error(error_, "weft::io::Result::value() of a failed operation");
    }
    int error() const noexcept { return error_; }
    int errno_value() const noexcept { return -error_; }
    const char* message() const noexcept { return weft_strerror(error_); }

private:
    int error_ = 0;
};

// "Up to the end of the buffer", for the length arguments below.
inline constexpr std::size_t to_end = static_cast<std::size_t>(-1);

// A piece of a Buffer, for the vectored operations.
struct Slice {
    std::size_t offset;
    std::size_t length;
};

namespace detail {

// The runtime an operation is created on: the object's, else the calling
// worker's (NULL on a plain thread: the C ABI then reports WEFT_EINVAL).
inline weft_runtime* runtime_or_current(weft_runtime* rt) noexcept { return rt ? rt : weft_runtime_current(); }

// The operations' error for a syscall made here: -errno.
inline int last_error() noexcept { return -errno; }

// The most one operation moves (the C ABI refuses longer ones).
inline constexpr std::size_t MAX_OP_BYTES = INT32_MAX;

// Bytes [offset, offset + length) of buf, length clipped to the capacity
// and to MAX_OP_BYTES (a shorter transfer, which the caller handles as it
// handles any short read or write). WEFT_EINVAL when offset lies beyond it.
inline int buffer_range(Buffer& buf, std::size_t offset, std::size_t length, void** ptr, std::size_t* n) noexcept {
    std::size_t cap = buf.capacity();
    if (offset > cap) return WEFT_EINVAL;
    std::size_t room = cap - offset < MAX_OP_BYTES ? cap - offset : MAX_OP_BYTES;
    *n = length < room ? length : room;
    *ptr = *n ? buf.data() + offset : nullptr;
    return 0;
}

// An IPv4 address for host:port. host: a dotted quad or "localhost" (the
// same rule as weft_io_tcp_listen).
inline int ipv4_address(const char* host, std::uint16_t port, sockaddr_in* out) noexcept {
    std::memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons(port);
    if (!host) return WEFT_EINVAL;
    if (std::strcmp(host, "localhost") == 0) host = "127.0.0.1";
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : WEFT_EINVAL;
}

inline int local_port_of(int fd, std::uint16_t* port) noexcept {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return last_error();
    *port = ntohs(a.sin_port);
    return 0;
}

// A descriptor that is closed when its owner goes away.
class Fd {
public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { close(); }

    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    // 0 or -errno; closing an empty Fd is a no-op. The descriptor is gone
    // either way (close(2) must not be retried on Linux).
    int close() noexcept {
        if (fd_ < 0) return 0;
        return ::close(std::exchange(fd_, -1)) == 0 ? 0 : last_error();
    }

private:
    int fd_ = -1;
};

// Decodes an operation's raw result (>= 0, or a negative code) as a T.
template <class T>
struct Decode;
template <>
struct Decode<std::size_t> {
    static Result<std::size_t> from(std::int64_t r) {
        if (r < 0) return Result<std::size_t>::failure(static_cast<int>(r));
        return static_cast<std::size_t>(r);
    }
};
template <>
struct Decode<std::uint32_t> {
    static Result<std::uint32_t> from(std::int64_t r) {
        if (r < 0) return Result<std::uint32_t>::failure(static_cast<int>(r));
        return static_cast<std::uint32_t>(r);
    }
};
template <>
struct Decode<void> {
    static Result<void> from(std::int64_t r) {
        return r < 0 ? Result<void>::failure(static_cast<int>(r)) : Result<void>();
    }
};

// What every awaitable here shares: one weft_io_op polled with the task's
// waker. The op is owned (freed, so cancelled if still in the kernel, when
// the awaitable goes) except for the listener's multishot accept, which the
// listener keeps across accepts.
//
// A creation failure is stored as the result: the awaitable then completes
// at once with that error, without suspending.
class OpCore {
public:
    OpCore(OpCore&& o) noexcept
        : op_(std::exchange(o.op_, nullptr)), owned_(o.owned_), rt_(o.rt_), result_(o.result_) {}
    OpCore& operator=(OpCore&&) = delete;
    OpCore(const OpCore&) = delete;
    OpCore& operator=(const OpCore&) = delete;
    ~OpCore() {
        if (owned_) weft_io_op_free(op_);
    }

    bool await_ready() const noexcept { return op_ == nullptr; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        weft_context* cx = weft::detail::require_cx("co_await of a weft I/O operation");
        if (poll(cx)) return false;
        weft::detail::PromiseBase::wait_for(h, &ready, this);
        return true;
    }

    // The C handle (NULL when creation failed).
    weft_io_op* native_handle() const noexcept { return op_; }

protected:
    // create_code: what weft_io_<verb> returned; op: what it stored.
    OpCore(int create_code, weft_io_op* op, bool owned, weft_runtime* rt) noexcept
        : op_(create_code == 0 ? op : nullptr), owned_(owned), rt_(rt), result_(create_code) {}

    // Sets the time limit (before the first poll). A duration <= 0 means
    // "already due" here (the operation times out unless it completes at
    // once), not the C ABI's "no limit": a deadline computed as
    // `deadline - now` that has passed must not turn into waiting forever.
    void set_timeout(std::int64_t ns) noexcept {
        if (!op_) return;
        int r = weft_io_op_set_timeout(op_, ns > 0 ? ns : 1);
        if (r != 0) fail_without_starting(r);
    }

    // Blocks the calling plain thread until the operation completes.
    void wait_blocking() noexcept {
        if (!op_) return;
        std::int64_t res = 0;
        int r = weft_io_op_wait(op_, &res);
        result_ = r == 0 ? res : r;
    }

    // True when the operation has its result (stored in result_).
    bool poll(weft_context* cx) noexcept {
        std::int64_t res = 0;
        int r = weft_io_op_poll(op_, cx, &res);
        if (r == WEFT_PENDING) return false;
        result_ = r == WEFT_READY ? res : r;
        return true;
    }

    // Frees an owned operation (cancelling it if it is in the kernel).
    void free_op() noexcept {
        if (owned_) weft_io_op_free(op_);
        op_ = nullptr;
    }
    void fail_without_starting(int code) noexcept {
        free_op();
        result_ = code;
    }

    weft_io_op* op_;
    bool owned_;
    weft_runtime* rt_;
    std::int64_t result_;

private:
    // A poll of the suspended task: a spurious wake re-arms the waker.
    static bool ready(void* self, weft_context* cx) { return static_cast<OpCore*>(self)->poll(cx); }
};

// timeout() for an awaitable D built on OpCore.
template <class D>
class WithTimeout : public OpCore {
public:
    // Cancels the operation with WEFT_ETIMEDOUT if it has not completed after
    // d (unless the kernel finished it first). Call before co_await.
    template <class Rep, class Period>
    D& timeout(std::chrono::duration<Rep, Period> d) & {
        set_timeout(weft::detail::clamp_ns(d));
        return static_cast<D&>(*this);
    }
    template <class Rep, class Period>
    D timeout(std::chrono::duration<Rep, Period> d) && {
        set_timeout(weft::detail::clamp_ns(d));
        return std::move(static_cast<D&>(*this));
    }

protected:
    using OpCore::OpCore;
};

}  // namespace detail

// An awaitable I/O operation yielding Result<T>: bytes moved (size_t), a
// readiness mask (uint32_t), nothing (void) or a connection. co_await it
// once inside a task, or wait() for it on a plain thread. Dropping it before
// it completed cancels the operation.
template <class T>
class [[nodiscard]] Op : public detail::WithTimeout<Op<T>> {
    using Base = detail::WithTimeout<Op<T>>;

public:
    Op(int create_code, weft_io_op* op, weft_runtime* rt) noexcept : Base(create_code, op, true, rt) {}
    Op(Op&&) noexcept = default;

    Result<T> await_resume() { return detail::Decode<T>::from(this->result_); }
    // Blocks a plain thread (a runtime worker gets WEFT_EDEADLK) until done.
    Result<T> wait() {
        this->wait_blocking();
        return await_resume();
    }
};

namespace detail {

inline Op<std::size_t> recv_op(weft_runtime* rt, int fd, Buffer& buf, std::size_t off, std::size_t len, int flags) {
    rt = runtime_or_current(rt);
    void* ptr = nullptr;
    std::size_t n = 0;
    weft_io_op* op = nullptr;
    int r = buffer_range(buf, off, len, &ptr, &n);
    if (r == 0) r = weft_io_recv(rt, fd, ptr, n, buf.native_handle(), flags, &op);
    return Op<std::size_t>(r, op, rt);
}

inline Op<std::size_t> send_op(weft_runtime* rt, int fd, const void* ptr, std::size_t n, weft_buf* keep) {
    rt = runtime_or_current(rt);
    weft_io_op* op = nullptr;
    // MSG_NOSIGNAL: a peer that went away is an EPIPE result, not a SIGPIPE.
    int r = weft_io_send(rt, fd, ptr, n, keep, MSG_NOSIGNAL, &op);
    return Op<std::size_t>(r, op, rt);
}

inline Op<std::size_t> send_op(weft_runtime* rt, int fd, Buffer& buf, std::size_t off, std::size_t len) {
    void* ptr = nullptr;
    std::size_t n = 0;
    int r = buffer_range(buf, off, len, &ptr, &n);
    if (r != 0) return Op<std::size_t>(r, nullptr, rt);
    return send_op(rt, fd, ptr, n, buf.native_handle());
}

inline Op<std::uint32_t> poll_ready_op(weft_runtime* rt, int fd, std::uint32_t events) {
    rt = runtime_or_current(rt);
    weft_io_op* op = nullptr;
    int r = weft_io_poll_ready(rt, fd, events, &op);
    return Op<std::uint32_t>(r, op, rt);
}

// The iovecs for slices of buf (at most 64, the C ABI's limit, which the
// kernel checks: a longer list gets its WEFT_EINVAL).
struct IovecList {
    static constexpr std::size_t MAX = 64;
    iovec v[MAX];
    int count = 0;
    int fill(Buffer& buf, std::span<const Slice> slices) noexcept {
        if (slices.size() > MAX) return WEFT_EINVAL;
        for (const Slice& s : slices) {
            void* ptr = nullptr;
            std::size_t n = 0;
            if (buffer_range(buf, s.offset, s.length, &ptr, &n) != 0 || n != s.length) return WEFT_EINVAL;
            v[count++] = iovec{ptr, n};
        }
        return 0;
    }
};

}  // namespace detail

// The awaitable of write_all: sends [ptr, ptr + length) with as many sends
// as it takes, one at a time. It holds a reference on keep (the memory's
// owner, when there is one) from creation on, and each send holds its own
// while the kernel has it. Yields the bytes sent (= length) or the first
// error; a send that moves nothing is reported as -EIO rather than retried
// forever.
class [[nodiscard]] WriteAll {
public:
    WriteAll(weft_runtime* rt, int fd, const char* ptr, std::size_t length, weft_buf* keep, int create_error) noexcept
        : rt_(detail::runtime_or_current(rt)), fd_(fd), next_(ptr), left_(length),
          keep_(Buffer::adopt(keep ? weft_buf_ref(keep) : nullptr)), error_(create_error) {}
    WriteAll(WriteAll&& o) noexcept
        : rt_(o.rt_), fd_(o.fd_), next_(o.next_), left_(o.left_), sent_(o.sent_), keep_(std::move(o.keep_)),
          error_(o.error_), op_(std::exchange(o.op_, nullptr)) {}
    WriteAll(const WriteAll&) = delete;
    WriteAll& operator=(const WriteAll&) = delete;
    ~WriteAll() { weft_io_op_free(op_); }

    bool await_ready() const noexcept { return error_ != 0 || left_ == 0; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        weft_context* cx = weft::detail::require_cx("co_await of weft write_all");
        if (step(cx)) return false;
        weft::detail::PromiseBase::wait_for(h, &ready, this);
        return true;
    }
    Result<std::size_t> await_resume() const noexcept {
        if (error_ != 0) return Result<std::size_t>::failure(error_);
        return sent_;
    }

private:
    static bool ready(void* self, weft_context* cx) { return static_cast<WriteAll*>(self)->step(cx); }
    // Drives sends until everything is sent (true), an error (true) or a
    // send is pending (false).
    bool step(weft_context* cx) noexcept {
        for (;;) {
            if (!op_) {
                std::size_t chunk = left_ < detail::MAX_OP_BYTES ? left_ : detail::MAX_OP_BYTES;
                int r = weft_io_send(rt_, fd_, next_, chunk, keep_.native_handle(), MSG_NOSIGNAL, &op_);
                if (r != 0) {
                    op_ = nullptr;
                    error_ = r;
                    return true;
                }
            }
            std::int64_t res = 0;
            int r = weft_io_op_poll(op_, cx, &res);
            if (r == WEFT_PENDING) return false;
            weft_io_op_free(std::exchange(op_, nullptr));
            if (r != WEFT_READY) res = r;
            if (res <= 0) {
                error_ = res < 0 ? static_cast<int>(res) : -EIO;
                return true;
            }
            std::size_t n = static_cast<std::size_t>(res);
            next_ += n;
            left_ -= n;
            sent_ += n;
            if (left_ == 0) return true;
        }
    }

    weft_runtime* rt_;
    int fd_;
    const char* next_;
    std::size_t left_;
    std::size_t sent_ = 0;
    Buffer keep_;
    int error_;
    weft_io_op* op_ = nullptr;
};

}  // namespace io

namespace net {

// ---- TcpStream ---------------------------------------------------------------

// A connected TCP socket (non-blocking, close-on-exec). Closed with close(2)
// when destroyed, unless moved from or released.
class TcpStream {
public:
    class Connect;

    TcpStream() noexcept = default;
    // Takes ownership of fd, which must be a non-blocking connected socket
    // (the epoll backend requires it; weft_io_socket and accept give one).
    static TcpStream adopt(int fd, weft_runtime* rt = nullptr) noexcept { return TcpStream(fd, rt); }

    // Connects to host:port (an IPv4 dotted quad or "localhost"). Awaitable,
    // yields Result<TcpStream>; .timeout(d) bounds it.
    static Connect connect(const char* host, std::uint16_t port, weft_runtime* rt = nullptr);

    TcpStream(TcpStream&&) noexcept = default;
    TcpStream& operator=(TcpStream&&) noexcept = default;

    // Receives up to len bytes into buf[off, ...). Yields the count; 0 is
    // the peer's EOF (or len == 0).
    io::Op<std::size_t> read(Buffer& buf, std::size_t off = 0, std::size_t len = io::to_end) {
        return io::detail::recv_op(rt_, fd_.get(), buf, off, len, 0);
    }
    // One send of up to len bytes from buf[off, ...); yields how many went.
    io::Op<std::size_t> write(Buffer& buf, std::size_t off = 0, std::size_t len = io::to_end) {
        return io::detail::send_op(rt_, fd_.get(), buf, off, len);
    }
    // One send from memory without an owner: see the span rule at the top of
    // this file (the bytes must outlive the runtime, or the awaitable must
    // not be dropped before it completes).
    io::Op<std::size_t> write(std::span<const char> bytes) {
        return io::detail::send_op(rt_, fd_.get(), bytes.data(), bytes.size(), nullptr);
    }
    // Sends all of buf[off, off + len) (len clipped to the capacity).
    io::WriteAll write_all(Buffer& buf, std::size_t off = 0, std::size_t len = io::to_end) {
        void* ptr = nullptr;
        std::size_t n = 0;
        int r = io::detail::buffer_range(buf, off, len, &ptr, &n);
        return io::WriteAll(rt_, fd_.get(), static_cast<const char*>(ptr), n, buf.native_handle(), r);
    }
    // write_all from memory without an owner (the span rule applies).
    io::WriteAll write_all(std::span<const char> bytes) {
        return io::WriteAll(rt_, fd_.get(), bytes.data(), bytes.size(), nullptr, 0);
    }
    // Waits until the socket is ready for events (POLLIN, POLLOUT...);
    // yields the ready mask.
    io::Op<std::uint32_t> ready(std::uint32_t events) { return io::detail::poll_ready_op(rt_, fd_.get(), events); }

    // shutdown(2) never blocks, so it is a plain call.
    io::Result<void> shutdown(int how = SHUT_WR) noexcept {
        if (::shutdown(fd_.get(), how) == 0) return {};
        return io::Result<void>::failure(io::detail::last_error());
    }
    io::Result<void> set_nodelay(bool on) noexcept {
        int v = on ? 1 : 0;
        if (setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) == 0) return {};
        return io::Result<void>::failure(io::detail::last_error());
    }
    // Closes now (also done by the destructor).
    io::Result<void> close() noexcept {
        int r = fd_.close();
        return r == 0 ? io::Result<void>() : io::Result<void>::failure(r);
    }

    int fd() const noexcept { return fd_.get(); }
    bool is_open() const noexcept { return fd_.get() >= 0; }
    int release() noexcept { return fd_.release(); }
    weft_runtime* runtime() const noexcept { return rt_; }

private:
    TcpStream(int fd, weft_runtime* rt) noexcept : fd_(fd), rt_(rt) {}
    io::detail::Fd fd_;
    weft_runtime* rt_ = nullptr;
};

// The awaitable of TcpStream::connect. Owns the new socket until the
// connection is made: dropped early, it cancels the connect and closes it.
class [[nodiscard]] TcpStream::Connect : public io::detail::WithTimeout<TcpStream::Connect> {
    using Base = io::detail::WithTimeout<TcpStream::Connect>;

public:
    Connect(int create_code, weft_io_op* op, weft_runtime* rt, int fd) noexcept
        : Base(create_code, op, true, rt), fd_(fd) {}
    Connect(Connect&&) noexcept = default;
    // Frees (cancels) the operation before the socket closes: the base
    // class, which would free it, is destroyed after this member.
    ~Connect() { free_op(); }

    io::Result<TcpStream> await_resume() {
        if (result_ < 0) return io::Result<TcpStream>::failure(static_cast<int>(result_));
        return TcpStream(fd_.release(), rt_);
    }
    io::Result<TcpStream> wait() {
        wait_blocking();
        return await_resume();
    }

private:
    io::detail::Fd fd_;
};

inline TcpStream::Connect TcpStream::connect(const char* host, std::uint16_t port, weft_runtime* rt) {
    rt = io::detail::runtime_or_current(rt);
    sockaddr_in addr;
    int r = io::detail::ipv4_address(host, port, &addr);
    if (r != 0) return Connect(r, nullptr, rt, -1);
    int fd = weft_io_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return Connect(fd, nullptr, rt, -1);
    weft_io_op* op = nullptr;
    // SAFETY: sockaddr_in is the AF_INET form of sockaddr; the kernel copies it.
    r = weft_io_connect(rt, fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr, &op);
    return Connect(r, op, rt, fd);
}

// ---- TcpListener ---------------------------------------------------------------

// A listening TCP socket. accept() is served by one multishot accept
// operation that the listener keeps from its first accept() on, so a busy
// listener does not create an operation per connection.
class TcpListener {
public:
    class Accept;

    TcpListener() noexcept = default;
    // Listens on host:port (IPv4 dotted quad or "localhost"; port 0: the
    // kernel picks, see local_port()), SO_REUSEADDR, non-blocking.
    static io::Result<TcpListener> bind(const char* host, std::uint16_t port, weft_runtime* rt = nullptr,
                                        int backlog = 1024) noexcept {
        std::uint16_t bound = 0;
        int fd = weft_io_tcp_listen(host, port, backlog, &bound);
        if (fd < 0) return io::Result<TcpListener>::failure(fd);
        return TcpListener(fd, bound, rt);
    }

    TcpListener(TcpListener&& o) noexcept
        : fd_(std::move(o.fd_)), port_(o.port_), rt_(o.rt_), accept_op_(std::exchange(o.accept_op_, nullptr)) {}
    TcpListener& operator=(TcpListener&& o) noexcept {
        if (this != &o) {
            weft_io_op_free(std::exchange(accept_op_, std::exchange(o.accept_op_, nullptr)));
            fd_ = std::move(o.fd_);
            port_ = o.port_;
            rt_ = o.rt_;
        }
        return *this;
    }
    TcpListener(const TcpListener&) = delete;
    TcpListener& operator=(const TcpListener&) = delete;
    // The accept operation is cancelled before the socket closes.
    ~TcpListener() { weft_io_op_free(accept_op_); }

    // The next connection: an awaitable yielding Result<TcpStream>. Await one
    // accept() at a time, and keep the listener where it is (not moved, not
    // destroyed) while it is awaited.
    Accept accept();

    std::uint16_t local_port() const noexcept { return port_; }
    int fd() const noexcept { return fd_.get(); }
    // Stops listening now (also done by the destructor).
    io::Result<void> close() noexcept {
        weft_io_op_free(std::exchange(accept_op_, nullptr));
        int r = fd_.close();
        return r == 0 ? io::Result<void>() : io::Result<void>::failure(r);
    }

private:
    TcpListener(int fd, std::uint16_t port, weft_runtime* rt) noexcept : fd_(fd), port_(port), rt_(rt) {}
    io::detail::Fd fd_;
    std::uint16_t port_ = 0;
    weft_runtime* rt_ = nullptr;
    weft_io_op* accept_op_ = nullptr;  // the multishot accept, created by the first accept()
};

class [[nodiscard]] TcpListener::Accept : public io::detail::OpCore {
public:
    Accept(int create_code, TcpListener* owner) noexcept
        : OpCore(create_code, owner->accept_op_, false, owner->rt_) {}
    Accept(Accept&&) noexcept = default;

    // An error (EMFILE, say) is one result of the stream: the multishot
    // operation stays usable and the next accept() polls it again.
    io::Result<TcpStream> await_resume() {
        if (result_ < 0) return io::Result<TcpStream>::failure(static_cast<int>(result_));
        return TcpStream::adopt(static_cast<int>(result_), rt_);
    }
};

inline TcpListener::Accept TcpListener::accept() {
    int r = 0;
    if (!accept_op_) {
        weft_runtime* rt = io::detail::runtime_or_current(rt_);
        r = weft_io_accept(rt, fd_.get(), WEFT_IO_MULTISHOT, &accept_op_);
        if (r != 0) accept_op_ = nullptr;
    }
    return Accept(r, this);
}

// ---- UdpSocket ------------------------------------------------------------------

// A UDP socket. send/recv work on a connected socket (connect() sets the
// peer); weft_io.h offers no sendto/recvfrom.
class UdpSocket {
public:
    UdpSocket() noexcept = default;
    // A socket bound to host:port (port 0: the kernel picks, see local_port()).
    static io::Result<UdpSocket> bind(const char* host, std::uint16_t port, weft_runtime* rt = nullptr) noexcept {
        sockaddr_in addr;
        int r = io::detail::ipv4_address(host, port, &addr);
        if (r != 0) return io::Result<UdpSocket>::failure(r);
        int fd = weft_io_socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) return io::Result<UdpSocket>::failure(fd);
        UdpSocket s(fd, rt);
        // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
        if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            return io::Result<UdpSocket>::failure(io::detail::last_error());
        r = io::detail::local_port_of(fd, &s.port_);
        if (r != 0) return io::Result<UdpSocket>::failure(r);
        return s;
    }

    UdpSocket(UdpSocket&&) noexcept = default;
    UdpSocket& operator=(UdpSocket&&) noexcept = default;

    // Sets the peer for send/recv. Connecting a UDP socket never blocks, so
    // it is a plain call.
    io::Result<void> connect(const char* host, std::uint16_t port) noexcept {
        sockaddr_in addr;
        int r = io::detail::ipv4_address(host, port, &addr);
        if (r != 0) return io::Result<void>::failure(r);
        // SAFETY: as in bind.
        if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            return io::Result<void>::failure(io::detail::last_error());
        return {};
    }
    // One datagram from buf[off, off + len).
    io::Op<std::size_t> send(Buffer& buf, std::size_t off = 0, std::size_t len = io::to_end) {
        return io::detail::send_op(rt_, fd_.get(), buf, off, len);
    }
    // One datagram from memory without an owner (the span rule applies).
    io::Op<std::size_t> send(std::span<const char> bytes) {
        return io::detail::send_op(rt_, fd_.get(), bytes.data(), bytes.size(), nullptr);
    }
    // One datagram into buf[off, ...) (the rest of a longer one is dropped).
    io::Op<std::size_t> recv(Buffer& buf, std::size_t off = 0, std::size_t len = io::to_end) {
        return io::detail::recv_op(rt_, fd_.get(), buf, off, len, 0);
    }

    std::uint16_t local_port() const noexcept { return port_; }
    int fd() const noexcept { return fd_.get(); }
    io::Result<void> close() noexcept {
        int r = fd_.close();
        return r == 0 ? io::Result<void>() : io::Result<void>::failure(r);
    }

private:
    UdpSocket(int fd, weft_runtime* rt) noexcept : fd_(fd), rt_(rt) {}
    io::detail::Fd fd_;
    std::uint16_t port_ = 0;
    weft_runtime* rt_ = nullptr;
};

}  // namespace net

namespace fs {

// ---- File ------------------------------------------------------------------------

// A file opened with open(2). Reads and writes go through the runtime at
// explicit offsets (on the epoll backend they run synchronously on the
// worker: regular files are always "ready").
class File {
public:
    File() noexcept = default;
    // open(path, flags | O_CLOEXEC, mode); yields the file or -errno.
    static io::Result<File> open(const char* path, int flags, mode_t mode = 0644, weft_runtime* rt = nullptr) noexcept {
        int fd = ::open(path, flags | O_CLOEXEC, mode);
        if (fd < 0) return io::Result<File>::failure(io::detail::last_error());
        return File(fd, rt);
    }
    // Takes ownership of an open descriptor.
    static File adopt(int fd, weft_runtime* rt = nullptr) noexcept { return File(fd, rt); }

    File(File&&) noexcept = default;
    File& operator=(File&&) noexcept = default;

    // Reads up to len bytes at file_offset into buf[buf_offset, ...);
    // yields the count (0 at the end of the file).
    io::Op<std::size_t> read_at(Buffer& buf, std::uint64_t file_offset, std::size_t buf_offset = 0,
                                std::size_t len = io::to_end) {
        return rw_op(&weft_io_read, buf, file_offset, buf_offset, len);
    }
    // Writes buf[buf_offset, buf_offset + len) at file_offset; yields the count.
    io::Op<std::size_t> write_at(Buffer& buf, std::uint64_t file_offset, std::size_t buf_offset = 0,
                                 std::size_t len = io::to_end) {
        return rw_op(&weft_io_write, buf, file_offset, buf_offset, len);
    }
    // Scatter: fills the slices of buf in order, reading from file_offset.
    io::Op<std::size_t> readv_at(Buffer& buf, std::span<const io::Slice> slices, std::uint64_t file_offset) {
        return vec_op(&weft_io_readv, buf, slices, file_offset);
    }
    // Gather: writes the slices of buf in order at file_offset.
    io::Op<std::size_t> writev_at(Buffer& buf, std::span<const io::Slice> slices, std::uint64_t file_offset) {
        return vec_op(&weft_io_writev, buf, slices, file_offset);
    }

    int fd() const noexcept { return fd_.get(); }
    bool is_open() const noexcept { return fd_.get() >= 0; }
    int release() noexcept { return fd_.release(); }
    io::Result<void> close() noexcept {
        int r = fd_.close();
        return r == 0 ? io::Result<void>() : io::Result<void>::failure(r);
    }

private:
    File(int fd, weft_runtime* rt) noexcept : fd_(fd), rt_(rt) {}

    // A file offset beyond INT64_MAX would reach the C ABI as a negative
    // value, and -1 means "the current position" there: refused here.
    template <class Fn>
    io::Op<std::size_t> rw_op(Fn fn, Buffer& buf, std::uint64_t file_offset, std::size_t buf_offset,
                              std::size_t len) {
        weft_runtime* rt = io::detail::runtime_or_current(rt_);
        if (file_offset > static_cast<std::uint64_t>(INT64_MAX)) return io::Op<std::size_t>(WEFT_EINVAL, nullptr, rt);
        void* ptr = nullptr;
        std::size_t n = 0;
        weft_io_op* op = nullptr;
        int r = io::detail::buffer_range(buf, buf_offset, len, &ptr, &n);
        if (r == 0) r = fn(rt, fd_.get(), ptr, n, buf.native_handle(), static_cast<std::int64_t>(file_offset), &op);
        return io::Op<std::size_t>(r, op, rt);
    }
    template <class Fn>
    io::Op<std::size_t> vec_op(Fn fn, Buffer& buf, std::span<const io::Slice> slices, std::uint64_t file_offset) {
        weft_runtime* rt = io::detail::runtime_or_current(rt_);
        if (file_offset > static_cast<std::uint64_t>(INT64_MAX)) return io::Op<std::size_t>(WEFT_EINVAL, nullptr, rt);
        io::detail::IovecList iov;
        weft_io_op* op = nullptr;
        int r = iov.fill(buf, slices);
        // The kernel copies the iovec array; the memory it points to is buf's.
        if (r == 0)
            r = fn(rt, fd_.get(), iov.v, iov.count, buf.native_handle(), static_cast<std::int64_t>(file_offset), &op);
        return io::Op<std::size_t>(r, op, rt);
    }

    io::detail::Fd fd_;
    weft_runtime* rt_ = nullptr;
};

}  // namespace fs
}  // namespace weft

#endif
