// examples/server_main.h — what echo_server and http_hello share: the
// command line, the accept loop, READY on stdout, and a clean shutdown on
// SIGINT/SIGTERM. Each server supplies its per-connection task.
//
// The Tokio peer's rules these follow (shared/peers/tokio/src/main.rs, "I/O
// servers"): listen on 127.0.0.1:PORT (SO_REUSEADDR, backlog 1024; a bind
// failure is a message on stderr and exit status 1); exactly "READY <port>\n"
// on stdout once listening and nothing else there (diagnostics are '#' lines
// on stderr); one accept task: TCP_NODELAY on each connection (a failure is
// ignored), one task per connection; an accept error is printed ("# accept
// error: ...") and retried after 10 ms; SIGPIPE is ignored (every send also
// uses MSG_NOSIGNAL). One difference, on purpose: SIGINT and SIGTERM shut the
// server down cleanly (the runtime drops every task, closing its connection,
// and is freed) and it exits with status 0, where Tokio's dies of the signal.
#ifndef WEFT_EXAMPLES_SERVER_MAIN_H
#define WEFT_EXAMPLES_SERVER_MAIN_H

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <weft/io.hpp>
#include <weft/tpc.hpp>

namespace server_main {

constexpr auto ACCEPT_ERROR_PAUSE = std::chrono::milliseconds(10);

using ConnectionFn = weft::Task<void> (*)(weft::net::TcpStream);

// The next connection, with TCP_NODELAY set; an accept error is printed
// and retried after a pause.
weft::Task<weft::net::TcpStream> next_connection(weft::net::TcpListener& listener) {
    for (;;) {
        auto conn = co_await listener.accept();
        if (conn) {
            (void)conn->set_nodelay(true);
            co_return std::move(*conn);
        }
        std::fprintf(stderr, "# accept error: %s\n", conn.message());
        co_await weft::sleep(ACCEPT_ERROR_PAUSE);
    }
}

weft::Task<void> accept_loop(weft::net::TcpListener listener, ConnectionFn serve) {
    for (;;) {
        auto conn = co_await next_connection(listener);
        // weft::spawn throws only once the runtime is shutting down, when
        // this task is about to be dropped anyway.
        weft::spawn(serve(std::move(conn))).detach();
    }
}

// --tpc: the same server on a thread-per-core ShardSet (weft_tpc.h) of N
// shards instead of a multi-thread runtime. Shard 0 accepts and hands each
// connection to the next shard in turn (a remote spawn); the connection's
// task then runs on that shard only, its I/O on that shard's own ring.
weft::Task<void> tpc_accept_loop(weft::net::TcpListener listener, ConnectionFn serve, weft::tpc::ShardSet* shards) {
    uint32_t next = 0;
    for (;;) {
        // The stream holds no runtime: its operations go to the executor
        // of the shard that polls them.
        auto conn = co_await next_connection(listener);
        try {
            shards->spawn_on(next, serve(std::move(conn)));
        } catch (const weft::Error&) {
            co_return;  // the set is shutting down (WEFT_ECLOSED): the connection closes
        }
        next = next + 1 == shards->size() ? 0 : next + 1;
    }
}

[[noreturn]] inline void usage(const char* argv0) {
    std::fprintf(stderr, "usage: %s [--workers N] [--tpc] PORT\n", argv0);
    std::exit(2);
}

inline bool parse_uint(const char* s, unsigned long max, unsigned long* out) {
    if (!s || !*s) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max || s[0] == '-') return false;
    *out = v;
    return true;
}

struct Args {
    unsigned long workers = 2;
    unsigned long port = 0;
    bool tpc = false;  // a ShardSet of `workers` shards instead of a runtime
};

inline Args parse_args(int argc, char** argv) {
    Args a;
    bool have_port = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--workers" || arg == "-w") {
            if (++i >= argc || !parse_uint(argv[i], 1024, &a.workers)) usage(argv[0]);
        } else if (arg == "--tpc") {
            a.tpc = true;
        } else if (arg.rfind("--workers=", 0) == 0) {
            if (!parse_uint(argv[i] + 10, 1024, &a.workers)) usage(argv[0]);
        } else if (!have_port && parse_uint(argv[i], 65535, &a.port)) {
            have_port = true;
        } else {
            usage(argv[0]);
        }
    }
    if (!have_port || a.workers == 0) usage(argv[0]);
    return a;
}

// The whole server: `name` for messages, `kind` for the serving line.
inline int run(int argc, char** argv, const char* name, const char* kind, ConnectionFn serve) {
    Args args = parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    // Blocked before the runtime exists, so that every worker thread inherits
    // the mask and the signals stay pending for sigwait on this thread. The
    // default action is restored first: a shell starts background jobs with
    // SIGINT ignored, and POSIX leaves sigwait on an ignored signal undefined.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    int signo = 0;
    if (args.tpc) {
        weft::tpc::ShardSet shards(static_cast<uint32_t>(args.workers));
        auto listener = weft::net::TcpListener::bind("127.0.0.1", static_cast<uint16_t>(args.port));
        if (!listener) {
            std::fprintf(stderr, "%s: cannot listen on 127.0.0.1:%lu: %s\n", name, args.port, listener.message());
            return 1;
        }
        uint16_t port = listener->local_port();
        weft_io_status st = shards.io_status(0);
        std::fprintf(stderr, "# %s: serving %s on 127.0.0.1:%u shards=%lu (thread-per-core) available_parallelism=%u io: %s\n",
                     name, kind, port, args.workers, std::thread::hardware_concurrency(), st.why ? st.why : "?");
        std::printf("READY %u\n", port);
        std::fflush(stdout);
        shards.spawn_on(0, tpc_accept_loop(std::move(*listener), serve, &shards));
        sigwait(&stop_signals, &signo);
        std::fprintf(stderr, "# %s: %s received, shutting down\n", name, strsignal(signo));
        return 0;  // the set's end drops every task (accept loop, connections) on its shard
    }
    {
        weft::Runtime rt(static_cast<uint32_t>(args.workers));
        auto listener = weft::net::TcpListener::bind("127.0.0.1", static_cast<uint16_t>(args.port), rt.get());
        if (!listener) {
            std::fprintf(stderr, "%s: cannot listen on 127.0.0.1:%lu: %s\n", name, args.port, listener.message());
            return 1;
        }
        uint16_t port = listener->local_port();
        weft_io_status st{};
        st.size = sizeof st;
        weft_runtime_io_status(rt.get(), &st);
        std::fprintf(stderr, "# %s: serving %s on 127.0.0.1:%u workers=%lu available_parallelism=%u io: %s\n",
                     name, kind, port, args.workers, std::thread::hardware_concurrency(), st.why ? st.why : "?");
        std::printf("READY %u\n", port);
        std::fflush(stdout);
        rt.spawn(accept_loop(std::move(*listener), serve)).detach();

        sigwait(&stop_signals, &signo);
        std::fprintf(stderr, "# %s: %s received, shutting down\n", name, strsignal(signo));
        // Leaving the scope frees the runtime: every task (the accept loop,
        // each connection) is dropped, which cancels its I/O and closes its
        // socket.
    }
    return 0;
}

}  // namespace server_main

#endif
