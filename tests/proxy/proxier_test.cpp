// The reconciler against stateful fakes of every kernel interface: load a kernel state, feed
// API objects, sync, and check both the resulting kernel state and the writes issued.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <future>
#include <memory>
#include <thread>

#include "builders.h"
#include "ipvs/names.h"
#include "proxy/proxier.h"
#include "tests/fakes/fake_kernel.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace kipvs::testing;
using ipvs::Protocol;
using ipvs::SetEntry;

namespace {

class FakeRules final : public RulesSync {
  public:
    std::vector<ipvs::RulesInput> syncs;
    int failNext = 0;
    bool driftNext = false;
    Result<ipvs::IptablesSync::Report> sync(const ipvs::RulesInput& in) override {
        syncs.push_back(in);
        if (failNext > 0) {
            --failNext;
            return Error::invalid("iptables-restore: line 7 failed");
        }
        ipvs::IptablesSync::Report r;
        r.restored = true;
        return r;
    }
    Result<bool> verify(net::Family /*f*/, const std::string& /*saveOutput*/) override {
        ++verifies;
        const bool d = driftNext;
        driftNext = false;
        return d;
    }
    int verifies = 0;
};

const std::string kDummy(names::kDummyInterface);

struct Fixture {
    fakes::Journal journal;
    fakes::FakeIpvs ipvs;
    fakes::FakeAddresses addrs;
    fakes::FakeIpset ipset;
    fakes::FakeConntrack conntrack;
    FakeRules rules;
    metrics::Registry reg;
    ProxierConfig cfg;
    std::unique_ptr<Proxier> p;
    std::int64_t wallNs = 1'800'000'000'000'000'000;

    explicit Fixture(net::Family f = net::Family::V4) {
        ipvs.journal = &journal;
        addrs.journal = &journal;
        ipset.journal = &journal;
        addrs.links["eth0"].type = "veth";
        addrs.links["eth0"].addresses = {ip("192.168.1.10"), ip("fd00:1::10")};
        addrs.links["lo"].type = "loopback";
        addrs.links["lo"].addresses = {ip("127.0.0.1"), ip("::1")};
        cfg.family = f;
        cfg.nodeName = "node-1";
    }

    Proxier& make() {
        p = std::make_unique<Proxier>(cfg, KernelRefs{ipvs, addrs, ipset, rules, &conntrack}, reg);
        return *p;
    }

    // A fresh proxier that has adopted the kernel state and seen every informer sync.
    Proxier& start() {
        make();
        REQUIRE(p->adopt());
        p->onNodeUpsert(node("node-1", "192.168.1.10", "zone-a"));
        p->setServicesSynced();
        p->setSlicesSynced();
        p->setNodeSynced();
        return *p;
    }

    SyncTime now() const { return {std::chrono::steady_clock::now(), wallNs}; }
    bool sync() { return p->syncAll(now()); }
    int writes() const { return ipvs.totalWrites() + addrs.totalWrites() + ipset.totalWrites(); }

    KernelSnapshot snapshot() {
        fakes::FakeIptables ipt;  // the rules' verdict comes from FakeRules::verify
        auto snap = takeKernelSnapshot({ipvs, addrs, ipset, &ipt}, {cfg.family}, cfg.binding);
        REQUIRE(snap.has_value());
        return *snap;
    }

    VerifyReport verify() {
        const auto seq = p->opSeq();
        return p->verify(snapshot(), seq);
    }

    // The fake IPVS table as "vs -> rs:weight ..." lines.
    std::vector<std::string> table() const {
        std::vector<std::string> out;
        for (const auto& [k, v] : ipvs.table) {
            std::string s = k.toString() + " ->";
            for (const auto& [dk, d] : v.dests) {
                s += " " + dk.toString() + "@" + std::to_string(d.dest.weight);
            }
            out.push_back(s);
        }
        return out;
    }

    const std::set<SetEntry>& set(std::string_view base, net::Family f = net::Family::V4) {
        return ipset.sets.at(names::setName(base, f)).entries;
    }
    const std::set<net::IpAddress>& bound() { return addrs.links.at(kDummy).addresses; }

    double ops(const char* object, const char* op, const char* result = "done") const {
        return reg.value("kube_ipvs_kernel_operations_total",
                         {{"ip_family", cfg.family == net::Family::V4 ? "IPv4" : "IPv6"},
                          {"object", object},
                          {"op", op},
                          {"result", result}});
    }
};

k8s::Service web() {
    return ServiceBuilder("default", "web", "10.96.0.10").port("http", 80);
}

k8s::EndpointSlice webSlice(std::initializer_list<const char*> ips) {
    SliceBuilder b("default", "web-abc", "web");
    b.port("http", 8080);
    for (const auto* a : ips) {
        b.ep(a);
    }
    return b;
}

const ipvs::ServiceKey kWebVs{ip("10.96.0.10"), 80, Protocol::TCP, 0};

// Services s0..s<n-1> with ClusterIPs net0..net249 (a /24 given as "a.b.c."), the 251st and
// later on the next port: n virtual servers, at most 250 addresses.
void addServices(Proxier& p, int n, const std::string& net) {
    for (int i = 0; i < n; ++i) {
        p.onServiceUpsert(ServiceBuilder("default", ("s" + std::to_string(i)).c_str(),
                                         (net + std::to_string(i % 250)).c_str())
                              .port("p", static_cast<std::uint16_t>(80 + i / 250)));
    }
}

// A started IPv4 proxier with web() and its two endpoints, programmed.
Proxier& startWithWeb(Fixture& f) {
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    REQUIRE(f.sync());
    return p;
}

// A started IPv4 proxier with 300 Services under `net`, programmed in one sync.
Proxier& startWith300(Fixture& f, const std::string& net) {
    f.cfg.servicesPerStep = 1000;
    auto& p = f.start();
    addServices(p, 300, net);
    REQUIRE(f.sync());
    return p;
}

}  // namespace

