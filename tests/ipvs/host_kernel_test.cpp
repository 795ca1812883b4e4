// The host-side kernel layer against the guest's kernel: kube-ipvs0, addresses and local routes
// (RtnlAddresses), ipsets (LibIpset), iptables through both backends (ExecIptables,
// IptablesSync), sysctls (ProcSysctl) and conntrack clean-up (NetfilterConntrack). Every result
// is checked with the tool an operator would use: ip, ipset, iptables-save, conntrack, /proc.
//
// Each test case moves the process into a fresh network namespace (links, addresses, routes,
// ipsets, iptables and conntrack are all per namespace), so cases cannot see each other's
// leftovers. The whole binary refuses to run outside the test guest.
//
// Benchmarks (hidden: tags [.bench] and [.bench44k6]) print timings and assert nothing about
// them. Run them by tag:
//   python3 tests/vm/guest.py run --timeout 3000 --
//       build-host/tests/ipvs/kernel-ipvs-host -r tapcases "[.bench]"
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "ipvs/iptables_exec.h"
#include "ipvs/libipset.h"
#include "ipvs/names.h"
#include "ipvs/nf_conntrack.h"
#include "ipvs/rtnl_addresses.h"
#include "ipvs/sysctl.h"
#include "tests/ipvs/host_test_util.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using kipvs::test::failed;
using kipvs::test::succeeded;
using net::Family;
using net::IpAddress;
using namespace std::chrono_literals;

namespace {

const std::string kLink(names::kDummyInterface);

bool inGuest() {
    const char* v = std::getenv("KUBE_IPVS_IN_GUEST");
    return v != nullptr && std::string(v) == "1";
}

// Output (stdout and stderr) and exit status of a shell command.
struct Shell {
    int status = 0;
    std::string out;
};

Shell run(const std::string& cmd) {
    auto r = runProcess({"/bin/sh", "-c", cmd + " 2>&1"}, "", 300s);
    REQUIRE(succeeded(r));
    return {r->exitStatus, r->out};
}

std::string sh(const std::string& cmd) {
    auto r = run(cmd);
    INFO(cmd << "\n" << r.out);
    REQUIRE(r.status == 0);
    return r.out;
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) {
        if (!l.empty()) {
            out.push_back(l);
        }
    }
    return out;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

bool hasLine(const std::string& text, const std::string& line) {
    const auto all = lines(text);
    return std::find(all.begin(), all.end(), line) != all.end();
}

// A fresh network namespace with lo up, for this process and everything it runs.
void freshNamespace() {
    INFO("kernel tests run only inside the test guest (tests/vm/guest.py)");
    REQUIRE(inGuest());
    REQUIRE(::unshare(CLONE_NEWNET) == 0);
    sh("ip link set lo up");
}

IpAddress ip(const std::string& s) {
    auto a = IpAddress::parse(s);
    REQUIRE(a);
    return *a;
}

net::Cidr cidr(const std::string& s) {
    auto c = net::Cidr::parse(s, false);
    REQUIRE(c);
    return *c;
}

std::vector<IpAddress> sorted(std::vector<IpAddress> v) {
    std::sort(v.begin(), v.end());
    return v;
}

std::unique_ptr<RtnlAddresses> openRtnl() {
    auto r = RtnlAddresses::open();
    REQUIRE(succeeded(r));
    return std::move(*r);
}

std::unique_ptr<LibIpset> openIpset() {
    auto r = LibIpset::open();
    REQUIRE(succeeded(r));
    return std::move(*r);
}

std::vector<AddressOp> ops(AddressOpKind kind, const std::vector<IpAddress>& addrs) {
    std::vector<AddressOp> out;
    for (const auto& a : addrs) {
        out.push_back({kind, a});
    }
    return out;
}

void requireAllOk(const std::vector<Result<void>>& results) {
    for (std::size_t i = 0; i < results.size(); ++i) {
        INFO("op " << i << ": " << (results[i] ? "" : results[i].error().message));
        REQUIRE(results[i].has_value());
    }
}

// The i-th address of a /16 (or the IPv6 equivalent) counted from base.
IpAddress nth(Family f, std::uint32_t i) {
    if (f == Family::V4) {
        return IpAddress::v4((10U << 24) | ((100U << 16) + i));
    }
    std::array<std::uint8_t, 16> b{0xfd, 0x00, 0, 0x64};
    b[12] = static_cast<std::uint8_t>(i >> 24);
    b[13] = static_cast<std::uint8_t>(i >> 16);
    b[14] = static_cast<std::uint8_t>(i >> 8);
    b[15] = static_cast<std::uint8_t>(i);
    return IpAddress::fromBytes(Family::V6, b.data());
}

std::vector<IpAddress> range(Family f, std::uint32_t n, std::uint32_t from = 1) {
    std::vector<IpAddress> out;
    for (std::uint32_t i = 0; i < n; ++i) {
        out.push_back(nth(f, from + i));
    }
    return out;
}

// bind() succeeds only for an address the kernel considers local: the effect of a VIP that
// matters to IPVS.
bool isLocal(const IpAddress& a) {
    const int fd = ::socket(a.isV4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int rc = -1;
    if (a.isV4()) {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        std::memcpy(&sin.sin_addr, a.data(), 4);
        rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    } else {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        std::memcpy(&sin6.sin6_addr, a.data(), 16);
        rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
    }
    ::close(fd);
    return rc == 0;
}

double seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// kube-ipvs0

TEST_CASE("kube-ipvs0 is created as a dummy link and left down, once", "[kernel][link]") {
    freshNamespace();
    auto rtnl = openRtnl();
    auto exists = rtnl->linkExists(kLink);
    REQUIRE(succeeded(exists));
    CHECK_FALSE(*exists);

    auto created = rtnl->ensureDummy(kLink);
    REQUIRE(succeeded(created));
    CHECK(*created);
    const std::string link = sh("ip -d link show " + kLink);
    INFO(link);
    CHECK(contains(link, "<BROADCAST,NOARP>"));
    CHECK(contains(link, "state DOWN"));
    CHECK(contains(link, "\n    dummy "));

    auto again = rtnl->ensureDummy(kLink);
    REQUIRE(succeeded(again));
    CHECK_FALSE(*again);
    CHECK(lines(sh("ip -o link show type dummy")).size() == 1);
    CHECK(contains(sh("ip link show " + kLink), "state DOWN"));

    exists = rtnl->linkExists(kLink);
    REQUIRE(succeeded(exists));
    CHECK(*exists);
    REQUIRE(succeeded(rtnl->deleteLink(kLink)));
    CHECK(run("ip link show " + kLink).status != 0);
    // Deleting what is not there is fine.
    REQUIRE(succeeded(rtnl->deleteLink(kLink)));
}

TEST_CASE("a kube-ipvs0 of another link type is an error", "[kernel][link]") {
    freshNamespace();
    sh("ip link add " + kLink + " type veth peer name kube-peer");
    auto rtnl = openRtnl();
    auto r = rtnl->ensureDummy(kLink);
    REQUIRE(failed(r));
    CHECK(contains(r.error().message, "ensure dummy link kube-ipvs0"));
    CHECK(contains(r.error().message, "type veth"));
    // It was left alone.
    CHECK(contains(sh("ip -d link show " + kLink), "veth"));
}

// ---------------------------------------------------------------------------------------------
// Addresses

TEST_CASE("VIP addresses: added and removed idempotently, both families", "[kernel][addr]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    const std::vector<IpAddress> vips{ip("10.96.0.1"), ip("10.96.0.2"), ip("fd00::1"),
                                      ip("fd00::2")};

    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, vips)));
    std::string v4 = sh("ip -4 addr show dev " + kLink);
    std::string v6 = sh("ip -6 addr show dev " + kLink);
    INFO(v4 << v6);
    CHECK(contains(v4, "inet 10.96.0.1/32 scope global kube-ipvs0"));
    CHECK(contains(v4, "inet 10.96.0.2/32 scope global kube-ipvs0"));
    CHECK(contains(v6, "inet6 fd00::1/128 scope global"));
    CHECK(contains(v6, "inet6 fd00::2/128 scope global"));
    // The link stays down, and IPv6 VIPs on it are usable at once: not tentative, with their
    // local route, and bindable.
    CHECK_FALSE(contains(v6, "tentative"));
    CHECK(contains(sh("ip link show " + kLink), "state DOWN"));
    CHECK(contains(sh("ip route show table local"), "local 10.96.0.1 dev kube-ipvs0 proto kernel"));
    CHECK(
        contains(sh("ip -6 route show table local"), "local fd00::1 dev kube-ipvs0 proto kernel"));
    for (const auto& a : vips) {
        INFO(a.toString());
        CHECK(isLocal(a));
    }

    auto listed = rtnl->addresses(kLink);
    REQUIRE(succeeded(listed));
    CHECK(sorted(*listed) == sorted(vips));

    // Adding what is there succeeds and changes nothing.
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, vips)));
    CHECK(lines(sh("ip -o addr show dev " + kLink)).size() == 4);

    // Removing, including what is not there.
    requireAllOk(rtnl->apply(
        kLink, ops(AddressOpKind::Delete,
                   {ip("10.96.0.2"), ip("fd00::2"), ip("10.96.0.99"), ip("fd00::99")})));
    v4 = sh("ip -4 addr show dev " + kLink);
    v6 = sh("ip -6 addr show dev " + kLink);
    CHECK(contains(v4, "10.96.0.1/32"));
    CHECK_FALSE(contains(v4, "10.96.0.2/32"));
    CHECK(contains(v6, "fd00::1/128"));
    CHECK_FALSE(contains(v6, "fd00::2/128"));
    CHECK_FALSE(isLocal(ip("10.96.0.2")));
    listed = rtnl->addresses(kLink);
    REQUIRE(succeeded(listed));
    CHECK(sorted(*listed) == sorted({ip("10.96.0.1"), ip("fd00::1")}));
}

