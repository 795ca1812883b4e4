#include <catch2/catch.hpp>

#include "builders.h"
#include "ipvs/names.h"
#include "proxy/cleanup.h"
#include "proxy/desired.h"
#include "tests/fakes/fake_kernel.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace kipvs::testing;
using ipvs::Protocol;
using ipvs::SetEntry;

namespace {

const char* kSave =
    "*nat\n"
    ":PREROUTING ACCEPT [0:0]\n"
    ":OUTPUT ACCEPT [0:0]\n"
    ":POSTROUTING ACCEPT [0:0]\n"
    ":KUBE-SERVICES - [0:0]\n"
    ":KUBE-POSTROUTING - [0:0]\n"
    ":KUBE-MARK-MASQ - [0:0]\n"
    ":DOCKER - [0:0]\n"
    "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
    "-A PREROUTING -j DOCKER\n"
    "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
    "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
    "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n"
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
    "-A DOCKER -i docker0 -j RETURN\n"
    "COMMIT\n"
    "*filter\n"
    ":INPUT ACCEPT [0:0]\n"
    ":KUBE-IPVS-FILTER - [0:0]\n"
    "-A INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER\n"
    "-A INPUT -p tcp --dport 22 -j ACCEPT\n"
    "-A KUBE-IPVS-FILTER -m set --match-set KUBE-IPVS-IPS dst -j REJECT\n"
    "COMMIT\n";

}  // namespace

TEST_CASE("the cleanup payload removes our jump rules and chains, nothing else", "[cleanup]") {
    CHECK(cleanupPayload(kSave) ==
          "*nat\n"
          ":KUBE-SERVICES - [0:0]\n"
          ":KUBE-POSTROUTING - [0:0]\n"
          ":KUBE-MARK-MASQ - [0:0]\n"
          "-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
          "-D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
          "-D POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j "
          "KUBE-POSTROUTING\n"
          "-X KUBE-SERVICES\n"
          "-X KUBE-POSTROUTING\n"
          "-X KUBE-MARK-MASQ\n"
          "COMMIT\n"
          "*filter\n"
          ":KUBE-IPVS-FILTER - [0:0]\n"
          "-D INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER\n"
          "-X KUBE-IPVS-FILTER\n"
          "COMMIT\n");
    CHECK(cleanupPayload("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").empty());
}