TEST_CASE("nothing is programmed until Services, EndpointSlices and the Node synced", "[proxier]") {
    Fixture f;
    auto& p = f.make();
    REQUIRE(p.adopt());
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    p.setServicesSynced();
    p.setSlicesSynced();
    CHECK_FALSE(p.initialized());
    f.sync();
    CHECK(f.ipvs.table.empty());
    CHECK(f.bound().empty());
    p.onNodeUpsert(node("node-1", "192.168.1.10"));
    p.setNodeSynced();
    CHECK(p.initialized());
    REQUIRE(f.sync());
    CHECK(f.table() == std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1"});
}

TEST_CASE("every Service and EndpointSlice event is counted, as kube-proxy counts them",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    const auto changes = [&](const char* name) { return f.reg.value(name, {}); };
    CHECK(changes("kubeproxy_sync_proxy_rules_service_changes_total") == 0);
    p.onServiceUpsert(web());
    p.onServiceUpsert(ServiceBuilder("default", "v6", "fd00::10").port("p", 80));  // other family
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    p.onSliceUpsert(webSlice({"10.244.1.8"}));
    p.onServiceDelete({"default", "v6"});
    CHECK(changes("kubeproxy_sync_proxy_rules_service_changes_total") == 3);
    CHECK(changes("kubeproxy_sync_proxy_rules_endpoint_changes_total") == 2);
}

TEST_CASE("adoption creates kube-ipvs0 and every set of the family", "[proxier]") {
    Fixture f(net::Family::V6);
    f.start();
    CHECK(f.addrs.links.count(kDummy) == 1);
    CHECK(f.ipset.sets.size() == kSetCount);
    CHECK(f.ipset.sets.count("KUBE-6-CLUSTER-IP") == 1);
    CHECK(f.ipset.sets.at("KUBE-6-CLUSTER-IP").spec.family == net::Family::V6);
    CHECK(f.ipset.sets.at("KUBE-6-NODE-PORT-TCP").spec.type == ipvs::SetType::BitmapPort);
}

TEST_CASE("a ClusterIP Service is programmed: IPVS, address, sets, rules", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    REQUIRE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.2.7:8080@1"});
    CHECK(f.ipvs.table.at(kWebVs).vs.scheduler.view() == "rr");
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10")});
    CHECK(f.set(names::kSetClusterIp) ==
          std::set<SetEntry>{SetEntry::ipPort(ip("10.96.0.10"), Protocol::TCP, 80)});
    CHECK(f.set(names::kSetIpvsIps) == std::set<SetEntry>{SetEntry::address(ip("10.96.0.10"))});
    REQUIRE_FALSE(f.rules.syncs.empty());
    const auto& in = f.rules.syncs.back();
    CHECK(in.nonEmptySets.count(std::string(names::kSetClusterIp)) == 1);
    CHECK(in.nonEmptySets.count(std::string(names::kSetLoadBalancer)) == 0);
    CHECK(f.ops("ipvs", "add-service") == 1);
    CHECK(f.ops("ipvs", "add-dest") == 2);
    CHECK(f.ops("address", "add") == 1);
}

TEST_CASE("a sync with no changes writes nothing and runs no iptables-restore", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    REQUIRE(f.sync());
    const int before = f.writes();
    const auto restores = f.rules.syncs.size();
    const int applies = f.ipvs.applyCalls;
    // Re-delivering identical objects (an informer resync) changes nothing either.
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    CHECK_FALSE(p.pending());
    REQUIRE(f.sync());
    REQUIRE(f.sync());
    CHECK(f.writes() == before);
    CHECK(f.rules.syncs.size() == restores);
    CHECK(f.ipvs.applyCalls == applies);
}

TEST_CASE("one endpoint change writes exactly its delta", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    for (int i = 0; i < 50; ++i) {
        p.onServiceUpsert(ServiceBuilder("default", ("other-" + std::to_string(i)).c_str(),
                                         ("10.96.1." + std::to_string(i)).c_str())
                              .port("p", 80));
    }
    REQUIRE(f.sync());
    f.ipvs.writes.clear();
    f.addrs.writes.clear();
    f.ipset.writes.clear();
    f.journal.clear();

    // 10.244.2.7 replaced by 10.244.3.7 (TCP: the old one drains at weight 0).
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.3.7"}));
    REQUIRE(f.sync());
    CHECK(f.journal == std::vector<std::string>{
                           "ipvs update-dest 10.96.0.10:80/TCP -> 10.244.2.7:8080",
                           "ipvs add-dest 10.96.0.10:80/TCP -> 10.244.3.7:8080",
                       });
    CHECK(f.table().front() ==
          "10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.2.7:8080@0 10.244.3.7:8080@1");
    CHECK(p.terminatingCount() == 1);
}

TEST_CASE("graceful termination: weight 0 until the connections end", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    REQUIRE(f.sync());
    const ipvs::DestKey gone{ip("10.244.2.7"), 8080};
    f.ipvs.setConns(kWebVs, gone, 3, 1);

    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    REQUIRE(f.sync());
    REQUIRE(f.ipvs.dest(kWebVs, gone) != nullptr);
    CHECK(f.ipvs.dest(kWebVs, gone)->dest.weight == 0);
    CHECK(p.reapTerminating() == 0);  // still has connections
    CHECK(f.ipvs.dest(kWebVs, gone) != nullptr);
    // A sync in between does not touch the draining server again.
    const int w = f.ipvs.totalWrites();
    REQUIRE(f.sync());
    CHECK(f.ipvs.totalWrites() == w);

    f.ipvs.setConns(kWebVs, gone, 0, 1);
    CHECK(p.reapTerminating() == 0);  // inactive connections count too
    const auto gauge = [&] {
        const std::string line = "kube_ipvs_terminating_real_servers{ip_family=\"IPv4\"} ";
        const auto text = f.reg.render();
        const auto at = text.find(line);
        REQUIRE(at != std::string::npos);
        return text.substr(at + line.size(), text.find('\n', at) - at - line.size());
    };
    CHECK(gauge() == "1");
    f.ipvs.setConns(kWebVs, gone, 0, 0);
    CHECK(p.reapTerminating() == 1);
    CHECK(f.ipvs.dest(kWebVs, gone) == nullptr);
    CHECK(p.terminatingCount() == 0);
    CHECK(gauge() == "0");  // without waiting for a sync
}

TEST_CASE("a draining real server wanted again returns to weight 1 in place", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    REQUIRE(f.sync());
    f.ipvs.setConns(kWebVs, {ip("10.244.2.7"), 8080}, 2, 0);
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    REQUIRE(f.sync());
    f.journal.clear();
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    REQUIRE(f.sync());
    CHECK(f.journal ==
          std::vector<std::string>{"ipvs update-dest 10.96.0.10:80/TCP -> 10.244.2.7:8080"});
    CHECK(f.ipvs.dest(kWebVs, {ip("10.244.2.7"), 8080})->dest.weight == 1);
    CHECK(f.ipvs.dest(kWebVs, {ip("10.244.2.7"), 8080})->activeConns == 2);
    CHECK(p.terminatingCount() == 0);
}

TEST_CASE("UDP real servers go at once, with their conntrack entries", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(
        ServiceBuilder("kube-system", "dns", "10.96.0.53").port("dns", 53, Protocol::UDP));
    SliceBuilder two("kube-system", "dns-1", "dns");
    two.port("dns", 53, Protocol::UDP).ep("10.244.1.2").ep("10.244.1.3");
    p.onSliceUpsert(two);
    REQUIRE(f.sync());
    auto flow = [](const char* client, const char* backend) {
        ipvs::ConntrackEntry e;
        e.protocol = Protocol::UDP;
        e.original = {ip(client), ip("10.96.0.53"), 40000, 53};
        e.reply = {ip(backend), ip(client), 53, 40000};
        return e;
    };
    f.conntrack.entries = {flow("10.244.9.1", "10.244.1.2"), flow("10.244.9.2", "10.244.1.3")};

    SliceBuilder one("kube-system", "dns-1", "dns");
    one.port("dns", 53, Protocol::UDP).ep("10.244.1.2");
    p.onSliceUpsert(one);
    REQUIRE(f.sync());
    const ipvs::ServiceKey vs{ip("10.96.0.53"), 53, Protocol::UDP, 0};
    CHECK(f.ipvs.dest(vs, {ip("10.244.1.3"), 53}) == nullptr);
    CHECK(p.terminatingCount() == 0);
    REQUIRE(f.conntrack.entries.size() == 1);
    CHECK(f.conntrack.entries[0].reply.src == ip("10.244.1.2"));
    CHECK(f.reg.value("kubeproxy_conntrack_reconciler_deleted_entries_total",
                      {{"ip_family", "IPv4"}}) == 1);
}

TEST_CASE("deleting a UDP Service leaves another Service's flows to the same endpoint",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    for (const char* name : {"dns", "dns-alt"}) {
        const bool alt = std::string(name) == "dns-alt";
        p.onServiceUpsert(ServiceBuilder("kube-system", name, alt ? "10.96.0.54" : "10.96.0.53")
                              .port("dns", 53, Protocol::UDP));
        p.onSliceUpsert(SliceBuilder("kube-system", alt ? "dns-alt-1" : "dns-1", name)
                            .port("dns", 53, Protocol::UDP)
                            .ep("10.244.1.3"));
    }
    REQUIRE(f.sync());
    auto flow = [](const char* vip) {
        ipvs::ConntrackEntry e;
        e.protocol = Protocol::UDP;
        e.original = {ip("10.244.9.1"), ip(vip), 40000, 53};
        e.reply = {ip("10.244.1.3"), ip("10.244.9.1"), 53, 40000};
        return e;
    };
    f.conntrack.entries = {flow("10.96.0.53"), flow("10.96.0.54")};
    p.onServiceDelete({"kube-system", "dns"});
    REQUIRE(f.sync());
    REQUIRE(f.conntrack.entries.size() == 1);
    CHECK(f.conntrack.entries[0].original.dst == ip("10.96.0.54"));
}

TEST_CASE("a deleted Service takes its virtual server, address and members with it, in order",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    REQUIRE(f.sync());
    f.journal.clear();
    p.onServiceDelete({"default", "web"});
    p.onSliceDelete({"default", "web-abc"});
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.empty());
    CHECK(f.bound().empty());
    CHECK(f.set(names::kSetClusterIp).empty());
    CHECK(f.set(names::kSetIpvsIps).empty());
    // The virtual server goes before the set member that marks it as ours, and the address
    // before its KUBE-IPVS-IPS member (so host ports stay filtered until it is unbound).
    CHECK(f.journal == std::vector<std::string>{
                           "ipvs delete-service 10.96.0.10:80/TCP",
                           "address del 10.96.0.10",
                           "ipset del KUBE-CLUSTER-IP",
                           "ipset del KUBE-IPVS-IPS",
                       });
    CHECK(f.rules.syncs.back().nonEmptySets.count(std::string(names::kSetClusterIp)) == 0);
}

TEST_CASE("a new Service's member and address come before its virtual server", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    REQUIRE(f.sync());
    f.journal.clear();
    p.onServiceUpsert(web());
    REQUIRE(f.sync());
    CHECK(f.journal == std::vector<std::string>{
                           "ipset add KUBE-CLUSTER-IP",
                           "ipset add KUBE-IPVS-IPS",
                           "address add 10.96.0.10",
                           "ipvs add-service 10.96.0.10:80/TCP",
                       });
}

namespace {

// Runs a first proxier to program `objects`, then returns the fixture for a restart.
void programAndStop(Fixture& f) {
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    p.onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                          .type(k8s::ServiceType::NodePort)
                          .port("p", 80, Protocol::TCP, 30080));
    p.onServiceUpsert(ServiceBuilder("default", "kubernetes", "10.96.0.1").port("https", 443));
    REQUIRE(f.sync());
    f.p.reset();
}

void feedSame(Proxier& p) {
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    p.onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                          .type(k8s::ServiceType::NodePort)
                          .port("p", 80, Protocol::TCP, 30080));
    p.onServiceUpsert(ServiceBuilder("default", "kubernetes", "10.96.0.1").port("https", 443));
}

// What programAndStop() left in the kernel: the IPVS table and the write count.
struct Stopped {
    std::vector<std::string> table;
    int writes = 0;
};

// programAndStop(), then a new proxier that has done prepareAdopt() only.
Stopped stopAndPrepare(Fixture& f) {
    programAndStop(f);
    Stopped s{f.table(), f.writes()};
    f.make();
    REQUIRE(f.p->prepareAdopt());
    return s;
}

// Its first sync writes nothing, and the table is as it was.
void checkConvergedWithoutWrites(Fixture& f, const Stopped& stopped) {
    REQUIRE(f.sync());
    CHECK(f.writes() == stopped.writes);
    CHECK(f.table() == stopped.table);
}

// The Node and the objects of programAndStop() again, each list complete.
void listSame(Proxier& p) {
    p.onNodeUpsert(node("node-1", "192.168.1.10", "zone-a"));
    feedSame(p);
    p.setServicesSynced();
    p.setSlicesSynced();
    p.setNodeSynced();
}

}  // namespace

TEST_CASE("a restart with nothing changed writes nothing to IPVS, addresses or sets", "[proxier]") {
    Fixture f;
    programAndStop(f);
    const auto before = f.table();
    const auto lastRules = f.rules.syncs.back();
    const auto rulesSyncs = f.rules.syncs.size();
    const int writes = f.writes();
    const int applies = f.ipvs.applyCalls;

    f.make();
    REQUIRE(f.p->adopt());
    listSame(*f.p);
    REQUIRE(f.sync());
    CHECK(f.writes() == writes);
    CHECK(f.ipvs.applyCalls == applies);
    CHECK(f.table() == before);
    // The rules are handed the very input of the previous run, once (ipvs::IptablesSync then
    // finds them in place and restores nothing); the cold-node bootstrap rules are skipped.
    CHECK(f.rules.syncs.size() == rulesSyncs + 1);
    CHECK(f.rules.syncs.back() == lastRules);
}

TEST_CASE("a restart reads the IPVS table on another thread while the lists arrive", "[proxier]") {
    Fixture f;
    const auto stopped = stopAndPrepare(f);
    // The reader waits at the start of its walk until the lists are in and a sync was tried.
    std::promise<void> listed;
    auto listedNow = listed.get_future();
    f.ipvs.onWalk = [&]() -> Result<void> {
        listedNow.wait();
        return ok();
    };
    Result<std::unique_ptr<Proxier::OwnedTable>> read = Error::invalid("not read");
    std::thread reader([&] { read = f.p->readOwned(f.ipvs); });
    listSame(*f.p);
    CHECK(f.p->initialized());
    CHECK_FALSE(f.p->adopted());
    // Not read yet: nothing is programmed, not even as a cold start.
    CHECK_FALSE(f.p->programEarly());
    CHECK(f.p->syncStep(f.now()).done);
    CHECK(f.writes() == stopped.writes);
    listed.set_value();
    reader.join();
    REQUIRE(read);
    f.p->finishAdopt(std::move(*read));
    CHECK(f.p->adopted());
    CHECK(f.p->knownVirtualServers() == stopped.table.size());
    checkConvergedWithoutWrites(f, stopped);
}

TEST_CASE("a failed read of the IPVS table leaves adoption to a later adopt()", "[proxier]") {
    Fixture f;
    const auto stopped = stopAndPrepare(f);
    f.ipvs.onWalk = []() -> Result<void> { return Error::sys(ENOBUFS, "IPVS walk"); };
    auto read = f.p->readOwned(f.ipvs);
    REQUIRE_FALSE(read);
    CHECK(read.error().message.find("read IPVS table") != std::string::npos);
    listSame(*f.p);
    CHECK_FALSE(f.p->adopted());
    CHECK(f.p->syncStep(f.now()).done);
    CHECK(f.writes() == stopped.writes);
    f.ipvs.onWalk = nullptr;
    REQUIRE(f.p->adopt());
    checkConvergedWithoutWrites(f, stopped);
}

