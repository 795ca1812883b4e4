// A few lists of trivially copyable values in one heap block: the counts at its start, then
// each list, aligned for its type. Read-only once built; replaced whole.
//
// Each Service's contribution to the desired state (its virtual servers' keys, its VIPs, its
// set members, ...) was one std::vector per list: 24 bytes each in the record and one heap
// block each, 400 bytes per Service at 44,000 Services x 10. One pointer and one block take
// about 300. An empty PackedLists holds no block.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <tuple>
#include <type_traits>

namespace kipvs::proxy {

template <class... Ts>
class PackedLists {
    static_assert(sizeof...(Ts) > 0);
    static_assert((std::is_trivially_copyable_v<Ts> && ...));
    static_assert(((alignof(Ts) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) && ...));
    static constexpr std::size_t kLists = sizeof...(Ts);
    using Counts = std::array<std::uint32_t, kLists>;
    static constexpr std::array<std::size_t, kLists> kSize{sizeof(Ts)...};
    static constexpr std::array<std::size_t, kLists> kAlign{alignof(Ts)...};

  public:
    template <std::size_t I>
    using Type = std::tuple_element_t<I, std::tuple<Ts...>>;

    PackedLists() = default;
    // Throws std::length_error past 2^32 - 1 values in one list.
    explicit PackedLists(std::span<const Ts>... lists) {
        const Counts counts{checkedCount(lists.size())...};
        if (std::ranges::all_of(counts, [](std::uint32_t n) { return n == 0; })) {
            return;
        }
        const auto offsets = offsetsFor(counts);
        const std::size_t total = offsets.back() + counts.back() * kSize.back();
        block_ = std::make_unique<std::byte[]>(total);
        std::memcpy(block_.get(), counts.data(), sizeof(Counts));
        std::size_t i = 0;
        (place(lists, offsets[i++]), ...);
    }
    PackedLists(const PackedLists& o) : block_(copyOf(o)) {}
    PackedLists& operator=(const PackedLists& o) {
        if (this != &o) {
            block_ = copyOf(o);
        }
        return *this;
    }
    PackedLists(PackedLists&&) noexcept = default;
    PackedLists& operator=(PackedLists&&) noexcept = default;
    ~PackedLists() = default;

    template <std::size_t I>
    std::span<const Type<I>> get() const {
        if (!block_) {
            return {};
        }
        const Counts counts = countsOf(block_.get());
        const std::byte* p = block_.get() + offsetsFor(counts)[I];
        return {std::launder(reinterpret_cast<const Type<I>*>(p)), counts[I]};
    }
    bool empty() const { return !block_; }

  private:
    static std::uint32_t checkedCount(std::size_t n) {
        if (n > std::numeric_limits<std::uint32_t>::max()) {
            throw std::length_error("PackedLists: list too long");
        }
        return static_cast<std::uint32_t>(n);
    }
    static Counts countsOf(const std::byte* block) {
        Counts c;
        std::memcpy(c.data(), block, sizeof(Counts));
        return c;
    }
    static constexpr std::size_t alignUp(std::size_t n, std::size_t a) {
        return (n + a - 1) / a * a;
    }
    // Where each list starts: after the counts, and after the list before it.
    static std::array<std::size_t, kLists> offsetsFor(const Counts& counts) {
        std::array<std::size_t, kLists> off{};
        std::size_t end = sizeof(Counts);
        for (std::size_t i = 0; i < kLists; ++i) {
            off[i] = alignUp(end, kAlign[i]);
            end = off[i] + counts[i] * kSize[i];
        }
        return off;
    }
    template <class T>
    void place(std::span<const T> list, std::size_t offset) {
        std::uninitialized_copy(list.begin(), list.end(),
                                reinterpret_cast<T*>(block_.get() + offset));
    }
    static std::unique_ptr<std::byte[]> copyOf(const PackedLists& o) {
        if (!o.block_) {
            return nullptr;
        }
        const Counts counts = countsOf(o.block_.get());
        const auto offsets = offsetsFor(counts);
        const std::size_t total = offsets.back() + counts.back() * kSize.back();
        auto block = std::make_unique<std::byte[]>(total);
        std::memcpy(block.get(), o.block_.get(), total);
        return block;
    }

    std::unique_ptr<std::byte[]> block_;
};

}  // namespace kipvs::proxy
