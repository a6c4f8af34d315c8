// tests/test_uring_port.cpp — port::Ring (port/uring.h) through its interface
// only, so the same test passes on liburing and on weft's raw-syscall ring
// (-DWEFT_URING_RAW=ON). Skips when the host cannot create a ring at all
// (no io_uring, io_uring_disabled sysctl, seccomp).
#include <gtest/gtest.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "../port/uring.h"

using weft::port::Ring;
using Clock = std::chrono::steady_clock;

namespace {

int64_t ns_since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// Inits r with `entries` SQEs, or skips the test when io_uring is unavailable.
#define INIT_OR_SKIP(r, entries)                                                     \
    do {                                                                             \
        int rc_ = (r).init(entries);                                                 \
        if (rc_ == -ENOSYS || rc_ == -EPERM || rc_ == -EOPNOTSUPP || rc_ == -EACCES) \
            GTEST_SKIP() << "io_uring unavailable here: " << strerror(-rc_);         \
        ASSERT_EQ(rc_, 0) << strerror(-rc_);                                         \
        ASSERT_TRUE((r).ok());                                                       \
    } while (0)

void prep_nop(struct io_uring_sqe* sqe, uint64_t user_data) {
    sqe->opcode = IORING_OP_NOP;
    sqe->fd = -1;
    sqe->user_data = user_data;
}

// Waits for and reaps one CQE, returning a copy.
struct io_uring_cqe reap_one(Ring& r) {
    struct io_uring_cqe out;
    memset(&out, 0, sizeof out);
    while (r.cq_ready() == 0) {
        int rc = r.submit_and_wait(1, -1);
        if (rc < 0 && rc != -EINTR) {
            ADD_FAILURE() << "submit_and_wait: " << strerror(-rc);
            return out;
        }
    }
    struct io_uring_cqe* cqe = r.peek_cqe();
    if (!cqe) {
        ADD_FAILURE() << "cq_ready() > 0 but peek_cqe() is null";
        return out;
    }
    out = *cqe;
    r.cq_advance(1);
    return out;
}

}  // namespace

TEST(UringPort, NopRoundTripsUserData) {
    Ring r;
    INIT_OR_SKIP(r, 8);
    EXPECT_EQ(r.sq_pending(), 0u);
    EXPECT_EQ(r.cq_ready(), 0u);
    EXPECT_EQ(r.peek_cqe(), nullptr);
    EXPECT_GE(r.ring_fd(), 0);
    EXPECT_TRUE(r.features() & IORING_FEAT_EXT_ARG);

    struct io_uring_sqe* sqe = r.get_sqe();
    ASSERT_NE(sqe, nullptr);
    prep_nop(sqe, 0xdeadbeefcafef00dull);
    EXPECT_EQ(r.sq_pending(), 1u);
    EXPECT_EQ(r.submit(), 1);
    EXPECT_EQ(r.sq_pending(), 0u);

    struct io_uring_cqe cqe = reap_one(r);
    EXPECT_EQ(cqe.user_data, 0xdeadbeefcafef00dull);
    EXPECT_EQ(cqe.res, 0);
    EXPECT_EQ(r.cq_ready(), 0u);
    EXPECT_EQ(r.peek_cqe(), nullptr);
}

TEST(UringPort, GetSqeReturnsZeroedEntries) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    // Dirty every slot in round 0, then check each comes back zeroed.
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 4; i++) {
            struct io_uring_sqe* sqe = r.get_sqe();
            ASSERT_NE(sqe, nullptr);
            const unsigned char* b = reinterpret_cast<const unsigned char*>(sqe);
            for (size_t k = 0; k < sizeof *sqe; k++) ASSERT_EQ(b[k], 0) << "byte " << k;
            // Fields a NOP ignores (garbage elsewhere would fail the NOP).
            prep_nop(sqe, ~(uint64_t)i);
            sqe->addr = ~0ull;
            sqe->off = ~0ull;
            sqe->len = ~0u;
        }
        EXPECT_EQ(r.submit_and_wait(4, -1), 4);
        for (int i = 0; i < 4; i++) reap_one(r);
    }
}

