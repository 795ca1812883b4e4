// IP addresses and prefixes as small value types.
//
// Every layer of kube-ipvs speaks in these: the API client validates object fields into them,
// the reconciler keys its state on them and the kernel layer encodes them into netlink
// attributes. They hold the raw bytes (4 or 16) so that 440,000 endpoints cost 17 bytes each,
// not a heap string.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kipvs::net {

enum class Family : std::uint8_t { V4 = 4, V6 = 6 };

// "IPv4" / "IPv6", the spelling Kubernetes uses in ipFamilies and addressType.
std::string_view familyName(Family f);
// AF_INET / AF_INET6.
int toAf(Family f);
std::optional<Family> fromAf(int af);

class IpAddress {
  public:
    // 0.0.0.0
    IpAddress() = default;

    // Strict parse, as Kubernetes validates addresses: dotted quad without leading zeros,
    // or an RFC 4291 IPv6 address without zone. Anything else is nullopt.
    static std::optional<IpAddress> parse(std::string_view text);
    // As parse, and also a dotted quad with leading zeros, read as decimal: "010.001.002.003"
    // is 10.1.2.3, also as IPv6's embedded IPv4 ("::ffff:010.1.2.3"). This is how kube-proxy
    // reads API objects (ParseIPSloppy, k8s.io/utils/net); the API server accepted such
    // values for years and stored objects may still hold them.
    static std::optional<IpAddress> parseLegacy(std::string_view text);
    static IpAddress v4(std::uint32_t hostOrder);
    static IpAddress fromBytes(Family f, const void* bytes);
    // The unspecified address of a family (0.0.0.0 or ::).
    static IpAddress any(Family f);

    Family family() const { return family_; }
    bool isV4() const { return family_ == Family::V4; }
    bool isV6() const { return family_ == Family::V6; }
    // 4 or 16 bytes in network order.
    const std::uint8_t* data() const { return bytes_.data(); }
    std::size_t size() const { return isV4() ? 4 : 16; }
    std::uint32_t v4HostOrder() const;

    bool isUnspecified() const;
    bool isLoopback() const;
    // 169.254.0.0/16 or fe80::/10.
    bool isLinkLocal() const;

    // Canonical text: dotted quad, or RFC 5952 for IPv6.
    std::string toString() const;
    // As toString, with IPv6 in brackets, for "host:port" forms.
    std::string toUrlHost() const;

    friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
    friend bool operator==(const IpAddress&, const IpAddress&) = default;

  private:
    // Family first so that ordering groups IPv4 before IPv6.
    Family family_ = Family::V4;
    std::array<std::uint8_t, 16> bytes_{};
};

class Cidr {
  public:
    Cidr() = default;
    Cidr(IpAddress base, std::uint8_t prefix);

    // "10.0.0.0/8", "fd00::/64". Host bits must be zero unless `allowHostBits`, in which case
    // they are cleared (as Go's net.ParseCIDR does for the network it returns).
    static std::optional<Cidr> parse(std::string_view text, bool allowHostBits = true);
    // As parse, with leading zeros allowed in an IPv4 address and in the prefix length, read
    // as decimal (ParseCIDRSloppy): "010.000.000.000/08" is 10.0.0.0/8.
    static std::optional<Cidr> parseLegacy(std::string_view text, bool allowHostBits = true);
    // The /32 or /128 holding exactly `a`.
    static Cidr host(const IpAddress& a);

    const IpAddress& base() const { return base_; }
    std::uint8_t prefix() const { return prefix_; }
    Family family() const { return base_.family(); }
    bool contains(const IpAddress& a) const;
    // 0.0.0.0/0 or ::/0.
    bool isAll() const { return prefix_ == 0; }
    std::string toString() const;

    friend auto operator<=>(const Cidr&, const Cidr&) = default;
    friend bool operator==(const Cidr&, const Cidr&) = default;

  private:
    IpAddress base_;
    std::uint8_t prefix_ = 0;
};

// "host:port" with IPv6 bracketed, as Go's net.JoinHostPort.
std::string joinHostPort(const IpAddress& a, std::uint16_t port);

}  // namespace kipvs::net

template <>
struct std::hash<kipvs::net::IpAddress> {
    std::size_t operator()(const kipvs::net::IpAddress& a) const noexcept;
};