TEST_CASE("addresses() leaves out IPv6 link-local; allAddresses() names every interface but one",
          "[kernel][addr]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, {ip("10.96.0.1")})));
    sh("ip -6 addr add fe80::1/64 dev " + kLink);
    sh("ip link add uplink type dummy && ip addr add 192.0.2.10/24 dev uplink");

    auto mine = rtnl->addresses(kLink);
    REQUIRE(succeeded(mine));
    CHECK(*mine == std::vector<IpAddress>{ip("10.96.0.1")});

    auto all = rtnl->allAddresses("");
    REQUIRE(succeeded(all));
    const auto has = [&](const std::string& iface, const std::string& addr, int prefix) {
        return std::any_of(all->begin(), all->end(), [&](const InterfaceAddress& a) {
            return a.interface == iface && a.address == ip(addr) && a.prefix == prefix;
        });
    };
    CHECK(has("lo", "127.0.0.1", 8));
    CHECK(has("lo", "::1", 128));
    CHECK(has("kube-ipvs0", "10.96.0.1", 32));
    CHECK(has("kube-ipvs0", "fe80::1", 64));
    CHECK(has("uplink", "192.0.2.10", 24));
    CHECK(all->size() == lines(sh("ip -o addr show")).size());

    auto others = rtnl->allAddresses(kLink);
    REQUIRE(succeeded(others));
    const auto on = [](const std::vector<InterfaceAddress>& list, const std::string& iface) {
        return std::count_if(list.begin(), list.end(),
                             [&](const InterfaceAddress& a) { return a.interface == iface; });
    };
    REQUIRE(on(*all, kLink) >= 2);
    CHECK(on(*others, kLink) == 0);
    CHECK(others->size() == all->size() - static_cast<std::size_t>(on(*all, kLink)));
    CHECK(on(*others, "uplink") == on(*all, "uplink"));
}

TEST_CASE("one refused address does not fail the others of its batch", "[kernel][addr]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    // IPv6 switched off on the link: its IPv6 adds are refused, the IPv4 ones around them not.
    sh("sysctl -qw net.ipv6.conf.kube-ipvs0.disable_ipv6=1");
    auto r = rtnl->apply(
        kLink, ops(AddressOpKind::Add, {ip("10.96.0.1"), ip("fd00::1"), ip("10.96.0.2")}));
    REQUIRE(r.size() == 3);
    CHECK(r[0].has_value());
    REQUIRE_FALSE(r[1].has_value());
    INFO(r[1].error().message);
    CHECK(r[1].error().message.starts_with("add-address fd00::1/128 dev kube-ipvs0: "));
    CHECK(r[2].has_value());
    CHECK(lines(sh("ip -4 -o addr show dev " + kLink)).size() == 2);

    // A missing link fails every op with the link's name.
    auto gone = rtnl->apply("kube-nothere", ops(AddressOpKind::Add, {ip("10.96.0.3")}));
    REQUIRE(gone.size() == 1);
    REQUIRE_FALSE(gone[0].has_value());
    CHECK(contains(gone[0].error().message, "kube-nothere"));
}

// ---------------------------------------------------------------------------------------------
// Local routes

TEST_CASE("VIP local routes: added and removed idempotently, recognisable as ours",
          "[kernel][route]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    const std::vector<IpAddress> vips{ip("10.96.1.1"), ip("10.96.1.2")};

    requireAllOk(rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Add, vips)));
    std::string table = sh("ip route show table local");
    INFO(table);
    CHECK(hasLine(table, "local 10.96.1.1 dev kube-ipvs0 proto 75 scope host "));
    CHECK(hasLine(table, "local 10.96.1.2 dev kube-ipvs0 proto 75 scope host "));
    CHECK(lines(sh("ip route show table local proto 75")).size() == 2);
    // No address was added, yet the VIPs are local, and the link is still down.
    CHECK(lines(sh("ip -o addr show dev " + kLink)).empty());
    CHECK(isLocal(ip("10.96.1.1")));
    CHECK(contains(sh("ip link show " + kLink), "state DOWN"));

    auto listed = rtnl->localRoutes(kLink);
    REQUIRE(succeeded(listed));
    CHECK(sorted(*listed) == vips);

    requireAllOk(rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Add, vips)));
    CHECK(lines(sh("ip route show table local proto 75")).size() == 2);

    requireAllOk(rtnl->applyLocalRoutes(
        kLink, ops(AddressOpKind::Delete, {ip("10.96.1.2"), ip("10.96.1.99")})));
    CHECK(lines(sh("ip route show table local proto 75")) ==
          std::vector<std::string>{"local 10.96.1.1 dev kube-ipvs0 scope host "});
    CHECK_FALSE(isLocal(ip("10.96.1.2")));

    // Routes of others in table local (here: the kernel's for an address) are not listed.
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, {ip("10.96.1.50")})));
    listed = rtnl->localRoutes(kLink);
    REQUIRE(succeeded(listed));
    CHECK(*listed == std::vector<IpAddress>{ip("10.96.1.1")});
}

TEST_CASE("a local route beside an address on the same VIP survives the address",
          "[kernel][route]") {
    // Switching a node from address to route mode: the route is added while the address (and
    // the kernel's local route for it) still exists, then the address goes.
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    const IpAddress vip = ip("10.96.2.1");
    const IpAddress other = ip("10.96.2.2");
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, {vip, other})));
    requireAllOk(rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Add, {vip})));
    CHECK(lines(sh("ip route show table local proto 75")).size() == 1);
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Delete, {vip})));
    std::string table = sh("ip route show table local");
    INFO(table);
    CHECK(hasLine(table, "local 10.96.2.1 dev kube-ipvs0 proto 75 scope host "));
    CHECK_FALSE(contains(table, "local 10.96.2.1 dev kube-ipvs0 proto kernel"));
    CHECK(isLocal(vip));
    // Deleting our route leaves an address's route alone the other way round.
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, {vip})));
    requireAllOk(rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Delete, {vip})));
    CHECK(contains(sh("ip route show table local"), "local 10.96.2.1 dev kube-ipvs0 proto kernel"));
    CHECK(isLocal(vip));
}

TEST_CASE("removing the link's last IPv4 address flushes its local routes", "[kernel][route]") {
    // A kernel fact the route mode has to live with: when the last IPv4 address leaves a link,
    // the kernel disables IPv4 on it and drops every route through it, ours included. A
    // reconciler that deletes addresses must re-check its routes afterwards (localRoutes()).
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    requireAllOk(
        rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Add, {ip("10.96.4.1"), ip("10.96.4.2")})));
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, {ip("10.96.4.100")})));
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Delete, {ip("10.96.4.100")})));
    CHECK(lines(sh("ip route show table local proto 75")).empty());
    auto listed = rtnl->localRoutes(kLink);
    REQUIRE(succeeded(listed));
    CHECK(listed->empty());
    // Putting them back is an ordinary add.
    requireAllOk(
        rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Add, {ip("10.96.4.1"), ip("10.96.4.2")})));
    CHECK(lines(sh("ip route show table local proto 75")).size() == 2);
    CHECK(isLocal(ip("10.96.4.1")));
}

TEST_CASE("IPv6 local routes are refused on the down link, per op", "[kernel][route]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    auto r = rtnl->applyLocalRoutes(
        kLink, ops(AddressOpKind::Add, {ip("10.96.3.1"), ip("fd00::3"), ip("10.96.3.2")}));
    REQUIRE(r.size() == 3);
    CHECK(r[0].has_value());
    REQUIRE_FALSE(r[1].has_value());
    INFO(r[1].error().message);
    CHECK(r[1].error().code == std::errc::network_down);
    CHECK(r[1].error().message ==
          "add-local-route fd00::3/128 dev kube-ipvs0: Network is down: Nexthop device is not up");
    CHECK(r[2].has_value());
    CHECK(lines(sh("ip -6 route show table local proto 75")).empty());
    CHECK(lines(sh("ip route show table local proto 75")).size() == 2);
}

