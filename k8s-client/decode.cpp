#include "k8s-client/decode.h"

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

namespace kipvs::k8s {

namespace json = boost::json;

std::string_view kindName(Kind k) {
    switch (k) {
        case Kind::Service:
            return "Service";
        case Kind::EndpointSlice:
            return "EndpointSlice";
        case Kind::Node:
            return "Node";
    }
    return "?";
}

std::string DecodeReport::describe(const Issue& issue) const {
    return describeIssue(kind, key, issue);
}

std::string describeIssue(Kind kind, const ObjectKey& key, const Issue& issue) {
    std::string out(kindName(kind));
    out += ' ';
    if (key.name.empty()) {
        out += key.ns.empty() ? std::string("<unnamed>") : key.ns + "/<unnamed>";
    } else {
        out += key.toString();
    }
    out += ": ";
    if (!issue.field.empty()) {
        out += issue.field;
        out += ": ";
    }
    out += issue.reason;
    return out;
}

namespace {

constexpr std::string_view kProxyNameLabel = "service.kubernetes.io/service-proxy-name";
constexpr std::string_view kServiceNameLabel = "kubernetes.io/service-name";
constexpr std::string_view kZoneLabel = "topology.kubernetes.io/zone";
constexpr std::string_view kTriggerTimeAnnotation =
    "endpoints.kubernetes.io/last-change-trigger-time";
constexpr std::string_view kAutoscalerTaint = "ToBeDeletedByClusterAutoscaler";

// Thrown only inside this file, to leave a decode function from any depth with the reason;
// caught in the public entry points, never escapes.
struct Reject {
    Issue issue;
};

[[noreturn]] void reject(std::string field, std::string reason) {
    throw Reject{Issue{std::move(field), std::move(reason)}};
}

// A field that is absent or JSON null reads as nullptr: the API treats both as "unset".
const json::value* get(const json::object* o, std::string_view k) {
    if (o == nullptr) {
        return nullptr;
    }
    const auto* v = o->if_contains(k);
    return (v == nullptr || v->is_null()) ? nullptr : v;
}

std::string quoted(std::string_view s) {
    std::string out = "\"";
    // Reasons go to logs; a 1 MB garbage value must not become a 1 MB log line.
    if (s.size() > 64) {
        out.append(s.substr(0, 64));
        out += "...";
    } else {
        out.append(s);
    }
    out += '"';
    return out;
}

std::string describeValue(const json::value& v) {
    if (v.is_string()) {
        return quoted(v.get_string());
    }
    std::string s = json::serialize(v);
    if (s.size() > 64) {
        s.resize(64);
        s += "...";
    }
    return s;
}

std::string idx(std::string_view base, std::size_t i) {
    std::string s(base);
    s += '[';
    s += std::to_string(i);
    s += ']';
    return s;
}

std::string sub(std::string_view base, std::string_view field) {
    std::string s(base);
    s += '.';
    s += field;
    return s;
}

// Each of these reads an optional field of a given JSON type; a field of the wrong type is an
// Issue with `field` as the path.
const json::object* objectField(const json::object* o, std::string_view k, const std::string& path,
                                bool required = false) {
    const auto* v = get(o, k);
    if (v == nullptr) {
        if (required) {
            reject(path, "missing");
        }
        return nullptr;
    }
    if (!v->is_object()) {
        reject(path, "not an object: " + describeValue(*v));
    }
    return &v->get_object();
}

const json::array* arrayField(const json::object* o, std::string_view k, const std::string& path) {
    const auto* v = get(o, k);
    if (v == nullptr) {
        return nullptr;
    }
    if (!v->is_array()) {
        reject(path, "not an array: " + describeValue(*v));
    }
    return &v->get_array();
}

std::optional<std::string_view> stringField(const json::object* o, std::string_view k,
                                            const std::string& path) {
    const auto* v = get(o, k);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_string()) {
        reject(path, "not a string: " + describeValue(*v));
    }
    return std::string_view(v->get_string());
}

// An integer JSON number, or an Issue (returned, not thrown) for entry-level checks.
std::optional<std::int64_t> asInt(const json::value& v) {
    if (v.is_int64()) {
        return v.get_int64();
    }
    if (v.is_uint64()) {
        const auto u = v.get_uint64();
        return u > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(u);
    }
    return std::nullopt;
}

std::optional<std::int64_t> intField(const json::object* o, std::string_view k,
                                     const std::string& path) {
    const auto* v = get(o, k);
    if (v == nullptr) {
        return std::nullopt;
    }
    auto i = asInt(*v);
    if (!i) {
        reject(path, "not an integer: " + describeValue(*v));
    }
    return i;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Annotations are not kept, but a total over the API server's limit says the object did not
// come from a conforming server (or a limit was raised): noted, and otherwise ignored.
void noteLargeAnnotations(const json::object* meta, DecodeReport& report) {
    const auto* ann = get(meta, "annotations");
    if (ann == nullptr || !ann->is_object()) {
        return;  // not read, so not judged: only slices read an annotation (and check its type)
    }
    std::size_t total = 0;
    std::size_t largest = 0;
    std::string_view largestKey;
    for (const auto& kv : ann->get_object()) {
        const std::size_t n =
            kv.key().size() + (kv.value().is_string() ? kv.value().get_string().size() : 0);
        total += n;
        if (n > largest) {
            largest = n;
            largestKey = kv.key();
        }
    }
    if (total > kMaxAnnotationBytes) {
        report.notes.push_back(
            {kNoteLargeAnnotations,
             {"metadata.annotations",
              std::to_string(total) + " bytes (largest " + quoted(largestKey) + ", " +
                  std::to_string(largest) + " bytes), over the API server's limit of " +
                  std::to_string(kMaxAnnotationBytes) +
                  "; ignored: a proxy reads no annotation but the trigger time"}});
    }
}

// Reads metadata.{namespace,name} into report.key first, so that every later Issue names the
// object.
const json::object* readMeta(const json::value& v, DecodeReport& report, bool namespaced) {
    if (!v.is_object()) {
        reject("", "not a JSON object");
    }
    const auto* root = &v.get_object();
    const auto* meta = objectField(root, "metadata", "metadata", true);
    if (auto ns = stringField(meta, "namespace", "metadata.namespace")) {
        report.key.ns = std::string(*ns);
    }
    if (auto name = stringField(meta, "name", "metadata.name")) {
        report.key.name = std::string(*name);
    }
    if (report.key.name.empty()) {
        reject("metadata.name", "missing");
    }
    if (namespaced && report.key.ns.empty()) {
        reject("metadata.namespace", "missing");
    }
    if (!namespaced) {
        report.key.ns.clear();
    }
    noteLargeAnnotations(meta, report);
    return meta;
}

std::optional<std::uint16_t> toPort(std::int64_t v, bool allowZero) {
    if (v < (allowZero ? 0 : 1) || v > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(v);
}

// Entry-level decoders return false (after filling `issue`) to drop the entry; a Reject inside
// one would reject the whole object, so they check types themselves.
bool decodeServicePort(const json::value& v, const std::string& path, ServicePort& out,
                       Issue& issue) {
    if (!v.is_object()) {
        issue = {path, "not an object: " + describeValue(v)};
        return false;
    }
    const auto& o = v.get_object();
    if (const auto* n = get(&o, "name")) {
        if (!n->is_string()) {
            issue = {sub(path, "name"), "not a string: " + describeValue(*n)};
            return false;
        }
        out.name = std::string(n->get_string());
    }
    if (const auto* p = get(&o, "protocol")) {
        auto proto =
            p->is_string() ? ipvs::parseProtocol(std::string_view(p->get_string())) : std::nullopt;
        if (!proto) {
            issue = {sub(path, "protocol"), describeValue(*p) + " is not a supported protocol"};
            return false;
        }
        out.protocol = *proto;
    }
    const auto* p = get(&o, "port");
    if (p == nullptr) {
        issue = {sub(path, "port"), "missing"};
        return false;
    }
    auto pi = asInt(*p);
    auto port = pi ? toPort(*pi, false) : std::nullopt;
    if (!port) {
        issue = {sub(path, "port"), describeValue(*p) + " is not a valid port"};
        return false;
    }
    out.port = *port;
    if (const auto* np = get(&o, "nodePort")) {
        auto ni = asInt(*np);
        auto nodePort = ni ? toPort(*ni, true) : std::nullopt;
        if (!nodePort) {
            issue = {sub(path, "nodePort"), describeValue(*np) + " is not a valid port"};
            return false;
        }
        out.nodePort = *nodePort;
    }
    return true;
}

// A list of IP strings; invalid entries are dropped with an Issue each.
template <class T, class Parse>
std::vector<T> decodeList(const json::array* arr, const std::string& path, DecodeReport& report,
                          std::string_view what, Parse parse) {
    std::vector<T> out;
    if (arr == nullptr) {
        return out;
    }
    out.reserve(arr->size());
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const auto& v = (*arr)[i];
        std::optional<T> parsed;
        if (v.is_string()) {
            parsed = parse(trim(std::string_view(v.get_string())));
        }
        if (!parsed) {
            report.dropped.push_back(
                {idx(path, i), describeValue(v) + " is not a valid " + std::string(what)});
            continue;
        }
        out.push_back(*parsed);
    }
    return out;
}

TrafficPolicy trafficPolicy(const json::object* spec, std::string_view k, const std::string& path) {
    auto s = stringField(spec, k, path);
    if (!s || s->empty() || *s == "Cluster" || *s == "Global") {
        return TrafficPolicy::Cluster;  // "Global" is the pre-1.21 spelling of Cluster
    }
    if (*s == "Local") {
        return TrafficPolicy::Local;
    }
    reject(path, quoted(*s) + " is not a known traffic policy");
}

Service decodeServiceImpl(const json::value& v, DecodeReport& report) {
    Service svc;
    const auto* meta = readMeta(v, report, true);
    svc.key = report.key;
    const auto* root = &v.get_object();
    if (const auto* labels = objectField(meta, "labels", "metadata.labels")) {
        svc.otherProxy = labels->contains(kProxyNameLabel);
    }
    const auto* spec = objectField(root, "spec", "spec", true);

    auto type = stringField(spec, "type", "spec.type");
    if (!type || type->empty() || *type == "ClusterIP") {
        svc.type = ServiceType::ClusterIP;
    } else if (*type == "NodePort") {
        svc.type = ServiceType::NodePort;
    } else if (*type == "LoadBalancer") {
        svc.type = ServiceType::LoadBalancer;
    } else if (*type == "ExternalName") {
        svc.type = ServiceType::ExternalName;
    } else {
        reject("spec.type", quoted(*type) + " is not a known Service type");
    }

    // Cluster IPs decide everything the proxy programs, so an invalid one rejects the object.
    auto clusterIP = stringField(spec, "clusterIP", "spec.clusterIP").value_or("");
    const auto* clusterIPs = arrayField(spec, "clusterIPs", "spec.clusterIPs");
    if (svc.type != ServiceType::ExternalName) {
        if (clusterIP == "None" ||
            (clusterIP.empty() && clusterIPs != nullptr && !clusterIPs->empty() &&
             (*clusterIPs)[0].is_string() && (*clusterIPs)[0].get_string() == "None")) {
            svc.headless = true;
        } else if (clusterIPs != nullptr && !clusterIPs->empty()) {
            if (clusterIPs->size() > 2) {
                reject("spec.clusterIPs", "more than two cluster IPs");
            }
            for (std::size_t i = 0; i < clusterIPs->size(); ++i) {
                const auto& e = (*clusterIPs)[i];
                auto ip = e.is_string()
                              ? net::IpAddress::parseLegacy(std::string_view(e.get_string()))
                              : std::nullopt;
                if (!ip) {
                    reject(idx("spec.clusterIPs", i),
                           describeValue(e) + " is not a valid IP address");
                }
                if (!svc.clusterIPs.empty() && svc.clusterIPs[0].family() == ip->family()) {
                    reject(idx("spec.clusterIPs", i), "two cluster IPs of one family");
                }
                svc.clusterIPs.push_back(*ip);
            }
            if (!clusterIP.empty() &&
                svc.clusterIPs[0].toString() !=
                    net::IpAddress::parseLegacy(clusterIP).value_or(net::IpAddress()).toString()) {
                reject("spec.clusterIP", quoted(clusterIP) + " differs from spec.clusterIPs[0]");
            }
        } else if (!clusterIP.empty()) {
            auto ip = net::IpAddress::parseLegacy(clusterIP);
            if (!ip) {
                reject("spec.clusterIP", quoted(clusterIP) + " is not a valid IP address");
            }
            svc.clusterIPs.push_back(*ip);
        }
        // Neither set: no cluster IP is allocated yet (a Service just created). That is a
        // valid state, not a bad object: it is delivered with no clusterIPs and the proxy
        // skips it, as kube-proxy does, until an update brings the IP.
    }

    if (const auto* ports = arrayField(spec, "ports", "spec.ports")) {
        svc.ports.reserve(ports->size());
        for (std::size_t i = 0; i < ports->size(); ++i) {
            ServicePort p;
            Issue issue;
            if (decodeServicePort((*ports)[i], idx("spec.ports", i), p, issue)) {
                svc.ports.push_back(std::move(p));
            } else {
                report.dropped.push_back(std::move(issue));
            }
        }
        if (svc.ports.size() > kManyServicePorts) {
            report.notes.push_back(
                {kNoteManyPorts,
                 {"spec.ports", std::to_string(svc.ports.size()) + " valid ports (more than " +
                                    std::to_string(kManyServicePorts) +
                                    "); all are programmed, as kube-proxy does: each is a virtual "
                                    "server per Service address and NodePort node IP"}});
        }
    }

    svc.externalIPs = decodeList<net::IpAddress>(
        arrayField(spec, "externalIPs", "spec.externalIPs"), "spec.externalIPs", report,
        "IP address", [](std::string_view s) { return net::IpAddress::parseLegacy(s); });
    svc.loadBalancerSourceRanges = decodeList<net::Cidr>(
        arrayField(spec, "loadBalancerSourceRanges", "spec.loadBalancerSourceRanges"),
        "spec.loadBalancerSourceRanges", report, "CIDR",
        [](std::string_view s) { return net::Cidr::parseLegacy(s, true); });

    svc.externalTrafficPolicy =
        trafficPolicy(spec, "externalTrafficPolicy", "spec.externalTrafficPolicy");
    svc.internalTrafficPolicy =
        trafficPolicy(spec, "internalTrafficPolicy", "spec.internalTrafficPolicy");

    if (auto hc = intField(spec, "healthCheckNodePort", "spec.healthCheckNodePort")) {
        auto port = toPort(*hc, true);
        if (!port) {
            reject("spec.healthCheckNodePort", std::to_string(*hc) + " is not a valid port");
        }
        svc.healthCheckNodePort = *port;
    }

    auto affinity = stringField(spec, "sessionAffinity", "spec.sessionAffinity");
    if (affinity && *affinity == "ClientIP") {
        svc.sessionAffinityClientIP = true;
        const auto* cfg = objectField(spec, "sessionAffinityConfig", "spec.sessionAffinityConfig");
        const auto* cip = objectField(cfg, "clientIP", "spec.sessionAffinityConfig.clientIP");
        const std::string tpath = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
        if (auto t = intField(cip, "timeoutSeconds", tpath)) {
            if (*t < 1 || *t > 86400) {
                reject(tpath, std::to_string(*t) + " is not in 1..86400");
            }
            svc.sessionAffinityTimeout = static_cast<std::uint32_t>(*t);
        }
    } else if (affinity && !affinity->empty() && *affinity != "None") {
        reject("spec.sessionAffinity", quoted(*affinity) + " is not a known session affinity");
    }

    const auto* status = objectField(root, "status", "status");
    const auto* lb = objectField(status, "loadBalancer", "status.loadBalancer");
    if (const auto* ingress = arrayField(lb, "ingress", "status.loadBalancer.ingress")) {
        for (std::size_t i = 0; i < ingress->size(); ++i) {
            const auto path = idx("status.loadBalancer.ingress", i);
            const auto& e = (*ingress)[i];
            if (!e.is_object()) {
                report.dropped.push_back({path, "not an object: " + describeValue(e)});
                continue;
            }
            const auto* ip = get(&e.get_object(), "ip");
            if (ip == nullptr || (ip->is_string() && ip->get_string().empty())) {
                continue;  // hostname-only ingress: nothing for an IP proxy
            }
            auto addr = ip->is_string()
                            ? net::IpAddress::parseLegacy(std::string_view(ip->get_string()))
                            : std::nullopt;
            if (!addr) {
                report.dropped.push_back(
                    {sub(path, "ip"), describeValue(*ip) + " is not a valid IP address"});
                continue;
            }
            LoadBalancerIngress in;
            in.ip = *addr;
            const auto* mode = get(&e.get_object(), "ipMode");
            // Only an absent mode or "VIP" means "capture locally"; anything else is treated
            // as Proxy, the safe reading of a mode this proxy does not know.
            in.proxyMode = mode != nullptr && !(mode->is_string() && mode->get_string() == "VIP");
            svc.loadBalancerIngress.push_back(in);
        }
    }
    return svc;
}

bool decodeEndpointPort(const json::value& v, const std::string& path, EndpointPort& out,
                        bool& silentDrop, Issue& issue) {
    silentDrop = false;
    if (!v.is_object()) {
        issue = {path, "not an object: " + describeValue(v)};
        return false;
    }
    const auto& o = v.get_object();
    const auto* n = get(&o, "name");
    const auto* p = get(&o, "port");
    if (n == nullptr || p == nullptr) {
        silentDrop = true;  // a nil name or port means "all ports": not implemented by proxies
        return false;
    }
    if (!n->is_string()) {
        issue = {sub(path, "name"), "not a string: " + describeValue(*n)};
        return false;
    }
    out.name = std::string(n->get_string());
    auto pi = asInt(*p);
    if (pi && *pi == 0) {
        silentDrop = true;
        return false;
    }
    auto port = pi ? toPort(*pi, false) : std::nullopt;
    if (!port) {
        issue = {sub(path, "port"), describeValue(*p) + " is not a valid port"};
        return false;
    }
    out.port = *port;
    if (const auto* pr = get(&o, "protocol")) {
        auto proto = pr->is_string() ? ipvs::parseProtocol(std::string_view(pr->get_string()))
                                     : std::nullopt;
        if (!proto) {
            issue = {sub(path, "protocol"), describeValue(*pr) + " is not a supported protocol"};
            return false;
        }
        out.protocol = *proto;
    }
    return true;
}

std::vector<Name> hintNames(const json::value* arr) {
    std::vector<Name> out;
    if (arr == nullptr || !arr->is_array()) {
        return out;
    }
    for (const auto& e : arr->get_array()) {
        if (!e.is_object()) {
            continue;
        }
        const auto* n = get(&e.get_object(), "name");
        if (n != nullptr && n->is_string() && !n->get_string().empty()) {
            out.push_back(Name::intern(std::string_view(n->get_string())));
        }
    }
    return out;
}

// Returns false to drop the endpoint; `issue.reason` empty means a silent drop.
bool decodeEndpoint(const json::value& v, const std::string& path, net::Family family,
                    Endpoint& out, Issue& issue) {
    if (!v.is_object()) {
        issue = {path, "not an object: " + describeValue(v)};
        return false;
    }
    const auto& o = v.get_object();
    const auto* addrs = get(&o, "addresses");
    if (addrs == nullptr || (addrs->is_array() && addrs->get_array().empty())) {
        return false;  // no address: nothing to route to
    }
    if (!addrs->is_array()) {
        issue = {sub(path, "addresses"), "not an array: " + describeValue(*addrs)};
        return false;
    }
    const auto& a0 = addrs->get_array()[0];
    auto ip = a0.is_string() ? net::IpAddress::parseLegacy(std::string_view(a0.get_string()))
                             : std::nullopt;
    if (!ip) {
        issue = {sub(path, "addresses[0]"), describeValue(a0) + " is not a valid IP address"};
        return false;
    }
    if (ip->family() != family) {
        issue = {sub(path, "addresses[0]"), quoted(ip->toString()) + " is not an " +
                                                std::string(net::familyName(family)) +
                                                " address (addressType)"};
        return false;
    }
    out.address = *ip;
    if (const auto* cond = get(&o, "conditions")) {
        if (!cond->is_object()) {
            issue = {sub(path, "conditions"), "not an object: " + describeValue(*cond)};
            return false;
        }
        const auto& c = cond->get_object();
        for (auto [name, dst, dflt] :
             {std::tuple<std::string_view, bool*, bool>{"ready", &out.ready, true},
              {"serving", &out.serving, true},
              {"terminating", &out.terminating, false}}) {
            const auto* b = get(&c, name);
            if (b == nullptr) {
                *dst = dflt;
            } else if (b->is_bool()) {
                *dst = b->get_bool();
            } else {
                issue = {sub(path, "conditions." + std::string(name)),
                         "not a boolean: " + describeValue(*b)};
                return false;
            }
        }
    }
    if (const auto* nn = get(&o, "nodeName")) {
        if (!nn->is_string()) {
            issue = {sub(path, "nodeName"), "not a string: " + describeValue(*nn)};
            return false;
        }
        if (!nn->get_string().empty()) {
            out.nodeName = Name::intern(std::string_view(nn->get_string()));
        }
    }
    if (const auto* hints = get(&o, "hints"); hints != nullptr && hints->is_object()) {
        Hints h;
        h.forZones = hintNames(get(&hints->get_object(), "forZones"));
        h.forNodes = hintNames(get(&hints->get_object(), "forNodes"));
        if (!h.forZones.empty() || !h.forNodes.empty()) {
            out.hints = internHints(std::move(h));
        }
    }
    return true;
}

// Endpoints of one slice with the same address are all kept, as kube-proxy keeps them: the
// merge makes one real server of them. Noted once per slice, naming the first duplicate.
void noteDuplicateEndpoints(const std::vector<Endpoint>& eps, const std::vector<std::uint32_t>& at,
                            DecodeReport& report) {
    if (eps.size() < 2) {
        return;
    }
    std::vector<std::uint32_t> order(eps.size());
    for (std::uint32_t i = 0; i < order.size(); ++i) {
        order[i] = i;
    }
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        return eps[a].address < eps[b].address || (eps[a].address == eps[b].address && a < b);
    });
    std::size_t count = 0;
    std::uint32_t first = 0;  // kept index of the earliest duplicate in the input
    std::uint32_t original = 0;
    std::size_t group = 0;  // where the run of equal addresses starts: its lowest index
    for (std::size_t k = 1; k < order.size(); ++k) {
        if (eps[order[k]].address != eps[order[group]].address) {
            group = k;
            continue;
        }
        if (count == 0 || order[k] < first) {
            first = order[k];
            original = order[group];
        }
        ++count;
    }
    if (count == 0) {
        return;
    }
    std::string reason = quoted(eps[first].address.toString()) + " duplicates " +
                         idx("endpoints", at[original]) +
                         "; used once, as kube-proxy does (a non-terminating copy wins)";
    if (count > 1) {
        reason += "; " + std::to_string(count) + " duplicate endpoints in this slice";
    }
    report.notes.push_back(
        {kNoteDuplicateEndpoint, {sub(idx("endpoints", at[first]), "addresses[0]"), reason}});
}

