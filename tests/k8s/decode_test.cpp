// Decoding realistic objects (tests/k8s/data, shaped after kubernetes-api.md §7) and
// rejecting or trimming bad ones, plus the streaming list parser.
#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include <fstream>
#include <sstream>

#include "k8s-client/decode.h"
#include "k8s-client/list_parser.h"
#include "k8s-client/rest.h"

using namespace kipvs;
using namespace kipvs::k8s;
namespace json = boost::json;

namespace {

json::value fixture(const std::string& name) {
    std::ifstream in(std::string(K8S_TEST_DATA) + "/" + name);
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return json::parse(ss.str());
}

net::IpAddress ip(const char* s) {
    return *net::IpAddress::parse(s);
}

std::vector<std::string> messages(const DecodeReport& r) {
    std::vector<std::string> out;
    for (const auto& i : r.dropped) {
        out.push_back(r.describe(i));
    }
    if (r.rejection) {
        out.push_back(r.describe(*r.rejection));
    }
    return out;
}

// A Service with one port `port` plus whatever `spec` adds.
json::value svc(const std::string& specExtra, const std::string& ports = R"([{"port":80}])") {
    return json::parse(
        R"({"metadata":{"name":"web","namespace":"default"},"spec":{"clusterIP":"10.96.0.1","ports":)" +
        ports + (specExtra.empty() ? "" : "," + specExtra) + "}}");
}

}  // namespace

TEST_CASE("ClusterIP Service decodes to exactly the expected value", "[decode]") {
    DecodeReport r;
    auto s = decodeService(fixture("service-clusterip.json"), r);
    REQUIRE(s);
    Service want;
    want.key = {"kube-system", "kube-dns"};
    want.clusterIPs = {ip("10.96.0.10")};
    want.ports = {{"dns", ipvs::Protocol::UDP, 53, 0},
                  {"dns-tcp", ipvs::Protocol::TCP, 53, 0},
                  {"metrics", ipvs::Protocol::TCP, 9153, 0}};
    CHECK(*s == want);
    CHECK(r.dropped.empty());
    CHECK_FALSE(r.rejection);
}

TEST_CASE("NodePort Service without a clusterIP yet is delivered without one", "[decode]") {
    // Valid and transient (the IP is being allocated): the proxy skips it, no warning.
    DecodeReport r;
    auto s = decodeService(fixture("service-nodeport-no-clusterip.json"), r);
    REQUIRE(s);
    CHECK(s->clusterIPs.empty());
    CHECK_FALSE(s->headless);
    CHECK(s->type == ServiceType::NodePort);
    CHECK(r.dropped.empty());
    CHECK_FALSE(r.rejection);
}

TEST_CASE("LoadBalancer Service: ingress modes, policies, affinity, ranges", "[decode]") {
    DecodeReport r;
    auto s = decodeService(fixture("service-loadbalancer.json"), r);
    REQUIRE(s);
    CHECK(s->type == ServiceType::LoadBalancer);
    REQUIRE(s->loadBalancerIngress.size() == 3);  // the hostname-only entry is skipped
    CHECK(s->loadBalancerIngress[0] == LoadBalancerIngress{ip("203.0.113.10"), false});
    CHECK(s->loadBalancerIngress[1] == LoadBalancerIngress{ip("203.0.113.11"), true});
    CHECK(s->loadBalancerIngress[2] == LoadBalancerIngress{ip("203.0.113.12"), false});
    CHECK(s->externalTrafficPolicy == TrafficPolicy::Local);
    CHECK(s->healthCheckNodePort == 32001);
    CHECK(s->sessionAffinityClientIP);
    CHECK(s->sessionAffinityTimeout == 600);
    CHECK(s->externalIPs == std::vector<net::IpAddress>{ip("198.51.100.7")});
    REQUIRE(s->loadBalancerSourceRanges.size() == 2);
    CHECK(s->loadBalancerSourceRanges[1].toString() == "192.0.2.0/25");  // spaces trimmed
    CHECK(s->ports.at(0).nodePort == 31443);
    CHECK(r.dropped.empty());
}

