// Unit tests of the IPVS generic netlink codec: no socket, no kernel.
//
// Requests are checked by decoding them back (the request and reply attribute layouts are the
// same) and by reading their raw attributes with a tiny parser written here, independent of
// the codec. Replies are built by hand the way the kernel builds them (ip_vs_genl_fill_*), then
// broken in every way a reply can be broken.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ipvs/ipvs_codec.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using kipvs::net::Family;
using kipvs::net::IpAddress;

namespace {

constexpr std::uint16_t kFamily = 0x1d;  // any generic netlink family id

IpAddress ip(const char* s) {
    auto a = IpAddress::parse(s);
    REQUIRE(a.has_value());
    return *a;
}

// ---- A netlink message writer of the tests' own (kernel-style) ----------------------------

class Msg {
  public:
    Msg(std::uint16_t type, std::uint8_t cmd, std::uint32_t seq = 7, std::uint16_t flags = 0) {
        nlmsghdr nh{};
        nh.nlmsg_type = type;
        nh.nlmsg_flags = flags;
        nh.nlmsg_seq = seq;
        raw(&nh, sizeof nh);
        genlmsghdr gh{};
        gh.cmd = cmd;
        gh.version = 1;
        raw(&gh, sizeof gh);
    }
    Msg& attr(std::uint16_t type, const void* p, std::size_t n) {
        nlattr a{};
        a.nla_len = static_cast<std::uint16_t>(4 + n);
        a.nla_type = type;
        raw(&a, sizeof a);
        raw(p, n);
        b_.resize((b_.size() + 3) & ~std::size_t{3}, 0);
        return *this;
    }
    Msg& u16(std::uint16_t t, std::uint16_t v) { return attr(t, &v, 2); }
    Msg& u32(std::uint16_t t, std::uint32_t v) { return attr(t, &v, 4); }
    Msg& u64(std::uint16_t t, std::uint64_t v) { return attr(t, &v, 8); }
    Msg& be16(std::uint16_t t, std::uint16_t v) { return u16(t, htons(v)); }
    Msg& str(std::uint16_t t, const std::string& s) { return attr(t, s.c_str(), s.size() + 1); }
    Msg& addr16(std::uint16_t t, const IpAddress& a) {
        std::uint8_t buf[16] = {};
        std::memcpy(buf, a.data(), a.size());
        return attr(t, buf, 16);
    }
    Msg& begin(std::uint16_t t) {
        nests_.push_back(b_.size());
        nlattr a{};
        a.nla_type = static_cast<std::uint16_t>(t | NLA_F_NESTED);
        return raw(&a, sizeof a);
    }
    Msg& end() {
        const std::size_t at = nests_.back();
        nests_.pop_back();
        const auto len = static_cast<std::uint16_t>(b_.size() - at);
        std::memcpy(b_.data() + at, &len, 2);
        return *this;
    }
    Msg& raw(const void* p, std::size_t n) {
        const auto* c = static_cast<const std::uint8_t*>(p);
        b_.insert(b_.end(), c, c + n);
        return *this;
    }
    std::vector<std::uint8_t> bytes() const {
        auto out = b_;
        const auto len = static_cast<std::uint32_t>(out.size());
        std::memcpy(out.data(), &len, 4);
        return out;
    }