EndpointSlice decodeSliceImpl(const json::value& v, DecodeReport& report) {
    EndpointSlice es;
    const auto* meta = readMeta(v, report, true);
    es.key = report.key;
    const auto* root = &v.get_object();
    const auto* labels = objectField(meta, "labels", "metadata.labels");
    const std::string labelPath = "metadata.labels[" + std::string(kServiceNameLabel) + "]";
    auto svcName = stringField(labels, kServiceNameLabel, labelPath);
    if (!svcName || svcName->empty()) {
        reject(labelPath, "missing (a slice must name its Service)");
    }
    es.serviceName = std::string(*svcName);

    const auto* annotations = objectField(meta, "annotations", "metadata.annotations");
    if (const auto* tt = get(annotations, kTriggerTimeAnnotation)) {
        auto ns =
            tt->is_string() ? parseRfc3339Nanos(std::string_view(tt->get_string())) : std::nullopt;
        if (ns) {
            es.triggerTimeNs = ns;
        } else {
            report.dropped.push_back(
                {"metadata.annotations[" + std::string(kTriggerTimeAnnotation) + "]",
                 describeValue(*tt) + " is not an RFC 3339 time"});
        }
    }

    auto at = stringField(root, "addressType", "addressType");
    if (!at) {
        reject("addressType", "missing");
    }
    if (*at == "IPv4") {
        es.addressType = AddressType::IPv4;
    } else if (*at == "IPv6") {
        es.addressType = AddressType::IPv6;
    } else if (*at == "FQDN") {
        es.addressType = AddressType::FQDN;
    } else {
        reject("addressType", quoted(*at) + " is not a known address type");
    }

    if (const auto* ports = arrayField(root, "ports", "ports")) {
        es.ports.reserve(ports->size());
        for (std::size_t i = 0; i < ports->size(); ++i) {
            EndpointPort p;
            Issue issue;
            bool silent = false;
            if (decodeEndpointPort((*ports)[i], idx("ports", i), p, silent, issue)) {
                es.ports.push_back(std::move(p));
            } else if (!silent) {
                report.dropped.push_back(std::move(issue));
            }
        }
    }

    if (es.addressType == AddressType::FQDN) {
        return es;  // never used by a proxy, and its addresses are not IPs
    }
    const auto family = es.addressType == AddressType::IPv4 ? net::Family::V4 : net::Family::V6;
    if (const auto* eps = arrayField(root, "endpoints", "endpoints")) {
        std::vector<Endpoint> kept;
        kept.reserve(eps->size());
        // Index in `endpoints` of each kept endpoint, to name a duplicate's field.
        std::vector<std::uint32_t> at;
        at.reserve(eps->size());
        for (std::size_t i = 0; i < eps->size(); ++i) {
            Endpoint ep;
            Issue issue;
            if (decodeEndpoint((*eps)[i], idx("endpoints", i), family, ep, issue)) {
                kept.push_back(ep);
                at.push_back(static_cast<std::uint32_t>(i));
            } else if (!issue.reason.empty()) {
                report.dropped.push_back(std::move(issue));
            }
        }
        noteDuplicateEndpoints(kept, at, report);
        es.endpoints = kept;
    }
    return es;
}

