// tests/io_test_support.h — loopback sockets and byte patterns for the I/O
// tests (test_io.cpp on a runtime, test_tpc_io.cpp on the thread-per-core
// executor). Header-only; everything is in namespace weft_io_test.
#ifndef WEFT_TESTS_IO_TEST_SUPPORT_H
#define WEFT_TESTS_IO_TEST_SUPPORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include <weft/io.hpp>

namespace weft_io_test {

// A failed setup syscall ends the test (gtest reports the exception).
inline void check_sys(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

// A descriptor the test owns.
struct UniqueFd {
    int fd = -1;
    UniqueFd() = default;
    explicit UniqueFd(int f) : fd(f) {}
    UniqueFd(UniqueFd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        reset(std::exchange(o.fd, -1));
        return *this;
    }
    ~UniqueFd() { reset(); }
    void reset(int f = -1) {
        if (fd >= 0) ::close(fd);
        fd = f;
    }
    int release() { return std::exchange(fd, -1); }
};

inline sockaddr_in loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// A plain blocking TCP connection to 127.0.0.1:port (a peer's side).
inline UniqueFd blocking_connect(uint16_t port) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    check_sys(s.fd >= 0, "socket");
    sockaddr_in a = loopback(port);
    check_sys(::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "connect");
    return s;
}

// A connected loopback TCP pair: `weft_side` is non-blocking (weft's sockets
// must be, for the epoll backend), `peer` is a plain blocking socket for the
// test thread or a helper thread.
struct TcpPair {
    UniqueFd weft_side;
    UniqueFd peer;
};
inline TcpPair tcp_pair() {
    uint16_t port = 0;
    UniqueFd listener(weft_io_tcp_listen("127.0.0.1", 0, 16, &port));
    if (listener.fd < 0) throw std::runtime_error(std::string("weft_io_tcp_listen: ") + weft_strerror(listener.fd));
    TcpPair p;
    p.peer = blocking_connect(port);
    pollfd pfd{listener.fd, POLLIN, 0};
    check_sys(::poll(&pfd, 1, -1) == 1, "poll(listener)");
    p.weft_side.reset(::accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    check_sys(p.weft_side.fd >= 0, "accept4");
    return p;
}

// A loopback port nobody listens on (it was bound a moment ago).
inline uint16_t closed_port() {
    uint16_t port = 0;
    int fd = weft_io_tcp_listen("127.0.0.1", 0, 1, &port);
    if (fd < 0) throw std::runtime_error(std::string("weft_io_tcp_listen: ") + weft_strerror(fd));
    ::close(fd);
    return port;
}

inline void send_all(int fd, const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        ssize_t k = ::send(fd, c, n, MSG_NOSIGNAL);
        check_sys(k > 0, "send");
        c += k;
        n -= static_cast<size_t>(k);
    }
}
inline std::string recv_exactly(int fd, size_t n) {
    std::string s(n, '\0');
    size_t got = 0;
    while (got < n) {
        ssize_t k = ::recv(fd, s.data() + got, n - got, 0);
        check_sys(k > 0, "recv (or early EOF)");
        got += static_cast<size_t>(k);
    }
    return s;
}

// Deterministic bytes, different at every offset of a long run.
inline std::string pattern(size_t n, unsigned seed) {
    std::string s(n, '\0');
    uint32_t x = 2463534242u ^ seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s[i] = static_cast<char>(x);
    }
    return s;
}

// The echo connection of examples/echo_server.cpp, and an accept loop that
// spawns one per connection (weft::spawn: onto the runtime, or onto the
// thread-per-core executor whose thread runs it).
inline weft::Task<void> echo_connection(weft::net::TcpStream stream) {
    weft::Buffer buf(4096);
    for (;;) {
        auto n = co_await stream.read(buf);
        if (!n || *n == 0) co_return;
        if (!co_await stream.write_all(buf, 0, *n)) co_return;
    }
}
inline weft::Task<void> echo_accept_loop(weft::net::TcpListener* listener) {
    for (;;) {
        auto conn = co_await listener->accept();
        if (!conn) co_return;
        weft::spawn(echo_connection(std::move(*conn))).detach();
    }
}

// One client: connects, sends `bytes` bytes of its own pattern, reads them
// back; true when they match.
inline weft::Task<bool> echo_client(uint16_t port, int id, size_t bytes) {
    auto conn = co_await weft::net::TcpStream::connect("127.0.0.1", port);
    if (!conn) {
        ADD_FAILURE() << "connect " << id << ": " << conn.message();
        co_return false;
    }
    const std::string msg = pattern(bytes, static_cast<unsigned>(id));
    weft::Buffer out(bytes);
    std::memcpy(out.data(), msg.data(), bytes);
    auto sent = co_await conn->write_all(out);
    if (!sent) {
        ADD_FAILURE() << "write_all " << id << ": " << sent.message();
        co_return false;
    }
    weft::Buffer in(1024);
    std::string back;
    while (back.size() < bytes) {
        auto n = co_await conn->read(in);
        if (!n || *n == 0) {
            ADD_FAILURE() << "read " << id << ": " << (n ? "EOF" : n.message());
            co_return false;
        }
        back.append(in.data(), *n);
    }
    co_return back == msg;
}

// a sends "ping" to b, b answers "pong!"; gives "ping/pong!" (or what failed).
inline weft::Task<std::string> udp_ping_pong(weft::net::UdpSocket* a, weft::net::UdpSocket* b) {
    weft::Buffer buf(64);
    std::memcpy(buf.data(), "ping", 4);
    auto sent = co_await a->send(buf, 0, 4);
    EXPECT_TRUE(sent && *sent == 4) << sent.message();
    weft::Buffer in(64);
    auto got = co_await b->recv(in);
    if (!got) co_return std::string("recv: ") + got.message();
    std::string first(in.data(), *got);
    static const char pong[] = "pong!";  // static: may be sent without an owner
    auto back = co_await b->send(std::span<const char>(pong, 5));
    EXPECT_TRUE(back && *back == 5) << back.message();
    auto again = co_await a->recv(in);
    if (!again) co_return std::string("recv: ") + again.message();
    co_return first + "/" + std::string(in.data(), *again);
}

}  // namespace weft_io_test

#endif
