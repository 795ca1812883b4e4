// --cleanup: remove what kube-ipvs (or kube-proxy in ipvs mode, which uses the same names)
// programmed. Unlike kube-proxy, which flushes the whole IPVS table, only our own virtual
// servers go (proxy/ownership.h), and those inside excludeCIDRs stay.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ipvs/addresses.h"
#include "ipvs/ipset.h"
#include "ipvs/iptables.h"
#include "ipvs/ipvs.h"

namespace kipvs::proxy {

struct CleanupTargets {
    ipvs::Ipvs& ipvs;
    ipvs::Addresses& addresses;
    ipvs::Ipset& ipset;
    ipvs::Iptables* iptables4 = nullptr;  // null: that family's iptables is unusable
    ipvs::Iptables* iptables6 = nullptr;
    std::vector<net::Cidr> excludeCidrs;
};

struct CleanupReport {
    int virtualServers = 0;
    int sets = 0;
    bool link = false;
    int chains = 0;
    std::vector<std::string> errors;  // "not found" is not an error
};

CleanupReport cleanup(CleanupTargets& t);

// The iptables-restore input that deletes our jump rules and chains, given iptables-save
// output of the nat and filter tables; empty when nothing of ours is there.
std::string cleanupPayload(std::string_view saveOutput);

}  // namespace kipvs::proxy
