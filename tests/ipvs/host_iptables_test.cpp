// The iptables-restore payload (reference §5.3), the jump rules (§5.1), missingJumpRules on
// iptables-save output, and IptablesSync's decisions against a small stateful iptables fake.
#include <catch2/catch.hpp>

#include "tests/ipvs/host_test_util.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "ipvs/iptables.h"
#include "ipvs/names.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

net::IpAddress ip(const char* s) {
    auto a = net::IpAddress::parse(s);
    REQUIRE(a);
    return *a;
}

net::Cidr cidr(const char* s) {
    auto c = net::Cidr::parse(s);
    REQUIRE(c);
    return *c;
}

const std::vector<std::string_view> kAllSets = {
    names::kSetLoopBack,
    names::kSetClusterIp,
    names::kSetExternalIp,
    names::kSetExternalIpLocal,
    names::kSetLoadBalancer,
    names::kSetLoadBalancerLocal,
    names::kSetLoadBalancerFw,
    names::kSetLoadBalancerSourceCidr,
    names::kSetLoadBalancerSourceIp,
    names::kSetNodePortTcp,
    names::kSetNodePortLocalTcp,
    names::kSetNodePortUdp,
    names::kSetNodePortLocalUdp,
    names::kSetNodePortSctp,
    names::kSetNodePortLocalSctp,
    names::kSetHealthCheckNodePort,
    names::kSetIpvsIps,
};

// The reference's assumptions: IPv4, ClusterCIDR 10.244.0.0/16, bit 14, --random-fully,
// every set non-empty, one LB entry the node may not reach.
RulesInput referenceInput() {
    RulesInput in;
    in.family = net::Family::V4;
    in.masqueradeBit = 14;
    in.localDetector.kind = LocalDetector::Kind::Cidr;
    in.localDetector.cidr = cidr("10.244.0.0/16");
    in.randomFully = true;
    for (auto s : kAllSets) {
        in.nonEmptySets.insert(std::string(s));
    }
    in.noNodeAccess.push_back({ip("203.0.113.10"), Protocol::TCP, 443});
    return in;
}

// Reference §5.3, verbatim.
const char* const kReferencePayload = R"(*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER
-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN
-A KUBE-NODE-PORT -p udp -m comment --comment "Kubernetes nodeport UDP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p sctp -m comment --comment "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'" -m set --match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN
-A KUBE-NODE-PORT -p sctp -m comment --comment "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'" -m set --match-set KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source cidr for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source IP for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-IPVS-OUT-FILTER -s 203.0.113.10 -m ipvs --vaddr 203.0.113.10 --vproto tcp --vport 443 -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
COMMIT
)";

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) {
        out.push_back(l);
    }
    return out;
}

bool hasLine(const std::string& text, const std::string& line) {
    const auto all = lines(text);
    return std::find(all.begin(), all.end(), line) != all.end();
}

std::size_t countContaining(const std::string& text, const std::string& part) {
    std::size_t n = 0;
    for (const auto& l : lines(text)) {
        n += l.find(part) != std::string::npos ? 1 : 0;
    }
    return n;
}

const std::string kClusterIpComment =
    "-m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\"";

}  // namespace

TEST_CASE("the payload is the reference example byte for byte", "[iptables]") {
    const std::string got = buildRestorePayload(referenceInput());
    // Line by line first, for a readable failure.
    const auto want = lines(kReferencePayload);
    const auto have = lines(got);
    for (std::size_t i = 0; i < std::min(want.size(), have.size()); ++i) {
        INFO("line " << i + 1);
        CHECK(have[i] == want[i]);
    }
    CHECK(have.size() == want.size());
    CHECK(got == kReferencePayload);
}