  private:
    std::vector<std::uint8_t> b_;
    std::vector<std::size_t> nests_;
};

// The kernel's stats nests: STATS has u32 counters and u64 byte counts, STATS64 all u64.
void putStats(Msg& m, std::uint16_t type, std::uint64_t base, bool wide) {
    m.begin(type);
    for (int t = IPVS_STATS_ATTR_CONNS; t <= IPVS_STATS_ATTR_OUTBPS; ++t) {
        const std::uint64_t v = base + static_cast<std::uint64_t>(t);
        const bool bytes = t == IPVS_STATS_ATTR_INBYTES || t == IPVS_STATS_ATTR_OUTBYTES;
        if (wide || bytes) {
            m.u64(static_cast<std::uint16_t>(t), v);
        } else {
            m.u32(static_cast<std::uint16_t>(t), static_cast<std::uint32_t>(v));
        }
    }
    m.end();
}

struct SvcReply {
    bool v6 = false;
    bool stats32 = true;
    bool stats64 = true;
    bool fwmark = false;
    std::uint16_t protocol = IPPROTO_TCP;
    std::uint16_t af = 0;  // 0: from v6
    int addrLen = 16;
    std::uint32_t flags = IP_VS_SVC_F_HASHED;
    bool withAf = true;
    bool withSched = true;
    bool withNetmask = true;
    bool unknownAttrs = false;
    std::string sched = "rr";
};

std::vector<std::uint8_t> serviceReply(const SvcReply& o) {
    Msg m(kFamily, IPVS_CMD_NEW_SERVICE, 7, NLM_F_MULTI);
    if (o.unknownAttrs) {
        m.u32(99, 1);  // a top-level attribute from the future
    }
    m.begin(IPVS_CMD_ATTR_SERVICE);
    if (o.withAf) {
        m.u16(IPVS_SVC_ATTR_AF, o.af != 0 ? o.af : (o.v6 ? AF_INET6 : AF_INET));
    }
    if (o.fwmark) {
        m.u32(IPVS_SVC_ATTR_FWMARK, 42);
    } else {
        m.u16(IPVS_SVC_ATTR_PROTOCOL, o.protocol);
        std::uint8_t a[32] = {};  // room for the oversized addresses of the error cases
        const IpAddress addr = o.v6 ? ip("fd00::a") : ip("10.96.0.10");
        std::memcpy(a, addr.data(), addr.size());
        m.attr(IPVS_SVC_ATTR_ADDR, a, static_cast<std::size_t>(o.addrLen));
        m.be16(IPVS_SVC_ATTR_PORT, 53);
    }
    if (o.withSched) {
        m.str(IPVS_SVC_ATTR_SCHED_NAME, o.sched);
    }
    const ip_vs_flags f{o.flags, ~0U};
    m.attr(IPVS_SVC_ATTR_FLAGS, &f, sizeof f);
    m.u32(IPVS_SVC_ATTR_TIMEOUT, 180);
    if (o.withNetmask) {
        m.u32(IPVS_SVC_ATTR_NETMASK, o.v6 ? 128 : htonl(0xffffff00));
    }
    if (o.stats32) {
        putStats(m, IPVS_SVC_ATTR_STATS, 100, false);
    }
    if (o.stats64) {
        putStats(m, IPVS_SVC_ATTR_STATS64, 5000000000ULL, true);
    }
    if (o.unknownAttrs) {
        m.u32(50, 7);  // a service attribute from the future
    }
    m.end();
    return m.bytes();
}

struct DestReply {
    bool withFamily = true;
    std::uint16_t af = AF_INET;
    IpAddress addr = IpAddress::parse("10.244.1.7").value();
    int addrLen = 16;
    bool withPort = true;
    bool stats64 = true;
    bool unknownAttrs = false;
    std::uint32_t fwd = IP_VS_CONN_F_MASQ;
};

std::vector<std::uint8_t> destReply(const DestReply& o) {
    Msg m(kFamily, IPVS_CMD_NEW_DEST, 9, NLM_F_MULTI);
    m.begin(IPVS_CMD_ATTR_DEST);
    std::uint8_t a[32] = {};  // room for the oversized addresses of the error cases
    std::memcpy(a, o.addr.data(), o.addr.size());
    m.attr(IPVS_DEST_ATTR_ADDR, a, static_cast<std::size_t>(o.addrLen));
    if (o.withPort) {
        m.be16(IPVS_DEST_ATTR_PORT, 8053);
    }
    m.u32(IPVS_DEST_ATTR_FWD_METHOD, o.fwd);
    m.u32(IPVS_DEST_ATTR_WEIGHT, 3);
    std::uint8_t tunType = 0;
    m.attr(IPVS_DEST_ATTR_TUN_TYPE, &tunType, 1);
    m.be16(IPVS_DEST_ATTR_TUN_PORT, 0);
    m.u16(IPVS_DEST_ATTR_TUN_FLAGS, 0);
    m.u32(IPVS_DEST_ATTR_U_THRESH, 100);
    m.u32(IPVS_DEST_ATTR_L_THRESH, 10);
    m.u32(IPVS_DEST_ATTR_ACTIVE_CONNS, 4);
    m.u32(IPVS_DEST_ATTR_INACT_CONNS, 5);
    m.u32(IPVS_DEST_ATTR_PERSIST_CONNS, 6);
    if (o.withFamily) {
        m.u16(IPVS_DEST_ATTR_ADDR_FAMILY, o.af);
    }
    putStats(m, IPVS_DEST_ATTR_STATS, 10, false);
    if (o.stats64) {
        putStats(m, IPVS_DEST_ATTR_STATS64, 1000, true);
    }
    if (o.unknownAttrs) {
        m.u32(60, 1);
    }
    m.end();
    return m.bytes();
}

// ---- An independent reader of requests -----------------------------------------------------

struct Raw {
    std::uint8_t cmd = 0;
    nlmsghdr hdr{};
    std::map<int, std::vector<std::uint8_t>> top;
    std::map<int, std::vector<std::uint8_t>> svc;
    std::map<int, std::vector<std::uint8_t>> dest;
};

std::map<int, std::vector<std::uint8_t>> attrsOf(const std::uint8_t* p, std::size_t n) {
    std::map<int, std::vector<std::uint8_t>> out;
    std::size_t off = 0;
    while (off + 4 <= n) {
        nlattr a{};
        std::memcpy(&a, p + off, 4);
        REQUIRE(a.nla_len >= 4);
        REQUIRE(off + a.nla_len <= n);
        out[a.nla_type & NLA_TYPE_MASK] =
            std::vector<std::uint8_t>(p + off + 4, p + off + a.nla_len);
        off += (a.nla_len + 3U) & ~3U;
    }
    REQUIRE(off == n);
    return out;
}

Raw readRequest(const std::vector<std::uint8_t>& b) {
    Raw r;
    REQUIRE(b.size() >= 20);
    std::memcpy(&r.hdr, b.data(), 16);
    REQUIRE(r.hdr.nlmsg_len == b.size());
    r.cmd = b[16];
    CHECK(b[17] == IPVS_GENL_VERSION);
    r.top = attrsOf(b.data() + 20, b.size() - 20);
    if (r.top.count(IPVS_CMD_ATTR_SERVICE) != 0) {
        const auto& s = r.top[IPVS_CMD_ATTR_SERVICE];
        r.svc = attrsOf(s.data(), s.size());
    }
    if (r.top.count(IPVS_CMD_ATTR_DEST) != 0) {
        const auto& d = r.top[IPVS_CMD_ATTR_DEST];
        r.dest = attrsOf(d.data(), d.size());
    }
    return r;
}

std::uint32_t u32Of(const std::vector<std::uint8_t>& v) {
    REQUIRE(v.size() == 4);
    std::uint32_t x = 0;
    std::memcpy(&x, v.data(), 4);
    return x;
}

std::uint16_t u16Of(const std::vector<std::uint8_t>& v) {
    REQUIRE(v.size() == 2);
    std::uint16_t x = 0;
    std::memcpy(&x, v.data(), 2);
    return x;
}

// A request re-labelled as the kernel's reply command, so the reply decoders can read it.
std::vector<std::uint8_t> asReply(std::vector<std::uint8_t> b, std::uint8_t cmd) {
    b[16] = cmd;
    return b;
}

int codeOf(const Error& e) {
    return e.code.value();
}

VirtualServer vsOf(const char* addr, std::uint16_t port, Protocol p, const char* sched) {
    VirtualServer vs;
    vs.key.address = ip(addr);
    vs.key.port = port;
    vs.key.protocol = p;
    vs.scheduler = *ShortName::make(sched);
    vs.netmask = vs.key.address.isV4() ? 0xffffffff : 128;
    return vs;
}

RealServer rsOf(const char* addr, std::uint16_t port, Forwarding f, int weight) {
    RealServer rs;
    rs.key.address = ip(addr);
    rs.key.port = port;
    rs.forwarding = f;
    rs.weight = weight;
    return rs;
}

}  // namespace

