#include <catch2/catch.hpp>

#include <algorithm>

#include "builders.h"
#include "ipvs/names.h"
#include "proxy/desired.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace kipvs::testing;
using ipvs::Protocol;
using ipvs::SetEntry;

namespace {

NodeContext nodeCtx() {
    NodeContext n;
    n.nodeName = "node-1";
    n.zone = "zone-a";
    n.nodePortIps = {ip("192.168.1.10")};
    n.localAddresses = {ip("192.168.1.10"), ip("192.168.1.99")};
    n.nodeIp = ip("192.168.1.10");
    n.hasNodeIp = true;
    return n;
}

DesiredConfig cfg(const char* sched = "rr", net::Family f = net::Family::V4) {
    return {f, *ipvs::ShortName::make(sched)};
}

MergedEndpoints eps(std::initializer_list<k8s::EndpointSlice> slices,
                    net::Family f = net::Family::V4) {
    std::vector<k8s::EndpointSlice> owned(slices);
    std::vector<const k8s::EndpointSlice*> ptrs;
    for (const auto& s : owned) {
        ptrs.push_back(&s);
    }
    return mergeSlices(ptrs, f, "node-1");
}

std::vector<std::string> vsNames(const ServiceDesired& d) {
    std::vector<std::string> out;
    for (const auto& v : d.vss) {
        std::string s = v.vs.key.toString() + " ->";
        for (const auto& rs : v.dests) {
            s += " " + rs.key.toString();
        }
        out.push_back(s);
    }
    std::sort(out.begin(), out.end());
    return out;
}

bool hasEntry(const ServiceDesired& d, SetId set, const SetEntry& e) {
    return std::binary_search(d.entries.begin(), d.entries.end(), DesiredEntry{set, e});
}

}  // namespace