TEST_CASE("rules that match a set are left out while it is empty", "[iptables]") {
    RulesInput in = referenceInput();
    in.nonEmptySets.clear();
    in.noNodeAccess.clear();
    const std::string p = buildRestorePayload(in);
    // No rule with a comment naming a set, no ACCEPT of IPVS traffic in nat...
    CHECK(countContaining(p, "--match-set KUBE-LOOP-BACK") == 0);
    CHECK(countContaining(p, "--match-set KUBE-NODE-PORT-") == 0);
    CHECK(countContaining(p, "--match-set KUBE-LOAD-BALANCER-FW") == 0);
    CHECK(countContaining(p, "-j KUBE-MARK-MASQ") == 1);  // only KUBE-LOAD-BALANCER's own
    CHECK_FALSE(
        hasLine(p, "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT"));
    CHECK(countContaining(p, "KUBE-IPVS-OUT-FILTER -s") == 0);
    // ...but the KUBE-IPVS-FILTER rules and the health-check ACCEPT are always there.
    CHECK(countContaining(p, "-A KUBE-IPVS-FILTER ") == 6);
    CHECK(hasLine(p,
                  "-A KUBE-NODE-PORT -m comment --comment \"Kubernetes health check node port\" "
                  "-m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT"));
    // And so are the set-independent rules and every chain declaration.
    CHECK(hasLine(p, "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN"));
    CHECK(hasLine(p, "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP"));
    CHECK(countContaining(p, " - [0:0]") == 11);
    CHECK(lines(p).size() == 11 + 2 + 2 + 17);
}

TEST_CASE("each set's rules appear exactly when it has members", "[iptables]") {
    for (auto set : kAllSets) {
        RulesInput in = referenceInput();
        in.noNodeAccess.clear();
        const std::string all = buildRestorePayload(in);
        in.nonEmptySets.erase(std::string(set));
        const std::string without = buildRestorePayload(in);
        INFO(set);
        const std::string ref = "--match-set " + std::string(set) + " ";
        // What stays without members: the KUBE-IPVS-FILTER rules and the health-check ACCEPT.
        std::size_t keep = 0;
        if (set == names::kSetHealthCheckNodePort) {
            keep = 2;
        } else if (set == names::kSetIpvsIps || set == names::kSetClusterIp ||
                   set == names::kSetLoadBalancer || set == names::kSetExternalIp ||
                   set == names::kSetExternalIpLocal) {
            keep = 1;
        }
        CHECK(countContaining(without, ref) == keep);
        if (set == names::kSetHealthCheckNodePort || set == names::kSetIpvsIps) {
            CHECK(without == all);
        } else {
            CHECK(countContaining(all, ref) > keep);
        }
    }
}

TEST_CASE("the ClusterIP masquerade rule follows the local detector", "[iptables]") {
    RulesInput in = referenceInput();
    const std::string tail = " -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ";

    SECTION("masqueradeAll marks all ClusterIP traffic") {
        in.masqueradeAll = true;
        CHECK(hasLine(buildRestorePayload(in), "-A KUBE-SERVICES " + kClusterIpComment + tail));
    }
    SECTION("no detector: node traffic with a VIP as source") {
        in.localDetector = LocalDetector{};
        CHECK(hasLine(buildRestorePayload(in),
                      "-A KUBE-SERVICES " + kClusterIpComment +
                          " -m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ"));
    }
    SECTION("bridge interface") {
        in.localDetector.kind = LocalDetector::Kind::BridgeInterface;
        in.localDetector.interface = "cni0";
        CHECK(hasLine(buildRestorePayload(in),
                      "-A KUBE-SERVICES ! -i cni0 " + kClusterIpComment + tail));
    }
    SECTION("interface name prefix") {
        in.localDetector.kind = LocalDetector::Kind::InterfacePrefix;
        in.localDetector.interface = "veth";
        CHECK(hasLine(buildRestorePayload(in),
                      "-A KUBE-SERVICES ! -i veth+ " + kClusterIpComment + tail));
    }
    SECTION("masqueradeAll wins over a detector") {
        in.masqueradeAll = true;
        in.localDetector.kind = LocalDetector::Kind::BridgeInterface;
        in.localDetector.interface = "cni0";
        const std::string p = buildRestorePayload(in);
        CHECK(countContaining(p, "! -i") == 0);
        CHECK(countContaining(p, "! -s") == 0);
    }
    // Exactly one masquerade rule for ClusterIPs in every variant.
    CHECK(countContaining(buildRestorePayload(in), kClusterIpComment) == 1);
}

