// A list of trivially copyable values in one heap block, held by one pointer: 8 bytes where a
// std::vector takes 24. For the lists of the API objects the proxy keeps, 44,000 of each at
// 44,000 Services, most of them empty or of one element (a Service's cluster IPs, external
// IPs, LB ingress IPs and source ranges) or filled once (a slice's endpoints).
//
// The block is the element count, then the elements, exactly as many as there are: there is
// no spare capacity, so push_back() copies the whole list. Build long lists in a std::vector
// and assign it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace kipvs::k8s {

template <class T>
class CompactList {
    static_assert(std::is_trivially_copyable_v<T>);
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    // Where the elements start: after the count, aligned for T.
    static constexpr std::size_t kOffset =
        (sizeof(std::uint32_t) + alignof(T) - 1) / alignof(T) * alignof(T);

  public:
    using value_type = T;
    using iterator = T*;
    using const_iterator = const T*;

    CompactList() = default;
    // Throws std::length_error past 2^32 - 1 elements.
    explicit CompactList(std::span<const T> values) { assign(values); }
    CompactList(std::initializer_list<T> values) { assign({values.begin(), values.size()}); }
    // NOLINTNEXTLINE(google-explicit-constructor): a decoded std::vector is assigned as is
    CompactList(const std::vector<T>& values) { assign(values); }
    CompactList(const CompactList& o) { assign(o.span()); }
    CompactList& operator=(const CompactList& o) {
        if (this != &o) {
            assign(o.span());
        }
        return *this;
    }
    CompactList(CompactList&&) noexcept = default;
    CompactList& operator=(CompactList&&) noexcept = default;
    ~CompactList() = default;

    std::size_t size() const {
        if (!block_) {
            return 0;
        }
        std::uint32_t n = 0;
        std::memcpy(&n, block_.get(), sizeof n);
        return n;
    }
    bool empty() const { return !block_; }
    T* data() {
        return block_ ? std::launder(reinterpret_cast<T*>(block_.get() + kOffset)) : nullptr;
    }
    const T* data() const {
        return block_ ? std::launder(reinterpret_cast<const T*>(block_.get() + kOffset)) : nullptr;
    }
    T* begin() { return data(); }
    T* end() { return data() + size(); }
    const T* begin() const { return data(); }
    const T* end() const { return data() + size(); }
    T& operator[](std::size_t i) { return data()[i]; }
    const T& operator[](std::size_t i) const { return data()[i]; }
    T& at(std::size_t i) { return data()[checked(i)]; }
    const T& at(std::size_t i) const { return data()[checked(i)]; }
    const T& front() const { return data()[0]; }
    T& back() { return data()[size() - 1]; }
    const T& back() const { return data()[size() - 1]; }
    std::span<const T> span() const { return {data(), size()}; }

    void clear() { block_.reset(); }
    // Copies the list into a new block one element longer.
    void push_back(const T& v) {
        std::vector<T> grown(begin(), end());
        grown.push_back(v);
        assign(grown);
    }

    friend bool operator==(const CompactList& a, const CompactList& b) {
        return std::ranges::equal(a.span(), b.span());
    }
    friend bool operator==(const CompactList& a, const std::vector<T>& b) {
        return std::ranges::equal(a.span(), std::span<const T>(b));
    }

  private:
    std::size_t checked(std::size_t i) const {
        if (i >= size()) {
            throw std::out_of_range("CompactList::at");
        }
        return i;
    }
    void assign(std::span<const T> values) {
        if (values.empty()) {
            block_.reset();
            return;
        }
        if (values.size() > std::numeric_limits<std::uint32_t>::max()) {
            throw std::length_error("CompactList: too many elements");
        }
        const auto n = static_cast<std::uint32_t>(values.size());
        auto block = std::make_unique_for_overwrite<std::byte[]>(kOffset + n * sizeof(T));
        std::memcpy(block.get(), &n, sizeof n);
        std::uninitialized_copy(values.begin(), values.end(),
                                reinterpret_cast<T*>(block.get() + kOffset));
        block_ = std::move(block);
    }

    std::unique_ptr<std::byte[]> block_;
};

}  // namespace kipvs::k8s
