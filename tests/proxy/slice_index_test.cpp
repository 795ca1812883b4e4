// SliceIndex: a Service's EndpointSlices found by the Service's key.
#include <catch2/catch.hpp>

#include "builders.h"
#include "proxy/slice_index.h"

using namespace kipvs;
using namespace kipvs::testing;

TEST_CASE("a Service's slices are found by its namespace and name, in name order",
          "[slice-index]") {
    const k8s::EndpointSlice c = SliceBuilder("default", "web-c", "web");
    const k8s::EndpointSlice a = SliceBuilder("default", "web-a", "web");
    const k8s::EndpointSlice b = SliceBuilder("default", "web-b", "web");
    const k8s::EndpointSlice other = SliceBuilder("default", "api-a", "api");
    const k8s::EndpointSlice otherNs = SliceBuilder("prod", "web-c", "web");
    proxy::SliceIndex idx;
    for (const auto* s : {&c, &other, &a, &otherNs, &b}) {
        idx.add(s);
    }
    idx.add(&b);  // again: nothing changes
    CHECK(idx.count({"default", "web"}) == 3);
    CHECK(idx.of({"default", "web"}) == std::vector<const k8s::EndpointSlice*>{&a, &b, &c});
    CHECK(idx.of({"prod", "web"}) == std::vector<const k8s::EndpointSlice*>{&otherNs});
    CHECK(idx.count({"default", "api"}) == 1);
    CHECK(idx.count({"default", "db"}) == 0);
    CHECK(idx.of({"default", "db"}).empty());
    CHECK(idx.count({"default", "web-a"}) == 0);  // a slice's own name is not a Service's

    // Removal takes that slice only, not the others of its Service.
    idx.remove(&a);
    idx.remove(&a);
    CHECK(idx.of({"default", "web"}) == std::vector<const k8s::EndpointSlice*>{&b, &c});
    CHECK(idx.count({"prod", "web"}) == 1);
}

TEST_CASE("a slice relabelled to another Service is re-indexed under it", "[slice-index]") {
    k8s::EndpointSlice s = SliceBuilder("default", "web-a", "web");
    proxy::SliceIndex idx;
    idx.add(&s);
    idx.remove(&s);
    s.serviceName = "api";
    idx.add(&s);
    CHECK(idx.count({"default", "web"}) == 0);
    CHECK(idx.of({"default", "api"}) == std::vector<const k8s::EndpointSlice*>{&s});
}
