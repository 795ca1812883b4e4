// The API objects a proxy reads, decoded and validated, with only the fields it needs
// (kubernetes-api.md §7, kube-proxy-ipvs.md §2).
//
// Values here are already valid: addresses parsed, ports in range, protocols known. Decoding
// (k8s-client/decode.h) drops or rejects what is not, and says which object and field.
// Memory counts: 44,000 Services with 10 endpoints each must fit in a few tens of MiB, so
// node and zone names are interned (one copy per distinct name) and endpoints are 40 bytes.
#pragma once

#include <algorithm>
#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipvs/net.h"
#include "ipvs/types.h"
#include "k8s-client/compact_list.h"

namespace kipvs::k8s {

// An interned string: equal contents give the same id, so comparing names is comparing
// integers. Unset (empty()) is not the same as "". Interning is thread-safe (the client
// decodes on a thread of its own); the table lives for the process and holds one copy per
// distinct node or zone name. An id is 4 bytes, not a pointer's 8: every endpoint of every
// slice holds one (440,000 at 44,000 Services x 10 endpoints).
class Name {
  public:
    Name() = default;
    // Past kMaxNames distinct names (only a hostile API server gets there: a cluster has a
    // few thousand nodes and zones), further new names are interned as unset.
    static Name intern(std::string_view s);
    static constexpr std::uint32_t kMaxNames = 1U << 22;
    bool empty() const { return id_ == 0; }
    std::string_view view() const;
    friend bool operator==(Name a, Name b) { return a.id_ == b.id_; }
    friend auto operator<=>(Name a, Name b) { return a.view() <=> b.view(); }

  private:
    explicit Name(std::uint32_t id) : id_(id) {}
    std::uint32_t id_ = 0;
};

// namespace/name of a namespaced object; for the Node, namespace is empty.
struct ObjectKey {
    std::string ns;
    std::string name;
    std::string toString() const { return ns.empty() ? name : ns + "/" + name; }
    friend auto operator<=>(const ObjectKey&, const ObjectKey&) = default;
    friend bool operator==(const ObjectKey&, const ObjectKey&) = default;
};

enum class ServiceType : std::uint8_t { ClusterIP, NodePort, LoadBalancer, ExternalName };
enum class TrafficPolicy : std::uint8_t { Cluster, Local };

struct ServicePort {
    std::string name;  // "" for the single unnamed port
    ipvs::Protocol protocol = ipvs::Protocol::TCP;
    std::uint16_t port = 0;      // 1..65535
    std::uint16_t nodePort = 0;  // 0 = none
    friend bool operator==(const ServicePort&, const ServicePort&) = default;
};

struct LoadBalancerIngress {
    net::IpAddress ip;
    bool proxyMode = false;  // ipMode: Proxy (do not capture this IP locally)
    friend bool operator==(const LoadBalancerIngress&, const LoadBalancerIngress&) = default;
};

struct Service {
    ObjectKey key;
    ServiceType type = ServiceType::ClusterIP;
    // spec.clusterIPs (or spec.clusterIP when clusterIPs is empty); empty for headless
    // (clusterIP "None") and ExternalName Services, and for a Service whose cluster IP is not
    // allocated yet (the proxy skips those, as kube-proxy does).
    CompactList<net::IpAddress> clusterIPs;
    bool headless = false;
    std::vector<ServicePort> ports;
    CompactList<net::IpAddress> externalIPs;
    CompactList<net::Cidr> loadBalancerSourceRanges;
    CompactList<LoadBalancerIngress> loadBalancerIngress;  // ingress entries that have an IP
    TrafficPolicy externalTrafficPolicy = TrafficPolicy::Cluster;
    TrafficPolicy internalTrafficPolicy = TrafficPolicy::Cluster;
    std::uint16_t healthCheckNodePort = 0;
    bool sessionAffinityClientIP = false;
    std::uint32_t sessionAffinityTimeout = 10800;  // seconds, with ClientIP
    // Label service.kubernetes.io/service-proxy-name is set: another proxy owns this Service.
    bool otherProxy = false;
    friend bool operator==(const Service&, const Service&) = default;
};

enum class AddressType : std::uint8_t { IPv4, IPv6, FQDN };

struct EndpointPort {
    std::string name;  // "" is a valid name; a port whose name is null is dropped in decoding
    ipvs::Protocol protocol = ipvs::Protocol::TCP;
    std::uint16_t port = 0;  // 1..65535; a null or 0 port is dropped in decoding
    friend bool operator==(const EndpointPort&, const EndpointPort&) = default;
};

// hints.forZones / hints.forNodes, interned as a unit because endpoints of one slice usually
// share them.
struct Hints {
    std::vector<Name> forZones;
    std::vector<Name> forNodes;
    friend bool operator==(const Hints&, const Hints&) = default;
};

// An interned Hints (internHints), used like a pointer to it, in 4 bytes rather than 8: every
// endpoint holds one. Null: no hints. Interned Hints are never freed. Past kMaxHints distinct
// values (a cluster has a few per zone and node; only a hostile API server gets there),
// internHints gives null: the endpoint counts as unhinted, which turns topology off for its
// Service, as any endpoint without hints does.
class HintsRef {
  public:
    static constexpr std::uint32_t kMaxHints = 1U << 20;
    HintsRef() = default;
    // NOLINTNEXTLINE(google-explicit-constructor): assigned and compared like a pointer
    HintsRef(std::nullptr_t) {}
    const Hints* get() const;
    const Hints& operator*() const { return *get(); }
    const Hints* operator->() const { return get(); }
    explicit operator bool() const { return id_ != 0; }
    std::uint32_t id() const { return id_; }
    friend bool operator==(HintsRef, HintsRef) = default;
    friend bool operator==(HintsRef a, std::nullptr_t) { return a.id_ == 0; }