TEST_CASE("after a restart, what vanished while we were down is removed; others' objects stay",
          "[proxier]") {
    Fixture f;
    f.cfg.excludeCidrs = {cidr("10.200.0.0/16")};
    programAndStop(f);
    // Someone else's virtual servers: one on an address we never owned, one excluded.
    ipvs::VirtualServer foreign;
    foreign.key = {ip("192.168.1.10"), 8443, Protocol::TCP, 0};
    foreign.scheduler = *ipvs::ShortName::make("wlc");
    f.ipvs.addService(foreign);
    ipvs::VirtualServer excludedVs;
    excludedVs.key = {ip("10.200.0.5"), 80, Protocol::TCP, 0};
    f.ipvs.addService(excludedVs);
    // ...and an excluded one that looks like ours (its member is in KUBE-CLUSTER-IP).
    f.ipset.sets.at("KUBE-CLUSTER-IP")
        .entries.insert(SetEntry::ipPort(ip("10.200.0.5"), Protocol::TCP, 80));

    f.make();
    REQUIRE(f.p->adopt());
    f.p->onNodeUpsert(node("node-1", "192.168.1.10"));
    // "web" and its slice were deleted while we were down.
    f.p->onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                             .type(k8s::ServiceType::NodePort)
                             .port("p", 80, Protocol::TCP, 30080));
    f.p->onServiceUpsert(ServiceBuilder("default", "kubernetes", "10.96.0.1").port("https", 443));
    f.p->setServicesSynced();
    f.p->setSlicesSynced();
    f.p->setNodeSynced();
    REQUIRE(f.sync());
    CHECK(f.table() == std::vector<std::string>{
                           "10.96.0.1:443/TCP ->",
                           "10.96.0.20:80/TCP ->",
                           "10.200.0.5:80/TCP ->",
                           "192.168.1.10:8443/TCP ->",
                           "192.168.1.10:30080/TCP ->",
                       });
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.1"), ip("10.96.0.20")});
    CHECK(f.set(names::kSetClusterIp) ==
          std::set<SetEntry>{SetEntry::ipPort(ip("10.96.0.1"), Protocol::TCP, 443),
                             SetEntry::ipPort(ip("10.96.0.20"), Protocol::TCP, 80)});
}

TEST_CASE("the API server's own Service is programmed before the bulk", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    for (int i = 0; i < 20; ++i) {
        p.onServiceUpsert(ServiceBuilder("default", ("svc-" + std::to_string(i)).c_str(),
                                         ("10.96.2." + std::to_string(i)).c_str())
                              .port("p", 80));
    }
    p.onServiceUpsert(ServiceBuilder("default", "kubernetes", "10.96.0.1").port("https", 443));
    const auto first = p.syncStep(f.now());
    CHECK_FALSE(first.done);
    CHECK(f.table() == std::vector<std::string>{"10.96.0.1:443/TCP ->"});
    REQUIRE(f.rules.syncs.size() == 1);  // masquerade rules come with it
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.size() == 21);
}

TEST_CASE("a cold node programs Services while the lists arrive; removals wait for them",
          "[proxier][early]") {
    Fixture f;
    f.addrs.links[kDummy].type = "dummy";
    f.addrs.links[kDummy].addresses = {ip("10.96.9.9")};  // a leftover address of ours
    auto& p = f.make();
    REQUIRE(p.adopt());
    const int adopted = f.writes();  // kube-ipvs0 and the sets
    p.onServiceUpsert(web());
    CHECK_FALSE(p.programEarly());  // the Node is not known yet
    CHECK(p.syncStep(f.now()).done);
    CHECK(f.writes() == adopted);
    p.onNodeUpsert(node("node-1", "192.168.1.10"));
    p.setNodeSynced();
    REQUIRE(p.programEarly());
    p.onSliceUpsert(webSlice({"10.244.1.7"}));
    // A slice whose Service has not arrived yet: nothing to program for it.
    p.onSliceUpsert(
        SliceBuilder("default", "late-abc", "late").port("http", 8080).ep("10.244.3.3"));
    auto s = p.syncStep(f.now());  // the bootstrap step (masquerade rules)
    CHECK(s.early);
    CHECK(s.done);
    s = p.syncStep(f.now());
    CHECK((s.early && s.done && !s.failed));
    CHECK(f.table() == std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1"});
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10"), ip("10.96.9.9")});
    // More of the lists: the Service of the waiting slice, and a second slice of web.
    p.onServiceUpsert(ServiceBuilder("default", "late", "10.96.0.30").port("http", 80));
    p.onSliceUpsert(SliceBuilder("default", "web-def", "web").port("http", 8080).ep("10.244.2.7"));
    CHECK(p.syncStep(f.now()).early);
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.2.7:8080@1",
                                   "10.96.0.30:80/TCP -> 10.244.3.3:8080@1"});
    CHECK(f.bound().count(ip("10.96.9.9")) == 1);  // removals wait for the complete lists
    CHECK_FALSE(p.initialSyncDone());
    p.setServicesSynced();
    p.setSlicesSynced();
    REQUIRE(p.initialized());
    CHECK_FALSE(p.programEarly());
    const int before = f.ipvs.totalWrites();
    REQUIRE(f.sync());
    CHECK(p.initialSyncDone());
    CHECK(f.ipvs.totalWrites() == before);  // everything was in already
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10"), ip("10.96.0.30")});
}

TEST_CASE("early steps program a Service once, with its slices, or once all are listed",
          "[proxier][early]") {
    Fixture f;
    auto& p = f.make();
    REQUIRE(p.adopt());
    p.onNodeUpsert(node("node-1", "192.168.1.10"));
    p.setNodeSynced();
    p.syncStep(f.now());  // the bootstrap step
    // The Services list is ahead of the slices: web and quiet have no slice yet.
    p.onServiceUpsert(web());
    p.onServiceUpsert(ServiceBuilder("default", "quiet", "10.96.0.40").port("http", 80));
    p.setServicesSynced();
    const int before = f.ipvs.totalWrites();
    auto s = p.syncStep(f.now());
    CHECK((s.early && s.done && !s.failed));
    CHECK(f.ipvs.totalWrites() == before);  // nothing yet: their slices may still come
    CHECK(s.services == 0);
    CHECK(s.left == 0);
    // web's slice: web is programmed, virtual and real servers in one step.
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.1.8"}));
    s = p.syncStep(f.now());
    CHECK(s.services == 1);
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.1.8:8080@1"});
    CHECK(f.ipvs.totalWrites() == before + 3);
    // Every slice is listed: quiet has none, and is programmed without real servers.
    p.setSlicesSynced();
    REQUIRE(p.pending());
    REQUIRE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.1.8:8080@1",
                                   "10.96.0.40:80/TCP ->"});
    CHECK(f.ipvs.totalWrites() == before + 4);
}

TEST_CASE("a slice relabelled to another Service takes its endpoints there", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onServiceUpsert(ServiceBuilder("default", "api", "10.96.0.20").port("http", 80));
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.1.8"}));
    p.onSliceUpsert(SliceBuilder("default", "web-def", "web").port("http", 8080).ep("10.244.1.9"));
    REQUIRE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{
              "10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.1.8:8080@1 10.244.1.9:8080@1",
              "10.96.0.20:80/TCP ->"});
    // web-abc now belongs to api: its endpoints leave web (weight 0 until drained) for api.
    auto moved = SliceBuilder("default", "web-abc", "api").port("http", 8080);
    moved.ep("10.244.1.7").ep("10.244.1.8");
    p.onSliceUpsert(moved);
    REQUIRE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{
              "10.96.0.10:80/TCP -> 10.244.1.7:8080@0 10.244.1.8:8080@0 10.244.1.9:8080@1",
              "10.96.0.20:80/TCP -> 10.244.1.7:8080@1 10.244.1.8:8080@1"});
    // A later version of the moved slice, and of web's other one, replace the kept ones.
    p.onSliceUpsert(SliceBuilder("default", "web-abc", "api").port("http", 8080).ep("10.244.1.7"));
    p.onSliceUpsert(SliceBuilder("default", "web-def", "web").port("http", 8080).ep("10.244.1.6"));
    REQUIRE(f.sync());
    CHECK(f.table()[1] == "10.96.0.20:80/TCP -> 10.244.1.7:8080@1 10.244.1.8:8080@0");
    CHECK(f.table()[0].find("10.244.1.6:8080@1") != std::string::npos);
    CHECK(f.table()[0].find("10.244.1.9:8080@0") != std::string::npos);
    // Deleting each slice takes its endpoints from its current Service only.
    p.onSliceDelete({"default", "web-abc"});
    REQUIRE(f.sync());
    CHECK(f.table()[1] == "10.96.0.20:80/TCP -> 10.244.1.7:8080@0 10.244.1.8:8080@0");
    CHECK(f.table()[0].find("10.244.1.6:8080@1") != std::string::npos);
    p.onSliceDelete({"default", "web-def"});
    REQUIRE(f.sync());
    CHECK(f.table()[0].find("@1") == std::string::npos);
}

TEST_CASE("a duplicate endpoint's ready copy is used whatever the slices' names and order",
          "[proxier]") {
    // The same endpoint in two slices, not ready in one and ready in the other.
    for (bool readyNamedFirst : {false, true}) {
        auto notReady = SliceBuilder("default", readyNamedFirst ? "web-b" : "web-a", "web")
                            .port("http", 8080)
                            .ep("10.244.1.7", nullptr, false, false, false);
        auto ready = SliceBuilder("default", readyNamedFirst ? "web-a" : "web-b", "web")
                         .port("http", 8080)
                         .ep("10.244.1.7");
        for (bool readyFirst : {false, true}) {
            INFO("the ready copy arrives " << (readyFirst ? "first" : "last") << " and is named "
                                           << (readyNamedFirst ? "first" : "last"));
            Fixture f;
            auto& p = f.start();
            p.onServiceUpsert(web());
            p.onSliceUpsert(readyFirst ? ready.build() : notReady.build());
            p.onSliceUpsert(readyFirst ? notReady.build() : ready.build());
            REQUIRE(f.sync());
            CHECK(f.table() == std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1"});
        }
    }
}

TEST_CASE("after a restart nothing is programmed before every list is complete",
          "[proxier][early]") {
    Fixture f;
    programAndStop(f);
    const int writes = f.writes();
    f.make();
    REQUIRE(f.p->adopt());
    f.p->onNodeUpsert(node("node-1", "192.168.1.10"));
    f.p->setNodeSynced();
    // Only part of the lists: web's slice is missing, and programming now would take its
    // real servers away.
    f.p->onServiceUpsert(web());
    CHECK_FALSE(f.p->programEarly());
    CHECK(f.p->syncStep(f.now()).done);
    CHECK(f.writes() == writes);
    CHECK(f.ipvs.table.at(kWebVs).dests.size() == 2);
}

TEST_CASE("sync steps are bounded and stale clean-up waits for the full first sync", "[proxier]") {
    Fixture f;
    f.cfg.servicesPerStep = 5;
    programAndStop(f);
    f.make();
    REQUIRE(f.p->adopt());
    f.p->onNodeUpsert(node("node-1", "192.168.1.10"));
    for (int i = 0; i < 12; ++i) {
        f.p->onServiceUpsert(ServiceBuilder("default", ("svc-" + std::to_string(i)).c_str(),
                                            ("10.96.2." + std::to_string(i)).c_str())
                                 .port("p", 80));
    }
    f.p->setServicesSynced();
    f.p->setSlicesSynced();
    f.p->setNodeSynced();
    f.p->syncStep(f.now());  // bootstrap (no kubernetes Service this time)
    int steps = 0;
    while (!f.p->syncStep(f.now()).done) {
        ++steps;
        // The previous run's Services are still there until every Service was seen once.
        CHECK(f.ipvs.table.count(kWebVs) == 1);
    }
    CHECK(steps == 2);  // 12 Services, 5 per step: two partial steps, then the final one
    CHECK(f.ipvs.table.count(kWebVs) == 0);
    CHECK(f.ipvs.table.size() == 12);
}

TEST_CASE("one refused write does not stop the others, and is retried", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    f.ipvs.refuse = [](const ipvs::Op& op) {
        return op.kind == ipvs::OpKind::AddDest && op.dest.key.address == ip("10.244.2.7") ? ENOMEM
                                                                                           : 0;
    };
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7", "10.244.3.7"}));
    CHECK_FALSE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.3.7:8080@1"});
    CHECK(f.ops("ipvs", "add-dest", "failed") == 1);
    CHECK(f.reg.value("kube_ipvs_sync_errors_total", {{"ip_family", "IPv4"}}) == 1);
    CHECK(p.pending());
    f.ipvs.refuse = nullptr;
    f.journal.clear();
    REQUIRE(f.sync());
    CHECK(f.journal ==
          std::vector<std::string>{"ipvs add-dest 10.96.0.10:80/TCP -> 10.244.2.7:8080"});
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1 10.244.2.7:8080@1 "
                                   "10.244.3.7:8080@1"});
}

