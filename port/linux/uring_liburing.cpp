// port/linux/uring_liburing.cpp — port::Ring through liburing (port/uring.h).
#include <errno.h>
#include <new>
#include <string.h>

#include "../port.h"
#include "../uring.h"

#if !WEFT_HAVE_LIBURING
#error "uring_liburing.cpp is built only with liburing (WEFT_HAVE_LIBURING=1)"
#endif

namespace weft::port {

struct RingImpl {
    struct io_uring ring;
    uint32_t features = 0;
    uint8_t ops[256 / 8] = {};  // supported opcodes, a bitmap
};

int Ring::init(unsigned entries) {
    if (impl_) return -EBUSY;
    void* mem = port::alloc(sizeof(RingImpl));
    if (!mem) return -ENOMEM;
    RingImpl* r = new (mem) RingImpl();
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = entries * 2;
    int rc = io_uring_queue_init_params(entries, &r->ring, &p);
    if (rc == -EINVAL) {
        // Before 5.19: no COOP_TASKRUN (port/uring.h).
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 2;
        rc = io_uring_queue_init_params(entries, &r->ring, &p);
    }
    if (rc < 0) {
        port::free(r);
        return rc;
    }
    r->features = p.features;
    if (!(p.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(&r->ring);
        port::free(r);
        return -EOPNOTSUPP;
    }
    if (struct io_uring_probe* pr = io_uring_get_probe_ring(&r->ring)) {
        for (unsigned i = 0; i < pr->ops_len && i < 256; i++) {
            if (pr->ops[i].flags & IO_URING_OP_SUPPORTED) r->ops[pr->ops[i].op / 8] |= (uint8_t)(1u << (pr->ops[i].op % 8));
        }
        io_uring_free_probe(pr);
    }
    impl_ = r;
    return 0;
}

void Ring::exit() {
    if (!impl_) return;
    io_uring_queue_exit(&impl_->ring);
    port::free(impl_);
    impl_ = nullptr;
}

struct io_uring_sqe* Ring::get_sqe() {
    struct io_uring_sqe* sqe = io_uring_get_sqe(&impl_->ring);
    if (sqe) memset(sqe, 0, sizeof *sqe);
    return sqe;
}

unsigned Ring::sq_pending() const {
    const struct io_uring* r = &impl_->ring;
    return r->sq.sqe_tail - r->sq.sqe_head;
}

int Ring::submit() { return io_uring_submit(&impl_->ring); }

int Ring::submit_and_wait(unsigned wait_nr, int64_t timeout_ns) {
    struct io_uring* r = &impl_->ring;
    if (timeout_ns < 0) return io_uring_submit_and_wait(r, wait_nr);
    struct __kernel_timespec ts;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    struct io_uring_cqe* cqe = nullptr;
    // With EXT_ARG (checked at init) this is one io_uring_enter that submits
    // and waits; it returns the first CQE without consuming it.
    int rc = io_uring_submit_and_wait_timeout(r, &cqe, wait_nr, &ts, nullptr);
    // liburing 2.3 says -EAGAIN for "nothing to wait for" (wait_nr 0 and no
    // CQE); the interface (and the raw ring) says 0.
    if (rc == -EAGAIN && wait_nr == 0) return 0;
    return rc;
}

struct io_uring_cqe* Ring::peek_cqe() {
    struct io_uring_cqe* cqe = nullptr;
    // io_uring_peek_cqe may enter the kernel for CQ overflow; the inline
    // check below never does.
    unsigned head = *impl_->ring.cq.khead;
    unsigned tail = __atomic_load_n(impl_->ring.cq.ktail, __ATOMIC_ACQUIRE);
    if (head == tail) return nullptr;
    cqe = &impl_->ring.cq.cqes[head & impl_->ring.cq.ring_mask];
    return cqe;
}

void Ring::cq_advance(unsigned n) { io_uring_cq_advance(&impl_->ring, n); }

unsigned Ring::cq_ready() const { return io_uring_cq_ready(&impl_->ring); }

bool Ring::supports(uint8_t op) const { return impl_->ops[op / 8] & (1u << (op % 8)); }

uint32_t Ring::features() const { return impl_->features; }

int Ring::ring_fd() const { return impl_->ring.ring_fd; }

int uring_probe_available() {
    Ring r;
    return r.init(4);
}

}  // namespace weft::port
