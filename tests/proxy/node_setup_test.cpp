#include <catch2/catch.hpp>

#include "proxy/node_setup.h"
#include "tests/fakes/fake_kernel.h"

using namespace kipvs;
using namespace kipvs::proxy;
using namespace std::chrono_literals;

namespace {
std::vector<std::string> keys(const std::vector<ipvs::SysctlSetting>& s) {
    std::vector<std::string> out;
    for (const auto& x : s) {
        out.push_back(x.key + "=" + x.value);
    }
    return out;
}
}  // namespace

TEST_CASE("kernel releases parse to major.minor", "[node]") {
    CHECK(parseKernelRelease("6.1.0-56-amd64") == KernelVersion{6, 1});
    CHECK(parseKernelRelease("5.8.18") == KernelVersion{5, 8});
    CHECK_FALSE(parseKernelRelease("linux"));
}

TEST_CASE("IPVS sysctls follow kube-proxy, conn_reuse_mode only on 4.1 <= kernel < 5.9", "[node]") {
    Config c;
    CHECK(keys(proxySysctls(c, {6, 1})) ==
          std::vector<std::string>{"net/ipv4/vs/conntrack=1", "net/ipv4/vs/expire_nodest_conn=1",
                                   "net/ipv4/vs/expire_quiescent_template=1",
                                   "net/ipv4/ip_forward=1"});
    CHECK(keys(proxySysctls(c, {5, 8}))[1] == "net/ipv4/vs/conn_reuse_mode=0");
    CHECK(keys(proxySysctls(c, {4, 0})).size() == 4);
    c.ipvs.strictARP = true;
    const auto strict = keys(proxySysctls(c, {6, 1}));
    CHECK(strict[4] == "net/ipv4/conf/all/arp_ignore=1");
    CHECK(strict[5] == "net/ipv4/conf/all/arp_announce=2");
}

TEST_CASE("--ipvs-rate-estimation=false stops IPVS rate estimation where the kernel can",
          "[node]") {
    Config c;
    const std::string off = "net/ipv4/vs/run_estimation=0";
    auto has = [&](KernelVersion k) {
        const auto all = keys(proxySysctls(c, k));
        return std::find(all.begin(), all.end(), off) != all.end();
    };
    CHECK_FALSE(has({6, 1}));  // default: the node's setting stays
    c.rateEstimation = false;
    CHECK(has({6, 1}));
    CHECK(has({5, 16}));
    CHECK_FALSE(has({5, 15}));  // no such sysctl before 5.16
}

TEST_CASE("conntrack limits: max per core times CPUs, at least min", "[node]") {
    Config c;
    CHECK(keys(conntrackSysctls(c, 2)) ==
          std::vector<std::string>{"net/netfilter/nf_conntrack_max=131072",
                                   "net/netfilter/nf_conntrack_tcp_timeout_established=86400",
                                   "net/netfilter/nf_conntrack_tcp_timeout_close_wait=3600"});
    CHECK(keys(conntrackSysctls(c, 8))[0] == "net/netfilter/nf_conntrack_max=262144");
    c.conntrack.maxPerCore = 0;  // leave the limit alone
    c.conntrack.tcpEstablishedTimeout.reset();
    c.conntrack.tcpCloseWaitTimeout = Duration::zero();
    c.conntrack.udpTimeout = 30s;
    c.conntrack.tcpBeLiberal = true;
    CHECK(keys(conntrackSysctls(c, 8)) ==
          std::vector<std::string>{"net/netfilter/nf_conntrack_tcp_be_liberal=1",
                                   "net/netfilter/nf_conntrack_udp_timeout=30"});
}

TEST_CASE("sysctls are written only when they differ", "[node]") {
    fakes::FakeSysctl s;
    s.values = {{"net/ipv4/vs/conntrack", "1"},
                {"net/ipv4/vs/expire_nodest_conn", "0"},
                {"net/ipv4/vs/expire_quiescent_template", "1"},
                {"net/ipv4/ip_forward", "0"}};
    auto changed = ipvs::applySysctls(s, proxySysctls(Config{}, {6, 1}));
    REQUIRE(changed.has_value());
    CHECK(*changed ==
          std::vector<std::string>{"net/ipv4/vs/expire_nodest_conn", "net/ipv4/ip_forward"});
    CHECK(s.written == *changed);
    s.written.clear();
    REQUIRE(ipvs::applySysctls(s, proxySysctls(Config{}, {6, 1})).has_value());
    CHECK(s.written.empty());
}

TEST_CASE("IPVS timeouts only when configured", "[node]") {
    Config c;
    CHECK_FALSE(ipvsTimeouts(c));
    c.ipvs.udpTimeout = 5min;
    CHECK(ipvsTimeouts(c) == ipvs::Timeouts{0, 0, 300});
}
