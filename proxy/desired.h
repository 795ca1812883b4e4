// From one Service (plus its merged endpoints and what we know of the node) to the kernel
// objects it needs in one IP family: virtual servers with their real servers, addresses to
// bind on kube-ipvs0, ipset members, and its health-check port (kube-proxy-ipvs.md §3-§4).
//
// Pure: no kernel, no clock. The reconciler calls it for each Service that changed.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/ipset.h"
#include "ipvs/iptables.h"
#include "ipvs/net.h"
#include "ipvs/types.h"
#include "k8s-client/objects.h"
#include "proxy/endpoints.h"

namespace kipvs::proxy {

// The sets of reference §4, in creation order.
enum class SetId : std::uint8_t {
    LoopBack,
    ClusterIp,
    ExternalIp,
    ExternalIpLocal,
    LoadBalancer,
    LoadBalancerLocal,
    LoadBalancerFw,
    LoadBalancerSourceCidr,
    LoadBalancerSourceIp,
    NodePortTcp,
    NodePortLocalTcp,
    NodePortUdp,
    NodePortLocalUdp,
    NodePortSctp,
    NodePortLocalSctp,
    HealthCheckNodePort,
    IpvsIps,
};
inline constexpr std::size_t kSetCount = 17;

struct SetDef {
    SetId id;
    std::string_view base;  // IPv4 name; names::setName gives the family's
    ipvs::SetType type;
};
const std::array<SetDef, kSetCount>& setDefs();
inline const SetDef& setDef(SetId id) {
    return setDefs()[static_cast<std::size_t>(id)];
}

struct DesiredVs {
    ipvs::VirtualServer vs;
    std::vector<ipvs::RealServer> dests;  // sorted by key
    friend bool operator==(const DesiredVs&, const DesiredVs&) = default;
};

struct DesiredEntry {
    SetId set;
    ipvs::SetEntry entry;
    friend auto operator<=>(const DesiredEntry&, const DesiredEntry&) = default;
    friend bool operator==(const DesiredEntry&, const DesiredEntry&) = default;
};

// What UDP conntrack clean-up needs about one UDP Service port (reference §7.2).
struct UdpServing {
    std::vector<ipvs::DestKey> frontends;  // clusterIP:port, LB and external IP:port
    std::uint16_t nodePort = 0;            // 0 when none
    std::vector<ipvs::DestKey> serving;    // serving endpoints, IP:port
    friend bool operator==(const UdpServing&, const UdpServing&) = default;
};

struct ServiceDesired {
    std::vector<DesiredVs> vss;
    std::vector<net::IpAddress> bind;   // sorted, unique
    std::vector<DesiredEntry> entries;  // sorted, unique; KUBE-IPVS-IPS is derived from bind
    std::vector<ipvs::NoNodeAccess> noNodeAccess;  // sorted, unique
    std::uint16_t healthCheckNodePort = 0;
    // Distinct IPs of this node's ready endpoints, over all ports (the health-check count).
    std::uint32_t localReadyIps = 0;
    bool noLocalInternal = false;  // iTP=Local; a port has endpoints, none of them local
    bool noLocalExternal = false;  // eTP=Local, externally reachable; the same
    std::vector<UdpServing> udp;
    bool skipped = true;  // headless, ExternalName, other proxy, or no clusterIP of the family
    friend bool operator==(const ServiceDesired&, const ServiceDesired&) = default;
};

struct NodeContext {
    std::string nodeName;
    std::string zone;
    // Node IPs that NodePorts answer on in this family (nodePortAddresses applied).
    std::vector<net::IpAddress> nodePortIps;
    // Every address of this family on the node's interfaces other than kube-ipvs0: external
    // and LB IPs already local there are not bound again.
    std::vector<net::IpAddress> localAddresses;  // sorted
    // The node's IP in this family (status.addresses or bindAddress), for the LB source-range
    // check of node-originated traffic.
    net::IpAddress nodeIp;
    bool hasNodeIp = false;
};

struct DesiredConfig {
    net::Family family = net::Family::V4;
    ipvs::ShortName scheduler;  // "rr" unless configured
};

ServiceDesired computeDesired(const k8s::Service& svc, const MergedEndpoints& eps,
                              const NodeContext& node, const DesiredConfig& cfg);

// The family's cluster IP of a Service (kube-proxy-ipvs.md §2.2), if any.
const net::IpAddress* clusterIpOf(const k8s::Service& svc, net::Family f);

}  // namespace kipvs::proxy
