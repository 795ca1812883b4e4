// EndpointSlices kept as kube-proxy keeps them (issue 7, scenario 3): one whose Service does
// not exist, and endpoints two slices of a Service both have. Each is reported once per
// change of the slice, counted in kube_ipvs_handled_anomalies_total and logged with its
// reason; the slices are used exactly as before.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "builders.h"
#include "proxy/anomalies.h"
#include "proxy/log.h"
#include "proxy/proxier.h"
#include "tests/fakes/fake_kernel.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace kipvs::testing;

namespace {

class NoRules final : public RulesSync {
  public:
    Result<ipvs::IptablesSync::Report> sync(const ipvs::RulesInput& /*in*/) override {
        ipvs::IptablesSync::Report r;
        r.restored = true;
        return r;
    }
    Result<bool> verify(net::Family /*f*/, const std::string& /*saveOutput*/) override {
        return false;
    }
};

std::vector<std::string>* gLines = nullptr;
void capture(std::string_view line) {
    if (gLines != nullptr) {
        gLines->emplace_back(line);
    }
}

// Records what the proxier reports and passes it on to the daemon's reporter.
class Recorder final : public AnomalySink {
  public:
    explicit Recorder(AnomalySink& next) : next_(next) {}
    void onAnomaly(const Anomaly& a) override {
        messages.push_back(std::string(a.reason) + ": " + a.message);
        next_.onAnomaly(a);
    }
    void onSlicesWithoutService(net::Family f, std::size_t n) override {
        next_.onSlicesWithoutService(f, n);
    }
    std::vector<std::string> take() {
        auto out = std::move(messages);
        messages.clear();
        return out;
    }
    std::vector<std::string> messages;

  private:
    AnomalySink& next_;
};

struct Fixture {
    fakes::FakeIpvs ipvs;
    fakes::FakeAddresses addrs;
    fakes::FakeIpset ipset;
    NoRules rules;
    metrics::Registry reg;
    AnomalyReporter reporter{reg};
    Recorder sink{reporter};
    ProxierConfig cfg;
    std::unique_ptr<Proxier> p;
    std::vector<std::string> lines;

    Fixture() {
        addrs.links["eth0"].type = "veth";
        addrs.links["eth0"].addresses = {ip("192.168.1.10")};
        cfg.nodeName = "node-1";
        cfg.anomalies = &sink;
        gLines = &lines;
        log::setSink(capture);
        log::setVerbosity(2);
    }
    ~Fixture() {
        log::setSink(nullptr);
        log::setVerbosity(0);
        gLines = nullptr;
    }
    Fixture(const Fixture&) = delete;
    Fixture& operator=(const Fixture&) = delete;

    Proxier& make() {
        p = std::make_unique<Proxier>(cfg, KernelRefs{ipvs, addrs, ipset, rules, nullptr}, reg);
        REQUIRE(p->adopt());
        p->onNodeUpsert(node("node-1", "192.168.1.10"));
        p->setNodeSynced();
        return *p;
    }
    Proxier& start() {
        make();
        p->setServicesSynced();
        p->setSlicesSynced();
        return *p;
    }
    bool sync() { return p->syncAll({std::chrono::steady_clock::now(), 0}); }

    double count(const char* reason) const {
        return reg.value("kube_ipvs_handled_anomalies_total",
                         {{"kind", "EndpointSlice"}, {"reason", reason}});
    }
    double waiting() const {
        return reg.value("kube_ipvs_endpointslices_without_service", {{"ip_family", "IPv4"}});
    }
    std::vector<std::string> dests(const char* vip, std::uint16_t port) const {
        std::vector<std::string> out;
        auto it = ipvs.table.find({ip(vip), port, ipvs::Protocol::TCP, 0});
        if (it != ipvs.table.end()) {
            for (const auto& [k, d] : it->second.dests) {
                out.push_back(k.toString());
            }
        }
        return out;
    }
};

using Strings = std::vector<std::string>;

k8s::Service svc(const char* name, const char* vip) {
    return ServiceBuilder("default", name, vip).port("http", 80);
}

const char* const kMissing =
    "service_missing: EndpointSlice default/orphan-1: "
    "metadata.labels[kubernetes.io/service-name]: Service default/nosuch does not exist; the "
    "slice is kept and used once it appears, as kube-proxy does";

}  // namespace

