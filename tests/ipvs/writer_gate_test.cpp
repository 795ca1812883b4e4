// WriterGate: a background reader of the IPVS table waits while a writer is in.
#include "ipvs/writer_gate.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

using namespace kipvs::ipvs;
using namespace std::chrono_literals;

TEST_CASE("a reader does not wait when no writer is in", "[writer-gate]") {
    WriterGate g(10s);
    CHECK_FALSE(g.awaitWriters());
    { WriterGate::Scope w(g); }
    CHECK_FALSE(g.awaitWriters());
    CHECK(g.stats().waits == 0);
}

TEST_CASE("a reader waits until the last writer leaves", "[writer-gate]") {
    WriterGate g(60s);
    g.enter();
    g.enter();  // two writers: the reader must wait for both
    std::atomic<bool> passed{false};
    const auto start = std::chrono::steady_clock::now();
    std::thread reader([&] {
        CHECK(g.awaitWriters());
        passed = true;
    });
    // The reader thread may start late on a loaded machine: leave only once it waits.
    while (g.stats().waitingNow == 0) {
        std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(passed.load());
    g.leave();
    // The reader thread may start late on a loaded machine: leave only once it waits.
    while (g.stats().waitingNow == 0) {
        std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(passed.load());
    g.leave();
    reader.join();  // would hang (60 s) if leave() did not wake the reader
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(passed.load());
    const auto s = g.stats();
    CHECK(s.waits == 1);
    CHECK(s.timeouts == 0);
    CHECK(s.waitingNow == 0);
    CHECK(s.waitSeconds >= 0.2);  // both 100 ms sleeps happened while it waited
    CHECK(s.waitSeconds <= elapsed);
}

TEST_CASE("a writer that stays in delays a reader by at most maxWait", "[writer-gate]") {
    WriterGate g(50ms);
    WriterGate::Scope w(g);
    CHECK(g.awaitWriters());
    CHECK(g.awaitWriters());
    const auto s = g.stats();
    CHECK(s.waits == 2);
    CHECK(s.timeouts == 2);
    CHECK(s.waitSeconds >= 0.1);
}