// A virtual server stays ours (proxy/ownership.h) through its set members and VIP. Removed
// while its delete had failed, they left it unrecognised by the next start: never deleted.
TEST_CASE("a refused virtual-server delete keeps what marks it ours until it is gone",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    const auto np = ServiceBuilder("default", "np", "10.96.0.20")
                        .type(k8s::ServiceType::NodePort)
                        .port("p", 80, Protocol::TCP, 30080);
    p.onServiceUpsert(web());
    p.onServiceUpsert(np);
    REQUIRE(f.sync());
    f.ipvs.refuse = [](const ipvs::Op& op) {
        return op.kind == ipvs::OpKind::DeleteService ? ENOMEM : 0;
    };
    p.onServiceDelete({"default", "web"});
    p.onServiceDelete({"default", "np"});
    CHECK_FALSE(f.sync());
    CHECK(f.ipvs.table.size() == 3);  // 10.96.0.10:80, 10.96.0.20:80, 192.168.1.10:30080
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10"), ip("10.96.0.20")});
    CHECK(f.set(names::kSetClusterIp).count(SetEntry::ipPort(ip("10.96.0.10"), Protocol::TCP, 80)));
    CHECK(f.set(names::kSetNodePortTcp).count(SetEntry::portOnly(30080)));

    // Killed before the retry: the next start still owns them all and deletes them.
    f.ipvs.refuse = nullptr;
    auto& q = f.start();
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.empty());
    CHECK(f.bound().empty());
    CHECK(f.set(names::kSetClusterIp).empty());
    CHECK(f.set(names::kSetNodePortTcp).empty());
    CHECK_FALSE(q.pending());
}

TEST_CASE("a refused write fails the sync but does not abort it; iptables-restore does",
          "[proxier]") {
    // The daemon marks the proxy healthy after every sync that was not aborted: a permanently
    // refused real server (a multicast endpoint the kernel will not take) must not turn
    // /healthz to 503 for good, as it never does in kube-proxy.
    Fixture f;
    auto& p = f.start();
    f.ipvs.refuse = [](const ipvs::Op& op) {
        return op.kind == ipvs::OpKind::AddDest && op.dest.key.address == ip("10.244.2.7") ? EINVAL
                                                                                           : 0;
    };
    f.rules.failNext = 1000;  // iptables-restore fails until further notice
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    Proxier::Step s;
    for (int i = 0; i < 10 && (i == 0 || !s.done); ++i) {
        s = p.syncStep(f.now());
    }
    REQUIRE(s.done);
    CHECK(s.failed);
    CHECK(s.aborted);
    // iptables works again; the real server is still refused: failed, not aborted.
    f.rules.failNext = 0;
    s = p.syncStep(f.now());
    REQUIRE(s.done);
    CHECK(s.failed);
    CHECK_FALSE(s.aborted);
    CHECK(f.table() == std::vector<std::string>{"10.96.0.10:80/TCP -> 10.244.1.7:8080@1"});
    f.ipvs.refuse = nullptr;
    s = p.syncStep(f.now());
    CHECK(s.done);
    CHECK_FALSE(s.failed);
    CHECK_FALSE(s.aborted);
}

TEST_CASE("a refused address or set member is retried, others proceed", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    f.addrs.refuse = [](std::string_view, const net::IpAddress& a) {
        return a == ip("10.96.0.10") ? EPERM : 0;
    };
    f.ipset.refuse = [](const std::string& set, const ipvs::SetOp&) {
        return set == "KUBE-LOOP-BACK" ? ENOSPC : 0;
    };
    p.onServiceUpsert(web());
    p.onServiceUpsert(ServiceBuilder("default", "b", "10.96.0.11").port("p", 80));
    SliceBuilder local("default", "b-1", "b");
    local.port("p", 80).ep("10.244.1.9", "node-1");
    p.onSliceUpsert(local);
    CHECK_FALSE(f.sync());
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.11")});
    CHECK(f.set(names::kSetLoopBack).empty());
    CHECK(f.ipvs.table.size() == 2);
    f.addrs.refuse = nullptr;
    f.ipset.refuse = nullptr;
    // The address is retried by the next sync; the set member waits for a verification pass
    // (see the next test).
    REQUIRE(f.sync());
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10"), ip("10.96.0.11")});
    CHECK(f.set(names::kSetLoopBack).empty());
    CHECK_FALSE(f.p->pending());
    CHECK(p.verify(f.snapshot(), p.opSeq()).total() == 0);
    CHECK(f.p->pending());
    REQUIRE(f.sync());
    CHECK(f.set(names::kSetLoopBack).size() == 1);
    CHECK_FALSE(f.p->pending());
}

TEST_CASE(
    "refused set members are held: retried once per verification pass or when a delete "
    "frees room, and logged once per write",
    "[proxier]") {
    // A KUBE-LOOP-BACK at maxelem refused 114,000 adds on every 100 ms step of a cold start at
    // 44,000 Services, one log line each.
    Fixture f;
    f.cfg.servicesPerStep = 2;
    auto& p = f.start();
    std::size_t room = 2;
    int attempts = 0;
    f.ipset.refuse = [&](const std::string& set, const ipvs::SetOp& op) {
        if (set != "KUBE-LOOP-BACK" || op.kind != ipvs::SetOpKind::Add) {
            return 0;
        }
        ++attempts;
        return f.set(names::kSetLoopBack).size() >= room ? ENOSPC : 0;
    };
    for (int i = 0; i < 6; ++i) {
        const auto name = "s" + std::to_string(i);
        p.onServiceUpsert(
            ServiceBuilder("default", name.c_str(), ("10.96.4." + std::to_string(i + 1)).c_str())
                .port("p", 80));
        SliceBuilder local("default", (name + "-1").c_str(), name.c_str());
        local.port("p", 80).ep(("10.244.1." + std::to_string(i + 1)).c_str(), "node-1");
        p.onSliceUpsert(local);
    }
    CHECK_FALSE(f.sync());  // three steps of two Services
    CHECK(f.set(names::kSetLoopBack).size() == 2);
    CHECK(attempts == 6);  // each member tried once, not once per step
    CHECK(f.ops("ipset", "add", "failed") == 4);
    CHECK(f.ipvs.table.size() == 6);  // the rest is programmed
    p.refreshGauges();
    CHECK(f.reg.value("kube_ipvs_ipset_entries_refused", {{"ip_family", "IPv4"}}) == 4);
    CHECK_FALSE(p.pending());
    // Another change: its sync does not write the held members again.
    p.onServiceUpsert(ServiceBuilder("default", "other", "10.96.4.100").port("p", 80));
    REQUIRE(f.sync());
    CHECK(attempts == 6);
    // A verification pass makes them due; the next sync tries each once more.
    CHECK(p.verify(f.snapshot(), p.opSeq()).total() == 0);
    CHECK(p.pending());
    CHECK_FALSE(f.sync());
    CHECK(attempts == 10);
    CHECK_FALSE(p.pending());
    // Deleting a Service whose member is in the set frees a place: the held members are
    // tried by the next sync.
    const auto inSet = f.set(names::kSetLoopBack).begin()->ip.toString();  // 10.244.1.<i+1>
    const auto i = std::stoi(inSet.substr(inSet.rfind('.') + 1)) - 1;
    p.onServiceDelete(k8s::ObjectKey{"default", "s" + std::to_string(i)});
    CHECK(f.sync());
    CHECK(attempts == 10);
    CHECK(p.pending());
    CHECK_FALSE(f.sync());
    CHECK(f.set(names::kSetLoopBack).size() == 2);
    CHECK(attempts == 14);
    // Room for all of them: the next pass's retry programs them and nothing is held.
    room = 100;
    CHECK(p.verify(f.snapshot(), p.opSeq()).total() == 0);
    REQUIRE(f.sync());
    CHECK(f.set(names::kSetLoopBack).size() == 5);
    p.refreshGauges();
    CHECK(f.reg.value("kube_ipvs_ipset_entries_refused", {{"ip_family", "IPv4"}}) == 0);
    CHECK_FALSE(p.pending());
    CHECK(f.ops("ipset", "add", "failed") == 4 + 4 + 3);
}

TEST_CASE("an iptables-restore failure is counted and retried without blocking IPVS", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    f.rules.failNext = 2;  // bootstrap and first full sync
    p.onServiceUpsert(web());
    CHECK_FALSE(f.sync());
    CHECK(f.ipvs.table.size() == 1);
    CHECK(f.reg.value("kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
                      {{"ip_family", "IPv4"}}) == 2);
    CHECK(p.pending());
    const auto n = f.rules.syncs.size();
    REQUIRE(f.sync());
    CHECK(f.rules.syncs.size() == n + 1);
    CHECK_FALSE(p.pending());
}

