#include <catch2/catch.hpp>

#include "ipvs/names.h"
#include "ipvs/types.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {
ServiceKey key(const char* ip, std::uint16_t port, Protocol p) {
    ServiceKey k;
    k.address = *net::IpAddress::parse(ip);
    k.port = port;
    k.protocol = p;
    return k;
}
}  // namespace

TEST_CASE("IPVS objects print as kube-proxy names them", "[types]") {
    const auto vs = key("10.96.0.10", 53, Protocol::UDP);
    CHECK(vs.toString() == "10.96.0.10:53/UDP");
    CHECK(key("fd00::a", 53, Protocol::SCTP).toString() == "[fd00::a]:53/SCTP");
    const DestKey rs{*net::IpAddress::parse("10.244.1.7"), 53};
    CHECK(describe(vs, rs) == "10.96.0.10:53/UDP -> 10.244.1.7:53");
    CHECK(Op::addDest(vs, RealServer{rs}).toString() ==
          "add-dest 10.96.0.10:53/UDP -> 10.244.1.7:53");
    CHECK(Op::deleteService(vs).toString() == "delete-service 10.96.0.10:53/UDP");
    ServiceKey fw;
    fw.address = net::IpAddress::any(net::Family::V6);
    fw.fwmark = 7;
    CHECK(fw.toString() == "FWM:7/IPv6");
}

TEST_CASE("virtual servers compare by key and by content", "[types]") {
    VirtualServer a;
    a.key = key("10.96.0.1", 443, Protocol::TCP);
    a.scheduler = *ShortName::make("rr");
    VirtualServer b = a;
    b.flags = kSvcFlagHashed;  // the kernel's bookkeeping flag is not content
    CHECK(a.sameContent(b));
    b.flags = kSvcFlagPersistent;
    b.timeout = 10800;
    CHECK_FALSE(a.sameContent(b));
    CHECK(a.key == b.key);
    b.key.port = 444;
    CHECK(a.key < b.key);
    CHECK_FALSE(ShortName::make("sixteen-chars-xx"));
    CHECK(ShortName::make("fifteen-chars-x")->view() == "fifteen-chars-x");
}

TEST_CASE("real servers compare by content", "[types]") {
    RealServer a{DestKey{*net::IpAddress::parse("10.244.1.7"), 8080}};
    RealServer b = a;
    CHECK(a.sameContent(b));
    b.weight = 0;
    CHECK_FALSE(a.sameContent(b));
    CHECK(a.key == b.key);
}

TEST_CASE("protocols parse only Kubernetes spellings", "[types]") {
    CHECK(parseProtocol("TCP") == Protocol::TCP);
    CHECK(parseProtocol("SCTP") == Protocol::SCTP);
    CHECK_FALSE(parseProtocol("tcp"));
    CHECK_FALSE(parseProtocol("ICMP"));
    CHECK(protocolLower(Protocol::UDP) == "udp");
}

TEST_CASE("IPv6 set names get the KUBE-6- prefix and the kernel's 31-character limit", "[names]") {
    CHECK(names::setName(names::kSetClusterIp, net::Family::V4) == "KUBE-CLUSTER-IP");
    CHECK(names::setName(names::kSetClusterIp, net::Family::V6) == "KUBE-6-CLUSTER-IP");
    CHECK(names::setName(names::kSetLoadBalancerSourceCidr, net::Family::V6) ==
          "KUBE-6-LOAD-BALANCER-SOURCE-CID");
    CHECK(names::setName(names::kSetNodePortLocalSctp, net::Family::V6) ==
          "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS");
}
