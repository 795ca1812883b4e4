#include "k8s-client/objects.h"

#include <memory>
#include <mutex>
#include <unordered_set>

namespace kipvs::k8s {
namespace {

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

struct HintsHash {
    std::size_t operator()(const Hints& h) const noexcept {
        std::size_t x = h.forZones.size() * 31 + h.forNodes.size();
        for (const auto& z : h.forZones) {
            x = x * 1000003 ^ std::hash<std::string_view>{}(z.view());
        }
        for (const auto& n : h.forNodes) {
            x = x * 1000003 ^ std::hash<std::string_view>{}(n.view());
        }
        return x;
    }
};

}  // namespace

// The client decodes on its own thread (client_thread.h) while tests and tools may intern on
// theirs; a name, once interned, never moves, so only the tables need the lock.
namespace {
std::mutex& internLock() {
    static std::mutex m;
    return m;
}
}  // namespace

Name Name::intern(std::string_view s) {
    // Never freed: the set of node and zone names of a cluster is small and bounded.
    static auto* table = new std::unordered_set<std::string, StringHash, std::equal_to<>>();
    const std::lock_guard lock(internLock());
    auto it = table->find(s);
    if (it == table->end()) {
        it = table->emplace(s).first;
    }
    return Name(&*it);
}

const Hints* internHints(Hints h) {
    static auto* table = new std::unordered_set<Hints, HintsHash>();
    const std::lock_guard lock(internLock());
    return &*table->insert(std::move(h)).first;
}

}  // namespace kipvs::k8s
