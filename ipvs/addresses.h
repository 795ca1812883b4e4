// Links and addresses (rtnetlink): the dummy interface kube-ipvs0 and the addresses on it,
// and the node's own addresses on every other interface.
//
// The real implementation (RtnlAddresses, ipvs/rtnl_addresses.h) uses libnl-route-3; unit
// tests use a stateful fake (tests/fakes).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/net.h"

namespace kipvs::ipvs {

struct InterfaceAddress {
    std::string interface;
    net::IpAddress address;
    std::uint8_t prefix = 0;
    friend bool operator==(const InterfaceAddress&, const InterfaceAddress&) = default;
};

enum class AddressOpKind : std::uint8_t { Add, Delete };

struct AddressOp {
    AddressOpKind kind = AddressOpKind::Add;
    net::IpAddress address;  // bound as /32 or /128
};

class Addresses {
  public:
    virtual ~Addresses() = default;

    // Creates `name` as a dummy link if it does not exist, and leaves it down (kube-proxy
    // never sets kube-ipvs0 up; the local routes that come with its addresses are all that is
    // needed). Returns true if it had to be created. An existing link of another type is an
    // error.
    virtual Result<bool> ensureDummy(const std::string& name) = 0;
    // Whether the link exists.
    virtual Result<bool> linkExists(const std::string& name) = 0;
    // Deletes the link; a missing link is not an error. Only for --cleanup.
    virtual Result<void> deleteLink(const std::string& name) = 0;

    // Addresses on `name`, both families, excluding IPv6 link-local ones (the kernel may add
    // those by itself and they are never ours).
    virtual Result<std::vector<net::IpAddress>> addresses(const std::string& name) = 0;
    // Adds and removes /32 and /128 addresses on `name`, batched. Adding a present address
    // and removing an absent one succeed. One result per op, in order.
    virtual std::vector<Result<void>> apply(const std::string& name,
                                            std::span<const AddressOp> ops) = 0;

    // Every address on every interface but `except` (none left out if it is empty): the
    // node's addresses, both families, each with its interface. Callers leave out kube-ipvs0
    // here, where 44,000 VIPs would take 3.5 MB, and filter loopback and link-local as they
    // need.
    virtual Result<std::vector<InterfaceAddress>> allAddresses(std::string_view except) = 0;

    // The alternative to addresses (--ipvs-vip-binding=route): a host-scope route of type
    // local in table local, one per VIP, through `name`. It makes the VIP local exactly as an
    // address does (the address's only effect that matters is that very route), but the
    // kernel inserts routes in O(log n) while it walks the interface's whole address list on
    // every IPv4 address add, which is quadratic at tens of thousands of Services.
    // The routes carry their own rtm_protocol value so they are recognisable as ours.
    virtual Result<std::vector<net::IpAddress>> localRoutes(const std::string& name) = 0;
    virtual std::vector<Result<void>> applyLocalRoutes(const std::string& name,
                                                       std::span<const AddressOp> ops) = 0;
};

}  // namespace kipvs::ipvs