TEST_CASE("a slice of a Service without a cluster IP of its family is not missing its Service",
          "[anomalies]") {
    Fixture f;
    f.cfg.family = net::Family::V6;
    auto& p = f.start();
    p.onServiceUpsert(svc("v4only", "10.96.0.40"));
    p.onSliceUpsert(SliceBuilder("default", "v4only-6", "v4only", k8s::AddressType::IPv6)
                        .port("http", 8080)
                        .ep("fd00:244::9"));
    CHECK(f.sink.take().empty());
    CHECK(f.reg.value("kube_ipvs_endpointslices_without_service", {{"ip_family", "IPv6"}}) == 0);
    p.onServiceDelete({"default", "v4only"});  // now it is missing
    CHECK(f.reg.value("kube_ipvs_endpointslices_without_service", {{"ip_family", "IPv6"}}) == 1);
    p.onServiceUpsert(svc("v4only", "10.96.0.40"));
    CHECK(f.reg.value("kube_ipvs_endpointslices_without_service", {{"ip_family", "IPv6"}}) == 0);
}

TEST_CASE("a slice for a Service that does not exist is kept, counted once, used later",
          "[proxier][anomalies]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(svc("web", "10.96.0.10"));
    p.onSliceUpsert(SliceBuilder("default", "web-1", "web").port("http", 8080).ep("10.244.1.7"));
    REQUIRE(f.sync());
    CHECK(f.sink.take().empty());

    const k8s::EndpointSlice orphan =
        SliceBuilder("default", "orphan-1", "nosuch").port("http", 8080).ep("10.244.1.8");
    f.lines.clear();
    p.onSliceUpsert(orphan);
    CHECK(f.sink.take() == Strings{kMissing});
    CHECK(f.count("service_missing") == 1);
    CHECK(f.waiting() == 1);
    REQUIRE(f.lines.size() == 1);
    CHECK(f.lines[0].find("\"Handled an unusual object as kube-proxy does\" kind=\"EndpointSlice\" "
                          "object=\"default/orphan-1\" "
                          "field=\"metadata.labels[kubernetes.io/service-name]\" "
                          "anomaly=\"service_missing\"") != std::string::npos);
    CHECK(f.lines[0][0] == 'I');  // V(2): Services and slices race on a normal creation

    // Syncs (also of every Service, after a node change) and an identical re-delivery report
    // nothing more; no other Service is touched.
    REQUIRE(f.sync());
    p.onNodeUpsert(node("node-1", "192.168.1.10", "zone-b"));
    REQUIRE(f.sync());
    p.onSliceUpsert(orphan);
    REQUIRE(f.sync());
    CHECK(f.sink.take().empty());
    CHECK(f.count("service_missing") == 1);
    CHECK(f.dests("10.96.0.10", 80) == Strings{"10.244.1.7:8080"});

    // A change of the slice is reported again (once per change).
    p.onSliceUpsert(
        SliceBuilder("default", "orphan-1", "nosuch").port("http", 8080).ep("10.244.1.9"));
    CHECK(f.sink.take().size() == 1);
    CHECK(f.count("service_missing") == 2);
    CHECK(f.waiting() == 1);

    // The Service appears: the slice is used, nothing is reported.
    p.onServiceUpsert(svc("nosuch", "10.96.0.11"));
    REQUIRE(f.sync());
    CHECK(f.dests("10.96.0.11", 80) == Strings{"10.244.1.9:8080"});
    CHECK(f.waiting() == 0);
    // Deleted before its slice (the normal order): waiting again, not reported.
    p.onServiceDelete({"default", "nosuch"});
    CHECK(f.waiting() == 1);
    p.onSliceDelete({"default", "orphan-1"});
    CHECK(f.waiting() == 0);
    CHECK(f.sink.take().empty());
    CHECK(f.count("service_missing") == 2);
    CHECK(f.count("duplicate_endpoint_across_slices") == 0);
}

TEST_CASE("slices listed before the Services synced are judged once, at that sync",
          "[proxier][anomalies]") {
    Fixture f;
    auto& p = f.make();
    p.onSliceUpsert(SliceBuilder("default", "web-1", "web").port("http", 8080).ep("10.244.1.7"));
    p.onSliceUpsert(
        SliceBuilder("default", "orphan-1", "nosuch").port("http", 8080).ep("10.244.1.8"));
    p.setSlicesSynced();
    p.onServiceUpsert(svc("web", "10.96.0.10"));
    CHECK(f.sink.take().empty());
    CHECK(f.waiting() == 0);
    p.setServicesSynced();
    CHECK(f.sink.take() == Strings{kMissing});
    CHECK(f.waiting() == 1);
    p.setServicesSynced();  // once only
    CHECK(f.count("service_missing") == 1);
    REQUIRE(f.sync());
    CHECK(f.dests("10.96.0.10", 80) == Strings{"10.244.1.7:8080"});
}

