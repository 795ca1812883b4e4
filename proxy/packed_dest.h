// A real server as the reconciler keeps it: in 24 bytes, where ipvs::RealServer takes 36
// (40 with the draining flag), and in 12 when it is IPv4 and stored in a DestList. The known
// IPVS table and a verification's snapshot each hold one per endpoint of every Service:
// 440,000 at 44,000 Services x 10 endpoints.
//
// The connection thresholds are kept as one bit, "some threshold is not 0": kube-ipvs never
// sets them, so the only thing it does about them is set them back to 0, and for that (and
// for noticing that someone set them) whether they are 0 is all it needs.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <utility>

#include "ipvs/types.h"
#include "k8s-client/compact_list.h"
#include "proxy/digest.h"

namespace kipvs::proxy {

class PackedDest {
  public:
    PackedDest() = default;
    explicit PackedDest(const ipvs::RealServer& rs, bool draining = false)
        : port_(rs.key.port),
          forwarding_(rs.forwarding),
          flags_(static_cast<std::uint8_t>((rs.key.address.isV6() ? kV6 : 0) |
                                           (hasThresholds(rs) ? kThresholds : 0) |
                                           (draining ? kDraining : 0))),
          weight_(rs.weight) {
        std::memcpy(addr_.data(), rs.key.address.data(), rs.key.address.size());
    }

    ipvs::DestKey key() const {
        return {net::IpAddress::fromBytes((flags_ & kV6) != 0 ? net::Family::V6 : net::Family::V4,
                                          addr_.data()),
                port_};
    }
    std::int32_t weight() const { return weight_; }
    ipvs::Forwarding forwarding() const { return forwarding_; }
    bool thresholdsSet() const { return (flags_ & kThresholds) != 0; }
    // A real server taken out of service: weight 0, deleted once its connections end.
    bool draining() const { return (flags_ & kDraining) != 0; }
    void setDraining(bool d) {
        flags_ = static_cast<std::uint8_t>(d ? flags_ | kDraining : flags_ & ~kDraining);
    }

    // The real server to write: thresholds 0 (see above).
    ipvs::RealServer realServer() const {
        ipvs::RealServer rs;
        rs.key = key();
        rs.forwarding = forwarding_;
        rs.weight = weight_;
        return rs;
    }
    // Same forwarding, weight and thresholds (0 or not) as `rs`; the key is not compared.
    bool sameContent(const ipvs::RealServer& rs) const {
        return forwarding_ == rs.forwarding && weight_ == rs.weight &&
               thresholdsSet() == hasThresholds(rs);
    }
    // Same real server in the same state; the draining flag is the reconciler's, not the
    // kernel's, and is not compared.
    bool sameAs(const PackedDest& o) const {
        return addr_ == o.addr_ && port_ == o.port_ && forwarding_ == o.forwarding_ &&
               weight_ == o.weight_ && ((flags_ ^ o.flags_) & ~kDraining) == 0;
    }
    // Adds what sameAs compares: equal digests for two that are sameAs.
    void addTo(Digest& d) const {
        std::uint64_t lo = 0;
        std::uint64_t hi = 0;
        std::memcpy(&lo, addr_.data(), 8);
        std::memcpy(&hi, addr_.data() + 8, 8);
        const auto state = static_cast<std::uint64_t>(port_) |
                           static_cast<std::uint64_t>(forwarding_) << 16 |
                           static_cast<std::uint64_t>(flags_ & ~kDraining) << 24 |
                           static_cast<std::uint64_t>(static_cast<std::uint32_t>(weight_)) << 32;
        d.add(lo).add(hi).add(state);
    }

  private:
    friend struct DestCodec;
    static bool hasThresholds(const ipvs::RealServer& rs) {
        return rs.upperThreshold != 0 || rs.lowerThreshold != 0;
    }
    static constexpr std::uint8_t kV6 = 1;
    static constexpr std::uint8_t kThresholds = 2;
    static constexpr std::uint8_t kDraining = 4;

