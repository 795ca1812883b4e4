#include "ipvs/nf_conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

namespace kipvs::ipvs {

namespace {

struct CtDeleter {
    void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using Ct = std::unique_ptr<nf_conntrack, CtDeleter>;

// What a delete needs to name one entry.
struct Victim {
    ConntrackEntry entry;
    std::optional<std::uint32_t> id;
    std::optional<std::uint16_t> zone;
};

net::IpAddress address(const nf_conntrack* ct, net::Family f, nf_conntrack_attr v4,
                       nf_conntrack_attr v6) {
    if (f == net::Family::V4) {
        const std::uint32_t a = nfct_get_attr_u32(ct, v4);  // network order
        return net::IpAddress::fromBytes(f, &a);
    }
    return net::IpAddress::fromBytes(f, nfct_get_attr(ct, v6));
}

std::uint16_t port(const nf_conntrack* ct, nf_conntrack_attr a) {
    return ntohs(nfct_get_attr_u16(ct, a));
}

std::string describe(const ConntrackEntry& e) {
    return std::string(protocolLower(e.protocol)) + " " +
           net::joinHostPort(e.original.src, e.original.srcPort) + " -> " +
           net::joinHostPort(e.original.dst, e.original.dstPort) + " (reply from " +
           net::joinHostPort(e.reply.src, e.reply.srcPort) + ")";
}

std::uint16_t ctMessageType(std::uint8_t msg) {
    return static_cast<std::uint16_t>((NFNL_SUBSYS_CTNETLINK << 8) | msg);
}

void setAddress(nf_conntrack* ct, const net::IpAddress& a, nf_conntrack_attr v4,
                nf_conntrack_attr v6) {
    if (a.isV4()) {
        std::uint32_t v = 0;
        std::memcpy(&v, a.data(), 4);
        nfct_set_attr_u32(ct, v4, v);
    } else {
        nfct_set_attr(ct, v6, a.data());
    }
}

// Builds the IPCTNL_MSG_CT_DELETE request for one entry into `batch`.
bool putDelete(hostnl::MessageBuffer& batch, net::Family f, const Victim& v) {
    Ct ct(nfct_new());
    if (!ct) {
        return false;
    }
    const auto& o = v.entry.original;
    nfct_set_attr_u8(ct.get(), ATTR_ORIG_L3PROTO, static_cast<std::uint8_t>(net::toAf(f)));
    nfct_set_attr_u8(ct.get(), ATTR_ORIG_L4PROTO, static_cast<std::uint8_t>(v.entry.protocol));
    setAddress(ct.get(), o.src, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
    setAddress(ct.get(), o.dst, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
    nfct_set_attr_u16(ct.get(), ATTR_ORIG_PORT_SRC, htons(o.srcPort));
    nfct_set_attr_u16(ct.get(), ATTR_ORIG_PORT_DST, htons(o.dstPort));
    if (v.id) {
        nfct_set_attr_u32(ct.get(), ATTR_ID, *v.id);
    }
    if (v.zone) {
        nfct_set_attr_u16(ct.get(), ATTR_ZONE, *v.zone);
    }
    // nfct_nlmsg_build appends attributes without a bound: give it ample room.
    alignas(nlmsghdr) std::array<std::uint8_t, 1024> buf{};
    auto* h = reinterpret_cast<nlmsghdr*>(buf.data());
    h->nlmsg_len = NLMSG_LENGTH(sizeof(nfgenmsg));
    h->nlmsg_type = ctMessageType(IPCTNL_MSG_CT_DELETE);
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    auto* g = static_cast<nfgenmsg*>(NLMSG_DATA(h));
    g->nfgen_family = static_cast<std::uint8_t>(net::toAf(f));
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    if (nfct_nlmsg_build(h, ct.get()) < 0) {
        return false;
    }
    batch.append(h);
    return true;
}

}  // namespace

Result<std::unique_ptr<NetfilterConntrack>> NetfilterConntrack::open() {
    auto sock = hostnl::Socket::open(NETLINK_NETFILTER);
    if (!sock) {
        return sock.error().context("ctnetlink");
    }
    return std::unique_ptr<NetfilterConntrack>(new NetfilterConntrack(std::move(*sock)));
}

Result<std::size_t> NetfilterConntrack::deleteMatching(
    net::Family family, Protocol protocol,
    const std::function<bool(const ConntrackEntry&)>& match) {
    const std::string what = "conntrack clean-up (" + std::string(net::familyName(family)) + " " +
                             std::string(protocolName(protocol)) + ")";
    const int af = net::toAf(family);

    hostnl::MessageBuffer dump;
    dump.begin(ctMessageType(IPCTNL_MSG_CT_GET), NLM_F_DUMP);
    nfgenmsg g{};
    g.nfgen_family = static_cast<std::uint8_t>(af);
    g.version = NFNETLINK_V0;
    dump.putHeader(g);
    dump.end();

    std::vector<Victim> victims;
    const auto st = sock_.exchange(dump, [&](std::size_t, const nlmsghdr* h) {
        if (h->nlmsg_type != ctMessageType(IPCTNL_MSG_CT_NEW)) {
            return;
        }
        // A fresh object per entry: parsing into a used one keeps attributes (a zone, say)
        // the new entry does not have.
        Ct ct(nfct_new());
        if (!ct || nfct_nlmsg_parse(h, ct.get()) < 0 ||
            nfct_get_attr_u8(ct.get(), ATTR_ORIG_L3PROTO) != af ||
            nfct_get_attr_u8(ct.get(), ATTR_ORIG_L4PROTO) != static_cast<std::uint8_t>(protocol)) {
            return;
        }
        Victim v;
        v.entry.protocol = protocol;
        v.entry.original.src = address(ct.get(), family, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
        v.entry.original.dst = address(ct.get(), family, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
        v.entry.original.srcPort = port(ct.get(), ATTR_ORIG_PORT_SRC);
        v.entry.original.dstPort = port(ct.get(), ATTR_ORIG_PORT_DST);
        v.entry.reply.src = address(ct.get(), family, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
        v.entry.reply.dst = address(ct.get(), family, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
        v.entry.reply.srcPort = port(ct.get(), ATTR_REPL_PORT_SRC);
        v.entry.reply.dstPort = port(ct.get(), ATTR_REPL_PORT_DST);
        if (!match(v.entry)) {
            return;
        }
        if (nfct_attr_is_set(ct.get(), ATTR_ID) > 0) {
            v.id = nfct_get_attr_u32(ct.get(), ATTR_ID);
        }
        if (nfct_attr_is_set(ct.get(), ATTR_ZONE) > 0) {
            v.zone = nfct_get_attr_u16(ct.get(), ATTR_ZONE);
        }
        victims.push_back(v);
    });
    if (!st[0].ok() && st[0].error != EINTR) {
        return Error{std::error_code(st[0].error, std::generic_category()),
                     what + ": dump: " + hostnl::describe(st[0])};
    }
    if (victims.empty()) {
        return std::size_t{0};
    }

    hostnl::MessageBuffer batch;
    std::vector<std::size_t> index;  // batch message -> victim
    for (std::size_t i = 0; i < victims.size(); ++i) {
        if (putDelete(batch, family, victims[i])) {
            index.push_back(i);
        }
    }
    const auto acks = sock_.exchange(batch);
    std::size_t deleted = 0;
    std::optional<Error> first;
    for (std::size_t k = 0; k < acks.size(); ++k) {
        if (acks[k].ok()) {
            ++deleted;
        } else if (acks[k].error != ENOENT && !first) {
            // ENOENT: the entry expired (or its tuple was reused, and the id no longer matches)
            // between dump and delete; nothing to do.
            first = Error{std::error_code(acks[k].error, std::generic_category()),
                          what + ": delete " + describe(victims[index[k]].entry) + ": " +
                              hostnl::describe(acks[k])};
        }
    }
    if (index.size() != victims.size() && !first) {
        first = Error::invalid(what + ": cannot encode a delete request");
    }
    if (first) {
        return first->context(std::to_string(deleted) + " deleted");
    }
    return deleted;
}

}  // namespace kipvs::ipvs