namespace {

// Sends `count` UDP datagrams to [dst]:port from network namespace `ns`, 200 ms apart (the
// first may wait for neighbour discovery), from a child process.
void sendFromNamespace(const std::string& ns, const std::string& dst, std::uint16_t port,
                       int count) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int nsfd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || ::setns(nsfd, CLONE_NEWNET) < 0) {
            ::_exit(1);
        }
        const int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
        sockaddr_in6 to{};
        to.sin6_family = AF_INET6;
        to.sin6_port = htons(port);
        ::inet_pton(AF_INET6, dst.c_str(), &to.sin6_addr);
        for (int i = 0; i < count; ++i) {
            ::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
            ::usleep(200'000);
        }
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
}

// The destination address of the first datagram a wildcard IPv6 socket on `port` receives
// within `wait`, or "" if none arrives.
class Receiver6 {
  public:
    explicit Receiver6(std::uint16_t port) {
        fd_ = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        int one = 1;
        ::setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
        sockaddr_in6 any{};
        any.sin6_family = AF_INET6;
        any.sin6_port = htons(port);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&any), sizeof any) == 0);
    }
    ~Receiver6() { ::close(fd_); }
    Receiver6(const Receiver6&) = delete;
    Receiver6& operator=(const Receiver6&) = delete;

    std::string next(int waitMs) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, waitMs) <= 0) {
            return {};
        }
        std::array<char, 64> data{};
        iovec iov{data.data(), data.size()};
        alignas(cmsghdr) std::array<char, 256> control{};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        if (::recvmsg(fd_, &msg, 0) < 0) {
            return {};
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                in6_pktinfo info{};
                std::memcpy(&info, CMSG_DATA(c), sizeof info);
                return IpAddress::fromBytes(Family::V6, &info.ipi6_addr).toString();
            }
        }
        return "?";
    }
    void drain() {
        while (!next(0).empty()) {
        }
    }

  private:
    int fd_ = -1;
};

}  // namespace

TEST_CASE("IPv6 local routes through lo deliver the VIP's traffic locally", "[kernel][route]") {
    // The IPv6 form of the route mode: kube-ipvs0 is down, so the route goes through lo.
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    const IpAddress vip = ip("fd00::5");
    requireAllOk(rtnl->applyLocalRoutes("lo", ops(AddressOpKind::Add, {vip})));
    requireAllOk(rtnl->applyLocalRoutes("lo", ops(AddressOpKind::Add, {vip})));
    CHECK(hasLine(sh("ip -6 route show table local"),
                  "local fd00::5 dev lo proto 75 metric 1024 pref medium"));
    auto listed = rtnl->localRoutes("lo");
    REQUIRE(succeeded(listed));
    CHECK(*listed == std::vector<IpAddress>{vip});
    // IPv6 bind() checks addresses, not routes: unlike IPv4, the VIP is not bindable.
    CHECK_FALSE(isLocal(vip));

    // But packets for it are delivered here, which is all IPVS needs (its LOCAL_IN hook).
    sh("ip netns add kipvs-peer");
    sh("ip link add veth-h type veth peer name veth-p netns kipvs-peer");
    sh("ip -6 addr add fd10::1/64 dev veth-h nodad && ip link set veth-h up");
    sh("ip -n kipvs-peer -6 addr add fd10::2/64 dev veth-p nodad");
    sh("ip -n kipvs-peer link set veth-p up && ip -n kipvs-peer -6 route add fd00::/64 via "
       "fd10::1");
    Receiver6 rx(7777);
    sendFromNamespace("kipvs-peer", "fd00::5", 7777, 3);
    CHECK(rx.next(2000) == "fd00::5");
    rx.drain();

    requireAllOk(rtnl->applyLocalRoutes("lo", ops(AddressOpKind::Delete, {vip})));
    CHECK(lines(sh("ip -6 route show table local proto 75")).empty());
    sendFromNamespace("kipvs-peer", "fd00::5", 7777, 2);
    CHECK(rx.next(1000).empty());
    sh("ip netns delete kipvs-peer");
}

TEST_CASE("large batches of addresses and local routes", "[kernel][addr][route]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    constexpr std::uint32_t n = 5000;
    const auto v4 = range(Family::V4, n);
    // IPv6 address deletes are slow in the kernel (see the benchmarks); fewer of them.
    const auto v6 = range(Family::V6, 2000);

    auto t0 = std::chrono::steady_clock::now();
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, v4)));
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Add, v6)));
    const auto addTime = std::chrono::steady_clock::now() - t0;
    CHECK(lines(sh("ip -4 -o addr show dev " + kLink)).size() == n);
    CHECK(lines(sh("ip -6 -o addr show dev " + kLink)).size() == v6.size());
    CHECK(lines(sh("ip route show table local dev " + kLink)).size() == n);
    auto listed = rtnl->addresses(kLink);
    REQUIRE(succeeded(listed));
    CHECK(listed->size() == v4.size() + v6.size());

    t0 = std::chrono::steady_clock::now();
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Delete, v4)));
    requireAllOk(rtnl->apply(kLink, ops(AddressOpKind::Delete, v6)));
    const auto delTime = std::chrono::steady_clock::now() - t0;
    CHECK(lines(sh("ip -o addr show dev " + kLink)).empty());

    const auto routes = range(Family::V4, n, 20000);
    t0 = std::chrono::steady_clock::now();
    requireAllOk(rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Add, routes)));
    const auto routeTime = std::chrono::steady_clock::now() - t0;
    CHECK(lines(sh("ip route show table local proto 75")).size() == n);
    auto ours = rtnl->localRoutes(kLink);
    REQUIRE(succeeded(ours));
    CHECK(sorted(*ours) == sorted(routes));
    requireAllOk(rtnl->applyLocalRoutes(kLink, ops(AddressOpKind::Delete, routes)));
    CHECK(lines(sh("ip route show table local proto 75")).empty());
    std::cerr << "# " << n << " IPv4 + " << v6.size() << " IPv6 address adds " << seconds(addTime)
              << " s, deletes " << seconds(delTime) << " s; " << n << " local route adds "
              << seconds(routeTime) << " s\n";
}

// ---------------------------------------------------------------------------------------------
// ipsets

namespace {

std::vector<SetEntry> sampleEntries(SetType t, Family f) {
    const bool v4 = f == Family::V4;
    const auto a = [&](const char* four, const char* six) { return ip(v4 ? four : six); };
    const auto c = [&](const char* four, const char* six) { return cidr(v4 ? four : six); };
    switch (t) {
        case SetType::HashIp:
            return {SetEntry::address(a("10.96.0.1", "fd00::1")),
                    SetEntry::address(a("10.96.0.2", "fd00::2"))};
        case SetType::HashIpPort:
            return {SetEntry::ipPort(a("10.96.0.1", "fd00::1"), Protocol::TCP, 443),
                    SetEntry::ipPort(a("10.96.0.10", "fd00::a"), Protocol::UDP, 53),
                    SetEntry::ipPort(a("192.168.1.5", "fd00::5"), Protocol::SCTP, 30000)};
        case SetType::HashIpPortIp:
            return {SetEntry::ipPortIp(a("10.244.1.7", "fd00:10::7"), Protocol::TCP, 8080,
                                       a("10.244.1.7", "fd00:10::7")),
                    SetEntry::ipPortIp(a("10.244.1.8", "fd00:10::8"), Protocol::UDP, 53,
                                       a("10.244.1.8", "fd00:10::8"))};
        case SetType::HashIpPortNet:
            return {SetEntry::ipPortNet(a("203.0.113.10", "2001:db8::10"), Protocol::TCP, 443,
                                        c("198.51.100.0/24", "2001:db8:1::/64")),
                    SetEntry::ipPortNet(a("203.0.113.10", "2001:db8::10"), Protocol::TCP, 443,
                                        c("10.1.2.3/32", "2001:db8:2::3/128"))};
        case SetType::HashNet:
            return {SetEntry::network(c("10.0.0.0/8", "fd00::/8")),
                    SetEntry::network(c("10.2.3.4/32", "2001:db8::1/128"))};
        case SetType::BitmapPort:
            return {SetEntry::portOnly(30080), SetEntry::portOnly(32767)};
    }
    return {};
}

std::vector<SetOp> setOps(SetOpKind kind, const std::vector<SetEntry>& entries) {
    std::vector<SetOp> out;
    for (const auto& e : entries) {
        out.push_back({kind, e});
    }
    return out;
}

// The members `ipset list NAME` prints, sorted.
std::vector<std::string> ipsetMembers(const std::string& name) {
    const auto all = lines(sh("ipset list " + name));
    std::vector<std::string> out;
    auto it = std::find(all.begin(), all.end(), "Members:");
    REQUIRE(it != all.end());
    out.assign(it + 1, all.end());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> texts(SetType t, const std::vector<SetEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) {
        out.push_back(e.toString(t));
    }
    std::sort(out.begin(), out.end());
    return out;
}

SetSpec spec(const std::string& name, SetType t, Family f = Family::V4) {
    SetSpec s;
    s.name = name;
    s.type = t;
    s.family = f;
    return s;
}

}  // namespace

