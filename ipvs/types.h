// IPVS value types: virtual servers, real servers, their counters, and write operations.
//
// These mirror the kernel's generic netlink model (include/uapi/linux/ip_vs.h) without any
// libnl type, so the reconciler and its tests can use them with no socket in sight.
// Sizes matter: a 44,000-Service node holds ~480,000 of these, so names are fixed arrays and
// nothing here allocates.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ipvs/net.h"

namespace kipvs::ipvs {

enum class Protocol : std::uint8_t { TCP = 6, UDP = 17, SCTP = 132 };

// "TCP", "UDP", "SCTP" (as Kubernetes and ipvsadm spell them).
std::string_view protocolName(Protocol p);
// "tcp", "udp", "sctp" (as ipset entries spell them).
std::string_view protocolLower(Protocol p);
// Accepts the Kubernetes spelling only ("TCP", "UDP", "SCTP").
std::optional<Protocol> parseProtocol(std::string_view s);

// Service flags (IP_VS_SVC_F_*). HASHED is set by the kernel on every service it holds and is
// never compared.
inline constexpr std::uint32_t kSvcFlagPersistent = 0x0001;
inline constexpr std::uint32_t kSvcFlagHashed = 0x0002;
inline constexpr std::uint32_t kSvcFlagOnePacket = 0x0004;
inline constexpr std::uint32_t kSvcFlagSched1 = 0x0008;  // sh: fallback; mh: fallback
inline constexpr std::uint32_t kSvcFlagSched2 = 0x0010;  // sh: port;     mh: port
inline constexpr std::uint32_t kSvcFlagSched3 = 0x0020;

// A scheduler or persistence-engine name, at most 15 characters as in the kernel.
class ShortName {
  public:
    ShortName() = default;
    // Truncates nothing: a name over 15 characters yields nullopt.
    static std::optional<ShortName> make(std::string_view s);
    std::string_view view() const { return std::string_view(buf_.data()); }
    bool empty() const { return buf_[0] == '\0'; }
    friend auto operator<=>(const ShortName&, const ShortName&) = default;
    friend bool operator==(const ShortName&, const ShortName&) = default;

  private:
    std::array<char, 16> buf_{};
};

// What identifies a virtual server in the kernel. A fwmark service has fwmark != 0, protocol
// and port 0 and an unspecified address of its family.
struct ServiceKey {
    net::IpAddress address;
    std::uint16_t port = 0;
    Protocol protocol = Protocol::TCP;
    std::uint32_t fwmark = 0;

    net::Family family() const { return address.family(); }
    // "10.96.0.10:53/UDP", "[fd00::a]:53/UDP", "FWM:7/IPv4" (kube-proxy's identity string).
    std::string toString() const;

    friend auto operator<=>(const ServiceKey&, const ServiceKey&) = default;
    friend bool operator==(const ServiceKey&, const ServiceKey&) = default;
};

struct VirtualServer {
    ServiceKey key;
    ShortName scheduler;        // "rr", "wrr", "lc", ..., "mh"
    std::uint32_t flags = 0;    // kSvcFlag*; HASHED stripped when read back
    std::uint32_t timeout = 0;  // persistence timeout in seconds (with kSvcFlagPersistent)
    // Persistence granularity: an IPv4 mask (0xffffffff) or an IPv6 prefix length (128).
    std::uint32_t netmask = 0xffffffff;
    ShortName persistenceEngine;  // e.g. "sip"; empty for none

    // Same configuration (everything except the key), ignoring the HASHED flag.
    bool sameContent(const VirtualServer& o) const;
    std::string toString() const;  // key plus "sched rr flags 0x1 timeout 10800"

    friend bool operator==(const VirtualServer&, const VirtualServer&) = default;
};

enum class Forwarding : std::uint8_t { Masq = 0, Local = 1, Tunnel = 2, Route = 3 };
std::string_view forwardingName(Forwarding f);  // "Masq", "Local", "Tunnel", "Route"

struct DestKey {
    net::IpAddress address;
    std::uint16_t port = 0;
    std::string toString() const;  // "10.244.1.7:53"
    friend auto operator<=>(const DestKey&, const DestKey&) = default;
    friend bool operator==(const DestKey&, const DestKey&) = default;
};

struct RealServer {
    DestKey key;
    Forwarding forwarding = Forwarding::Masq;
    std::int32_t weight = 1;
    std::uint32_t upperThreshold = 0;  // 0 = no limit
    std::uint32_t lowerThreshold = 0;