// ---- Requests ------------------------------------------------------------------------------

TEST_CASE("service requests decode back to the same virtual server", "[codec]") {
    std::vector<VirtualServer> cases;
    cases.push_back(vsOf("10.96.0.10", 53, Protocol::UDP, "rr"));
    auto persistent = vsOf("10.96.0.11", 443, Protocol::TCP, "wrr");
    persistent.flags = kSvcFlagPersistent;
    persistent.timeout = 10800;
    persistent.netmask = 0xffffff00;  // a /24 persistence granularity
    cases.push_back(persistent);
    auto mh = vsOf("fd00::a", 80, Protocol::TCP, "mh");
    mh.flags = kSvcFlagSched1 | kSvcFlagSched2;
    cases.push_back(mh);
    cases.push_back(vsOf("192.168.1.1", 3868, Protocol::SCTP, "lc"));
    auto v6persist = vsOf("fd00::1:2", 8443, Protocol::SCTP, "sh");
    v6persist.flags = kSvcFlagPersistent | kSvcFlagSched2;
    v6persist.timeout = 60;
    v6persist.netmask = 64;
    v6persist.persistenceEngine = *ShortName::make("sip");
    cases.push_back(v6persist);
    VirtualServer fwm;
    fwm.key.address = IpAddress::any(Family::V6);
    fwm.key.fwmark = 7;
    fwm.scheduler = *ShortName::make("rr");
    fwm.netmask = 128;
    cases.push_back(fwm);

    for (OpKind kind : {OpKind::AddService, OpKind::UpdateService}) {
        for (const auto& vs : cases) {
            INFO(opKindName(kind) << " " << vs.toString());
            codec::Bytes buf;
            codec::appendOp(buf, {kFamily, 1234, NLM_F_ACK}, kind, vs, {});
            const Raw raw = readRequest(buf);
            CHECK(raw.hdr.nlmsg_type == kFamily);
            CHECK(raw.hdr.nlmsg_seq == 1234);
            CHECK(raw.hdr.nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK));
            CHECK(raw.cmd ==
                  (kind == OpKind::AddService ? IPVS_CMD_NEW_SERVICE : IPVS_CMD_SET_SERVICE));
            CHECK(raw.svc.count(IPVS_SVC_ATTR_ADDR) == (vs.key.fwmark == 0 ? 1U : 0U));
            CHECK(raw.svc.count(IPVS_SVC_ATTR_FWMARK) == (vs.key.fwmark != 0 ? 1U : 0U));
            // The flags mask covers every bit so that an update clears flags too.
            ip_vs_flags f{};
            REQUIRE(raw.svc.at(IPVS_SVC_ATTR_FLAGS).size() == sizeof f);
            std::memcpy(&f, raw.svc.at(IPVS_SVC_ATTR_FLAGS).data(), sizeof f);
            CHECK(f.mask == 0xffffffffU);
            CHECK(f.flags == vs.flags);

            auto back = codec::decodeService(asReply(buf, IPVS_CMD_NEW_SERVICE));
            REQUIRE(back.has_value());
            CHECK(back->service == vs);
            CHECK(back->stats == Stats{});
        }
    }
}

TEST_CASE("an IPv4 persistence netmask is sent in network order", "[codec]") {
    auto vs = vsOf("10.0.0.1", 80, Protocol::TCP, "rr");
    vs.netmask = 0xffffff00;
    codec::Bytes buf;
    codec::appendOp(buf, {kFamily, 1, 0}, OpKind::AddService, vs, {});
    const Raw raw = readRequest(buf);
    CHECK(raw.svc.at(IPVS_SVC_ATTR_NETMASK) == std::vector<std::uint8_t>{0xff, 0xff, 0xff, 0x00});
    auto v6 = vsOf("fd00::1", 80, Protocol::TCP, "rr");
    v6.netmask = 96;
    buf.clear();
    codec::appendOp(buf, {kFamily, 1, 0}, OpKind::AddService, v6, {});
    CHECK(u32Of(readRequest(buf).svc.at(IPVS_SVC_ATTR_NETMASK)) == 96);
}

TEST_CASE("HASHED is never sent", "[codec]") {
    auto vs = vsOf("10.0.0.1", 80, Protocol::TCP, "rr");
    vs.flags = kSvcFlagHashed | kSvcFlagPersistent;
    codec::Bytes buf;
    codec::appendOp(buf, {kFamily, 1, 0}, OpKind::UpdateService, vs, {});
    ip_vs_flags f{};
    std::memcpy(&f, readRequest(buf).svc.at(IPVS_SVC_ATTR_FLAGS).data(), sizeof f);
    CHECK(f.flags == kSvcFlagPersistent);
}

