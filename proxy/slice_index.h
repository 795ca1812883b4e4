// The EndpointSlices of each Service, found by the Service's key: pointers to the slices the
// proxier keeps, indexed by their namespace and kubernetes.io/service-name label.
//
// A map from each Service's key to a vector of its slices held a copy of the key, a vector
// and a hash node per Service: 144 bytes per Service at 44,000 x 10. One hash node per slice
// holding only the pointer takes 40. A slice's namespace and service name must not change
// while it is indexed: remove it, change it, add it again.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "k8s-client/objects.h"

namespace kipvs::proxy {

class SliceIndex {
  public:
    // Adding a slice already indexed does nothing.
    void add(const k8s::EndpointSlice* slice) {
        auto [lo, hi] = set_.equal_range(slice);
        if (std::find(lo, hi, slice) == hi) {
            set_.insert(slice);
        }
    }
    void remove(const k8s::EndpointSlice* slice) {
        auto [lo, hi] = set_.equal_range(slice);
        if (auto it = std::find(lo, hi, slice); it != hi) {
            set_.erase(it);
        }
    }
    std::size_t count(const k8s::ObjectKey& service) const { return set_.count(service); }
    // The Service's slices in the order of their names, so that what is built from them (the
    // merge keeps one copy of an endpoint two slices list) does not depend on the order in
    // which they arrived.
    std::vector<const k8s::EndpointSlice*> of(const k8s::ObjectKey& service) const {
        auto [lo, hi] = set_.equal_range(service);
        std::vector<const k8s::EndpointSlice*> out(lo, hi);
        std::sort(out.begin(), out.end(),
                  [](const auto* a, const auto* b) { return a->key.name < b->key.name; });
        return out;
    }

  private:
    static std::string_view ns(const k8s::EndpointSlice* s) { return s->key.ns; }
    static std::string_view ns(const k8s::ObjectKey& k) { return k.ns; }
    static std::string_view service(const k8s::EndpointSlice* s) { return s->serviceName; }
    static std::string_view service(const k8s::ObjectKey& k) { return k.name; }

    struct Hash {
        using is_transparent = void;
        template <class T>
        std::size_t operator()(const T& v) const noexcept {
            return std::hash<std::string_view>{}(ns(v)) * 31 ^
                   std::hash<std::string_view>{}(service(v));
        }
    };
    struct Equal {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const noexcept {
            return ns(a) == ns(b) && service(a) == service(b);
        }
    };
    std::unordered_multiset<const k8s::EndpointSlice*, Hash, Equal> set_;
};

}  // namespace kipvs::proxy
