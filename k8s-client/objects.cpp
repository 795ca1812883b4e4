#include "k8s-client/objects.h"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace kipvs::k8s {
namespace {

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

namespace {
// Names in chunks that never move or go away, so that view() reads without the lock: a
// Name's id reaches another thread only after intern() returned it, through whatever handed
// the object over.
constexpr std::uint32_t kChunkSize = 1024;
constexpr std::uint32_t kChunks = Name::kMaxNames / kChunkSize;
struct NameTable {
    std::unordered_map<std::string_view, std::uint32_t> ids;  // views of the chunks' strings
    std::array<std::atomic<std::string*>, kChunks> chunks{};
    std::uint32_t next = 1;  // 0 is unset
};
NameTable& nameTable() {
    static auto* table = new NameTable();
    return *table;
}
}  // namespace

Name Name::intern(std::string_view s) {
    auto& t = nameTable();
    const std::lock_guard lock(internLock());
    if (auto it = t.ids.find(s); it != t.ids.end()) {
        return Name(it->second);
    }
    if (t.next >= kMaxNames) {
        return Name();
    }
    const std::uint32_t id = t.next++;
    auto& slot = t.chunks[id / kChunkSize];
    std::string* chunk = slot.load(std::memory_order_relaxed);
    if (chunk == nullptr) {
        chunk = new std::string[kChunkSize];
        slot.store(chunk, std::memory_order_release);
    }
    chunk[id % kChunkSize] = std::string(s);
    t.ids.emplace(chunk[id % kChunkSize], id);
    return Name(id);
}

std::string_view Name::view() const {
    if (id_ == 0) {
        return {};
    }
    return nameTable().chunks[id_ / kChunkSize].load(std::memory_order_acquire)[id_ % kChunkSize];
}

namespace {
// As the names: chunks of pointers that never move, read without the lock.
constexpr std::uint32_t kHintsChunks = HintsRef::kMaxHints / kChunkSize;
struct HintsTable {
    std::unordered_map<Hints, std::uint32_t, HintsHash> ids;  // owns the Hints
    std::array<std::atomic<const Hints**>, kHintsChunks> chunks{};
    std::uint32_t next = 1;  // 0 is null
};
HintsTable& hintsTable() {
    static auto* table = new HintsTable();
    return *table;
}
}  // namespace

HintsRef internHints(Hints h) {
    auto& t = hintsTable();
    const std::lock_guard lock(internLock());
    if (auto it = t.ids.find(h); it != t.ids.end()) {
        return HintsRef(it->second);
    }
    if (t.next >= HintsRef::kMaxHints) {
        return {};
    }
    const std::uint32_t id = t.next++;
    auto& slot = t.chunks[id / kChunkSize];
    const Hints** chunk = slot.load(std::memory_order_relaxed);
    if (chunk == nullptr) {
        chunk = new const Hints*[kChunkSize]();
        slot.store(chunk, std::memory_order_release);
    }
    chunk[id % kChunkSize] = &t.ids.emplace(std::move(h), id).first->first;
    return HintsRef(id);
}

const Hints* HintsRef::get() const {
    if (id_ == 0) {
        return nullptr;
    }
    return hintsTable().chunks[id_ / kChunkSize].load(std::memory_order_acquire)[id_ % kChunkSize];
}

}  // namespace kipvs::k8s
