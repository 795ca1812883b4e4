// Connection tracking clean-up (reference §7.2), through libnetfilter_conntrack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "ipvs/error.h"
#include "ipvs/net.h"
#include "ipvs/types.h"

namespace kipvs::ipvs {

struct ConntrackTuple {
    net::IpAddress src;
    net::IpAddress dst;
    std::uint16_t srcPort = 0;
    std::uint16_t dstPort = 0;
};

struct ConntrackEntry {
    Protocol protocol = Protocol::UDP;
    ConntrackTuple original;
    ConntrackTuple reply;
};

class Conntrack {
  public:
    virtual ~Conntrack() = default;
    // Dumps the entries of one family and protocol and deletes those `match` accepts. Returns
    // how many were deleted. An entry that vanished before its delete is not an error.
    virtual Result<std::size_t> deleteMatching(
        net::Family family, Protocol protocol,
        const std::function<bool(const ConntrackEntry&)>& match) = 0;
};

}  // namespace kipvs::ipvs
