#include "ipvs/ipvs_codec.h"

#include <arpa/inet.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>

namespace kipvs::ipvs::codec {

namespace {

constexpr std::size_t kNlHdr = sizeof(nlmsghdr);      // 16
constexpr std::size_t kGenlHdr = sizeof(genlmsghdr);  // 4
constexpr std::size_t kAttrHdr = sizeof(nlattr);      // 4
constexpr std::size_t kInetAddrLen = 16;              // union nf_inet_addr
constexpr std::size_t align4(std::size_t n) {
    return (n + 3) & ~std::size_t{3};
}

// ---- Writing -------------------------------------------------------------------------------

// Appends one netlink message to a buffer that may already hold others; attribute offsets are
// kept as offsets because the buffer may reallocate while the message grows.
class Writer {
  public:
    Writer(Bytes& out, const RequestHeader& h, std::uint8_t cmd) : out_(out), start_(out.size()) {
        nlmsghdr nh{};
        nh.nlmsg_type = h.family;
        nh.nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | h.flags);
        nh.nlmsg_seq = h.seq;
        genlmsghdr gh{};
        gh.cmd = cmd;
        gh.version = IPVS_GENL_VERSION;
        put(&nh, sizeof nh);
        put(&gh, sizeof gh);
    }
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer() {
        const auto len = static_cast<std::uint32_t>(out_.size() - start_);
        std::memcpy(out_.data() + start_, &len, sizeof len);
    }

    void attr(std::uint16_t type, const void* data, std::size_t len) {
        nlattr a{};
        a.nla_len = static_cast<std::uint16_t>(kAttrHdr + len);
        a.nla_type = type;
        put(&a, sizeof a);
        put(data, len);
        pad();
    }
    void u16(std::uint16_t type, std::uint16_t v) { attr(type, &v, sizeof v); }
    void u32(std::uint16_t type, std::uint32_t v) { attr(type, &v, sizeof v); }
    void be16(std::uint16_t type, std::uint16_t hostOrder) { u16(type, htons(hostOrder)); }
    void str(std::uint16_t type, std::string_view s) {
        std::array<char, 32> buf{};
        const std::size_t n = std::min(s.size(), buf.size() - 1);
        std::memcpy(buf.data(), s.data(), n);
        attr(type, buf.data(), n + 1);  // with its NUL, as NLA_NUL_STRING wants
    }
    void address(std::uint16_t type, const net::IpAddress& a) {
        std::array<std::uint8_t, kInetAddrLen> buf{};
        std::memcpy(buf.data(), a.data(), a.size());
        attr(type, buf.data(), buf.size());
    }
    std::size_t beginNest(std::uint16_t type) {
        const std::size_t at = out_.size();
        nlattr a{};
        a.nla_type = static_cast<std::uint16_t>(type | NLA_F_NESTED);
        put(&a, sizeof a);
        return at;
    }
    void endNest(std::size_t at) {
        const auto len = static_cast<std::uint16_t>(out_.size() - at);
        std::memcpy(out_.data() + at, &len, sizeof len);
    }

  private:
    void put(const void* p, std::size_t n) {
        const std::size_t at = out_.size();
        out_.resize(at + n);
        if (n != 0) {
            std::memcpy(out_.data() + at, p, n);
        }
    }
    void pad() { out_.resize(align4(out_.size()), 0); }

