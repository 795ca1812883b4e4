// ipsets: the sets kube-ipvs' few iptables rules match against.
//
// The real implementation (LibIpset, ipvs/libipset.h) uses libipset in-process, never the
// ipset binary; unit tests use a stateful fake (tests/fakes).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/net.h"
#include "ipvs/types.h"

namespace kipvs::ipvs {

enum class SetType : std::uint8_t {
    HashIp,         // hash:ip          "10.96.0.1"
    HashIpPort,     // hash:ip,port     "10.96.0.1,tcp:443"
    HashIpPortIp,   // hash:ip,port,ip  "10.244.1.7,tcp:8080,10.244.1.7"
    HashIpPortNet,  // hash:ip,port,net "203.0.113.10,tcp:443,198.51.100.0/24"
    HashNet,        // hash:net         "10.0.0.0/8"
    BitmapPort,     // bitmap:port      "30080"
};
std::string_view setTypeName(SetType t);  // "hash:ip,port", ...
std::optional<SetType> parseSetType(std::string_view s);

struct SetSpec {
    std::string name;
    SetType type = SetType::HashIp;
    net::Family family = net::Family::V4;  // ignored for bitmap:port
    std::uint32_t hashSize = 1024;
    std::uint32_t maxElem = 65536;
    std::uint16_t portFrom = 0;  // bitmap:port range
    std::uint16_t portTo = 65535;
};

// One member. Which fields count depends on the set type:
//   hash:ip: ip; hash:ip,port: ip, protocol, port; hash:ip,port,ip: ip, protocol, port, ip2;
//   hash:ip,port,net: ip, protocol, port, net; hash:net: net; bitmap:port: port.
struct SetEntry {
    net::IpAddress ip;
    Protocol protocol = Protocol::TCP;
    std::uint16_t port = 0;
    // hash:ip,port,ip: the second address. hash:ip,port,net and hash:net: the network's base
    // address, its prefix length in netPrefix (see net()). One field for both keeps a member
    // at 38 bytes, not 56: the reconciler keeps two per Service, 88,000 at 44,000 Services.
    net::IpAddress ip2;
    std::uint8_t netPrefix = 0;

    net::Cidr net() const { return {ip2, netPrefix}; }
    void setNet(const net::Cidr& n) {
        ip2 = n.base();
        netPrefix = n.prefix();
    }

    static SetEntry address(const net::IpAddress& a) {
        SetEntry e;
        e.ip = a;
        return e;
    }
    static SetEntry ipPort(const net::IpAddress& a, Protocol p, std::uint16_t port) {
        SetEntry e;
        e.ip = a;
        e.protocol = p;
        e.port = port;
        return e;
    }
    static SetEntry ipPortIp(const net::IpAddress& a, Protocol p, std::uint16_t port,
                             const net::IpAddress& b) {
        SetEntry e = ipPort(a, p, port);
        e.ip2 = b;
        return e;
    }
    static SetEntry ipPortNet(const net::IpAddress& a, Protocol p, std::uint16_t port,
                              const net::Cidr& n) {
        SetEntry e = ipPort(a, p, port);
        e.setNet(n);
        return e;
    }
    static SetEntry network(const net::Cidr& n) {
        SetEntry e;
        e.setNet(n);
        return e;
    }
    static SetEntry portOnly(std::uint16_t port) {
        SetEntry e;
        e.port = port;
        return e;
    }

    // The member as `ipset list` prints it for a set of type t.
    std::string toString(SetType t) const;
    // Parses what `ipset list` prints (and what toString produces).
    static std::optional<SetEntry> parse(SetType t, std::string_view text);

    friend auto operator<=>(const SetEntry&, const SetEntry&) = default;
    friend bool operator==(const SetEntry&, const SetEntry&) = default;
};
static_assert(sizeof(SetEntry) == 38);

// What the kernel says about an existing set.
struct SetInfo {
    std::string name;
    SetType type = SetType::HashIp;
    net::Family family = net::Family::V4;
    std::uint32_t maxElem = 0;
    std::uint32_t entries = 0;
};

enum class SetOpKind : std::uint8_t { Add, Delete };

struct SetOp {
    SetOpKind kind = SetOpKind::Add;
    SetEntry entry;
};

// Reads a set's members; all the periodic verification needs of the sets.
class IpsetLister {
  public:
    virtual ~IpsetLister() = default;
    // Calls fn for each member, in the kernel's order, and keeps none: a verification reduces
    // a set of 44,000 members to a digest. Returns how many there were. An error may come
    // after some members were visited.
    using MemberVisitor = std::function<void(const SetEntry&)>;
    virtual Result<std::size_t> visit(const std::string& name, const MemberVisitor& fn) = 0;
    // The members.
    Result<std::vector<SetEntry>> list(const std::string& name) {
        std::vector<SetEntry> out;
        if (auto r = visit(name, [&out](const SetEntry& e) { out.push_back(e); }); !r) {
            return r.error();
        }
        return out;
    }
};

class Ipset : public IpsetLister {
  public:
    // Names of every set in the kernel (ours and others').
    virtual Result<std::vector<std::string>> setNames() = 0;
    virtual Result<std::optional<SetInfo>> info(const std::string& name) = 0;
    // Creates the set, or does nothing if one with this name, type and family exists.
    // A same-named set of another type or family is an error naming both.
    virtual Result<void> create(const SetSpec& spec) = 0;
    // Applies adds and deletes to one set, batched. Adding a present entry and deleting an
    // absent one succeed. Returns one result per op, in order; a failure (e.g. the set is full
    // at maxelem) carries libipset's message.
    virtual std::vector<Result<void>> apply(const std::string& name, SetType type,
                                            std::span<const SetOp> ops) = 0;
    virtual Result<void> flush(const std::string& name) = 0;
    // Destroying a missing set succeeds.
    virtual Result<void> destroy(const std::string& name) = 0;
    virtual Result<void> swap(const std::string& a, const std::string& b) = 0;
};

}  // namespace kipvs::ipvs