TEST_CASE("dual-stack, headless and ExternalName Services", "[decode]") {
    DecodeReport r;
    auto ds = decodeService(fixture("service-dualstack.json"), r);
    REQUIRE(ds);
    CHECK(ds->clusterIPs == std::vector<net::IpAddress>{ip("fd00:10:96::a"), ip("10.96.0.20")});
    CHECK(ds->internalTrafficPolicy == TrafficPolicy::Local);
    auto hl = decodeService(fixture("service-headless.json"), r);
    REQUIRE(hl);
    CHECK(hl->headless);
    CHECK(hl->clusterIPs.empty());
    auto en = decodeService(fixture("service-externalname.json"), r);
    REQUIRE(en);
    CHECK(en->type == ServiceType::ExternalName);
    CHECK(en->clusterIPs.empty());
    CHECK(r.dropped.empty());
}

TEST_CASE("EndpointSlice: nil conditions default, nil name/port dropped silently", "[decode]") {
    DecodeReport r;
    auto es = decodeEndpointSlice(fixture("endpointslice-nil-conditions.json"), r);
    REQUIRE(es);
    CHECK(es->serviceName == "manual");
    REQUIRE(es->endpoints.size() == 2);  // the one with no addresses is ignored
    for (const auto& e : es->endpoints) {
        CHECK((e.ready && e.serving && !e.terminating));
        CHECK(e.nodeName.empty());
        CHECK(e.hints == nullptr);
    }
    CHECK(es->ports == std::vector<EndpointPort>{{"", ipvs::Protocol::TCP, 8080}});
    CHECK(r.dropped.empty());
}

TEST_CASE("EndpointSlice: terminating endpoints, trigger time, interned node names", "[decode]") {
    DecodeReport r;
    auto es = decodeEndpointSlice(fixture("endpointslice-terminating.json"), r);
    REQUIRE(es);
    REQUIRE(es->endpoints.size() == 3);
    const auto& t = es->endpoints[1];
    CHECK((!t.ready && t.serving && t.terminating));
    CHECK((!es->endpoints[2].ready && !es->endpoints[2].serving && es->endpoints[2].terminating));
    CHECK(es->endpoints[1].nodeName == Name::intern("node-2"));
    CHECK(es->endpoints[1].nodeName == es->endpoints[2].nodeName);
    CHECK(es->triggerTimeNs == 1714557605123456789LL);
    CHECK(es->serviceKey() == ObjectKey{"default", "web"});
}

