// Set types and members as `ipset list` spells them (verified against ipset 7.17 in the guest):
//   hash:ip           10.0.0.1                  fd00::1
//   hash:ip,port      10.0.0.1,tcp:443          fd00::1,udp:53
//   hash:ip,port,ip   10.0.0.1,tcp:443,10.0.0.2 fd00::1,tcp:443,fd00:0:0:1::2
//   hash:ip,port,net  10.0.0.1,tcp:443,10.1.0.0/16, and a /32 (/128) without its prefix:
//                     10.0.0.1,tcp:443,10.1.2.3
//   hash:net          10.0.0.0/8, 10.2.3.4 for a /32, 2001:db8::1 for a /128
//   bitmap:port       30080
// libipset prints the protocol by name from /etc/protocols and falls back to its number when
// that file is missing (as in minimal container images), so parse() takes both.
#include <array>
#include <charconv>
#include <utility>

#include "ipvs/ipset.h"

namespace kipvs::ipvs {

namespace {

constexpr std::array<std::pair<SetType, std::string_view>, 6> kTypeNames{{
    {SetType::HashIp, "hash:ip"},
    {SetType::HashIpPort, "hash:ip,port"},
    {SetType::HashIpPortIp, "hash:ip,port,ip"},
    {SetType::HashIpPortNet, "hash:ip,port,net"},
    {SetType::HashNet, "hash:net"},
    {SetType::BitmapPort, "bitmap:port"},
}};

std::string netText(const net::Cidr& c) {
    const unsigned host = c.family() == net::Family::V4 ? 32 : 128;
    return c.prefix() == host ? c.base().toString() : c.toString();
}

std::optional<std::uint16_t> parsePort(std::string_view s) {
    unsigned v = 0;
    if (s.empty() || s.size() > 5) {
        return std::nullopt;
    }
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(v);
}

std::optional<Protocol> parseLowerProtocol(std::string_view s) {
    if (s == "tcp" || s == "6") {
        return Protocol::TCP;
    }
    if (s == "udp" || s == "17") {
        return Protocol::UDP;
    }
    if (s == "sctp" || s == "132") {
        return Protocol::SCTP;
    }
    return std::nullopt;
}

// "proto:port"
bool parseProtoPort(std::string_view s, SetEntry& e) {
    const auto colon = s.find(':');
    if (colon == std::string_view::npos) {
        return false;
    }
    auto proto = parseLowerProtocol(s.substr(0, colon));
    auto port = parsePort(s.substr(colon + 1));
    if (!proto || !port) {
        return false;
    }
    e.protocol = *proto;
    e.port = *port;
    return true;
}

// A network as ipset prints it: with "/len", or a bare address for a host route.
std::optional<net::Cidr> parseNet(std::string_view s) {
    if (s.find('/') == std::string_view::npos) {
        auto a = net::IpAddress::parse(s);
        if (!a) {
            return std::nullopt;
        }
        return net::Cidr::host(*a);
    }
    return net::Cidr::parse(s, /*allowHostBits=*/false);
}

// Splits on ',' into exactly `n` parts.
bool split(std::string_view s, std::size_t n, std::array<std::string_view, 3>& parts) {
    std::size_t count = 0;
    while (true) {
        const auto comma = s.find(',');
        if (count == n) {
            return false;
        }
        parts[count++] = s.substr(0, comma);
        if (comma == std::string_view::npos) {
            break;
        }
        s.remove_prefix(comma + 1);
    }
    return count == n;
}

}  // namespace

std::string_view setTypeName(SetType t) {
    for (const auto& [type, name] : kTypeNames) {
        if (type == t) {
            return name;
        }
    }
    return "unknown";
}

std::optional<SetType> parseSetType(std::string_view s) {
    for (const auto& [type, name] : kTypeNames) {
        if (name == s) {
            return type;
        }
    }
    return std::nullopt;
}

std::string SetEntry::toString(SetType t) const {
    const auto ipPort = [this] {
        return ip.toString() + "," + std::string(protocolLower(protocol)) + ":" +
               std::to_string(port);
    };
    switch (t) {
        case SetType::HashIp:
            return ip.toString();
        case SetType::HashIpPort:
            return ipPort();
        case SetType::HashIpPortIp:
            return ipPort() + "," + ip2.toString();
        case SetType::HashIpPortNet:
            return ipPort() + "," + netText(net());
        case SetType::HashNet:
            return netText(net());
        case SetType::BitmapPort:
            return std::to_string(port);
    }
    return {};
}

std::optional<SetEntry> SetEntry::parse(SetType t, std::string_view text) {
    std::array<std::string_view, 3> p;
    SetEntry e;
    switch (t) {
        case SetType::HashIp: {
            auto a = net::IpAddress::parse(text);
            if (!a) {
                return std::nullopt;
            }
            return address(*a);
        }
        case SetType::HashIpPort:
        case SetType::HashIpPortIp:
        case SetType::HashIpPortNet: {
            const std::size_t n = t == SetType::HashIpPort ? 2 : 3;
            if (!split(text, n, p)) {
                return std::nullopt;
            }
            auto a = net::IpAddress::parse(p[0]);
            if (!a || !parseProtoPort(p[1], e)) {
                return std::nullopt;
            }
            e.ip = *a;
            if (t == SetType::HashIpPortIp) {
                auto b = net::IpAddress::parse(p[2]);
                if (!b || b->family() != a->family()) {
                    return std::nullopt;
                }
                e.ip2 = *b;
            } else if (t == SetType::HashIpPortNet) {
                auto c = parseNet(p[2]);
                if (!c || c->family() != a->family()) {
                    return std::nullopt;
                }
                e.setNet(*c);
            }
            return e;
        }
        case SetType::HashNet: {
            auto c = parseNet(text);
            if (!c) {
                return std::nullopt;
            }
            return network(*c);
        }
        case SetType::BitmapPort: {
            auto port = parsePort(text);
            if (!port) {
                return std::nullopt;
            }
            return portOnly(*port);
        }
    }
    return std::nullopt;
}

}  // namespace kipvs::ipvs
