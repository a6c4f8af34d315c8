// examples/hello.cpp — weft from C++20: coroutine tasks, spawn, co_await.
#include <cstdio>
#include <weft/weft.hpp>

weft::Task<long> fib(int n) {
    if (n < 2) co_return n;
    auto a = weft::spawn(fib(n - 1));  // runs in parallel on any worker
    long b = co_await fib(n - 2);      // runs inline in this task
    co_return co_await a + b;
}

int main() {
    weft::Runtime rt(2);
    long v = rt.block_on(fib(20));
    std::printf("fib(20) = %ld\n", v);
    return v == 6765 ? 0 : 1;
}