TEST_CASE("adoption reads the real servers of its own family's virtual servers only", "[proxier]") {
    Fixture f;
    startWith300(f, "10.96.9.");
    // Someone else's virtual server, with a real server.
    ipvs::VirtualServer foreign;
    foreign.key = {ip("192.0.2.1"), 80, Protocol::TCP, 0};
    foreign.scheduler = *ipvs::ShortName::make("rr");
    f.ipvs.table[foreign.key].vs = foreign;
    // The IPv6 proxier of the same (dual-stack) node, on a restart: none of these is its.
    ProxierConfig cfg6 = f.cfg;
    cfg6.family = net::Family::V6;
    Proxier p6(cfg6, KernelRefs{f.ipvs, f.addrs, f.ipset, f.rules, &f.conntrack}, f.reg);
    f.ipvs.walkDestReads = 0;
    REQUIRE(p6.adopt());
    CHECK(f.ipvs.walkDestReads == 0);  // was 301: a real servers dump per virtual server
    const auto writes = f.writes();    // after the IPv6 sets were created
    // The IPv4 one reads its 300, not the foreign one, and a restart writes nothing.
    f.ipvs.walkDestReads = 0;
    auto& again = f.start();
    CHECK(f.ipvs.walkDestReads == 300);
    addServices(again, 300, "10.96.9.");
    REQUIRE(f.sync());
    CHECK(f.writes() == writes);
    CHECK(f.ipvs.table.count(foreign.key) == 1);
}

TEST_CASE("a virtual server the snapshot's dump skipped is not drift", "[proxier]") {
    // The kernel's dump resumes at an index, so deletes while it is read make it skip
    // virtual servers that are still there.
    Fixture f;
    auto& p = startWith300(f, "10.96.3.");
    REQUIRE(f.ipvs.table.size() == 300);
    const int writes = f.ipvs.totalWrites();
    for (std::size_t skipped : {std::size_t{3}, std::size_t{280}}) {  // one by one, one walk
        const auto seq = p.opSeq();
        auto snap = f.snapshot();
        snap.ipvs.services.erase(snap.ipvs.services.begin(),
                                 snap.ipvs.services.begin() + static_cast<long>(skipped));
        const auto rep = p.verify(snap, seq);
        CHECK(rep.ipvsRepairs == 0);
        REQUIRE(f.sync());
        CHECK(f.ipvs.totalWrites() == writes);
    }
    // Really gone: repaired.
    f.ipvs.table.erase(f.ipvs.table.begin());
    CHECK(f.verify().ipvsRepairs == 1);
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.size() == 300);
}

TEST_CASE("verification in bounded steps, with syncs in between, finds only real drift",
          "[proxier]") {
    Fixture f;
    auto& p = startWith300(f, "10.96.4.");
    // Someone else deletes one of ours; then the snapshot is taken.
    const ipvs::ServiceKey gone{ip("10.96.4.7"), 80, Protocol::TCP, 0};
    f.ipvs.table.erase(gone);
    const auto seq = p.opSeq();
    const auto snap = f.snapshot();
    Proxier::VerifyProgress prog;
    int steps = 0;
    while (!prog.done) {
        p.verifyStep(snap, seq, prog, 40);
        ++steps;
        if (steps == 20) {
            // Between two steps, a sync deletes a Service and adds one: after the snapshot,
            // so neither may look like drift.
            p.onServiceDelete({"default", "s3"});
            p.onServiceUpsert(ServiceBuilder("default", "new", "10.96.5.1").port("p", 80));
            REQUIRE(f.sync());
        }
    }
    CHECK(steps > 300 / 40);              // it was really done in parts
    CHECK(prog.report.ipvsRepairs == 1);  // only the one deleted behind our back
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.count(gone) == 1);
    CHECK(f.ipvs.table.size() == 300);  // 300 - s3 + new
}

TEST_CASE("virtual servers missing from the snapshot are looked for in steps, across a rehash",
          "[proxier]") {
    // After the snapshot's virtual servers, the known ones it lacks are collected a few
    // buckets at a time (40 ms in one go at 44,000 under emulation). A sync in the middle adds
    // enough Services to rehash the known table, and deletes one that the dump skipped.
    constexpr int kUnseenStage = 1 + static_cast<int>(kSetCount) + 1;
    const int syncAtStep = GENERATE(1, 3, 7);
    Fixture f;
    auto& p = startWith300(f, "10.96.8.");
    const ipvs::ServiceKey gone{ip("10.96.8.7"), 80, Protocol::TCP, 0};
    f.ipvs.table.erase(gone);  // deleted behind our back
    const auto seq = p.opSeq();
    auto snap = f.snapshot();
    // The dump skipped s11 and s12 (still there); s12's Service is deleted during the scan.
    std::erase_if(snap.ipvs.services, [](const IpvsSnapshot::Vs& v) {
        return v.key.address == ip("10.96.8.11") || v.key.address == ip("10.96.8.12");
    });
    Proxier::VerifyProgress prog;
    int scanSteps = 0;
    std::vector<ipvs::ServiceKey> collected;
    while (!prog.done) {
        if (prog.stage == kUnseenStage + 1) {
            collected = prog.unseen;  // what the scan found, before the confirmation
        }
        const bool scanning = prog.stage == kUnseenStage;
        p.verifyStep(snap, seq, prog, 2);  // 16 known entries per scan step
        if (!scanning) {
            continue;
        }
        if (++scanSteps == syncAtStep) {
            for (int i = 0; i < 500; ++i) {
                p.onServiceUpsert(ServiceBuilder("default", ("x" + std::to_string(i)).c_str(),
                                                 ("10.97." + std::to_string(i / 250) + "." +
                                                  std::to_string(i % 250))
                                                     .c_str())
                                      .port("p", 80));
            }
            p.onServiceDelete({"default", "s12"});
            REQUIRE(f.sync());
        }
    }
    CHECK(scanSteps > 300 / 16);  // done in parts, started again after the rehash
    // Only what the snapshot lacks: the gone one, s11's two ports and s12's until it goes.
    CHECK(std::count(collected.begin(), collected.end(), gone) == 1);
    CHECK(collected.size() >= 3);
    for (const auto& k : collected) {
        INFO(k.toString());
        CHECK((k.address == ip("10.96.8.7") || k.address == ip("10.96.8.11") ||
               k.address == ip("10.96.8.12")));
    }
    CHECK(prog.report.ipvsRepairs == 1);  // only the one deleted behind our back
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.count(gone) == 1);
    CHECK(f.ipvs.table.count({ip("10.96.8.11"), 80, Protocol::TCP, 0}) == 1);
    CHECK(f.ipvs.table.count({ip("10.96.8.12"), 80, Protocol::TCP, 0}) == 0);
    CHECK(f.ipvs.table.size() == 300 - 1 + 500);
    CHECK(f.verify().total() == 0);
}

TEST_CASE("addresses and sets are compared by digest, and read again only when they differ",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    addServices(p, 300, "10.96.6.");
    REQUIRE(f.sync());
    REQUIRE(f.bound().size() == 250);
    REQUIRE(f.set(names::kSetClusterIp).size() == 300);
    // Stage 0 is the addresses, then one stage per set in setDefs() order.
    const int clusterIpStage = 1 + static_cast<int>(SetId::ClusterIp);
    // Runs a pass a step at a time, counting the steps each stage took and the lists the
    // proxier read itself (the snapshot's own reads are not counted).
    std::map<int, int> stepsIn;
    int reads = 0;
    const auto run = [&](const KernelSnapshot& snap, std::uint64_t seq) {
        stepsIn.clear();
        const int before = f.ipset.lists + f.addrs.linkReads;
        Proxier::VerifyProgress prog;
        while (!prog.done) {
            ++stepsIn[prog.stage];
            p.verifyStep(snap, seq, prog, 2);
        }
        reads = f.ipset.lists + f.addrs.linkReads - before;
        return prog.report;
    };
    const auto verify = [&] { return run(f.snapshot(), p.opSeq()); };
    const auto clusterIp = [&](const char* a) {
        return SetEntry::ipPort(ip(a), Protocol::TCP, 80);
    };
    auto& members = f.ipset.sets.at("KUBE-CLUSTER-IP").entries;

    SECTION("a clean pass takes one step per list and reads nothing again") {
        CHECK(verify().total() == 0);
        CHECK(stepsIn[0] == 1);
        CHECK(stepsIn[clusterIpStage] == 1);
        CHECK(reads == 0);
    }
    SECTION("a member added by hand is found and removed") {
        members.insert(clusterIp("10.96.6.251"));
        CHECK(verify().setRepairs == 1);
        CHECK(reads == 1);
        REQUIRE(f.sync());
        CHECK(f.set(names::kSetClusterIp).size() == 300);
    }
    SECTION("a member replaced by another, as many as before, is found") {
        members.erase(clusterIp("10.96.6.9"));
        members.insert(clusterIp("10.96.6.251"));
        CHECK(verify().setRepairs == 2);
        REQUIRE(f.sync());
        CHECK(f.set(names::kSetClusterIp).size() == 300);
        CHECK(f.set(names::kSetClusterIp).count(clusterIp("10.96.6.9")) == 1);
    }
    SECTION("a member and an address removed by hand are found and put back") {
        members.erase(clusterIp("10.96.6.9"));
        f.addrs.links.at(kDummy).addresses.erase(ip("10.96.6.200"));
        const auto rep = verify();
        CHECK(rep.setRepairs == 1);
        CHECK(rep.addressRepairs == 1);
        CHECK(reads == 2);
        REQUIRE(f.sync());
        CHECK(f.set(names::kSetClusterIp).size() == 300);
        CHECK(f.bound().size() == 250);
    }
    SECTION("a difference undone before the comparison is no drift") {
        members.erase(clusterIp("10.96.6.9"));
        f.addrs.links.at(kDummy).addresses.erase(ip("10.96.6.200"));
        const auto seq = p.opSeq();
        const auto snap = f.snapshot();
        members.insert(clusterIp("10.96.6.9"));
        f.addrs.links.at(kDummy).addresses.insert(ip("10.96.6.200"));
        CHECK(run(snap, seq).total() == 0);
        CHECK(reads == 2);  // read again, found the same
        CHECK_FALSE(p.pending());
    }
    SECTION("lists we wrote after the snapshot are not compared: the next pass judges them") {
        const auto seq = p.opSeq();
        const auto snap = f.snapshot();
        p.onServiceUpsert(ServiceBuilder("default", "new", "10.96.7.1").port("p", 80));
        REQUIRE(f.sync());
        CHECK(run(snap, seq).total() == 0);
        CHECK(reads == 0);
        CHECK(verify().total() == 0);
    }
}

