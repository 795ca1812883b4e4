#include "ipvs/rtnl_addresses.h"

#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <functional>
#include <map>
#include <system_error>

namespace kipvs::ipvs {

namespace {

Error kernelError(const hostnl::Status& st, const std::string& what) {
    return {std::error_code(st.error, std::generic_category()), what + ": " + hostnl::describe(st)};
}

std::string hostPrefix(const net::IpAddress& a) {
    return a.toString() + (a.isV4() ? "/32" : "/128");
}

// The address of an RTM_NEWADDR message: IFA_LOCAL is the interface's own address (IFA_ADDRESS
// is the peer on point-to-point links); IPv6 messages carry only IFA_ADDRESS unless there is a
// peer.
std::optional<InterfaceAddress> parseAddress(const nlmsghdr* h, int onlyIndex) {
    if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) {
        return std::nullopt;
    }
    const auto* m = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
    if (onlyIndex != 0 && static_cast<int>(m->ifa_index) != onlyIndex) {
        return std::nullopt;
    }
    const auto family = net::fromAf(m->ifa_family);
    if (!family) {
        return std::nullopt;
    }
    std::vector<const nlattr*> tb(IFA_MAX + 1);
    hostnl::parseAttrs(h, sizeof(ifaddrmsg), tb);
    const nlattr* a = tb[IFA_LOCAL] != nullptr ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
    const std::size_t want = *family == net::Family::V4 ? 4 : 16;
    if (a == nullptr || hostnl::attrLen(a) != want) {
        return std::nullopt;
    }
    InterfaceAddress out;
    out.address = net::IpAddress::fromBytes(*family, hostnl::attrData(a));
    out.prefix = m->ifa_prefixlen;
    out.interface = std::to_string(m->ifa_index);  // replaced by the name where it matters
    return out;
}

void putAddressMessage(hostnl::MessageBuffer& b, const AddressOp& op, int index) {
    const bool add = op.kind == AddressOpKind::Add;
    b.begin(add ? RTM_NEWADDR : RTM_DELADDR,
            static_cast<std::uint16_t>(NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0)));
    ifaddrmsg m{};
    m.ifa_family = static_cast<std::uint8_t>(net::toAf(op.address.family()));
    m.ifa_prefixlen = op.address.isV4() ? 32 : 128;
    // Duplicate address detection cannot succeed on a link that is down; skip it so that an
    // IPv6 VIP is never left tentative (kube-ipvs0 is NOARP, which skips it anyway).
    m.ifa_flags = op.address.isV6() ? IFA_F_NODAD : 0;
    m.ifa_scope = RT_SCOPE_UNIVERSE;
    m.ifa_index = static_cast<std::uint32_t>(index);
    b.putHeader(m);
    b.putAttr(IFA_LOCAL, op.address.data(), op.address.size());
    b.putAttr(IFA_ADDRESS, op.address.data(), op.address.size());
    b.end();
}

void putRouteMessage(hostnl::MessageBuffer& b, const AddressOp& op, int index) {
    const bool add = op.kind == AddressOpKind::Add;
    // NLM_F_CREATE without NLM_F_EXCL: the kernel still refuses an exact duplicate (EEXIST),
    // but adds ours beside a different route to the same VIP, e.g. the kernel's own local
    // route while the VIP is also an address (switching from address to route mode). With
    // EXCL that add would fail, and deleting the address afterwards would leave no route.
    b.begin(add ? RTM_NEWROUTE : RTM_DELROUTE,
            static_cast<std::uint16_t>(NLM_F_ACK | (add ? NLM_F_CREATE : 0)));
    rtmsg m{};
    m.rtm_family = static_cast<std::uint8_t>(net::toAf(op.address.family()));
    m.rtm_dst_len = op.address.isV4() ? 32 : 128;
    m.rtm_table = RT_TABLE_LOCAL;
    // On delete, protocol, scope and type restrict the match to our route: the kernel's route
    // for an address on the same VIP (proto kernel) is left alone.
    m.rtm_protocol = kLocalRouteProtocol;
    m.rtm_scope = RT_SCOPE_HOST;
    m.rtm_type = RTN_LOCAL;
    b.putHeader(m);
    b.putU32(RTA_TABLE, RT_TABLE_LOCAL);
    b.putAttr(RTA_DST, op.address.data(), op.address.size());
    b.putU32(RTA_OIF, static_cast<std::uint32_t>(index));
    b.end();
}