Node decodeNodeImpl(const json::value& v, DecodeReport& report) {
    Node node;
    const auto* meta = readMeta(v, report, false);
    node.name = report.key.name;
    const auto* root = &v.get_object();
    const auto* labels = objectField(meta, "labels", "metadata.labels");
    if (auto zone =
            stringField(labels, kZoneLabel, "metadata.labels[" + std::string(kZoneLabel) + "]")) {
        node.zone = std::string(*zone);
    }
    node.deleting = get(meta, "deletionTimestamp") != nullptr;

    const auto* spec = objectField(root, "spec", "spec");
    const auto* podCIDRs = arrayField(spec, "podCIDRs", "spec.podCIDRs");
    auto parseCidr = [](std::string_view s) { return net::Cidr::parseLegacy(s, true); };
    if (podCIDRs != nullptr && !podCIDRs->empty()) {
        node.podCIDRs = decodeList<net::Cidr>(podCIDRs, "spec.podCIDRs", report, "CIDR", parseCidr);
    } else if (auto one = stringField(spec, "podCIDR", "spec.podCIDR"); one && !one->empty()) {
        if (auto c = net::Cidr::parseLegacy(*one, true)) {
            node.podCIDRs.push_back(*c);
        } else {
            report.dropped.push_back({"spec.podCIDR", quoted(*one) + " is not a valid CIDR"});
        }
    }
    if (const auto* taints = arrayField(spec, "taints", "spec.taints")) {
        for (const auto& t : *taints) {
            if (t.is_object()) {
                const auto* key = get(&t.get_object(), "key");
                if (key != nullptr && key->is_string() && key->get_string() == kAutoscalerTaint) {
                    node.toBeDeletedByAutoscaler = true;
                }
            }
        }
    }

    const auto* status = objectField(root, "status", "status");
    if (const auto* addrs = arrayField(status, "addresses", "status.addresses")) {
        for (std::size_t i = 0; i < addrs->size(); ++i) {
            const auto path = idx("status.addresses", i);
            const auto& e = (*addrs)[i];
            if (!e.is_object()) {
                report.dropped.push_back({path, "not an object: " + describeValue(e)});
                continue;
            }
            const auto* type = get(&e.get_object(), "type");
            NodeAddress na;
            if (type != nullptr && type->is_string() && type->get_string() == "InternalIP") {
                na.type = NodeAddressType::InternalIP;
            } else if (type != nullptr && type->is_string() && type->get_string() == "ExternalIP") {
                na.type = NodeAddressType::ExternalIP;
            } else {
                continue;  // Hostname, InternalDNS, ...: not used by a proxy
            }
            const auto* a = get(&e.get_object(), "address");
            auto ip = (a != nullptr && a->is_string())
                          ? net::IpAddress::parseLegacy(std::string_view(a->get_string()))
                          : std::nullopt;
            if (!ip) {
                report.dropped.push_back(
                    {sub(path, "address"),
                     (a ? describeValue(*a) : std::string("null")) + " is not a valid IP address"});
                continue;
            }
            na.address = *ip;
            node.addresses.push_back(na);
        }
    }
    return node;
}