TEST_CASE("every set type in both families: created once, members as ipset lists them",
          "[kernel][ipset]") {
    freshNamespace();
    auto ipset = openIpset();
    const SetType types[] = {SetType::HashIp,        SetType::HashIpPort, SetType::HashIpPortIp,
                             SetType::HashIpPortNet, SetType::HashNet,    SetType::BitmapPort};
    int i = 0;
    for (const auto t : types) {
        for (const auto f : {Family::V4, Family::V6}) {
            if (t == SetType::BitmapPort && f == Family::V6) {
                continue;  // bitmap:port has no family
            }
            const std::string name = "KIPVS-T" + std::to_string(i++);
            INFO(name << " " << setTypeName(t) << " " << net::familyName(f));
            REQUIRE(succeeded(ipset->create(spec(name, t, f))));
            // Exist-tolerant: the same create again is fine.
            REQUIRE(succeeded(ipset->create(spec(name, t, f))));

            const std::string header = sh("ipset list -t " + name);
            CHECK(contains(header, "Type: " + std::string(setTypeName(t)) + "\n"));
            if (t == SetType::BitmapPort) {
                CHECK(contains(header, "Header: range 0-65535"));
            } else {
                CHECK(contains(header, std::string("Header: family ") +
                                           (f == Family::V4 ? "inet" : "inet6") +
                                           " hashsize 1024 maxelem 65536 "));
            }
            CHECK_FALSE(contains(header, "comment"));

            const auto entries = sampleEntries(t, f);
            auto results = ipset->apply(name, t, setOps(SetOpKind::Add, entries));
            requireAllOk(results);
            // ipset's own listing: the same text as SetEntry::toString.
            CHECK(ipsetMembers(name) == texts(t, entries));
            // And ours, parsed back.
            auto listed = ipset->list(name);
            REQUIRE(succeeded(listed));
            auto want = entries;
            std::sort(want.begin(), want.end());
            std::sort(listed->begin(), listed->end());
            CHECK(*listed == want);

            auto info = ipset->info(name);
            REQUIRE(succeeded(info));
            REQUIRE(info->has_value());
            CHECK((*info)->type == t);
            CHECK((*info)->family == f);
            CHECK((*info)->maxElem == 65536);
            CHECK((*info)->entries == entries.size());
        }
    }
    auto names = ipset->setNames();
    REQUIRE(succeeded(names));
    CHECK(names->size() == static_cast<std::size_t>(i));
    CHECK(lines(sh("ipset list -n")).size() == static_cast<std::size_t>(i));
    auto missing = ipset->info("KIPVS-NOPE");
    REQUIRE(succeeded(missing));
    CHECK_FALSE(missing->has_value());
    auto missingList = ipset->list("KIPVS-NOPE");
    REQUIRE(failed(missingList));
    CHECK(missingList.error().message == "ipset list KIPVS-NOPE: the set does not exist");
    // The session is still usable after the failed dump.
    CHECK(succeeded(ipset->list(names->front())));
}

TEST_CASE("a same-named set of another type or family is an error naming both", "[kernel][ipset]") {
    freshNamespace();
    auto ipset = openIpset();
    REQUIRE(succeeded(ipset->create(spec("KUBE-CLUSTER-IP", SetType::HashIp))));
    auto r = ipset->create(spec("KUBE-CLUSTER-IP", SetType::HashIpPort));
    REQUIRE(failed(r));
    INFO(r.error().message);
    CHECK(r.error().message ==
          "ipset create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536: a "
          "set of that name exists with type hash:ip family inet");
    auto fam = ipset->create(spec("KUBE-CLUSTER-IP", SetType::HashIp, Family::V6));
    REQUIRE(failed(fam));
    CHECK(contains(fam.error().message, "family inet6"));
    CHECK(contains(fam.error().message, "exists with type hash:ip family inet"));
    // A set kube-ipvs does not use is named too.
    sh("ipset create KIPVS-MAC hash:mac");
    auto mac = ipset->create(spec("KIPVS-MAC", SetType::HashIp));
    REQUIRE(failed(mac));
    CHECK(contains(mac.error().message, "exists with type hash:mac"));
    // Nothing was changed.
    CHECK(contains(sh("ipset list -t KUBE-CLUSTER-IP"), "Type: hash:ip\n"));
}

TEST_CASE("adds and deletes: present adds and absent deletes succeed, in large batches",
          "[kernel][ipset]") {
    freshNamespace();
    auto ipset = openIpset();
    const std::string name = "KUBE-CLUSTER-IP";
    REQUIRE(succeeded(ipset->create(spec(name, SetType::HashIpPort))));
    std::vector<SetEntry> entries;
    for (std::uint32_t i = 0; i < 3000; ++i) {
        entries.push_back(SetEntry::ipPort(nth(Family::V4, i),
                                           i % 2 ? Protocol::UDP : Protocol::TCP,
                                           static_cast<std::uint16_t>(1 + i % 1000)));
    }
    requireAllOk(ipset->apply(name, SetType::HashIpPort, setOps(SetOpKind::Add, entries)));
    CHECK(contains(sh("ipset list -t " + name), "Number of entries: 3000\n"));
    CHECK(ipsetMembers(name) == texts(SetType::HashIpPort, entries));

    // Again: already present, still success.
    requireAllOk(ipset->apply(name, SetType::HashIpPort, setOps(SetOpKind::Add, entries)));
    // Delete half, and some that were never there, interleaved with adds of present ones.
    std::vector<SetOp> mixed;
    for (std::uint32_t i = 0; i < 1500; ++i) {
        mixed.push_back({SetOpKind::Delete, entries[i]});
    }
    for (std::uint32_t i = 0; i < 10; ++i) {
        mixed.push_back({SetOpKind::Delete, SetEntry::ipPort(ip("10.255.0.1"), Protocol::TCP,
                                                             static_cast<std::uint16_t>(i))});
        mixed.push_back({SetOpKind::Add, entries[2000 + i]});
    }
    requireAllOk(ipset->apply(name, SetType::HashIpPort, mixed));
    const std::vector<SetEntry> rest(entries.begin() + 1500, entries.end());
    CHECK(ipsetMembers(name) == texts(SetType::HashIpPort, rest));

    REQUIRE(succeeded(ipset->flush(name)));
    CHECK(contains(sh("ipset list -t " + name), "Number of entries: 0\n"));
}

TEST_CASE("an add to a full set fails with libipset's message, the rest of the batch applies",
          "[kernel][ipset]") {
    freshNamespace();
    auto ipset = openIpset();
    const std::string name = "KIPVS-FULL";
    SetSpec s = spec(name, SetType::HashIp);
    s.maxElem = 4;
    REQUIRE(succeeded(ipset->create(s)));
    CHECK(contains(sh("ipset list -t " + name), "maxelem 4 "));

    std::vector<SetOp> batch;
    for (int i = 1; i <= 5; ++i) {
        batch.push_back({SetOpKind::Add, SetEntry::address(ip("10.0.0." + std::to_string(i)))});
    }
    batch.push_back({SetOpKind::Add, SetEntry::address(ip("10.0.0.2"))});  // present: fine
    batch.push_back({SetOpKind::Delete, SetEntry::address(ip("10.0.0.1"))});
    batch.push_back({SetOpKind::Add, SetEntry::address(ip("10.0.0.6"))});  // room again
    batch.push_back({SetOpKind::Add, SetEntry::address(ip("10.0.0.7"))});  // full again
    batch.push_back({SetOpKind::Add, SetEntry::address(ip("fd00::1"))});   // wrong family
    batch.push_back({SetOpKind::Delete, SetEntry::address(ip("10.0.0.3"))});

    auto r = ipset->apply(name, SetType::HashIp, batch);
    REQUIRE(r.size() == batch.size());
    for (std::size_t i : {0U, 1U, 2U, 3U, 5U, 6U, 7U, 10U}) {
        INFO("op " << i << ": " << (r[i] ? "" : r[i].error().message));
        CHECK(r[i].has_value());
    }
    REQUIRE_FALSE(r[4].has_value());
    CHECK(r[4].error().message ==
          "ipset add KIPVS-FULL 10.0.0.5: Hash is full, cannot add more elements");
    REQUIRE_FALSE(r[8].has_value());
    CHECK(r[8].error().message ==
          "ipset add KIPVS-FULL 10.0.0.7: Hash is full, cannot add more elements");
    REQUIRE_FALSE(r[9].has_value());
    CHECK(contains(r[9].error().message, "ipset add KIPVS-FULL fd00::1: "));
    CHECK(ipsetMembers(name) == std::vector<std::string>{"10.0.0.2", "10.0.0.4", "10.0.0.6"});
}