TEST_CASE("MASQUERADE --random-fully only when the iptables supports it", "[iptables]") {
    RulesInput in = referenceInput();
    in.randomFully = false;
    const std::string p = buildRestorePayload(in);
    CHECK(hasLine(p,
                  "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic "
                  "requiring SNAT\" -j MASQUERADE"));
    CHECK(countContaining(p, "random-fully") == 0);
}

TEST_CASE("the masquerade mark follows the configured bit", "[iptables]") {
    RulesInput in = referenceInput();
    in.masqueradeBit = 0;
    std::string p = buildRestorePayload(in);
    CHECK(hasLine(p, "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x1/0x1"));
    CHECK(hasLine(p, "-A KUBE-POSTROUTING -m mark ! --mark 0x1/0x1 -j RETURN"));
    in.masqueradeBit = 31;
    p = buildRestorePayload(in);
    CHECK(hasLine(p, "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x80000000/0x80000000"));
    CHECK(hasLine(p, "-A KUBE-POSTROUTING -j MARK --set-xmark 0x80000000/0x0"));
    CHECK(countContaining(p, "0x4000") == 0);
}

TEST_CASE("one KUBE-IPVS-OUT-FILTER DROP per LB entry the node may not reach", "[iptables]") {
    RulesInput in = referenceInput();
    in.noNodeAccess = {{ip("203.0.113.10"), Protocol::TCP, 443},
                       {ip("203.0.113.10"), Protocol::UDP, 53},
                       {ip("203.0.113.11"), Protocol::SCTP, 9000}};
    const std::string p = buildRestorePayload(in);
    CHECK(countContaining(p, "-A KUBE-IPVS-OUT-FILTER ") == 3);
    CHECK(hasLine(p,
                  "-A KUBE-IPVS-OUT-FILTER -s 203.0.113.10 -m ipvs --vaddr 203.0.113.10 "
                  "--vproto udp --vport 53 -j DROP"));
    CHECK(hasLine(p,
                  "-A KUBE-IPVS-OUT-FILTER -s 203.0.113.11 -m ipvs --vaddr 203.0.113.11 "
                  "--vproto sctp --vport 9000 -j DROP"));
    // In the filter table, after the source-ranges DROP and before KUBE-FORWARD's rules.
    const auto all = lines(p);
    const auto drop = std::find(all.begin(), all.end(), "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP");
    const auto out = std::find_if(all.begin(), all.end(), [](const std::string& l) {
        return l.starts_with("-A KUBE-IPVS-OUT-FILTER");
    });
    const auto fwd = std::find_if(all.begin(), all.end(), [](const std::string& l) {
        return l.starts_with("-A KUBE-FORWARD");
    });
    const auto filter = std::find(all.begin(), all.end(), "*filter");
    CHECK(filter < drop);
    CHECK(drop < out);
    CHECK(out < fwd);
}

TEST_CASE("IPv6 payload: ::1/128, KUBE-6- sets, icmp6 reject", "[iptables]") {
    RulesInput in = referenceInput();
    in.family = net::Family::V6;
    in.localDetector.cidr = cidr("fd00:10:244::/64");
    in.noNodeAccess = {{ip("2001:db8::10"), Protocol::TCP, 443}};
    const std::string p = buildRestorePayload(in);
    CHECK(hasLine(p, "-A KUBE-SERVICES -s ::1/128 -j RETURN"));
    CHECK(countContaining(p, "127.0.0.0/8") == 0);
    CHECK(hasLine(p, "-A KUBE-SERVICES ! -s fd00:10:244::/64 " + kClusterIpComment +
                         " -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"));
    CHECK(hasLine(p,
                  "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set "
                  "KUBE-6-IPVS-IPS dst -j REJECT --reject-with icmp6-port-unreachable"));
    CHECK(hasLine(p,
                  "-A KUBE-IPVS-OUT-FILTER -s 2001:db8::10 -m ipvs --vaddr 2001:db8::10 "
                  "--vproto tcp --vport 443 -j DROP"));
    // The 31-character cut of the long names.
    CHECK(countContaining(p, "--match-set KUBE-6-LOAD-BALANCER-SOURCE-CID dst,dst,src") == 1);
    CHECK(countContaining(p, "--match-set KUBE-6-NODE-PORT-LOCAL-SCTP-HAS dst,dst") == 1);
    // No IPv4 set name anywhere: every --match-set names a KUBE-6- set.
    for (const auto& l : lines(p)) {
        const auto at = l.find("--match-set ");
        if (at != std::string::npos) {
            INFO(l);
            CHECK(l.compare(at + 12, 7, "KUBE-6-") == 0);
        }
    }
    // Same rules otherwise: the IPv4 payload has as many lines.
    CHECK(lines(p).size() == lines(buildRestorePayload(referenceInput())).size());
}