  private:
    friend HintsRef internHints(Hints h);
    explicit HintsRef(std::uint32_t id) : id_(id) {}
    std::uint32_t id_ = 0;
};

struct Endpoint {
    net::IpAddress address;    // addresses[0]
    bool ready = true;         // conditions.ready: null means true
    bool serving = true;       // conditions.serving: null means true
    bool terminating = false;  // conditions.terminating: null means false
    Name nodeName;
    HintsRef hints;  // null when the endpoint has no hints
    friend bool operator==(const Endpoint&, const Endpoint&) = default;
};
// 28 bytes: kept for every endpoint of every slice.
static_assert(sizeof(Endpoint) == 28);

// A slice's endpoints, read and written by value: one block holding the count and the
// endpoints, each IPv4 one in 16 bytes (its address's 4, not 17), "narrow". A slice of
// 10 IPv4 endpoints takes 168 bytes where a block of Endpoint took 284 (5.1 MB less at
// 44,000 slices of 10). A list with an IPv6 address holds them all as Endpoint.
class EndpointList {
  public:
    using const_iterator = ByValueIterator<const EndpointList*, Endpoint>;

    EndpointList() = default;
    EndpointList(std::initializer_list<Endpoint> values) {
        assign({values.begin(), values.size()});
    }
    // NOLINTNEXTLINE(google-explicit-constructor): a vector is what decoding builds
    EndpointList(const std::vector<Endpoint>& values) { assign(values); }
    explicit EndpointList(std::span<const Endpoint> values) { assign(values); }
    EndpointList(const EndpointList& o) { *this = o; }
    // Built aside and then taken: a failed allocation leaves the list as it was.
    EndpointList& operator=(const EndpointList& o) {
        if (this != &o) {
            std::unique_ptr<std::byte[]> block;
            if (o.block_) {
                block = std::make_unique_for_overwrite<std::byte[]>(o.bytes());
                std::memcpy(block.get(), o.block_.get(), o.bytes());
            }
            block_ = std::move(block);
        }
        return *this;
    }
    EndpointList(EndpointList&&) noexcept = default;
    EndpointList& operator=(EndpointList&&) noexcept = default;
    ~EndpointList() = default;

    std::size_t size() const { return block_ ? blockCount(block_.get()) : 0; }
    bool empty() const { return !block_; }
    // Each endpoint takes a whole Endpoint (some address is not IPv4).
    bool wide() const { return block_ && block_[sizeof(std::uint32_t)] != std::byte{0}; }
    // The block's size in bytes.
    std::size_t bytes() const { return block_ ? kHeader + size() * width() : 0; }
    const_iterator begin() const { return {this, 0}; }
    const_iterator end() const { return {this, size()}; }
    Endpoint operator[](std::size_t i) const {
        const std::byte* p = block_.get() + kHeader + i * width();
        Endpoint e;
        if (wide()) {
            std::memcpy(&e, p, sizeof e);
            return e;
        }
        Narrow n;
        std::memcpy(&n, p, sizeof n);
        e.address = net::IpAddress::fromBytes(net::Family::V4, n.addr.data());
        e.ready = (n.flags & kReady) != 0;
        e.serving = (n.flags & kServing) != 0;
        e.terminating = (n.flags & kTerminating) != 0;
        e.nodeName = n.nodeName;
        e.hints = n.hints;
        return e;
    }
    Endpoint at(std::size_t i) const {
        if (i >= size()) {
            throw std::out_of_range("EndpointList::at");
        }
        return (*this)[i];
    }
    Endpoint back() const { return (*this)[size() - 1]; }
    // Rebuilds the block: for building a slice in tests and tools, not for a hot path.
    void set(std::size_t i, const Endpoint& e) {
        auto all = toVector();
        all.at(i) = e;
        assign(all);
    }
    void push_back(const Endpoint& e) {
        auto all = toVector();
        all.push_back(e);
        assign(all);
    }
    void clear() { block_.reset(); }
    std::vector<Endpoint> toVector() const { return {begin(), end()}; }

