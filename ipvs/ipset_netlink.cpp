#include "ipvs/ipset_netlink.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/ipset/ip_set.h>
#include <linux/netfilter/nfnetlink.h>

#include <cstring>

namespace kipvs::ipvs::ipsetnl {

namespace {

std::uint8_t attrU8(const nlattr* a) {
    return hostnl::attrLen(a) >= 1 ? *static_cast<const std::uint8_t*>(hostnl::attrData(a)) : 0;
}

// An address nested as IPSET_ATTR_IPADDR_IPV4 / _IPV6 in network order.
std::optional<net::IpAddress> nestedAddress(const nlattr* a, std::uint8_t family) {
    std::vector<const nlattr*> tb(IPSET_ATTR_IPADDR_MAX + 1);
    hostnl::parseNested(a, tb);
    if (family == NFPROTO_IPV4 && tb[IPSET_ATTR_IPADDR_IPV4] != nullptr &&
        hostnl::attrLen(tb[IPSET_ATTR_IPADDR_IPV4]) == 4) {
        return net::IpAddress::fromBytes(net::Family::V4,
                                         hostnl::attrData(tb[IPSET_ATTR_IPADDR_IPV4]));
    }
    if (family == NFPROTO_IPV6 && tb[IPSET_ATTR_IPADDR_IPV6] != nullptr &&
        hostnl::attrLen(tb[IPSET_ATTR_IPADDR_IPV6]) == 16) {
        return net::IpAddress::fromBytes(net::Family::V6,
                                         hostnl::attrData(tb[IPSET_ATTR_IPADDR_IPV6]));
    }
    return std::nullopt;
}

std::optional<std::uint16_t> port(const nlattr* a) {
    if (a == nullptr || hostnl::attrLen(a) != 2) {
        return std::nullopt;
    }
    std::uint16_t be = 0;
    std::memcpy(&be, hostnl::attrData(a), sizeof be);
    return ntohs(be);
}

std::optional<Protocol> protocol(const nlattr* a) {
    if (a == nullptr) {
        return std::nullopt;
    }
    switch (attrU8(a)) {
        case IPPROTO_TCP:
            return Protocol::TCP;
        case IPPROTO_UDP:
            return Protocol::UDP;
        case IPPROTO_SCTP:
            return Protocol::SCTP;
        default:
            return std::nullopt;
    }
}

// The network of `base` and a prefix-length attribute (a host route when it is absent), or
// nullopt for a prefix longer than the address.
std::optional<net::Cidr> network(const net::IpAddress& base, const nlattr* prefix) {
    const std::uint8_t bits = base.family() == net::Family::V4 ? 32 : 128;
    const std::uint8_t len = prefix != nullptr ? attrU8(prefix) : bits;
    if (len > bits) {
        return std::nullopt;
    }
    return net::Cidr(base, len);
}

}  // namespace

void listRequest(hostnl::MessageBuffer& b, const std::string& name) {
    b.begin(static_cast<std::uint16_t>(NFNL_SUBSYS_IPSET << 8 | IPSET_CMD_LIST), NLM_F_DUMP);
    nfgenmsg g{};
    g.nfgen_family = NFPROTO_UNSPEC;
    g.version = NFNETLINK_V0;
    b.putHeader(g);
    // Every kernel with ipset speaks at least IPSET_PROTOCOL_MIN, and a listing is the same
    // in each version.
    const std::uint8_t proto = IPSET_PROTOCOL_MIN;
    b.putAttr(IPSET_ATTR_PROTOCOL, &proto, sizeof proto);
    b.putString(IPSET_ATTR_SETNAME, name);
    b.end();
}

void ListCollector::fail(std::string why) {
    if (!error_) {
        error_ = what_ + ": " + std::move(why);
    }
}

bool ListCollector::member(const nlattr* data) {
    std::vector<const nlattr*> tb(IPSET_ATTR_ADT_MAX + 1);
    hostnl::parseNested(data, tb);
    std::optional<net::IpAddress> ip;
    if (*type_ != SetType::BitmapPort) {
        if (tb[IPSET_ATTR_IP] == nullptr || !(ip = nestedAddress(tb[IPSET_ATTR_IP], family_))) {
            return false;
        }
    }
    switch (*type_) {
        case SetType::HashIp:
            emit(SetEntry::address(*ip));
            return true;
        case SetType::HashNet: {
            const auto n = network(*ip, tb[IPSET_ATTR_CIDR]);
            if (!n) {
                return false;
            }
            emit(SetEntry::network(*n));
            return true;
        }
        case SetType::BitmapPort: {
            const auto p = port(tb[IPSET_ATTR_PORT]);
            if (!p) {
                return false;
            }
            emit(SetEntry::portOnly(*p));
            return true;
        }
        case SetType::HashIpPort:
        case SetType::HashIpPortIp:
        case SetType::HashIpPortNet:
            break;
    }
    const auto p = port(tb[IPSET_ATTR_PORT]);
    const auto proto = protocol(tb[IPSET_ATTR_PROTO]);
    if (!p || !proto) {
        return false;
    }
    SetEntry e = SetEntry::ipPort(*ip, *proto, *p);
    if (*type_ != SetType::HashIpPort) {
        if (tb[IPSET_ATTR_IP2] == nullptr) {
            return false;
        }
        auto ip2 = nestedAddress(tb[IPSET_ATTR_IP2], family_);
        if (!ip2) {
            return false;
        }
        if (*type_ == SetType::HashIpPortIp) {
            e.ip2 = *ip2;
        } else {
            const auto n = network(*ip2, tb[IPSET_ATTR_CIDR2]);
            if (!n) {
                return false;
            }
            e.setNet(*n);
        }
    }
    emit(e);
    return true;
}

void ListCollector::add(const nlmsghdr* msg) {
    if (error_) {
        return;
    }
    std::vector<const nlattr*> tb(IPSET_ATTR_CMD_MAX + 1);
    if (!hostnl::parseAttrs(msg, sizeof(nfgenmsg), tb)) {
        fail("short reply message");
        return;
    }
    if (!type_) {
        if (tb[IPSET_ATTR_TYPENAME] == nullptr) {
            fail("reply without the set's type");
            return;
        }
        const std::string typeName = hostnl::attrString(tb[IPSET_ATTR_TYPENAME]);
        type_ = parseSetType(typeName);
        if (!type_) {
            fail("set has type " + typeName + ", which kube-ipvs does not use");
            return;
        }
        family_ = tb[IPSET_ATTR_FAMILY] != nullptr ? attrU8(tb[IPSET_ATTR_FAMILY]) : 0;
        if (*type_ != SetType::BitmapPort && family_ != NFPROTO_IPV4 && family_ != NFPROTO_IPV6) {
            fail("set has address family " + std::to_string(family_));
            return;
        }
    }
    if (tb[IPSET_ATTR_ADT] == nullptr) {
        return;  // the header part of the listing
    }
    hostnl::forEachNested(tb[IPSET_ATTR_ADT], [&](const nlattr* a) {
        if (error_ || (a->nla_type & NLA_TYPE_MASK) != IPSET_ATTR_DATA) {
            return;
        }
        if (!member(a)) {
            fail("cannot decode member " + std::to_string(count_ + 1) + " of a " +
                 std::string(setTypeName(*type_)) + " set");
        }
    });
}

Result<std::size_t> ListCollector::finish() {
    if (error_) {
        return Error::protocol(*error_);
    }
    return count_;
}

}  // namespace kipvs::ipvs::ipsetnl