template <class T, class F>
std::optional<T> guarded(Kind kind, const json::value& v, DecodeReport& report, F f) {
    report.kind = kind;
    report.rejection.reset();
    report.dropped.clear();
    report.notes.clear();
    try {
        return f(v, report);
    } catch (Reject& r) {
        report.rejection = std::move(r.issue);
        return std::nullopt;
    }
}

// FNV-1a, fed field by field with separators so that ("ab","c") and ("a","bc") differ.
class Hasher {
  public:
    void bytes(const void* p, std::size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n; ++i) {
            h_ ^= b[i];
            h_ *= 1099511628211ULL;
        }
    }
    void str(std::string_view s) {
        num(s.size());
        bytes(s.data(), s.size());
    }
    void num(std::uint64_t v) { bytes(&v, sizeof v); }
    void ip(const net::IpAddress& a) {
        num(static_cast<std::uint64_t>(a.family()));
        bytes(a.data(), a.size());
    }
    void cidr(const net::Cidr& c) {
        ip(c.base());
        num(c.prefix());
    }
    std::uint64_t value() const { return h_; }

  private:
    std::uint64_t h_ = 1469598103934665603ULL;
};

}  // namespace

std::optional<Service> decodeService(const json::value& v, DecodeReport& report) {
    return guarded<Service>(Kind::Service, v, report, decodeServiceImpl);
}

