// examples/echo_server.cpp — a TCP echo server on weft's I/O (weft/io.hpp).
//
// Usage: echo_server [--workers N] [--tpc] PORT   (N default 2; PORT 0: any; --tpc: N
//        thread-per-core shards instead of a runtime of N workers)
//
// It behaves byte for byte like the Tokio peer's `--serve-echo` (the "I/O
// servers" section at the top of shared/peers/tokio/src/main.rs), so that
// shared/peers/io-compare measures the two runtimes doing the same work.
// What all servers share (READY, accept loop, signals) is in server_main.h;
// here, per connection, one 4096-byte buffer: read up to 4096 bytes, write
// all of them back, until EOF or an error, then close (errors not printed).
#include <cstddef>

#include "server_main.h"

namespace {

constexpr std::size_t ECHO_BUFFER_BYTES = 4096;

weft::Task<void> echo_connection(weft::net::TcpStream stream) {
    weft::Buffer buf(ECHO_BUFFER_BYTES);
    for (;;) {
        auto n = co_await stream.read(buf);
        if (!n || *n == 0) co_return;  // EOF or error: the stream closes
        if (!co_await stream.write_all(buf, 0, *n)) co_return;
    }
}

}  // namespace

int main(int argc, char** argv) { return server_main::run(argc, argv, "echo_server", "echo", echo_connection); }