TEST_CASE("a service delete carries only the key", "[codec]") {
    for (const char* addr : {"10.0.0.1", "fd00::1"}) {
        auto vs = vsOf(addr, 80, Protocol::UDP, "rr");
        codec::Bytes buf;
        codec::appendOp(buf, {kFamily, 5, NLM_F_ACK}, Op::deleteService(vs.key));
        const Raw raw = readRequest(buf);
        CHECK(raw.cmd == IPVS_CMD_DEL_SERVICE);
        CHECK(raw.svc.size() == 4);  // af, protocol, addr, port
        CHECK(u16Of(raw.svc.at(IPVS_SVC_ATTR_AF)) == (vs.key.address.isV4() ? AF_INET : AF_INET6));
        CHECK(raw.svc.at(IPVS_SVC_ATTR_ADDR).size() == 16);
        CHECK(raw.svc.at(IPVS_SVC_ATTR_PORT) == std::vector<std::uint8_t>{0, 80});
        CHECK(raw.dest.empty());
        // A key-only service is not a full reply: the decoder says what is missing.
        auto back = codec::decodeService(asReply(buf, IPVS_CMD_NEW_SERVICE));
        REQUIRE_FALSE(back.has_value());
        CHECK(codeOf(back.error()) == EPROTO);
        CHECK(back.error().message ==
              "malformed IPVS reply: service without its sched-name attribute");
    }
}

TEST_CASE("dest requests decode back to the same real server", "[codec]") {
    struct Case {
        VirtualServer vs;
        RealServer rs;
    };
    std::vector<Case> cases;
    cases.push_back(
        {vsOf("10.96.0.10", 53, Protocol::UDP, "rr"), rsOf("10.244.1.7", 53, Forwarding::Masq, 1)});
    auto thresholds = rsOf("10.244.1.8", 8080, Forwarding::Route, 100);
    thresholds.upperThreshold = 1000;
    thresholds.lowerThreshold = 10;
    cases.push_back({vsOf("10.96.0.11", 80, Protocol::TCP, "wrr"), thresholds});
    cases.push_back({vsOf("fd00::a", 443, Protocol::SCTP, "mh"),
                     rsOf("fd00:244::7", 8443, Forwarding::Tunnel, 0)});
    // A tunnel dest may be of the other family.
    cases.push_back({vsOf("10.96.0.12", 80, Protocol::TCP, "rr"),
                     rsOf("fd00:244::8", 80, Forwarding::Tunnel, 2)});

    for (OpKind kind : {OpKind::AddDest, OpKind::UpdateDest}) {
        for (const auto& c : cases) {
            INFO(opKindName(kind) << " " << describe(c.vs.key, c.rs.key));
            codec::Bytes buf;
            codec::appendOp(buf, {kFamily, 77, NLM_F_ACK}, kind, c.vs, c.rs);
            const Raw raw = readRequest(buf);
            CHECK(raw.cmd == (kind == OpKind::AddDest ? IPVS_CMD_NEW_DEST : IPVS_CMD_SET_DEST));
            // The service part is the key only.
            CHECK(raw.svc.count(IPVS_SVC_ATTR_SCHED_NAME) == 0);
            CHECK(raw.svc.at(IPVS_SVC_ATTR_PORT).size() == 2);
            auto back = codec::decodeDest(asReply(buf, IPVS_CMD_NEW_DEST), c.vs.key.family());
            REQUIRE(back.has_value());
            CHECK(back->dest == c.rs);
            CHECK(back->activeConns == 0);
        }
    }
}

TEST_CASE("a dest delete carries the service key and the dest address only", "[codec]") {
    const auto vs = vsOf("10.96.0.10", 53, Protocol::UDP, "rr");
    codec::Bytes buf;
    codec::appendOp(buf, {kFamily, 8, NLM_F_ACK}, Op::deleteDest(vs.key, {ip("10.244.1.7"), 53}));
    const Raw raw = readRequest(buf);
    CHECK(raw.cmd == IPVS_CMD_DEL_DEST);
    CHECK(raw.dest.count(IPVS_DEST_ATTR_ADDR) == 1);
    CHECK(raw.dest.count(IPVS_DEST_ATTR_PORT) == 1);
    CHECK(raw.dest.count(IPVS_DEST_ATTR_WEIGHT) == 0);
    CHECK(raw.dest.count(IPVS_DEST_ATTR_FWD_METHOD) == 0);
    // Without the mandatory fields the dest decoder refuses it, naming the first missing one.
    auto back = codec::decodeDest(asReply(buf, IPVS_CMD_NEW_DEST), Family::V4);
    REQUIRE_FALSE(back.has_value());
    CHECK(back.error().message == "malformed IPVS reply: dest without its fwd-method attribute");
}

TEST_CASE("many requests pack into one buffer and split back by sequence", "[codec]") {
    const auto vs = vsOf("10.96.0.10", 80, Protocol::TCP, "rr");
    codec::Bytes buf;
    std::uint32_t seq = 100;
    codec::appendOp(buf, {kFamily, seq++, NLM_F_ACK}, Op::addService(vs));
    for (int i = 0; i < 10; ++i) {
        codec::appendOp(buf, {kFamily, seq++, NLM_F_ACK},
                        Op::addDest(vs.key, rsOf("10.244.0.1", 80, Forwarding::Masq, i)));
    }
    codec::appendOp(buf, {kFamily, seq++, NLM_F_ACK}, Op::deleteService(vs.key));
    std::vector<std::uint32_t> seqs;
    std::vector<std::uint8_t> cmds;
    auto r = codec::forEachMessage(buf, [&](const codec::Message& m) {
        seqs.push_back(m.seq);
        cmds.push_back(m.bytes[16]);
        CHECK(m.type == kFamily);
        return true;
    });
    REQUIRE(r.has_value());
    REQUIRE(seqs.size() == 12);
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        CHECK(seqs[i] == 100 + i);
    }
    CHECK(cmds.front() == IPVS_CMD_NEW_SERVICE);
    CHECK(cmds[5] == IPVS_CMD_NEW_DEST);
    CHECK(cmds.back() == IPVS_CMD_DEL_SERVICE);
}