std::optional<EndpointSlice> decodeEndpointSlice(const json::value& v, DecodeReport& report) {
    return guarded<EndpointSlice>(Kind::EndpointSlice, v, report, decodeSliceImpl);
}

std::optional<Node> decodeNode(const json::value& v, DecodeReport& report) {
    return guarded<Node>(Kind::Node, v, report, decodeNodeImpl);
}

namespace {

std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    // Howard Hinnant's algorithm: proleptic Gregorian date to days since 1970-01-01.
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) {
        return false;
    }
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

}  // namespace

std::optional<std::int64_t> parseRfc3339Nanos(std::string_view s) {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    if (!digits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, mo) ||
        s[7] != '-' || !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s, 11, 2, h) || s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' ||
        !digits(s, 17, 2, sec)) {
        return std::nullopt;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) {
        return std::nullopt;
    }
    std::size_t pos = 19;
    std::int64_t frac = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        int n = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (n < 9) {
                frac = frac * 10 + (s[pos] - '0');
            }
            ++n;
            ++pos;
        }
        if (n == 0) {
            return std::nullopt;
        }
        for (; n < 9; ++n) {
            frac *= 10;
        }
    }
    std::int64_t offset = 0;
    if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
        ++pos;
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        int oh = 0, om = 0;
        if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
            !digits(s, pos + 4, 2, om)) {
            return std::nullopt;
        }
        offset = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
        pos += 6;
    } else {
        return std::nullopt;
    }
    if (pos != s.size()) {
        return std::nullopt;
    }
    const std::int64_t days = daysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
    const std::int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    // Nanoseconds since the epoch fit an int64 from 1678 to 2262; a time outside is invalid.
    constexpr std::int64_t kMaxSecs = std::numeric_limits<std::int64_t>::max() / 1000000000LL - 1;
    if (secs > kMaxSecs || secs < -kMaxSecs) {
        return std::nullopt;
    }
    return secs * 1000000000LL + frac;
}

