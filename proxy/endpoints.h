// EndpointSlices of one Service merged into endpoints per Service port, and the choice of
// which endpoints a virtual server gets (kube-proxy-ipvs.md §2.3 and §3.3). Pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/net.h"
#include "ipvs/types.h"
#include "k8s-client/objects.h"

namespace kipvs::proxy {

struct EndpointInfo {
    net::IpAddress ip;
    std::uint16_t port = 0;
    bool ready = true;
    bool serving = true;
    bool terminating = false;
    bool local = false;  // nodeName is this node
    k8s::HintsRef hints;

    ipvs::DestKey destKey() const { return {ip, port}; }
    friend bool operator==(const EndpointInfo&, const EndpointInfo&) = default;
};

// A Service port as EndpointSlices name it: by name and protocol.
struct PortKey {
    std::string name;
    ipvs::Protocol protocol = ipvs::Protocol::TCP;
    friend auto operator<=>(const PortKey&, const PortKey&) = default;
    friend bool operator==(const PortKey&, const PortKey&) = default;
};

// Endpoints of one Service per port, de-duplicated by IP:port and sorted.
using MergedEndpoints = std::map<PortKey, std::vector<EndpointInfo>>;

// Merges the slices of one Service for one family. Slices of another address type (and FQDN
// slices) are ignored. Of the copies of a duplicate IP:port, one is kept: a non-terminating
// one over a terminating one (as kube-proxy), then a ready one, then a serving one; among equals
// the first, in the order of `slices`. So the result does not depend on the order in which the
// slices arrived, and a not-ready copy never hides a ready one.
MergedEndpoints mergeSlices(const std::vector<const k8s::EndpointSlice*>& slices,
                            net::Family family, std::string_view nodeName);

struct Topology {
    std::string_view nodeName;
    std::string_view zone;  // the Node's topology.kubernetes.io/zone label
};

struct Categorized {
    std::vector<EndpointInfo> cluster;  // only filled when the Service uses cluster endpoints
    std::vector<EndpointInfo> local;    // only filled when it uses local endpoints
    bool hasAny = false;                // some endpoint is ready, or serving and terminating
};

// kube-proxy's CategorizeEndpoints: topology hints (same node, then same zone) when every
// ready endpoint carries them and one matches; ready endpoints, else serving-and-terminating
// ones.
Categorized categorize(const std::vector<EndpointInfo>& eps, bool usesCluster, bool usesLocal,
                       const Topology& topo);

}  // namespace kipvs::proxy
