#include "ipvs/types.h"

#include <cstdio>
#include <cstring>

namespace kipvs::ipvs {

std::string_view protocolName(Protocol p) {
    switch (p) {
        case Protocol::TCP:
            return "TCP";
        case Protocol::UDP:
            return "UDP";
        case Protocol::SCTP:
            return "SCTP";
    }
    return "?";
}

std::string_view protocolLower(Protocol p) {
    switch (p) {
        case Protocol::TCP:
            return "tcp";
        case Protocol::UDP:
            return "udp";
        case Protocol::SCTP:
            return "sctp";
    }
    return "?";
}

std::optional<Protocol> parseProtocol(std::string_view s) {
    if (s == "TCP") {
        return Protocol::TCP;
    }
    if (s == "UDP") {
        return Protocol::UDP;
    }
    if (s == "SCTP") {
        return Protocol::SCTP;
    }
    return std::nullopt;
}

std::optional<ShortName> ShortName::make(std::string_view s) {
    ShortName n;
    if (s.size() >= n.buf_.size() || s.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    std::memcpy(n.buf_.data(), s.data(), s.size());
    return n;
}

std::string ServiceKey::toString() const {
    if (fwmark != 0) {
        return "FWM:" + std::to_string(fwmark) + "/" + std::string(net::familyName(family()));
    }
    return net::joinHostPort(address, port) + "/" + std::string(protocolName(protocol));
}

bool VirtualServer::sameContent(const VirtualServer& o) const {
    return scheduler == o.scheduler && (flags & ~kSvcFlagHashed) == (o.flags & ~kSvcFlagHashed) &&
           timeout == o.timeout && netmask == o.netmask && persistenceEngine == o.persistenceEngine;
}

std::string VirtualServer::toString() const {
    char buf[96];
    std::snprintf(buf, sizeof buf, " sched %s flags 0x%x timeout %u netmask 0x%x",
                  std::string(scheduler.view()).c_str(), flags & ~kSvcFlagHashed, timeout, netmask);
    return key.toString() + buf;
}

std::string_view forwardingName(Forwarding f) {
    switch (f) {
        case Forwarding::Masq:
            return "Masq";
        case Forwarding::Local:
            return "Local";
        case Forwarding::Tunnel:
            return "Tunnel";
        case Forwarding::Route:
            return "Route";
    }
    return "?";
}

std::string DestKey::toString() const {
    return net::joinHostPort(address, port);
}

bool RealServer::sameContent(const RealServer& o) const {
    return forwarding == o.forwarding && weight == o.weight && upperThreshold == o.upperThreshold &&
           lowerThreshold == o.lowerThreshold;
}

std::string describe(const ServiceKey& vs, const DestKey& rs) {
    return vs.toString() + " -> " + rs.toString();
}

std::string Info::versionString() const {
    return std::to_string(version >> 16) + "." + std::to_string((version >> 8) & 0xff) + "." +
           std::to_string(version & 0xff);
}

std::string_view opKindName(OpKind k) {
    switch (k) {
        case OpKind::AddService:
            return "add-service";
        case OpKind::UpdateService:
            return "update-service";
        case OpKind::DeleteService:
            return "delete-service";
        case OpKind::AddDest:
            return "add-dest";
        case OpKind::UpdateDest:
            return "update-dest";
        case OpKind::DeleteDest:
            return "delete-dest";
    }
    return "?";
}

std::string Op::toString() const {
    std::string s(opKindName(kind));
    s += ' ';
    switch (kind) {
        case OpKind::AddService:
        case OpKind::UpdateService:
        case OpKind::DeleteService:
            s += service.key.toString();
            break;
        case OpKind::AddDest:
        case OpKind::UpdateDest:
        case OpKind::DeleteDest:
            s += describe(service.key, dest.key);
            break;
    }
    return s;
}

}  // namespace kipvs::ipvs

std::size_t std::hash<kipvs::ipvs::ServiceKey>::operator()(
    const kipvs::ipvs::ServiceKey& k) const noexcept {
    std::size_t h = std::hash<kipvs::net::IpAddress>{}(k.address);
    h ^= (std::size_t{k.port} << 16 | static_cast<std::size_t>(k.protocol)) * 0x9e3779b97f4a7c15ULL;
    h ^= std::size_t{k.fwmark} * 0xc2b2ae3d27d4eb4fULL;
    return h;
}

std::size_t std::hash<kipvs::ipvs::DestKey>::operator()(
    const kipvs::ipvs::DestKey& k) const noexcept {
    return std::hash<kipvs::net::IpAddress>{}(k.address) ^
           (std::size_t{k.port} * 0x9e3779b97f4a7c15ULL);
}
