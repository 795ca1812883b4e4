#include "proxy/packed_dest.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

using namespace kipvs;
using kipvs::proxy::PackedDest;

namespace {
ipvs::RealServer rs(const char* addr, std::uint16_t port, std::int32_t weight = 1) {
    ipvs::RealServer r;
    r.key = {*net::IpAddress::parse(addr), port};
    r.weight = weight;
    return r;
}
}  // namespace

TEST_CASE("a packed real server keeps its key, forwarding and weight", "[packed-dest]") {
    for (const char* a : {"10.244.1.7", "fd00:10:244::7", "0.0.0.0", "255.255.255.255"}) {
        auto r = rs(a, 8080, 3);
        r.forwarding = ipvs::Forwarding::Tunnel;
        const PackedDest p(r);
        CHECK(p.key() == r.key);
        CHECK(p.key().address.family() == r.key.address.family());
        CHECK(p.weight() == 3);
        CHECK(p.forwarding() == ipvs::Forwarding::Tunnel);
        CHECK(p.realServer() == r);
        CHECK(p.sameContent(r));
        CHECK_FALSE(p.draining());
    }
}

TEST_CASE("a packed real server sorts as its key does", "[packed-dest]") {
    std::vector<ipvs::RealServer> rss{rs("10.0.0.2", 80), rs("fd00::1", 80), rs("10.0.0.1", 81),
                                      rs("10.0.0.1", 80), rs("9.255.255.255", 65535)};
    std::vector<PackedDest> packed(rss.begin(), rss.end());
    std::sort(rss.begin(), rss.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    std::sort(packed.begin(), packed.end(), proxy::keyLess);
    for (std::size_t i = 0; i < rss.size(); ++i) {
        CHECK(packed[i].key() == rss[i].key);
    }
}

TEST_CASE("thresholds are kept as set or not; draining is not the kernel's state",
          "[packed-dest]") {
    auto r = rs("10.244.1.7", 8080);
    const PackedDest plain(r);
    r.lowerThreshold = 5;
    const PackedDest lower(r);
    CHECK(lower.thresholdsSet());
    CHECK_FALSE(plain.thresholdsSet());
    CHECK_FALSE(plain.sameAs(lower));
    CHECK_FALSE(plain.sameContent(r));
    CHECK(lower.sameContent(r));
    // What is written back has no thresholds: kube-ipvs never sets them.
    CHECK(lower.realServer().lowerThreshold == 0);
    CHECK(lower.realServer().upperThreshold == 0);

    PackedDest d = plain;
    d.setDraining(true);
    CHECK(d.draining());
    CHECK(d.sameAs(plain));
    d.setDraining(false);
    CHECK_FALSE(d.draining());

    CHECK_FALSE(PackedDest(rs("10.244.1.7", 8080, 0)).sameAs(plain));  // weight
    CHECK_FALSE(PackedDest(rs("10.244.1.8", 8080)).sameAs(plain));     // address
    CHECK_FALSE(PackedDest(rs("10.244.1.7", 8081)).sameAs(plain));     // port
    CHECK_FALSE(PackedDest(rs("af4:107::", 8080)).sameAs(plain));      // family, same bytes
}
