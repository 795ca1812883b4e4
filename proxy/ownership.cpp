#include "proxy/ownership.h"

#include <algorithm>

namespace kipvs::proxy {

std::vector<Marker> markersOf(const ipvs::ServiceKey& key) {
    std::vector<Marker> out;
    if (key.fwmark != 0) {
        return out;
    }
    const auto e = ipvs::SetEntry::ipPort(key.address, key.protocol, key.port);
    for (auto id :
         {SetId::ClusterIp, SetId::ExternalIp, SetId::ExternalIpLocal, SetId::LoadBalancer}) {
        out.push_back({id, e, false});
    }
    switch (key.protocol) {
        case ipvs::Protocol::TCP:
            out.push_back({SetId::NodePortTcp, ipvs::SetEntry::portOnly(key.port), true});
            break;
        case ipvs::Protocol::UDP:
            out.push_back({SetId::NodePortUdp, ipvs::SetEntry::portOnly(key.port), true});
            break;
        case ipvs::Protocol::SCTP:
            out.push_back({SetId::NodePortSctp,
                           ipvs::SetEntry::ipPort(key.address, ipvs::Protocol::SCTP, key.port),
                           true});
            break;
    }
    return out;
}

bool ownsVirtualServer(const ipvs::ServiceKey& key, const OwnershipView& view) {
    if (key.fwmark != 0) {
        return false;
    }
    const auto markers = markersOf(key);
    for (const auto& m : markers) {
        if (!m.nodePort && view.inSet(m.set, m.entry)) {
            return true;
        }
    }
    if (view.bound(key.address)) {
        return true;
    }
    if (!view.nodeAddress(key.address)) {
        return false;
    }
    return std::any_of(markers.begin(), markers.end(),
                       [&](const Marker& m) { return m.nodePort && view.inSet(m.set, m.entry); });
}

}  // namespace kipvs::proxy
