#include "proxy/packed_lists.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

using kipvs::proxy::PackedLists;

namespace {
// Types of different sizes and alignments, so that every list but the first starts where
// padding is due.
struct Odd {
    std::uint8_t b[3];
    friend bool operator==(const Odd&, const Odd&) = default;
};
struct Wide {
    std::uint64_t v;
    std::uint8_t tag;
    friend bool operator==(const Wide&, const Wide&) = default;
};
using Lists = PackedLists<Odd, Wide, std::uint16_t>;

template <class T>
std::vector<T> vec(std::span<const T> s) {
    return {s.begin(), s.end()};
}
}  // namespace

TEST_CASE("packed lists give back each list as it was given", "[packed-lists]") {
    const std::vector<Odd> odd{{{1, 2, 3}}, {{4, 5, 6}}, {{7, 8, 9}}};
    const std::vector<Wide> wide{{0x1122334455667788ULL, 1}, {~0ULL, 2}};
    const std::vector<std::uint16_t> shorts{7, 65535, 0, 9};
    const Lists l(odd, wide, shorts);
    CHECK_FALSE(l.empty());
    CHECK(vec(l.get<0>()) == odd);
    CHECK(vec(l.get<1>()) == wide);
    CHECK(vec(l.get<2>()) == shorts);
    // Each list is aligned for its type.
    CHECK(reinterpret_cast<std::uintptr_t>(l.get<1>().data()) % alignof(Wide) == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(l.get<2>().data()) % alignof(std::uint16_t) == 0);
}

TEST_CASE("packed lists keep empty lists in any position", "[packed-lists]") {
    const std::vector<Odd> none;
    const std::vector<Wide> wide{{5, 6}};
    const std::vector<std::uint16_t> noShorts;
    const Lists middle(none, wide, noShorts);
    CHECK(middle.get<0>().empty());
    CHECK(vec(middle.get<1>()) == wide);
    CHECK(middle.get<2>().empty());

    const Lists allEmpty(none, std::vector<Wide>{}, noShorts);
    CHECK(allEmpty.empty());
    CHECK(allEmpty.get<1>().empty());
    const Lists defaulted;
    CHECK(defaulted.empty());
    CHECK(defaulted.get<2>().empty());
}

TEST_CASE("copies of packed lists are deep; moves leave the source empty", "[packed-lists]") {
    const std::vector<Odd> odd{{{1, 1, 1}}};
    const std::vector<Wide> wide{{1, 1}, {2, 2}};
    const std::vector<std::uint16_t> shorts{3};
    Lists a(odd, wide, shorts);
    Lists b = a;
    CHECK(b.get<1>().data() != a.get<1>().data());
    CHECK(vec(b.get<1>()) == wide);
    a = Lists(odd, std::vector<Wide>{}, shorts);  // replacing a leaves b as it was
    CHECK(a.get<1>().empty());
    CHECK(vec(b.get<1>()) == wide);
    CHECK(vec(b.get<2>()) == shorts);

    Lists c = std::move(b);
    CHECK(vec(c.get<0>()) == odd);
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
    b = c;
    CHECK(vec(b.get<1>()) == wide);
}
