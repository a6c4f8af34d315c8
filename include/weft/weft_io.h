/* weft_io.h — I/O through the runtime: io_uring, or epoll where io_uring
 * cannot be used. Part of the C ABI (include it after weft.h or alone).
 *
 * Model. An I/O operation (weft_io_op) is created by one of the
 * weft_io_<verb> functions, started by its first weft_io_op_poll from a task
 * (or weft_io_op_wait from a plain thread) and finished when the kernel's
 * answer arrives; the poll that sees it returns WEFT_READY with the result:
 * >= 0 (bytes moved, the accepted fd, the readiness mask...) or a negative
 * errno (-ECONNRESET, -EPIPE, ...; weft_strerror describes it).
 *
 * Buffers belong to the operation until the kernel's completion arrives.
 * Freeing an operation that is still in the kernel (weft_io_op_free, a
 * dropped C++ awaitable, a task cancelled at shutdown) asks the kernel to
 * cancel it and returns at once; the operation itself lives on until the
 * cancellation completes. So that the memory the kernel may still write is
 * never freed early, pass the buffer's owner as `keep`: a weft_buf (below),
 * which the operation holds a reference on until then. With keep == NULL the
 * caller promises that ptr stays valid until the runtime is freed (static
 * data, say), or that it never frees an operation before it completed.
 *
 * Backends (weft_runtime_io_backend): io_uring, through liburing when the
 * build found it, else weft's own raw-syscall ring; epoll when io_uring is
 * unavailable at run time (ENOSYS, EPERM, the kernel.io_uring_disabled
 * sysctl, a seccomp filter, a kernel older than 5.19 — without
 * IORING_ASYNC_CANCEL_ANY, which shutdown needs — or missing an opcode weft
 * needs), and under Valgrind (where a thread waiting in io_uring_enter
 * stops every other thread, so the process hangs). The environment variable
 * WEFT_IO=uring|epoll forces one (uring fails the runtime's creation with
 * the reason if it cannot be used).
 * Every operation works on both; the differences: on epoll a read or write
 * of a regular file runs synchronously on the worker (files are always
 * "ready"), and sockets given to weft must be non-blocking (weft_io_socket
 * and accept make them so) or the worker may block in a recv.
 *
 * Threads: an operation belongs to one thread at a time, like a join handle.
 *
 * Closing fds: an fd may be closed once no operation on it is pending, or
 * right after weft_io_op_free of the ones that are (io_uring: the cancelled
 * operation holds its own reference to the file until it completes; epoll:
 * the free unregisters the wait). Prefer weft_io_close, which on epoll also
 * wakes any waiter another task still has on that fd.
 *
 * Shutdown: weft_runtime_free cancels every operation the kernel still holds
 * and waits for the kernel's answers, so no buffer is written after it
 * returns. An operation that outlives its runtime (held by a plain thread)
 * then completes with WEFT_ECANCELED or WEFT_ECLOSED, and must still be freed.
 */
#ifndef WEFT_WEFT_IO_H
#define WEFT_WEFT_IO_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sockaddr;
struct iovec;

/* ---- backend -------------------------------------------------------------- */
#define WEFT_IO_NONE 0  /* no I/O driver (never returned for a live runtime) */
#define WEFT_IO_URING 1 /* io_uring */
#define WEFT_IO_EPOLL 2 /* epoll readiness + non-blocking syscalls */

typedef struct weft_io_status {
    size_t size;        /* sizeof(weft_io_status), set by the caller */
    int backend;        /* WEFT_IO_URING or WEFT_IO_EPOLL */
    int uring_impl;     /* 1: liburing, 2: weft's raw-syscall ring (compiled in) */
    int uring_error;    /* why io_uring is not used (-errno), 0 when it is */
    const char* why;    /* one sentence: which backend and why (static storage) */
    uint64_t submitted; /* operations handed to the kernel (epoll: waits registered), all workers */
    uint64_t completed; /* completions reaped (epoll: waits ended) */
    uint64_t in_flight; /* operations the kernel holds now (submitted - completed) */
    uint64_t enters;    /* io_uring_enter / epoll_wait calls made by the workers */
    uint64_t wake_writes; /* eventfd writes made to wake a worker sleeping in the driver */
} weft_io_status;
WEFT_API int weft_runtime_io_status(const weft_runtime* rt, weft_io_status* out);
/* The backend in use (WEFT_IO_URING / WEFT_IO_EPOLL), or a negative code. */
WEFT_API int weft_runtime_io_backend(const weft_runtime* rt);

/* ---- buffers ---------------------------------------------------------------- */
/* A reference-counted byte buffer owned by weft. An operation given it as
 * `keep` holds a reference until its completion arrives. */
typedef struct weft_buf weft_buf;
/* NULL when out of memory or capacity == 0. */
WEFT_API weft_buf* weft_buf_new(size_t capacity);
WEFT_API void* weft_buf_data(const weft_buf* b);
WEFT_API size_t weft_buf_capacity(const weft_buf* b);
/* Adds a reference and returns b. */
WEFT_API weft_buf* weft_buf_ref(weft_buf* b);
/* Drops a reference; the memory goes when the last one does. NULL: no-op. */
WEFT_API void weft_buf_free(weft_buf* b);