    std::array<std::uint8_t, 16> addr_{};  // 4 or 16 bytes, network order; the rest 0
    std::uint16_t port_ = 0;
    ipvs::Forwarding forwarding_ = ipvs::Forwarding::Masq;
    std::uint8_t flags_ = 0;
    std::int32_t weight_ = 0;
};
static_assert(sizeof(PackedDest) == 24);

// Ordered as ipvs::DestKey orders: by address (IPv4 first), then port.
inline bool keyLess(const PackedDest& a, const PackedDest& b) {
    return a.key() < b.key();
}

// How DestList and DestSpan store a PackedDest: an IPv4 one in 12 bytes (its address's 4,
// not 16), "narrow", or all 24 bytes, "wide".
struct DestCodec {
    struct Narrow {
        std::array<std::uint8_t, 4> addr;
        std::uint16_t port;
        ipvs::Forwarding forwarding;
        std::uint8_t flags;
        std::int32_t weight;
    };
    static_assert(sizeof(Narrow) == 12);

    static constexpr std::size_t width(bool wide) {
        return wide ? sizeof(PackedDest) : sizeof(Narrow);
    }
    static bool narrowable(const PackedDest& d) { return (d.flags_ & PackedDest::kV6) == 0; }
    // Whether a list of these must be wide.
    template <class It>
    static bool anyWide(It first, It last) {
        return std::any_of(first, last, [](const PackedDest& d) { return !narrowable(d); });
    }
    static PackedDest decode(const std::byte* p, bool wide) {
        PackedDest d;
        if (wide) {
            std::memcpy(&d, p, sizeof d);
            return d;
        }
        Narrow n;
        std::memcpy(&n, p, sizeof n);
        std::memcpy(d.addr_.data(), n.addr.data(), n.addr.size());
        d.port_ = n.port;
        d.forwarding_ = n.forwarding;
        d.flags_ = n.flags;
        d.weight_ = n.weight;
        return d;
    }
    // A narrow p takes only a narrowable d.
    static void encode(std::byte* p, bool wide, const PackedDest& d) {
        if (wide) {
            std::memcpy(p, &d, sizeof d);
            return;
        }
        Narrow n{};
        std::memcpy(n.addr.data(), d.addr_.data(), n.addr.size());
        n.port = d.port_;
        n.forwarding = d.forwarding_;
        n.flags = d.flags_;
        n.weight = d.weight_;
        std::memcpy(p, &n, sizeof n);
    }
};

// A read-only run of stored real servers (part of a DestList), read by value.
class DestSpan {
  public:
    using const_iterator = k8s::ByValueIterator<DestSpan, PackedDest>;

    DestSpan() = default;
    DestSpan(const std::byte* data, std::size_t size, bool wide)
        : data_(data), size_(size), wide_(wide) {}
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const_iterator begin() const { return {*this, 0}; }
    const_iterator end() const { return {*this, size_}; }
    PackedDest operator[](std::size_t i) const {
        return DestCodec::decode(data_ + i * DestCodec::width(wide_), wide_);
    }
    // The position of the first element whose key is not less than k.
    std::size_t lowerBound(const ipvs::DestKey& k) const {
        return std::lower_bound(
                   begin(), end(), k,
                   [](const PackedDest& d, const ipvs::DestKey& key) { return d.key() < key; })
            .index();
    }

  private:
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    bool wide_ = false;
};

// The real servers of one known virtual server, in key order, or a block of a verification
// snapshot's: a list of PackedDest that keeps IPv4 ones narrow (12 bytes) behind a 16-byte
// handle, where a std::vector<PackedDest> took 24 bytes of header and 24 per element. At
// 44,000 Services x 10 endpoints that is 5.6 MB less in the known table and 5.3 MB less in
// a snapshot. Elements are read and written by value. A list holds one width: the first IPv6
// real server widens all of it (a virtual server's real servers are of its family in practice,
// so that happens only for a table someone else made).
class DestList {
  public:
    using const_iterator = DestSpan::const_iterator;

    DestList() = default;
    // Empty, with room for n of the given width.
    static DestList withCapacity(std::size_t n, bool wide) {
        DestList l;
        l.wide_ = wide ? 1 : 0;
        l.reserve(n);
        return l;
    }
    DestList(const DestList& o) { *this = o; }
    // Built aside and then taken: a failed allocation leaves the list as it was.
    DestList& operator=(const DestList& o) {
        if (this != &o) {
            DestList copy = withCapacity(o.size_, o.wide());
            if (o.size_ != 0) {
                std::memcpy(copy.data_.get(), o.data_.get(), o.size_ * o.width());
            }
            copy.size_ = o.size_;
            *this = std::move(copy);
        }
        return *this;
    }
    // A moved-from list is empty.
    DestList(DestList&& o) noexcept { *this = std::move(o); }
    DestList& operator=(DestList&& o) noexcept {
        if (this != &o) {
            data_ = std::move(o.data_);
            size_ = std::exchange(o.size_, 0);
            cap_ = o.cap_;
            wide_ = o.wide_;
            o.cap_ = 0;
            o.wide_ = 0;
        }
        return *this;
    }
    ~DestList() = default;