TEST(UringPort, FillingTheSubmissionQueue) {
    constexpr unsigned kEntries = 8;
    Ring r;
    INIT_OR_SKIP(r, kEntries);
    uint64_t next = 1;
    std::vector<bool> seen(4 * kEntries + 1, false);
    for (int round = 0; round < 4; round++) {
        for (unsigned i = 0; i < kEntries; i++) {
            struct io_uring_sqe* sqe = r.get_sqe();
            ASSERT_NE(sqe, nullptr) << "round " << round << " sqe " << i;
            prep_nop(sqe, next++);
        }
        EXPECT_EQ(r.get_sqe(), nullptr);  // full
        EXPECT_EQ(r.sq_pending(), kEntries);
        EXPECT_EQ(r.submit(), (int)kEntries);
        EXPECT_EQ(r.sq_pending(), 0u);
        // Room again; the CQ (2 * entries) holds two rounds of completions,
        // so reap only every other round.
        if (round % 2 == 1) {
            while (r.cq_ready() < 2 * kEntries) ASSERT_GE(r.submit_and_wait(2 * kEntries, -1), 0);
            EXPECT_EQ(r.cq_ready(), 2 * kEntries);
            unsigned n = 0;
            while (struct io_uring_cqe* cqe = r.peek_cqe()) {
                ASSERT_LT(cqe->user_data, seen.size());
                EXPECT_FALSE(seen[cqe->user_data]);
                seen[cqe->user_data] = true;
                EXPECT_EQ(cqe->res, 0);
                r.cq_advance(1);
                n++;
            }
            EXPECT_EQ(n, 2 * kEntries);
        }
    }
    for (uint64_t i = 1; i < next; i++) EXPECT_TRUE(seen[i]) << i;
    EXPECT_EQ(r.cq_ready(), 0u);
}

TEST(UringPort, CqAdvanceConsumesSeveral) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    for (uint64_t i = 0; i < 3; i++) prep_nop(r.get_sqe(), 100 + i);
    EXPECT_EQ(r.submit_and_wait(3, -1), 3);
    EXPECT_EQ(r.cq_ready(), 3u);
    r.cq_advance(2);
    EXPECT_EQ(r.cq_ready(), 1u);
    struct io_uring_cqe* cqe = r.peek_cqe();
    ASSERT_NE(cqe, nullptr);
    EXPECT_EQ(cqe->user_data, 102u);  // NOPs complete in order
    r.cq_advance(1);
    EXPECT_EQ(r.peek_cqe(), nullptr);
}

TEST(UringPort, SubmitWithNothingPendingReturnsZero) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    EXPECT_EQ(r.submit(), 0);
    EXPECT_EQ(r.sq_pending(), 0u);
}

TEST(UringPort, WaitWithoutSqesTimesOutWithETIME) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    constexpr int64_t kTimeout = 20'000'000;  // 20 ms
    auto t0 = Clock::now();
    int rc = r.submit_and_wait(1, kTimeout);
    EXPECT_EQ(rc, -ETIME);
    EXPECT_GE(ns_since(t0), kTimeout);  // never an upper bound
    EXPECT_EQ(r.cq_ready(), 0u);
    // A zero timeout does not wait.
    EXPECT_EQ(r.submit_and_wait(1, 0), -ETIME);
}