TEST_CASE("jump rules in kube-proxy's insertion order", "[iptables]") {
    const auto j = jumpRules();
    REQUIRE(j.size() == 9);
    CHECK(j[0].table == "nat");
    CHECK(j[0].chain == "OUTPUT");
    CHECK(j[0].target == "KUBE-SERVICES");
    CHECK(j[2].chain == "POSTROUTING");
    CHECK(j[2].comment == "kubernetes postrouting rules");
    CHECK(j[3].table == "filter");
    CHECK(j[3].target == "KUBE-FORWARD");
    CHECK(j[4].comment == "kubernetes health check rules");
    CHECK(j[4].target == "KUBE-NODE-PORT");
    CHECK(j[7].chain == "INPUT");
    CHECK(j[7].target == "KUBE-IPVS-FILTER");
    CHECK(j[8].chain == "OUTPUT");
    CHECK(j[8].target == "KUBE-IPVS-OUT-FILTER");
}

namespace {

// iptables-save of a node that runs kube-proxy in ipvs mode next to a CNI, as printed by
// iptables-nft-save 1.8.9 (legacy prints the same rule text).
const char* const kNodeSave =
    R"(# Generated by iptables-nft-save v1.8.9 (nf_tables) on Tue Nov 24 21:19:00 2026
*nat
:PREROUTING ACCEPT [12:720]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [301:18060]
:POSTROUTING ACCEPT [301:18060]
:CNI-HOSTPORT-DNAT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
COMMIT
# Completed on Tue Nov 24 21:19:00 2026
# Generated by iptables-nft-save v1.8.9 (nf_tables) on Tue Nov 24 21:19:00 2026
*filter
:INPUT ACCEPT [1000:80000]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [900:70000]
:KUBE-FORWARD - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT
-A FORWARD -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -s 10.244.0.0/16 -j ACCEPT
-A OUTPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER
COMMIT
# Completed on Tue Nov 24 21:19:00 2026
# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
)";

std::string without(std::string text, const std::string& line) {
    const auto at = text.find(line + "\n");
    REQUIRE(at != std::string::npos);
    text.erase(at, line.size() + 1);
    return text;
}

}  // namespace

TEST_CASE("missingJumpRules reads iptables-save output", "[iptables]") {
    CHECK(missingJumpRules(kNodeSave).empty());

    SECTION("a deleted rule is missing") {
        auto m = missingJumpRules(
            without(kNodeSave,
                    "-A INPUT -m comment --comment \"kube-proxy firewall rules\" -j "
                    "KUBE-PROXY-FIREWALL"));
        REQUIRE(m.size() == 1);
        CHECK(m[0].table == "filter");
        CHECK(m[0].chain == "INPUT");
        CHECK(m[0].target == "KUBE-PROXY-FIREWALL");
    }
    SECTION("the same rule in another table does not count") {
        // nat's OUTPUT jump pasted into filter's OUTPUT is not nat's.
        std::string s = without(kNodeSave,
                                "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j "
                                "KUBE-SERVICES");
        s.insert(s.find("COMMIT\n# Completed", s.find("*filter")),
                 "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j "
                 "KUBE-SERVICES\n");
        auto m = missingJumpRules(s);
        REQUIRE(m.size() == 1);
        CHECK(m[0].table == "nat");
        CHECK(m[0].chain == "OUTPUT");
    }
    SECTION("a rule with another comment or target does not count") {
        std::string s = kNodeSave;
        s.replace(s.find("kubernetes postrouting rules"), 28, "kubernetes postrouting rule");
        const std::string t = "\"kubernetes forwarding rules\" -j KUBE-FORWARD";
        s.replace(s.find(t), t.size(), "\"kubernetes forwarding rules\" -j KUBE-FORWARDX");
        auto m = missingJumpRules(s);
        REQUIRE(m.size() == 2);
        CHECK(m[0].target == "KUBE-POSTROUTING");
        CHECK(m[1].target == "KUBE-FORWARD");
    }
    SECTION("an empty host misses all, in insertion order") {
        auto m = missingJumpRules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\nCOMMIT\n");
        REQUIRE(m.size() == 9);
        for (std::size_t i = 0; i < m.size(); ++i) {
            CHECK(m[i].chain == jumpRules()[i].chain);
            CHECK(m[i].comment == jumpRules()[i].comment);
        }
        CHECK(missingJumpRules("").size() == 9);
    }
}

