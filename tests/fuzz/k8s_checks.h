// What every decoded API object must satisfy (objects.h: "values here are already valid"),
// and an encoder back to the API's JSON shape for round trips: whatever the decoder
// accepted, it must accept again from its own fields, with nothing dropped and nothing
// changed.
#pragma once

#include <boost/json.hpp>

#include <span>
#include <string>

#include "k8s-client/decode.h"
#include "k8s-client/objects.h"
#include "tests/fuzz/fuzz.h"

namespace kipvs::fuzz {

namespace json = boost::json;

inline void checkIp(const net::IpAddress& a) {
    const auto text = a.toString();
    const auto again = net::IpAddress::parse(text);
    FUZZ_CHECK_MSG(again && *again == a, text);
}

inline void checkCidr(const net::Cidr& c) {
    FUZZ_CHECK(c.prefix() <= c.base().size() * 8);
    checkIp(c.base());
    const auto again = net::Cidr::parse(c.toString(), false);
    FUZZ_CHECK_MSG(again && *again == c, c.toString());
}

inline void checkProtocol(ipvs::Protocol p) {
    FUZZ_CHECK(p == ipvs::Protocol::TCP || p == ipvs::Protocol::UDP || p == ipvs::Protocol::SCTP);
}

inline void checkObject(const k8s::Service& s) {
    FUZZ_CHECK(!s.key.name.empty() && !s.key.ns.empty());
    FUZZ_CHECK(s.clusterIPs.size() <= 2);
    if (s.clusterIPs.size() == 2) {
        FUZZ_CHECK(s.clusterIPs[0].family() != s.clusterIPs[1].family());
    }
    if (s.headless || s.type == k8s::ServiceType::ExternalName) {
        FUZZ_CHECK(s.clusterIPs.empty());
    }
    for (const auto& ip : s.clusterIPs) {
        checkIp(ip);
    }
    for (const auto& p : s.ports) {
        FUZZ_CHECK(p.port >= 1);
        checkProtocol(p.protocol);
    }
    for (const auto& ip : s.externalIPs) {
        checkIp(ip);
    }
    for (const auto& c : s.loadBalancerSourceRanges) {
        checkCidr(c);
    }
    for (const auto& in : s.loadBalancerIngress) {
        checkIp(in.ip);
    }
    FUZZ_CHECK(s.sessionAffinityTimeout >= 1 && s.sessionAffinityTimeout <= 86400);
}

inline void checkObject(const k8s::EndpointSlice& s) {
    FUZZ_CHECK(!s.key.name.empty() && !s.key.ns.empty());
    FUZZ_CHECK(!s.serviceName.empty());
    for (const auto& p : s.ports) {
        FUZZ_CHECK(p.port >= 1);
        checkProtocol(p.protocol);
    }
    if (s.addressType == k8s::AddressType::FQDN) {
        FUZZ_CHECK(s.endpoints.empty());
    }
    const auto family = s.addressType == k8s::AddressType::IPv6 ? net::Family::V6 : net::Family::V4;
    for (const auto& e : s.endpoints) {
        FUZZ_CHECK(e.address.family() == family);
        checkIp(e.address);
        if (e.hints != nullptr) {
            FUZZ_CHECK(!e.hints->forZones.empty() || !e.hints->forNodes.empty());
        }
    }
}

inline void checkObject(const k8s::Node& n) {
    FUZZ_CHECK(!n.name.empty());
    for (const auto& a : n.addresses) {
        checkIp(a.address);
    }
    for (const auto& c : n.podCIDRs) {
        checkCidr(c);
    }
}

// ---- Encoding back to JSON -----------------------------------------------------------------

inline json::array ipArray(std::span<const net::IpAddress> v) {
    json::array a;
    for (const auto& ip : v) {
        a.emplace_back(ip.toString());
    }
    return a;
}

inline json::array cidrArray(std::span<const net::Cidr> v) {
    json::array a;
    for (const auto& c : v) {
        a.emplace_back(c.toString());
    }
    return a;
}

inline const char* policyName(k8s::TrafficPolicy p) {
    return p == k8s::TrafficPolicy::Local ? "Local" : "Cluster";
}

inline json::value encode(const k8s::Service& s) {
    json::object meta{{"name", s.key.name}, {"namespace", s.key.ns}};
    if (s.otherProxy) {
        meta["labels"] = json::object{{"service.kubernetes.io/service-proxy-name", "other"}};
    }
    json::object spec;
    static constexpr const char* kTypes[] = {"ClusterIP", "NodePort", "LoadBalancer",
                                             "ExternalName"};
    spec["type"] = kTypes[static_cast<int>(s.type)];
    if (s.headless) {
        spec["clusterIP"] = "None";
    } else if (!s.clusterIPs.empty()) {
        spec["clusterIP"] = s.clusterIPs[0].toString();
        spec["clusterIPs"] = ipArray(s.clusterIPs.span());
    }
    json::array ports;
    for (const auto& p : s.ports) {
        json::object o{{"name", p.name},
                       {"protocol", std::string(ipvs::protocolName(p.protocol))},
                       {"port", p.port}};
        if (p.nodePort != 0) {
            o["nodePort"] = p.nodePort;
        }
        ports.emplace_back(std::move(o));
    }
    spec["ports"] = std::move(ports);
    spec["externalIPs"] = ipArray(s.externalIPs.span());
    spec["loadBalancerSourceRanges"] = cidrArray(s.loadBalancerSourceRanges.span());
    spec["externalTrafficPolicy"] = policyName(s.externalTrafficPolicy);
    spec["internalTrafficPolicy"] = policyName(s.internalTrafficPolicy);
    if (s.healthCheckNodePort != 0) {
        spec["healthCheckNodePort"] = s.healthCheckNodePort;
    }
    if (s.sessionAffinityClientIP) {
        spec["sessionAffinity"] = "ClientIP";
        spec["sessionAffinityConfig"] =
            json::object{{"clientIP", json::object{{"timeoutSeconds", s.sessionAffinityTimeout}}}};
    } else {
        spec["sessionAffinity"] = "None";
    }
    json::array ingress;
    for (const auto& in : s.loadBalancerIngress) {
        ingress.emplace_back(
            json::object{{"ip", in.ip.toString()}, {"ipMode", in.proxyMode ? "Proxy" : "VIP"}});
    }
    return json::object{
        {"kind", "Service"},
        {"apiVersion", "v1"},
        {"metadata", std::move(meta)},
        {"spec", std::move(spec)},
        {"status", json::object{{"loadBalancer", json::object{{"ingress", std::move(ingress)}}}}}};
}

// Unix nanoseconds as RFC 3339 with nine fraction digits (Howard Hinnant's civil_from_days).
inline std::string rfc3339(std::int64_t ns) {
    std::int64_t secs = ns / 1000000000;
    std::int64_t frac = ns % 1000000000;
    if (frac < 0) {
        frac += 1000000000;
        --secs;
    }
    std::int64_t days = secs / 86400;
    std::int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        --days;
    }
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<std::uint64_t>(z - era * 146097);
    const std::uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
    const std::uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::uint64_t mp = (5 * doy + 2) / 153;
    const std::uint64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::uint64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2 ? 1 : 0;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04lld-%02llu-%02lluT%02lld:%02lld:%02lld.%09lldZ",
                  static_cast<long long>(y), static_cast<unsigned long long>(m),
                  static_cast<unsigned long long>(d), static_cast<long long>(sod / 3600),
                  static_cast<long long>(sod / 60 % 60), static_cast<long long>(sod % 60),
                  static_cast<long long>(frac));
    return buf;
}