TEST_CASE("--cleanup removes what is ours in both families and leaves others' objects",
          "[cleanup]") {
    fakes::FakeIpvs ipvs;
    fakes::FakeAddresses addrs;
    fakes::FakeIpset ipset;
    fakes::FakeIptables ipt4;
    fakes::FakeIptables ipt6;
    addrs.links["eth0"].type = "veth";
    addrs.links["eth0"].addresses = {ip("192.168.1.10")};
    addrs.links["kube-ipvs0"].addresses = {ip("10.96.0.10"), ip("fd00:96::10")};
    auto vs = [&](const char* a, std::uint16_t port, Protocol p = Protocol::TCP) {
        ipvs::VirtualServer v;
        v.key = {ip(a), port, p, 0};
        ipvs.addService(v);
    };
    vs("10.96.0.10", 80);                 // bound on kube-ipvs0
    vs("fd00:96::10", 80);                // bound, IPv6
    vs("10.96.0.11", 53, Protocol::UDP);  // in KUBE-CLUSTER-IP (address not bound any more)
    vs("192.168.1.10", 30080);            // NodePort (port in KUBE-NODE-PORT-TCP)
    vs("192.168.1.10", 8443);             // someone else's, on a node address
    vs("172.16.0.1", 80);                 // someone else's
    vs("10.200.0.5", 80);                 // excluded, though its member is in KUBE-CLUSTER-IP
    for (auto fam : {net::Family::V4, net::Family::V6}) {
        for (const auto& def : setDefs()) {
            ipvs::SetSpec spec;
            spec.name = names::setName(def.base, fam);
            spec.type = def.type;
            spec.family = fam;
            REQUIRE(ipset.create(spec).has_value());
        }
    }
    ipset.sets.at("KUBE-CLUSTER-IP").entries = {
        SetEntry::ipPort(ip("10.96.0.11"), Protocol::UDP, 53),
        SetEntry::ipPort(ip("10.200.0.5"), Protocol::TCP, 80)};
    ipset.sets.at("KUBE-NODE-PORT-TCP").entries = {SetEntry::portOnly(30080)};
    ipvs::SetSpec foreignSet;
    foreignSet.name = "cali40all-ipam-pools";
    REQUIRE(ipset.create(foreignSet).has_value());
    ipt4.saveText[0] = kSave;
    ipt6.saveText[1] = kSave;

    CleanupTargets t{ipvs, addrs, ipset, &ipt4, &ipt6, {cidr("10.200.0.0/16")}};
    const auto rep = cleanup(t);
    CHECK(rep.errors.empty());
    CHECK(rep.virtualServers == 4);
    std::vector<std::string> left;
    for (const auto& [k, v] : ipvs.table) {
        left.push_back(k.toString());
    }
    CHECK(left == std::vector<std::string>{"10.200.0.5:80/TCP", "172.16.0.1:80/TCP",
                                           "192.168.1.10:8443/TCP"});
    CHECK(rep.link);
    CHECK(addrs.links.count("kube-ipvs0") == 0);
    CHECK(rep.sets == static_cast<int>(2 * kSetCount));
    CHECK(ipset.sets.size() == 1);
    CHECK(ipset.sets.count("cali40all-ipam-pools") == 1);
    CHECK(rep.chains == 8);
    for (const auto* ipt : {&ipt4, &ipt6}) {
        const auto& text = ipt == &ipt4 ? ipt->saveText[0] : ipt->saveText[1];
        INFO(text);
        CHECK(text.find("KUBE-") == std::string::npos);
        CHECK(text.find("-A PREROUTING -j DOCKER") != std::string::npos);
        CHECK(text.find("-A INPUT -p tcp --dport 22 -j ACCEPT") != std::string::npos);
    }

    // A second run finds nothing and is not an error.
    const auto again = cleanup(t);
    CHECK(again.errors.empty());
    CHECK(again.virtualServers == 0);
    CHECK(again.sets == 0);
    CHECK_FALSE(again.link);
}

TEST_CASE("--cleanup keeps what marks a virtual server it could not delete, for the next run",
          "[cleanup]") {
    fakes::FakeIpvs ipvs;
    fakes::FakeAddresses addrs;
    fakes::FakeIpset ipset;
    addrs.links["kube-ipvs0"].addresses = {ip("10.96.0.10")};
    ipvs::VirtualServer bound;
    bound.key = {ip("10.96.0.10"), 80, Protocol::TCP, 0};
    ipvs.addService(bound);
    ipvs::VirtualServer member;
    member.key = {ip("10.96.0.11"), 53, Protocol::UDP, 0};
    ipvs.addService(member);
    for (const auto& def : setDefs()) {
        ipvs::SetSpec spec;
        spec.name = names::setName(def.base, net::Family::V4);
        spec.type = def.type;
        REQUIRE(ipset.create(spec).has_value());
    }
    ipset.sets.at("KUBE-CLUSTER-IP").entries = {
        SetEntry::ipPort(ip("10.96.0.11"), Protocol::UDP, 53)};
    ipvs.refuse = [](const ipvs::Op& op) { return op.service.key.port == 53 ? ENOMEM : 0; };
    CleanupTargets t{ipvs, addrs, ipset, nullptr, nullptr, {}};
    const auto rep = cleanup(t);
    CHECK(rep.virtualServers == 1);
    REQUIRE(rep.errors.size() == 2);
    CHECK(rep.errors[1].find("are kept") != std::string::npos);
    CHECK(ipvs.table.size() == 1);
    CHECK(addrs.links.count("kube-ipvs0") == 1);
    CHECK(ipset.sets.count("KUBE-CLUSTER-IP") == 1);

    // The next run still knows it for ours.
    ipvs.refuse = nullptr;
    const auto again = cleanup(t);
    CHECK(again.errors.empty());
    CHECK(again.virtualServers == 1);
    CHECK(ipvs.table.empty());
    CHECK(again.link);
    CHECK(ipset.sets.empty());
}