    std::size_t size() const { return size_; }
    std::size_t capacity() const { return cap_; }
    bool empty() const { return size_ == 0; }
    bool wide() const { return wide_ != 0; }
    // Bytes held for the elements (the capacity's).
    std::size_t bytes() const { return std::size_t{cap_} * width(); }
    DestSpan span() const { return {data_.get(), size_, wide()}; }
    DestSpan span(std::size_t pos, std::size_t n) const {
        return {data_.get() + pos * width(), n, wide()};
    }
    const_iterator begin() const { return span().begin(); }
    const_iterator end() const { return span().end(); }
    PackedDest operator[](std::size_t i) const {
        return DestCodec::decode(data_.get() + i * width(), wide());
    }
    std::size_t lowerBound(const ipvs::DestKey& k) const { return span().lowerBound(k); }

    void set(std::size_t i, const PackedDest& d) {
        fit(d);
        put(i, d);
    }
    void insert(std::size_t pos, const PackedDest& d) {
        fit(d);
        if (size_ == cap_) {
            reserve(std::max<std::size_t>(4, 2 * std::size_t{cap_}));
        }
        std::byte* p = data_.get() + pos * width();
        std::memmove(p + width(), p, (size_ - pos) * width());
        ++size_;
        put(pos, d);
    }
    void push_back(const PackedDest& d) { insert(size_, d); }
    template <class Pred>
    void eraseIf(Pred pred) {
        std::size_t out = 0;
        for (std::size_t i = 0; i < size_; ++i) {
            const PackedDest d = (*this)[i];
            if (!pred(d)) {
                put(out++, d);
            }
        }
        size_ = static_cast<std::uint32_t>(out);
    }
    // Room for n elements of the current width; never shrinks.
    void reserve(std::size_t n) {
        if (n <= cap_) {
            return;
        }
        if (n > kMaxSize) {
            throw std::length_error("DestList: too many real servers");
        }
        regrow(n, wide());
    }
    // Replaces the content with a range of PackedDest (already in key order), held exactly.
    // Built aside and then taken: a failed allocation leaves the list as it was.
    template <class It>
    void assign(It first, It last) {
        DestList l = withCapacity(static_cast<std::size_t>(std::distance(first, last)),
                                  DestCodec::anyWide(first, last));
        for (It it = first; it != last; ++it) {
            l.put(l.size_++, *it);
        }
        *this = std::move(l);
    }

  private:
    static constexpr std::size_t kMaxSize = (std::size_t{1} << 31) - 1;

    std::size_t width() const { return DestCodec::width(wide()); }
    // Widens the list before an element that a narrow one cannot hold goes in.
    void fit(const PackedDest& d) {
        if (!wide() && !DestCodec::narrowable(d)) {
            regrow(std::max<std::size_t>(cap_, 1), true);
        }
    }
    void regrow(std::size_t cap, bool wide) {
        const std::size_t w = DestCodec::width(wide);
        auto data = std::make_unique_for_overwrite<std::byte[]>(cap * w);
        if (wide == this->wide()) {
            if (size_ != 0) {
                std::memcpy(data.get(), data_.get(), size_ * w);
            }
        } else {
            for (std::size_t i = 0; i < size_; ++i) {
                DestCodec::encode(data.get() + i * w, wide, (*this)[i]);
            }
        }
        data_ = std::move(data);
        cap_ = static_cast<std::uint32_t>(cap);
        wide_ = wide ? 1 : 0;
    }
    void put(std::size_t i, const PackedDest& d) {
        DestCodec::encode(data_.get() + i * width(), wide(), d);
    }

    std::unique_ptr<std::byte[]> data_;
    std::uint32_t size_ = 0;
    std::uint32_t cap_ : 31 = 0;
    std::uint32_t wide_ : 1 = 0;  // each element a PackedDest, not a Narrow
};
static_assert(sizeof(DestList) == 16);

}  // namespace kipvs::proxy
