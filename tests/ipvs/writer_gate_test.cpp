// WriterGate: a background reader of the IPVS table waits while a writer is in.
#include "ipvs/writer_gate.h"

#include <atomic>
#include <catch2/catch.hpp>
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
    std::thread reader([&] {
        CHECK(g.awaitWriters());
        passed = true;
    });
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(passed.load());
    g.leave();
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(passed.load());
    g.leave();
    reader.join();  // would hang (60 s) if leave() did not wake the reader
    CHECK(passed.load());
    const auto s = g.stats();
    CHECK(s.waits == 1);
    CHECK(s.timeouts == 0);
    CHECK(s.waitSeconds >= 0.2);
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