TEST_CASE("drift is found by verification, counted and repaired", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    REQUIRE(f.sync());
    const auto good = f.table();
    bool rulesAgain = false;  // the rules are re-applied only when they or their sets changed

    SECTION("a virtual server deleted with ipvsadm") {
        f.ipvs.table.erase(kWebVs);
        CHECK(f.verify().ipvsRepairs == 1);
    }
    SECTION("a real server's weight changed") {
        f.ipvs.table.at(kWebVs).dests.at({ip("10.244.1.7"), 8080}).dest.weight = 5;
        CHECK(f.verify().ipvsRepairs == 1);
    }
    SECTION("a real server's connection thresholds set") {
        f.ipvs.table.at(kWebVs).dests.at({ip("10.244.1.7"), 8080}).dest.upperThreshold = 100;
        CHECK(f.verify().ipvsRepairs == 1);
    }
    SECTION("a real server added by hand (drained, then reaped)") {
        ipvs::RealServer extra;
        extra.key = {ip("10.244.9.9"), 8080};
        f.ipvs.addDest(kWebVs, extra);
        CHECK(f.verify().ipvsRepairs == 1);
        REQUIRE(f.sync());
        CHECK(f.ipvs.dest(kWebVs, extra.key)->dest.weight == 0);
        CHECK(f.p->reapTerminating() == 1);
    }
    SECTION("a set member removed") {
        f.ipset.sets.at("KUBE-CLUSTER-IP").entries.clear();
        CHECK(f.verify().setRepairs == 1);
    }
    SECTION("a whole set destroyed") {
        rulesAgain = true;
        f.ipset.sets.erase("KUBE-CLUSTER-IP");
        CHECK(f.verify().setRepairs == 1);
        CHECK(f.ipset.sets.count("KUBE-CLUSTER-IP") == 1);
    }
    SECTION("an address removed") {
        f.addrs.links.at(kDummy).addresses.clear();
        CHECK(f.verify().addressRepairs == 1);
    }
    SECTION("kube-ipvs0 deleted") {
        f.addrs.links.erase(kDummy);
        CHECK(f.verify().addressRepairs == 1);
    }
    SECTION("a jump rule deleted") {
        rulesAgain = true;
        f.rules.driftNext = true;
        CHECK(f.verify().iptablesRepairs == 1);
    }
    const auto rulesBefore = f.rules.syncs.size();
    REQUIRE((f.p->pending() || f.ipvs.table.count(kWebVs) == 1));
    REQUIRE(f.sync());
    CHECK(f.rules.syncs.size() == rulesBefore + (rulesAgain ? 1 : 0));
    CHECK(f.table() == good);
    CHECK(f.ipvs.dest(kWebVs, {ip("10.244.1.7"), 8080})->dest.upperThreshold == 0);
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10")});
    CHECK(f.set(names::kSetClusterIp).size() == 1);
    CHECK(f.reg.render().find("kube_ipvs_drift_repairs_total{ip_family=\"IPv4\"") !=
          std::string::npos);
    // Repaired: a second verification finds nothing.
    CHECK(f.verify().total() == 0);
}

TEST_CASE("verification leaves others' virtual servers alone and counts nothing when clean",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    REQUIRE(f.sync());
    ipvs::VirtualServer foreign;
    foreign.key = {ip("172.16.0.1"), 80, Protocol::TCP, 0};
    f.ipvs.addService(foreign);
    ipvs::VirtualServer fwmark;
    fwmark.key.fwmark = 7;
    f.ipvs.addService(fwmark);
    CHECK(f.verify().total() == 0);
    const int w = f.writes();
    REQUIRE(f.sync());
    CHECK(f.writes() == w);
    CHECK(f.ipvs.table.size() == 3);
}

TEST_CASE("objects written after a snapshot began are not mistaken for drift", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    REQUIRE(f.sync());
    const auto seq = p.opSeq();
    const auto snap = f.snapshot();  // taken before the change below
    p.onServiceUpsert(ServiceBuilder("default", "new", "10.96.0.30").port("p", 80));
    p.onServiceDelete({"default", "web"});
    REQUIRE(f.sync());
    CHECK(p.verify(snap, seq).total() == 0);
    CHECK_FALSE(p.pending());
}

TEST_CASE("two Services wanting one virtual server: the first keeps it, the second inherits it",
          "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(
        ServiceBuilder("default", "a", "10.96.0.40").port("p", 80).externalIp("198.51.100.9"));
    REQUIRE(f.sync());
    p.onServiceUpsert(
        ServiceBuilder("default", "b", "10.96.0.41").port("p", 80).externalIp("198.51.100.9"));
    SliceBuilder bs("default", "b-1", "b");
    bs.port("p", 9090).ep("10.244.5.5");
    p.onSliceUpsert(bs);
    REQUIRE(f.sync());
    const ipvs::ServiceKey shared{ip("198.51.100.9"), 80, Protocol::TCP, 0};
    CHECK(f.ipvs.table.at(shared).dests.empty());  // a's (no endpoints)
    CHECK(f.reg.value("kube_ipvs_virtual_server_conflicts_total", {{"ip_family", "IPv4"}}) == 1);
    p.onServiceDelete({"default", "a"});
    REQUIRE(f.sync());
    REQUIRE(f.ipvs.table.count(shared) == 1);
    CHECK(f.ipvs.table.at(shared).dests.size() == 1);
    CHECK(f.bound().count(ip("198.51.100.9")) == 1);  // still wanted by b
}

TEST_CASE("NodePorts answer on the node addresses nodePortAddresses selects", "[proxier]") {
    Fixture f;
    f.addrs.links["eth1"].type = "veth";
    f.addrs.links["eth1"].addresses = {ip("10.0.0.10")};
    f.cfg.nodePortCidrs = {cidr("10.0.0.0/8")};
    auto& p = f.start();
    p.onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                          .type(k8s::ServiceType::NodePort)
                          .port("p", 80, Protocol::TCP, 30080));
    REQUIRE(f.sync());
    CHECK(f.table() == std::vector<std::string>{"10.0.0.10:30080/TCP ->", "10.96.0.20:80/TCP ->"});
    CHECK(f.set(names::kSetNodePortTcp) == std::set<SetEntry>{SetEntry::portOnly(30080)});
}

TEST_CASE("nodePortAddresses primary means the node's own IP only", "[proxier]") {
    Fixture f;
    f.addrs.links["eth1"].type = "veth";
    f.addrs.links["eth1"].addresses = {ip("10.0.0.10")};
    f.cfg.nodePortPrimary = true;
    auto& p = f.start();
    p.onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                          .type(k8s::ServiceType::NodePort)
                          .port("p", 80, Protocol::TCP, 30080));
    REQUIRE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{"10.96.0.20:80/TCP ->", "192.168.1.10:30080/TCP ->"});
}

// kube-proxy replaces "primary" by the node IPs' /32 and /128, and a family with no CIDR of its
// own matches every address (reference §3.2): the Node here has an IPv4 address only.
TEST_CASE("nodePortAddresses primary without a node IP of the family means all its addresses",
          "[proxier]") {
    Fixture f(net::Family::V6);
    f.cfg.nodePortPrimary = true;
    auto& p = f.start();
    p.onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                          .dual("fd00:96::20")
                          .type(k8s::ServiceType::NodePort)
                          .port("p", 80, Protocol::TCP, 30080));
    REQUIRE(f.sync());
    CHECK(f.table() ==
          std::vector<std::string>{"[fd00:1::10]:30080/TCP ->", "[fd00:96::20]:80/TCP ->"});
}

TEST_CASE("a deleted Node keeps its addresses and loses its zone", "[proxier]") {
    Fixture f;
    f.cfg.nodePortPrimary = true;
    auto& p = f.start();  // node-1, 192.168.1.10, zone-a
    p.onServiceUpsert(ServiceBuilder("default", "np", "10.96.0.20")
                          .type(k8s::ServiceType::NodePort)
                          .port("p", 80, Protocol::TCP, 30080));
    // Hinted for zone-a: 10.244.1.7 only while the node is in zone-a.
    p.onSliceUpsert(SliceBuilder("default", "np-1", "np")
                        .port("p", 8080)
                        .ep("10.244.1.7", "node-1")
                        .zoneHint("zone-a")
                        .ep("10.244.2.7", "node-2")
                        .zoneHint("zone-b"));
    REQUIRE(f.sync());
    CHECK(f.table() == std::vector<std::string>{"10.96.0.20:80/TCP -> 10.244.1.7:8080@1",
                                                "192.168.1.10:30080/TCP -> 10.244.1.7:8080@1"});
    p.onNodeDelete();
    REQUIRE(f.sync());
    // The NodePort stays on the node's IP; without a zone the hints no longer apply.
    CHECK(f.table() == std::vector<std::string>{
                           "10.96.0.20:80/TCP -> 10.244.1.7:8080@1 10.244.2.7:8080@1",
                           "192.168.1.10:30080/TCP -> 10.244.1.7:8080@1 10.244.2.7:8080@1"});
}

TEST_CASE("health-check ports follow LoadBalancer eTP=Local Services", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(ServiceBuilder("default", "lb", "10.96.0.50")
                          .port("p", 80, Protocol::TCP, 30080)
                          .lb("203.0.113.5")
                          .etpLocal(32001));
    REQUIRE(f.sync());
    REQUIRE(p.healthChecks().count({"default", "lb"}) == 1);
    CHECK(p.healthChecks().at({"default", "lb"}).port == 32001);
    CHECK(p.healthChecks().at({"default", "lb"}).localEndpoints == 0);
    const auto gen = p.healthCheckGeneration();
    SliceBuilder s("default", "lb-1", "lb");
    s.port("p", 8080)
        .ep("10.244.1.5", "node-1")
        .ep("10.244.1.6", "node-1")
        .ep("10.244.2.5", "node-2");
    p.onSliceUpsert(s);
    REQUIRE(f.sync());
    CHECK(p.healthChecks().at({"default", "lb"}).localEndpoints == 2);
    CHECK(p.healthCheckGeneration() > gen);
    p.onServiceDelete({"default", "lb"});
    REQUIRE(f.sync());
    CHECK(p.healthChecks().empty());
}

TEST_CASE("LB source ranges that exclude the node become an out-filter drop", "[proxier]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(ServiceBuilder("default", "lb", "10.96.0.50")
                          .port("p", 443)
                          .lb("203.0.113.5")
                          .sourceRange("198.51.100.0/24"));
    REQUIRE(f.sync());
    const auto& in = f.rules.syncs.back();
    CHECK(in.noNodeAccess ==
          std::vector<ipvs::NoNodeAccess>{{ip("203.0.113.5"), Protocol::TCP, 443}});
    CHECK(in.nonEmptySets.count(std::string(names::kSetLoadBalancerFw)) == 1);
    CHECK(f.set(names::kSetLoadBalancerSourceCidr).size() == 1);
}

TEST_CASE("IPv6 proxier uses KUBE-6- sets and v6 objects only", "[proxier]") {
    Fixture f(net::Family::V6);
    auto& p = f.start();
    p.onServiceUpsert(
        ServiceBuilder("default", "d", "10.96.0.17").dual("fd00:96::17").port("p", 80));
    SliceBuilder v4("default", "d-4", "d");
    v4.port("p", 8080).ep("10.244.1.7");
    SliceBuilder v6("default", "d-6", "d", k8s::AddressType::IPv6);
    v6.port("p", 8080).ep("fd00:244::7");
    p.onSliceUpsert(v4);
    p.onSliceUpsert(v6);
    REQUIRE(f.sync());
    CHECK(f.table() == std::vector<std::string>{"[fd00:96::17]:80/TCP -> [fd00:244::7]:8080@1"});
    CHECK(f.set(names::kSetClusterIp, net::Family::V6) ==
          std::set<SetEntry>{SetEntry::ipPort(ip("fd00:96::17"), Protocol::TCP, 80)});
    CHECK(f.bound() == std::set<net::IpAddress>{ip("fd00:96::17")});
    CHECK(f.rules.syncs.back().family == net::Family::V6);
}

