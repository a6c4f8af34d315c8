// port/linux/io_sys.cpp — port/io_sys.h on Linux.
#include "../io_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

namespace weft::port {

namespace {
inline int neg(long r) { return r < 0 ? -errno : (int)r; }
inline int64_t neg64(long r) { return r < 0 ? -(int64_t)errno : (int64_t)r; }
}  // namespace

int eventfd_new() { return neg(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)); }

void eventfd_signal(int fd) {
    uint64_t one = 1;
    // EAGAIN: the counter is at its maximum, so a wake is pending anyway.
    while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

int eventfd_drain(int fd) {
    uint64_t v;
    return ::read(fd, &v, sizeof v) < 0 ? -errno : 0;
}

int close_fd(int fd) { return neg(::close(fd)); }

int epoll_new() { return neg(::epoll_create1(EPOLL_CLOEXEC)); }

static int ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return neg(::epoll_ctl(epfd, op, fd, &ev));
}
int epoll_ctl_add(int epfd, int fd, uint32_t events, uint64_t data) { return ctl(epfd, EPOLL_CTL_ADD, fd, events, data); }
int epoll_ctl_mod(int epfd, int fd, uint32_t events, uint64_t data) { return ctl(epfd, EPOLL_CTL_MOD, fd, events, data); }
int epoll_ctl_del(int epfd, int fd) { return ctl(epfd, EPOLL_CTL_DEL, fd, 0, 0); }

int epoll_wait_ns(int epfd, EpollEvent* out, int cap, int64_t timeout_ns) {
    struct epoll_event evs[64];
    if (cap > 64) cap = 64;
    int n;
#ifdef SYS_epoll_pwait2
    static int have_pwait2 = 1;  // racy on purpose: every thread finds the same answer
    if (have_pwait2 && timeout_ns > 0) {
        struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
        n = (int)::syscall(SYS_epoll_pwait2, epfd, evs, cap, &ts, nullptr, 0);
        if (n >= 0 || errno != ENOSYS) goto done;
        have_pwait2 = 0;
    }
#endif
    {
        // Clamped before the rounding: a "never" timeout (INT64_MAX) would
        // overflow the addition.
        int ms = timeout_ns < 0                                  ? -1
                 : timeout_ns > (int64_t)2000000000 * 1000000 ? 2000000000
                                                                 : (int)((timeout_ns + 999999) / 1000000);
        n = ::epoll_wait(epfd, evs, cap, ms);
    }
#ifdef SYS_epoll_pwait2
done:
#endif
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        out[i].events = evs[i].events;
        out[i].data = evs[i].data.u64;
    }
    return n;
}

int64_t sys_recv(int fd, void* buf, size_t len, int flags) { return neg64(::recv(fd, buf, len, flags | MSG_DONTWAIT)); }
int64_t sys_send(int fd, const void* buf, size_t len, int flags) {
    return neg64(::send(fd, buf, len, flags | MSG_DONTWAIT | MSG_NOSIGNAL));
}
int64_t sys_pread(int fd, void* buf, size_t len, int64_t off) {
    return neg64(off < 0 ? ::read(fd, buf, len) : ::pread(fd, buf, len, (off_t)off));
}
int64_t sys_pwrite(int fd, const void* buf, size_t len, int64_t off) {
    return neg64(off < 0 ? ::write(fd, buf, len) : ::pwrite(fd, buf, len, (off_t)off));
}
int64_t sys_preadv(int fd, const struct iovec* iov, int n, int64_t off) {
    return neg64(off < 0 ? ::readv(fd, iov, n) : ::preadv(fd, iov, n, (off_t)off));
}
int64_t sys_pwritev(int fd, const struct iovec* iov, int n, int64_t off) {
    return neg64(off < 0 ? ::writev(fd, iov, n) : ::pwritev(fd, iov, n, (off_t)off));
}
int sys_accept(int fd) { return neg(::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)); }
int sys_connect(int fd, const struct sockaddr* a, unsigned len) { return neg(::connect(fd, a, (socklen_t)len)); }
int sys_socket_error(int fd) {
    int err = 0;
    socklen_t l = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) return -errno;
    return -err;
}
int sys_shutdown(int fd, int how) { return neg(::shutdown(fd, how)); }
int sys_poll_now(int fd, uint32_t events) {
    struct pollfd p = {fd, (short)events, 0};
    int r = ::poll(&p, 1, 0);
    if (r < 0) return -errno;
    if (p.revents & POLLNVAL) return -EBADF;
    return r ? (int)(uint16_t)p.revents : 0;
}
int sys_poll_wait(int fd, uint32_t events, int64_t timeout_ns) {
    struct pollfd p = {fd, (short)events, 0};
    int ms = -1;
    if (timeout_ns >= 0) {
        int64_t m = (timeout_ns + 999999) / 1000000;
        ms = m > 0x7fffffff ? 0x7fffffff : (int)m;
    }
    int r = ::poll(&p, 1, ms);
    if (r < 0) return -errno;
    if (p.revents & POLLNVAL) return -EBADF;
    return r ? (int)(uint16_t)p.revents : 0;
}
int sys_socket(int domain, int type, int protocol) {
    return neg(::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
}

int sys_tcp_listen(uint32_t ip_host_order, uint16_t port, int backlog, uint16_t* bound_port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(ip_host_order);
    socklen_t len = sizeof a;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        ::bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof a) < 0 || ::listen(fd, backlog) < 0 ||
        ::getsockname(fd, reinterpret_cast<struct sockaddr*>(&a), &len) < 0) {
        int e = errno;
        ::close(fd);
        return -e;
    }
    if (bound_port) *bound_port = ntohs(a.sin_port);
    return fd;
}

}  // namespace weft::port