inline json::array hintArray(const std::vector<k8s::Name>& names) {
    json::array a;
    for (const auto& n : names) {
        a.emplace_back(json::object{{"name", n.view()}});
    }
    return a;
}

inline json::value encode(const k8s::EndpointSlice& s) {
    json::object meta{{"name", s.key.name},
                      {"namespace", s.key.ns},
                      {"labels", json::object{{"kubernetes.io/service-name", s.serviceName}}}};
    if (s.triggerTimeNs) {
        meta["annotations"] = json::object{
            {"endpoints.kubernetes.io/last-change-trigger-time", rfc3339(*s.triggerTimeNs)}};
    }
    static constexpr const char* kTypes[] = {"IPv4", "IPv6", "FQDN"};
    json::array ports;
    for (const auto& p : s.ports) {
        ports.emplace_back(json::object{{"name", p.name},
                                        {"protocol", std::string(ipvs::protocolName(p.protocol))},
                                        {"port", p.port}});
    }
    json::array eps;
    for (const auto& e : s.endpoints) {
        json::object o{{"addresses", json::array{json::value(e.address.toString())}},
                       {"conditions", json::object{{"ready", e.ready},
                                                   {"serving", e.serving},
                                                   {"terminating", e.terminating}}}};
        if (!e.nodeName.empty()) {
            o["nodeName"] = e.nodeName.view();
        }
        if (e.hints != nullptr) {
            o["hints"] = json::object{{"forZones", hintArray(e.hints->forZones)},
                                      {"forNodes", hintArray(e.hints->forNodes)}};
        }
        eps.emplace_back(std::move(o));
    }
    return json::object{
        {"kind", "EndpointSlice"},     {"apiVersion", "discovery.k8s.io/v1"},
        {"metadata", std::move(meta)}, {"addressType", kTypes[static_cast<int>(s.addressType)]},
        {"ports", std::move(ports)},   {"endpoints", std::move(eps)}};
}