TEST_CASE("read and config requests", "[codec]") {
    codec::Bytes buf;
    codec::appendGetServices(buf, {kFamily, 1, 0});
    Raw raw = readRequest(buf);
    CHECK(raw.cmd == IPVS_CMD_GET_SERVICE);
    CHECK(raw.hdr.nlmsg_flags == (NLM_F_REQUEST | NLM_F_DUMP));
    CHECK(raw.top.empty());

    buf.clear();
    const auto vs = vsOf("fd00::a", 53, Protocol::UDP, "rr");
    codec::appendGetDests(buf, {kFamily, 2, 0}, vs.key);
    raw = readRequest(buf);
    CHECK(raw.cmd == IPVS_CMD_GET_DEST);
    CHECK(raw.hdr.nlmsg_flags == (NLM_F_REQUEST | NLM_F_DUMP));
    CHECK(raw.svc.size() == 4);

    buf.clear();
    codec::appendGetService(buf, {kFamily, 3, NLM_F_ACK}, vs.key);
    raw = readRequest(buf);
    CHECK(raw.cmd == IPVS_CMD_GET_SERVICE);
    CHECK(raw.hdr.nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK));
    CHECK(raw.svc.size() == 4);

    buf.clear();
    codec::appendGetInfo(buf, {kFamily, 4, NLM_F_ACK});
    CHECK(readRequest(buf).cmd == IPVS_CMD_GET_INFO);
    buf.clear();
    codec::appendGetConfig(buf, {kFamily, 5, NLM_F_ACK});
    CHECK(readRequest(buf).cmd == IPVS_CMD_GET_CONFIG);
    buf.clear();
    codec::appendFlush(buf, {kFamily, 6, NLM_F_ACK});
    CHECK(readRequest(buf).cmd == IPVS_CMD_FLUSH);

    // Zero means "keep the kernel's value": those attributes are left out.
    buf.clear();
    codec::appendSetConfig(buf, {kFamily, 7, NLM_F_ACK}, Timeouts{900, 0, 300});
    raw = readRequest(buf);
    CHECK(raw.cmd == IPVS_CMD_SET_CONFIG);
    CHECK(raw.top.size() == 2);
    CHECK(u32Of(raw.top.at(IPVS_CMD_ATTR_TIMEOUT_TCP)) == 900);
    CHECK(raw.top.count(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN) == 0);
    CHECK(u32Of(raw.top.at(IPVS_CMD_ATTR_TIMEOUT_UDP)) == 300);
    // The same message read as the kernel's GET_CONFIG reply.
    auto t = codec::decodeConfig(asReply(buf, IPVS_CMD_SET_CONFIG));
    REQUIRE(t.has_value());
    CHECK(*t == Timeouts{900, 0, 300});
}

// ---- Service replies -----------------------------------------------------------------------

TEST_CASE("a kernel service reply decodes, HASHED stripped, STATS64 preferred", "[codec]") {
    auto e = codec::decodeService(serviceReply({}));
    REQUIRE(e.has_value());
    CHECK(e->service.key.address == ip("10.96.0.10"));
    CHECK(e->service.key.port == 53);
    CHECK(e->service.key.protocol == Protocol::TCP);
    CHECK(e->service.key.fwmark == 0);
    CHECK(e->service.scheduler.view() == "rr");
    CHECK(e->service.flags == 0);
    CHECK(e->service.timeout == 180);
    CHECK(e->service.netmask == 0xffffff00);
    CHECK(e->stats.conns == 5000000000ULL + IPVS_STATS_ATTR_CONNS);
    CHECK(e->stats.outBps == 5000000000ULL + IPVS_STATS_ATTR_OUTBPS);
}

TEST_CASE("an old kernel's service reply without STATS64 uses STATS", "[codec]") {
    SvcReply o;
    o.stats64 = false;
    auto e = codec::decodeService(serviceReply(o));
    REQUIRE(e.has_value());
    CHECK(e->stats.conns == 100 + IPVS_STATS_ATTR_CONNS);
    CHECK(e->stats.inPackets == 100 + IPVS_STATS_ATTR_INPKTS);
    CHECK(e->stats.inBytes == 100 + IPVS_STATS_ATTR_INBYTES);
    CHECK(e->stats.outBps == 100 + IPVS_STATS_ATTR_OUTBPS);
    o.stats32 = false;
    e = codec::decodeService(serviceReply(o));
    REQUIRE(e.has_value());
    CHECK(e->stats == Stats{});
}

TEST_CASE("IPv6, SCTP, fwmark and scheduler flags in service replies", "[codec]") {
    SvcReply o;
    o.v6 = true;
    o.protocol = IPPROTO_SCTP;
    o.flags = IP_VS_SVC_F_HASHED | IP_VS_SVC_F_SCHED1 | IP_VS_SVC_F_SCHED2;
    o.sched = "mh";
    auto e = codec::decodeService(serviceReply(o));
    REQUIRE(e.has_value());
    CHECK(e->service.key.address == ip("fd00::a"));
    CHECK(e->service.key.protocol == Protocol::SCTP);
    CHECK(e->service.flags == (kSvcFlagSched1 | kSvcFlagSched2));
    CHECK(e->service.netmask == 128);
    CHECK(e->service.key.toString() == "[fd00::a]:53/SCTP");

    SvcReply f;
    f.fwmark = true;
    e = codec::decodeService(serviceReply(f));
    REQUIRE(e.has_value());
    CHECK(e->service.key.fwmark == 42);
    CHECK(e->service.key.address == IpAddress::any(Family::V4));
    CHECK(e->service.key.port == 0);
    CHECK(e->service.key.toString() == "FWM:42/IPv4");
}