    bool sameContent(const RealServer& o) const;
    friend bool operator==(const RealServer&, const RealServer&) = default;
};

// "10.96.0.10:53/UDP -> 10.244.1.7:53"
std::string describe(const ServiceKey& vs, const DestKey& rs);

struct Stats {
    std::uint64_t conns = 0;
    std::uint64_t inPackets = 0;
    std::uint64_t outPackets = 0;
    std::uint64_t inBytes = 0;
    std::uint64_t outBytes = 0;
    std::uint64_t cps = 0;
    std::uint64_t inPps = 0;
    std::uint64_t outPps = 0;
    std::uint64_t inBps = 0;
    std::uint64_t outBps = 0;
    friend bool operator==(const Stats&, const Stats&) = default;
};

struct ServiceEntry {
    VirtualServer service;
    Stats stats;
};

struct DestEntry {
    RealServer dest;
    std::uint32_t activeConns = 0;
    std::uint32_t inactiveConns = 0;
    std::uint32_t persistentConns = 0;
    Stats stats;
};

struct Timeouts {
    std::uint32_t tcp = 0;  // seconds; 0 in a set request leaves the value unchanged
    std::uint32_t tcpFin = 0;
    std::uint32_t udp = 0;
    friend bool operator==(const Timeouts&, const Timeouts&) = default;
};

struct Info {
    std::uint32_t version = 0;  // 0x010201 for 1.2.1
    std::uint32_t connTableSize = 0;
    std::string versionString() const;  // "1.2.1"
};

enum class OpKind : std::uint8_t {
    AddService,
    UpdateService,
    DeleteService,
    AddDest,
    UpdateDest,
    DeleteDest,
};
// "add-service", "update-service", "delete-service", "add-dest", "update-dest", "delete-dest"
std::string_view opKindName(OpKind k);

// One write. Service ops use `service` (a delete needs only its key); dest ops use
// `service.key` to name the virtual server and `dest`.
struct Op {
    OpKind kind = OpKind::AddService;
    VirtualServer service;
    RealServer dest;

    static Op addService(const VirtualServer& vs) { return make(OpKind::AddService, vs, {}); }
    static Op updateService(const VirtualServer& vs) { return make(OpKind::UpdateService, vs, {}); }
    static Op deleteService(const ServiceKey& k) {
        return make(OpKind::DeleteService, withKey(k), {});
    }
    static Op addDest(const ServiceKey& k, const RealServer& d) {
        return make(OpKind::AddDest, withKey(k), d);
    }
    static Op updateDest(const ServiceKey& k, const RealServer& d) {
        return make(OpKind::UpdateDest, withKey(k), d);
    }
    static Op deleteDest(const ServiceKey& k, const DestKey& d) {
        RealServer rs;
        rs.key = d;
        return make(OpKind::DeleteDest, withKey(k), rs);
    }

    // "add-dest 10.96.0.10:53/UDP -> 10.244.1.7:53"
    std::string toString() const;
    friend bool operator==(const Op&, const Op&) = default;

  private:
    static Op make(OpKind k, const VirtualServer& vs, const RealServer& rs) {
        Op op;
        op.kind = k;
        op.service = vs;
        op.dest = rs;
        return op;
    }
    static VirtualServer withKey(const ServiceKey& k) {
        VirtualServer vs;
        vs.key = k;
        return vs;
    }
};

enum class Outcome : std::uint8_t {
    Done,       // the kernel did what was asked
    Converted,  // add of an existing object became an update (EEXIST), or an update of a
                // missing one became an add (ESRCH/ENOENT): done either way
    Absent,     // delete of an object that does not exist: done
    Failed,     // the kernel refused; `error` says why
};

struct OpResult {
    Outcome outcome = Outcome::Done;
    int error = 0;        // errno for Failed
    std::string message;  // empty unless Failed: "<op>: <strerror>"

    // Anything but Failed: the kernel now holds what the op asked for.
    bool succeeded() const { return outcome != Outcome::Failed; }
};

}  // namespace kipvs::ipvs

template <>
struct std::hash<kipvs::ipvs::ServiceKey> {
    std::size_t operator()(const kipvs::ipvs::ServiceKey& k) const noexcept;
};
template <>
struct std::hash<kipvs::ipvs::DestKey> {
    std::size_t operator()(const kipvs::ipvs::DestKey& k) const noexcept;
};
