#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <unordered_set>

#include "ipvs/net.h"

using kipvs::net::Cidr;
using kipvs::net::Family;
using kipvs::net::IpAddress;

TEST_CASE("IpAddress parses and prints both families canonically", "[net]") {
    auto a = IpAddress::parse("10.96.0.10");
    REQUIRE(a);
    CHECK(a->family() == Family::V4);
    CHECK(a->toString() == "10.96.0.10");
    CHECK(a->v4HostOrder() == 0x0a60000a);

    auto b = IpAddress::parse("FD00:0:0::A");
    REQUIRE(b);
    CHECK(b->isV6());
    CHECK(b->toString() == "fd00::a");
    CHECK(b->toUrlHost() == "[fd00::a]");
    CHECK(kipvs::net::joinHostPort(*b, 53) == "[fd00::a]:53");
    CHECK(kipvs::net::joinHostPort(*a, 53) == "10.96.0.10:53");
}

TEST_CASE("legacy parsing reads leading zeros as decimal, as kube-proxy does", "[net]") {
    CHECK(IpAddress::parseLegacy("010.096.000.010")->toString() == "10.96.0.10");
    CHECK(IpAddress::parseLegacy("1.2.3.04")->toString() == "1.2.3.4");
    CHECK(IpAddress::parseLegacy("0000.0.00.0001")->toString() == "0.0.0.1");
    CHECK(IpAddress::parseLegacy("fd00::a")->toString() == "fd00::a");
    // Only IPv6's embedded IPv4 tail, which strict parsing refuses with leading zeros.
    CHECK_FALSE(IpAddress::parse("::ffff:010.001.002.003"));
    CHECK(IpAddress::parseLegacy("::ffff:010.001.002.003")->toString() == "::ffff:10.1.2.3");
    for (const char* bad :
         {"", "010.1.1", "010.1.1.256", "01.2.3.4.5", "1..2.3", "1.2.3.4 ", "0x1.2.3.4", "-1.2.3.4",
          "1.2.3.4/8", "banana", "0fd00::1%eth0", "::ffff:010.1.2", "fd00::010.1.2.3:1",
          "00fd00::1", "::ffff:1.2.3.04x"}) {
        INFO(bad);
        CHECK_FALSE(IpAddress::parseLegacy(bad));
    }
    CHECK(Cidr::parseLegacy("010.000.000.000/08")->toString() == "10.0.0.0/8");
    CHECK(Cidr::parseLegacy("192.168.001.000/024")->toString() == "192.168.1.0/24");
    CHECK(Cidr::parseLegacy("fd00::/008")->toString() == "fd00::/8");
    CHECK(Cidr::parseLegacy("0.0.0.0/00")->toString() == "0.0.0.0/0");
    for (const char* bad : {"010.0.0.0", "010.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "fd00::/129"}) {
        INFO(bad);
        CHECK_FALSE(Cidr::parseLegacy(bad));
    }
}

TEST_CASE("IpAddress rejects what Kubernetes rejects", "[net]") {
    for (const char* bad : {"", "10.96.0", "10.96.0.256", "010.1.1.1", "1.2.3.04", "10.96.0.10 ",
                            "fe80::1%eth0", "::g", "1.2.3.4/32", "abc", "1.2.3.4.5",
                            "0000:0000:0000:0000:0000:0000:0000:0000:0000"}) {
        INFO(bad);
        CHECK_FALSE(IpAddress::parse(bad));
    }
    CHECK(IpAddress::parse("0.0.0.0"));
    // A NUL ends the text for inet_pton, not for us (found by fuzz_proxy_config: a config
    // file's bindAddress "::" followed by a NUL and more bytes was taken as "::").
    using namespace std::string_view_literals;
    for (auto bad : {"10.0.0.1\0junk"sv, "::\0"sv, "\0"sv, "fd00::1\0"sv}) {
        INFO(bad.size());
        CHECK_FALSE(IpAddress::parse(bad));
        CHECK_FALSE(Cidr::parse(std::string(bad) + "/8"));
    }
}

TEST_CASE("IpAddress classifies loopback, link-local and unspecified", "[net]") {
    CHECK(IpAddress::parse("127.0.0.5")->isLoopback());
    CHECK(IpAddress::parse("::1")->isLoopback());
    CHECK_FALSE(IpAddress::parse("::2")->isLoopback());
    CHECK(IpAddress::parse("169.254.1.1")->isLinkLocal());
    CHECK(IpAddress::parse("fe80::1")->isLinkLocal());
    CHECK(IpAddress::parse("febf::1")->isLinkLocal());
    CHECK_FALSE(IpAddress::parse("fec0::1")->isLinkLocal());
    CHECK(IpAddress::parse("::")->isUnspecified());
    CHECK(IpAddress::any(Family::V4).isUnspecified());
}

TEST_CASE("IpAddress orders IPv4 before IPv6 and hashes by value", "[net]") {
    auto v4 = *IpAddress::parse("255.255.255.255");
    auto v6 = *IpAddress::parse("::");
    CHECK(v4 < v6);
    CHECK(*IpAddress::parse("10.0.0.1") < *IpAddress::parse("10.0.0.2"));
    std::unordered_set<IpAddress> s{v4, v6, *IpAddress::parse("255.255.255.255")};
    CHECK(s.size() == 2);
}

TEST_CASE("Cidr parses, normalises and matches", "[net]") {
    auto c = Cidr::parse("10.244.1.7/16");
    REQUIRE(c);
    CHECK(c->toString() == "10.244.0.0/16");
    CHECK(c->contains(*IpAddress::parse("10.244.255.1")));
    CHECK_FALSE(c->contains(*IpAddress::parse("10.245.0.1")));
    CHECK_FALSE(c->contains(*IpAddress::parse("::ffff:10.244.0.1")));
    CHECK_FALSE(Cidr::parse("10.244.1.7/16", false));
    CHECK(Cidr::parse("10.244.0.0/16", false));

    auto all = Cidr::parse("0.0.0.0/0");
    REQUIRE(all);
    CHECK(all->isAll());
    CHECK(all->contains(*IpAddress::parse("203.0.113.9")));

    auto v6 = Cidr::parse("fd00:10:244:1::17/64");
    REQUIRE(v6);
    CHECK(v6->toString() == "fd00:10:244:1::/64");
    CHECK(v6->contains(*IpAddress::parse("fd00:10:244:1::ffff")));
    CHECK(Cidr::host(*IpAddress::parse("fd00::1")).toString() == "fd00::1/128");

    for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/08",
                            "::/129", "x/8", "10.0.0.0/8/8"}) {
        INFO(bad);
        CHECK_FALSE(Cidr::parse(bad));
    }
}