namespace {

// A small iptables: tables of chains of rule lines, fed by restore payloads and printed as
// iptables-save does (chains declared, then rules, chain by chain). It applies --noflush
// semantics: ":CHAIN" creates or flushes, "-A" appends, "-I CHAIN 1" prepends, and a payload
// is all-or-nothing.
class FakeIptables final : public Iptables {
  public:
    FakeIptables() {
        tables_["nat"] = {{"PREROUTING", {}}, {"INPUT", {}}, {"OUTPUT", {}}, {"POSTROUTING", {}}};
        tables_["filter"] = {{"INPUT", {}}, {"FORWARD", {}}, {"OUTPUT", {}}};
    }

    Result<void> restore(net::Family /*f*/, const std::string& payload) override {
        // The state chain's record is kept apart: the tests below count the rule payloads.
        (payload.starts_with("*filter\n:KUBE-IPVS-STATE ") ? statePayloads : payloads)
            .push_back(payload);
        if (failNext) {
            failNext = false;
            return Error::invalid("iptables-restore: exit status 2: line 3 failed");
        }
        auto copy = tables_;
        std::string table;
        for (const auto& l : lines(payload)) {
            if (l.starts_with("*")) {
                table = l.substr(1);
            } else if (l.starts_with(":")) {
                copy[table][l.substr(1, l.find(' ') - 1)].clear();
            } else if (l.starts_with("-A ")) {
                const auto chain = l.substr(3, l.find(' ', 3) - 3);
                if (!copy[table].contains(chain)) {
                    return Error::invalid("no chain " + chain);
                }
                copy[table][chain].push_back(l.substr(3 + chain.size() + 1));
            } else if (l.starts_with("-I ")) {
                const auto chain = l.substr(3, l.find(' ', 3) - 3);
                auto& rules = copy[table][chain];
                const std::string rest = l.substr(3 + chain.size() + 3);  // skip " 1 "
                rules.insert(rules.begin(), rest);
                if (rest.find("-j KUBE-") != std::string::npos) {
                    const auto target = rest.substr(rest.find("-j ") + 3);
                    if (!copy[table].contains(target)) {
                        return Error::invalid("no chain " + target);
                    }
                }
            }
        }
        tables_ = copy;
        return ok();
    }

    Result<std::string> save(net::Family /*f*/, std::string_view table) override {
        ++saves;
        std::string out = "*" + std::string(table) + "\n";
        const auto& t = tables_.at(std::string(table));
        for (const auto& [chain, rules] : t) {
            out += ":" + chain + (chain.starts_with("KUBE-") ? " - [0:0]\n" : " ACCEPT [5:300]\n");
        }
        for (const auto& [chain, rules] : t) {
            for (const auto& r : rules) {
                out += "-A " + chain + " " + r + "\n";
            }
        }
        return out + "COMMIT\n";
    }

    std::vector<std::string>& chain(const std::string& table, const std::string& chain) {
        return tables_[table][chain];
    }
    void deleteChain(const std::string& table, const std::string& chain) {
        tables_[table].erase(chain);
    }

