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
#include <iterator>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace kipvs::k8s {

// The element count at the start of a compact block (CompactList, EndpointList).
inline std::uint32_t blockCount(const std::byte* block) {
    std::uint32_t n = 0;
    std::memcpy(&n, block, sizeof n);
    return n;
}

// A random-access iterator over a list whose elements are decoded on reading: *it is
// list[i], a value. List is a pointer to the list or a small view held by value.
template <class List, class T>
class ByValueIterator {
  public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = T;
    ByValueIterator() = default;
    ByValueIterator(List list, std::size_t i) : list_(list), i_(i) {}
    T operator*() const {
        if constexpr (std::is_pointer_v<List>) {
            return (*list_)[i_];
        } else {
            return list_[i_];
        }
    }
    T operator[](difference_type n) const { return *(*this + n); }
    ByValueIterator& operator++() { return *this += 1; }
    ByValueIterator operator++(int) {
        auto t = *this;
        ++*this;
        return t;
    }
    ByValueIterator& operator--() { return *this -= 1; }
    ByValueIterator operator--(int) {
        auto t = *this;
        --*this;
        return t;
    }
    ByValueIterator& operator+=(difference_type n) {
        i_ = static_cast<std::size_t>(static_cast<difference_type>(i_) + n);
        return *this;
    }
    ByValueIterator& operator-=(difference_type n) { return *this += -n; }
    friend ByValueIterator operator+(ByValueIterator a, difference_type n) { return a += n; }
    friend ByValueIterator operator+(difference_type n, ByValueIterator a) { return a += n; }
    friend ByValueIterator operator-(ByValueIterator a, difference_type n) { return a -= n; }
    friend difference_type operator-(const ByValueIterator& a, const ByValueIterator& b) {
        return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const ByValueIterator& a, const ByValueIterator& b) {
        return a.i_ == b.i_;
    }
    friend auto operator<=>(const ByValueIterator& a, const ByValueIterator& b) {
        return a.i_ <=> b.i_;
    }
    std::size_t index() const { return i_; }

  private:
    List list_{};
    std::size_t i_ = 0;
};

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

    std::size_t size() const { return block_ ? blockCount(block_.get()) : 0; }
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