    friend bool operator==(const EndpointList& a, const EndpointList& b) {
        return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
    }

  private:
    struct Narrow {
        std::array<std::uint8_t, 4> addr;
        std::uint8_t flags;
        std::array<std::uint8_t, 3> pad;
        Name nodeName;
        HintsRef hints;
    };
    static_assert(sizeof(Narrow) == 16);
    static constexpr std::uint8_t kReady = 1;
    static constexpr std::uint8_t kServing = 2;
    static constexpr std::uint8_t kTerminating = 4;
    // The count (4 bytes) and the width flag (1), padded.
    static constexpr std::size_t kHeader = 8;

    std::size_t width() const { return wide() ? sizeof(Endpoint) : sizeof(Narrow); }
    void assign(std::span<const Endpoint> values) {
        block_.reset();
        if (values.empty()) {
            return;
        }
        if (values.size() > std::numeric_limits<std::uint32_t>::max()) {
            throw std::length_error("EndpointList: too many endpoints");
        }
        const bool wide = std::any_of(values.begin(), values.end(), [](const Endpoint& e) {
            return e.address.family() != net::Family::V4;
        });
        const std::size_t w = wide ? sizeof(Endpoint) : sizeof(Narrow);
        block_ = std::make_unique<std::byte[]>(kHeader + values.size() * w);
        const auto n = static_cast<std::uint32_t>(values.size());
        std::memcpy(block_.get(), &n, sizeof n);
        block_[sizeof n] = std::byte{wide ? std::uint8_t{1} : std::uint8_t{0}};
        std::byte* p = block_.get() + kHeader;
        for (const auto& e : values) {
            if (wide) {
                std::memcpy(p, &e, sizeof e);
            } else {
                Narrow r{};
                std::memcpy(r.addr.data(), e.address.data(), r.addr.size());
                r.flags =
                    static_cast<std::uint8_t>((e.ready ? kReady : 0) | (e.serving ? kServing : 0) |
                                              (e.terminating ? kTerminating : 0));
                r.nodeName = e.nodeName;
                r.hints = e.hints;
                std::memcpy(p, &r, sizeof r);
            }
            p += w;
        }
    }

    std::unique_ptr<std::byte[]> block_;
};

struct EndpointSlice {
    ObjectKey key;
    std::string serviceName;  // label kubernetes.io/service-name; slices without it are dropped
    AddressType addressType = AddressType::IPv4;
    std::vector<EndpointPort> ports;
    EndpointList endpoints;
    // Annotation endpoints.kubernetes.io/last-change-trigger-time, as Unix nanoseconds.
    std::optional<std::int64_t> triggerTimeNs;
    ObjectKey serviceKey() const { return {key.ns, serviceName}; }
    friend bool operator==(const EndpointSlice&, const EndpointSlice&) = default;
};

// Interns a Hints value (same contents, same reference).
HintsRef internHints(Hints h);

enum class NodeAddressType : std::uint8_t { InternalIP, ExternalIP };

struct NodeAddress {
    NodeAddressType type = NodeAddressType::InternalIP;
    net::IpAddress address;
    friend bool operator==(const NodeAddress&, const NodeAddress&) = default;
};

struct Node {
    std::string name;
    std::string zone;  // label topology.kubernetes.io/zone
    // status.addresses of type InternalIP / ExternalIP, in their order (others are ignored).
    std::vector<NodeAddress> addresses;
    std::vector<net::Cidr> podCIDRs;
    bool deleting = false;                 // metadata.deletionTimestamp is set
    bool toBeDeletedByAutoscaler = false;  // taint ToBeDeletedByClusterAutoscaler
    friend bool operator==(const Node&, const Node&) = default;
};

}  // namespace kipvs::k8s
