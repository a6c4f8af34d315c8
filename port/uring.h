// port/uring.h — one io_uring instance: the submission and completion rings.
//
// Two implementations with one interface, chosen at build time:
//   - liburing (port/linux/uring_liburing.cpp) when CMake finds Debian's
//     liburing-dev (linked statically into libweft.so, so the library still
//     depends on libc only);
//   - weft's own raw-syscall ring (port/linux/uring_raw.cpp): io_uring_setup,
//     io_uring_enter, io_uring_register, mmap of the rings and the barriers
//     the kernel's ABI asks for. -DWEFT_URING_RAW=ON forces it.
// The SQE and CQE layouts are the kernel's (<linux/io_uring.h>, or liburing's
// copy of it); kernel/io_uring.cpp fills SQEs field by field, so it is the
// same code on both.
//
// Threading: a Ring has a single user at a time (the thread holding the
// worker that owns it, kernel/io.h). Nothing here locks.
#ifndef WEFT_PORT_URING_H
#define WEFT_PORT_URING_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

// Set by CMake (0 or 1); a build without it (tests/fuzz/build.sh) gets the
// raw ring.
#ifndef WEFT_HAVE_LIBURING
#define WEFT_HAVE_LIBURING 0
#endif

#if WEFT_HAVE_LIBURING
#include <liburing.h>
#else
#include <linux/io_uring.h>
#endif

namespace weft::port {

struct RingImpl;  // the implementation's state (liburing's struct io_uring, or the raw ring's)

class Ring {
public:
    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring() { exit(); }

    // Creates the ring with room for `entries` SQEs (a power of two, at most
    // 4096) and 2x as many CQEs. No SQPOLL, no IOPOLL. IORING_SETUP_COOP_TASKRUN
    // where the kernel has it (5.19): a completion for a thread that is
    // running user code no longer interrupts it with an IPI; its task work
    // runs at its next return to user mode (its next syscall, or the next
    // scheduler tick for a thread stuck computing, so a pulse handoff still
    // gets the completions of a stuck worker's ring within a tick). Measured:
    // echo at 64 connections, 110k -> 153k round trips/s (bench/RESULTS.md).
    // Not SINGLE_ISSUER / DEFER_TASKRUN: a handoff moves the ring to
    // another thread. Returns 0 or -errno:
    // -ENOSYS (kernel without io_uring), -EPERM (io_uring_disabled sysctl,
    // seccomp), -ENOMEM, ... Also fails with -EOPNOTSUPP when the kernel
    // lacks IORING_FEAT_EXT_ARG (5.11), which submit_and_wait needs for its
    // timeout; the caller then falls back to epoll.
    int init(unsigned entries);
    // Unmaps and closes. Safe to call twice, and on a ring that never inited.
    void exit();
    bool ok() const { return impl_ != nullptr; }

    // The next free SQE, zeroed, or nullptr when the SQ is full (submit
    // first). Visible to the kernel at the next submit.
    struct io_uring_sqe* get_sqe();
    // SQEs taken by get_sqe and not yet submitted.
    unsigned sq_pending() const;

    // Submits the pending SQEs without waiting. Returns the number the kernel
    // took, or -errno (-EBUSY/-EAGAIN: CQ overflow or out of memory, retry
    // after reaping).
    int submit();
    // Submits the pending SQEs and waits until at least wait_nr CQEs are
    // ready, for at most timeout_ns (-1: no limit; 0: do not wait). One
    // io_uring_enter. Returns >= 0, or -ETIME when the time ran out, -EINTR
    // on a signal, other -errno on error.
    int submit_and_wait(unsigned wait_nr, int64_t timeout_ns);

    // The oldest ready CQE, or nullptr. Stays valid until cq_advance.
    struct io_uring_cqe* peek_cqe();
    // Marks the n oldest CQEs consumed.
    void cq_advance(unsigned n);
    // CQEs ready to be reaped (no syscall).
    unsigned cq_ready() const;

    // Whether the kernel supports opcode op (IORING_REGISTER_PROBE, read
    // once at init).
    bool supports(uint8_t op) const;
    // IORING_FEAT_* bits the kernel reported at setup.
    uint32_t features() const;
    int ring_fd() const;

private:
    RingImpl* impl_ = nullptr;
};

// The kernel's io_uring_setup / io_uring_enter / io_uring_register, for
// tests and for the epoll fallback's probe. -errno on failure.
int uring_probe_available();  // 0 when a ring can be created here, else -errno

// Whether the kernel takes IORING_ASYNC_CANCEL_ANY (5.19): one cancel that
// ends every request of a ring, which a runtime's shutdown relies on for an
// operation a plain thread still waits in (kernel/io.cpp uring_drain). Asks
// r, which must have nothing in flight, with such a cancel: a kernel without
// the flag answers -EINVAL; one with it, 0 or -ENOENT (nothing to cancel).
// 1 or 0, or -errno when r could not be asked.
inline int uring_cancel_any_supported(Ring& r) {
    struct io_uring_sqe* sqe = r.get_sqe();
    if (!sqe) return -EBUSY;
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->cancel_flags = IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL;
    sqe->user_data = 1;
    int rc = r.submit_and_wait(1, 1000000000);
    if (rc < 0) return rc;
    struct io_uring_cqe* cqe = r.peek_cqe();
    if (!cqe) return -ETIME;
    int32_t res = cqe->res;
    r.cq_advance(1);
    return res == -EINVAL ? 0 : 1;
}

}  // namespace weft::port

#endif
