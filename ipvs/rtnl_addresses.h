// Addresses over rtnetlink: kube-ipvs0, the VIPs on it (as addresses or as local routes), and
// the node's own addresses.
//
// Requests are packed many per sendmsg() and their acks read in bulk (ipvs/host_netlink.h),
// so binding 40,000 VIPs is a few hundred system calls, not 40,000 round trips. What remains
// is the kernel's own cost, and it differs between the two ways of making a VIP local
// (measured in the test guest, see the [.bench] cases of tests/ipvs/host_kernel_test.cpp):
//   - addresses: each IPv4 add or delete walks the link's address list, so n of them are
//     quadratic: 10,000 adds 3.1 s, 44,000 adds 133 s (deletes 2.8 s and 194 s). IPv6 is
//     quadratic too, its deletes worst of all: 10,000 adds 6 s, deletes 81 s.
//   - local routes (--ipvs-vip-binding=route): a route of type local in table local, scope
//     host, inserted in O(log n): 44,000 adds 2.7 s, deletes 2.4 s. It has the one effect of
//     an address that matters: the kernel delivers the VIP's packets locally, so IPVS's
//     LOCAL_IN hook sees them.
//
// What holds on the dummy link kube-ipvs0, which is always down:
//   - An IPv6 address is usable at once: the link is NOARP, so the kernel skips duplicate
//     address detection, the address is never "tentative", its local route appears in table
//     local and sockets can bind to it (we also set IFA_F_NODAD, so this holds on any link).
//   - An IPv6 route through a link that is down is refused ("Nexthop device is not up",
//     ENETDOWN). IPv6 local routes therefore go through the loopback link: pass "lo" as the
//     link to applyLocalRoutes() and localRoutes() (44,000 adds 1.2 s). The kernel then
//     delivers the VIP's packets locally just the same, but an IPv6 socket cannot bind() to
//     the VIP (IPv6 bind checks addresses, IPv4 bind checks local routes); IPVS needs only
//     the delivery.
//   - Removing the last IPv4 address of a link makes the kernel drop every IPv4 route through
//     it, ours included: after deleting addresses from kube-ipvs0 in route mode, compare
//     localRoutes() again.
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
    Result<std::vector<InterfaceAddress>> allAddresses(std::string_view except) override;

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