TEST_CASE("a Service gaining and losing its cluster IP of the family is added and removed",
          "[proxier]") {
    Fixture f(net::Family::V6);
    auto& p = f.start();
    SliceBuilder v6("default", "d-6", "d", k8s::AddressType::IPv6);
    v6.port("p", 8080).ep("fd00:244::7");
    p.onServiceUpsert(ServiceBuilder("default", "d", "10.96.0.17").port("p", 80));  // IPv4 only
    p.onSliceUpsert(v6);
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.empty());
    p.onServiceUpsert(
        ServiceBuilder("default", "d", "10.96.0.17").dual("fd00:96::17").port("p", 80));
    REQUIRE(f.sync());
    CHECK(f.table() == std::vector<std::string>{"[fd00:96::17]:80/TCP -> [fd00:244::7]:8080@1"});
    p.onServiceUpsert(ServiceBuilder("default", "d", "10.96.0.17").port("p", 80));  // v4 again
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.empty());
    CHECK(f.bound().empty());
    CHECK(f.set(names::kSetClusterIp, net::Family::V6).empty());
}

TEST_CASE("route binding makes VIPs local with routes instead of addresses", "[proxier]") {
    Fixture f;
    f.cfg.binding = VipBinding::Route;
    auto& p = f.start();
    p.onServiceUpsert(web());
    REQUIRE(f.sync());
    CHECK(f.bound().empty());
    CHECK(f.addrs.links.at(kDummy).localRoutes == std::set<net::IpAddress>{ip("10.96.0.10")});
    CHECK(f.set(names::kSetIpvsIps) == std::set<SetEntry>{SetEntry::address(ip("10.96.0.10"))});
    p.onServiceDelete({"default", "web"});
    REQUIRE(f.sync());
    CHECK(f.addrs.links.at(kDummy).localRoutes.empty());
}

// kube-proxy binds VIPs as addresses on kube-ipvs0. Taking a node over in route mode, those
// addresses kept each VIP local after its Service was gone (a host daemon on 0.0.0.0 became
// reachable on it, kubernetes #72236), as did our routes after a switch back to addresses.
TEST_CASE("route binding removes addresses left on kube-ipvs0, after its routes are in",
          "[proxier]") {
    Fixture f;
    f.cfg.binding = VipBinding::Route;
    f.addrs.links[kDummy].addresses = {ip("10.96.0.10"), ip("10.96.0.99")};
    auto& p = f.start();
    p.onServiceUpsert(web());
    REQUIRE(f.sync());
    CHECK(f.addrs.links.at(kDummy).localRoutes == std::set<net::IpAddress>{ip("10.96.0.10")});
    CHECK(f.bound().empty());
    // 10.96.0.10 was local throughout: its route came before its address went.
    const auto at = [&](const std::string& line) {
        return std::find(f.journal.begin(), f.journal.end(), line) - f.journal.begin();
    };
    REQUIRE(at("route add 10.96.0.10") < static_cast<std::ptrdiff_t>(f.journal.size()));
    CHECK(at("route add 10.96.0.10") < at("address del 10.96.0.10"));
    CHECK_FALSE(p.pending());
}

TEST_CASE("address binding removes our routes left from route mode", "[proxier]") {
    Fixture f;
    f.addrs.links[kDummy].localRoutes = {ip("10.96.0.10"), ip("10.96.0.99")};
    auto& p = f.start();
    p.onServiceUpsert(web());
    REQUIRE(f.sync());
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10")});
    CHECK(f.addrs.links.at(kDummy).localRoutes.empty());
}

TEST_CASE("a VIP whose route was refused keeps its address until the route is in", "[proxier]") {
    Fixture f;
    f.cfg.binding = VipBinding::Route;
    f.addrs.links[kDummy].addresses = {ip("10.96.0.10"), ip("10.96.0.99")};
    bool refuse = true;
    f.addrs.refuse = [&](std::string_view kind, const net::IpAddress&) {
        return refuse && kind == "add-route" ? EPERM : 0;
    };
    auto& p = f.start();
    p.onServiceUpsert(web());
    CHECK_FALSE(f.sync());
    CHECK(f.bound() == std::set<net::IpAddress>{ip("10.96.0.10")});  // still local
    refuse = false;
    CHECK(p.pending());
    REQUIRE(f.sync());
    CHECK(f.addrs.links.at(kDummy).localRoutes == std::set<net::IpAddress>{ip("10.96.0.10")});
    CHECK(f.bound().empty());
}

TEST_CASE("route binding leaves IPv6 VIPs as addresses", "[proxier]") {
    // The kernel refuses IPv6 routes through a link that is down (ENETDOWN).
    Fixture f(net::Family::V6);
    f.cfg.binding = VipBinding::Route;
    auto& p = f.start();
    p.onServiceUpsert(
        ServiceBuilder("default", "d", "10.96.0.17").dual("fd00:96::17").port("p", 80));
    REQUIRE(f.sync());
    CHECK(f.bound() == std::set<net::IpAddress>{ip("fd00:96::17")});
    CHECK(f.addrs.links.at(kDummy).localRoutes.empty());
    // The snapshot the periodic verification compares reads them as addresses too.
    const auto snap = f.snapshot();
    REQUIRE(snap.families.at(net::Family::V6).vips.has_value());
    CHECK(snap.families.at(net::Family::V6).vips->count == 1);
    CHECK(snap.families.at(net::Family::V6).vips->sum == ContentDigest{}(ip("fd00:96::17")));
    CHECK(f.verify().total() == 0);
}

TEST_CASE("network programming latency is measured from the trigger time", "[proxier]") {
    Fixture f;
    f.cfg.startWallNs = f.wallNs - 10'000'000'000;
    auto& p = f.start();
    p.onServiceUpsert(web());
    auto s = webSlice({"10.244.1.7"});
    s.triggerTimeNs = f.wallNs - 2'000'000'000;  // 2 s before the sync
    p.onSliceUpsert(s);
    auto old = webSlice({"10.244.1.7", "10.244.1.8"});
    old.triggerTimeNs = f.cfg.startWallNs - 1;  // before we started: not measured
    REQUIRE(f.sync());
    const auto text = f.reg.render();
    INFO(text);
    CHECK(text.find("kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\","
                    "le=\"1\"} 0") != std::string::npos);
    CHECK(text.find("kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\","
                    "le=\"2\"} 1") != std::string::npos);
    p.onSliceUpsert(old);
    REQUIRE(f.sync());
    CHECK(f.reg.value("kubeproxy_network_programming_duration_seconds", {{"ip_family", "IPv4"}}) ==
          1);
}

TEST_CASE("network programming latency ends when the kernel is programmed", "[proxier]") {
    // The sync starts 1 s after the trigger and the writes end 3 s after it: 3 s, not 1 s.
    Fixture f;
    f.cfg.startWallNs = f.wallNs - 10'000'000'000;
    int clockReads = 0;
    f.cfg.wallClock = [&] {
        ++clockReads;
        return f.wallNs + 2'000'000'000;
    };
    auto& p = f.start();
    p.onServiceUpsert(web());
    auto s = webSlice({"10.244.1.7"});
    s.triggerTimeNs = f.wallNs - 1'000'000'000;
    p.onSliceUpsert(s);
    REQUIRE(f.sync());
    CHECK(clockReads >= 1);
    const auto text = f.reg.render();
    INFO(text);
    CHECK(text.find("kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\","
                    "le=\"2\"} 0") != std::string::npos);
    CHECK(text.find("kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\","
                    "le=\"3\"} 1") != std::string::npos);
}

TEST_CASE("a failed write's batch leaves no trigger time behind to inflate a later change",
          "[proxier]") {
    Fixture f;
    f.cfg.startWallNs = f.wallNs - 60'000'000'000;
    auto& p = f.start();
    f.ipvs.refuse = [](const ipvs::Op& op) {
        return op.kind == ipvs::OpKind::AddDest && op.dest.key.address == ip("10.244.2.7") ? ENOMEM
                                                                                           : 0;
    };
    p.onServiceUpsert(web());
    auto first = webSlice({"10.244.1.7", "10.244.2.7"});
    first.triggerTimeNs = f.wallNs - 30'000'000'000;
    p.onSliceUpsert(first);
    CHECK_FALSE(f.sync());
    f.ipvs.refuse = nullptr;
    REQUIRE(f.sync());  // the retry
    auto second = webSlice({"10.244.1.7", "10.244.2.7", "10.244.3.7"});
    second.triggerTimeNs = f.wallNs - 1'000'000'000;
    p.onSliceUpsert(second);
    REQUIRE(f.sync());
    const auto text = f.reg.render();
    INFO(text);
    // Only the second change, 1 s after its trigger; not 30 s from the first one's.
    CHECK(f.reg.value("kubeproxy_network_programming_duration_seconds", {{"ip_family", "IPv4"}}) ==
          1);
    CHECK(text.find("kubeproxy_network_programming_duration_seconds_bucket{ip_family=\"IPv4\","
                    "le=\"2\"} 1") != std::string::npos);
}

TEST_CASE("a weight-0 leftover that is still wanted is reset on the first sync", "[proxier]") {
    Fixture f;
    programAndStop(f);
    f.ipvs.table.at(kWebVs).dests.at({ip("10.244.1.7"), 8080}).dest.weight = 0;
    f.make();
    REQUIRE(f.p->adopt());
    f.p->onNodeUpsert(node("node-1", "192.168.1.10"));
    feedSame(*f.p);
    f.p->setServicesSynced();
    f.p->setSlicesSynced();
    f.p->setNodeSynced();
    f.journal.clear();
    REQUIRE(f.sync());
    CHECK(f.journal ==
          std::vector<std::string>{"ipvs update-dest 10.96.0.10:80/TCP -> 10.244.1.7:8080"});
    CHECK(f.p->terminatingCount() == 0);
}

