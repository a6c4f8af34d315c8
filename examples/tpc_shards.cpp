// tpc_shards — the thread-per-core executor in one page (README, "Thread-per-core
// executor").
//
// A ShardSet starts one executor per thread. The main thread (no executor)
// hands each shard a task; each shard's tasks spawn local children (no
// atomics on that path), and every shard reports back over one channel,
// whose wakers cross threads by identity. Then a token goes round the ring
// of shards through Notify objects: every hop is a cross-shard wake.
#include <weft/sync.hpp>
#include <weft/tpc.hpp>

#include <cstdio>
#include <vector>

weft::Task<uint64_t> square(uint64_t x) { co_return x * x; }

weft::Task<void> shard_work(uint32_t id, weft::mpsc::Sender<uint64_t> results) {
    auto tx = std::move(results);
    std::vector<weft::JoinHandle<uint64_t>> kids;
    for (uint64_t i = 1; i <= 100; i++) kids.push_back(weft::tpc::spawn(square(i + id)));
    uint64_t sum = 0;
    for (auto& k : kids) sum += co_await k;  // all on this shard's thread
    (void)co_await tx.send(sum);
}

weft::Task<void> relay(weft::Notify* in, weft::Notify* out, int laps, weft::mpsc::Sender<uint64_t> done) {
    auto tx = std::move(done);
    for (int i = 0; i < laps; i++) {
        co_await in->notified();
        out->notify_one();
    }
    (void)co_await tx.send(weft::tpc::current_shard());
}

int main() {
    weft::tpc::ShardSet shards(4, /*pin=*/true);
    uint32_t n = shards.size();

    auto [tx, rx] = weft::mpsc::channel<uint64_t>(16);
    for (uint32_t i = 0; i < n; i++) shards.spawn_on(i, shard_work(i, tx));
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += rx.recv_blocking().value();
    uint64_t expect = 0;
    for (uint32_t id = 0; id < n; id++)
        for (uint64_t i = 1; i <= 100; i++) expect += (i + id) * (i + id);
    std::printf("tpc_shards: %u shards computed %llu (expected %llu)\n", n, (unsigned long long)total,
                (unsigned long long)expect);

    // The token ring: shard i waits on bells[i] and rings bells[i + 1].
    constexpr int LAPS = 1000;
    std::vector<weft::Notify> bells(n);
    for (uint32_t i = 0; i < n; i++) shards.spawn_on(i, relay(&bells[i], &bells[(i + 1) % n], LAPS, tx));
    bells[0].notify_one();
    for (uint32_t i = 0; i < n; i++) rx.recv_blocking();
    uint64_t remote = 0, signals = 0;
    for (uint32_t i = 0; i < n; i++) {
        auto m = shards.metrics(i);
        remote += m.wakes_remote;
        signals += m.signals;
    }
    std::printf("tpc_shards: token went %d laps round %u shards: %llu cross-thread wakes, %llu of them had to "
                "interrupt a sleeping shard\n",
                LAPS, n, (unsigned long long)remote, (unsigned long long)signals);
    return total == expect ? 0 : 1;
}
