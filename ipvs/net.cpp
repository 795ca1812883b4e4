#include "ipvs/net.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>

namespace kipvs::net {

std::string_view familyName(Family f) {
    return f == Family::V4 ? "IPv4" : "IPv6";
}

int toAf(Family f) {
    return f == Family::V4 ? AF_INET : AF_INET6;
}

std::optional<Family> fromAf(int af) {
    if (af == AF_INET) {
        return Family::V4;
    }
    if (af == AF_INET6) {
        return Family::V6;
    }
    return std::nullopt;
}

namespace {

// inet_pton accepts what Kubernetes rejects (and vice versa for nothing we care about):
// leading zeros in a dotted quad are ambiguous (octal in some parsers), so refuse them.
bool hasLeadingZeroOctet(std::string_view s) {
    std::size_t start = 0;
    while (start <= s.size()) {
        std::size_t end = s.find('.', start);
        if (end == std::string_view::npos) {
            end = s.size();
        }
        if (end - start > 1 && s[start] == '0') {
            return true;
        }
        start = end + 1;
    }
    return false;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    // Longest IPv6 text form is 45 characters; anything longer is not an address. inet_pton
    // stops at a NUL: "10.0.0.1\0junk" (a JSON "\u0000", a YAML "\0") is not 10.0.0.1.
    if (text.empty() || text.size() > 45 || text.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    char buf[46];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    IpAddress a;
    if (text.find(':') == std::string_view::npos) {
        if (hasLeadingZeroOctet(text) || inet_pton(AF_INET, buf, a.bytes_.data()) != 1) {
            return std::nullopt;
        }
        a.family_ = Family::V4;
        return a;
    }
    if (inet_pton(AF_INET6, buf, a.bytes_.data()) != 1) {
        return std::nullopt;
    }
    a.family_ = Family::V6;
    return a;
}

namespace {

// "010" -> "10", "000" -> "0": the number read as decimal, as Go's sloppy parsers read it.
std::string_view decimalDigits(std::string_view digits) {
    const auto nonZero = digits.find_first_not_of('0');
    return nonZero == std::string_view::npos ? digits.substr(digits.size() - 1)
                                             : digits.substr(nonZero);
}

// "010.001.002.003" -> "10.1.2.3"; nullopt when a part is not 1 to 3 digits once its leading
// zeros are gone (parse then rejects what is out of range or malformed otherwise).
std::optional<std::string> withoutLeadingZeros(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::size_t start = 0;
    while (true) {
        const std::size_t dot = text.find('.', start);
        auto part = text.substr(start, dot == std::string_view::npos ? dot : dot - start);
        if (part.empty() || part.find_first_not_of("0123456789") != std::string_view::npos) {
            return std::nullopt;
        }
        part = decimalDigits(part);
        if (part.size() > 3) {
            return std::nullopt;
        }
        out += part;
        if (dot == std::string_view::npos) {
            return out;
        }
        out += '.';
        start = dot + 1;
    }
}

}  // namespace

std::optional<IpAddress> IpAddress::parseLegacy(std::string_view text) {
    if (auto a = parse(text)) {
        return a;
    }
    if (text.empty() || text.size() > 45) {
        return std::nullopt;
    }
    // IPv6 with an embedded IPv4 tail ("::ffff:010.1.2.3"): only the tail may have them.
    const std::size_t colon = text.rfind(':');
    const std::size_t tail = colon == std::string_view::npos ? 0 : colon + 1;
    if (colon != std::string_view::npos && text.find('.', tail) == std::string_view::npos) {
        return std::nullopt;
    }
    const auto plain = withoutLeadingZeros(text.substr(tail));
    return plain ? parse(std::string(text.substr(0, tail)) + *plain) : std::nullopt;
}

IpAddress IpAddress::v4(std::uint32_t hostOrder) {
    IpAddress a;
    a.bytes_[0] = static_cast<std::uint8_t>(hostOrder >> 24);
    a.bytes_[1] = static_cast<std::uint8_t>(hostOrder >> 16);
    a.bytes_[2] = static_cast<std::uint8_t>(hostOrder >> 8);
    a.bytes_[3] = static_cast<std::uint8_t>(hostOrder);
    return a;
}

IpAddress IpAddress::fromBytes(Family f, const void* bytes) {
    IpAddress a;
    a.family_ = f;
    std::memcpy(a.bytes_.data(), bytes, f == Family::V4 ? 4 : 16);
    return a;
}

IpAddress IpAddress::any(Family f) {
    IpAddress a;
    a.family_ = f;
    return a;
}

std::uint32_t IpAddress::v4HostOrder() const {
    return (std::uint32_t{bytes_[0]} << 24) | (std::uint32_t{bytes_[1]} << 16) |
           (std::uint32_t{bytes_[2]} << 8) | std::uint32_t{bytes_[3]};
}

bool IpAddress::isUnspecified() const {
    for (std::size_t i = 0; i < size(); ++i) {
        if (bytes_[i] != 0) {
            return false;
        }
    }
    return true;
}

bool IpAddress::isLoopback() const {
    if (isV4()) {
        return bytes_[0] == 127;
    }
    for (std::size_t i = 0; i < 15; ++i) {
        if (bytes_[i] != 0) {
            return false;
        }
    }
    return bytes_[15] == 1;
}

bool IpAddress::isLinkLocal() const {
    if (isV4()) {
        return bytes_[0] == 169 && bytes_[1] == 254;
    }
    return bytes_[0] == 0xfe && (bytes_[1] & 0xc0) == 0x80;
}

std::string IpAddress::toString() const {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(toAf(family_), bytes_.data(), buf, sizeof buf);
    return buf;
}

std::string IpAddress::toUrlHost() const {
    return isV4() ? toString() : "[" + toString() + "]";
}

Cidr::Cidr(IpAddress base, std::uint8_t prefix) : base_(base), prefix_(prefix) {
    const std::size_t bits = base_.size() * 8;
    if (prefix_ > bits) {
        prefix_ = static_cast<std::uint8_t>(bits);
    }
    // Normalise: clear host bits so equal networks compare equal.
    std::array<std::uint8_t, 16> b{};
    std::memcpy(b.data(), base_.data(), base_.size());
    for (std::size_t i = 0; i < base_.size(); ++i) {
        const int keep = static_cast<int>(prefix_) - static_cast<int>(i * 8);
        if (keep <= 0) {
            b[i] = 0;
        } else if (keep < 8) {
            b[i] &= static_cast<std::uint8_t>(0xff << (8 - keep));
        }
    }
    base_ = IpAddress::fromBytes(base_.family(), b.data());
}

std::optional<Cidr> Cidr::parse(std::string_view text, bool allowHostBits) {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) {
        return std::nullopt;
    }
    auto ip = IpAddress::parse(text.substr(0, slash));
    if (!ip) {
        return std::nullopt;
    }
    const auto len = text.substr(slash + 1);
    unsigned prefix = 0;
    const auto* end = len.data() + len.size();
    auto [p, ec] = std::from_chars(len.data(), end, prefix);
    if (len.empty() || ec != std::errc() || p != end || (len.size() > 1 && len[0] == '0') ||
        prefix > ip->size() * 8) {
        return std::nullopt;
    }
    Cidr c(*ip, static_cast<std::uint8_t>(prefix));
    if (!allowHostBits && c.base_ != *ip) {
        return std::nullopt;
    }
    return c;
}

std::optional<Cidr> Cidr::parseLegacy(std::string_view text, bool allowHostBits) {
    if (auto c = parse(text, allowHostBits)) {
        return c;
    }
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) {
        return std::nullopt;
    }
    const auto ip = IpAddress::parseLegacy(text.substr(0, slash));
    const auto len = text.substr(slash + 1);
    if (!ip || len.empty() || len.size() > 8) {
        return std::nullopt;
    }
    return parse(ip->toString() + "/" + std::string(decimalDigits(len)), allowHostBits);
}

Cidr Cidr::host(const IpAddress& a) {
    return Cidr(a, static_cast<std::uint8_t>(a.size() * 8));
}

bool Cidr::contains(const IpAddress& a) const {
    if (a.family() != base_.family()) {
        return false;
    }
    return Cidr(a, prefix_).base_ == base_;
}

std::string Cidr::toString() const {
    return base_.toString() + "/" + std::to_string(prefix_);
}

std::string joinHostPort(const IpAddress& a, std::uint16_t port) {
    return a.toUrlHost() + ":" + std::to_string(port);
}

}  // namespace kipvs::net

std::size_t std::hash<kipvs::net::IpAddress>::operator()(
    const kipvs::net::IpAddress& a) const noexcept {
    // FNV-1a over family and bytes: cheap, and good enough for hash maps of addresses.
    std::size_t h = 1469598103934665603ULL;
    auto mix = [&h](std::uint8_t b) {
        h ^= b;
        h *= 1099511628211ULL;
    };
    mix(static_cast<std::uint8_t>(a.family()));
    for (std::size_t i = 0; i < a.size(); ++i) {
        mix(a.data()[i]);
    }
    return h;
}