TEST_CASE("interned names: one id per string, unset is not \"\", safe across threads", "[decode]") {
    const Name a = Name::intern("node-interned-a");
    CHECK(a == Name::intern(std::string("node-interned-") + "a"));
    CHECK(a.view() == "node-interned-a");
    CHECK_FALSE(a == Name::intern("node-interned-b"));
    CHECK(Name().empty());
    CHECK(Name().view().empty());
    const Name blank = Name::intern("");
    CHECK_FALSE(blank.empty());
    CHECK_FALSE(blank == Name());
    CHECK(Name::intern("zone-b") > Name::intern("zone-a"));  // ordered by text, not by id

    // Threads interning overlapping names get the same ids and read every name back, also
    // names that fill more than one of the table's chunks.
    constexpr int kThreads = 4;
    constexpr int kNames = 3000;
    std::vector<std::vector<Name>> got(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&got, t] {
            for (int i = 0; i < kNames; ++i) {
                const int n = (i * (t + 1)) % kNames;
                got[t].push_back(Name::intern("threaded-node-" + std::to_string(n)));
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    for (int t = 0; t < kThreads; ++t) {
        for (int i = 0; i < kNames; ++i) {
            const std::string want = "threaded-node-" + std::to_string((i * (t + 1)) % kNames);
            REQUIRE(got[t][i].view() == want);
            REQUIRE(got[t][i] == Name::intern(want));
        }
    }
}

TEST_CASE("EndpointSlice: FQDN slices keep no endpoints; hints are shared", "[decode]") {
    DecodeReport r;
    auto fq = decodeEndpointSlice(fixture("endpointslice-fqdn.json"), r);
    REQUIRE(fq);
    CHECK(fq->addressType == AddressType::FQDN);
    CHECK(fq->endpoints.empty());
    auto v6 = decodeEndpointSlice(fixture("endpointslice-hints-v6.json"), r);
    REQUIRE(v6);
    REQUIRE(v6->endpoints.size() == 3);
    REQUIRE(v6->endpoints[0].hints != nullptr);
    CHECK(v6->endpoints[0].hints == v6->endpoints[2].hints);  // same contents, one copy
    CHECK(v6->endpoints[0].hints != v6->endpoints[1].hints);
    CHECK(v6->endpoints[0].hints->forNodes == std::vector<Name>{Name::intern("node-1")});
    CHECK(v6->endpoints[1].hints->forZones == std::vector<Name>{Name::intern("zone-b")});
}

TEST_CASE("Node: spec {} and a draining node", "[decode]") {
    DecodeReport r;
    auto n = decodeNode(fixture("node-empty-spec.json"), r);
    REQUIRE(n);
    CHECK(n->name == "kube-worker-1");
    CHECK(n->zone == "zone-a");
    CHECK(n->addresses ==
          std::vector<NodeAddress>{{NodeAddressType::InternalIP, ip("192.168.1.21")},
                                   {NodeAddressType::InternalIP, ip("fd00::21")},
                                   {NodeAddressType::ExternalIP, ip("198.51.100.21")}});
    CHECK(n->podCIDRs.empty());
    CHECK_FALSE(n->deleting);
    auto d = decodeNode(fixture("node-draining.json"), r);
    REQUIRE(d);
    CHECK(d->deleting);
    CHECK(d->toBeDeletedByAutoscaler);
    REQUIRE(d->podCIDRs.size() == 2);
    CHECK(d->podCIDRs[1].toString() == "fd00:10:244:2::/64");
}

TEST_CASE("Status bodies: 410 Expired/Gone, 504 too large RV, text errors", "[decode]") {
    auto ev = fixture("status-410.json");
    auto e = apiErrorFromStatusJson(json::serialize(ev.at("object")));
    REQUIRE(e);
    CHECK(e->isExpired());
    CHECK(e->describe() == "410 Expired: too old resource version: 1 (260)");
    auto gone =
        apiErrorFromStatusJson(R"({"kind":"Status","code":410,"reason":"Gone","message":"x"})");
    CHECK(gone->isExpired());
    auto big = apiErrorFromResponse(
        504, "application/json",
        R"({"kind":"Status","code":504,"reason":"Timeout","message":"Timeout: Too large resource version: 9, current: 5","details":{"causes":[{"reason":"ResourceVersionTooLarge"}],"retryAfterSeconds":1}})",
        "1");
    CHECK(big.isTooLargeResourceVersion());
    CHECK(big.retryAfter == 1);
    auto text =
        apiErrorFromResponse(429, "text/plain", "Too many requests, please try again later.\n", "");
    CHECK(text.message == "Too many requests, please try again later.");
    CHECK_FALSE(text.retryAfter);
    auto forbidden = apiErrorFromResponse(403, "application/json", "{not json", "");
    CHECK(forbidden.status == 403);
    CHECK(forbidden.message == "{not json");
}

TEST_CASE("invalid list entries are dropped with a reason naming object and field",
          "[decode][invalid]") {
    DecodeReport r;
    auto s = decodeService(
        svc(R"("externalIPs":["1.2.3.4","1.2.3.999","1.2.3"],"loadBalancerSourceRanges":["10.0.0.0/8","10.0.0.0/33"])",
            R"([{"port":80},{"port":70000},{"port":0},{"port":53,"protocol":"ICMP"},{"port":8080,"nodePort":-1}])"),
        r);
    REQUIRE(s);
    CHECK(s->ports.size() == 1);
    CHECK(s->externalIPs.size() == 1);
    CHECK(s->loadBalancerSourceRanges.size() == 1);
    CHECK(messages(r) ==
          std::vector<std::string>{
              "Service default/web: spec.ports[1].port: 70000 is not a valid port",
              "Service default/web: spec.ports[2].port: 0 is not a valid port",
              "Service default/web: spec.ports[3].protocol: \"ICMP\" is not a supported protocol",
              "Service default/web: spec.ports[4].nodePort: -1 is not a valid port",
              "Service default/web: spec.externalIPs[1]: \"1.2.3.999\" is not a valid IP address",
              "Service default/web: spec.externalIPs[2]: \"1.2.3\" is not a valid IP address",
              "Service default/web: spec.loadBalancerSourceRanges[1]: \"10.0.0.0/33\" is not a "
              "valid CIDR",
          });
}

TEST_CASE("endpoints of the wrong family or with a bad address are dropped", "[decode][invalid]") {
    DecodeReport r;
    auto es = decodeEndpointSlice(
        json::parse(
            R"({"metadata":{"name":"s","namespace":"ns","labels":{"kubernetes.io/service-name":"svc"}},
            "addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["fd00::1"]},{"addresses":["banana"]},{"addresses":["10.0.0.2"],"conditions":{"ready":"yes"}}],
            "ports":[{"name":"p","port":99999},{"name":"q","port":80,"protocol":"ICMP"},{"name":"ok","port":81,"protocol":"SCTP"}]})"),
        r);
    REQUIRE(es);
    CHECK(es->endpoints.size() == 1);
    CHECK(es->ports == std::vector<EndpointPort>{{"ok", ipvs::Protocol::SCTP, 81}});
    CHECK(messages(r) ==
          std::vector<std::string>{
              "EndpointSlice ns/s: ports[0].port: 99999 is not a valid port",
              "EndpointSlice ns/s: ports[1].protocol: \"ICMP\" is not a supported protocol",
              "EndpointSlice ns/s: endpoints[1].addresses[0]: \"fd00::1\" is not an IPv4 address "
              "(addressType)",
              "EndpointSlice ns/s: endpoints[2].addresses[0]: \"banana\" is not a valid IP address",
              "EndpointSlice ns/s: endpoints[3].conditions.ready: not a boolean: \"yes\"",
          });
}

TEST_CASE("addresses with leading zeros are read as decimal, as kube-proxy reads them",
          "[decode]") {
    // The API server accepted them for years; stored objects may still hold them. Dropping
    // them would delete the Service (a cluster IP), open a firewall (every source range
    // dropped) or lose endpoints.
    DecodeReport r;
    auto s = decodeService(json::parse(R"({"metadata":{"name":"web","namespace":"default"},
        "spec":{"type":"LoadBalancer","clusterIP":"010.096.000.001","ports":[{"port":80}],
        "externalIPs":["198.051.100.007"],"loadBalancerSourceRanges":["010.0.0.0/8"]},
        "status":{"loadBalancer":{"ingress":[{"ip":"203.000.113.010"}]}}})"),
                           r);
    REQUIRE(s);
    CHECK(messages(r).empty());
    CHECK(s->clusterIPs == std::vector<net::IpAddress>{ip("10.96.0.1")});
    CHECK(s->externalIPs == std::vector<net::IpAddress>{ip("198.51.100.7")});
    CHECK(s->loadBalancerSourceRanges == std::vector<net::Cidr>{*net::Cidr::parse("10.0.0.0/8")});
    REQUIRE(s->loadBalancerIngress.size() == 1);
    CHECK(s->loadBalancerIngress[0].ip == ip("203.0.113.10"));
    DecodeReport r2;
    auto es = decodeEndpointSlice(
        json::parse(
            R"({"metadata":{"name":"s","namespace":"ns","labels":{"kubernetes.io/service-name":"svc"}},
            "addressType":"IPv4","endpoints":[{"addresses":["010.000.000.001"]}],"ports":[{"port":80}]})"),
        r2);
    REQUIRE(es);
    REQUIRE(es->endpoints.size() == 1);
    CHECK(es->endpoints[0].address == ip("10.0.0.1"));
}