std::uint64_t contentHash(const Service& s) {
    Hasher h;
    h.str(s.key.ns);
    h.str(s.key.name);
    h.num(static_cast<std::uint64_t>(s.type));
    h.num(s.clusterIPs.size());
    for (const auto& ip : s.clusterIPs) {
        h.ip(ip);
    }
    h.num(s.headless);
    h.num(s.ports.size());
    for (const auto& p : s.ports) {
        h.str(p.name);
        h.num(static_cast<std::uint64_t>(p.protocol));
        h.num(p.port);
        h.num(p.nodePort);
    }
    h.num(s.externalIPs.size());
    for (const auto& ip : s.externalIPs) {
        h.ip(ip);
    }
    h.num(s.loadBalancerSourceRanges.size());
    for (const auto& c : s.loadBalancerSourceRanges) {
        h.cidr(c);
    }
    h.num(s.loadBalancerIngress.size());
    for (const auto& in : s.loadBalancerIngress) {
        h.ip(in.ip);
        h.num(in.proxyMode);
    }
    h.num(static_cast<std::uint64_t>(s.externalTrafficPolicy));
    h.num(static_cast<std::uint64_t>(s.internalTrafficPolicy));
    h.num(s.healthCheckNodePort);
    h.num(s.sessionAffinityClientIP);
    h.num(s.sessionAffinityTimeout);
    h.num(s.otherProxy);
    return h.value();
}