// Runs one dump request (message `type` with the family header `hdr`), again if the table
// changed under it (hostnl::dumpConsistent); `restart` drops what a try collected.
template <class Header>
hostnl::Status dump(hostnl::Socket& sock, std::uint16_t type, const Header& hdr,
                    const std::function<void()>& restart, const hostnl::Socket::DataFn& onData) {
    return hostnl::dumpConsistent(restart, [&] {
        hostnl::MessageBuffer b;
        b.begin(type, NLM_F_DUMP);
        b.putHeader(hdr);
        b.end();
        return sock.exchange(b, onData)[0];
    });
}

std::vector<Result<void>> allFailed(std::size_t n, const Error& e) {
    return std::vector<Result<void>>(n, Result<void>(e));
}

}  // namespace

Result<std::unique_ptr<RtnlAddresses>> RtnlAddresses::open() {
    auto sock = hostnl::Socket::open(NETLINK_ROUTE);
    if (!sock) {
        return sock.error().context("rtnetlink");
    }
    return std::unique_ptr<RtnlAddresses>(new RtnlAddresses(std::move(*sock)));
}

Result<std::optional<RtnlAddresses::Link>> RtnlAddresses::getLink(const std::string& name) {
    if (name.empty() || name.size() >= IFNAMSIZ) {
        return Error::invalid("invalid link name \"" + name + "\"");
    }
    hostnl::MessageBuffer b;
    b.begin(RTM_GETLINK, NLM_F_ACK);
    ifinfomsg m{};
    m.ifi_family = AF_UNSPEC;
    b.putHeader(m);
    b.putString(IFLA_IFNAME, name);
    b.end();
    std::optional<Link> found;
    const auto st = sock_.exchange(b, [&](std::size_t, const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) {
            return;
        }
        const auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
        Link l;
        l.index = info->ifi_index;
        std::vector<const nlattr*> tb(IFLA_MAX + 1);
        hostnl::parseAttrs(h, sizeof(ifinfomsg), tb);
        if (tb[IFLA_LINKINFO] != nullptr) {
            std::vector<const nlattr*> li(IFLA_INFO_MAX + 1);
            hostnl::parseNested(tb[IFLA_LINKINFO], li);
            if (li[IFLA_INFO_KIND] != nullptr) {
                l.kind = hostnl::attrString(li[IFLA_INFO_KIND]);
            }
        }
        found = l;
    });
    if (st[0].error == ENODEV) {
        return std::optional<Link>();
    }
    if (!st[0].ok()) {
        return kernelError(st[0], "get link " + name);
    }
    return found;
}

Result<int> RtnlAddresses::requireIndex(const std::string& name, const std::string& what) {
    auto link = getLink(name);
    if (!link) {
        return link.error().context(what);
    }
    if (!*link) {
        return Error::sys(ENODEV, what + ": link " + name);
    }
    return (*link)->index;
}

