#include "proxy/desired.h"

#include <algorithm>
#include <set>

#include "ipvs/names.h"

namespace kipvs::proxy {

using ipvs::Protocol;
using ipvs::SetEntry;
using ipvs::SetType;

const std::array<SetDef, kSetCount>& setDefs() {
    namespace n = names;
    static const std::array<SetDef, kSetCount> defs = {{
        {SetId::LoopBack, n::kSetLoopBack, SetType::HashIpPortIp},
        {SetId::ClusterIp, n::kSetClusterIp, SetType::HashIpPort},
        {SetId::ExternalIp, n::kSetExternalIp, SetType::HashIpPort},
        {SetId::ExternalIpLocal, n::kSetExternalIpLocal, SetType::HashIpPort},
        {SetId::LoadBalancer, n::kSetLoadBalancer, SetType::HashIpPort},
        {SetId::LoadBalancerLocal, n::kSetLoadBalancerLocal, SetType::HashIpPort},
        {SetId::LoadBalancerFw, n::kSetLoadBalancerFw, SetType::HashIpPort},
        {SetId::LoadBalancerSourceCidr, n::kSetLoadBalancerSourceCidr, SetType::HashIpPortNet},
        {SetId::LoadBalancerSourceIp, n::kSetLoadBalancerSourceIp, SetType::HashIpPortIp},
        {SetId::NodePortTcp, n::kSetNodePortTcp, SetType::BitmapPort},
        {SetId::NodePortLocalTcp, n::kSetNodePortLocalTcp, SetType::BitmapPort},
        {SetId::NodePortUdp, n::kSetNodePortUdp, SetType::BitmapPort},
        {SetId::NodePortLocalUdp, n::kSetNodePortLocalUdp, SetType::BitmapPort},
        {SetId::NodePortSctp, n::kSetNodePortSctp, SetType::HashIpPort},
        {SetId::NodePortLocalSctp, n::kSetNodePortLocalSctp, SetType::HashIpPort},
        {SetId::HealthCheckNodePort, n::kSetHealthCheckNodePort, SetType::BitmapPort},
        {SetId::IpvsIps, n::kSetIpvsIps, SetType::HashIp},
    }};
    return defs;
}

const net::IpAddress* clusterIpOf(const k8s::Service& svc, net::Family f) {
    for (const auto& ip : svc.clusterIPs) {
        if (ip.family() == f) {
            return &ip;
        }
    }
    return nullptr;
}

namespace {

template <class T>
void sortUnique(std::vector<T>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
}

bool isLocalAddress(const NodeContext& node, const net::IpAddress& ip) {
    return std::binary_search(node.localAddresses.begin(), node.localAddresses.end(), ip);
}

std::vector<ipvs::RealServer> toDests(const std::vector<EndpointInfo>& eps) {
    std::vector<ipvs::RealServer> out;
    out.reserve(eps.size());
    for (const auto& e : eps) {
        ipvs::RealServer rs;
        rs.key = e.destKey();
        rs.forwarding = ipvs::Forwarding::Masq;
        rs.weight = 1;
        out.push_back(rs);
    }
    // Endpoints are sorted by key already; keep the invariant explicit for the diff.
    std::sort(out.begin(), out.end(),
              [](const ipvs::RealServer& a, const ipvs::RealServer& b) { return a.key < b.key; });
    return out;
}

}  // namespace

ServiceDesired computeDesired(const k8s::Service& svc, const MergedEndpoints& eps,
                              const NodeContext& node, const DesiredConfig& cfg) {
    ServiceDesired d;
    const net::Family fam = cfg.family;
    const net::IpAddress* cip = clusterIpOf(svc, fam);
    if (svc.headless || svc.type == k8s::ServiceType::ExternalName || svc.otherProxy ||
        cip == nullptr) {
        return d;
    }
    d.skipped = false;

    std::vector<net::IpAddress> externalIPs;
    for (const auto& ip : svc.externalIPs) {
        if (ip.family() == fam) {
            externalIPs.push_back(ip);
        }
    }
    std::vector<net::IpAddress> lbIPs;
    for (const auto& ing : svc.loadBalancerIngress) {
        if (ing.ip.family() == fam && !ing.proxyMode) {
            lbIPs.push_back(ing.ip);
        }
    }
    std::vector<net::Cidr> sourceRanges;
    bool allowAll = false;
    for (const auto& c : svc.loadBalancerSourceRanges) {
        if (c.family() == fam) {
            sourceRanges.push_back(c);
            allowAll = allowAll || c.prefix() == 0;
        }
    }
    if (allowAll) {
        // 0.0.0.0/0 (or ::/0) admits every source: no firewall. The kernel refuses a /0 in a
        // hash:ip,port,net set, so programming it would leave the firewall with no range that
        // admits anything (kube-proxy skips such ranges too, kubernetes PR #132722).
        sourceRanges.clear();
    }
    // eTP applies to externally accessible Services: NodePort, LoadBalancer, and ClusterIP
    // with externalIPs (ExternalPolicyLocal in kubernetes' pkg/api/v1/service).
    const bool externallyAccessibleType =
        svc.type == k8s::ServiceType::NodePort || svc.type == k8s::ServiceType::LoadBalancer ||
        (svc.type == k8s::ServiceType::ClusterIP && !svc.externalIPs.empty());
    const bool externalLocal =
        externallyAccessibleType && svc.externalTrafficPolicy == k8s::TrafficPolicy::Local;
    const bool internalLocal = svc.internalTrafficPolicy == k8s::TrafficPolicy::Local;
    bool anyNodePort = false;
    for (const auto& p : svc.ports) {
        anyNodePort = anyNodePort || p.nodePort != 0;
    }
    const bool externallyAccessible = anyNodePort || !lbIPs.empty() || !externalIPs.empty();
    const bool usesCluster = !internalLocal || externallyAccessible;
    const bool usesLocal = internalLocal || (externalLocal && externallyAccessible);

    ipvs::VirtualServer base;
    base.scheduler = cfg.scheduler;
    base.netmask = fam == net::Family::V4 ? 0xffffffffu : 128u;
    if (svc.sessionAffinityClientIP) {
        base.flags |= ipvs::kSvcFlagPersistent;
        base.timeout = svc.sessionAffinityTimeout;
    }
    if (cfg.scheduler.view() == "mh") {
        base.flags |= ipvs::kSvcFlagSched2;  // mh-port, as kube-proxy sets it
    }

    const Topology topo{node.nodeName, node.zone};
    // The health check counts this node's ready endpoints under every port the slices list,
    // the Service's or not, as kube-proxy's LocalReadyEndpoints does.
    std::set<net::IpAddress> localReady;
    for (const auto& [portKey, portEps] : eps) {
        for (const auto& e : portEps) {
            if (e.local && e.ready) {
                localReady.insert(e.ip);
            }
        }
    }
    // Some port has endpoints, none of them here (kube-proxy counts the Service then).
    bool someNoLocal = false;
    static const std::vector<EndpointInfo> kNone;

    for (const auto& port : svc.ports) {
        auto it = eps.find(PortKey{port.name, port.protocol});
        const auto& portEps = it == eps.end() ? kNone : it->second;
        const auto cat = categorize(portEps, usesCluster, usesLocal, topo);
        someNoLocal = someNoLocal || (cat.hasAny && cat.local.empty());
        // eTP=Local with no local endpoint: every endpoint, as kube-proxy does (PR #97081).
        // Clients on this node (its pods, the node itself) are then served, as in every
        // upstream mode: replies come back through this node. Clients elsewhere are steered
        // away by the health-check port's 503, and if they come anyway the reply bypasses
        // this node (no SNAT, to keep their source), so they fail, as in kube-proxy's IPVS
        // mode (iptables mode drops them). iTP=Local with no local endpoint gets no real
        // server, as the API documents and iptables mode does; kube-proxy's IPVS mode falls
        // back there too when the Service is externally reachable (README, "Where kube-ipvs
        // deliberately differs").
        const auto clusterDests = toDests(cat.cluster);
        const auto localDests = toDests(cat.local);
        const auto& internalDests = internalLocal ? localDests : clusterDests;
        const auto& externalDests =
            externalLocal && !localDests.empty() ? localDests : clusterDests;

        auto addVs = [&](const net::IpAddress& ip, std::uint16_t vport,
                         const std::vector<ipvs::RealServer>& dests) {
            DesiredVs v;
            v.vs = base;
            v.vs.key.address = ip;
            v.vs.key.port = vport;
            v.vs.key.protocol = port.protocol;
            v.dests = dests;
            d.vss.push_back(std::move(v));
        };
        auto entry = [&](SetId set, SetEntry e) { d.entries.push_back({set, e}); };

        // ClusterIP.
        addVs(*cip, port.port, internalDests);
        d.bind.push_back(*cip);
        entry(SetId::ClusterIp, SetEntry::ipPort(*cip, port.protocol, port.port));

        // Hairpin: every local endpoint may reach itself through the Service.
        for (const auto& e : portEps) {
            if (e.local) {
                entry(SetId::LoopBack, SetEntry::ipPortIp(e.ip, port.protocol, e.port, e.ip));
            }
        }

        // External IPs.
        for (const auto& ip : externalIPs) {
            addVs(ip, port.port, externalDests);
            entry(externalLocal ? SetId::ExternalIpLocal : SetId::ExternalIp,
                  SetEntry::ipPort(ip, port.protocol, port.port));
            if (!isLocalAddress(node, ip)) {
                d.bind.push_back(ip);
            }
        }

        // LoadBalancer ingress IPs.
        for (const auto& ip : lbIPs) {
            addVs(ip, port.port, externalDests);
            const auto e = SetEntry::ipPort(ip, port.protocol, port.port);
            entry(SetId::LoadBalancer, e);
            if (externalLocal) {
                entry(SetId::LoadBalancerLocal, e);
            }
            if (!sourceRanges.empty()) {
                entry(SetId::LoadBalancerFw, e);
                bool nodeAllowed = false;
                for (const auto& r : sourceRanges) {
                    entry(SetId::LoadBalancerSourceCidr,
                          SetEntry::ipPortNet(ip, port.protocol, port.port, r));
                    nodeAllowed = nodeAllowed || (node.hasNodeIp && r.contains(node.nodeIp));
                }
                if (nodeAllowed) {
                    // Node-originated packets to a bound LB IP carry the LB IP as source.
                    entry(SetId::LoadBalancerSourceIp,
                          SetEntry::ipPortIp(ip, port.protocol, port.port, ip));
                } else {
                    d.noNodeAccess.push_back({ip, port.protocol, port.port});
                }
            }
            if (!isLocalAddress(node, ip)) {
                d.bind.push_back(ip);
            }
        }

        // NodePort: one virtual server per node IP; never bound.
        if (port.nodePort != 0 && !node.nodePortIps.empty()) {
            for (const auto& ip : node.nodePortIps) {
                addVs(ip, port.nodePort, externalDests);
            }
            switch (port.protocol) {
                case Protocol::TCP:
                    entry(SetId::NodePortTcp, SetEntry::portOnly(port.nodePort));
                    if (externalLocal) {
                        entry(SetId::NodePortLocalTcp, SetEntry::portOnly(port.nodePort));
                    }
                    break;
                case Protocol::UDP:
                    entry(SetId::NodePortUdp, SetEntry::portOnly(port.nodePort));
                    if (externalLocal) {
                        entry(SetId::NodePortLocalUdp, SetEntry::portOnly(port.nodePort));
                    }
                    break;
                case Protocol::SCTP:
                    for (const auto& ip : node.nodePortIps) {
                        const auto e = SetEntry::ipPort(ip, Protocol::SCTP, port.nodePort);
                        entry(SetId::NodePortSctp, e);
                        if (externalLocal) {
                            entry(SetId::NodePortLocalSctp, e);
                        }
                    }
                    break;
            }
        }

        if (port.protocol == Protocol::UDP) {
            UdpServing u;
            u.frontends.push_back({*cip, port.port});
            for (const auto& ip : externalIPs) {
                u.frontends.push_back({ip, port.port});
            }
            for (const auto& ip : lbIPs) {
                u.frontends.push_back({ip, port.port});
            }
            u.nodePort = node.nodePortIps.empty() ? 0 : port.nodePort;
            for (const auto& e : portEps) {
                if (e.serving) {
                    u.serving.push_back(e.destKey());
                }
            }
            d.udp.push_back(std::move(u));
        }
    }

    if (svc.type == k8s::ServiceType::LoadBalancer && externalLocal &&
        svc.healthCheckNodePort != 0) {
        d.healthCheckNodePort = svc.healthCheckNodePort;
        d.entries.push_back(
            {SetId::HealthCheckNodePort, SetEntry::portOnly(svc.healthCheckNodePort)});
    }
    d.localReadyIps = static_cast<std::uint32_t>(localReady.size());
    d.noLocalInternal = internalLocal && someNoLocal;
    d.noLocalExternal = externalLocal && externallyAccessible && someNoLocal;

    sortUnique(d.bind);
    sortUnique(d.entries);
    sortUnique(d.noNodeAccess);
    return d;
}

}  // namespace kipvs::proxy