    Bytes& out_;
    std::size_t start_;
};

void putServiceKey(Writer& w, const ServiceKey& k) {
    w.u16(IPVS_SVC_ATTR_AF, static_cast<std::uint16_t>(net::toAf(k.family())));
    if (k.fwmark != 0) {
        w.u32(IPVS_SVC_ATTR_FWMARK, k.fwmark);
    } else {
        w.u16(IPVS_SVC_ATTR_PROTOCOL, static_cast<std::uint16_t>(k.protocol));
        w.address(IPVS_SVC_ATTR_ADDR, k.address);
        w.be16(IPVS_SVC_ATTR_PORT, k.port);
    }
}

std::uint32_t netmaskToWire(net::Family f, std::uint32_t netmask) {
    return f == net::Family::V4 ? htonl(netmask) : netmask;
}

void putService(Writer& w, const VirtualServer& vs, bool full) {
    const auto nest = w.beginNest(IPVS_CMD_ATTR_SERVICE);
    putServiceKey(w, vs.key);
    if (full) {
        w.str(IPVS_SVC_ATTR_SCHED_NAME, vs.scheduler.view());
        if (!vs.persistenceEngine.empty()) {
            w.str(IPVS_SVC_ATTR_PE_NAME, vs.persistenceEngine.view());
        }
        // The mask says which flags this request sets: all of them, so an update also clears.
        const ip_vs_flags flags{vs.flags & ~kSvcFlagHashed, ~std::uint32_t{0}};
        w.attr(IPVS_SVC_ATTR_FLAGS, &flags, sizeof flags);
        w.u32(IPVS_SVC_ATTR_TIMEOUT, vs.timeout);
        w.u32(IPVS_SVC_ATTR_NETMASK, netmaskToWire(vs.key.family(), vs.netmask));
    }
    w.endNest(nest);
}

void putDest(Writer& w, const RealServer& rs, bool full) {
    const auto nest = w.beginNest(IPVS_CMD_ATTR_DEST);
    w.address(IPVS_DEST_ATTR_ADDR, rs.key.address);
    w.be16(IPVS_DEST_ATTR_PORT, rs.key.port);
    w.u16(IPVS_DEST_ATTR_ADDR_FAMILY,
          static_cast<std::uint16_t>(net::toAf(rs.key.address.family())));
    if (full) {
        w.u32(IPVS_DEST_ATTR_FWD_METHOD, static_cast<std::uint32_t>(rs.forwarding));
        w.u32(IPVS_DEST_ATTR_WEIGHT, static_cast<std::uint32_t>(rs.weight));
        w.u32(IPVS_DEST_ATTR_U_THRESH, rs.upperThreshold);
        w.u32(IPVS_DEST_ATTR_L_THRESH, rs.lowerThreshold);
    }
    w.endNest(nest);
}

// ---- Reading -------------------------------------------------------------------------------

enum class Kind : std::uint8_t {
    Ignore,   // unknown to this code, or known and unused: accepted with any length
    U16,      // exactly 2 bytes
    U32,      // exactly 4 bytes
    Counter,  // 4 or 8 bytes: STATS counters are u32 or u64 depending on kernel and field
    String,   // at most maxLen bytes, NUL optional
    Binary,   // minLen..maxLen bytes
    Nested,   // a nested attribute set, parsed with its own table
};

struct Policy {
    Kind kind = Kind::Ignore;
    std::uint16_t minLen = 0;
    std::uint16_t maxLen = 0;
    const char* name = "";
};

struct Attr {
    const std::uint8_t* data = nullptr;
    std::uint16_t len = 0;
    bool present = false;
    ByteSpan span() const { return {data, len}; }
};

template <std::size_t N>
using Attrs = std::array<Attr, N>;

Error malformed(const std::string& what) {
    return Error::protocol("malformed IPVS reply: " + what);
}

// Reads an attribute stream with `policy` (indexed by type). Types beyond the table are
// ignored, so that replies of newer kernels still decode; the last of duplicates wins.
template <std::size_t N>
Result<void> parseAttrs(ByteSpan payload, const std::array<Policy, N>& policy, Attrs<N>& out,
                        const char* set) {
    out = {};
    std::size_t off = 0;
    while (payload.size() - off >= kAttrHdr) {
        nlattr a{};
        std::memcpy(&a, payload.data() + off, sizeof a);
        if (a.nla_len < kAttrHdr || a.nla_len > payload.size() - off) {
            return malformed(std::string(set) + " attribute of type " +
                             std::to_string(a.nla_type & NLA_TYPE_MASK) + " has length " +
                             std::to_string(a.nla_len) + " with " +
                             std::to_string(payload.size() - off) + " bytes left");
        }
        const std::uint16_t type = a.nla_type & NLA_TYPE_MASK;
        const auto len = static_cast<std::uint16_t>(a.nla_len - kAttrHdr);
        const std::uint8_t* data = payload.data() + off + kAttrHdr;
        off += std::min<std::size_t>(align4(a.nla_len), payload.size() - off);
        if (type >= N) {
            continue;
        }
        const Policy& p = policy[type];
        bool good = true;
        switch (p.kind) {
            case Kind::Ignore:
                continue;
            case Kind::U16:
                good = len == 2;
                break;
            case Kind::U32:
                good = len == 4;
                break;
            case Kind::Counter:
                good = len == 4 || len == 8;
                break;
            case Kind::String:
            case Kind::Binary:
                good = len >= p.minLen && len <= p.maxLen;
                break;
            case Kind::Nested:
                break;
        }
        if (!good) {
            return malformed(std::string(set) + " attribute " + p.name + " has " +
                             std::to_string(len) + " bytes");
        }
        out[type] = Attr{data, len, true};
    }
    if (off != payload.size()) {
        return malformed(std::string(set) + " attributes end with " +
                         std::to_string(payload.size() - off) + " stray bytes");
    }
    return ok();
}

std::uint16_t getU16(const Attr& a) {
    std::uint16_t v = 0;
    std::memcpy(&v, a.data, sizeof v);
    return v;
}
std::uint32_t getU32(const Attr& a) {
    std::uint32_t v = 0;
    std::memcpy(&v, a.data, sizeof v);
    return v;
}
std::uint64_t getCounter(const Attr& a) {
    if (!a.present) {
        return 0;
    }
    if (a.len == 4) {
        return getU32(a);
    }
    std::uint64_t v = 0;
    std::memcpy(&v, a.data, sizeof v);
    return v;
}
std::string_view getString(const Attr& a) {
    const auto* p = reinterpret_cast<const char*>(a.data);
    const auto* nul = static_cast<const char*>(std::memchr(p, '\0', a.len));
    return {p, nul != nullptr ? static_cast<std::size_t>(nul - p) : a.len};
}

constexpr std::array<Policy, IPVS_CMD_ATTR_MAX + 1> kCmdPolicy = [] {
    std::array<Policy, IPVS_CMD_ATTR_MAX + 1> p{};
    p[IPVS_CMD_ATTR_SERVICE] = {Kind::Nested, 0, 0, "service"};
    p[IPVS_CMD_ATTR_DEST] = {Kind::Nested, 0, 0, "dest"};
    p[IPVS_CMD_ATTR_TIMEOUT_TCP] = {Kind::U32, 0, 0, "timeout-tcp"};
    p[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN] = {Kind::U32, 0, 0, "timeout-tcp-fin"};
    p[IPVS_CMD_ATTR_TIMEOUT_UDP] = {Kind::U32, 0, 0, "timeout-udp"};
    return p;
}();

constexpr std::array<Policy, IPVS_SVC_ATTR_MAX + 1> kServicePolicy = [] {
    std::array<Policy, IPVS_SVC_ATTR_MAX + 1> p{};
    p[IPVS_SVC_ATTR_AF] = {Kind::U16, 0, 0, "af"};
    p[IPVS_SVC_ATTR_PROTOCOL] = {Kind::U16, 0, 0, "protocol"};
    p[IPVS_SVC_ATTR_ADDR] = {Kind::Binary, 4, kInetAddrLen, "addr"};
    p[IPVS_SVC_ATTR_PORT] = {Kind::U16, 0, 0, "port"};
    p[IPVS_SVC_ATTR_FWMARK] = {Kind::U32, 0, 0, "fwmark"};
    p[IPVS_SVC_ATTR_SCHED_NAME] = {Kind::String, 0, IP_VS_SCHEDNAME_MAXLEN, "sched-name"};
    p[IPVS_SVC_ATTR_FLAGS] = {Kind::Binary, sizeof(ip_vs_flags), sizeof(ip_vs_flags), "flags"};
    p[IPVS_SVC_ATTR_TIMEOUT] = {Kind::U32, 0, 0, "timeout"};
    p[IPVS_SVC_ATTR_NETMASK] = {Kind::U32, 0, 0, "netmask"};
    p[IPVS_SVC_ATTR_STATS] = {Kind::Nested, 0, 0, "stats"};
    p[IPVS_SVC_ATTR_PE_NAME] = {Kind::String, 0, IP_VS_PENAME_MAXLEN, "pe-name"};
    p[IPVS_SVC_ATTR_STATS64] = {Kind::Nested, 0, 0, "stats64"};
    return p;
}();

constexpr std::array<Policy, IPVS_DEST_ATTR_MAX + 1> kDestPolicy = [] {
    std::array<Policy, IPVS_DEST_ATTR_MAX + 1> p{};
    p[IPVS_DEST_ATTR_ADDR] = {Kind::Binary, 4, kInetAddrLen, "addr"};
    p[IPVS_DEST_ATTR_PORT] = {Kind::U16, 0, 0, "port"};
    p[IPVS_DEST_ATTR_FWD_METHOD] = {Kind::U32, 0, 0, "fwd-method"};
    p[IPVS_DEST_ATTR_WEIGHT] = {Kind::U32, 0, 0, "weight"};
    p[IPVS_DEST_ATTR_U_THRESH] = {Kind::U32, 0, 0, "u-thresh"};
    p[IPVS_DEST_ATTR_L_THRESH] = {Kind::U32, 0, 0, "l-thresh"};
    p[IPVS_DEST_ATTR_ACTIVE_CONNS] = {Kind::U32, 0, 0, "active-conns"};
    p[IPVS_DEST_ATTR_INACT_CONNS] = {Kind::U32, 0, 0, "inact-conns"};
    p[IPVS_DEST_ATTR_PERSIST_CONNS] = {Kind::U32, 0, 0, "persist-conns"};
    p[IPVS_DEST_ATTR_STATS] = {Kind::Nested, 0, 0, "stats"};
    p[IPVS_DEST_ATTR_ADDR_FAMILY] = {Kind::U16, 0, 0, "addr-family"};
    p[IPVS_DEST_ATTR_STATS64] = {Kind::Nested, 0, 0, "stats64"};
    return p;
}();

constexpr std::array<Policy, IPVS_STATS_ATTR_MAX + 1> kStatsPolicy = [] {
    std::array<Policy, IPVS_STATS_ATTR_MAX + 1> p{};
    for (int t = IPVS_STATS_ATTR_CONNS; t <= IPVS_STATS_ATTR_OUTBPS; ++t) {
        p[t] = {Kind::Counter, 0, 0, "counter"};
    }
    return p;
}();

constexpr std::array<Policy, IPVS_INFO_ATTR_MAX + 1> kInfoPolicy = [] {
    std::array<Policy, IPVS_INFO_ATTR_MAX + 1> p{};
    p[IPVS_INFO_ATTR_VERSION] = {Kind::U32, 0, 0, "version"};
    p[IPVS_INFO_ATTR_CONN_TAB_SIZE] = {Kind::U32, 0, 0, "conn-tab-size"};
    return p;
}();

constexpr std::array<Policy, NLMSGERR_ATTR_MAX + 1> kExtAckPolicy = [] {
    std::array<Policy, NLMSGERR_ATTR_MAX + 1> p{};
    p[NLMSGERR_ATTR_MSG] = {Kind::String, 0, 0xffff, "msg"};
    return p;
}();

// The attribute payload of one generic netlink message, after checking its headers and that
// it carries the expected command.
Result<ByteSpan> genlPayload(ByteSpan msg, std::uint8_t expectCmd, const char* what) {
    if (msg.size() < kNlHdr + kGenlHdr) {
        return malformed(std::string(what) + ": " + std::to_string(msg.size()) +
                         " bytes is shorter than the netlink and genetlink headers");
    }
    nlmsghdr nh{};
    std::memcpy(&nh, msg.data(), sizeof nh);
    if (nh.nlmsg_len < kNlHdr + kGenlHdr || nh.nlmsg_len > msg.size()) {
        return malformed(std::string(what) + ": nlmsg_len " + std::to_string(nh.nlmsg_len) +
                         " with " + std::to_string(msg.size()) + " bytes");
    }
    const std::uint8_t cmd = msg[kNlHdr];
    if (cmd != expectCmd) {
        return malformed(std::string(what) + ": command " + std::to_string(cmd) + ", expected " +
                         std::to_string(expectCmd));
    }
    return msg.subspan(kNlHdr + kGenlHdr, nh.nlmsg_len - kNlHdr - kGenlHdr);
}

// The top-level (IPVS_CMD_ATTR_*) attributes of a reply.
Result<Attrs<IPVS_CMD_ATTR_MAX + 1>> parseCommand(ByteSpan msg, std::uint8_t expectCmd,
                                                  const char* what) {
    auto payload = genlPayload(msg, expectCmd, what);
    if (!payload) {
        return payload.error();
    }
    Attrs<IPVS_CMD_ATTR_MAX + 1> attrs;
    if (auto r = parseAttrs(*payload, kCmdPolicy, attrs, "command"); !r) {
        return r.error();
    }
    return attrs;
}

Result<net::Family> familyOf(std::uint16_t af) {
    auto f = net::fromAf(af);
    if (!f) {
        return Error::sys(EAFNOSUPPORT, "IPVS reply: address family " + std::to_string(af));
    }
    return *f;
}

Result<net::IpAddress> addressOf(const Attr& a, net::Family f, const char* what) {
    // The kernel sends the whole 16-byte union; a 4-byte IPv4 address is accepted too.
    const std::size_t want = f == net::Family::V4 ? 4 : 16;
    if (a.len != kInetAddrLen && a.len != want) {
        return malformed(std::string(what) + " address of " + std::to_string(a.len) +
                         " bytes for " + std::string(net::familyName(f)));
    }
    return net::IpAddress::fromBytes(f, a.data);
}

Result<Stats> parseStats(const Attr& stats64, const Attr& stats32) {
    Stats s;
    const Attr& chosen = stats64.present ? stats64 : stats32;
    if (!chosen.present) {
        return s;
    }
    Attrs<IPVS_STATS_ATTR_MAX + 1> a;
    auto r = parseAttrs(chosen.span(), kStatsPolicy, a, stats64.present ? "stats64" : "stats");
    if (!r) {
        return r.error();
    }
    s.conns = getCounter(a[IPVS_STATS_ATTR_CONNS]);
    s.inPackets = getCounter(a[IPVS_STATS_ATTR_INPKTS]);
    s.outPackets = getCounter(a[IPVS_STATS_ATTR_OUTPKTS]);
    s.inBytes = getCounter(a[IPVS_STATS_ATTR_INBYTES]);
    s.outBytes = getCounter(a[IPVS_STATS_ATTR_OUTBYTES]);
    s.cps = getCounter(a[IPVS_STATS_ATTR_CPS]);
    s.inPps = getCounter(a[IPVS_STATS_ATTR_INPPS]);
    s.outPps = getCounter(a[IPVS_STATS_ATTR_OUTPPS]);
    s.inBps = getCounter(a[IPVS_STATS_ATTR_INBPS]);
    s.outBps = getCounter(a[IPVS_STATS_ATTR_OUTBPS]);
    return s;
}

template <std::size_t N>
Result<void> require(const Attrs<N>& a, const std::array<Policy, N>& policy,
                     std::initializer_list<int> types, const char* set) {
    for (int t : types) {
        if (!a[t].present) {
            return malformed(std::string(set) + " without its " + policy[t].name + " attribute");
        }
    }
    return ok();
}

}  // namespace