// libipset keeps one cache of set name -> type for the whole process, without a lock, and
// ending any session frees it. The verifier's thread used to open and close a LibIpset of its
// own on every pass while the io thread's applies read that cache.
TEST_CASE("one LibIpset at a time; set listings on another thread go around libipset",
          "[kernel][ipset]") {
    freshNamespace();
    auto ipset = openIpset();
    auto second = LibIpset::open();
    REQUIRE(failed(second));
    CHECK(contains(second.error().message, "another session is open in this process"));

    const std::string name = "KIPVS-SHARED";
    REQUIRE(succeeded(ipset->create(spec(name, SetType::HashIpPort))));
    std::vector<SetEntry> entries;
    for (int i = 0; i < 200; ++i) {
        entries.push_back(SetEntry::ipPort(
            ip("10.96." + std::to_string(i / 100) + "." + std::to_string(i % 100 + 1)),
            ipvs::Protocol::TCP, 80));
    }
    std::atomic<bool> done{false};
    std::atomic<int> listings{0};
    std::string otherError;
    std::thread other([&] {
        while (!done.load()) {
            auto lister = NetlinkIpsetLister::open();
            if (!lister) {
                otherError = lister.error().message;
                return;
            }
            // A listing may fall between the messages of a batch: any count, but no error.
            auto members = (*lister)->list(name);
            if (!members) {
                otherError = members.error().message;
                return;
            }
            ++listings;
        }
    });
    int failures = 0;
    for (int round = 0; round < 100; ++round) {
        const auto kind = round % 2 == 0 ? SetOpKind::Add : SetOpKind::Delete;
        for (const auto& r : ipset->apply(name, SetType::HashIpPort, setOps(kind, entries))) {
            failures += r ? 0 : 1;
        }
    }
    done = true;
    other.join();
    CHECK(otherError.empty());
    CHECK(listings.load() > 0);
    CHECK(failures == 0);
    CHECK(ipsetMembers(name).empty());  // an even number of rounds: the last one deleted

    // Closing the open one lets the next open.
    ipset.reset();
    CHECK(succeeded(LibIpset::open()));
}

TEST_CASE("swap, destroy and a set of another type than asked for", "[kernel][ipset]") {
    freshNamespace();
    auto ipset = openIpset();
    REQUIRE(succeeded(ipset->create(spec("KIPVS-A", SetType::HashIp))));
    REQUIRE(succeeded(ipset->create(spec("KIPVS-B", SetType::HashIp))));
    requireAllOk(ipset->apply("KIPVS-A", SetType::HashIp,
                              setOps(SetOpKind::Add, {SetEntry::address(ip("10.0.0.1"))})));
    requireAllOk(ipset->apply("KIPVS-B", SetType::HashIp,
                              setOps(SetOpKind::Add, {SetEntry::address(ip("10.0.0.2")),
                                                      SetEntry::address(ip("10.0.0.3"))})));
    REQUIRE(succeeded(ipset->swap("KIPVS-A", "KIPVS-B")));
    CHECK(ipsetMembers("KIPVS-A") == std::vector<std::string>{"10.0.0.2", "10.0.0.3"});
    CHECK(ipsetMembers("KIPVS-B") == std::vector<std::string>{"10.0.0.1"});

    // Entries for the wrong set type are refused before they reach the kernel.
    auto wrong =
        ipset->apply("KIPVS-A", SetType::HashIpPort,
                     setOps(SetOpKind::Add, {SetEntry::ipPort(ip("10.0.0.9"), Protocol::TCP, 80)}));
    REQUIRE(wrong.size() == 1);
    REQUIRE_FALSE(wrong[0].has_value());
    CHECK(wrong[0].error().message ==
          "ipset add KIPVS-A 10.0.0.9,tcp:80: set has type hash:ip, not hash:ip,port");
    auto absent = ipset->apply("KIPVS-NOPE", SetType::HashIp,
                               setOps(SetOpKind::Add, {SetEntry::address(ip("10.0.0.9"))}));
    REQUIRE_FALSE(absent[0].has_value());
    CHECK(absent[0].error().message ==
          "ipset add KIPVS-NOPE 10.0.0.9: The set with the given name does not exist");

    // Someone recreates a set with another type behind our back: libipset's cached type must
    // not be used for it.
    sh("ipset destroy KIPVS-B && ipset create KIPVS-B hash:ip,port");
    requireAllOk(ipset->apply(
        "KIPVS-B", SetType::HashIpPort,
        setOps(SetOpKind::Add, {SetEntry::ipPort(ip("10.0.0.9"), Protocol::TCP, 80)})));
    CHECK(ipsetMembers("KIPVS-B") == std::vector<std::string>{"10.0.0.9,tcp:80"});

    REQUIRE(succeeded(ipset->destroy("KIPVS-A")));
    CHECK_FALSE(contains(sh("ipset list -n"), "KIPVS-A"));
    REQUIRE(succeeded(ipset->destroy("KIPVS-A")));  // missing: success

    // A set in use by an iptables rule cannot go; the error says why.
    sh("iptables-nft -A INPUT -m set --match-set KIPVS-B dst,dst -j ACCEPT");
    auto busy = ipset->destroy("KIPVS-B");
    REQUIRE(failed(busy));
    CHECK(busy.error().message ==
          "ipset destroy KIPVS-B: Set cannot be destroyed: it is in use by a kernel component");
}

// ---------------------------------------------------------------------------------------------
// iptables, both backends