TEST_CASE("unknown attributes at every level are ignored", "[codec]") {
    SvcReply o;
    o.unknownAttrs = true;
    auto e = codec::decodeService(serviceReply(o));
    REQUIRE(e.has_value());
    CHECK(e->service.key.port == 53);
    DestReply d;
    d.unknownAttrs = true;
    auto de = codec::decodeDest(destReply(d), Family::V4);
    REQUIRE(de.has_value());
    CHECK(de->dest.key.port == 8053);
    // A stats attribute from the future inside STATS64.
    Msg m(kFamily, IPVS_CMD_NEW_DEST);
    m.begin(IPVS_CMD_ATTR_DEST)
        .addr16(IPVS_DEST_ATTR_ADDR, ip("10.0.0.1"))
        .be16(IPVS_DEST_ATTR_PORT, 1)
        .u32(IPVS_DEST_ATTR_FWD_METHOD, 0)
        .u32(IPVS_DEST_ATTR_WEIGHT, 1)
        .begin(IPVS_DEST_ATTR_STATS64)
        .u64(IPVS_STATS_ATTR_CONNS, 3)
        .u64(IPVS_STATS_ATTR_PAD, 0)
        .u64(40, 9)
        .end()
        .end();
    de = codec::decodeDest(m.bytes(), Family::V4);
    REQUIRE(de.has_value());
    CHECK(de->stats.conns == 3);
    CHECK(de->dest.upperThreshold == 0);  // optional and absent: default
}

TEST_CASE("service replies of the wrong shape are errors", "[codec]") {
    auto expectProto = [](const std::vector<std::uint8_t>& b, const std::string& msg) {
        auto e = codec::decodeService(b);
        REQUIRE_FALSE(e.has_value());
        CHECK(codeOf(e.error()) == EPROTO);
        CHECK(e.error().message == "malformed IPVS reply: " + msg);
    };
    SvcReply o;
    o.addrLen = 5;
    expectProto(serviceReply(o), "service address of 5 bytes for IPv4");
    o = {};
    o.addrLen = 17;
    expectProto(serviceReply(o), "service attribute addr has 17 bytes");
    o = {};
    o.v6 = true;
    o.addrLen = 4;
    expectProto(serviceReply(o), "service address of 4 bytes for IPv6");
    o = {};
    o.addrLen = 4;  // an IPv4 address of 4 bytes is fine
    REQUIRE(codec::decodeService(serviceReply(o)).has_value());
    o = {};
    o.withAf = false;
    expectProto(serviceReply(o), "service without its af attribute");
    o = {};
    o.withSched = false;
    expectProto(serviceReply(o), "service without its sched-name attribute");
    o = {};
    o.withNetmask = false;
    expectProto(serviceReply(o), "service without its netmask attribute");
    o = {};
    o.sched = "0123456789abcdef";  // 16 characters and a NUL: over the kernel's 16 bytes
    expectProto(serviceReply(o), "service attribute sched-name has 17 bytes");

    // The nest itself missing.
    expectProto(Msg(kFamily, IPVS_CMD_NEW_SERVICE).u32(99, 1).bytes(),
                "service reply without a service attribute");
    // A dest reply handed to the service decoder.
    expectProto(destReply({}), "service: command 5, expected 1");
}

TEST_CASE("services this library cannot represent are told apart from garbage", "[codec]") {
    SvcReply o;
    o.protocol = 50;  // ESP
    auto e = codec::decodeService(serviceReply(o));
    REQUIRE_FALSE(e.has_value());
    CHECK(codeOf(e.error()) == EPROTONOSUPPORT);
    o = {};
    o.af = 7;
    e = codec::decodeService(serviceReply(o));
    REQUIRE_FALSE(e.has_value());
    CHECK(codeOf(e.error()) == EAFNOSUPPORT);
}

TEST_CASE("every truncation of a reply is an error", "[codec]") {
    const auto full = serviceReply({});
    for (std::size_t n = 0; n < full.size(); ++n) {
        INFO("first " << n << " bytes");
        std::vector<std::uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
        auto e = codec::decodeService(cut);
        REQUIRE_FALSE(e.has_value());
        CHECK(codeOf(e.error()) == EPROTO);
        // The same bytes with a header that claims exactly this length: the nest or an
        // attribute now runs past the end, or mandatory attributes are gone.
        if (n >= 20) {
            const auto len = static_cast<std::uint32_t>(n);
            std::memcpy(cut.data(), &len, 4);
            auto e2 = codec::decodeService(cut);
            REQUIRE_FALSE(e2.has_value());
            CHECK(codeOf(e2.error()) == EPROTO);
        }
    }
    const auto dest = destReply({});
    for (std::size_t n = 0; n < dest.size(); ++n) {
        std::vector<std::uint8_t> cut(dest.begin(), dest.begin() + static_cast<long>(n));
        auto e = codec::decodeDest(cut, Family::V4);
        REQUIRE_FALSE(e.has_value());
        CHECK(codeOf(e.error()) == EPROTO);
    }
}

TEST_CASE("garbage bytes are errors", "[codec]") {
    const std::vector<std::uint8_t> ones(64, 0xff);
    auto e = codec::decodeService(ones);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: service: nlmsg_len 4294967295 with 64 bytes");

    // A good header followed by an attribute whose length is below its own header.
    Msg m(kFamily, IPVS_CMD_NEW_SERVICE);
    const std::uint8_t bad[] = {2, 0, 1, 0};
    m.raw(bad, sizeof bad);
    e = codec::decodeService(m.bytes());
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message ==
          "malformed IPVS reply: command attribute of type 1 has length 2 with 4 bytes left");

    // Stray bytes after the last attribute.
    Msg s(kFamily, IPVS_CMD_NEW_SERVICE);
    s.u32(99, 1);
    const std::uint8_t stray[] = {1, 2};
    s.raw(stray, sizeof stray);
    e = codec::decodeService(s.bytes());
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: command attributes end with 2 stray bytes");

    // A deterministic pseudo-random stream: every outcome is an error, none a crash.
    std::uint32_t x = 12345;
    for (int round = 0; round < 2000; ++round) {
        std::vector<std::uint8_t> junk(static_cast<std::size_t>(round % 200));
        for (auto& b : junk) {
            x = x * 1103515245U + 12345U;
            b = static_cast<std::uint8_t>(x >> 16);
        }
        CHECK_FALSE(codec::decodeService(junk).has_value());
        CHECK_FALSE(codec::decodeDest(junk, Family::V6).has_value());
        CHECK_FALSE(codec::decodeInfo(junk).has_value());
    }
}

