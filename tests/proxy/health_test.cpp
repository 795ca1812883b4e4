#include <catch2/catch.hpp>

#include "proxy/health.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace std::chrono_literals;

namespace {
const ProxyHealth::Clock::time_point t0{};
// 2025-01-02 03:04:05.123456789 UTC
constexpr std::int64_t kWall = 1735787045123456789LL;
}  // namespace

TEST_CASE("times print as Go's time.Time.String()", "[health]") {
    CHECK(goTimeString(kWall) == "2025-01-02 03:04:05.123456789 +0000 UTC");
    CHECK(goTimeString(kWall, 123.456789012) ==
          "2025-01-02 03:04:05.123456789 +0000 UTC m=+123.456789012");
    CHECK(goTimeString(1735787045000000000LL) == "2025-01-02 03:04:05 +0000 UTC");
    CHECK(goTimeString(1735787045500000000LL) == "2025-01-02 03:04:05.5 +0000 UTC");
    CHECK(goTimeString(0) == "0001-01-01 00:00:00 +0000 UTC");
}

TEST_CASE("healthy until an update waits longer than the timeout", "[health]") {
    ProxyHealth h(60s);
    CHECK(h.healthy(t0));  // nothing queued yet
    h.queued(net::Family::V4, t0);
    CHECK(h.healthy(t0 + 60s));
    CHECK_FALSE(h.healthy(t0 + 61s));
    h.queued(net::Family::V4, t0 + 50s);  // the oldest pending request counts
    CHECK_FALSE(h.healthy(t0 + 61s));
    h.updated(net::Family::V4, t0 + 62s, kWall);
    CHECK(h.healthy(t0 + 200s));
    // One stale family makes the whole proxy unhealthy.
    h.queued(net::Family::V6, t0 + 200s);
    CHECK_FALSE(h.healthy(t0 + 300s));
}

TEST_CASE("/healthz and /livez bodies and codes follow kube-proxy", "[health]") {
    ProxyHealth h(60s);
    auto a = h.healthz(t0, kWall, 1.5);
    CHECK(a.status == 200);
    CHECK(a.body ==
          "{\"lastUpdated\": \"2025-01-02 03:04:05.123456789 +0000 UTC m=+1.500000000\","
          "\"currentTime\": \"2025-01-02 03:04:05.123456789 +0000 UTC m=+1.500000000\", "
          "\"nodeEligible\": true}");
    h.setNodeEligible(false);
    a = h.healthz(t0, kWall, 1.5);
    CHECK(a.status == 503);
    CHECK(a.body.find("\"nodeEligible\": false}") != std::string::npos);
    // /livez ignores eligibility.
    auto l = h.livez(t0, kWall, 1.5);
    CHECK(l.status == 200);
    CHECK(l.body ==
          "{\"lastUpdated\": \"2025-01-02 03:04:05.123456789 +0000 UTC m=+1.500000000\","
          "\"currentTime\": \"2025-01-02 03:04:05.123456789 +0000 UTC m=+1.500000000\"}");
    // Stale: lastUpdated is the family's last update (zero time: never).
    h.setNodeEligible(true);
    h.queued(net::Family::V4, t0);
    a = h.healthz(t0 + 120s, kWall, 121.0);
    CHECK(a.status == 503);
    CHECK(a.body.rfind("{\"lastUpdated\": \"0001-01-01 00:00:00 +0000 UTC\",", 0) == 0);
    CHECK(h.livez(t0 + 120s, kWall, 121.0).status == 503);
}

TEST_CASE("the service health-check body is kube-proxy's, byte for byte", "[health]") {
    CHECK(serviceHealthBody("default", "web", 2, true) ==
          "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n"
          "\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}");
}
