#include "k8s-client/compact_list.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <stdexcept>
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