TEST_CASE("structurally invalid objects are rejected", "[decode][invalid]") {
    struct Case {
        std::string json;
        std::string message;
    };
    const Case c = GENERATE(
        Case{R"([1,2])", "Service <unnamed>: not a JSON object"},
        Case{R"({"metadata":{"namespace":"ns"},"spec":{}})",
             "Service ns/<unnamed>: metadata.name: missing"},
        Case{R"({"metadata":{"name":"a"},"spec":{}})", "Service a: metadata.namespace: missing"},
        Case{R"({"metadata":{"name":"a","namespace":"n"}})", "Service n/a: spec: missing"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"type":"Magic","clusterIP":"10.0.0.1"}})",
            "Service n/a: spec.type: \"Magic\" is not a known Service type"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","ports":{}}})",
            "Service n/a: spec.ports: not an array: {}"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.2"]}})",
            "Service n/a: spec.clusterIP: \"10.0.0.1\" differs from spec.clusterIPs[0]"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIPs":["10.0.0.2","10.0.0.3"]}})",
            "Service n/a: spec.clusterIPs[1]: two cluster IPs of one family"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","externalTrafficPolicy":"Nearby"}})",
            "Service n/a: spec.externalTrafficPolicy: \"Nearby\" is not a known traffic policy"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":0}}}})",
            "Service n/a: spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not in "
            "1..86400"},
        Case{
            R"({"metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","healthCheckNodePort":70000}})",
            "Service n/a: spec.healthCheckNodePort: 70000 is not a valid port"});
    DecodeReport r;
    CHECK_FALSE(decodeService(json::parse(c.json), r));
    CHECK(messages(r) == std::vector<std::string>{c.message});

    CHECK_FALSE(decodeEndpointSlice(
        json::parse(R"({"metadata":{"name":"s","namespace":"n"},"addressType":"IPv4"})"), r));
    CHECK(r.describe(*r.rejection) ==
          "EndpointSlice n/s: metadata.labels[kubernetes.io/service-name]: missing (a slice must "
          "name its Service)");
    CHECK_FALSE(decodeEndpointSlice(
        json::parse(
            R"({"metadata":{"name":"s","namespace":"n","labels":{"kubernetes.io/service-name":"x"}},"addressType":"IPv5"})"),
        r));
    CHECK(r.describe(*r.rejection) ==
          "EndpointSlice n/s: addressType: \"IPv5\" is not a known address type");
}