inline json::value encode(const k8s::Node& n) {
    json::object meta{{"name", n.name},
                      {"labels", json::object{{"topology.kubernetes.io/zone", n.zone}}}};
    if (n.deleting) {
        meta["deletionTimestamp"] = "2024-05-01T10:00:00Z";
    }
    json::object spec{{"podCIDRs", cidrArray(n.podCIDRs)}};
    if (n.toBeDeletedByAutoscaler) {
        spec["taints"] = json::array{
            json::object{{"key", "ToBeDeletedByClusterAutoscaler"}, {"effect", "NoSchedule"}}};
    }
    json::array addrs;
    for (const auto& a : n.addresses) {
        addrs.emplace_back(json::object{
            {"type", a.type == k8s::NodeAddressType::InternalIP ? "InternalIP" : "ExternalIP"},
            {"address", a.address.toString()}});
    }
    return json::object{{"kind", "Node"},
                        {"apiVersion", "v1"},
                        {"metadata", std::move(meta)},
                        {"spec", std::move(spec)},
                        {"status", json::object{{"addresses", std::move(addrs)}}}};
}

// Decodes `v` as `T` and, when it is accepted, checks it, checks that decoding is
// deterministic, and that its own encoding decodes to the same object with no issue.
template <class T>
void decodeAndCheck(const json::value& v) {
    k8s::DecodeReport report;
    auto obj = k8s::Codec<T>::decode(v, report);
    FUZZ_CHECK(obj.has_value() != report.rejection.has_value());
    for (const auto& issue : report.dropped) {
        FUZZ_CHECK(!report.describe(issue).empty());
    }
    if (!obj) {
        FUZZ_CHECK(!report.describe(*report.rejection).empty());
        return;
    }
    checkObject(*obj);
    // A note names its field, has a known code, and comes at most once per code.
    for (std::size_t i = 0; i < report.notes.size(); ++i) {
        const auto& n = report.notes[i];
        FUZZ_CHECK(n.code == k8s::kNoteLargeAnnotations || n.code == k8s::kNoteManyPorts ||
                   n.code == k8s::kNoteDuplicateEndpoint);
        FUZZ_CHECK(!n.issue.field.empty() && !n.issue.reason.empty());
        for (std::size_t j = 0; j < i; ++j) {
            FUZZ_CHECK(report.notes[j].code != n.code);
        }
    }

    k8s::DecodeReport again;
    auto twice = k8s::Codec<T>::decode(v, again);
    FUZZ_CHECK(twice && *twice == *obj);
    FUZZ_CHECK(k8s::contentHash(*twice) == k8s::contentHash(*obj));

    const json::value enc = encode(*obj);
    k8s::DecodeReport rt;
    auto back = k8s::Codec<T>::decode(enc, rt);
    FUZZ_CHECK_MSG(back.has_value(),
                   rt.rejection ? rt.describe(*rt.rejection) : json::serialize(enc));
    FUZZ_CHECK_MSG(rt.dropped.empty(),
                   rt.dropped.empty() ? std::string() : rt.describe(rt.dropped[0]));
    FUZZ_CHECK_MSG(*back == *obj, json::serialize(enc));
    FUZZ_CHECK(k8s::contentHash(*back) == k8s::contentHash(*obj));
}

}  // namespace kipvs::fuzz