TEST_CASE("a stats counter of the wrong size is an error", "[codec]") {
    Msg m(kFamily, IPVS_CMD_NEW_DEST);
    const std::uint8_t three[3] = {1, 2, 3};
    m.begin(IPVS_CMD_ATTR_DEST)
        .addr16(IPVS_DEST_ATTR_ADDR, ip("10.0.0.1"))
        .be16(IPVS_DEST_ATTR_PORT, 1)
        .u32(IPVS_DEST_ATTR_FWD_METHOD, 0)
        .u32(IPVS_DEST_ATTR_WEIGHT, 1)
        .begin(IPVS_DEST_ATTR_STATS)
        .attr(IPVS_STATS_ATTR_INPKTS, three, 3)
        .end()
        .end();
    auto e = codec::decodeDest(m.bytes(), Family::V4);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: stats attribute counter has 3 bytes");
}

// ---- Dest replies --------------------------------------------------------------------------

TEST_CASE("a kernel dest reply decodes with all its counters", "[codec]") {
    auto e = codec::decodeDest(destReply({}), Family::V4);
    REQUIRE(e.has_value());
    CHECK(e->dest.key.address == ip("10.244.1.7"));
    CHECK(e->dest.key.port == 8053);
    CHECK(e->dest.forwarding == Forwarding::Masq);
    CHECK(e->dest.weight == 3);
    CHECK(e->dest.upperThreshold == 100);
    CHECK(e->dest.lowerThreshold == 10);
    CHECK(e->activeConns == 4);
    CHECK(e->inactiveConns == 5);
    CHECK(e->persistentConns == 6);
    CHECK(e->stats.conns == 1000 + IPVS_STATS_ATTR_CONNS);
    DestReply old;
    old.stats64 = false;
    e = codec::decodeDest(destReply(old), Family::V4);
    REQUIRE(e.has_value());
    CHECK(e->stats.conns == 10 + IPVS_STATS_ATTR_CONNS);
    CHECK(e->stats.outBytes == 10 + IPVS_STATS_ATTR_OUTBYTES);
}

TEST_CASE("a dest reply without ADDR_FAMILY takes the service's family", "[codec]") {
    DestReply o;
    o.withFamily = false;
    o.addr = ip("fd00:244::7");
    auto e = codec::decodeDest(destReply(o), Family::V6);
    REQUIRE(e.has_value());
    CHECK(e->dest.key.address == ip("fd00:244::7"));
    // The same bytes under an IPv4 service read as the first four bytes: what an old kernel
    // means by them.
    o.addr = ip("10.1.2.3");
    e = codec::decodeDest(destReply(o), Family::V4);
    REQUIRE(e.has_value());
    CHECK(e->dest.key.address == ip("10.1.2.3"));
    // With ADDR_FAMILY the dest's own family wins (an IPv6 tunnel dest of an IPv4 service).
    DestReply mixed;
    mixed.af = AF_INET6;
    mixed.addr = ip("fd00:244::8");
    e = codec::decodeDest(destReply(mixed), Family::V4);
    REQUIRE(e.has_value());
    CHECK(e->dest.key.address == ip("fd00:244::8"));
}

TEST_CASE("dest replies of the wrong shape are errors", "[codec]") {
    DestReply o;
    o.addrLen = 8;
    auto e = codec::decodeDest(destReply(o), Family::V4);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: dest address of 8 bytes for IPv4");
    o = {};
    o.withPort = false;
    e = codec::decodeDest(destReply(o), Family::V4);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: dest without its port attribute");
    o = {};
    o.fwd = IP_VS_CONN_F_BYPASS;
    e = codec::decodeDest(destReply(o), Family::V4);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: dest forwarding method 4");
    o = {};
    o.af = 99;
    e = codec::decodeDest(destReply(o), Family::V4);
    REQUIRE_FALSE(e.has_value());
    CHECK(codeOf(e.error()) == EAFNOSUPPORT);
    e = codec::decodeDest(Msg(kFamily, IPVS_CMD_NEW_DEST).bytes(), Family::V4);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message == "malformed IPVS reply: dest reply without a dest attribute");
}

// ---- Info, config, acks --------------------------------------------------------------------

TEST_CASE("info and config replies", "[codec]") {
    auto info = codec::decodeInfo(Msg(kFamily, IPVS_CMD_SET_INFO)
                                      .u32(IPVS_INFO_ATTR_VERSION, 0x010201)
                                      .u32(IPVS_INFO_ATTR_CONN_TAB_SIZE, 4096)
                                      .u32(17, 0)
                                      .bytes());
    REQUIRE(info.has_value());
    CHECK(info->version == 0x010201);
    CHECK(info->versionString() == "1.2.1");
    CHECK(info->connTableSize == 4096);
    auto bad = codec::decodeInfo(
        Msg(kFamily, IPVS_CMD_SET_INFO).u32(IPVS_INFO_ATTR_VERSION, 0x010201).bytes());
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().message == "malformed IPVS reply: info without its conn-tab-size attribute");
    auto shortVersion =
        codec::decodeInfo(Msg(kFamily, IPVS_CMD_SET_INFO).u16(IPVS_INFO_ATTR_VERSION, 1).bytes());
    REQUIRE_FALSE(shortVersion.has_value());
    CHECK(shortVersion.error().message ==
          "malformed IPVS reply: info attribute version has 2 bytes");

    auto cfg = codec::decodeConfig(Msg(kFamily, IPVS_CMD_SET_CONFIG)
                                       .u32(IPVS_CMD_ATTR_TIMEOUT_TCP, 900)
                                       .u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, 120)
                                       .u32(IPVS_CMD_ATTR_TIMEOUT_UDP, 300)
                                       .bytes());
    REQUIRE(cfg.has_value());
    CHECK(*cfg == Timeouts{900, 120, 300});
    // A kernel built without UDP support sends no UDP timeout.
    cfg = codec::decodeConfig(Msg(kFamily, IPVS_CMD_SET_CONFIG)
                                  .u32(IPVS_CMD_ATTR_TIMEOUT_TCP, 900)
                                  .u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, 120)
                                  .bytes());
    REQUIRE(cfg.has_value());
    CHECK(*cfg == Timeouts{900, 120, 0});
}

