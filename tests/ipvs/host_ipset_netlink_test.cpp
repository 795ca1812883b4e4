// ipsetnl::ListCollector decodes ipset dump replies as the kernel lays them out
// (ip_set_core.c, ip_set_hash_gen.h): nests flagged NLA_F_NESTED, addresses and ports flagged
// NLA_F_NET_BYTEORDER, the members of one set spread over several messages.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/ipset/ip_set.h>
#include <linux/netfilter/nfnetlink.h>

#include <string>

#include "ipvs/ipset_netlink.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

constexpr std::uint16_t kNested = NLA_F_NESTED;
constexpr std::uint16_t kNet = NLA_F_NET_BYTEORDER;

struct Reply {
    hostnl::MessageBuffer b;
    // One reply message of the listing of `name`; `header` adds the set's header nest.
    void begin(const char* type, std::uint8_t family, bool header) {
        b.begin(static_cast<std::uint16_t>(NFNL_SUBSYS_IPSET << 8 | IPSET_CMD_LIST), NLM_F_MULTI);
        nfgenmsg g{};
        g.nfgen_family = family;
        b.putHeader(g);
        const std::uint8_t proto = IPSET_PROTOCOL;
        b.putAttr(IPSET_ATTR_PROTOCOL, &proto, 1);
        b.putString(IPSET_ATTR_SETNAME, "KUBE-TEST");
        b.putString(IPSET_ATTR_TYPENAME, type);
        const std::uint8_t rev = 1;
        b.putAttr(IPSET_ATTR_REVISION, &rev, 1);
        b.putAttr(IPSET_ATTR_FAMILY, &family, 1);
        if (header) {
            const auto h = b.beginNest(IPSET_ATTR_DATA | kNested);
            b.putU32(IPSET_ATTR_ELEMENTS | kNet, htonl(2));
            b.endNest(h);
        }
    }
    std::size_t adt = 0;
    void beginMembers() { adt = b.beginNest(IPSET_ATTR_ADT | kNested); }
    void endMembers() { b.endNest(adt); }
    void end() { b.end(); }
    std::size_t data = 0;
    void beginMember() { data = b.beginNest(IPSET_ATTR_DATA | kNested); }
    void endMember() { b.endNest(data); }
    void ip(std::uint16_t type, const char* text) {
        const auto a = *net::IpAddress::parse(text);
        const auto n = b.beginNest(type | kNested);
        b.putAttr(
            (a.family() == net::Family::V4 ? IPSET_ATTR_IPADDR_IPV4 : IPSET_ATTR_IPADDR_IPV6) |
                kNet,
            a.data(), a.size());
        b.endNest(n);
    }
    void port(std::uint16_t p) {
        const std::uint16_t be = htons(p);
        b.putAttr(IPSET_ATTR_PORT | kNet, &be, 2);
    }
    void u8(std::uint16_t type, std::uint8_t v) { b.putAttr(type, &v, 1); }
    // One hash:ip,port member, as ip_set_hash_ipport.c lists it.
    void ipPortMember(const char* address, std::uint16_t p, std::uint8_t proto) {
        beginMember();
        ip(IPSET_ATTR_IP, address);
        port(p);
        u8(IPSET_ATTR_PROTO, proto);
        endMember();
    }
};

Result<std::vector<SetEntry>> collect(Reply& r) {
    std::vector<SetEntry> got;
    ipsetnl::ListCollector c("ipset list KUBE-TEST",
                             [&got](const SetEntry& e) { got.push_back(e); });
    for (std::size_t i = 0; i < r.b.count(); ++i) {
        c.add(r.b.message(i));
    }
    if (auto n = c.finish(); !n) {
        return n.error();
    }
    return got;
}

}  // namespace

TEST_CASE("listRequest asks for one set's dump with the minimum protocol version", "[ipset]") {
    hostnl::MessageBuffer b;
    ipsetnl::listRequest(b, "KUBE-CLUSTER-IP");
    REQUIRE(b.count() == 1);
    const nlmsghdr* m = b.message(0);
    CHECK(m->nlmsg_type == (NFNL_SUBSYS_IPSET << 8 | IPSET_CMD_LIST));
    // A dump without NLM_F_ACK: ip_set_dump_start acks a failed start itself when asked to,
    // and nfnetlink acks it again.
    CHECK(m->nlmsg_flags == (NLM_F_REQUEST | NLM_F_DUMP));
    std::vector<const nlattr*> tb(IPSET_ATTR_CMD_MAX + 1);
    REQUIRE(hostnl::parseAttrs(m, sizeof(nfgenmsg), tb));
    REQUIRE(tb[IPSET_ATTR_PROTOCOL] != nullptr);
    CHECK(*static_cast<const std::uint8_t*>(hostnl::attrData(tb[IPSET_ATTR_PROTOCOL])) ==
          IPSET_PROTOCOL_MIN);
    REQUIRE(tb[IPSET_ATTR_SETNAME] != nullptr);
    CHECK(hostnl::attrString(tb[IPSET_ATTR_SETNAME]) == "KUBE-CLUSTER-IP");
}

