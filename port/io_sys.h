// port/io_sys.h — the system calls behind I/O: eventfd, epoll, and the
// non-blocking socket and file calls the epoll backend makes itself.
// Every function returns its result (>= 0) or -errno; none retries EINTR
// except where it says so, none blocks unless the fd is blocking.
#ifndef WEFT_PORT_IO_SYS_H
#define WEFT_PORT_IO_SYS_H

#include <stddef.h>
#include <stdint.h>

struct iovec;
struct sockaddr;

namespace weft::port {

// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int eventfd_new();
// Adds 1 (the wake). EAGAIN (counter full) counts as success: a wake is pending.
void eventfd_signal(int fd);
// Reads and clears the counter; -EAGAIN when it was 0.
int eventfd_drain(int fd);

int close_fd(int fd);

// epoll. events/ready use the EPOLL* bits; data is the caller's tag.
int epoll_new();
int epoll_ctl_add(int epfd, int fd, uint32_t events, uint64_t data);
int epoll_ctl_mod(int epfd, int fd, uint32_t events, uint64_t data);
int epoll_ctl_del(int epfd, int fd);
struct EpollEvent {
    uint32_t events;
    uint64_t data;
};
// Waits at most timeout_ns (-1: forever, 0: poll) with ms resolution rounded
// up (epoll_pwait2 where the kernel has it, for ns). Returns the number of
// events written to out (at most cap) or -errno (-EINTR).
int epoll_wait_ns(int epfd, EpollEvent* out, int cap, int64_t timeout_ns);

// Non-blocking forms (MSG_DONTWAIT on sockets).
int64_t sys_recv(int fd, void* buf, size_t len, int flags);
int64_t sys_send(int fd, const void* buf, size_t len, int flags);  // adds MSG_NOSIGNAL
int64_t sys_pread(int fd, void* buf, size_t len, int64_t off);     // off < 0: read()
int64_t sys_pwrite(int fd, const void* buf, size_t len, int64_t off);
int64_t sys_preadv(int fd, const struct iovec* iov, int n, int64_t off);
int64_t sys_pwritev(int fd, const struct iovec* iov, int n, int64_t off);
int sys_accept(int fd);  // accept4(NONBLOCK | CLOEXEC)
int sys_connect(int fd, const struct sockaddr* a, unsigned len);
int sys_socket_error(int fd);  // getsockopt(SO_ERROR) as -errno (0: none)
int sys_shutdown(int fd, int how);
// poll(2) on one fd with timeout 0: the ready mask (POLL* bits), or -errno.
int sys_poll_now(int fd, uint32_t events);
// poll(2) on one fd for at most timeout_ns (-1: forever; rounded up to ms):
// the ready mask, 0 on timeout, or -errno (-EINTR).
int sys_poll_wait(int fd, uint32_t events, int64_t timeout_ns);
// socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol).
int sys_socket(int domain, int type, int protocol);
// A non-blocking IPv4 TCP listener: SO_REUSEADDR, bind(ip:port), the address in host byte order, listen.
// Returns the fd (and the bound port) or -errno.
int sys_tcp_listen(uint32_t ip_host_order, uint16_t port, int backlog, uint16_t* bound_port);

}  // namespace weft::port

#endif
