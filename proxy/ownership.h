// Which virtual servers are kube-ipvs' own (proxy/proxier.h explains why this works across
// crashes): the rule is shared by the reconciler and by --cleanup.
#pragma once

#include <functional>
#include <vector>

#include "ipvs/ipset.h"
#include "ipvs/net.h"
#include "ipvs/types.h"
#include "proxy/desired.h"

namespace kipvs::proxy {

struct OwnershipView {
    // Is `e` a member of our set `set` (of the virtual server's family)?
    std::function<bool(SetId set, const ipvs::SetEntry& e)> inSet;
    // Is the address bound on (or routed locally through) kube-ipvs0?
    std::function<bool(const net::IpAddress&)> bound;
    // Is the address one of the node's own (not kube-ipvs0's)?
    std::function<bool(const net::IpAddress&)> nodeAddress;
};

// Ours: its (ip, protocol, port) is in KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP(-LOCAL) or
// KUBE-LOAD-BALANCER; or its address is on kube-ipvs0; or it is a NodePort: a node address
// with the port in KUBE-NODE-PORT-TCP/UDP (or ip,sctp:port in KUBE-NODE-PORT-SCTP-HASH).
// Firewall-mark services are never ours.
bool ownsVirtualServer(const ipvs::ServiceKey& key, const OwnershipView& view);

// The set members that mark `key` as ours, by the rule above; a NodePort one counts only on a
// node address. None for a firewall-mark service.
struct Marker {
    SetId set;
    ipvs::SetEntry entry;
    bool nodePort = false;
};
std::vector<Marker> markersOf(const ipvs::ServiceKey& key);

}  // namespace kipvs::proxy
