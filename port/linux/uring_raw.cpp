// port/linux/uring_raw.cpp — port::Ring on raw syscalls (port/uring.h):
// io_uring_setup, io_uring_enter and io_uring_register through syscall(2), the
// rings mmap'd by hand. No liburing; the same behaviour as uring_liburing.cpp.
//
// The rings are shared with the kernel. Each side owns one index of each
// ring: we write the SQ tail and the CQ head, the kernel writes the SQ head
// and the CQ tail. The ABI (io_uring_setup(2), "Memory ordering") asks for a
// release store on the index we publish and an acquire load on the index the
// kernel publishes; each one is marked "ABI:" below.
#include <errno.h>
#include <new>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../port.h"
#include "../uring.h"

#if WEFT_HAVE_LIBURING
#error "uring_raw.cpp is built only without liburing (WEFT_HAVE_LIBURING=0)"
#endif

namespace weft::port {

struct RingImpl {
    int fd = -1;
    uint32_t features = 0;

    // SQ: pointers into the SQ ring mapping.
    unsigned* sq_khead = nullptr;   // kernel writes: SQEs it has consumed
    unsigned* sq_ktail = nullptr;   // we write: SQEs published to the kernel
    unsigned* sq_kflags = nullptr;  // kernel writes: IORING_SQ_*
    unsigned sq_mask = 0;
    unsigned sq_entries = 0;
    struct io_uring_sqe* sqes = nullptr;
    unsigned sqe_tail = 0;  // SQEs handed out by get_sqe; published at submit

    // CQ: pointers into the CQ ring mapping (the SQ one with SINGLE_MMAP).
    unsigned* cq_khead = nullptr;  // we write: CQEs consumed
    unsigned* cq_ktail = nullptr;  // kernel writes: CQEs posted
    unsigned cq_mask = 0;
    struct io_uring_cqe* cqes = nullptr;

    void* sq_map = nullptr;
    size_t sq_map_size = 0;
    void* cq_map = nullptr;  // == sq_map with IORING_FEAT_SINGLE_MMAP
    size_t cq_map_size = 0;
    void* sqe_map = nullptr;
    size_t sqe_map_size = 0;

    uint8_t ops[256 / 8] = {};  // supported opcodes, a bitmap
};

namespace {

// Unmaps what was mapped, closes the fd and frees r; any prefix of init works.
void destroy(RingImpl* r) {
    if (r->sqe_map) munmap(r->sqe_map, r->sqe_map_size);
    if (r->cq_map && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_size);
    if (r->sq_map) munmap(r->sq_map, r->sq_map_size);
    if (r->fd >= 0) close(r->fd);
    r->~RingImpl();
    port::free(r);
}

void* map_ring(int fd, size_t size, off_t offset) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
    return p == MAP_FAILED ? nullptr : p;
}

int enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags, void* arg, size_t argsz) {
    long rc = syscall(SYS_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return rc < 0 ? -errno : (int)rc;
}

template <typename T>
T* at(void* base, uint32_t off) {
    return reinterpret_cast<T*>(static_cast<char*>(base) + off);
}

// Maps the SQ ring, the CQ ring (the same mapping with SINGLE_MMAP) and the
// SQE array. 0 or -errno; destroy() undoes a partial success.
int map_rings(RingImpl* r, const struct io_uring_params& p) {
    // The SQ ring ends with the index array, the CQ ring with the CQEs.
    r->sq_map_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        // One mapping holds both rings: map the larger size once.
        if (r->cq_map_size > r->sq_map_size) r->sq_map_size = r->cq_map_size;
        r->cq_map_size = r->sq_map_size;
    }
    r->sq_map = map_ring(r->fd, r->sq_map_size, IORING_OFF_SQ_RING);
    if (!r->sq_map) return -errno;
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = map_ring(r->fd, r->cq_map_size, IORING_OFF_CQ_RING);
        if (!r->cq_map) return -errno;
    }
    r->sqe_map_size = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqe_map = map_ring(r->fd, r->sqe_map_size, IORING_OFF_SQES);
    if (!r->sqe_map) return -errno;
    return 0;
}

