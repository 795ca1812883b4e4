// Netlink reply parsing: the IPVS generic netlink codec (ipvs/ipvs_codec.h) and the host
// layer's attribute parser (ipvs/host_netlink.h: parseAttrs, parseNested, attrU32,
// attrString, as the rtnetlink and conntrack replies are read).
//
// Input: byte 0 picks the decoder, byte 1 the family header length for the host parser; the
// rest is a reply.
//   mode % 8: 0 decodeService, 1 decodeDest (IPv4 service), 2 decodeDest (IPv6 service),
//             3 decodeInfo, 4 decodeConfig, 5 decodeAck, 6 decodeDone, 7 a whole datagram:
//             forEachMessage, each message to the decoder its type and command name, and the
//             host parser over every message as Socket::receive frames them
// Invariants:
//  * decode -> encode -> decode is the identity for services (HASHED never comes back), real
//    servers and timeouts; decoded addresses print and parse back to themselves; a fwmark
//    service has the unspecified address; an ack's errno is not negative;
//  * forEachMessage hands out messages that tile the datagram in order, each as long as its
//    header says;
//  * every attribute the host parser returns, nested ones included, lies inside its message.
#include <arpa/inet.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>

#include <cstring>
#include <vector>

#include "ipvs/host_netlink.h"
#include "ipvs/ipvs_codec.h"
#include "tests/fuzz/fuzz.h"