    std::vector<std::string> payloads;
    std::vector<std::string> statePayloads;
    int saves = 0;
    bool failNext = false;

  private:
    std::map<std::string, std::map<std::string, std::vector<std::string>>> tables_;
};

}  // namespace

TEST_CASE("IptablesSync writes chains and jump rules once and then only what changed",
          "[iptables][sync]") {
    FakeIptables ipt;
    IptablesSync sync(ipt);
    RulesInput in = referenceInput();

    auto r = sync.sync(in);
    REQUIRE(kipvs::test::succeeded(r));
    CHECK(r->restored);
    CHECK(r->jumpRulesInserted == 9);
    REQUIRE(ipt.payloads.size() == 1);
    // One restore: the chains, then the jump rules, each table committed once.
    CHECK(countContaining(ipt.payloads[0], "COMMIT") == 2);
    CHECK(countContaining(ipt.payloads[0], "-I ") == 9);
    CHECK(hasLine(ipt.payloads[0],
                  "-I OUTPUT 1 -m comment --comment \"kubernetes service "
                  "portals\" -j KUBE-SERVICES"));
    // Inserted at position 1 in order, the filter hooks end up as in reference §5.1.
    CHECK(ipt.chain("filter", "INPUT") ==
          std::vector<std::string>{
              "-m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER",
              "-m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL",
              "-m comment --comment \"kubernetes health check rules\" -j KUBE-NODE-PORT"});
    CHECK(ipt.chain("filter", "FORWARD").size() == 2);
    CHECK(ipt.chain("filter", "FORWARD")[0].ends_with("-j KUBE-PROXY-FIREWALL"));

    SECTION("the same input again restores nothing") {
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK_FALSE(again->restored);
        CHECK(again->jumpRulesInserted == 0);
        CHECK(ipt.payloads.size() == 1);
        auto v = sync.verify(net::Family::V4);
        REQUIRE(kipvs::test::succeeded(v));
        CHECK_FALSE(*v);
    }
    SECTION("a changed input rewrites the chains and leaves the jump rules") {
        in.noNodeAccess.clear();
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK(again->restored);
        CHECK(again->jumpRulesInserted == 0);
        REQUIRE(ipt.payloads.size() == 2);
        CHECK(ipt.payloads[1] == buildRestorePayload(in));
        CHECK(ipt.chain("filter", "KUBE-IPVS-OUT-FILTER").empty());
        CHECK(ipt.chain("filter", "INPUT").size() == 3);
    }
    SECTION("a deleted jump rule is seen by verify() and put back alone") {
        auto& input = ipt.chain("filter", "INPUT");
        input.erase(input.begin() + 1);  // KUBE-PROXY-FIREWALL
        auto v = sync.verify(net::Family::V4);
        REQUIRE(kipvs::test::succeeded(v));
        CHECK(*v);
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK(again->restored);
        CHECK(again->jumpRulesInserted == 1);
        CHECK(ipt.chain("filter", "INPUT").size() == 3);
        CHECK(ipt.chain("filter", "INPUT")[0].ends_with("-j KUBE-PROXY-FIREWALL"));
        // verify() said the state changed, so the chains were rewritten as well.
        CHECK(countContaining(ipt.payloads.back(), ":KUBE-SERVICES - [0:0]") == 1);
        auto clean = sync.verify(net::Family::V4);
        REQUIRE(kipvs::test::succeeded(clean));
        CHECK_FALSE(*clean);
    }
    SECTION("a missing jump rule is put back even without verify()") {
        ipt.chain("nat", "POSTROUTING").clear();
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK(again->jumpRulesInserted == 1);
        // Only the jump rule: our chains were not touched.
        CHECK(ipt.payloads.back() ==
              "*nat\n-I POSTROUTING 1 -m comment --comment \"kubernetes "
              "postrouting rules\" -j KUBE-POSTROUTING\nCOMMIT\n");
    }
    SECTION("a rule changed in one of our chains is seen by verify() and rewritten") {
        ipt.chain("nat", "KUBE-MARK-MASQ").push_back("-j ACCEPT");
        auto v = sync.verify(net::Family::V4);
        REQUIRE(kipvs::test::succeeded(v));
        CHECK(*v);
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK(again->restored);
        CHECK(again->jumpRulesInserted == 0);
        CHECK(ipt.chain("nat", "KUBE-MARK-MASQ").size() == 1);
    }
    SECTION("a deleted chain is recreated before its jump rule is inserted") {
        ipt.deleteChain("filter", "KUBE-IPVS-OUT-FILTER");
        ipt.chain("filter", "OUTPUT").clear();
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK(again->restored);
        CHECK(again->jumpRulesInserted == 1);
        CHECK(ipt.chain("filter", "KUBE-IPVS-OUT-FILTER").size() == 1);
    }
    SECTION("other components' rules and counters are not our changes") {
        ipt.chain("filter", "INPUT").push_back("-p tcp --dport 22 -j ACCEPT");
        ipt.chain("nat", "PREROUTING")
            .insert(ipt.chain("nat", "PREROUTING").begin(), "-j CNI-HOSTPORT-DNAT");
        auto v = sync.verify(net::Family::V4);
        REQUIRE(kipvs::test::succeeded(v));
        CHECK_FALSE(*v);
    }
    SECTION("invalidate() forces a rewrite") {
        sync.invalidate();
        auto again = sync.sync(in);
        REQUIRE(kipvs::test::succeeded(again));
        CHECK(again->restored);
        CHECK(ipt.payloads.size() == 2);
    }
}

