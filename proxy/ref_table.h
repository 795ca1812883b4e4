// Objects several Services share in the kernel (ipset members, service VIPs): how many
// Services want each one, and whether the kernel holds it, in one hash map.
//
// Two maps, one of reference counts and one of what the kernel holds, stored every member
// twice: at 44,000 Services that is 92,000 members and 44,000 VIPs, 10 MiB of hash nodes.
// An entry lives while it is wanted or held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <unordered_map>

#include "proxy/digest.h"
#include "proxy/hash_buckets.h"

namespace kipvs::proxy {

// Digester gives each object's digest (proxy/digest.h): the table keeps that of the objects the
// kernel holds, which a verification compares with the digest of what it read.
template <class T, class Hash = std::hash<T>, class Digester = HashDigest<T, Hash>>
class RefTable {
  public:
    // What a reference change did: whether the object became wanted (ref) or stopped being
    // wanted (unref), and whether the kernel holds it.
    struct Change {
        bool flipped = false;
        bool known = false;
    };

    bool wanted(const T& v) const {
        auto it = map_.find(v);
        return it != map_.end() && it->second.refs > 0;
    }
    bool known(const T& v) const {
        auto it = map_.find(v);
        return it != map_.end() && it->second.known;
    }
    // No object is wanted or held.
    bool empty() const { return map_.empty(); }
    std::size_t knownCount() const { return known_.count; }
    // The objects the kernel holds, in one digest.
    const UnorderedDigest& knownDigest() const { return known_; }

    Change ref(const T& v) {
        auto& s = map_[v];
        return {++s.refs == 1, s.known};
    }
    // An object without references is left alone (flipped false).
    Change unref(const T& v) {
        auto it = map_.find(v);
        if (it == map_.end() || it->second.refs == 0) {
            return {};
        }
        const bool known = it->second.known;
        if (--it->second.refs == 0 && !known) {
            map_.erase(it);
            return {true, false};
        }
        return {it->second.refs == 0, known};
    }

    // The kernel holds v (present) or does not.
    void setKnown(const T& v, bool present) {
        if (present) {
            auto& s = map_[v];
            if (!s.known) {
                s.known = true;
                known_.add(Digester{}(v));
            }
            return;
        }
        auto it = map_.find(v);
        if (it == map_.end() || !it->second.known) {
            return;
        }
        it->second.known = false;
        known_.remove(Digester{}(v));
        if (it->second.refs == 0) {
            map_.erase(it);
        }
    }
    // The kernel holds none of them (kept: the wanted ones).
    void clearKnown() {
        for (auto it = map_.begin(); it != map_.end();) {
            if (it->second.refs == 0) {
                it = map_.erase(it);
            } else {
                it->second.known = false;
                ++it;
            }
        }
        known_ = {};
    }
    // The kernel holds exactly `held`.
    template <class Range>
    void replaceKnown(const Range& held) {
        clearKnown();
        for (const auto& v : held) {
            setKnown(v, true);
        }
    }

    void shrinkBuckets() { proxy::shrinkBuckets(map_); }
    std::size_t bucketCount() const { return map_.bucket_count(); }

    // f(object, wanted, known) for each object wanted or held. f must not change the table.
    template <class F>
    void forEach(F&& f) const {
        for (const auto& [v, s] : map_) {
            f(v, s.refs > 0, s.known);
        }
    }

  private:
    struct State {
        std::uint32_t refs = 0;
        bool known = false;
    };
    std::unordered_map<T, State, Hash> map_;
    UnorderedDigest known_;
};

}  // namespace kipvs::proxy