TEST_CASE("the gauges that count every Service are set when refreshed, not by each sync",
          "[proxier]") {
    // Counting them walks every Service: the daemon refreshes them when /metrics is rendered,
    // so a sync stays O(what changed).
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(web());
    p.onSliceUpsert(webSlice({"10.244.1.7", "10.244.2.7"}));
    p.onServiceUpsert(ServiceBuilder("default", "local", "10.96.0.20").port("p", 80).itpLocal());
    SliceBuilder elsewhere("default", "local-1", "local");
    elsewhere.port("p", 80).ep("10.244.2.9", "node-2");  // endpoints, none on this node
    p.onSliceUpsert(elsewhere);
    REQUIRE(f.sync());
    const auto gauge = [&](const char* name, metrics::Labels l = {{"ip_family", "IPv4"}}) {
        return f.reg.value(name, l);
    };
    CHECK(gauge("kube_ipvs_virtual_servers") == 0);
    p.refreshGauges();
    CHECK(gauge("kube_ipvs_virtual_servers") == 2);
    CHECK(gauge("kube_ipvs_real_servers") == 2);
    CHECK(gauge("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                {{"ip_family", "IPv4"}, {"traffic_policy", "internal"}}) == 1);
    p.onServiceDelete({"default", "web"});
    REQUIRE(f.sync());
    CHECK(gauge("kube_ipvs_virtual_servers") == 2);
    p.refreshGauges();
    CHECK(gauge("kube_ipvs_virtual_servers") == 1);
    CHECK(gauge("kube_ipvs_real_servers") == 0);
}

TEST_CASE("a snapshot keeps a digest of each virtual server that tells every change apart",
          "[proxier]") {
    fakes::FakeIpvs ipvs;
    ipvs::VirtualServer vs;
    vs.key = {ip("10.96.0.1"), 80, Protocol::TCP, 0};
    vs.scheduler = *ipvs::ShortName::make("rr");
    ipvs.addService(vs);
    std::vector<PackedDest> dests;
    for (const char* a : {"10.244.0.9", "10.244.0.3", "fd00:10:244::1"}) {
        ipvs::RealServer rs;
        rs.key = {ip(a), 8080};
        ipvs.addDest(vs.key, rs);  // not in key order: the snapshot sorts them
        dests.emplace_back(rs);
    }
    std::sort(dests.begin(), dests.end(), keyLess);
    const VsSettings settings = VsSettings::of(vs);
    const auto base = vsDigest(settings, dests);

    auto snap = takeSnapshot(ipvs);
    REQUIRE(snap.has_value());
    REQUIRE(snap->services.size() == 1);
    CHECK(snap->services[0].key == vs.key);
    CHECK(snap->services[0].digest == base);
    // The same from a DestList, narrow or wide, and with the draining flag set.
    DestList list;
    list.assign(dests.begin(), dests.end());
    CHECK(vsDigest(settings, list) == base);
    auto draining = dests;
    draining[0].setDraining(true);
    CHECK(vsDigest(settings, draining) == base);
    const std::vector<PackedDest> v4(dests.begin(), dests.begin() + 2);
    DestList narrow;
    narrow.assign(v4.begin(), v4.end());
    CHECK_FALSE(narrow.wide());
    CHECK(vsDigest(settings, narrow) == vsDigest(settings, v4));

    // Every compared field changes it.
    std::set<std::uint64_t> seen{base, vsDigest(settings, v4)};
    const auto distinct = [&](const VsSettings& s, const std::vector<PackedDest>& ds) {
        INFO(seen.size());
        CHECK(seen.insert(vsDigest(s, ds)).second);
    };
    auto s2 = settings;
    s2.scheduler = *ipvs::ShortName::make("wrr");
    distinct(s2, dests);
    s2 = settings;
    s2.flags = ipvs::kSvcFlagPersistent;
    distinct(s2, dests);
    s2 = settings;
    s2.timeout = 10800;
    distinct(s2, dests);
    s2 = settings;
    s2.netmask = 0xffffff00;
    distinct(s2, dests);
    s2 = settings;
    s2.persistenceEngine = *ipvs::ShortName::make("sip");
    distinct(s2, dests);
    distinct(settings, {dests.begin() + 1, dests.end()});
    distinct(settings, {dests.rbegin(), dests.rend()});  // order counts
    const auto changedDest = [&](auto change) {
        auto rs = dests[1].realServer();
        change(rs);
        auto ds = dests;
        ds[1] = PackedDest(rs);
        distinct(settings, ds);
    };
    changedDest([](ipvs::RealServer& rs) { rs.weight = 0; });
    changedDest([](ipvs::RealServer& rs) { rs.forwarding = ipvs::Forwarding::Tunnel; });
    changedDest([](ipvs::RealServer& rs) { rs.upperThreshold = 10; });
    changedDest([](ipvs::RealServer& rs) { rs.key.port = 8081; });
    changedDest([](ipvs::RealServer& rs) { rs.key.address = ip("10.244.0.4"); });
    changedDest([](ipvs::RealServer& rs) { rs.key.address = ip("fd00:10:244::4"); });
}

TEST_CASE("a virtual server whose digest differs is read again and judged by what it is now",
          "[proxier]") {
    Fixture f;
    auto& p = startWithWeb(f);
    const auto good = f.table();
    const ipvs::DestKey d1{ip("10.244.1.7"), 8080};
    auto& weight = f.ipvs.table.at(kWebVs).dests.at(d1).dest.weight;
    weight = 5;
    const auto seq = p.opSeq();
    const auto snap = f.snapshot();  // holds the drift

    SECTION("changed back before the comparison: nothing to repair") {
        weight = 1;
        CHECK(p.verify(snap, seq).total() == 0);
        CHECK_FALSE(p.pending());
    }
    SECTION("changed again: the newest state is what gets repaired") {
        weight = 7;
        CHECK(p.verify(snap, seq).ipvsRepairs == 1);
        REQUIRE(f.sync());
        CHECK(f.table() == good);
    }
    SECTION("deleted before the comparison: found gone in the same pass") {
        f.ipvs.table.erase(kWebVs);
        CHECK(p.verify(snap, seq).ipvsRepairs == 1);
        REQUIRE(f.sync());
        CHECK(f.table() == good);
    }
    SECTION("unreadable: left for the next pass, not forgotten") {
        for (const char* which : {"service", "dests"}) {
            INFO(which);
            f.ipvs.failRead = [which](std::string_view read, const ipvs::ServiceKey&) {
                return read == which ? EIO : 0;
            };
            CHECK(p.verify(snap, seq).total() == 0);
        }
        f.ipvs.failRead = nullptr;
        CHECK(f.verify().ipvsRepairs == 1);
        REQUIRE(f.sync());
        CHECK(f.table() == good);
    }
}

TEST_CASE("reading virtual servers again costs a verification step more than comparing them",
          "[proxier]") {
    Fixture f;
    auto& p = startWith300(f, "10.96.6.");
    const auto seq = p.opSeq();
    const auto clean = f.snapshot();
    for (auto& [key, entry] : f.ipvs.table) {
        entry.vs.scheduler = *ipvs::ShortName::make("wrr");
    }
    const auto drifted = f.snapshot();
    const auto stepsFor = [&](const KernelSnapshot& snap) {
        Proxier::VerifyProgress prog;
        int steps = 0;
        while (!prog.done) {
            p.verifyStep(snap, seq, prog, 64);
            ++steps;
        }
        return std::pair{steps, prog.report.ipvsRepairs};
    };
    const auto [cleanSteps, none] = stepsFor(clean);
    CHECK(none == 0);
    const auto [driftSteps, repairs] = stepsFor(drifted);
    CHECK(repairs == 300);
    // 300 comparisons take 5 steps of 64; 300 reads, 32 units each, take 150 of them.
    CHECK(driftSteps - cleanSteps == 150 - 5);
}

namespace {
// n Services (up to 1,000) of 10 endpoints each, one slice each.
void addServicesWith10(Proxier& p, int n) {
    for (int i = 0; i < n; ++i) {
        const auto name = "s" + std::to_string(i);
        const auto vip = "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        p.onServiceUpsert(ServiceBuilder("default", name.c_str(), vip.c_str()).port("p", 80));
        SliceBuilder s("default", (name + "-1").c_str(), name.c_str());
        s.port("p", 8080);
        for (int j = 0; j < 10; ++j) {
            const auto ep =
                "10.244." + std::to_string(i / 25) + "." + std::to_string(i % 25 * 10 + j + 1);
            s.ep(ep.c_str());
        }
        p.onSliceUpsert(s);
    }
}
}  // namespace

TEST_CASE("a step's IPVS writes are bounded, and applied in chunks", "[proxier]") {
    Fixture f;
    f.cfg.servicesPerStep = 10000;
    auto& p = f.start();
    constexpr int kServices = 1000;
    addServicesWith10(p, kServices);
    REQUIRE(p.syncStep(f.now()).services == 0);  // the bootstrap step
    const int callsBefore = f.ipvs.applyCalls;
    const auto first = p.syncStep(f.now());
    // 11 writes per Service: the 745th reaches 8,192 writes and is the step's last. They are
    // applied as 4,096 + 4,096 + 3, the first boundary inside the 373rd Service's real servers.
    CHECK(first.services == 745);
    CHECK_FALSE(first.done);
    CHECK(f.ipvs.applyCalls - callsBefore == 3);
    CHECK(f.ipvs.table.size() == 745);
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.size() == kServices);
    // What it knows is what it wrote, across the chunks' boundaries: a pass finds no drift and
    // another sync writes nothing.
    CHECK(f.verify().total() == 0);
    const int writes = f.writes();
    REQUIRE(f.sync());
    CHECK(f.writes() == writes);
}

TEST_CASE("Services whose writes keep failing cannot keep a sync from ending", "[proxier]") {
    // A step takes Services until it has 8,192 writes. A Service whose write failed waits for
    // the next sync: taken again by the next step, failing ones alone would fill every step.
    Fixture f;
    f.cfg.servicesPerStep = 10000;
    auto& p = f.start();
    addServicesWith10(p, 1000);
    f.ipvs.refuse = [](const ipvs::Op& op) {
        return op.kind == ipvs::OpKind::AddDest ? ENOMEM : 0;
    };
    int steps = 0;
    bool done = false;
    while (steps < 10 && !done) {
        done = p.syncStep(f.now()).done;
        ++steps;
    }
    CHECK(done);
    CHECK(steps == 3);  // the bootstrap step, 745 Services, the other 255
    CHECK(p.pending());
    f.ipvs.refuse = nullptr;
    REQUIRE(f.sync());  // the next sync retries all of them
    REQUIRE(f.ipvs.table.size() == 1000);
    std::size_t dests = 0;
    for (const auto& [key, vs] : f.ipvs.table) {
        dests += vs.dests.size();
    }
    CHECK(dests == 10000);
}

TEST_CASE("hash tables give their buckets back after a complete sync", "[proxier]") {
    // Tables never shrink their bucket arrays by themselves; the proxier rehashes those well
    // over what their elements need once a sync is complete.
    Fixture f;
    f.cfg.servicesPerStep = 10000;
    auto& p = f.start();
    addServices(p, 5000, "10.96.1.");
    REQUIRE(f.sync());
    REQUIRE(f.ipvs.table.size() == 5000);
    const std::size_t full = p.bucketCount();
    for (int i = 100; i < 5000; ++i) {
        p.onServiceDelete({"default", "s" + std::to_string(i)});
    }
    REQUIRE(f.sync());
    REQUIRE(f.ipvs.table.size() == 100);
    const std::size_t small = p.bucketCount();
    CHECK(small * 3 < full);  // recentlyDeleted_ still holds the 4,900 deleted keys
    // The tables work as before: the Services come back.
    addServices(p, 5000, "10.96.1.");
    REQUIRE(f.sync());
    CHECK(f.ipvs.table.size() == 5000);
    CHECK(f.verify().total() == 0);
}