namespace {

// iptables-legacy loads its modules with modprobe from the guest's module tree; the guest's
// root is the host's, whose /lib/modules belongs to another kernel.
void loadLegacyModules() {
    const char* cache = std::getenv("KUBE_IPVS_VM_CACHE");
    utsname u{};
    REQUIRE(::uname(&u) == 0);
    const std::string dir =
        std::string(cache != nullptr ? cache : "/var/cache/kube-ipvs-vm") + "/" + u.release;
    sh("modprobe -d " + dir +
       " -a ip_tables iptable_nat iptable_filter ip6_tables ip6table_nat ip6table_filter");
}

const std::vector<std::string_view> kAllSets = {
    names::kSetLoopBack,
    names::kSetClusterIp,
    names::kSetExternalIp,
    names::kSetExternalIpLocal,
    names::kSetLoadBalancer,
    names::kSetLoadBalancerLocal,
    names::kSetLoadBalancerFw,
    names::kSetLoadBalancerSourceCidr,
    names::kSetLoadBalancerSourceIp,
    names::kSetNodePortTcp,
    names::kSetNodePortLocalTcp,
    names::kSetNodePortUdp,
    names::kSetNodePortLocalUdp,
    names::kSetNodePortSctp,
    names::kSetNodePortLocalSctp,
    names::kSetHealthCheckNodePort,
    names::kSetIpvsIps,
};

SetType typeOf(std::string_view set) {
    if (set == names::kSetLoopBack || set == names::kSetLoadBalancerSourceIp) {
        return SetType::HashIpPortIp;
    }
    if (set == names::kSetLoadBalancerSourceCidr) {
        return SetType::HashIpPortNet;
    }
    if (set == names::kSetNodePortTcp || set == names::kSetNodePortLocalTcp ||
        set == names::kSetNodePortUdp || set == names::kSetNodePortLocalUdp ||
        set == names::kSetHealthCheckNodePort) {
        return SetType::BitmapPort;
    }
    if (set == names::kSetIpvsIps) {
        return SetType::HashIp;
    }
    return SetType::HashIpPort;
}

// The rules reference every set of the family, so they must exist for the restore.
void createAllSets(Ipset& ipset, Family f) {
    for (auto base : kAllSets) {
        REQUIRE(succeeded(ipset.create(spec(names::setName(base, f), typeOf(base), f))));
    }
}

RulesInput rulesInput(Family f) {
    RulesInput in;
    in.family = f;
    in.localDetector.kind = LocalDetector::Kind::Cidr;
    in.localDetector.cidr = cidr(f == Family::V4 ? "10.244.0.0/16" : "fd00:10:244::/64");
    for (auto s : kAllSets) {
        in.nonEmptySets.insert(std::string(s));
    }
    in.noNodeAccess.push_back(
        {ip(f == Family::V4 ? "203.0.113.10" : "2001:db8::10"), Protocol::TCP, 443});
    return in;
}

// "-A CHAIN" lines per chain of a payload or of iptables-save output.
std::map<std::string, int> rulesPerChain(const std::string& text) {
    std::map<std::string, int> out;
    for (const auto& l : lines(text)) {
        if (l.starts_with("-A KUBE-")) {
            ++out[l.substr(3, l.find(' ', 3) - 3)];
        }
    }
    return out;
}

std::vector<std::string> chainRules(const std::string& save, const std::string& chain) {
    std::vector<std::string> out;
    for (const auto& l : lines(save)) {
        if (l.starts_with("-A " + chain + " ")) {
            out.push_back(l);
        }
    }
    return out;
}

void checkBackend(const std::string& backend) {
    auto ipset = openIpset();
    createAllSets(*ipset, Family::V4);
    createAllSets(*ipset, Family::V6);
    ExecIptables ipt(ExecIptablesConfig::forBackend(backend));
    const std::string tool = "iptables-" + backend;
    IptablesSync sync(ipt);
    const RulesInput in = rulesInput(Family::V4);

    auto r = sync.sync(in);
    REQUIRE(succeeded(r));
    CHECK(r->restored);
    CHECK(r->jumpRulesInserted == 9);

    const std::string nat = sh(tool + "-save -t nat");
    const std::string filter = sh(tool + "-save -t filter");
    INFO(nat << filter);
    // Every rule of the payload is in place, chain by chain.
    const auto want = rulesPerChain(buildRestorePayload(in));
    auto have = rulesPerChain(nat);
    for (const auto& [chain, count] : rulesPerChain(filter)) {
        have[chain + "@filter"] = count;
    }
    for (const auto& [chain, count] : want) {
        const bool both = chain == "KUBE-NODE-PORT";  // nat and filter each have one
        if (!both) {
            CHECK((have[chain] + have[chain + "@filter"]) == count);
        }
    }
    CHECK(have["KUBE-NODE-PORT"] == 6);
    CHECK(have["KUBE-NODE-PORT@filter"] == 1);
    // A few rules as iptables-save prints them.
    CHECK(hasLine(nat,
                  "-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment \"Kubernetes "
                  "service cluster ip + port for masquerade purpose\" -m set --match-set "
                  "KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"));
    CHECK(hasLine(nat, "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"));
    CHECK(hasLine(nat,
                  "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic "
                  "requiring SNAT\" -j MASQUERADE --random-fully"));
    CHECK(hasLine(filter,
                  "-A KUBE-IPVS-OUT-FILTER -s 203.0.113.10/32 -m ipvs --vproto 6 "
                  "--vaddr 203.0.113.10 --vport 443 -j DROP"));
    CHECK(hasLine(filter,
                  "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set "
                  "KUBE-IPVS-IPS dst -j REJECT --reject-with icmp-port-unreachable"));
    // Jump rules, in kube-proxy's order.
    CHECK(chainRules(filter, "INPUT") ==
          std::vector<std::string>{
              "-A INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER",
              "-A INPUT -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL",
              "-A INPUT -m comment --comment \"kubernetes health check rules\" -j KUBE-NODE-PORT"});
    CHECK(
        chainRules(filter, "FORWARD") ==
        std::vector<std::string>{
            "-A FORWARD -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL",
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"});
    CHECK(chainRules(nat, "PREROUTING") ==
          std::vector<std::string>{"-A PREROUTING -m comment --comment \"kubernetes service "
                                   "portals\" -j KUBE-SERVICES"});
    CHECK(missingJumpRules(nat + filter).empty());

    // Unchanged input: no restore.
    auto again = sync.sync(in);
    REQUIRE(succeeded(again));
    CHECK_FALSE(again->restored);
    auto clean = sync.verify(Family::V4);
    REQUIRE(succeeded(clean));
    CHECK_FALSE(*clean);

    // A jump rule deleted by hand: seen, and put back.
    sh(tool +
       " -D INPUT -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL");
    auto changed = sync.verify(Family::V4);
    REQUIRE(succeeded(changed));
    CHECK(*changed);
    auto fixed = sync.sync(in);
    REQUIRE(succeeded(fixed));
    CHECK(fixed->restored);
    CHECK(fixed->jumpRulesInserted == 1);
    CHECK(contains(sh(tool + "-save -t filter"),
                   "-A INPUT -m comment --comment \"kube-proxy firewall rules\" -j "
                   "KUBE-PROXY-FIREWALL"));
    clean = sync.verify(Family::V4);
    REQUIRE(succeeded(clean));
    CHECK_FALSE(*clean);

    // A rule added to one of our chains by hand: seen, and rewritten away.
    sh(tool + " -t nat -A KUBE-MARK-MASQ -j RETURN");
    changed = sync.verify(Family::V4);
    REQUIRE(succeeded(changed));
    CHECK(*changed);
    fixed = sync.sync(in);
    REQUIRE(succeeded(fixed));
    CHECK(fixed->restored);
    CHECK(chainRules(sh(tool + "-save -t nat"), "KUBE-MARK-MASQ") ==
          std::vector<std::string>{"-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"});

    // Other components' rules survive our restores (--noflush).
    sh(tool + " -A INPUT -p tcp --dport 22 -j ACCEPT");
    RulesInput changedIn = in;
    changedIn.noNodeAccess.clear();
    auto rewritten = sync.sync(changedIn);
    REQUIRE(succeeded(rewritten));
    CHECK(rewritten->restored);
    const std::string after = sh(tool + "-save -t filter");
    CHECK(contains(after, "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"));
    CHECK(chainRules(after, "KUBE-IPVS-OUT-FILTER").empty());

    // IPv6 through ip6tables, with its own sync.
    ExecIptables ipt6(ExecIptablesConfig::forBackend(backend));
    IptablesSync sync6(ipt6);
    auto r6 = sync6.sync(rulesInput(Family::V6));
    REQUIRE(succeeded(r6));
    CHECK(r6->jumpRulesInserted == 9);
    const std::string nat6 = sh("ip6tables-" + backend + "-save -t nat");
    const std::string filter6 = sh("ip6tables-" + backend + "-save -t filter");
    CHECK(hasLine(nat6, "-A KUBE-SERVICES -s ::1/128 -j RETURN"));
    CHECK(contains(nat6, "--match-set KUBE-6-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"));
    CHECK(hasLine(filter6,
                  "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set "
                  "KUBE-6-IPVS-IPS dst -j REJECT --reject-with icmp6-port-unreachable"));
    CHECK(missingJumpRules(nat6 + filter6).empty());
    // The IPv4 rules are untouched by the IPv6 sync.
    auto v4clean = sync.verify(Family::V4);
    REQUIRE(succeeded(v4clean));
    CHECK_FALSE(*v4clean);

    // A refused payload: the error carries iptables-restore's complaint.
    auto bad = ipt.restore(Family::V4, "*nat\n-A KIPVS-NO-SUCH-CHAIN -j RETURN\nCOMMIT\n");
    REQUIRE(failed(bad));
    INFO(bad.error().message);
    CHECK(bad.error().message.starts_with("iptables-" + backend + "-restore: exit status "));
    CHECK(contains(bad.error().message, "line"));
}

}  // namespace

TEST_CASE("iptables through the nf_tables backend", "[kernel][iptables]") {
    freshNamespace();
    checkBackend("nft");
}

TEST_CASE("iptables through the legacy backend", "[kernel][iptables]") {
    freshNamespace();
    loadLegacyModules();
    checkBackend("legacy");
}

// ---------------------------------------------------------------------------------------------
// Descriptors

namespace {

// Read in-process: a listing through a shell would count the pipe it reads from, whose number
// the next socket then reuses.
std::set<int> openDescriptors() {
    std::set<int> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    REQUIRE(dir != nullptr);
    const int self = ::dirfd(dir);
    while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] != '.' && std::atoi(e->d_name) != self) {
            fds.insert(std::atoi(e->d_name));
        }
    }
    ::closedir(dir);
    return fds;
}

}  // namespace