// ---- Requests ------------------------------------------------------------------------------

std::uint8_t commandOf(OpKind kind) {
    switch (kind) {
        case OpKind::AddService:
            return IPVS_CMD_NEW_SERVICE;
        case OpKind::UpdateService:
            return IPVS_CMD_SET_SERVICE;
        case OpKind::DeleteService:
            return IPVS_CMD_DEL_SERVICE;
        case OpKind::AddDest:
            return IPVS_CMD_NEW_DEST;
        case OpKind::UpdateDest:
            return IPVS_CMD_SET_DEST;
        case OpKind::DeleteDest:
            return IPVS_CMD_DEL_DEST;
    }
    return IPVS_CMD_UNSPEC;
}

void appendOp(Bytes& out, const RequestHeader& h, OpKind kind, const VirtualServer& vs,
              const RealServer& rs) {
    Writer w(out, h, commandOf(kind));
    switch (kind) {
        case OpKind::AddService:
        case OpKind::UpdateService:
            putService(w, vs, true);
            break;
        case OpKind::DeleteService:
            putService(w, vs, false);
            break;
        case OpKind::AddDest:
        case OpKind::UpdateDest:
            putService(w, vs, false);
            putDest(w, rs, true);
            break;
        case OpKind::DeleteDest:
            putService(w, vs, false);
            putDest(w, rs, false);
            break;
    }
}

