// ChunkedList: a sync step's IPVS writes, kept and applied in chunks.
#include "proxy/chunked_list.h"

#include <catch2/catch.hpp>
#include <cstddef>
#include <span>
#include <vector>

using kipvs::proxy::ChunkedList;

TEST_CASE("ChunkedList: elements in order, in chunks of at most N, none copied to grow") {
    ChunkedList<int, 4> list;
    CHECK(list.empty());
    std::size_t chunks = 0;
    list.forEachChunk([&](std::span<const int>) { ++chunks; });
    CHECK(chunks == 0);

    for (int i = 0; i < 10; ++i) {
        list.push_back(i);
    }
    CHECK(list.size() == 10);
    CHECK(list.chunkCount() == 3);
    std::vector<int> seen;
    std::vector<std::size_t> sizes;
    std::vector<const int*> starts;
    list.forEachChunk([&](std::span<const int> c) {
        sizes.push_back(c.size());
        starts.push_back(c.data());
        seen.insert(seen.end(), c.begin(), c.end());
    });
    CHECK(sizes == std::vector<std::size_t>{4, 4, 2});
    CHECK(seen == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

    // A full chunk never moves: the ones after the first are allocated whole.
    for (int i = 10; i < 12; ++i) {
        list.push_back(i);
    }
    std::vector<const int*> after;
    list.forEachChunk([&](std::span<const int> c) { after.push_back(c.data()); });
    CHECK(after.size() == 3);
    CHECK(after[0] == starts[0]);
    CHECK(after[1] == starts[1]);
    CHECK(after[2] == starts[2]);
}