TEST_CASE("ListCollector decodes hash:ip,port members spread over several messages", "[ipset]") {
    Reply r;
    r.begin("hash:ip,port", NFPROTO_IPV4, true);
    r.end();  // the header message has no members
    r.begin("hash:ip,port", NFPROTO_IPV4, false);
    r.beginMembers();
    r.ipPortMember("10.96.0.1", 443, IPPROTO_TCP);
    r.endMembers();
    r.end();
    r.begin("hash:ip,port", NFPROTO_IPV4, false);
    r.beginMembers();
    r.ipPortMember("10.96.0.10", 53, IPPROTO_UDP);
    r.ipPortMember("10.96.0.11", 3868, IPPROTO_SCTP);
    r.endMembers();
    r.end();
    auto got = collect(r);
    REQUIRE(got.has_value());
    REQUIRE(got->size() == 3);
    CHECK((*got)[0].toString(SetType::HashIpPort) == "10.96.0.1,tcp:443");
    CHECK((*got)[1].toString(SetType::HashIpPort) == "10.96.0.10,udp:53");
    CHECK((*got)[2].toString(SetType::HashIpPort) == "10.96.0.11,sctp:3868");
    // The same values SetEntry::parse gives for the text ipset prints.
    CHECK((*got)[1] == *SetEntry::parse(SetType::HashIpPort, "10.96.0.10,udp:53"));
}

TEST_CASE("ListCollector decodes every set type kube-ipvs uses, IPv4 and IPv6", "[ipset]") {
    struct Case {
        const char* type;
        std::uint8_t family;
        const char* want;
    };
    const Case cases[] = {
        {"hash:ip", NFPROTO_IPV6, "fd00::1"},
        {"hash:ip,port,ip", NFPROTO_IPV4, "10.244.1.7,tcp:8080,10.244.1.7"},
        {"hash:ip,port,net", NFPROTO_IPV6, "2001:db8::a,tcp:443,2001:db8:1::/48"},
        {"hash:net", NFPROTO_IPV4, "10.0.0.0/8"},
        {"bitmap:port", NFPROTO_UNSPEC, "30080"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.type) {
            const auto type = *parseSetType(c.type);
            const auto want = *SetEntry::parse(type, c.want);
            Reply r;
            r.begin(c.type, c.family, true);
            r.beginMembers();
            r.beginMember();
            switch (type) {
                case SetType::HashIp:
                    r.ip(IPSET_ATTR_IP, "fd00::1");
                    break;
                case SetType::HashIpPortIp:
                    r.ip(IPSET_ATTR_IP, "10.244.1.7");
                    r.port(8080);
                    r.u8(IPSET_ATTR_PROTO, IPPROTO_TCP);
                    r.ip(IPSET_ATTR_IP2, "10.244.1.7");
                    break;
                case SetType::HashIpPortNet:
                    r.ip(IPSET_ATTR_IP, "2001:db8::a");
                    r.port(443);
                    r.u8(IPSET_ATTR_PROTO, IPPROTO_TCP);
                    r.ip(IPSET_ATTR_IP2, "2001:db8:1::");
                    r.u8(IPSET_ATTR_CIDR2, 48);
                    break;
                case SetType::HashNet:
                    r.ip(IPSET_ATTR_IP, "10.0.0.0");
                    r.u8(IPSET_ATTR_CIDR, 8);
                    break;
                case SetType::BitmapPort:
                    r.port(30080);
                    break;
                case SetType::HashIpPort:
                    FAIL("not in this table");
            }
            r.endMember();
            r.endMembers();
            r.end();
            auto got = collect(r);
            REQUIRE(got.has_value());
            REQUIRE(got->size() == 1);
            CHECK((*got)[0] == want);
            CHECK((*got)[0].toString(type) == c.want);
        }
    }
}

TEST_CASE("ListCollector refuses what it cannot represent, naming the set and member", "[ipset]") {
    SECTION("a set type kube-ipvs does not use") {
        Reply r;
        r.begin("hash:mac", NFPROTO_UNSPEC, true);
        r.end();
        auto got = collect(r);
        REQUIRE_FALSE(got.has_value());
        CHECK(got.error().message ==
              "ipset list KUBE-TEST: set has type hash:mac, which kube-ipvs does not use");
    }
    SECTION("a member with a protocol other than TCP, UDP and SCTP (icmp:echo-request)") {
        Reply r;
        r.begin("hash:ip,port", NFPROTO_IPV4, false);
        r.beginMembers();
        r.ipPortMember("10.96.0.1", 0x0800, IPPROTO_ICMP);
        r.endMembers();
        r.end();
        auto got = collect(r);
        REQUIRE_FALSE(got.has_value());
        CHECK(got.error().message ==
              "ipset list KUBE-TEST: cannot decode member 1 of a hash:ip,port set");
    }
    SECTION("an IPv4 address in an IPv6 set") {
        Reply r;
        r.begin("hash:ip", NFPROTO_IPV6, false);
        r.beginMembers();
        r.beginMember();
        r.ip(IPSET_ATTR_IP, "10.96.0.1");
        r.endMember();
        r.endMembers();
        r.end();
        REQUIRE_FALSE(collect(r).has_value());
    }
    SECTION("a member without its port") {
        Reply r;
        r.begin("hash:ip,port", NFPROTO_IPV4, false);
        r.beginMembers();
        r.beginMember();
        r.ip(IPSET_ATTR_IP, "10.96.0.1");
        r.u8(IPSET_ATTR_PROTO, IPPROTO_TCP);
        r.endMember();
        r.endMembers();
        r.end();
        REQUIRE_FALSE(collect(r).has_value());
    }
    SECTION("a reply without the set's type") {
        hostnl::MessageBuffer b;
        b.begin(static_cast<std::uint16_t>(NFNL_SUBSYS_IPSET << 8 | IPSET_CMD_LIST), 0);
        nfgenmsg g{};
        b.putHeader(g);
        b.end();
        ipsetnl::ListCollector c("ipset list KUBE-TEST", [](const SetEntry&) {});
        c.add(b.message(0));
        auto got = c.finish();
        REQUIRE_FALSE(got.has_value());
        CHECK(got.error().message == "ipset list KUBE-TEST: reply without the set's type");
    }
}