void appendGetService(Bytes& out, const RequestHeader& h, const ServiceKey& key) {
    Writer w(out, h, IPVS_CMD_GET_SERVICE);
    VirtualServer vs;
    vs.key = key;
    putService(w, vs, false);
}

void appendGetServices(Bytes& out, const RequestHeader& h) {
    RequestHeader d = h;
    d.flags |= NLM_F_DUMP;
    const Writer w(out, d, IPVS_CMD_GET_SERVICE);
}

void appendGetDests(Bytes& out, const RequestHeader& h, const ServiceKey& key) {
    RequestHeader d = h;
    d.flags |= NLM_F_DUMP;
    Writer w(out, d, IPVS_CMD_GET_DEST);
    VirtualServer vs;
    vs.key = key;
    putService(w, vs, false);
}

void appendGetInfo(Bytes& out, const RequestHeader& h) {
    const Writer w(out, h, IPVS_CMD_GET_INFO);
}

void appendGetConfig(Bytes& out, const RequestHeader& h) {
    const Writer w(out, h, IPVS_CMD_GET_CONFIG);
}

void appendSetConfig(Bytes& out, const RequestHeader& h, const Timeouts& t) {
    Writer w(out, h, IPVS_CMD_SET_CONFIG);
    if (t.tcp != 0) {
        w.u32(IPVS_CMD_ATTR_TIMEOUT_TCP, t.tcp);
    }
    if (t.tcpFin != 0) {
        w.u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, t.tcpFin);
    }
    if (t.udp != 0) {
        w.u32(IPVS_CMD_ATTR_TIMEOUT_UDP, t.udp);
    }
}