// Publishes the SQEs handed out so far and returns how many the kernel has
// not consumed yet (those of a partial earlier submit included).
unsigned flush_sq(RingImpl* r) {
    // ABI: release store of the SQ tail, after the SQE contents were written
    // (get_sqe's caller), so the kernel's acquire of the tail sees them.
    __atomic_store_n(r->sq_ktail, r->sqe_tail, __ATOMIC_RELEASE);
    // ABI: acquire load of the SQ head the kernel wrote.
    return r->sqe_tail - __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
}

// The kernel holds CQEs it could not post (CQ was full): entering with
// GETEVENTS flushes them into the CQ.
bool cq_overflowed(const RingImpl* r) {
    return __atomic_load_n(r->sq_kflags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW;
}

}  // namespace

int Ring::init(unsigned entries) {
    if (impl_) return -EBUSY;
    void* mem = port::alloc(sizeof(RingImpl));
    if (!mem) return -ENOMEM;
    RingImpl* r = new (mem) RingImpl();

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
    p.cq_entries = entries * 2;
    long fd = syscall(SYS_io_uring_setup, entries, &p);
    if (fd < 0 && errno == EINVAL) {
        // Before 5.19: no COOP_TASKRUN (port/uring.h).
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 2;
        fd = syscall(SYS_io_uring_setup, entries, &p);
    }
    if (fd < 0) {
        int err = -errno;
        destroy(r);
        return err;
    }
    r->fd = (int)fd;
    r->features = p.features;
    if (!(p.features & IORING_FEAT_EXT_ARG)) {
        destroy(r);
        return -EOPNOTSUPP;
    }

    if (int err = map_rings(r, p); err != 0) {
        destroy(r);
        return err;
    }
    r->sq_khead = at<unsigned>(r->sq_map, p.sq_off.head);
    r->sq_ktail = at<unsigned>(r->sq_map, p.sq_off.tail);
    r->sq_kflags = at<unsigned>(r->sq_map, p.sq_off.flags);
    r->sq_mask = *at<unsigned>(r->sq_map, p.sq_off.ring_mask);
    r->sq_entries = *at<unsigned>(r->sq_map, p.sq_off.ring_entries);
    r->sqes = static_cast<struct io_uring_sqe*>(r->sqe_map);
    r->sqe_tail = *r->sq_ktail;  // 0 on a fresh ring
    {
        // The SQ index array maps ring slot -> SQE index. SQEs are handed out
        // in ring order, so slot i always names SQE i: fill it once.
        unsigned* array = at<unsigned>(r->sq_map, p.sq_off.array);
        for (unsigned i = 0; i < r->sq_entries; i++) array[i] = i;
    }
    r->cq_khead = at<unsigned>(r->cq_map, p.cq_off.head);
    r->cq_ktail = at<unsigned>(r->cq_map, p.cq_off.tail);
    r->cq_mask = *at<unsigned>(r->cq_map, p.cq_off.ring_mask);
    r->cqes = at<struct io_uring_cqe>(r->cq_map, p.cq_off.cqes);

    {
        // Opcode probe. Like liburing, a kernel that refuses it leaves the
        // bitmap empty rather than failing init.
        const unsigned nops = 256;
        size_t len = sizeof(struct io_uring_probe) + nops * sizeof(struct io_uring_probe_op);
        auto* pr = static_cast<struct io_uring_probe*>(port::alloc(len));
        if (!pr) {
            destroy(r);
            return -ENOMEM;
        }
        memset(pr, 0, len);
        if (syscall(SYS_io_uring_register, r->fd, IORING_REGISTER_PROBE, pr, nops) == 0) {
            for (unsigned i = 0; i < pr->ops_len && i < nops; i++) {
                if (pr->ops[i].flags & IO_URING_OP_SUPPORTED)
                    r->ops[pr->ops[i].op / 8] |= (uint8_t)(1u << (pr->ops[i].op % 8));
            }
        }
        port::free(pr);
    }
    impl_ = r;
    return 0;
}

