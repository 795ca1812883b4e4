// Set listings read straight from the kernel's ipset netlink dump.
//
// libipset can list a set only by printing it, and its printer looks each member's protocol
// up by number in /etc/protocols (getprotobynumber(), one open and parse of the file per
// member, and not thread-safe). At 10,000 Services x 10 endpoints a node's sets hold tens of
// thousands of ip,port members: reading them back for the periodic verification took minutes
// in the test guest. Here the dump's attributes are decoded directly into SetEntry values: no
// text, no lookups, O(members).
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/host_netlink.h"
#include "ipvs/ipset.h"

namespace kipvs::ipvs::ipsetnl {

// Appends the IPSET_CMD_LIST dump request for the set `name` to `b`.
void listRequest(hostnl::MessageBuffer& b, const std::string& name);

// Collects the members of one set from the dump's reply messages, in any number of parts.
class ListCollector {
  public:
    using Sink = std::function<void(const SetEntry&)>;
    // `what` names the operation in errors ("ipset list KUBE-CLUSTER-IP"); each member goes to
    // `sink` as it is decoded, and none is kept.
    ListCollector(std::string what, Sink sink) : what_(std::move(what)), sink_(std::move(sink)) {}
    // One reply message. A malformed one, a set type kube-ipvs does not use or a member it
    // cannot represent makes finish() fail; later messages are then ignored.
    void add(const nlmsghdr* msg);
    // How many members there were, or the first problem seen.
    Result<std::size_t> finish();

  private:
    void fail(std::string why);
    bool member(const nlattr* data);
    void emit(const SetEntry& e) {
        sink_(e);
        ++count_;
    }

    std::string what_;
    std::optional<SetType> type_;
    std::uint8_t family_ = 0;  // NFPROTO_IPV4 / NFPROTO_IPV6 (0 for bitmap:port)
    Sink sink_;
    std::size_t count_ = 0;
    std::optional<std::string> error_;
};

}  // namespace kipvs::ipvs::ipsetnl