TEST_CASE("an endpoint in two slices of one Service is used once and reported once",
          "[proxier][anomalies]") {
    Fixture f;
    auto& p = f.start();
    p.onServiceUpsert(svc("dup", "10.96.0.16"));
    p.onServiceUpsert(svc("web", "10.96.0.10"));
    p.onSliceUpsert(SliceBuilder("default", "dup-1", "dup")
                        .port("http", 8080)
                        .ep("10.244.1.2")
                        .ep("10.244.1.3"));
    CHECK(f.sink.take().empty());
    const k8s::EndpointSlice dup2 =
        SliceBuilder("default", "dup-2", "dup").port("http", 8080).ep("10.244.1.2");
    p.onSliceUpsert(dup2);
    CHECK(f.sink.take() ==
          Strings{"duplicate_endpoint_across_slices: EndpointSlice default/dup-2: endpoints: "
                  "\"10.244.1.2\" (port http 8080/TCP) is also an endpoint of EndpointSlice "
                  "default/dup-1 of Service default/dup; used once, as kube-proxy does (a "
                  "non-terminating copy wins)"});
    CHECK(f.count("duplicate_endpoint_across_slices") == 1);
    REQUIRE(f.sync());
    CHECK(f.dests("10.96.0.16", 80) == Strings{"10.244.1.2:8080", "10.244.1.3:8080"});

    // Not again on syncs or an identical re-delivery.
    p.onSliceUpsert(dup2);
    p.onNodeUpsert(node("node-1", "192.168.1.10", "zone-b"));
    REQUIRE(f.sync());
    CHECK(f.count("duplicate_endpoint_across_slices") == 1);

    // The same address under another port is another real server: not a duplicate. Nor is
    // a slice of another Service with the same address.
    p.onSliceUpsert(SliceBuilder("default", "dup-3", "dup").port("metrics", 9090).ep("10.244.1.3"));
    p.onSliceUpsert(SliceBuilder("default", "web-1", "web").port("http", 8080).ep("10.244.1.3"));
    CHECK(f.count("duplicate_endpoint_across_slices") == 1);
    // Every endpoint of dup-1 is in another slice (two with port http): one report, counted.
    p.onSliceUpsert(SliceBuilder("default", "dup-4", "dup").port("http", 8080).ep("10.244.1.3"));
    p.onSliceUpsert(SliceBuilder("default", "dup-1", "dup")
                        .port("http", 8080)
                        .ep("10.244.1.2")
                        .ep("10.244.1.3")
                        .ep("10.244.1.4"));
    const auto got = f.sink.take();
    REQUIRE(got.size() == 2);  // dup-4 (duplicates dup-1), then dup-1 (duplicates 2 and 4)
    CHECK(got[1].find("EndpointSlice default/dup-1: endpoints: ") != std::string::npos);
    CHECK(got[1].find("; 2 endpoints of other slices duplicate this one's") != std::string::npos);
    CHECK(f.count("duplicate_endpoint_across_slices") == 3);
    CHECK(f.count("service_missing") == 0);
}

TEST_CASE("the reporter counts and logs decoder notes as warnings", "[anomalies]") {
    metrics::Registry reg;
    AnomalyReporter rep(reg);
    std::vector<std::string> lines;
    gLines = &lines;
    log::setSink(capture);
    rep.onAnomaly({"Service",
                   {"default", "many"},
                   "many_ports",
                   "spec.ports",
                   "Service default/many: spec.ports: 10000 valid ports",
                   0});
    rep.onAnomaly({"Service",
                   {"default", "many"},
                   "many_ports",
                   "spec.ports",
                   "Service default/many: spec.ports: 10001 valid ports",
                   0});
    rep.onSlicesWithoutService(net::Family::V6, 3);
    log::setSink(nullptr);
    gLines = nullptr;
    CHECK(reg.value("kube_ipvs_handled_anomalies_total",
                    {{"kind", "Service"}, {"reason", "many_ports"}}) == 2);
    CHECK(reg.value("kube_ipvs_endpointslices_without_service", {{"ip_family", "IPv6"}}) == 3);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0][0] == 'W');
    CHECK(lines[0].find("reason=\"Service default/many: spec.ports: 10000 valid ports\"") !=
          std::string::npos);
}