namespace kipvs::fuzz {

namespace {

namespace codec = ipvs::codec;

void checkIp(const net::IpAddress& a) {
    const auto text = a.toString();
    const auto again = net::IpAddress::parse(text);
    FUZZ_CHECK_MSG(again && *again == a, text);
}

void service(codec::ByteSpan msg) {
    auto e = codec::decodeService(msg);
    if (!e) {
        FUZZ_CHECK(!e.error().message.empty());
        return;
    }
    const auto& vs = e->service;
    FUZZ_CHECK((vs.flags & ipvs::kSvcFlagHashed) == 0);
    FUZZ_CHECK(vs.scheduler.view().size() < 16 && vs.persistenceEngine.view().size() < 16);
    if (vs.key.fwmark != 0) {
        FUZZ_CHECK(vs.key.address == net::IpAddress::any(vs.key.family()));
    }
    checkIp(vs.key.address);
    FUZZ_CHECK(!vs.toString().empty());
    codec::Bytes out;
    codec::appendOp(out, {0x1d, 7, 0}, ipvs::OpKind::AddService, vs, {});
    auto back = codec::decodeService(out);
    FUZZ_CHECK_MSG(back.has_value(), back ? "" : back.error().message);
    FUZZ_CHECK_MSG(back->service == vs, back->service.toString() + " vs " + vs.toString());
    FUZZ_CHECK(back->stats == ipvs::Stats{});
}

void dest(codec::ByteSpan msg, net::Family serviceFamily) {
    auto e = codec::decodeDest(msg, serviceFamily);
    if (!e) {
        FUZZ_CHECK(!e.error().message.empty());
        return;
    }
    const auto& rs = e->dest;
    checkIp(rs.key.address);
    FUZZ_CHECK(static_cast<int>(rs.forwarding) <= 3);
    ipvs::VirtualServer vs;
    vs.key.address = net::IpAddress::any(serviceFamily);
    vs.key.port = 80;
    codec::Bytes out;
    codec::appendOp(out, {0x1d, 7, 0}, ipvs::OpKind::AddDest, vs, rs);
    auto back = codec::decodeDest(out, serviceFamily);
    FUZZ_CHECK_MSG(back.has_value(), back ? "" : back.error().message);
    FUZZ_CHECK(back->dest == rs);
    FUZZ_CHECK(back->activeConns == 0 && back->stats == ipvs::Stats{});
}

void config(codec::ByteSpan msg) {
    auto t = codec::decodeConfig(msg);
    if (!t) {
        return;
    }
    codec::Bytes out;
    codec::appendSetConfig(out, {0x1d, 7, 0}, *t);
    auto back = codec::decodeConfig(out);
    FUZZ_CHECK(back && *back == *t);
}

void info(codec::ByteSpan msg) {
    if (auto i = codec::decodeInfo(msg)) {
        FUZZ_CHECK(!i->versionString().empty());
    }
}

void ack(codec::ByteSpan msg) {
    if (auto a = codec::decodeAck(msg)) {
        FUZZ_CHECK(a->error >= 0);
    }
}

void done(codec::ByteSpan msg) {
    if (auto d = codec::decodeDone(msg)) {
        FUZZ_CHECK(*d >= 0);
    }
}

void byCommand(const codec::Message& m) {
    if (m.type == NLMSG_ERROR) {
        ack(m.bytes);
        return;
    }
    if (m.type == NLMSG_DONE) {
        done(m.bytes);
        return;
    }
    if (m.bytes.size() <= sizeof(nlmsghdr)) {
        return;
    }
    switch (m.bytes[sizeof(nlmsghdr)]) {
        case IPVS_CMD_NEW_SERVICE:
            service(m.bytes);
            break;
        case IPVS_CMD_NEW_DEST:
            dest(m.bytes, net::Family::V4);
            dest(m.bytes, net::Family::V6);
            break;
        case IPVS_CMD_SET_INFO:
            info(m.bytes);
            break;
        case IPVS_CMD_SET_CONFIG:
            config(m.bytes);
            break;
        default:
            break;
    }
}

// Attributes of [begin, end) as the host parser returned them: each inside the range, and
// each nested set inside its parent.
void checkAttrs(const std::vector<const nlattr*>& tb, const std::uint8_t* begin,
                const std::uint8_t* end, int depth) {
    for (const nlattr* a : tb) {
        if (a == nullptr) {
            continue;
        }
        const auto* p = reinterpret_cast<const std::uint8_t*>(a);
        FUZZ_CHECK(p >= begin && p + sizeof(nlattr) <= end);
        FUZZ_CHECK(a->nla_len >= sizeof(nlattr) && p + a->nla_len <= end);
        (void)ipvs::hostnl::attrU32(a);
        FUZZ_CHECK(ipvs::hostnl::attrString(a).size() <= ipvs::hostnl::attrLen(a));
        if (depth < 3) {
            std::vector<const nlattr*> inner(24);
            ipvs::hostnl::parseNested(a, inner);
            checkAttrs(inner, p + NLA_HDRLEN, p + a->nla_len, depth + 1);
        }
    }
}

// As Socket::receive frames a datagram, then the attribute tables of each message.
void hostParse(codec::ByteSpan datagram, std::size_t hdrlen) {
    std::vector<std::uint32_t> aligned((datagram.size() + 3) / 4);
    if (!datagram.empty()) {
        std::memcpy(aligned.data(), datagram.data(), datagram.size());
    }
    const auto* base = reinterpret_cast<const std::uint8_t*>(aligned.data());
    const std::size_t total = datagram.size();
    std::size_t off = 0;
    while (off + sizeof(nlmsghdr) <= total) {
        const auto* h = reinterpret_cast<const nlmsghdr*>(base + off);
        if (h->nlmsg_len < sizeof(nlmsghdr) || off + h->nlmsg_len > total) {
            break;
        }
        std::vector<const nlattr*> tb(32);
        if (ipvs::hostnl::parseAttrs(h, hdrlen, tb)) {
            const auto* start = base + off + NLMSG_LENGTH(NLMSG_ALIGN(hdrlen));
            checkAttrs(tb, start, base + off + h->nlmsg_len, 0);
        } else {
            for (const auto* a : tb) {
                FUZZ_CHECK(a == nullptr);
            }
        }
        off += NLMSG_ALIGN(h->nlmsg_len);
    }
}

void datagram(codec::ByteSpan d, std::size_t hdrlen) {
    std::size_t expectAt = 0;
    auto r = codec::forEachMessage(d, [&](const codec::Message& m) {
        FUZZ_CHECK(m.bytes.data() == d.data() + expectAt);
        FUZZ_CHECK(m.bytes.size() >= sizeof(nlmsghdr));
        nlmsghdr h{};
        std::memcpy(&h, m.bytes.data(), sizeof h);
        FUZZ_CHECK(h.nlmsg_len == m.bytes.size() && h.nlmsg_type == m.type && h.nlmsg_seq == m.seq);
        expectAt += NLMSG_ALIGN(m.bytes.size());
        byCommand(m);
        return true;
    });
    if (r) {
        FUZZ_CHECK(expectAt >= d.size());
    }
    hostParse(d, hdrlen);
}

}  // namespace

int ipvsNetlink(const std::uint8_t* data, std::size_t size) {
    if (size < 2) {
        return 0;
    }
    const codec::ByteSpan msg(data + 2, size - 2);
    // The family headers the host layer parses after nlmsghdr: nfgenmsg 4, ifaddrmsg 8,
    // rtmsg 12, ifinfomsg 16; and odd ones.
    const std::size_t hdrlen = data[1] % 20;
    switch (data[0] % 8) {
        case 0:
            service(msg);
            break;
        case 1:
            dest(msg, net::Family::V4);
            break;
        case 2:
            dest(msg, net::Family::V6);
            break;
        case 3:
            info(msg);
            break;
        case 4:
            config(msg);
            break;
        case 5:
            ack(msg);
            break;
        case 6:
            done(msg);
            break;
        default:
            datagram(msg, hdrlen);
            break;
    }
    return 0;
}

}  // namespace kipvs::fuzz

#ifndef KIPVS_FUZZ_REGRESSION
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return kipvs::fuzz::ipvsNetlink(data, size);
}
#endif