TEST_CASE("every descriptor the host layer keeps is close-on-exec", "[kernel]") {
    // libipset's socket comes from libmnl without close-on-exec; LibIpset marks it.
    freshNamespace();
    const auto before = openDescriptors();
    auto rtnl = openRtnl();
    auto ipset = openIpset();
    auto ct = NetfilterConntrack::open();
    REQUIRE(succeeded(ct));
    REQUIRE(succeeded(ipset->setNames()));
    // A failed command replaces libipset's session, and with it its socket; a failed listing
    // (our own netlink socket) leaves nothing behind.
    REQUIRE(failed(ipset->swap("KIPVS-NOPE", "KIPVS-NOPE2")));
    REQUIRE(failed(ipset->list("KIPVS-NOPE")));
    REQUIRE(succeeded(ipset->create(spec("KIPVS-FD", SetType::HashIp))));
    std::size_t added = 0;
    for (const int fd : openDescriptors()) {
        if (before.contains(fd)) {
            continue;
        }
        const int flags = ::fcntl(fd, F_GETFD);
        REQUIRE(flags >= 0);
        ++added;
        INFO("fd " << fd << " -> "
                   << sh("readlink /proc/" + std::to_string(::getpid()) + "/fd/" +
                         std::to_string(fd)));
        CHECK((flags & FD_CLOEXEC) != 0);
    }
    CHECK(added == 4);  // rtnetlink, libipset's session, LibIpset's listings, ctnetlink
}

// ---------------------------------------------------------------------------------------------
// sysctls

TEST_CASE("the IPVS sysctls are applied through /proc/sys", "[kernel][sysctl]") {
    freshNamespace();
    // Loads ip_vs (its sysctls appear per namespace once it is loaded).
    sh("ipvsadm -Ln");
    ProcSysctl sys;
    const std::vector<SysctlSetting> settings{{"net/ipv4/vs/conntrack", "1"},
                                              {"net/ipv4/vs/expire_nodest_conn", "1"},
                                              {"net/ipv4/vs/expire_quiescent_template", "1"},
                                              {"net/ipv4/ip_forward", "1"}};
    // What differs now, by sysctl(8).
    std::vector<std::string> differ;
    for (const auto& s : settings) {
        std::string key = s.key;
        std::replace(key.begin(), key.end(), '/', '.');
        auto v = sh("sysctl -n " + key);
        if (v != s.value + "\n") {
            differ.push_back(s.key);
        }
    }
    REQUIRE_FALSE(differ.empty());  // a fresh namespace has conntrack=0, ip_forward=0
    auto changed = applySysctls(sys, settings);
    REQUIRE(succeeded(changed));
    CHECK(*changed == differ);
    for (const auto& s : settings) {
        std::string key = s.key;
        std::replace(key.begin(), key.end(), '/', '.');
        CHECK(sh("sysctl -n " + key) == s.value + "\n");
    }
    auto again = applySysctls(sys, settings);
    REQUIRE(succeeded(again));
    CHECK(again->empty());
}

TEST_CASE("a scheduler the kernel loaded for a virtual server shows in /sys/module",
          "[kernel][sysctl]") {
    // The daemon skips its scheduler check (a full dump of the virtual servers) when this holds.
    freshNamespace();
    sh("ipvsadm -A -t 10.0.0.1:80 -s wlc");
    CHECK(ipvsSchedulerLoaded("wlc"));
    CHECK_FALSE(ipvsSchedulerLoaded("nosuchscheduler"));
    sh("ipvsadm -D -t 10.0.0.1:80");
}

// ---------------------------------------------------------------------------------------------
// conntrack

namespace {

// A UDP echo server in network namespace `ns`, on `port` of each of `addresses`, in a child
// process. One socket per address, so that each reply leaves from the address the request
// went to (a wildcard socket would answer from the link's primary address, which is another
// flow as far as conntrack is concerned).
class EchoServer {
  public:
    EchoServer(const std::string& ns, const std::vector<std::string>& addresses,
               std::uint16_t port) {
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            serve(ns, addresses, port);
        }
    }
    ~EchoServer() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    EchoServer(const EchoServer&) = delete;
    EchoServer& operator=(const EchoServer&) = delete;

  private:
    [[noreturn]] static void serve(const std::string& ns, const std::vector<std::string>& addresses,
                                   std::uint16_t port) {
        const int nsfd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || ::setns(nsfd, CLONE_NEWNET) < 0) {
            ::_exit(1);
        }
        std::vector<pollfd> fds;
        for (const auto& a : addresses) {
            const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
            sockaddr_in sin{};
            sin.sin_family = AF_INET;
            sin.sin_port = htons(port);
            ::inet_pton(AF_INET, a.c_str(), &sin.sin_addr);
            if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) < 0) {
                ::_exit(1);
            }
            fds.push_back({fd, POLLIN, 0});
        }
        std::array<char, 512> buf{};
        for (;;) {
            if (::poll(fds.data(), fds.size(), -1) <= 0) {
                continue;
            }
            for (const auto& p : fds) {
                if ((p.revents & POLLIN) == 0) {
                    continue;
                }
                sockaddr_in from{};
                socklen_t len = sizeof from;
                const ssize_t n = ::recvfrom(p.fd, buf.data(), buf.size(), 0,
                                             reinterpret_cast<sockaddr*>(&from), &len);
                if (n > 0) {
                    ::sendto(p.fd, buf.data(), static_cast<std::size_t>(n), 0,
                             reinterpret_cast<sockaddr*>(&from), len);
                }
            }
        }
    }
    pid_t pid_ = -1;
};

// Sends one datagram from 10.10.0.1:sport to dst:dport and waits for the echo.
bool udpRoundTrip(std::uint16_t sport, const char* dst, std::uint16_t dport) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_port = htons(sport);
    ::inet_pton(AF_INET, "10.10.0.1", &src.sin_addr);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(dport);
    ::inet_pton(AF_INET, dst, &to.sin_addr);
    const char msg[] = "ping";
    const bool sent = ::sendto(fd, msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&to),
                               sizeof to) == static_cast<ssize_t>(sizeof msg);
    std::array<char, 64> buf{};
    const bool echoed = sent && ::recv(fd, buf.data(), buf.size(), 0) > 0;
    ::close(fd);
    return echoed;
}

}  // namespace

TEST_CASE("UDP conntrack entries are deleted by predicate and only those", "[kernel][conntrack]") {
    freshNamespace();
    // A "service" 10.96.0.10:53/UDP DNATed to two "endpoints" in a server namespace on a veth
    // pair: source ports 40000-40009 go to 10.10.0.2, 40010-40019 to 10.10.0.3.
    sh("ip netns add kipvs-srv");
    sh("ip link add veth-h type veth peer name veth-s netns kipvs-srv");
    sh("ip addr add 10.10.0.1/24 dev veth-h && ip link set veth-h up");
    sh("ip -n kipvs-srv addr add 10.10.0.2/24 dev veth-s");
    sh("ip -n kipvs-srv addr add 10.10.0.3/24 dev veth-s");
    sh("ip -n kipvs-srv link set veth-s up && ip -n kipvs-srv link set lo up");
    sh("ip route add 10.96.0.0/16 dev veth-h");
    sh("iptables-nft -t nat -A OUTPUT -d 10.96.0.10 -p udp --dport 53 -m udp --sport "
       "40000:40009 -j DNAT --to-destination 10.10.0.2:5353");
    sh("iptables-nft -t nat -A OUTPUT -d 10.96.0.10 -p udp --dport 53 -m udp --sport "
       "40010:40019 -j DNAT --to-destination 10.10.0.3:5353");
    EchoServer server("kipvs-srv", {"10.10.0.2", "10.10.0.3"}, 5353);
    // Real flows, answered by the server (retried while it starts), each a conntrack entry
    // that saw its reply.
    for (std::uint16_t sport = 40000; sport < 40020; ++sport) {
        bool echoed = false;
        for (int attempt = 0; attempt < 5 && !echoed; ++attempt) {
            echoed = udpRoundTrip(sport, "10.96.0.10", 53);
        }
        INFO("source port " << sport);
        REQUIRE(echoed);
    }
    // And two entries the clean-up must not touch: TCP to the service, UDP elsewhere.
    sh("conntrack -I -p tcp -s 10.10.0.1 -d 10.96.0.10 --sport 40100 --dport 53 --state "
       "ESTABLISHED -u SEEN_REPLY -t 300");
    REQUIRE(udpRoundTrip(40200, "10.10.0.2", 5353));

    const auto count = [](const std::string& filter) {
        auto r = run("conntrack -L " + filter);
        return lines(r.out).size() - 1;  // the summary line ("flow entries have been shown")
    };
    REQUIRE(count("-p udp --orig-dst 10.96.0.10 --reply-src 10.10.0.2") == 10);
    REQUIRE(count("-p udp --orig-dst 10.96.0.10 --reply-src 10.10.0.3") == 10);
    REQUIRE(count("-p udp --status SEEN_REPLY") == 21);

    auto ct = NetfilterConntrack::open();
    REQUIRE(succeeded(ct));
    // Endpoint 10.10.0.2 went away: delete the service's flows it answered.
    const IpAddress vip = ip("10.96.0.10");
    const IpAddress gone = ip("10.10.0.2");
    std::vector<ConntrackEntry> seen;
    auto deleted = (*ct)->deleteMatching(Family::V4, Protocol::UDP, [&](const ConntrackEntry& e) {
        seen.push_back(e);
        return e.original.dst == vip && e.original.dstPort == 53 && e.reply.src == gone &&
               e.reply.srcPort == 5353;
    });
    REQUIRE(succeeded(deleted));
    CHECK(*deleted == 10);
    // The predicate saw every UDP entry of the family, decoded: 21 flows.
    CHECK(seen.size() == 21);
    const auto flow = std::find_if(seen.begin(), seen.end(), [](const ConntrackEntry& e) {
        return e.original.srcPort == 40003;
    });
    REQUIRE(flow != seen.end());
    CHECK(flow->protocol == Protocol::UDP);
    CHECK(flow->original.src == ip("10.10.0.1"));
    CHECK(flow->original.dst == vip);
    CHECK(flow->reply.src == gone);
    CHECK(flow->reply.dst == ip("10.10.0.1"));
    CHECK(flow->reply.dstPort == 40003);

    CHECK(count("-p udp --orig-dst 10.96.0.10 --reply-src 10.10.0.2") == 0);
    CHECK(count("-p udp --orig-dst 10.96.0.10 --reply-src 10.10.0.3") == 10);
    CHECK(count("-p udp --orig-dst 10.10.0.2") == 1);
    CHECK(count("-p tcp") == 1);

    // Nothing left to match: nothing deleted. The other family and protocol are never seen.
    auto none = (*ct)->deleteMatching(Family::V4, Protocol::UDP, [&](const ConntrackEntry& e) {
        return e.reply.src == gone && e.original.dst == vip;
    });
    REQUIRE(succeeded(none));
    CHECK(*none == 0);
    std::size_t v6seen = 0;
    auto v6 = (*ct)->deleteMatching(Family::V6, Protocol::UDP, [&](const ConntrackEntry&) {
        ++v6seen;
        return true;
    });
    REQUIRE(succeeded(v6));
    CHECK(*v6 == 0);
    CHECK(v6seen == 0);
    std::size_t sctpSeen = 0;
    auto sctp = (*ct)->deleteMatching(Family::V4, Protocol::SCTP, [&](const ConntrackEntry&) {
        ++sctpSeen;
        return true;
    });
    REQUIRE(succeeded(sctp));
    CHECK(sctpSeen == 0);
    CHECK(count("-p udp") == 11);
    sh("ip netns delete kipvs-srv");
}

