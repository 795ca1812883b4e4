#include "proxy/ownership.h"

namespace kipvs::proxy {

bool ownsVirtualServer(const ipvs::ServiceKey& key, const OwnershipView& view) {
    if (key.fwmark != 0) {
        return false;
    }
    const auto e = ipvs::SetEntry::ipPort(key.address, key.protocol, key.port);
    for (auto id :
         {SetId::ClusterIp, SetId::ExternalIp, SetId::ExternalIpLocal, SetId::LoadBalancer}) {
        if (view.inSet(id, e)) {
            return true;
        }
    }
    if (view.bound(key.address)) {
        return true;
    }
    if (!view.nodeAddress(key.address)) {
        return false;
    }
    switch (key.protocol) {
        case ipvs::Protocol::TCP:
            return view.inSet(SetId::NodePortTcp, ipvs::SetEntry::portOnly(key.port));
        case ipvs::Protocol::UDP:
            return view.inSet(SetId::NodePortUdp, ipvs::SetEntry::portOnly(key.port));
        case ipvs::Protocol::SCTP:
            return view.inSet(SetId::NodePortSctp,
                              ipvs::SetEntry::ipPort(key.address, ipvs::Protocol::SCTP, key.port));
    }
    return false;
}

}  // namespace kipvs::proxy
