#include "k8s-client/compact_list.h"
#include "k8s-client/objects.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

using kipvs::k8s::CompactList;

namespace {
struct Wide {  // aligned past the 4-byte count
    std::uint64_t v;
    friend bool operator==(const Wide&, const Wide&) = default;
};
}  // namespace

TEST_CASE("a compact list holds what it was given, in order", "[compact-list]") {
    const std::vector<std::uint16_t> v{3, 1, 65535};
    CompactList<std::uint16_t> l = v;
    CHECK(l.size() == 3);
    CHECK_FALSE(l.empty());
    CHECK(l == v);
    CHECK(l[2] == 65535);
    CHECK(l.front() == 3);
    CHECK(l.back() == 65535);
    CHECK_THROWS_AS(l.at(3), std::out_of_range);
    l.push_back(9);
    CHECK(l == std::vector<std::uint16_t>{3, 1, 65535, 9});
    l[0] = 4;
    CHECK(l.at(0) == 4);

    const CompactList<Wide> w{{1}, {~0ULL}};
    CHECK(reinterpret_cast<std::uintptr_t>(w.data()) % alignof(Wide) == 0);
    CHECK(w == std::vector<Wide>{{1}, {~0ULL}});
}

TEST_CASE("an empty compact list holds no block; copies are deep", "[compact-list]") {
    CompactList<int> e;
    CHECK(e.empty());
    CHECK(e.size() == 0);
    CHECK(e.begin() == e.end());
    CHECK(e == std::vector<int>{});
    e = std::vector<int>{};
    CHECK(e.empty());

    CompactList<int> a{1, 2};
    CompactList<int> b = a;
    b[0] = 7;
    CHECK(a == std::vector<int>{1, 2});
    CHECK(b == std::vector<int>{7, 2});
    CHECK_FALSE(a == b);
    a = b;
    CHECK(a == b);
    CompactList<int> c = std::move(a);
    CHECK(c == b);
    a.clear();  // NOLINT(bugprone-use-after-move): clear() gives a defined state
    CHECK(a.empty());
    c.clear();
    CHECK(c.empty());
}

TEST_CASE("a slice's endpoints keep IPv4 ones in 16 bytes and read back whole", "[compact]") {
    using kipvs::k8s::Endpoint;
    using kipvs::k8s::EndpointList;
    std::vector<Endpoint> v4;
    for (std::uint32_t i = 0; i < 10; ++i) {
        Endpoint e;
        e.address = kipvs::net::IpAddress::v4(0x0A800000U + i);
        e.ready = i % 2 == 0;
        e.serving = i % 3 == 0;
        e.terminating = i % 4 == 0;
        e.nodeName = kipvs::k8s::Name::intern("node-" + std::to_string(i % 3));
        if (i % 5 == 0) {
            kipvs::k8s::Hints h;
            h.forZones.push_back(kipvs::k8s::Name::intern("zone-a"));
            e.hints = kipvs::k8s::internHints(h);
        }
        v4.push_back(e);
    }
    const EndpointList l(v4);
    CHECK_FALSE(l.wide());
    CHECK(l.bytes() == 8 + 10 * 16);
    CHECK(l.toVector() == v4);
    CHECK(l[5] == v4[5]);
    CHECK(l.at(9) == v4[9]);
    CHECK_THROWS_AS(l.at(10), std::out_of_range);
    CHECK(l == EndpointList(v4));

    // One IPv6 endpoint: all of them whole, and still the same values.
    auto mixed = v4;
    Endpoint six;
    six.address = *kipvs::net::IpAddress::parse("a80:1::");  // 10.128.0.1's first bytes
    six.ready = false;
    mixed.push_back(six);
    const EndpointList w(mixed);
    CHECK(w.wide());
    CHECK(w.bytes() == 8 + 11 * sizeof(Endpoint));
    CHECK(w.toVector() == mixed);
    CHECK(w.back().address.isV6());
    CHECK_FALSE(w == l);

    auto edited = l;
    auto e = edited[2];
    e.serving = !e.serving;
    edited.set(2, e);
    CHECK_FALSE(edited == l);
    CHECK(edited[2].serving != l[2].serving);
    edited.push_back(six);
    CHECK(edited.wide());
    CHECK(edited.size() == 11);
    CHECK(EndpointList().empty());
    CHECK(EndpointList().bytes() == 0);
}
