// Decoding of API objects (Boost.JSON values) into the value types of objects.h, with
// validation.
//
// Policy (kubernetes-api.md §7, kube-proxy-ipvs.md §2):
//  * The object is REJECTED (not delivered; a consumer that had an earlier version gets
//    onDelete) when it is structurally unusable: not an object, no metadata.name (and, for
//    namespaced kinds, metadata.namespace), an unknown enum value in a scalar field that
//    decides how the proxy programs it (spec.type, the traffic policies, sessionAffinity,
//    addressType), an out-of-range scalar (healthCheckNodePort, the affinity timeout), an
//    EndpointSlice without the label kubernetes.io/service-name, or a Service whose
//    clusterIP/clusterIPs holds something that is not an IP (or two of one family). A Service
//    with no cluster IP at all (one created a moment ago) is valid: it is delivered with no
//    clusterIPs and the proxy skips it, as kube-proxy does.
//  * An invalid ENTRY inside a list is DROPPED and the rest of the object is kept: one
//    Service port (port 0 or > 65535, unknown protocol, bad nodePort), one externalIP, one
//    loadBalancerSourceRange, one ingress IP, one slice port (unknown protocol, port out of
//    range), one endpoint (addresses[0] not an IP, or of the other family than the slice's
//    addressType), one Node address or podCIDR, an unparseable trigger-time annotation.
//  * What the API allows but a proxy ignores is dropped SILENTLY (not an issue): slice ports
//    with a null name or a null/0 port, endpoints with no addresses, hostname-only ingress,
//    Node addresses of other types, and all endpoints of FQDN slices (they are never used
//    and have no IP to hold).
//  * What is usable but anomalous is HANDLED as kube-proxy handles it, and NOTED (a Note,
//    with a stable code for metrics): annotations over the API server's total size limit
//    (kMaxAnnotationBytes; ignored: only the trigger time is read), more than
//    kManyServicePorts valid Service ports (all are kept and programmed), and endpoints of one
//    slice with the same address (all are kept; the proxy merges them into one real server).
// Every rejection and drop is reported with the object's kind and key, the field path and a
// reason, e.g. `Service default/web: spec.ports[1].port: 70000 is not a valid port`.
//
// Only the fields of objects.h are read. Annotations are ignored except the trigger time on
// slices; node names and hints are interned.
#pragma once

#include <boost/json/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "k8s-client/objects.h"

namespace kipvs::k8s {

enum class Kind : std::uint8_t { Service, EndpointSlice, Node };

// "Service", "EndpointSlice", "Node".
std::string_view kindName(Kind k);

// One problem with one field.
struct Issue {
    std::string field;   // e.g. "spec.ports[1].port"; "" for the object as a whole
    std::string reason;  // e.g. "70000 is not a valid port"
};

// The API server's limit on the total size of an object's annotations (keys and values),
// TotalAnnotationSizeLimitB. A larger total cannot come from a conforming API server.
inline constexpr std::size_t kMaxAnnotationBytes = 256 * 1024;
// More valid ports than this on one Service is noted (each is a virtual server per Service
// address and per node IP for a NodePort).
inline constexpr std::size_t kManyServicePorts = 1000;

// The codes of Notes (stable: they are metric label values).
inline constexpr std::string_view kNoteLargeAnnotations = "annotations_too_large";
inline constexpr std::string_view kNoteManyPorts = "many_ports";
inline constexpr std::string_view kNoteDuplicateEndpoint = "duplicate_endpoint";

// Something unusual the object holds that is handled (the object is still delivered), at
// most one per code and object.
struct Note {
    std::string_view code;  // one of the kNote* codes
    Issue issue;
};

// What decoding one object found.
struct DecodeReport {
    Kind kind = Kind::Service;
    ObjectKey key;                   // as far as it could be read
    std::optional<Issue> rejection;  // set when the object as a whole is rejected
    std::vector<Issue> dropped;      // entries dropped from lists
    std::vector<Note> notes;         // anomalies handled (only when the object is delivered)

    // "Service default/web: spec.ports[1].port: 70000 is not a valid port"
    std::string describe(const Issue& issue) const;
};

// As DecodeReport::describe, for any kind and key.
std::string describeIssue(Kind kind, const ObjectKey& key, const Issue& issue);

std::optional<Service> decodeService(const boost::json::value& v, DecodeReport& report);
std::optional<EndpointSlice> decodeEndpointSlice(const boost::json::value& v, DecodeReport& report);
std::optional<Node> decodeNode(const boost::json::value& v, DecodeReport& report);

// RFC 3339 (with optional fraction and offset) to Unix nanoseconds.
std::optional<std::int64_t> parseRfc3339Nanos(std::string_view s);

// A 64-bit digest of everything a consumer sees in a decoded object. The client keeps this
// (not the object) per key, to tell an update that changed nothing from one that did.
std::uint64_t contentHash(const Service& s);
std::uint64_t contentHash(const EndpointSlice& s);
std::uint64_t contentHash(const Node& n);

// Per-kind glue for the generic reflector.
template <class T>
struct Codec;

template <>
struct Codec<Service> {
    static constexpr Kind kKind = Kind::Service;
    static std::optional<Service> decode(const boost::json::value& v, DecodeReport& r) {
        return decodeService(v, r);
    }
    static ObjectKey key(const Service& s) { return s.key; }
};

template <>
struct Codec<EndpointSlice> {
    static constexpr Kind kKind = Kind::EndpointSlice;
    static std::optional<EndpointSlice> decode(const boost::json::value& v, DecodeReport& r) {
        return decodeEndpointSlice(v, r);
    }
    static ObjectKey key(const EndpointSlice& s) { return s.key; }
};

template <>
struct Codec<Node> {
    static constexpr Kind kKind = Kind::Node;
    static std::optional<Node> decode(const boost::json::value& v, DecodeReport& r) {
        return decodeNode(v, r);
    }
    static ObjectKey key(const Node& n) { return {"", n.name}; }
};

}  // namespace kipvs::k8s
