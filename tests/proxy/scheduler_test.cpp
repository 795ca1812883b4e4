#include <catch2/catch.hpp>

#include "proxy/scheduler.h"

using kipvs::proxy::SyncScheduler;
using namespace std::chrono_literals;

namespace {
const SyncScheduler::TimePoint t0{};
}

TEST_CASE("without minSyncPeriod every request runs at once, coalesced", "[scheduler]") {
    SyncScheduler s(0s, 30s);
    CHECK_FALSE(s.next(t0));
    s.request();
    s.request();
    REQUIRE(s.next(t0));
    CHECK(*s.next(t0) == t0);
    s.ran(t0, false, false);
    CHECK_FALSE(s.wanted());
    CHECK_FALSE(s.next(t0 + 1ms));
}

TEST_CASE("minSyncPeriod allows a burst of two, then one per period", "[scheduler]") {
    SyncScheduler s(10s, 30s);
    s.request();
    CHECK(*s.next(t0) == t0);
    s.ran(t0, false, false);
    s.request();
    CHECK(*s.next(t0 + 1s) == t0 + 1s);  // second token
    s.ran(t0 + 1s, false, false);
    s.request();
    // Tokens: 0.1 left at 1 s, refilled at 1 per 10 s: the next run is due at about 10 s.
    const auto at = *s.next(t0 + 2s);
    CHECK(at > t0 + 9s);
    CHECK(at <= t0 + 11s);
    s.ran(at, false, false);
    // Idle for a long time: the bucket refills to two, not more.
    s.request();
    s.ran(t0 + 100s, false, false);
    s.request();
    CHECK(*s.next(t0 + 100s) == t0 + 100s);
    s.ran(t0 + 100s, false, false);
    s.request();
    CHECK(*s.next(t0 + 100s) > t0 + 100s);
}

TEST_CASE("failures are retried with a doubling delay, reset by a success", "[scheduler]") {
    SyncScheduler s(0s, 8s);
    s.request();
    s.ran(t0, true, false);
    CHECK(*s.next(t0) == t0 + 1s);
    s.ran(t0 + 1s, true, false);
    CHECK(*s.next(t0 + 1s) == t0 + 3s);
    s.ran(t0 + 3s, true, false);
    CHECK(*s.next(t0 + 3s) == t0 + 7s);
    s.ran(t0 + 7s, true, false);
    s.ran(t0 + 15s, true, false);
    CHECK(s.retryDelay() == 8s);  // capped
    // A change during the backoff runs at once; its success clears the retry.
    s.request();
    CHECK(*s.next(t0 + 16s) == t0 + 16s);
    s.ran(t0 + 16s, false, false);
    CHECK_FALSE(s.wanted());
    s.request();
    s.ran(t0 + 17s, true, false);
    CHECK(*s.next(t0 + 17s) == t0 + 18s);
}

TEST_CASE("a sync whose middle step failed is retried, even if its last step did not fail",
          "[scheduler]") {
    // The Services of a failed write wait for the next sync (Proxier::syncStep): without the
    // retry they would wait for an unrelated change or the next verification.
    SyncScheduler s(0s, 8s);
    s.request();
    s.ran(t0, false, true);
    s.ran(t0 + 1ms, true, true);
    s.ran(t0 + 2ms, false, false);
    REQUIRE(s.next(t0 + 2ms).has_value());
    CHECK(*s.next(t0 + 2ms) == t0 + 2ms + 1s);
    // Its retry succeeds: nothing more is wanted, and a later failure starts again at 1 s.
    s.ran(t0 + 2ms + 1s, false, false);
    CHECK_FALSE(s.wanted());
    s.request();
    s.ran(t0 + 5s, true, false);
    CHECK(*s.next(t0 + 5s) == t0 + 6s);
}

TEST_CASE("a bounded step that left work continues at once, spending no token", "[scheduler]") {
    SyncScheduler s(10s, 30s);
    s.request();
    s.ran(t0, false, true);
    CHECK(*s.next(t0 + 1ms) == t0 + 1ms);
    s.ran(t0 + 1ms, false, true);
    s.ran(t0 + 2ms, false, false);
    CHECK_FALSE(s.wanted());
    // The continuation did not use the second token.
    s.request();
    CHECK(*s.next(t0 + 3ms) == t0 + 3ms);
}
