// SetEntry text as `ipset list` prints it (checked against ipset 7.17 in the guest, see
// ipvs/ipset_entry.cpp), for every set type kube-ipvs uses and both families.
#include <catch2/catch.hpp>

#include "ipvs/ipset.h"

using kipvs::ipvs::parseSetType;
using kipvs::ipvs::Protocol;
using kipvs::ipvs::SetEntry;
using kipvs::ipvs::SetType;
using kipvs::ipvs::setTypeName;
using kipvs::net::Cidr;
using kipvs::net::IpAddress;

namespace {

IpAddress ip(const char* s) {
    auto a = IpAddress::parse(s);
    REQUIRE(a);
    return *a;
}

Cidr cidr(const char* s) {
    auto c = Cidr::parse(s, false);
    REQUIRE(c);
    return *c;
}

// toString gives `text`, and parsing `text` gives the entry back.
void roundTrip(SetType t, const SetEntry& e, const std::string& text) {
    INFO(setTypeName(t) << " " << text);
    CHECK(e.toString(t) == text);
    auto back = SetEntry::parse(t, text);
    REQUIRE(back);
    CHECK(*back == e);
}

}  // namespace

TEST_CASE("set type names are ipset's", "[ipset]") {
    const std::pair<SetType, const char*> all[] = {
        {SetType::HashIp, "hash:ip"},
        {SetType::HashIpPort, "hash:ip,port"},
        {SetType::HashIpPortIp, "hash:ip,port,ip"},
        {SetType::HashIpPortNet, "hash:ip,port,net"},
        {SetType::HashNet, "hash:net"},
        {SetType::BitmapPort, "bitmap:port"},
    };
    for (const auto& [t, name] : all) {
        CHECK(setTypeName(t) == name);
        CHECK(parseSetType(name) == t);
    }
    CHECK_FALSE(parseSetType("hash:mac"));
    CHECK_FALSE(parseSetType("hash:ip,port "));
    CHECK_FALSE(parseSetType(""));
}

TEST_CASE("hash:ip entries, both families", "[ipset]") {
    roundTrip(SetType::HashIp, SetEntry::address(ip("10.96.0.1")), "10.96.0.1");
    roundTrip(SetType::HashIp, SetEntry::address(ip("fd00::1")), "fd00::1");
    roundTrip(SetType::HashIp, SetEntry::address(ip("2001:db8:0:1::2")), "2001:db8:0:1::2");
    CHECK_FALSE(SetEntry::parse(SetType::HashIp, "10.96.0.1,tcp:80"));
    CHECK_FALSE(SetEntry::parse(SetType::HashIp, "10.96.0.0/24"));
}

TEST_CASE("hash:ip,port entries, every protocol and both families", "[ipset]") {
    roundTrip(SetType::HashIpPort, SetEntry::ipPort(ip("10.96.0.1"), Protocol::TCP, 443),
              "10.96.0.1,tcp:443");
    roundTrip(SetType::HashIpPort, SetEntry::ipPort(ip("10.96.0.10"), Protocol::UDP, 53),
              "10.96.0.10,udp:53");
    roundTrip(SetType::HashIpPort, SetEntry::ipPort(ip("192.168.1.5"), Protocol::SCTP, 30000),
              "192.168.1.5,sctp:30000");
    roundTrip(SetType::HashIpPort, SetEntry::ipPort(ip("fd00::1"), Protocol::UDP, 53),
              "fd00::1,udp:53");
    roundTrip(SetType::HashIpPort, SetEntry::ipPort(ip("fd00::a"), Protocol::TCP, 65535),
              "fd00::a,tcp:65535");
    // Without /etc/protocols libipset prints the protocol number.
    CHECK(SetEntry::parse(SetType::HashIpPort, "10.96.0.1,6:443") ==
          SetEntry::ipPort(ip("10.96.0.1"), Protocol::TCP, 443));
    CHECK(SetEntry::parse(SetType::HashIpPort, "10.96.0.1,17:53") ==
          SetEntry::ipPort(ip("10.96.0.1"), Protocol::UDP, 53));
    CHECK(SetEntry::parse(SetType::HashIpPort, "10.96.0.1,132:9") ==
          SetEntry::ipPort(ip("10.96.0.1"), Protocol::SCTP, 9));
    for (const char* bad : {"10.96.0.1", "10.96.0.1,tcp", "10.96.0.1,tcp:", "10.96.0.1,tcp:65536",
                            "10.96.0.1,icmp:8", "10.96.0.1,TCP:80", "10.96.0.1,tcp:80,1.2.3.4",
                            "10.96.0.1,tcp:-1", "10.96.0.1,tcp:8x", "fd00::1,udp"}) {
        INFO(bad);
        CHECK_FALSE(SetEntry::parse(SetType::HashIpPort, bad));
    }
}