TEST_CASE("a ClusterIP Service gets one virtual server, its address and its set member",
          "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "web", "10.96.0.10").port("http", 80);
    const auto d = computeDesired(svc,
                                  eps({SliceBuilder("default", "web-1", "web")
                                           .port("http", 8080)
                                           .ep("10.244.1.7")
                                           .ep("10.244.2.7", "node-1")}),
                                  nodeCtx(), cfg());
    CHECK_FALSE(d.skipped);
    CHECK(vsNames(d) ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080 10.244.2.7:8080"});
    const auto& vs = d.vss[0].vs;
    CHECK(vs.scheduler.view() == "rr");
    CHECK(vs.flags == 0);
    CHECK(vs.netmask == 0xffffffffu);
    for (const auto& rs : d.vss[0].dests) {
        CHECK(rs.weight == 1);
        CHECK(rs.forwarding == ipvs::Forwarding::Masq);
    }
    CHECK(d.bind == std::vector<net::IpAddress>{ip("10.96.0.10")});
    CHECK(hasEntry(d, SetId::ClusterIp, SetEntry::ipPort(ip("10.96.0.10"), Protocol::TCP, 80)));
    // Hairpin only for the local endpoint.
    CHECK(hasEntry(d, SetId::LoopBack,
                   SetEntry::ipPortIp(ip("10.244.2.7"), Protocol::TCP, 8080, ip("10.244.2.7"))));
    CHECK_FALSE(
        hasEntry(d, SetId::LoopBack,
                 SetEntry::ipPortIp(ip("10.244.1.7"), Protocol::TCP, 8080, ip("10.244.1.7"))));
    CHECK(d.udp.empty());
}

TEST_CASE("Services kube-proxy skips produce nothing", "[desired]") {
    auto base = ServiceBuilder("default", "x", "10.96.0.11").port("p", 80);
    k8s::Service headless = base;
    headless.headless = true;
    headless.clusterIPs.clear();
    k8s::Service external = base;
    external.type = k8s::ServiceType::ExternalName;
    k8s::Service other = base;
    other.otherProxy = true;
    k8s::Service noIp = ServiceBuilder("default", "x", nullptr).port("p", 80);
    for (const auto& s : {headless, external, other, noIp}) {
        const auto d = computeDesired(s, {}, nodeCtx(), cfg());
        CHECK(d.skipped);
        CHECK(d.vss.empty());
        CHECK(d.bind.empty());
        CHECK(d.entries.empty());
    }
    // An IPv4-only Service in the IPv6 proxier.
    CHECK(computeDesired(base, {}, nodeCtx(), cfg("rr", net::Family::V6)).skipped);
}

TEST_CASE("NodePort virtual servers per node IP, port sets by protocol", "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "np", "10.96.0.12")
                                 .type(k8s::ServiceType::NodePort)
                                 .port("tcp", 80, Protocol::TCP, 30080)
                                 .port("udp", 53, Protocol::UDP, 30053)
                                 .port("sctp", 99, Protocol::SCTP, 30099);
    auto node = nodeCtx();
    node.nodePortIps = {ip("192.168.1.10"), ip("192.168.1.99")};
    const auto d = computeDesired(svc, {}, node, cfg());
    CHECK(vsNames(d).size() == 3 + 3 * 2);
    CHECK(hasEntry(d, SetId::NodePortTcp, SetEntry::portOnly(30080)));
    CHECK(hasEntry(d, SetId::NodePortUdp, SetEntry::portOnly(30053)));
    CHECK(hasEntry(d, SetId::NodePortSctp,
                   SetEntry::ipPort(ip("192.168.1.99"), Protocol::SCTP, 30099)));
    CHECK_FALSE(hasEntry(d, SetId::NodePortLocalTcp, SetEntry::portOnly(30080)));
    // Node IPs are never bound to kube-ipvs0.
    CHECK(d.bind == std::vector<net::IpAddress>{ip("10.96.0.12")});
    REQUIRE(d.udp.size() == 1);
    CHECK(d.udp[0].nodePort == 30053);

    // No node IP selected by nodePortAddresses: no NodePort handling at all.
    node.nodePortIps.clear();
    const auto none = computeDesired(svc, {}, node, cfg());
    CHECK(vsNames(none).size() == 3);
    CHECK_FALSE(hasEntry(none, SetId::NodePortTcp, SetEntry::portOnly(30080)));
}

TEST_CASE("LoadBalancer with source ranges, eTP=Local and a health check port", "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("https", 443, Protocol::TCP, 30443)
                                 .lb("203.0.113.10")
                                 .lb("203.0.113.11", /*proxyMode=*/true)
                                 .sourceRange("198.51.100.0/24")
                                 .sourceRange("fd00::/8")
                                 .etpLocal(32001);
    const auto d = computeDesired(svc,
                                  eps({SliceBuilder("default", "lb-1", "lb")
                                           .port("https", 8443)
                                           .ep("10.244.1.7", "node-1")
                                           .ep("10.244.2.7", "node-2")}),
                                  nodeCtx(), cfg());
    // ClusterIP keeps every endpoint (iTP=Cluster); LB and NodePort only the local one.
    CHECK(vsNames(d) == std::vector<std::string>{
                            "10.96.0.13:443/TCP -> 10.244.1.7:8443 10.244.2.7:8443",
                            "192.168.1.10:30443/TCP -> 10.244.1.7:8443",
                            "203.0.113.10:443/TCP -> 10.244.1.7:8443",
                        });
    const auto lb = SetEntry::ipPort(ip("203.0.113.10"), Protocol::TCP, 443);
    CHECK(hasEntry(d, SetId::LoadBalancer, lb));
    CHECK(hasEntry(d, SetId::LoadBalancerLocal, lb));
    CHECK(hasEntry(d, SetId::LoadBalancerFw, lb));
    CHECK(hasEntry(
        d, SetId::LoadBalancerSourceCidr,
        SetEntry::ipPortNet(ip("203.0.113.10"), Protocol::TCP, 443, cidr("198.51.100.0/24"))));
    // The IPv6 range is another family's: dropped. The node (192.168.1.10) is in no range.
    CHECK(d.noNodeAccess ==
          std::vector<ipvs::NoNodeAccess>{{ip("203.0.113.10"), Protocol::TCP, 443}});
    CHECK(d.healthCheckNodePort == 32001);
    CHECK(hasEntry(d, SetId::HealthCheckNodePort, SetEntry::portOnly(32001)));
    CHECK(hasEntry(d, SetId::NodePortLocalTcp, SetEntry::portOnly(30443)));
    CHECK(d.localReadyIps == 1);
    CHECK(d.bind == std::vector<net::IpAddress>{ip("10.96.0.13"), ip("203.0.113.10")});
    CHECK_FALSE(d.noLocalExternal);
}

TEST_CASE("a source range holding the node lets the node reach its LB IP", "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("https", 443)
                                 .lb("203.0.113.10")
                                 .sourceRange("192.168.0.0/16");
    const auto d = computeDesired(svc, {}, nodeCtx(), cfg());
    CHECK(d.noNodeAccess.empty());
    CHECK(hasEntry(d, SetId::LoadBalancerSourceIp,
                   SetEntry::ipPortIp(ip("203.0.113.10"), Protocol::TCP, 443, ip("203.0.113.10"))));
}

TEST_CASE("a source range of 0.0.0.0/0 admits everyone: no firewall for that family", "[desired]") {
    // The kernel refuses a /0 in hash:ip,port,net; programmed, the firewall would drop all.
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("https", 443)
                                 .lb("203.0.113.10")
                                 .sourceRange("198.51.100.0/24")
                                 .sourceRange("0.0.0.0/0");
    const auto d = computeDesired(svc, {}, nodeCtx(), cfg());
    const auto lb = SetEntry::ipPort(ip("203.0.113.10"), Protocol::TCP, 443);
    CHECK(hasEntry(d, SetId::LoadBalancer, lb));
    CHECK_FALSE(hasEntry(d, SetId::LoadBalancerFw, lb));
    CHECK(std::none_of(d.entries.begin(), d.entries.end(), [](const DesiredEntry& e) {
        return e.set == SetId::LoadBalancerSourceCidr || e.set == SetId::LoadBalancerSourceIp;
    }));
    CHECK(d.noNodeAccess.empty());
    // ::/0 is the IPv6 family's: the IPv4 firewall stays.
    const k8s::Service v6all = ServiceBuilder("default", "lb", "10.96.0.13")
                                   .port("https", 443)
                                   .lb("203.0.113.10")
                                   .sourceRange("198.51.100.0/24")
                                   .sourceRange("::/0");
    CHECK(hasEntry(computeDesired(v6all, {}, nodeCtx(), cfg()), SetId::LoadBalancerFw, lb));
}

TEST_CASE("eTP=Local applies to a ClusterIP Service with external IPs", "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "e", "10.96.0.15")
                                 .port("p", 80)
                                 .externalIp("198.51.100.7")
                                 .etpLocal();
    const auto d = computeDesired(svc,
                                  eps({SliceBuilder("default", "s", "e")
                                           .port("p", 8080)
                                           .ep("10.244.1.7", "node-1")
                                           .ep("10.244.2.7", "node-2")}),
                                  nodeCtx(), cfg());
    // The external IP gets the local endpoint only and is not masqueraded; the cluster IP
    // keeps every endpoint (iTP=Cluster).
    CHECK(vsNames(d) == std::vector<std::string>{
                            "10.96.0.15:80/TCP -> 10.244.1.7:8080 10.244.2.7:8080",
                            "198.51.100.7:80/TCP -> 10.244.1.7:8080",
                        });
    const auto ext = SetEntry::ipPort(ip("198.51.100.7"), Protocol::TCP, 80);
    CHECK(hasEntry(d, SetId::ExternalIpLocal, ext));
    CHECK_FALSE(hasEntry(d, SetId::ExternalIp, ext));
    CHECK(d.healthCheckNodePort == 0);  // only LoadBalancer Services have one
}

TEST_CASE("eTP=Local without local endpoints falls back to every endpoint, as kube-proxy does",
          "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("p", 80, Protocol::TCP, 30080)
                                 .lb("203.0.113.10")
                                 .etpLocal(32001);
    const auto d = computeDesired(
        svc, eps({SliceBuilder("default", "s", "lb").port("p", 8080).ep("10.244.2.7", "node-2")}),
        nodeCtx(), cfg());
    // Pods on this node and the node itself reach the NodePort and the LB IP.
    CHECK(vsNames(d) == std::vector<std::string>{"10.96.0.13:80/TCP -> 10.244.2.7:8080",
                                                 "192.168.1.10:30080/TCP -> 10.244.2.7:8080",
                                                 "203.0.113.10:80/TCP -> 10.244.2.7:8080"});
    CHECK(d.noLocalExternal);
    CHECK(d.localReadyIps == 0);  // the health check still steers other clients away
    // The local-policy sets keep the client's source (no masquerade), as for local endpoints.
    CHECK(hasEntry(d, SetId::LoadBalancerLocal,
                   SetEntry::ipPort(ip("203.0.113.10"), Protocol::TCP, 80)));
    CHECK(hasEntry(d, SetId::NodePortLocalTcp, SetEntry::portOnly(30080)));
}

TEST_CASE("eTP=Local and iTP=Local without local endpoints: only the external addresses fall back",
          "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("p", 80, Protocol::TCP, 30080)
                                 .lb("203.0.113.10")
                                 .itpLocal()
                                 .etpLocal(32001);
    const auto d = computeDesired(
        svc, eps({SliceBuilder("default", "s", "lb").port("p", 8080).ep("10.244.2.7", "node-2")}),
        nodeCtx(), cfg());
    CHECK(vsNames(d) == std::vector<std::string>{"10.96.0.13:80/TCP ->",
                                                 "192.168.1.10:30080/TCP -> 10.244.2.7:8080",
                                                 "203.0.113.10:80/TCP -> 10.244.2.7:8080"});
    CHECK(d.noLocalInternal);
    CHECK(d.noLocalExternal);
}

TEST_CASE("the health check counts local ready endpoints under every port the slices list",
          "[desired]") {
    // The Service's port was renamed (http -> web) and the slices still say http: kube-proxy
    // still counts the node's endpoint, so the node stays in the load balancer meanwhile.
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("web", 80, Protocol::TCP, 30080)
                                 .lb("203.0.113.10")
                                 .etpLocal(32001);
    const auto d = computeDesired(svc,
                                  eps({SliceBuilder("default", "s", "lb")
                                           .port("http", 8080)
                                           .ep("10.244.1.7", "node-1")
                                           .ep("10.244.1.8", "node-1", /*ready=*/false)
                                           .ep("10.244.2.7", "node-2")}),
                                  nodeCtx(), cfg());
    CHECK(d.localReadyIps == 1);
}

TEST_CASE("a Service counts as without local endpoints when one of its ports has none",
          "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "lb", "10.96.0.13")
                                 .port("a", 80, Protocol::TCP, 30080)
                                 .port("b", 81, Protocol::TCP, 30081)
                                 .lb("203.0.113.10")
                                 .etpLocal(32001);
    const auto d = computeDesired(
        svc,
        eps({SliceBuilder("default", "s-a", "lb").port("a", 8080).ep("10.244.1.7", "node-1"),
             SliceBuilder("default", "s-b", "lb").port("b", 8081).ep("10.244.2.7", "node-2")}),
        nodeCtx(), cfg());
    CHECK(d.noLocalExternal);
    CHECK_FALSE(d.noLocalInternal);  // iTP=Cluster
    CHECK(d.localReadyIps == 1);
}

TEST_CASE("iTP=Local ClusterIP uses only local endpoints", "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "c", "10.96.0.14").port("p", 80).itpLocal();
    const auto slices = eps({SliceBuilder("default", "s", "c")
                                 .port("p", 8080)
                                 .ep("10.244.1.7", "node-1")
                                 .ep("10.244.2.7", "node-2")});
    CHECK(vsNames(computeDesired(svc, slices, nodeCtx(), cfg())) ==
          std::vector<std::string>{"10.96.0.14:80/TCP -> 10.244.1.7:8080"});
    const auto none = computeDesired(
        svc, eps({SliceBuilder("default", "s", "c").port("p", 8080).ep("10.244.2.7", "node-2")}),
        nodeCtx(), cfg());
    CHECK(vsNames(none) == std::vector<std::string>{"10.96.0.14:80/TCP ->"});
    CHECK(none.noLocalInternal);
}

TEST_CASE("external IPs: bound unless already local, set by traffic policy", "[desired]") {
    const k8s::Service svc = ServiceBuilder("default", "e", "10.96.0.15")
                                 .port("p", 80)
                                 .externalIp("198.51.100.7")
                                 .externalIp("192.168.1.99")
                                 .externalIp("fd00::7");
    const auto d = computeDesired(svc, {}, nodeCtx(), cfg());
    CHECK(vsNames(d).size() == 3);
    CHECK(d.bind == std::vector<net::IpAddress>{ip("10.96.0.15"), ip("198.51.100.7")});
    CHECK(hasEntry(d, SetId::ExternalIp, SetEntry::ipPort(ip("192.168.1.99"), Protocol::TCP, 80)));
}

TEST_CASE("session affinity and the mh scheduler set flags", "[desired]") {
    const k8s::Service svc =
        ServiceBuilder("default", "a", "10.96.0.16").port("p", 80).affinity(600);
    const auto rr = computeDesired(svc, {}, nodeCtx(), cfg());
    CHECK(rr.vss[0].vs.flags == ipvs::kSvcFlagPersistent);
    CHECK(rr.vss[0].vs.timeout == 600);
    const auto mh = computeDesired(svc, {}, nodeCtx(), cfg("mh"));
    CHECK(mh.vss[0].vs.flags == (ipvs::kSvcFlagPersistent | ipvs::kSvcFlagSched2));
    CHECK(mh.vss[0].vs.scheduler.view() == "mh");
}

TEST_CASE("dual-stack Services split by family", "[desired]") {
    const k8s::Service svc =
        ServiceBuilder("default", "d", "10.96.0.17").dual("fd00:96::17").port("p", 80);
    const auto slices = eps({SliceBuilder("default", "d6", "d", k8s::AddressType::IPv6)
                                 .port("p", 8080)
                                 .ep("fd00:244::7")},
                            net::Family::V6);
    auto node = nodeCtx();
    node.nodePortIps.clear();
    node.localAddresses.clear();
    node.hasNodeIp = false;
    const auto d = computeDesired(svc, slices, node, cfg("rr", net::Family::V6));
    CHECK(vsNames(d) == std::vector<std::string>{"[fd00:96::17]:80/TCP -> [fd00:244::7]:8080"});
    CHECK(d.vss[0].vs.netmask == 128);
}

TEST_CASE("UDP ports describe their frontends and serving endpoints", "[desired]") {
    const k8s::Service svc = ServiceBuilder("kube-system", "dns", "10.96.0.10")
                                 .port("dns", 53, Protocol::UDP)
                                 .externalIp("198.51.100.53");
    const auto d = computeDesired(svc,
                                  eps({SliceBuilder("kube-system", "dns-1", "dns")
                                           .port("dns", 53, Protocol::UDP)
                                           .ep("10.244.1.2")
                                           .ep("10.244.1.3", nullptr, false, false, true)}),
                                  nodeCtx(), cfg());
    REQUIRE(d.udp.size() == 1);
    CHECK(d.udp[0].frontends ==
          std::vector<ipvs::DestKey>{{ip("10.96.0.10"), 53}, {ip("198.51.100.53"), 53}});
    CHECK(d.udp[0].serving == std::vector<ipvs::DestKey>{{ip("10.244.1.2"), 53}});
}
