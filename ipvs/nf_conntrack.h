// Conntrack clean-up through libnetfilter_conntrack (reference §7.2).
//
// The dump and the deletes go over one ctnetlink socket; libnetfilter_conntrack decodes the
// dumped entries and encodes the deletes (nfct_nlmsg_parse / nfct_nlmsg_build), and the
// deletes are sent many per sendmsg() with their acks read in bulk (ipvs/host_netlink.h), so a
// CoreDNS roll-out that strands thousands of UDP flows costs a few system calls.
#pragma once

#include <memory>

#include "ipvs/conntrack.h"
#include "ipvs/host_netlink.h"

namespace kipvs::ipvs {

class NetfilterConntrack final : public Conntrack {
  public:
    static Result<std::unique_ptr<NetfilterConntrack>> open();

    // Dumps the family's entries (a dump cut short because the table changed under it, the
    // kernel's EINTR, is used as far as it got, as upstream does), keeps those of `protocol`
    // that `match` accepts, and deletes exactly those entries (by tuple, zone and conntrack
    // id, so that a new flow that reused the tuple meanwhile is left alone).
    Result<std::size_t> deleteMatching(
        net::Family family, Protocol protocol,
        const std::function<bool(const ConntrackEntry&)>& match) override;

  private:
    explicit NetfilterConntrack(hostnl::Socket sock) : sock_(std::move(sock)) {}
    hostnl::Socket sock_;
};

}  // namespace kipvs::ipvs
