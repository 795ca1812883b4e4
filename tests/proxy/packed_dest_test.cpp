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

namespace {
std::vector<PackedDest> contents(const proxy::DestList& l) {
    return {l.begin(), l.end()};
}
bool sameList(const proxy::DestList& l, const std::vector<PackedDest>& want) {
    const auto got = contents(l);
    return got.size() == want.size() && std::equal(got.begin(), got.end(), want.begin(),
                                                   [](const PackedDest& a, const PackedDest& b) {
                                                       return a.sameAs(b) &&
                                                              a.draining() == b.draining();
                                                   });
}
}  // namespace

TEST_CASE("a list of real servers keeps IPv4 ones in 12 bytes and reads them back whole",
          "[packed-dest]") {
    proxy::DestList l;
    std::vector<PackedDest> want;
    for (std::uint16_t i = 0; i < 40; ++i) {
        auto r = rs("10.244.1.7", static_cast<std::uint16_t>(1000 + i), i % 3);
        r.forwarding = i % 2 == 0 ? ipvs::Forwarding::Masq : ipvs::Forwarding::Tunnel;
        r.upperThreshold = i % 5 == 0 ? 9 : 0;
        const PackedDest d(r, i % 4 == 0);
        l.insert(l.lowerBound(d.key()), d);
        want.push_back(d);
    }
    CHECK_FALSE(l.wide());
    CHECK(l.bytes() == 64 * 12);  // grown by doubling from 4
    CHECK(sameList(l, want));
    CHECK(l[5].realServer() == want[5].realServer());
    CHECK(l.lowerBound({*net::IpAddress::parse("10.244.1.7"), 1010}) == 10);
    CHECK(l.lowerBound({*net::IpAddress::parse("10.244.1.8"), 0}) == 40);

    l.eraseIf([](const PackedDest& d) { return d.key().port % 2 == 1; });
    std::erase_if(want, [](const PackedDest& d) { return d.key().port % 2 == 1; });
    CHECK(sameList(l, want));
    auto d = l[3];
    d.setDraining(!d.draining());
    l.set(3, d);
    want[3] = d;
    const auto first = want.front().key();
    l.eraseIf([&](const PackedDest& x) { return x.key() == first; });
    want.erase(want.begin());
    CHECK(sameList(l, want));

    const proxy::DestList copy = l;
    CHECK(sameList(copy, want));
    CHECK(copy.bytes() == want.size() * 12);  // held exactly

    proxy::DestList moved = std::move(l);
    CHECK(sameList(moved, want));
    CHECK(l.empty());  // NOLINT(bugprone-use-after-move): a moved-from list is empty
    CHECK(l.bytes() == 0);
    l.push_back(want[0]);  // and usable
    CHECK(sameList(l, {want[0]}));
}

TEST_CASE("an IPv6 real server widens the list without changing what it holds", "[packed-dest]") {
    proxy::DestList l;
    const std::vector<PackedDest> v4{PackedDest(rs("10.0.0.1", 80)),
                                     PackedDest(rs("10.0.0.2", 80, 0), true)};
    l.assign(v4.begin(), v4.end());
    CHECK_FALSE(l.wide());
    CHECK(l.bytes() == 24);
    // Same bytes in its first four as 10.0.0.1: it must not be read back as that.
    const PackedDest v6(rs("a00:1::", 80));
    l.insert(l.lowerBound(v6.key()), v6);
    CHECK(l.wide());
    CHECK(l.size() == 3);
    CHECK(l[2].key() == v6.key());
    CHECK(l[0].key() == v4[0].key());
    CHECK(l[1].draining());
    CHECK(l[1].weight() == 0);

    proxy::DestList mixed;
    const std::vector<PackedDest> both{v4[0], v6};
    mixed.assign(both.begin(), both.end());
    CHECK(mixed.wide());
    CHECK(sameList(mixed, both));
    mixed = proxy::DestList{};
    CHECK(mixed.empty());
    CHECK(mixed.bytes() == 0);
}