TEST_CASE("large objects: 1 MB annotations and 10,000 ports", "[decode]") {
    json::value v = svc("");
    v.at("metadata").as_object()["annotations"] = json::object{{"big", std::string(1 << 20, 'x')}};
    json::array ports;
    for (int i = 0; i < 10000; ++i) {
        ports.push_back(json::object{{"name", "p" + std::to_string(i)}, {"port", 1 + i}});
    }
    v.at("spec").as_object()["ports"] = std::move(ports);
    DecodeReport r;
    auto s = decodeService(v, r);
    REQUIRE(s);
    CHECK(s->ports.size() == 10000);
    CHECK(s->ports[9999].port == 10000);
    // Both are handled (the object is delivered in full) and noted, once each.
    CHECK(r.dropped.empty());
    REQUIRE(r.notes.size() == 2);
    CHECK(r.notes[0].code == kNoteLargeAnnotations);
    CHECK(r.describe(r.notes[0].issue) ==
          "Service default/web: metadata.annotations: 1048579 bytes (largest \"big\", 1048579 "
          "bytes), over the API server's limit of 262144; ignored: a proxy reads no annotation "
          "but the trigger time");
    CHECK(r.notes[1].code == kNoteManyPorts);
    CHECK(r.describe(r.notes[1].issue) ==
          "Service default/web: spec.ports: 10000 valid ports (more than 1000); all are "
          "programmed, as kube-proxy does: each is a virtual server per Service address and "
          "NodePort node IP");
}

