// A real server as the reconciler keeps it: in 24 bytes, where ipvs::RealServer takes 36
// (40 with the draining flag). The known IPVS table and a verification's snapshot each hold
// one per endpoint of every Service: 440,000 at 44,000 Services x 10 endpoints.
//
// The connection thresholds are kept as one bit, "some threshold is not 0": kube-ipvs never
// sets them, so the only thing it does about them is set them back to 0, and for that (and
// for noticing that someone set them) whether they are 0 is all it needs.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "ipvs/types.h"

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

  private:
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

}  // namespace kipvs::proxy