Result<bool> RtnlAddresses::ensureDummy(const std::string& name) {
    const std::string what = "ensure dummy link " + name;
    for (int attempt = 0; attempt < 2; ++attempt) {
        auto link = getLink(name);
        if (!link) {
            return link.error().context(what);
        }
        if (*link) {
            if ((*link)->kind == "dummy") {
                return false;
            }
            const std::string kind =
                (*link)->kind.empty() ? "a device without a link kind" : "type " + (*link)->kind;
            return Error::sys(EEXIST,
                              what + ": a link of that name exists with " + kind + ", not dummy");
        }
        hostnl::MessageBuffer b;
        b.begin(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        // ifi_flags/ifi_change stay 0: the link is created down and we never set it up.
        ifinfomsg m{};
        m.ifi_family = AF_UNSPEC;
        b.putHeader(m);
        b.putString(IFLA_IFNAME, name);
        const auto nest = b.beginNest(IFLA_LINKINFO);
        b.putString(IFLA_INFO_KIND, "dummy");
        b.endNest(nest);
        b.end();
        const auto st = sock_.exchange(b);
        if (st[0].ok()) {
            return true;
        }
        if (st[0].error != EEXIST) {
            return kernelError(st[0], "create dummy link " + name);
        }
        // Someone created it between our look and our add: look again.
    }
    return Error{std::error_code(EEXIST, std::generic_category()),
                 what + ": the link keeps appearing and disappearing"};
}

Result<bool> RtnlAddresses::linkExists(const std::string& name) {
    auto link = getLink(name);
    if (!link) {
        return link.error();
    }
    return link->has_value();
}

Result<void> RtnlAddresses::deleteLink(const std::string& name) {
    auto link = getLink(name);
    if (!link) {
        return link.error().context("delete link " + name);
    }
    if (!*link) {
        return ok();
    }
    hostnl::MessageBuffer b;
    b.begin(RTM_DELLINK, NLM_F_ACK);
    ifinfomsg m{};
    m.ifi_family = AF_UNSPEC;
    m.ifi_index = (*link)->index;
    b.putHeader(m);
    b.end();
    const auto st = sock_.exchange(b);
    if (st[0].ok() || st[0].error == ENODEV) {
        return ok();
    }
    return kernelError(st[0], "delete link " + name);
}

Result<std::vector<net::IpAddress>> RtnlAddresses::addresses(const std::string& name) {
    const std::string what = "list addresses of " + name;
    auto index = requireIndex(name, what);
    if (!index) {
        return index.error();
    }
    ifaddrmsg m{};
    m.ifa_family = AF_UNSPEC;
    std::vector<net::IpAddress> out;
    const auto st = dump(
        sock_, RTM_GETADDR, m, [&] { out.clear(); },
        [&](std::size_t, const nlmsghdr* h) {
            auto a = parseAddress(h, *index);
            if (a && !(a->address.isV6() && a->address.isLinkLocal())) {
                out.push_back(a->address);
            }
        });
    if (!st.ok()) {
        return kernelError(st, what);
    }
    return out;
}

Result<std::vector<InterfaceAddress>> RtnlAddresses::allAddresses(std::string_view except) {
    std::map<int, std::string> names;
    {
        ifinfomsg m{};
        m.ifi_family = AF_UNSPEC;
        const auto st = dump(
            sock_, RTM_GETLINK, m, [&] { names.clear(); },
            [&](std::size_t, const nlmsghdr* h) {
                if (h->nlmsg_type != RTM_NEWLINK ||
                    h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) {
                    return;
                }
                const auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
                std::vector<const nlattr*> tb(IFLA_MAX + 1);
                hostnl::parseAttrs(h, sizeof(ifinfomsg), tb);
                if (tb[IFLA_IFNAME] != nullptr) {
                    names[info->ifi_index] = hostnl::attrString(tb[IFLA_IFNAME]);
                }
            });
        if (!st.ok()) {
            return kernelError(st, "list links");
        }
    }
    ifaddrmsg m{};
    m.ifa_family = AF_UNSPEC;
    std::vector<InterfaceAddress> out;
    const auto st = dump(
        sock_, RTM_GETADDR, m, [&] { out.clear(); },
        [&](std::size_t, const nlmsghdr* h) {
            auto a = parseAddress(h, 0);
            if (!a) {
                return;
            }
            const auto* msg = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
            auto it = names.find(static_cast<int>(msg->ifa_index));
            if (it != names.end() && !except.empty() && it->second == except) {
                return;
            }
            // An address of a link that appeared after our link dump: name it by its index.
            a->interface = it != names.end() ? it->second : "if" + std::to_string(msg->ifa_index);
            out.push_back(std::move(*a));
        });
    if (!st.ok()) {
        return kernelError(st, "list addresses");
    }
    return out;
}

namespace {

// Sends one message per op (built by `put`) in one batch and turns the acks into one result
// per op. Adding what is present and deleting what is absent (`absent(errno)`) leave the
// wanted state, so both count as done.
template <class Put, class Absent>
std::vector<Result<void>> applyBatch(hostnl::Socket& sock, int index, const std::string& name,
                                     std::span<const AddressOp> ops, std::string_view object,
                                     Put put, Absent absent) {
    hostnl::MessageBuffer b;
    for (const auto& op : ops) {
        put(b, op, index);
    }
    const auto st = sock.exchange(b);
    std::vector<Result<void>> out;
    out.reserve(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const bool add = ops[i].kind == AddressOpKind::Add;
        const int e = st[i].error;
        if (e == 0 || (add && e == EEXIST) || (!add && absent(e))) {
            out.emplace_back();
        } else {
            out.emplace_back(kernelError(st[i], std::string(add ? "add-" : "delete-") +
                                                    std::string(object) + " " +
                                                    hostPrefix(ops[i].address) + " dev " + name));
        }
    }
    return out;
}

}  // namespace

std::vector<Result<void>> RtnlAddresses::apply(const std::string& name,
                                               std::span<const AddressOp> ops) {
    if (ops.empty()) {
        return {};
    }
    auto index = requireIndex(name, "bind addresses to " + name);
    if (!index) {
        return allFailed(ops.size(), index.error());
    }
    return applyBatch(sock_, *index, name, ops, "address", putAddressMessage,
                      [](int e) { return e == EADDRNOTAVAIL || e == ENOENT || e == ENXIO; });
}

Result<std::vector<net::IpAddress>> RtnlAddresses::localRoutes(const std::string& name) {
    const std::string what = "list local routes through " + name;
    auto index = requireIndex(name, what);
    if (!index) {
        return index.error();
    }
    std::vector<net::IpAddress> out;
    // One dump per family: a socket runs one dump at a time.
    for (const int af : {AF_INET, AF_INET6}) {
        rtmsg m{};
        m.rtm_family = static_cast<std::uint8_t>(af);
        const std::size_t before = out.size();
        const auto st = dump(
            sock_, RTM_GETROUTE, m, [&] { out.resize(before); },
            [&](std::size_t, const nlmsghdr* h) {
                if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) {
                    return;
                }
                const auto* r = static_cast<const rtmsg*>(NLMSG_DATA(h));
                if (r->rtm_type != RTN_LOCAL || r->rtm_protocol != kLocalRouteProtocol) {
                    return;
                }
                std::vector<const nlattr*> tb(RTA_MAX + 1);
                hostnl::parseAttrs(h, sizeof(rtmsg), tb);
                const std::uint32_t table =
                    tb[RTA_TABLE] != nullptr ? hostnl::attrU32(tb[RTA_TABLE]) : r->rtm_table;
                if (table != RT_TABLE_LOCAL || tb[RTA_OIF] == nullptr ||
                    static_cast<int>(hostnl::attrU32(tb[RTA_OIF])) != *index ||
                    tb[RTA_DST] == nullptr) {
                    return;
                }
                const auto family = net::fromAf(r->rtm_family);
                const std::size_t want = family == net::Family::V4 ? 4 : 16;
                if (!family || hostnl::attrLen(tb[RTA_DST]) != want || r->rtm_dst_len != want * 8) {
                    return;
                }
                out.push_back(net::IpAddress::fromBytes(*family, hostnl::attrData(tb[RTA_DST])));
            });
        if (!st.ok()) {
            return kernelError(st, what);
        }
    }
    return out;
}

std::vector<Result<void>> RtnlAddresses::applyLocalRoutes(const std::string& name,
                                                          std::span<const AddressOp> ops) {
    if (ops.empty()) {
        return {};
    }
    auto index = requireIndex(name, "install local routes through " + name);
    if (!index) {
        return allFailed(ops.size(), index.error());
    }
    return applyBatch(sock_, *index, name, ops, "local-route", putRouteMessage,
                      [](int e) { return e == ESRCH || e == ENOENT; });
}

}  // namespace kipvs::ipvs