TEST_CASE("hash:ip,port,ip entries, both families", "[ipset]") {
    roundTrip(SetType::HashIpPortIp,
              SetEntry::ipPortIp(ip("10.244.1.7"), Protocol::TCP, 8080, ip("10.244.1.7")),
              "10.244.1.7,tcp:8080,10.244.1.7");
    roundTrip(SetType::HashIpPortIp,
              SetEntry::ipPortIp(ip("fd00::1"), Protocol::TCP, 443, ip("fd00:0:0:1::2")),
              "fd00::1,tcp:443,fd00:0:0:1::2");
    // Mixed families cannot be a member of any set.
    CHECK_FALSE(SetEntry::parse(SetType::HashIpPortIp, "10.0.0.1,tcp:443,fd00::1"));
    CHECK_FALSE(SetEntry::parse(SetType::HashIpPortIp, "10.0.0.1,tcp:443"));
}

TEST_CASE("hash:ip,port,net entries print a host network without its prefix", "[ipset]") {
    roundTrip(SetType::HashIpPortNet,
              SetEntry::ipPortNet(ip("203.0.113.10"), Protocol::TCP, 443, cidr("198.51.100.0/24")),
              "203.0.113.10,tcp:443,198.51.100.0/24");
    roundTrip(SetType::HashIpPortNet,
              SetEntry::ipPortNet(ip("10.0.0.1"), Protocol::TCP, 443, cidr("10.1.2.3/32")),
              "10.0.0.1,tcp:443,10.1.2.3");
    roundTrip(SetType::HashIpPortNet,
              SetEntry::ipPortNet(ip("fd00::1"), Protocol::TCP, 443, cidr("fd00:1::/64")),
              "fd00::1,tcp:443,fd00:1::/64");
    roundTrip(SetType::HashIpPortNet,
              SetEntry::ipPortNet(ip("fd00::1"), Protocol::UDP, 53, cidr("fd00:1::5/128")),
              "fd00::1,udp:53,fd00:1::5");
    // ipset prints networks with their host bits cleared; anything else is not its output.
    CHECK_FALSE(SetEntry::parse(SetType::HashIpPortNet, "10.0.0.1,tcp:443,10.1.2.3/16"));
    CHECK_FALSE(SetEntry::parse(SetType::HashIpPortNet, "10.0.0.1,tcp:443,fd00::/64"));
}

TEST_CASE("hash:net entries print a host network without its prefix", "[ipset]") {
    roundTrip(SetType::HashNet, SetEntry::network(cidr("10.0.0.0/8")), "10.0.0.0/8");
    roundTrip(SetType::HashNet, SetEntry::network(cidr("10.2.3.4/32")), "10.2.3.4");
    roundTrip(SetType::HashNet, SetEntry::network(cidr("fd00::/8")), "fd00::/8");
    roundTrip(SetType::HashNet, SetEntry::network(cidr("2001:db8::1/128")), "2001:db8::1");
    CHECK_FALSE(SetEntry::parse(SetType::HashNet, "10.0.0.0/33"));
    CHECK_FALSE(SetEntry::parse(SetType::HashNet, "10.0.0.1/8"));
}

TEST_CASE("bitmap:port entries are bare port numbers", "[ipset]") {
    roundTrip(SetType::BitmapPort, SetEntry::portOnly(30080), "30080");
    roundTrip(SetType::BitmapPort, SetEntry::portOnly(0), "0");
    roundTrip(SetType::BitmapPort, SetEntry::portOnly(65535), "65535");
    for (const char* bad : {"", "65536", "tcp:80", "80 ", "+80", "0x50"}) {
        INFO(bad);
        CHECK_FALSE(SetEntry::parse(SetType::BitmapPort, bad));
    }
}

TEST_CASE("entries of one type differ only in the fields that type uses", "[ipset]") {
    // parse() leaves unused fields at their defaults, so parsed members compare equal to the
    // entries the reconciler builds with the factories.
    auto e = SetEntry::parse(SetType::HashIpPort, "10.96.0.1,udp:53");
    REQUIRE(e);
    CHECK(e->ip2 == IpAddress());
    CHECK(e->netPrefix == 0);
    CHECK(SetEntry::parse(SetType::BitmapPort, "53") == SetEntry::portOnly(53));
}