void appendFlush(Bytes& out, const RequestHeader& h) {
    const Writer w(out, h, IPVS_CMD_FLUSH);
}

// ---- Replies -------------------------------------------------------------------------------

Result<Message> messageAt(ByteSpan datagram, std::size_t offset, std::size_t& next) {
    if (offset > datagram.size() || datagram.size() - offset < kNlHdr) {
        return malformed("truncated netlink header at offset " + std::to_string(offset));
    }
    nlmsghdr nh{};
    std::memcpy(&nh, datagram.data() + offset, sizeof nh);
    if (nh.nlmsg_len < kNlHdr || nh.nlmsg_len > datagram.size() - offset) {
        return malformed("netlink message length " + std::to_string(nh.nlmsg_len) + " with " +
                         std::to_string(datagram.size() - offset) + " bytes left");
    }
    Message m;
    m.type = nh.nlmsg_type;
    m.flags = nh.nlmsg_flags;
    m.seq = nh.nlmsg_seq;
    m.pid = nh.nlmsg_pid;
    m.bytes = datagram.subspan(offset, nh.nlmsg_len);
    next = offset + std::min<std::size_t>(align4(nh.nlmsg_len), datagram.size() - offset);
    return m;
}

Result<Ack> decodeAck(ByteSpan message) {
    if (message.size() < kNlHdr + sizeof(int)) {
        return malformed("netlink error message of " + std::to_string(message.size()) + " bytes");
    }
    nlmsghdr nh{};
    std::memcpy(&nh, message.data(), sizeof nh);
    if (nh.nlmsg_type != NLMSG_ERROR || nh.nlmsg_len < kNlHdr + sizeof(int)) {
        return malformed("not a netlink error message");
    }
    // A datagram cut short by a small receive buffer still tells the sequence and the error.
    const std::size_t len = std::min<std::size_t>(nh.nlmsg_len, message.size());
    int err = 0;
    std::memcpy(&err, message.data() + kNlHdr, sizeof err);
    // A negated errno; INT_MIN is none, and negating it would overflow.
    if (err == std::numeric_limits<int>::min()) {
        return malformed("netlink error code " + std::to_string(err));
    }
    Ack ack;
    ack.seq = nh.nlmsg_seq;
    ack.error = err < 0 ? -err : err;
    if ((nh.nlmsg_flags & NLM_F_ACK_TLVS) == 0) {
        return ack;
    }
    // Extended-ack attributes follow the original request: its header only when capped.
    std::size_t off = kNlHdr + sizeof(int);
    if (len - off < kNlHdr) {
        return ack;
    }
    nlmsghdr orig{};
    std::memcpy(&orig, message.data() + off, sizeof orig);
    off += (nh.nlmsg_flags & NLM_F_CAPPED) != 0 ? kNlHdr : align4(orig.nlmsg_len);
    if (off >= len) {
        return ack;
    }
    Attrs<NLMSGERR_ATTR_MAX + 1> a;
    if (parseAttrs(message.subspan(off, len - off), kExtAckPolicy, a, "extack") &&
        a[NLMSGERR_ATTR_MSG].present) {
        ack.extack = std::string(getString(a[NLMSGERR_ATTR_MSG]));
    }
    return ack;
}

