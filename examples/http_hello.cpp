// examples/http_hello.cpp — a minimal HTTP/1.1 keep-alive responder on
// weft's I/O (weft/io.hpp): every request gets "Hello, World!".
//
// Usage: http_hello [--workers N] [--tpc] PORT   (N default 2; PORT 0: any; --tpc: N
//        thread-per-core shards instead of a runtime of N workers)
//
// It behaves byte for byte like the Tokio peer's `--serve-http` (the "I/O
// servers" section at the top of shared/peers/tokio/src/main.rs), so that
// shared/peers/io-compare (wrk) measures the two runtimes doing the same work:
//   - listening, READY line, stdout, accept loop, TCP_NODELAY, errors,
//     SIGPIPE and signals as examples/server_main.h describes;
//   - per connection, a 4096-byte input buffer holding the unconsumed bytes.
//     After each read, every complete request in it (all bytes up to and
//     including the first "\r\n\r\n" after the previous request; nothing
//     is parsed, a body would be taken for the next request) gets one copy of
//     the 78-byte response, and all of them go out in one write_all, so
//     pipelined requests are answered in order, in one batch. The search
//     resumes 3 bytes before the end of the bytes already searched, so a
//     terminator split across reads is found. The incomplete tail moves to
//     the front of the buffer; a buffer full of one incomplete request (a
//     request longer than 4096 bytes) closes the connection without a
//     response.
// One difference, on purpose: SIGINT and SIGTERM shut the server down
// cleanly and it exits with status 0, where Tokio's dies of the signal.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string_view>

#include "server_main.h"

namespace {

constexpr std::size_t REQUEST_BUFFER_BYTES = 4096;
constexpr std::string_view RESPONSE =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::string_view REQUEST_END = "\r\n\r\n";

weft::Task<void> http_connection(weft::net::TcpStream stream) {
    weft::Buffer in(REQUEST_BUFFER_BYTES);
    std::size_t len = 0;  // unconsumed bytes at the front of `in`
    // The responses of one read, sent in one write_all. Empty until the first
    // request, then reused; grown when one read completes more requests than
    // it holds (at most 4096 / 4 of them).
    weft::Buffer out;
    for (;;) {
        auto n = co_await stream.read(in, len);
        if (!n || *n == 0) co_return;  // EOF or error: a partial request is dropped
        // The first `len` bytes hold no complete terminator (they were
        // searched); resume 3 bytes early so that a split one is found.
        std::size_t search_from = len >= REQUEST_END.size() - 1 ? len - (REQUEST_END.size() - 1) : 0;
        len += *n;
        std::string_view bytes = in.view(0, len);
        std::size_t consumed = 0;  // end of the last complete request
        std::size_t requests = 0;
        for (std::size_t at; (at = bytes.find(REQUEST_END, search_from)) != std::string_view::npos;) {
            consumed = at + REQUEST_END.size();
            search_from = consumed;
            requests++;
        }
        if (requests > 0) {
            std::size_t out_len = requests * RESPONSE.size();
            if (out.capacity() < out_len) out = weft::Buffer(std::max(out_len, 2 * out.capacity()));
            for (std::size_t i = 0; i < requests; i++)
                std::memcpy(out.data() + i * RESPONSE.size(), RESPONSE.data(), RESPONSE.size());
            if (!co_await stream.write_all(out, 0, out_len)) co_return;
            std::memmove(in.data(), in.data() + consumed, len - consumed);
            len -= consumed;
        }
        if (len == REQUEST_BUFFER_BYTES) co_return;  // one request larger than the buffer: refused
    }
}

}  // namespace

int main(int argc, char** argv) { return server_main::run(argc, argv, "http_hello", "http", http_connection); }