// ---------------------------------------------------------------------------------------------
// Benchmarks: timings only, printed as TAP comments on stderr.

namespace {

std::string benchVips(RtnlAddresses& rtnl, const std::string& link, Family f, std::uint32_t n,
                      bool routes, bool remove = true) {
    const auto addrs = range(f, n);
    auto t0 = std::chrono::steady_clock::now();
    const auto add = routes ? rtnl.applyLocalRoutes(link, ops(AddressOpKind::Add, addrs))
                            : rtnl.apply(link, ops(AddressOpKind::Add, addrs));
    const auto addTime = std::chrono::steady_clock::now() - t0;
    requireAllOk(add);
    t0 = std::chrono::steady_clock::now();
    auto listed = routes ? rtnl.localRoutes(link) : rtnl.addresses(link);
    const auto listTime = std::chrono::steady_clock::now() - t0;
    REQUIRE(succeeded(listed));
    REQUIRE(listed->size() == n);
    std::ostringstream out;
    out << "# bench " << (routes ? "local routes" : "addresses") << " " << net::familyName(f)
        << " dev " << link << " n=" << n << ": add " << seconds(addTime) << " s, list "
        << seconds(listTime) << " s";
    if (remove) {
        t0 = std::chrono::steady_clock::now();
        const auto del = routes ? rtnl.applyLocalRoutes(link, ops(AddressOpKind::Delete, addrs))
                                : rtnl.apply(link, ops(AddressOpKind::Delete, addrs));
        const auto delTime = std::chrono::steady_clock::now() - t0;
        requireAllOk(del);
        out << ", delete " << seconds(delTime) << " s";
    }
    std::cerr << out.str() << "\n";
    return out.str();
}

}  // namespace

TEST_CASE("bench: VIPs as local routes, 10k and 44k", "[.bench][kernel]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    for (const std::uint32_t n : {10000U, 44000U}) {
        benchVips(*rtnl, kLink, Family::V4, n, true);
        benchVips(*rtnl, "lo", Family::V6, n, true);
    }
}

TEST_CASE("bench: IPv4 VIPs as addresses, 10k and 44k", "[.bench][kernel]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    for (const std::uint32_t n : {10000U, 44000U}) {
        benchVips(*rtnl, kLink, Family::V4, n, false);
    }
    // The same 10k with `ip -batch`: one request and one ack at a time.
    std::string batch;
    for (const auto& a : range(Family::V4, 10000)) {
        batch += "addr add " + a.toString() + "/32 dev kube-ipvs0\n";
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto r = runProcess({"ip", "-batch", "-"}, batch, 3000s);
    const auto ipTime = std::chrono::steady_clock::now() - t0;
    REQUIRE(succeeded(r));
    REQUIRE(r->exitStatus == 0);
    std::cerr << "# bench ip -batch addresses IPv4 n=10000: add " << seconds(ipTime) << " s\n";
}

TEST_CASE("bench: IPv6 VIPs as addresses, 10k", "[.bench][kernel]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    benchVips(*rtnl, kLink, Family::V6, 10000, false);
}

TEST_CASE("bench: IPv6 VIPs as addresses, 44k adds", "[.bench44k6][kernel]") {
    freshNamespace();
    auto rtnl = openRtnl();
    REQUIRE(succeeded(rtnl->ensureDummy(kLink)));
    benchVips(*rtnl, kLink, Family::V6, 44000, false, false);
}

TEST_CASE("bench: 40,000 ipset entries through LibIpset", "[.bench][kernel]") {
    freshNamespace();
    auto ipset = openIpset();
    SetSpec s = spec("KUBE-CLUSTER-IP", SetType::HashIpPort);
    REQUIRE(succeeded(ipset->create(s)));
    std::vector<SetEntry> entries;
    for (std::uint32_t i = 0; i < 40000; ++i) {
        entries.push_back(SetEntry::ipPort(nth(Family::V4, i), Protocol::TCP, 443));
    }
    auto t0 = std::chrono::steady_clock::now();
    requireAllOk(ipset->apply(s.name, s.type, setOps(SetOpKind::Add, entries)));
    std::cerr << "# bench ipset hash:ip,port n=40000: add "
              << seconds(std::chrono::steady_clock::now() - t0) << " s\n";
    t0 = std::chrono::steady_clock::now();
    auto listed = ipset->list(s.name);
    std::cerr << "# bench ipset hash:ip,port n=40000: list "
              << seconds(std::chrono::steady_clock::now() - t0) << " s\n";
    REQUIRE(succeeded(listed));
    REQUIRE(listed->size() == entries.size());
    t0 = std::chrono::steady_clock::now();
    requireAllOk(ipset->apply(s.name, s.type, setOps(SetOpKind::Delete, entries)));
    std::cerr << "# bench ipset hash:ip,port n=40000: delete "
              << seconds(std::chrono::steady_clock::now() - t0) << " s\n";
    // A listing without ports and protocols (hash:ip), for comparison.
    SetSpec ips = spec("KUBE-IPVS-IPS", SetType::HashIp);
    REQUIRE(succeeded(ipset->create(ips)));
    std::vector<SetEntry> addrs;
    for (std::uint32_t i = 0; i < 40000; ++i) {
        addrs.push_back(SetEntry::address(nth(Family::V4, i)));
    }
    requireAllOk(ipset->apply(ips.name, ips.type, setOps(SetOpKind::Add, addrs)));
    t0 = std::chrono::steady_clock::now();
    auto listedIps = ipset->list(ips.name);
    std::cerr << "# bench ipset hash:ip n=40000: list "
              << seconds(std::chrono::steady_clock::now() - t0) << " s\n";
    REQUIRE(succeeded(listedIps));
    REQUIRE(listedIps->size() == addrs.size());
    // kube-proxy's way: one `ipset add` exec per entry, for 100 of them.
    std::string script;
    for (std::uint32_t i = 0; i < 100; ++i) {
        script += "ipset add KUBE-CLUSTER-IP " + entries[i].toString(s.type) + " -exist\n";
    }
    t0 = std::chrono::steady_clock::now();
    auto r = runProcess({"/bin/sh", "-e"}, script, 600s);
    REQUIRE(succeeded(r));
    REQUIRE(r->exitStatus == 0);
    std::cerr << "# bench 100 `ipset add` execs " << seconds(std::chrono::steady_clock::now() - t0)
              << " s\n";
}