Result<int> decodeDone(ByteSpan message) {
    if (message.size() < kNlHdr) {
        return malformed("truncated NLMSG_DONE");
    }
    nlmsghdr nh{};
    std::memcpy(&nh, message.data(), sizeof nh);
    if (nh.nlmsg_len < kNlHdr + sizeof(int) || message.size() < kNlHdr + sizeof(int)) {
        return 0;
    }
    int err = 0;
    std::memcpy(&err, message.data() + kNlHdr, sizeof err);
    if (err == std::numeric_limits<int>::min()) {
        return malformed("NLMSG_DONE error code " + std::to_string(err));
    }
    return err < 0 ? -err : err;
}

Result<ServiceEntry> decodeService(ByteSpan genlMessage) {
    auto g = parseCommand(genlMessage, IPVS_CMD_NEW_SERVICE, "service");
    if (!g) {
        return g.error();
    }
    const Attr& nest = (*g)[IPVS_CMD_ATTR_SERVICE];
    if (!nest.present) {
        return malformed("service reply without a service attribute");
    }
    Attrs<IPVS_SVC_ATTR_MAX + 1> a;
    if (auto r = parseAttrs(nest.span(), kServicePolicy, a, "service"); !r) {
        return r.error();
    }
    if (auto r = require(a, kServicePolicy,
                         {IPVS_SVC_ATTR_AF, IPVS_SVC_ATTR_SCHED_NAME, IPVS_SVC_ATTR_FLAGS,
                          IPVS_SVC_ATTR_TIMEOUT, IPVS_SVC_ATTR_NETMASK},
                         "service");
        !r) {
        return r.error();
    }
    auto family = familyOf(getU16(a[IPVS_SVC_ATTR_AF]));
    if (!family) {
        return family.error();
    }
    ServiceEntry e;
    VirtualServer& vs = e.service;
    const std::uint32_t fwmark =
        a[IPVS_SVC_ATTR_FWMARK].present ? getU32(a[IPVS_SVC_ATTR_FWMARK]) : 0;
    if (fwmark != 0) {
        vs.key.fwmark = fwmark;
        vs.key.address = net::IpAddress::any(*family);
    } else {
        if (auto r = require(a, kServicePolicy,
                             {IPVS_SVC_ATTR_PROTOCOL, IPVS_SVC_ATTR_ADDR, IPVS_SVC_ATTR_PORT},
                             "service");
            !r) {
            return r.error();
        }
        const std::uint16_t proto = getU16(a[IPVS_SVC_ATTR_PROTOCOL]);
        if (proto != static_cast<std::uint16_t>(Protocol::TCP) &&
            proto != static_cast<std::uint16_t>(Protocol::UDP) &&
            proto != static_cast<std::uint16_t>(Protocol::SCTP)) {
            return Error::sys(EPROTONOSUPPORT,
                              "IPVS reply: service protocol " + std::to_string(proto));
        }
        vs.key.protocol = static_cast<Protocol>(proto);
        auto addr = addressOf(a[IPVS_SVC_ATTR_ADDR], *family, "service");
        if (!addr) {
            return addr.error();
        }
        vs.key.address = *addr;
        vs.key.port = ntohs(getU16(a[IPVS_SVC_ATTR_PORT]));
    }
    auto sched = ShortName::make(getString(a[IPVS_SVC_ATTR_SCHED_NAME]));
    if (!sched) {
        return malformed("service scheduler name is not NUL-terminated");
    }
    vs.scheduler = *sched;
    if (a[IPVS_SVC_ATTR_PE_NAME].present) {
        auto pe = ShortName::make(getString(a[IPVS_SVC_ATTR_PE_NAME]));
        if (!pe) {
            return malformed("service persistence engine name is not NUL-terminated");
        }
        vs.persistenceEngine = *pe;
    }
    ip_vs_flags flags{};
    std::memcpy(&flags, a[IPVS_SVC_ATTR_FLAGS].data, sizeof flags);
    vs.flags = flags.flags & ~kSvcFlagHashed;
    vs.timeout = getU32(a[IPVS_SVC_ATTR_TIMEOUT]);
    const std::uint32_t mask = getU32(a[IPVS_SVC_ATTR_NETMASK]);
    vs.netmask = *family == net::Family::V4 ? ntohl(mask) : mask;
    auto stats = parseStats(a[IPVS_SVC_ATTR_STATS64], a[IPVS_SVC_ATTR_STATS]);
    if (!stats) {
        return stats.error();
    }
    e.stats = *stats;
    return e;
}

