#include "proxy/endpoints.h"

#include <algorithm>
#include <unordered_map>

namespace kipvs::proxy {

namespace {

// Which copy of a duplicate endpoint is kept (mergeSlices): higher wins.
int preference(const EndpointInfo& e) {
    return (e.terminating ? 0 : 4) + (e.ready ? 2 : 0) + (e.serving ? 1 : 0);
}

}  // namespace

MergedEndpoints mergeSlices(const std::vector<const k8s::EndpointSlice*>& slices,
                            net::Family family, std::string_view nodeName) {
    const auto wanted = family == net::Family::V4 ? k8s::AddressType::IPv4 : k8s::AddressType::IPv6;
    MergedEndpoints out;
    // Per port: IP:port -> index into out[port], for de-duplication across slices.
    std::map<PortKey, std::unordered_map<ipvs::DestKey, std::size_t>> seen;
    for (const auto* slice : slices) {
        if (slice->addressType != wanted) {
            continue;
        }
        for (const auto& p : slice->ports) {
            const PortKey key{p.name, p.protocol};
            auto& list = out[key];
            auto& index = seen[key];
            for (const auto& e : slice->endpoints) {
                if (e.address.family() != family) {
                    continue;
                }
                EndpointInfo info;
                info.ip = e.address;
                info.port = p.port;
                info.ready = e.ready;
                info.serving = e.serving;
                info.terminating = e.terminating;
                info.local = !e.nodeName.empty() && e.nodeName.view() == nodeName;
                info.hints = e.hints;
                auto [it, inserted] = index.try_emplace(info.destKey(), list.size());
                if (inserted) {
                    list.push_back(info);
                } else if (preference(info) > preference(list[it->second])) {
                    list[it->second] = info;
                }
            }
        }
    }
    for (auto& [key, list] : out) {
        std::sort(list.begin(), list.end(), [](const EndpointInfo& a, const EndpointInfo& b) {
            return a.destKey() < b.destKey();
        });
    }
    return out;
}

namespace {

enum class TopologyMode { None, SameNode, SameZone };

bool hintedFor(const std::vector<k8s::Name>& names, std::string_view want) {
    return std::any_of(names.begin(), names.end(), [&](k8s::Name n) { return n.view() == want; });
}

TopologyMode topologyMode(const std::vector<EndpointInfo>& eps, const Topology& topo) {
    bool allNode = true;
    bool allZone = true;
    bool anyNode = false;
    bool anyZone = false;
    bool anyReady = false;
    for (const auto& e : eps) {
        if (!e.ready) {
            continue;
        }
        anyReady = true;
        if (e.hints == nullptr || e.hints->forNodes.empty()) {
            allNode = false;
        } else if (hintedFor(e.hints->forNodes, topo.nodeName)) {
            anyNode = true;
        }
        if (e.hints == nullptr || e.hints->forZones.empty()) {
            allZone = false;
        } else if (!topo.zone.empty() && hintedFor(e.hints->forZones, topo.zone)) {
            anyZone = true;
        }
    }
    if (!anyReady) {
        return TopologyMode::None;
    }
    if (allNode && anyNode) {
        return TopologyMode::SameNode;
    }
    if (allZone && anyZone) {
        return TopologyMode::SameZone;
    }
    return TopologyMode::None;
}

bool allowed(const EndpointInfo& e, TopologyMode mode, const Topology& topo) {
    switch (mode) {
        case TopologyMode::None:
            return true;
        case TopologyMode::SameNode:
            return hintedFor(e.hints->forNodes, topo.nodeName);
        case TopologyMode::SameZone:
            return hintedFor(e.hints->forZones, topo.zone);
    }
    return true;
}

}  // namespace

Categorized categorize(const std::vector<EndpointInfo>& eps, bool usesCluster, bool usesLocal,
                       const Topology& topo) {
    Categorized c;
    for (const auto& e : eps) {
        if (e.ready || (e.serving && e.terminating)) {
            c.hasAny = true;
            break;
        }
    }
    if (usesCluster) {
        const auto mode = topologyMode(eps, topo);
        for (const auto& e : eps) {
            if (e.ready && allowed(e, mode, topo)) {
                c.cluster.push_back(e);
            }
        }
        if (c.cluster.empty()) {
            for (const auto& e : eps) {
                if (e.serving && e.terminating) {
                    c.cluster.push_back(e);
                }
            }
        }
    }
    if (usesLocal) {
        for (const auto& e : eps) {
            if (e.local && e.ready) {
                c.local.push_back(e);
            }
        }
        if (c.local.empty()) {
            for (const auto& e : eps) {
                if (e.local && e.serving && e.terminating) {
                    c.local.push_back(e);
                }
            }
        }
    }
    return c;
}

}  // namespace kipvs::proxy
