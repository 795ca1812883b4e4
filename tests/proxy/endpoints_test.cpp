#include <catch2/catch.hpp>

#include "builders.h"
#include "proxy/endpoints.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace kipvs::testing;
using ipvs::Protocol;

namespace {
std::vector<std::string> ips(const std::vector<EndpointInfo>& eps) {
    std::vector<std::string> out;
    for (const auto& e : eps) {
        out.push_back(e.destKey().toString());
    }
    return out;
}
}  // namespace

TEST_CASE("slices merge per port name and protocol, by family", "[endpoints]") {
    k8s::EndpointSlice a = SliceBuilder("ns", "web-a", "web")
                               .port("http", 8080)
                               .port("dns", 53, Protocol::UDP)
                               .ep("10.244.1.8", "node-1")
                               .ep("10.244.2.9", "node-2");
    k8s::EndpointSlice b = SliceBuilder("ns", "web-b", "web").port("http", 8080).ep("10.244.1.7");
    k8s::EndpointSlice v6 =
        SliceBuilder("ns", "web-c", "web", k8s::AddressType::IPv6).port("http", 8080).ep("fd00::7");
    k8s::EndpointSlice fqdn =
        SliceBuilder("ns", "web-d", "web", k8s::AddressType::FQDN).port("http", 8080);
    const auto m = mergeSlices({&a, &b, &v6, &fqdn}, net::Family::V4, "node-1");
    REQUIRE(m.size() == 2);
    const auto& http = m.at(PortKey{"http", Protocol::TCP});
    CHECK(ips(http) ==
          std::vector<std::string>{"10.244.1.7:8080", "10.244.1.8:8080", "10.244.2.9:8080"});
    CHECK(http[1].local);
    CHECK_FALSE(http[0].local);
    CHECK(ips(m.at(PortKey{"dns", Protocol::UDP})) ==
          std::vector<std::string>{"10.244.1.8:53", "10.244.2.9:53"});
    CHECK(m.count(PortKey{"http", Protocol::UDP}) == 0);

    const auto m6 = mergeSlices({&a, &v6}, net::Family::V6, "node-1");
    CHECK(ips(m6.at(PortKey{"http", Protocol::TCP})) == std::vector<std::string>{"[fd00::7]:8080"});
}

TEST_CASE("a duplicate endpoint keeps its most useful copy, in either order", "[endpoints]") {
    // The ready copy is kept against a terminating one (serving) and a not-ready one.
    const k8s::EndpointSlice ready = SliceBuilder("ns", "s2", "web").port("", 80).ep("10.244.1.7");
    for (bool terminating : {true, false}) {
        INFO("the other copy is " << (terminating ? "terminating" : "not ready"));
        const k8s::EndpointSlice other =
            SliceBuilder("ns", "s1", "web")
                .port("", 80)
                .ep("10.244.1.7", nullptr, false, terminating, terminating);
        for (auto order : {std::vector<const k8s::EndpointSlice*>{&other, &ready},
                           std::vector<const k8s::EndpointSlice*>{&ready, &other}}) {
            const auto m = mergeSlices(order, net::Family::V4, "n");
            const auto& eps = m.at(PortKey{"", Protocol::TCP});
            REQUIRE(eps.size() == 1);
            CHECK(eps[0].ready);
            CHECK_FALSE(eps[0].terminating);
        }
    }
}

TEST_CASE("categorize picks ready endpoints, then serving-terminating ones", "[endpoints]") {
    std::vector<EndpointInfo> eps(3);
    eps[0].ip = ip("10.0.0.1");
    eps[0].ready = false;
    eps[0].serving = true;
    eps[0].terminating = true;
    eps[1].ip = ip("10.0.0.2");
    eps[1].ready = false;
    eps[1].serving = false;
    eps[1].terminating = true;
    eps[2].ip = ip("10.0.0.3");
    const Topology topo{"node-1", "zone-a"};

    auto c = categorize(eps, true, false, topo);
    CHECK(ips(c.cluster) == std::vector<std::string>{"10.0.0.3:0"});
    CHECK(c.hasAny);

    eps[2].ready = false;
    eps[2].serving = false;
    c = categorize(eps, true, false, topo);
    CHECK(ips(c.cluster) == std::vector<std::string>{"10.0.0.1:0"});
    CHECK(c.hasAny);

    eps[0].serving = false;
    c = categorize(eps, true, true, topo);
    CHECK(c.cluster.empty());
    CHECK(c.local.empty());
    CHECK_FALSE(c.hasAny);
}

TEST_CASE("categorize keeps local endpoints for Local policies", "[endpoints]") {
    std::vector<EndpointInfo> eps(2);
    eps[0].ip = ip("10.0.0.1");
    eps[0].local = true;
    eps[1].ip = ip("10.0.0.2");
    auto c = categorize(eps, false, true, {"node-1", ""});
    CHECK(ips(c.local) == std::vector<std::string>{"10.0.0.1:0"});
    CHECK(c.cluster.empty());
    eps[0].ready = false;
    eps[0].terminating = true;
    c = categorize(eps, false, true, {"node-1", ""});
    CHECK(ips(c.local) == std::vector<std::string>{"10.0.0.1:0"});
}

TEST_CASE("topology hints narrow cluster endpoints only when complete and matching",
          "[endpoints]") {
    k8s::EndpointSlice s = SliceBuilder("ns", "s", "web")
                               .port("", 80)
                               .ep("10.0.0.1")
                               .zoneHint("zone-a")
                               .ep("10.0.0.2")
                               .zoneHint("zone-b")
                               .ep("10.0.0.3")
                               .zoneHint("zone-a");
    auto eps = mergeSlices({&s}, net::Family::V4, "node-1").at(PortKey{"", Protocol::TCP});
    CHECK(ips(categorize(eps, true, false, {"node-1", "zone-a"}).cluster) ==
          std::vector<std::string>{"10.0.0.1:80", "10.0.0.3:80"});
    // No endpoint hinted for our zone: hints are ignored.
    CHECK(categorize(eps, true, false, {"node-1", "zone-c"}).cluster.size() == 3);
    // One ready endpoint without hints: hints are ignored.
    auto unhinted = s.endpoints[1];
    unhinted.hints = nullptr;
    s.endpoints.set(1, unhinted);
    eps = mergeSlices({&s}, net::Family::V4, "node-1").at(PortKey{"", Protocol::TCP});
    CHECK(categorize(eps, true, false, {"node-1", "zone-a"}).cluster.size() == 3);
}
