// RefTable: the reference counts of shared kernel objects and whether the kernel holds them.
#include "proxy/ref_table.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

using kipvs::proxy::RefTable;

namespace {

// Every entry as (object, wanted, known), sorted.
std::set<std::tuple<int, bool, bool>> entries(const RefTable<int>& t) {
    std::set<std::tuple<int, bool, bool>> out;
    t.forEach([&](int v, bool wanted, bool known) { out.emplace(v, wanted, known); });
    return out;
}

}  // namespace

TEST_CASE("RefTable: a reference change says when the object needs a kernel write") {
    RefTable<int> t;
    auto c = t.ref(1);
    CHECK(c.flipped);  // became wanted, not held: an add is needed
    CHECK_FALSE(c.known);
    c = t.ref(1);
    CHECK_FALSE(c.flipped);  // a second Service wants it too
    c = t.unref(1);
    CHECK_FALSE(c.flipped);
    CHECK(t.wanted(1));
    c = t.unref(1);
    CHECK(c.flipped);
    CHECK_FALSE(c.known);
    CHECK(t.empty());  // neither wanted nor held: gone

    t.setKnown(2, true);
    c = t.ref(2);
    CHECK(c.flipped);
    CHECK(c.known);  // the kernel has it already: nothing to write
    c = t.unref(2);
    CHECK(c.flipped);
    CHECK(c.known);  // still held: a delete is needed
    CHECK(t.known(2));
    CHECK_FALSE(t.wanted(2));
    CHECK(entries(t) == std::set<std::tuple<int, bool, bool>>{{2, false, true}});

    // Dropping a reference nobody holds changes nothing.
    c = t.unref(3);
    CHECK_FALSE(c.flipped);
    CHECK(entries(t) == std::set<std::tuple<int, bool, bool>>{{2, false, true}});
}

TEST_CASE("RefTable: what the kernel holds is kept apart from what is wanted") {
    RefTable<int> t;
    t.ref(1);
    t.ref(2);
    t.setKnown(2, true);
    t.setKnown(3, true);
    CHECK(t.knownCount() == 2);
    CHECK(entries(t) == std::set<std::tuple<int, bool, bool>>{
                            {1, true, false}, {2, true, true}, {3, false, true}});

    t.setKnown(3, false);  // deleted from the kernel and not wanted: forgotten
    t.setKnown(2, false);  // still wanted: kept
    t.setKnown(4, false);  // never there: nothing happens
    CHECK(t.knownCount() == 0);
    CHECK(entries(t) == std::set<std::tuple<int, bool, bool>>{{1, true, false}, {2, true, false}});

    t.setKnown(1, true);
    t.setKnown(1, true);  // counted once
    CHECK(t.knownCount() == 1);

    // A kernel read replaces what is known and keeps every reference.
    t.replaceKnown(std::vector<int>{2, 5});
    CHECK(t.knownCount() == 2);
    CHECK(entries(t) == std::set<std::tuple<int, bool, bool>>{
                            {1, true, false}, {2, true, true}, {5, false, true}});
    t.clearKnown();
    CHECK(t.knownCount() == 0);
    CHECK(entries(t) == std::set<std::tuple<int, bool, bool>>{{1, true, false}, {2, true, false}});
    CHECK_FALSE(t.empty());
    t.unref(1);
    t.unref(2);
    CHECK(t.empty());
}

TEST_CASE("RefTable: the digest of what the kernel holds follows every change") {
    // Always the digest of the known objects computed afresh, in whatever order.
    const auto of = [](std::initializer_list<int> held) {
        kipvs::proxy::UnorderedDigest d;
        for (int v : held) {
            d.add(kipvs::proxy::HashDigest<int>{}(v));
        }
        return d;
    };
    RefTable<int> t;
    CHECK(t.knownDigest() == of({}));
    t.ref(1);
    t.setKnown(2, true);
    t.setKnown(3, true);
    t.setKnown(3, true);  // counted once
    CHECK(t.knownDigest() == of({3, 2}));
    CHECK(t.knownDigest() != of({2}));
    CHECK(t.knownDigest() != of({2, 4}));  // as many, not the same
    t.setKnown(1, true);
    t.setKnown(2, false);
    t.setKnown(9, false);  // never there
    CHECK(t.knownDigest() == of({1, 3}));
    t.unref(1);  // no longer wanted, still held
    CHECK(t.knownDigest() == of({1, 3}));
    t.replaceKnown(std::vector<int>{5, 2});
    CHECK(t.knownDigest() == of({2, 5}));
    t.clearKnown();
    CHECK(t.knownDigest() == of({}));
}
