// Bucket arrays of the reconciler's hash tables, given back once they are well over what the
// elements need (issue 8, memory).
//
// A std::unordered_* table doubles its bucket array as it grows and never shrinks it, not on
// erase and not on clear. After a 44,000-Service cold start a dozen tables each held about
// 85,000 buckets (680 KB), some for elements that were gone (the Services left to sync) and the
// rest at half load.
#pragma once

#include <cstddef>

namespace kipvs::proxy {

// Tables with fewer buckets are left alone: not worth a rehash.
inline constexpr std::size_t kShrinkMinBuckets = 1024;

// Rehashes `c` to a load of 3/4 of its maximum if it has more than 5/4 of the buckets that
// needs. A rehash moves no element but invalidates iterators.
template <class C>
void shrinkBuckets(C& c) {
    const auto need =
        static_cast<std::size_t>(static_cast<float>(c.size()) / (0.75F * c.max_load_factor())) + 1;
    if (c.bucket_count() < kShrinkMinBuckets || c.bucket_count() <= need + need / 4) {
        return;
    }
    c.rehash(need);
}

}  // namespace kipvs::proxy
