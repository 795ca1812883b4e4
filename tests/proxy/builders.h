// Compact builders for decoded API objects in reconciler tests.
#pragma once

#include <string>
#include <vector>

#include "ipvs/net.h"
#include "k8s-client/objects.h"

namespace kipvs::testing {

inline net::IpAddress ip(const char* s) {
    return *net::IpAddress::parse(s);
}
inline net::Cidr cidr(const char* s) {
    return *net::Cidr::parse(s);
}

struct ServiceBuilder {
    k8s::Service s;
    ServiceBuilder(const char* ns, const char* name, const char* clusterIp) {
        s.key = {ns, name};
        if (clusterIp != nullptr) {
            s.clusterIPs.push_back(ip(clusterIp));
        }
    }
    ServiceBuilder& port(const char* name, std::uint16_t port,
                         ipvs::Protocol p = ipvs::Protocol::TCP, std::uint16_t nodePort = 0) {
        s.ports.push_back({name, p, port, nodePort});
        return *this;
    }
    ServiceBuilder& type(k8s::ServiceType t) {
        s.type = t;
        return *this;
    }
    ServiceBuilder& externalIp(const char* a) {
        s.externalIPs.push_back(ip(a));
        return *this;
    }
    ServiceBuilder& lb(const char* a, bool proxyMode = false) {
        s.type = k8s::ServiceType::LoadBalancer;
        s.loadBalancerIngress.push_back({ip(a), proxyMode});
        return *this;
    }
    ServiceBuilder& sourceRange(const char* c) {
        s.loadBalancerSourceRanges.push_back(cidr(c));
        return *this;
    }
    ServiceBuilder& etpLocal(std::uint16_t hcPort = 0) {
        s.externalTrafficPolicy = k8s::TrafficPolicy::Local;
        s.healthCheckNodePort = hcPort;
        return *this;
    }
    ServiceBuilder& itpLocal() {
        s.internalTrafficPolicy = k8s::TrafficPolicy::Local;
        return *this;
    }
    ServiceBuilder& affinity(std::uint32_t timeout = 10800) {
        s.sessionAffinityClientIP = true;
        s.sessionAffinityTimeout = timeout;
        return *this;
    }
    ServiceBuilder& dual(const char* v6) {
        s.clusterIPs.push_back(ip(v6));
        return *this;
    }
    k8s::Service build() const { return s; }
    operator k8s::Service() const { return s; }  // NOLINT(google-explicit-constructor)
};

struct SliceBuilder {
    k8s::EndpointSlice s;
    SliceBuilder(const char* ns, const char* name, const char* service,
                 k8s::AddressType t = k8s::AddressType::IPv4) {
        s.key = {ns, name};
        s.serviceName = service;
        s.addressType = t;
    }
    SliceBuilder& port(const char* name, std::uint16_t port,
                       ipvs::Protocol p = ipvs::Protocol::TCP) {
        s.ports.push_back({name, p, port});
        return *this;
    }
    SliceBuilder& ep(const char* a, const char* node = nullptr, bool ready = true,
                     bool serving = true, bool terminating = false) {
        k8s::Endpoint e;
        e.address = ip(a);
        e.ready = ready;
        e.serving = serving;
        e.terminating = terminating;
        if (node != nullptr) {
            e.nodeName = k8s::Name::intern(node);
        }
        s.endpoints.push_back(e);
        return *this;
    }
    SliceBuilder& zoneHint(const char* zone) {
        k8s::Hints h;
        auto last = s.endpoints.back();
        if (last.hints != nullptr) {
            h = *last.hints;
        }
        h.forZones.push_back(k8s::Name::intern(zone));
        last.hints = k8s::internHints(h);
        s.endpoints.set(s.endpoints.size() - 1, last);
        return *this;
    }
    SliceBuilder& trigger(std::int64_t ns) {
        s.triggerTimeNs = ns;
        return *this;
    }
    k8s::EndpointSlice build() const { return s; }
    operator k8s::EndpointSlice() const { return s; }  // NOLINT(google-explicit-constructor)
};

inline k8s::Node node(const char* name, const char* internalIp, const char* zone = "") {
    k8s::Node n;
    n.name = name;
    n.zone = zone;
    if (internalIp != nullptr) {
        n.addresses.push_back({k8s::NodeAddressType::InternalIP, ip(internalIp)});
    }
    return n;
}

}  // namespace kipvs::testing