Result<DestEntry> decodeDest(ByteSpan genlMessage, net::Family serviceFamily) {
    auto g = parseCommand(genlMessage, IPVS_CMD_NEW_DEST, "dest");
    if (!g) {
        return g.error();
    }
    const Attr& nest = (*g)[IPVS_CMD_ATTR_DEST];
    if (!nest.present) {
        return malformed("dest reply without a dest attribute");
    }
    Attrs<IPVS_DEST_ATTR_MAX + 1> a;
    if (auto r = parseAttrs(nest.span(), kDestPolicy, a, "dest"); !r) {
        return r.error();
    }
    if (auto r = require(a, kDestPolicy,
                         {IPVS_DEST_ATTR_ADDR, IPVS_DEST_ATTR_PORT, IPVS_DEST_ATTR_FWD_METHOD,
                          IPVS_DEST_ATTR_WEIGHT},
                         "dest");
        !r) {
        return r.error();
    }
    net::Family family = serviceFamily;
    if (a[IPVS_DEST_ATTR_ADDR_FAMILY].present) {
        auto f = familyOf(getU16(a[IPVS_DEST_ATTR_ADDR_FAMILY]));
        if (!f) {
            return f.error();
        }
        family = *f;
    }
    auto addr = addressOf(a[IPVS_DEST_ATTR_ADDR], family, "dest");
    if (!addr) {
        return addr.error();
    }
    DestEntry e;
    RealServer& rs = e.dest;
    rs.key.address = *addr;
    rs.key.port = ntohs(getU16(a[IPVS_DEST_ATTR_PORT]));
    const std::uint32_t fwd = getU32(a[IPVS_DEST_ATTR_FWD_METHOD]) & IP_VS_CONN_F_FWD_MASK;
    if (fwd > IP_VS_CONN_F_DROUTE) {
        return malformed("dest forwarding method " + std::to_string(fwd));
    }
    rs.forwarding = static_cast<Forwarding>(fwd);
    rs.weight = static_cast<std::int32_t>(getU32(a[IPVS_DEST_ATTR_WEIGHT]));
    auto opt32 = [&](int t) { return a[t].present ? getU32(a[t]) : 0; };
    rs.upperThreshold = opt32(IPVS_DEST_ATTR_U_THRESH);
    rs.lowerThreshold = opt32(IPVS_DEST_ATTR_L_THRESH);
    e.activeConns = opt32(IPVS_DEST_ATTR_ACTIVE_CONNS);
    e.inactiveConns = opt32(IPVS_DEST_ATTR_INACT_CONNS);
    e.persistentConns = opt32(IPVS_DEST_ATTR_PERSIST_CONNS);
    auto stats = parseStats(a[IPVS_DEST_ATTR_STATS64], a[IPVS_DEST_ATTR_STATS]);
    if (!stats) {
        return stats.error();
    }
    e.stats = *stats;
    return e;
}