namespace {

std::vector<std::uint8_t> ackMessage(std::uint32_t seq, int error, std::uint16_t flags,
                                     bool echoRequest, const char* extack) {
    // The request being acked: a small add-service.
    codec::Bytes req;
    codec::appendOp(req, {kFamily, seq, NLM_F_ACK}, OpKind::AddService,
                    vsOf("10.0.0.1", 80, Protocol::TCP, "rr"), {});
    std::vector<std::uint8_t> b(16);
    nlmsghdr nh{};
    nh.nlmsg_type = NLMSG_ERROR;
    nh.nlmsg_flags = flags;
    nh.nlmsg_seq = seq;
    const int e = -error;
    b.insert(b.end(), reinterpret_cast<const std::uint8_t*>(&e),
             reinterpret_cast<const std::uint8_t*>(&e) + 4);
    b.insert(b.end(), req.begin(),
             req.begin() + (echoRequest ? static_cast<long>(req.size()) : 16));
    if (extack != nullptr) {
        nlattr a{};
        a.nla_len = static_cast<std::uint16_t>(4 + std::strlen(extack) + 1);
        a.nla_type = NLMSGERR_ATTR_MSG;
        b.insert(b.end(), reinterpret_cast<const std::uint8_t*>(&a),
                 reinterpret_cast<const std::uint8_t*>(&a) + 4);
        b.insert(b.end(), extack, extack + std::strlen(extack) + 1);
        b.resize((b.size() + 3) & ~std::size_t{3}, 0);
    }
    nh.nlmsg_len = static_cast<std::uint32_t>(b.size());
    std::memcpy(b.data(), &nh, sizeof nh);
    return b;
}

}  // namespace

TEST_CASE("acks with and without echo, with and without extended ack", "[codec]") {
    auto a = codec::decodeAck(ackMessage(41, 0, NLM_F_CAPPED, false, nullptr));
    REQUIRE(a.has_value());
    CHECK(a->seq == 41);
    CHECK(a->error == 0);
    CHECK(a->extack.empty());

    a = codec::decodeAck(ackMessage(42, ESRCH, 0, true, nullptr));
    REQUIRE(a.has_value());
    CHECK(a->seq == 42);
    CHECK(a->error == ESRCH);

    a = codec::decodeAck(
        ackMessage(43, EINVAL, NLM_F_CAPPED | NLM_F_ACK_TLVS, false, "bad scheduler"));
    REQUIRE(a.has_value());
    CHECK(a->error == EINVAL);
    CHECK(a->extack == "bad scheduler");

    a = codec::decodeAck(ackMessage(44, EEXIST, NLM_F_ACK_TLVS, true, "already there"));
    REQUIRE(a.has_value());
    CHECK(a->error == EEXIST);
    CHECK(a->extack == "already there");

    // Cut short by a small receive slot: sequence and error survive.
    auto full = ackMessage(45, ENOENT, 0, true, nullptr);
    full.resize(24);
    a = codec::decodeAck(full);
    REQUIRE(a.has_value());
    CHECK(a->seq == 45);
    CHECK(a->error == ENOENT);

    full.resize(18);
    auto tooShort = codec::decodeAck(full);
    REQUIRE_FALSE(tooShort.has_value());
    CHECK(codeOf(tooShort.error()) == EPROTO);
    // Not an error message at all.
    auto notAck = codec::decodeAck(serviceReply({}));
    REQUIRE_FALSE(notAck.has_value());
}

TEST_CASE("datagrams split into messages with bounds checks", "[codec]") {
    auto a = ackMessage(1, 0, NLM_F_CAPPED, false, nullptr);
    auto b = serviceReply({});
    std::vector<std::uint8_t> dgram = a;
    dgram.insert(dgram.end(), b.begin(), b.end());
    std::vector<std::uint16_t> types;
    REQUIRE(codec::forEachMessage(dgram, [&](const codec::Message& m) {
                types.push_back(m.type);
                return true;
            }).has_value());
    CHECK(types == std::vector<std::uint16_t>{NLMSG_ERROR, kFamily});

    // The second message's length runs past the datagram.
    dgram.resize(dgram.size() - 3);
    types.clear();
    auto r = codec::forEachMessage(dgram, [&](const codec::Message& m) {
        types.push_back(m.type);
        return true;
    });
    REQUIRE_FALSE(r.has_value());
    CHECK(types == std::vector<std::uint16_t>{NLMSG_ERROR});
    // A header shorter than 16 bytes.
    std::vector<std::uint8_t> tiny(10, 0);
    CHECK_FALSE(
        codec::forEachMessage(tiny, [](const codec::Message&) { return true; }).has_value());
    // nlmsg_len below the header size would loop forever if accepted.
    std::vector<std::uint8_t> zero(16, 0);
    CHECK_FALSE(
        codec::forEachMessage(zero, [](const codec::Message&) { return true; }).has_value());

    // NLMSG_DONE with and without an error code.
    std::vector<std::uint8_t> done(20, 0);
    nlmsghdr nh{};
    nh.nlmsg_len = 20;
    nh.nlmsg_type = NLMSG_DONE;
    std::memcpy(done.data(), &nh, 16);
    const int e = -EPERM;
    std::memcpy(done.data() + 16, &e, 4);
    auto d = codec::decodeDone(done);
    REQUIRE(d.has_value());
    CHECK(*d == EPERM);
}
