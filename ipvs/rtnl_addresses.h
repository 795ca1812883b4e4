// Addresses over rtnetlink: kube-ipvs0, the VIPs on it (as addresses or as local routes), and
// the node's own addresses.
//
// Requests are packed many per sendmsg() and their acks read in bulk (ipvs/host_netlink.h),
// so binding 40,000 VIPs is a few hundred system calls, not 40,000 round trips. What remains
// is the kernel's own cost, and it differs between the two ways of making a VIP local:
//   - addresses: every IPv4 address add walks the interface's address list, so n adds cost
//     O(n^2) in the kernel (measured in the guest: 4,400 addresses 2.1 s, 44,000 addresses
//     107 s with `ip -batch`);
//   - local routes (--ipvs-vip-binding=route): a route of type local in table local, scope
//     host, through kube-ipvs0, inserted in O(log n). It has the one effect of an address
//     that matters (the kernel treats the VIP as local, so IPVS's LOCAL_IN hook sees the
//     traffic and sockets may bind to it).
//
// IPv6 differs on a dummy link that is down, as kube-ipvs0 always is:
//   - an IPv6 address is usable at once: the link is NOARP, so the kernel skips duplicate
//     address detection, the address is never "tentative", and its local route appears in
//     table local as for IPv4 (we also set IFA_F_NODAD so that holds on any link);
//   - an IPv6 route through a link that is down is refused ("Nexthop device is not up",
//     ENETDOWN), so the local-route mode works for IPv4 only. IPv6 address adds do not walk
//     the address list the way IPv4 ones do, so addresses are the mode for IPv6.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ipvs/addresses.h"
#include "ipvs/host_netlink.h"

namespace kipvs::ipvs {

// rtm_protocol of the local routes we install, so that they are told apart from the kernel's
// own (proto kernel, 2) local routes and from anyone else's. Not in /etc/iproute2/rt_protos or
// the kernel's RTPROT_* list; `ip route` shows it as "proto 75" (75 = 'K').
inline constexpr std::uint8_t kLocalRouteProtocol = 75;

class RtnlAddresses final : public Addresses {
  public:
    static Result<std::unique_ptr<RtnlAddresses>> open();

    Result<bool> ensureDummy(const std::string& name) override;
    Result<bool> linkExists(const std::string& name) override;
    Result<void> deleteLink(const std::string& name) override;

    Result<std::vector<net::IpAddress>> addresses(const std::string& name) override;
    std::vector<Result<void>> apply(const std::string& name,
                                    std::span<const AddressOp> ops) override;
    Result<std::vector<InterfaceAddress>> allAddresses() override;

    Result<std::vector<net::IpAddress>> localRoutes(const std::string& name) override;
    std::vector<Result<void>> applyLocalRoutes(const std::string& name,
                                               std::span<const AddressOp> ops) override;

  private:
    explicit RtnlAddresses(hostnl::Socket sock) : sock_(std::move(sock)) {}

    struct Link {
        int index = 0;
        std::string kind;  // IFLA_INFO_KIND, "" for links without one (physical devices)
    };
    Result<std::optional<Link>> getLink(const std::string& name);
    Result<int> requireIndex(const std::string& name, const std::string& what);

    hostnl::Socket sock_;
};

}  // namespace kipvs::ipvs