Result<Info> decodeInfo(ByteSpan genlMessage) {
    // GET_INFO's attributes sit at the top level, in their own attribute space.
    auto payload = genlPayload(genlMessage, IPVS_CMD_SET_INFO, "info");
    if (!payload) {
        return payload.error();
    }
    Attrs<IPVS_INFO_ATTR_MAX + 1> a;
    if (auto r = parseAttrs(*payload, kInfoPolicy, a, "info"); !r) {
        return r.error();
    }
    if (auto r =
            require(a, kInfoPolicy, {IPVS_INFO_ATTR_VERSION, IPVS_INFO_ATTR_CONN_TAB_SIZE}, "info");
        !r) {
        return r.error();
    }
    Info info;
    info.version = getU32(a[IPVS_INFO_ATTR_VERSION]);
    info.connTableSize = getU32(a[IPVS_INFO_ATTR_CONN_TAB_SIZE]);
    return info;
}

Result<Timeouts> decodeConfig(ByteSpan genlMessage) {
    auto g = parseCommand(genlMessage, IPVS_CMD_SET_CONFIG, "config");
    if (!g) {
        return g.error();
    }
    auto opt32 = [&](int t) { return (*g)[t].present ? getU32((*g)[t]) : 0; };
    Timeouts t;
    t.tcp = opt32(IPVS_CMD_ATTR_TIMEOUT_TCP);
    t.tcpFin = opt32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN);
    t.udp = opt32(IPVS_CMD_ATTR_TIMEOUT_UDP);
    return t;
}

}  // namespace kipvs::ipvs::codec