void Ring::exit() {
    if (!impl_) return;
    destroy(impl_);
    impl_ = nullptr;
}

struct io_uring_sqe* Ring::get_sqe() {
    RingImpl* r = impl_;
    // ABI: acquire load of the SQ head, so the slots the kernel has released
    // are really done with before we reuse them.
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    if (r->sqe_tail - head >= r->sq_entries) return nullptr;
    struct io_uring_sqe* sqe = &r->sqes[r->sqe_tail & r->sq_mask];
    memset(sqe, 0, sizeof *sqe);
    r->sqe_tail++;
    return sqe;
}

unsigned Ring::sq_pending() const {
    // Handed out and not consumed by the kernel. Without SQPOLL the kernel
    // consumes SQEs only inside our io_uring_enter, which returns how many it
    // took and advances the SQ head by as much.
    return impl_->sqe_tail - __atomic_load_n(impl_->sq_khead, __ATOMIC_ACQUIRE);
}

int Ring::submit() {
    RingImpl* r = impl_;
    unsigned n = flush_sq(r);
    unsigned flags = cq_overflowed(r) ? IORING_ENTER_GETEVENTS : 0;
    if (n == 0 && flags == 0) return 0;
    return enter(r->fd, n, 0, flags, nullptr, 0);
}

int Ring::submit_and_wait(unsigned wait_nr, int64_t timeout_ns) {
    RingImpl* r = impl_;
    unsigned n = flush_sq(r);
    if (n == 0 && cq_ready() >= wait_nr) return 0;  // nothing to do in the kernel
    unsigned flags = IORING_ENTER_GETEVENTS;
    if (timeout_ns < 0) return enter(r->fd, n, wait_nr, flags, nullptr, 0);
    // IORING_ENTER_EXT_ARG (checked at init): the last two arguments are a
    // struct io_uring_getevents_arg and its size, carrying a relative timeout.
    struct __kernel_timespec ts;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof arg);
    arg.sigmask = 0;      // no signal mask change
    arg.sigmask_sz = 8;   // the kernel's sigset_t (_NSIG / 8); unused without a mask
    arg.ts = (uint64_t)(uintptr_t)&ts;
    flags |= IORING_ENTER_EXT_ARG;
    return enter(r->fd, n, wait_nr, flags, &arg, sizeof arg);
}

struct io_uring_cqe* Ring::peek_cqe() {
    RingImpl* r = impl_;
    unsigned head = *r->cq_khead;  // only we write it
    // ABI: acquire load of the CQ tail before reading the CQEs below it.
    unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
    if (head == tail) return nullptr;
    return &r->cqes[head & r->cq_mask];
}

void Ring::cq_advance(unsigned n) {
    RingImpl* r = impl_;
    if (n == 0) return;
    // ABI: release store of the CQ head after the CQEs were read, so the
    // kernel cannot overwrite a slot we are still reading.
    __atomic_store_n(r->cq_khead, *r->cq_khead + n, __ATOMIC_RELEASE);
}

unsigned Ring::cq_ready() const {
    // ABI: acquire load of the CQ tail (as in peek_cqe).
    return __atomic_load_n(impl_->cq_ktail, __ATOMIC_ACQUIRE) - *impl_->cq_khead;
}

bool Ring::supports(uint8_t op) const { return impl_->ops[op / 8] & (1u << (op % 8)); }

uint32_t Ring::features() const { return impl_->features; }

int Ring::ring_fd() const { return impl_->fd; }

int uring_probe_available() {
    Ring r;
    return r.init(4);
}

}  // namespace weft::port