TEST_CASE("notes start at the API server's annotation limit and above 1,000 ports", "[decode]") {
    auto withAnnotations = [](std::size_t valueBytes) {
        json::value v = svc("");
        // Key "a" (1 byte) plus the value: the API server counts both.
        v.at("metadata").as_object()["annotations"] =
            json::object{{"a", std::string(valueBytes, 'x')}};
        return v;
    };
    DecodeReport r;
    REQUIRE(decodeService(withAnnotations(kMaxAnnotationBytes - 1), r));
    CHECK(r.notes.empty());
    REQUIRE(decodeService(withAnnotations(kMaxAnnotationBytes), r));
    REQUIRE(r.notes.size() == 1);
    CHECK(r.notes[0].code == kNoteLargeAnnotations);
    CHECK(r.notes[0].issue.field == "metadata.annotations");

    auto withPorts = [](int n) {
        json::array ports;
        for (int i = 0; i < n; ++i) {
            ports.push_back(json::object{{"name", "p" + std::to_string(i)}, {"port", 1 + i}});
        }
        ports.push_back(json::object{{"name", "zero"}, {"port", 0}});  // dropped: not counted
        return svc("", json::serialize(ports));
    };
    REQUIRE(decodeService(withPorts(1000), r));
    CHECK(r.notes.empty());
    CHECK(r.dropped.size() == 1);
    REQUIRE(decodeService(withPorts(1001), r));
    REQUIRE(r.notes.size() == 1);
    CHECK(r.notes[0].code == kNoteManyPorts);

    // The realistic fixtures have nothing to note; a Node's annotations are judged too.
    for (const char* f : {"service-clusterip.json", "service-loadbalancer.json"}) {
        REQUIRE(decodeService(fixture(f), r));
        CHECK(r.notes.empty());
    }
    REQUIRE(decodeEndpointSlice(fixture("endpointslice-terminating.json"), r));
    CHECK(r.notes.empty());
    json::value n = json::parse(R"({"metadata":{"name":"node-1"},"spec":{}})");
    n.at("metadata").as_object()["annotations"] =
        json::object{{"big", std::string(kMaxAnnotationBytes, 'x')}};
    REQUIRE(decodeNode(n, r));
    REQUIRE(r.notes.size() == 1);
    CHECK(
        r.describe(r.notes[0].issue).rfind("Node node-1: metadata.annotations: 262147 bytes", 0) ==
        0);
}

TEST_CASE("duplicate endpoints in one slice are kept and noted once, by input index", "[decode]") {
    auto slice = [](const std::string& endpoints) {
        return json::parse(
            R"({"metadata":{"name":"web-1","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},)"
            R"("addressType":"IPv4","ports":[{"name":"http","port":8080}],"endpoints":)" +
            endpoints + "}");
    };
    DecodeReport r;
    auto es = decodeEndpointSlice(
        slice(
            R"([{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"]},)"
            R"({"addresses":["10.0.0.1"],"conditions":{"ready":false}},{"addresses":["10.0.0.3"]}])"),
        r);
    REQUIRE(es);
    CHECK(es->endpoints.size() == 4);  // kept: the merge makes one real server of them
    CHECK(r.dropped.empty());
    REQUIRE(r.notes.size() == 1);
    CHECK(r.notes[0].code == kNoteDuplicateEndpoint);
    CHECK(r.describe(r.notes[0].issue) ==
          "EndpointSlice default/web-1: endpoints[2].addresses[0]: \"10.0.0.1\" duplicates "
          "endpoints[0]; used once, as kube-proxy does (a non-terminating copy wins)");

    // Indices are the input's, with dropped entries counted; several duplicates: one note.
    es = decodeEndpointSlice(
        slice(
            R"([{"addresses":["bad"]},{"addresses":["10.0.0.2"]},{"addresses":["10.0.0.1"]},)"
            R"({"addresses":["10.0.0.2"]},{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.1"]}])"),
        r);
    REQUIRE(es);
    CHECK(es->endpoints.size() == 5);
    CHECK(r.dropped.size() == 1);
    REQUIRE(r.notes.size() == 1);
    CHECK(r.describe(r.notes[0].issue) ==
          "EndpointSlice default/web-1: endpoints[3].addresses[0]: \"10.0.0.2\" duplicates "
          "endpoints[1]; used once, as kube-proxy does (a non-terminating copy wins); 3 "
          "duplicate endpoints in this slice");

    // Distinct addresses: nothing to note.
    REQUIRE(decodeEndpointSlice(slice(R"([{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2"]}])"),
                                r));
    CHECK(r.notes.empty());
}