TEST(UringPort, WaitReturnsAtOnceWhenEnoughCqesAreReady) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    prep_nop(r.get_sqe(), 7);
    EXPECT_EQ(r.submit_and_wait(1, -1), 1);
    ASSERT_EQ(r.cq_ready(), 1u);
    // One CQE is ready and nothing is to be submitted: no wait, no -ETIME.
    EXPECT_GE(r.submit_and_wait(1, 0), 0);
    EXPECT_GE(r.submit_and_wait(1, 1'000'000'000), 0);
    EXPECT_EQ(r.cq_ready(), 1u);
    EXPECT_EQ(reap_one(r).user_data, 7u);
}

TEST(UringPort, SubmitAndWaitWithTimeoutSubmitsToo) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    prep_nop(r.get_sqe(), 11);
    prep_nop(r.get_sqe(), 12);
    EXPECT_EQ(r.submit_and_wait(2, 1'000'000'000), 2);
    EXPECT_EQ(r.sq_pending(), 0u);
    EXPECT_EQ(reap_one(r).user_data, 11u);
    EXPECT_EQ(reap_one(r).user_data, 12u);
}

TEST(UringPort, ReadOnAPipeCompletesAfterAWrite) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    ASSERT_TRUE(r.supports(IORING_OP_READ));
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    char buf[16] = {};
    struct io_uring_sqe* sqe = r.get_sqe();
    ASSERT_NE(sqe, nullptr);
    sqe->opcode = IORING_OP_READ;
    sqe->fd = fds[0];
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = sizeof buf;
    sqe->off = (uint64_t)-1;  // the file position: a pipe has none
    sqe->user_data = 42;
    EXPECT_EQ(r.submit(), 1);

    // Nothing written yet: the read stays pending.
    EXPECT_EQ(r.submit_and_wait(1, 5'000'000), -ETIME);
    EXPECT_EQ(r.cq_ready(), 0u);

    ASSERT_EQ(write(fds[1], "hello", 5), 5);
    struct io_uring_cqe cqe = reap_one(r);
    EXPECT_EQ(cqe.user_data, 42u);
    EXPECT_EQ(cqe.res, 5);
    EXPECT_EQ(memcmp(buf, "hello", 5), 0);
    close(fds[0]);
    close(fds[1]);
}

TEST(UringPort, TimeoutOpCompletesWithETIME) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    ASSERT_TRUE(r.supports(IORING_OP_TIMEOUT));
    constexpr int64_t kTimeout = 10'000'000;  // 10 ms
    struct __kernel_timespec ts;
    ts.tv_sec = 0;
    ts.tv_nsec = kTimeout;
    struct io_uring_sqe* sqe = r.get_sqe();
    ASSERT_NE(sqe, nullptr);
    sqe->opcode = IORING_OP_TIMEOUT;
    sqe->fd = -1;
    sqe->addr = (uint64_t)(uintptr_t)&ts;
    sqe->len = 1;
    sqe->off = 0;  // no completion count: a pure timer
    sqe->user_data = 9;
    auto t0 = Clock::now();
    struct io_uring_cqe cqe = reap_one(r);
    EXPECT_GE(ns_since(t0), kTimeout);
    EXPECT_EQ(cqe.user_data, 9u);
    EXPECT_EQ(cqe.res, -ETIME);
}

TEST(UringPort, ProbeReportsOpcodes) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    EXPECT_TRUE(r.supports(IORING_OP_NOP));
    EXPECT_TRUE(r.supports(IORING_OP_READ));
    EXPECT_FALSE(r.supports(255));
    EXPECT_EQ(weft::port::uring_probe_available(), 0);
}

TEST(UringPort, ExitIsIdempotent) {
    Ring never;
    EXPECT_FALSE(never.ok());
    never.exit();
    never.exit();

    Ring r;
    INIT_OR_SKIP(r, 4);
    r.exit();
    EXPECT_FALSE(r.ok());
    r.exit();
    EXPECT_FALSE(r.ok());
    // A ring can be created again after exit.
    ASSERT_EQ(r.init(4), 0);
    prep_nop(r.get_sqe(), 3);
    EXPECT_EQ(reap_one(r).user_data, 3u);
}  // and the destructor exits once more

TEST(UringPort, InitTwiceIsEBUSY) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    int fd = r.ring_fd();
    EXPECT_EQ(r.init(4), -EBUSY);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.ring_fd(), fd);  // the first ring is untouched
    prep_nop(r.get_sqe(), 5);
    EXPECT_EQ(reap_one(r).user_data, 5u);
}

TEST(UringPort, BadEntriesFail) {
    Ring r;
    int rc = r.init(0);
    if (rc == -ENOSYS || rc == -EPERM) GTEST_SKIP() << "io_uring unavailable here";
    EXPECT_EQ(rc, -EINVAL);
    EXPECT_FALSE(r.ok());
}

// The probe the backend choice makes (kernel/io.cpp choose_backend): a
// kernel from 5.19 on takes IORING_ASYNC_CANCEL_ANY; an older one would get
// epoll. The probe leaves nothing on the ring, which stays usable.
TEST(UringPort, CancelAnyProbeMatchesTheKernelVersionAndLeavesTheRingClean) {
    Ring r;
    INIT_OR_SKIP(r, 4);
    int has = weft::port::uring_cancel_any_supported(r);
    ASSERT_GE(has, 0) << strerror(-has);
    utsname u{};
    ASSERT_EQ(uname(&u), 0);
    int major = 0, minor = 0;
    ASSERT_EQ(sscanf(u.release, "%d.%d", &major, &minor), 2) << u.release;
    EXPECT_EQ(has, major > 5 || (major == 5 && minor >= 19) ? 1 : 0) << u.release;
    EXPECT_EQ(r.cq_ready(), 0u);
    EXPECT_EQ(r.sq_pending(), 0u);
    prep_nop(r.get_sqe(), 42);
    EXPECT_EQ(reap_one(r).user_data, 42u);
}