std::uint64_t contentHash(const EndpointSlice& s) {
    Hasher h;
    h.str(s.key.ns);
    h.str(s.key.name);
    h.str(s.serviceName);
    h.num(static_cast<std::uint64_t>(s.addressType));
    h.num(s.ports.size());
    for (const auto& p : s.ports) {
        h.str(p.name);
        h.num(static_cast<std::uint64_t>(p.protocol));
        h.num(p.port);
    }
    h.num(s.endpoints.size());
    for (const auto& e : s.endpoints) {
        h.ip(e.address);
        h.num(static_cast<std::uint64_t>(e.ready) | (e.serving ? 2U : 0U) |
              (e.terminating ? 4U : 0U));
        h.str(e.nodeName.view());
        // Interned: equal hints have the same id, and ids are stable for the process.
        h.num(e.hints.id());
    }
    h.num(s.triggerTimeNs.has_value());
    h.num(static_cast<std::uint64_t>(s.triggerTimeNs.value_or(0)));
    return h.value();
}

std::uint64_t contentHash(const Node& n) {
    Hasher h;
    h.str(n.name);
    h.str(n.zone);
    h.num(n.addresses.size());
    for (const auto& a : n.addresses) {
        h.num(static_cast<std::uint64_t>(a.type));
        h.ip(a.address);
    }
    h.num(n.podCIDRs.size());
    for (const auto& c : n.podCIDRs) {
        h.cidr(c);
    }
    h.num(n.deleting);
    h.num(n.toBeDeletedByAutoscaler);
    return h.value();
}

}  // namespace kipvs::k8s