TEST_CASE("IptablesSync retries after a failed restore", "[iptables][sync]") {
    FakeIptables ipt;
    IptablesSync sync(ipt);
    RulesInput in = referenceInput();
    ipt.failNext = true;
    auto r = sync.sync(in);
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().message.find("iptables-restore: exit status 2") != std::string::npos);
    CHECK(r.error().message.find("iptables sync (IPv4)") == 0);
    auto again = sync.sync(in);
    REQUIRE(kipvs::test::succeeded(again));
    CHECK(again->restored);
    CHECK(again->jumpRulesInserted == 9);
    CHECK(ipt.payloads.size() == 2);
}

TEST_CASE("IptablesSync adopts the rules a previous process wrote", "[iptables][sync]") {
    FakeIptables ipt;
    RulesInput in = referenceInput();
    {
        IptablesSync first(ipt);
        REQUIRE(kipvs::test::succeeded(first.sync(in)));
    }
    REQUIRE(ipt.payloads.size() == 1);
    REQUIRE(ipt.statePayloads.size() == 1);
    CHECK(ipt.chain("filter", "KUBE-IPVS-STATE").size() == 1);

    IptablesSync second(ipt);
    SECTION("the same input after a restart writes nothing") {
        auto r = second.sync(in);
        REQUIRE(kipvs::test::succeeded(r));
        CHECK_FALSE(r->restored);
        CHECK(ipt.payloads.size() == 1);
        auto v = second.verify(net::Family::V4);
        REQUIRE(kipvs::test::succeeded(v));
        CHECK_FALSE(*v);
    }
    SECTION("another input after a restart is written") {
        in.noNodeAccess.clear();
        auto r = second.sync(in);
        REQUIRE(kipvs::test::succeeded(r));
        CHECK(r->restored);
        CHECK(ipt.payloads.size() == 2);
        CHECK(ipt.statePayloads.size() == 2);
    }
    SECTION("a chain changed while no process ran is rewritten") {
        ipt.chain("nat", "KUBE-MARK-MASQ").push_back("-j ACCEPT");
        auto r = second.sync(in);
        REQUIRE(kipvs::test::succeeded(r));
        CHECK(r->restored);
        CHECK(ipt.chain("nat", "KUBE-MARK-MASQ").size() == 1);
    }
}

TEST_CASE("IptablesSync without a sync has nothing to verify against", "[iptables][sync]") {
    FakeIptables ipt;
    IptablesSync sync(ipt);
    auto v = sync.verify(net::Family::V4);
    REQUIRE(kipvs::test::succeeded(v));
    CHECK(*v);
    CHECK(ipt.saves == 0);
}