/* ---- operations ------------------------------------------------------------- */
typedef struct weft_io_op weft_io_op;

/* Each creates an operation (not started yet) on rt and stores it in *out.
 * Errors: WEFT_EINVAL (rt or out NULL, fd < 0, ptr NULL with len > 0, len >
 * INT32_MAX, a bad iovec count), WEFT_ECLOSED (rt shut down), WEFT_ENOMEM.
 * A zero-length recv/send/read/write is valid and completes with 0.
 * offset: a file offset, or -1 for the fd's current position / a socket. */
WEFT_API int weft_io_recv(weft_runtime* rt, int fd, void* ptr, size_t len, weft_buf* keep, int msg_flags,
                          weft_io_op** out);
WEFT_API int weft_io_send(weft_runtime* rt, int fd, const void* ptr, size_t len, weft_buf* keep, int msg_flags,
                          weft_io_op** out);
WEFT_API int weft_io_read(weft_runtime* rt, int fd, void* ptr, size_t len, weft_buf* keep, int64_t offset,
                          weft_io_op** out);
WEFT_API int weft_io_write(weft_runtime* rt, int fd, const void* ptr, size_t len, weft_buf* keep, int64_t offset,
                           weft_io_op** out);
/* The iovec array is copied (at most 64 entries); the memory it points to is
 * the caller's, kept alive through `keep` as above. */
WEFT_API int weft_io_readv(weft_runtime* rt, int fd, const struct iovec* iov, int iovcnt, weft_buf* keep,
                           int64_t offset, weft_io_op** out);
WEFT_API int weft_io_writev(weft_runtime* rt, int fd, const struct iovec* iov, int iovcnt, weft_buf* keep,
                            int64_t offset, weft_io_op** out);
/* Accept: the result is a new connected fd (non-blocking, close-on-exec).
 * WEFT_IO_MULTISHOT keeps the operation armed: after each READY result, poll
 * (or weft_io_op_wait) again for the next connection (io_uring multishot
 * accept where the kernel has it, 5.19; otherwise one accept at a time,
 * transparently). Connections accepted before they are asked for queue in
 * the operation; an error (EMFILE, ...) is one READY result with the code,
 * after which the operation re-arms itself at the next poll. */
#define WEFT_IO_MULTISHOT 1u
WEFT_API int weft_io_accept(weft_runtime* rt, int listen_fd, unsigned flags, weft_io_op** out);
/* addr (addrlen <= 128 bytes) is copied. Result 0 once connected. */
WEFT_API int weft_io_connect(weft_runtime* rt, int fd, const struct sockaddr* addr, unsigned addrlen,
                             weft_io_op** out);
WEFT_API int weft_io_close(weft_runtime* rt, int fd, weft_io_op** out);
WEFT_API int weft_io_shutdown(weft_runtime* rt, int fd, int how, weft_io_op** out);
/* Waits until fd is ready for `events` (POLLIN, POLLOUT, ...); the result is
 * the ready mask (POLLERR / POLLHUP included when they happen). */
WEFT_API int weft_io_poll_ready(weft_runtime* rt, int fd, uint32_t events, weft_io_op** out);

/* A time limit for any operation, set before its first poll: when it runs out
 * the operation is cancelled and completes with WEFT_ETIMEDOUT (unless the
 * kernel finished it first: then the real result wins). timeout_ns <= 0:
 * no limit. WEFT_EALREADY once started. */
WEFT_API int weft_io_op_set_timeout(weft_io_op* op, int64_t timeout_ns);

/* Drives the operation from a task's poll function. Returns WEFT_PENDING (the
 * task is woken when there is news) or WEFT_READY with *result set. The first
 * call starts the operation. After READY, further polls return the same
 * result, except for a multishot accept (the next connection). Errors of the
 * call itself: WEFT_EINVAL (NULL op, cx, result, or a cx without a waker).
 * Any waker will do (a plain thread's, another runtime's): weft_io_op_wait is
 * this with a waker that unparks the calling thread. */
WEFT_API int weft_io_op_poll(weft_io_op* op, weft_context* cx, int64_t* result);
/* Blocks a plain thread (not a runtime worker: WEFT_EDEADLK) until the
 * operation completes; returns 0 with *result set. */
WEFT_API int weft_io_op_wait(weft_io_op* op, int64_t* result);
/* Frees the operation; one still in the kernel is cancelled first (see the
 * top of this file). NULL is a no-op. */
WEFT_API void weft_io_op_free(weft_io_op* op);

/* ---- sockets -------------------------------------------------------------- */
/* socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol); returns the
 * fd or -errno. Plain syscalls with errors as codes, for FFI users. */
WEFT_API int weft_io_socket(int domain, int type, int protocol);
/* A TCP listener on host:port (IPv4 dotted quad or "localhost"; port 0: the
 * kernel picks), SO_REUSEADDR, backlog 1024, non-blocking. Returns the fd or
 * -errno (WEFT_EINVAL for a bad host). *bound_port gets the real port. */
WEFT_API int weft_io_tcp_listen(const char* host, uint16_t port, int backlog, uint16_t* bound_port);

#ifdef __cplusplus
}
#endif

#endif