TEST_CASE("content hash tells changes apart", "[decode]") {
    DecodeReport r;
    auto a = *decodeService(fixture("service-loadbalancer.json"), r);
    auto b = a;
    CHECK(contentHash(a) == contentHash(b));
    b.loadBalancerIngress[1].proxyMode = false;
    CHECK(contentHash(a) != contentHash(b));
    auto e = *decodeEndpointSlice(fixture("endpointslice-terminating.json"), r);
    auto f = e;
    auto notServing = f.endpoints[0];
    notServing.serving = false;
    f.endpoints.set(0, notServing);
    CHECK(contentHash(e) != contentHash(f));
}

TEST_CASE("RFC 3339 times", "[decode]") {
    CHECK(parseRfc3339Nanos("1970-01-01T00:00:00Z") == 0);
    CHECK(parseRfc3339Nanos("1970-01-01T00:00:01.5Z") == 1500000000);
    CHECK(parseRfc3339Nanos("1970-01-01T01:00:00+01:00") == 0);
    CHECK(parseRfc3339Nanos("2024-02-29T12:00:00Z") == 1709208000LL * 1000000000LL);
    CHECK_FALSE(parseRfc3339Nanos("2024-02-29 12:00:00Z"));
    CHECK_FALSE(parseRfc3339Nanos("2024-13-01T00:00:00Z"));
    CHECK_FALSE(parseRfc3339Nanos("2024-01-01T00:00:00"));
    // Outside int64 nanoseconds (found by fuzz_objects: the product overflowed).
    CHECK(parseRfc3339Nanos("2262-01-01T00:00:00Z").has_value());
    CHECK_FALSE(parseRfc3339Nanos("4048-01-01T00:00:00Z"));
    CHECK_FALSE(parseRfc3339Nanos("9999-12-31T23:59:59Z"));
    CHECK_FALSE(parseRfc3339Nanos("0001-01-01T00:00:00Z"));
}

TEST_CASE("ListParser hands out items one by one at any split", "[listparser]") {
    const std::string body =
        R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"abc","remainingItemCount":3},"items":[{"metadata":{"name":"a\"{["}},{"metadata":{"name":"b"},"spec":{"x":[1,2.5,null,true,{"y":"z"}]}},7]})";
    for (std::size_t split = 1; split <= body.size(); split += 3) {
        std::vector<std::string> items;
        ListParser p([&](json::value&& v) { items.push_back(json::serialize(v)); });
        for (std::size_t i = 0; i < body.size(); i += split) {
            REQUIRE(p.feed(std::string_view(body).substr(i, split)));
        }
        REQUIRE(p.finish());
        CHECK(p.kind() == "ServiceList");
        CHECK(p.resourceVersion() == "42");
        CHECK(p.continueToken() == "abc");
        CHECK(items ==
              std::vector<std::string>{
                  R"({"metadata":{"name":"a\"{["}})",
                  R"({"metadata":{"name":"b"},"spec":{"x":[1,2.5E0,null,true,{"y":"z"}]}})", "7"});
    }
    ListParser p([](json::value&&) {});
    CHECK(p.feed(R"({"metadata":{"resourceVersion":"1"},"items":null})"));
    CHECK(p.finish());
    p.reset();
    CHECK_FALSE(p.feed(R"({"items":[{]})"));
    CHECK_FALSE(p.error().empty());
    p.reset();
    CHECK(p.feed(R"({"items":[{"a":1})"));
    CHECK_FALSE(p.finish());  // truncated
    p.reset();
    CHECK(p.feed(R"({"items":[]})"));
    CHECK_FALSE(p.finish());  // no resourceVersion
    p.reset();
    CHECK_FALSE(p.feed("[]"));
}

TEST_CASE("ListParser::reset() forgets a response cut off inside an item's scalar",
          "[listparser]") {
    // Found by fuzz_objects: the next response's "kind" came out as an item.
    std::vector<std::string> items;
    ListParser p([&](json::value&& v) { items.push_back(json::serialize(v)); });
    CHECK(p.feed(R"({"items":[1,"trunc)"));
    p.reset();
    items.clear();
    CHECK(p.feed(R"({"kind":"ServiceList","metadata":{"resourceVersion":"5"},"items":[{"a":1}]})"));
    REQUIRE(p.finish());
    CHECK(p.kind() == "ServiceList");
    CHECK(items == std::vector<std::string>{R"({"a":1})"});
    CHECK(p.items() == 1);
}
