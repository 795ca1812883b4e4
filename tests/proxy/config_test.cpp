#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "proxy/config.h"

using namespace kipvs::proxy;
using namespace std::chrono_literals;

namespace {

std::string errorOf(const std::vector<std::string>& args) {
    auto r = parseCommandLine(args);
    return r ? std::string("no error") : r.error().message;
}

struct TempFile {
    std::string path;
    explicit TempFile(const std::string& text) {
        char tmpl[] = "/tmp/kube-ipvs-config-XXXXXX";
        const int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        path = tmpl;
        std::ofstream(path) << text;
    }
    ~TempFile() { std::remove(path.c_str()); }
};

bool hasWarning(const Config& c, const std::string& needle) {
    for (const auto& w : c.warnings) {
        if (w.find(needle) != std::string::npos) {
            return true;
        }
    }
    return false;
}

}  // namespace

TEST_CASE("Go durations parse and print like Go's", "[config]") {
    CHECK(parseGoDuration("30s") == Duration(30s));
    CHECK(parseGoDuration("1m30s") == Duration(90s));
    CHECK(parseGoDuration("1.5h") == Duration(90min));
    CHECK(parseGoDuration("500ms") == Duration(500ms));
    CHECK(parseGoDuration("0") == Duration::zero());
    CHECK(parseGoDuration("-2s") == Duration(-2s));
    for (const char* bad : {"", "30", "s", "1x", "1..5s", "one second", "1h 30m"}) {
        INFO(bad);
        CHECK_FALSE(parseGoDuration(bad));
    }
    CHECK(formatGoDuration(30s) == "30s");
    CHECK(formatGoDuration(15min) == "15m0s");
    CHECK(formatGoDuration(24h) == "24h0m0s");
    CHECK(formatGoDuration(1500ms) == "1.5s");
    CHECK(formatGoDuration(Duration::zero()) == "0s");
    CHECK(formatGoDuration(250ms) == "250ms");
}

TEST_CASE("defaults are kube-proxy's", "[config]") {
    auto r = parseCommandLine({"--proxy-mode=ipvs"});
    REQUIRE(r.has_value());
    const auto& c = *r;
    CHECK(c.mode == "ipvs");
    CHECK(c.bindAddress == "0.0.0.0");
    CHECK(c.healthzBindAddress == "0.0.0.0:10256");
    CHECK(c.metricsBindAddress == "127.0.0.1:10249");
    CHECK(c.ipvs.syncPeriod == Duration(30s));
    CHECK(c.ipvs.minSyncPeriod == Duration::zero());
    CHECK(c.effectiveScheduler() == "rr");
    CHECK(c.iptables.masqueradeBit == 14);
    CHECK(c.clientConnection.qps == 5);
    CHECK(c.clientConnection.burst == 10);
    CHECK(c.conntrack.maxPerCore == 32768);
    CHECK(c.conntrack.min == 131072);
    CHECK(c.oomScoreAdj == -999);
    CHECK(c.configSyncPeriod == Duration(15min));
    CHECK(c.vipBinding == "address");
    CHECK_FALSE(c.serviceMetrics);
    CHECK(c.rateEstimation);
    CHECK(c.warnings.empty());
}

TEST_CASE("every IPVS-mode flag sets its field", "[config]") {
    auto r = parseCommandLine({"--proxy-mode",
                               "ipvs",
                               "--kubeconfig=/etc/kube/kc.yaml",
                               "--master",
                               "https://10.0.0.1:6443",
                               "--hostname-override=Node-A",
                               "--bind-address=10.0.0.5",
                               "--bind-address-hard-fail",
                               "--healthz-bind-address=10.0.0.5:10256",
                               "--metrics-bind-address=0.0.0.0:10249",
                               "--cluster-cidr=10.244.0.0/16,fd00:244::/56",
                               "--detect-local-mode=ClusterCIDR",
                               "--masquerade-all=true",
                               "--nodeport-addresses=10.0.0.0/8, 192.168.0.0/16",
                               "--iptables-masquerade-bit=15",
                               "--ipvs-scheduler=wlc",
                               "--ipvs-sync-period=1m",
                               "--ipvs-min-sync-period=2s",
                               "--ipvs-exclude-cidrs=10.200.0.0/16,10.201.0.0/16",
                               "--ipvs-strict-arp",
                               "--ipvs-tcp-timeout=15m",
                               "--ipvs-tcpfin-timeout=2m",
                               "--ipvs-udp-timeout=5m",
                               "--kube-api-qps=20",
                               "--kube-api-burst=40",
                               "--conntrack-max-per-core=0",
                               "--conntrack-min=1000",
                               "--conntrack-tcp-timeout-established=12h",
                               "--conntrack-tcp-timeout-close-wait=30m",
                               "--conntrack-tcp-be-liberal",
                               "--conntrack-udp-timeout=30s",
                               "--conntrack-udp-timeout-stream=2m",
                               "--oom-score-adj=-500",
                               "-v=4",
                               "--logging-format=json",
                               "--ipvs-vip-binding=route",
                               "--ipvs-service-metrics",
                               "--config-sync-period=10m"});
    REQUIRE(r.has_value());
    const auto& c = *r;
    CHECK(c.clientConnection.kubeconfig == "/etc/kube/kc.yaml");
    CHECK(c.master == "https://10.0.0.1:6443");
    CHECK(c.hostnameOverride == "Node-A");
    CHECK(c.bindAddress == "10.0.0.5");
    CHECK(c.bindAddressHardFail);
    CHECK(c.healthzBindAddress == "10.0.0.5:10256");
    CHECK(c.metricsBindAddress == "0.0.0.0:10249");
    CHECK(c.clusterCIDR == "10.244.0.0/16,fd00:244::/56");
    CHECK(c.iptables.masqueradeAll);
    CHECK(c.nodePortAddresses == std::vector<std::string>{"10.0.0.0/8", "192.168.0.0/16"});
    CHECK(c.iptables.masqueradeBit == 15);
    CHECK(c.ipvs.scheduler == "wlc");
    CHECK(c.ipvs.syncPeriod == Duration(1min));
    CHECK(c.ipvs.minSyncPeriod == Duration(2s));
    CHECK(c.ipvs.excludeCIDRs == std::vector<std::string>{"10.200.0.0/16", "10.201.0.0/16"});
    CHECK(c.ipvs.strictARP);
    CHECK(c.ipvs.tcpTimeout == Duration(15min));
    CHECK(c.ipvs.tcpFinTimeout == Duration(2min));
    CHECK(c.ipvs.udpTimeout == Duration(5min));
    CHECK(c.clientConnection.qps == 20);
    CHECK(c.clientConnection.burst == 40);
    CHECK(c.conntrack.maxPerCore == 0);
    CHECK(c.conntrack.min == 1000);
    CHECK(c.conntrack.tcpEstablishedTimeout == Duration(12h));
    CHECK(c.conntrack.tcpCloseWaitTimeout == Duration(30min));
    CHECK(c.conntrack.tcpBeLiberal);
    CHECK(c.conntrack.udpTimeout == Duration(30s));
    CHECK(c.conntrack.udpStreamTimeout == Duration(2min));
    CHECK(c.oomScoreAdj == -500);
    CHECK(c.logging.verbosity == 4);
    CHECK(c.logging.format == "json");
    CHECK(c.vipBinding == "route");
    CHECK(c.serviceMetrics);
    CHECK(c.configSyncPeriod == Duration(10min));
}

TEST_CASE("detect-local modes and the deprecated port flags", "[config]") {
    auto bridge = parseCommandLine({"--proxy-mode=ipvs", "--detect-local-mode=BridgeInterface",
                                    "--pod-bridge-interface=cbr0"});
    REQUIRE(bridge.has_value());
    CHECK(bridge->detectLocal.bridgeInterface == "cbr0");
    auto prefix = parseCommandLine({"--proxy-mode=ipvs", "--detect-local-mode=InterfaceNamePrefix",
                                    "--pod-interface-name-prefix=veth"});
    REQUIRE(prefix.has_value());
    CHECK(prefix->detectLocal.interfaceNamePrefix == "veth");
    auto ports = parseCommandLine({"--proxy-mode=ipvs", "--healthz-port=0", "--metrics-port=9999"});
    REQUIRE(ports.has_value());
    CHECK(ports->healthzBindAddress.empty());
    CHECK(ports->metricsBindAddress == "127.0.0.1:9999");
    // The deprecated port flags change the port only.
    auto hostKept = parseCommandLine(
        {"--proxy-mode=ipvs", "--healthz-bind-address=[::1]:10256", "--healthz-port=20256"});
    REQUIRE(hostKept.has_value());
    CHECK(hostKept->healthzBindAddress == "[::1]:20256");
    // Applied after every other flag, to the address the IPv6 bind address defaults to.
    auto late = parseCommandLine({"--proxy-mode=ipvs", "--healthz-port=20256",
                                  "--bind-address=fd00::5", "--metrics-port=0"});
    REQUIRE(late.has_value());
    CHECK(late->healthzBindAddress == "[::]:20256");
    CHECK(late->metricsBindAddress.empty());
    CHECK_FALSE(parseCommandLine({"--proxy-mode=ipvs", "--healthz-port=70000"}).has_value());
}

TEST_CASE("an IPv6 bind address moves the server defaults to IPv6", "[config]") {
    auto r = parseCommandLine({"--proxy-mode=ipvs", "--bind-address=fd00::5"});
    REQUIRE(r.has_value());
    CHECK(r->healthzBindAddress == "[::]:10256");
    CHECK(r->metricsBindAddress == "[::1]:10249");
}

TEST_CASE("flags that mean nothing in IPVS mode are accepted with a warning", "[config]") {
    auto r = parseCommandLine(
        {"--proxy-mode=ipvs", "--iptables-sync-period=10s", "--iptables-min-sync-period=1s",
         "--iptables-localhost-nodeports=false", "--proxy-port-range=30000-30010",
         "--feature-gates=Foo=true", "--show-hidden-metrics-for-version=1.29", "--vmodule=x=2",
         "--profiling"});
    REQUIRE(r.has_value());
    for (const char* flag :
         {"--iptables-sync-period", "--iptables-min-sync-period", "--iptables-localhost-nodeports",
          "--proxy-port-range", "--feature-gates", "--show-hidden-metrics-for-version", "--vmodule",
          "--profiling"}) {
        INFO(flag);
        CHECK(hasWarning(*r, std::string("flag ") + flag + " is ignored"));
    }
}

TEST_CASE("bad flags and values exit with a message naming the flag and value", "[config]") {
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-scheduler=foo"}) ==
          "--ipvs-scheduler: \"foo\" is not an IPVS scheduler (rr, wrr, lc, wlc, lblc, lblcr, "
          "dh, sh, sed, nq, fo, ovf, mh, twos)");
    CHECK(errorOf({"--proxy-mode=iptables"}) ==
          "--proxy-mode: \"iptables\" is not supported: kube-ipvs implements the ipvs proxy mode "
          "only");
    CHECK(errorOf({"--no-such-flag"}) == "unknown flag: --no-such-flag");
    CHECK(errorOf({"-proxy-mode=ipvs"}) ==
          "unknown flag: -proxy-mode=ipvs (long flags take two dashes)");
    CHECK(errorOf({"--kubeconfig"}) == "flag needs an argument: --kubeconfig");
    CHECK(errorOf({"stray"}) ==
          "unexpected argument \"stray\" (kube-ipvs takes flags only; see --help)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-sync-period=10"}) ==
          "--ipvs-sync-period: \"10\" is not a duration (for example 30s, 15m, 1h30m)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-sync-period=0s"}) ==
          "--ipvs-sync-period: \"0s\" must be greater than 0");
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-min-sync-period=1m"}) ==
          "--ipvs-min-sync-period: \"1m0s\" must be less than or equal to ipvs.syncPeriod (30s)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--masquerade-all=maybe"}) ==
          "--masquerade-all: \"maybe\" is not a boolean (true or false)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--iptables-masquerade-bit=32"}) ==
          "--iptables-masquerade-bit: \"32\" must be within [0, 31]");
    CHECK(errorOf({"--proxy-mode=ipvs", "--kube-api-burst=ten"}) ==
          "--kube-api-burst: \"ten\" is not a 32-bit integer");
    CHECK(errorOf({"--proxy-mode=ipvs", "--bind-address=1.2.3"}) ==
          "--bind-address: \"1.2.3\" is not an IP address");
    CHECK(errorOf({"--proxy-mode=ipvs", "--healthz-bind-address=0.0.0.0"}) ==
          "--healthz-bind-address: \"0.0.0.0\" is not ip:port");
    CHECK(errorOf({"--proxy-mode=ipvs", "--metrics-bind-address=127.0.0.1:99999"}) ==
          "--metrics-bind-address: \"127.0.0.1:99999\" is not ip:port");
    CHECK(errorOf({"--proxy-mode=ipvs", "--cluster-cidr=10.244.0.0/16,10.245.0.0/16"}) ==
          "--cluster-cidr: \"10.244.0.0/16,10.245.0.0/16\" has more than one CIDR of a family");
    CHECK(errorOf({"--proxy-mode=ipvs", "--cluster-cidr=10.244.0.0"}) ==
          "--cluster-cidr: \"10.244.0.0\" is not a CIDR");
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-exclude-cidrs=10.0.0.0/33"}) ==
          "--ipvs-exclude-cidrs: \"10.0.0.0/33\" is not a CIDR");
    CHECK(errorOf({"--proxy-mode=ipvs", "--nodeport-addresses=primary,10.0.0.0/8"}) ==
          "--nodeport-addresses: \"primary\" is not a CIDR (or 'primary' alone)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--detect-local-mode=Magic"}) ==
          "--detect-local-mode: \"Magic\" is not a local traffic detection mode (ClusterCIDR, "
          "NodeCIDR, BridgeInterface, InterfaceNamePrefix)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--detect-local-mode=BridgeInterface"}) ==
          "config.detectLocal.bridgeInterface: \"\" must name the pod bridge with "
          "detectLocalMode BridgeInterface");
    CHECK(errorOf({"--proxy-mode=ipvs", "--oom-score-adj=-1001"}) ==
          "--oom-score-adj: \"-1001\" must be within [-1000, 1000]");
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-udp-timeout=-5s"}) ==
          "--ipvs-udp-timeout: \"-5s\" must not be negative");
    CHECK(errorOf({"--proxy-mode=ipvs", "--conntrack-min=-1"}) ==
          "--conntrack-min: \"-1\" must not be negative");
    CHECK(errorOf({"--proxy-mode=ipvs", "--logging-format=xml"}) ==
          "--logging-format: \"xml\" is not a log format (text, json)");
    CHECK(errorOf({"--proxy-mode=ipvs", "--ipvs-vip-binding=magic"}) ==
          "--ipvs-vip-binding: \"magic\" is not a VIP binding (address, route)");
    CHECK(errorOf({"--config=/nonexistent/kube-proxy.yaml"}) ==
          "--config /nonexistent/kube-proxy.yaml: No such file or directory");
}

TEST_CASE("a KubeProxyConfiguration file is read field by field", "[config]") {
    TempFile f(R"(apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 10
  burst: 20
  contentType: application/vnd.kubernetes.protobuf
  acceptContentTypes: ""
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 15m0s
conntrack:
  maxPerCore: null
  min: null
  tcpEstablishedTimeout: 24h0m0s
  tcpCloseWaitTimeout: 1h0m0s
detectLocalMode: ClusterCIDR
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
iptables:
  masqueradeAll: true
  masqueradeBit: 14
  minSyncPeriod: 1s
  syncPeriod: 30s
ipvs:
  excludeCIDRs: [10.200.0.0/16]
  minSyncPeriod: 1s
  scheduler: lc
  strictARP: true
  syncPeriod: 45s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
nodePortAddresses: null
oomScoreAdj: -999
portRange: ""
featureGates: {}
winkernel:
  enableDSR: false
)");
    auto r = parseCommandLine({"--config=" + f.path});
    REQUIRE(r.has_value());
    const auto& c = *r;
    CHECK(c.clientConnection.kubeconfig == "/var/lib/kube-proxy/kubeconfig.conf");
    CHECK(c.clientConnection.qps == 10);
    CHECK(c.iptables.masqueradeAll);
    CHECK(c.ipvs.scheduler == "lc");
    CHECK(c.ipvs.syncPeriod == Duration(45s));
    CHECK(c.ipvs.minSyncPeriod == Duration(1s));
    CHECK(c.ipvs.strictARP);
    CHECK(c.ipvs.excludeCIDRs == std::vector<std::string>{"10.200.0.0/16"});
    // null is kube-proxy's "unset": its defaulting puts 32768 and 131072 back.
    CHECK(c.conntrack.maxPerCore == 32768);
    CHECK(c.conntrack.min == 131072);
    CHECK(c.nodePortAddresses.empty());
    // iptables mode's periods and winkernel's fields are accepted, with a warning each.
    CHECK(hasWarning(c, "config.iptables.syncPeriod is ignored"));
    CHECK(hasWarning(c, "config.iptables.minSyncPeriod is ignored"));
    CHECK(hasWarning(c, "config.winkernel is ignored"));
}

// kubeadm writes its kube-proxy ConfigMap with every field present and zero where it means the
// default; kube-proxy's scheme defaulting turns each back into the default.
TEST_CASE("a kubeadm-style file: zero values mean the defaults, as kube-proxy reads them",
          "[config]") {
    TempFile f(R"(apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  format: ""
  verbosity: 0
metricsBindAddress: ""
mode: ipvs
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
udpIdleTimeout: 0s
winkernel:
  enableDSR: false
  networkName: ""
  sourceVip: ""
)");
    auto r = parseCommandLine({"--config=" + f.path});
    REQUIRE(r.has_value());
    const auto& c = *r;
    CHECK(c.ipvs.syncPeriod == Duration(30s));
    CHECK(c.ipvs.minSyncPeriod == Duration::zero());
    CHECK(c.configSyncPeriod == Duration(15min));
    CHECK(c.healthzBindAddress == "0.0.0.0:10256");
    CHECK(c.metricsBindAddress == "127.0.0.1:10249");
    CHECK(c.clientConnection.qps == 5);
    CHECK(c.clientConnection.burst == 10);
    CHECK(c.clientConnection.contentType == "application/vnd.kubernetes.protobuf");
    CHECK(c.oomScoreAdj == -999);
    CHECK(c.iptables.masqueradeBit == 14);
    CHECK(c.conntrack.maxPerCore == 32768);
    CHECK(c.conntrack.tcpEstablishedTimeout == Duration(24h));
    CHECK(c.clusterCIDR == "10.244.0.0/16");
    CHECK_FALSE(hasWarning(c, "udpIdleTimeout"));  // 0s: nothing to warn about
    CHECK(c.logging.format == "text");

    // An address without a port gets the default port; an IPv6 bind address moves the
    // defaults of empty ones to IPv6, as kube-proxy's defaulting does.
    TempFile v6(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        "mode: ipvs\nbindAddress: \"::\"\nhealthzBindAddress: \"\"\n"
        "metricsBindAddress: \"::1\"\nudpIdleTimeout: 250ms\n");
    auto r6 = parseCommandLine({"--config=" + v6.path});
    REQUIRE(r6.has_value());
    CHECK(r6->healthzBindAddress == "[::]:10256");
    CHECK(r6->metricsBindAddress == "[::1]:10249");
    CHECK(hasWarning(*r6, "config.udpIdleTimeout is ignored"));

    // Flags are not defaulted a second time.
    CHECK_FALSE(parseCommandLine({"--proxy-mode=ipvs", "--ipvs-sync-period=0s"}).has_value());
}

TEST_CASE("with --config, the file wins over flags but for hostname and logging", "[config]") {
    TempFile f(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        "mode: ipvs\nhostnameOverride: from-file\nipvs:\n  scheduler: sh\n"
        "logging:\n  verbosity: 1\n");
    auto r = parseCommandLine({"--ipvs-scheduler=wrr", "--config", f.path,
                               "--hostname-override=from-flag", "-v", "3", "--masquerade-all"});
    REQUIRE(r.has_value());
    CHECK(r->ipvs.scheduler == "sh");
    CHECK(r->hostnameOverride == "from-flag");
    CHECK(r->logging.verbosity == 3);
    CHECK_FALSE(r->iptables.masqueradeAll);
    CHECK(hasWarning(*r, "flag --ipvs-scheduler is ignored because --config is set"));
    CHECK(hasWarning(*r, "flag --masquerade-all is ignored because --config is set"));
}

TEST_CASE("kube-ipvs's own flags apply with --config (the file has no field for them)",
          "[config]") {
    TempFile f(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        "mode: ipvs\n");
    auto r = parseCommandLine({"--config", f.path, "--ipvs-vip-binding=route",
                               "--ipvs-service-metrics=true", "--ipvs-rate-estimation=false"});
    REQUIRE(r.has_value());
    CHECK(r->vipBinding == "route");
    CHECK(r->serviceMetrics);
    CHECK_FALSE(r->rateEstimation);
    CHECK(r->warnings.empty());
}

TEST_CASE("config file errors name the file and the field", "[config]") {
    auto fails = [](const std::string& body) {
        TempFile f("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n" +
                   body);
        auto r = parseCommandLine({"--config=" + f.path});
        REQUIRE_FALSE(r.has_value());
        auto msg = r.error().message;
        const auto at = msg.find(f.path + ": ");
        if (at == 0) {
            msg = msg.substr(f.path.size() + 2);
        }
        return msg;
    };
    CHECK(fails("mode: ipvs\nipvs:\n  scheduler: foo\n") ==
          "config.ipvs.scheduler: \"foo\" is not an IPVS scheduler (rr, wrr, lc, wlc, lblc, "
          "lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)");
    CHECK(fails("mode: nftables\n") ==
          "config.mode: \"nftables\" is not supported: kube-ipvs implements the ipvs proxy mode "
          "only");
    CHECK(fails("mode: ipvs\nipvs:\n  sheduler: rr\n") ==
          "config.ipvs.sheduler: unknown field (not in KubeProxyConfiguration v1alpha1)");
    CHECK(fails("mode: ipvs\nnoSuchField: 1\n") ==
          "config.noSuchField: unknown field (not in KubeProxyConfiguration v1alpha1)");
    CHECK(fails("mode: ipvs\nipvs:\n  syncPeriod: soon\n") ==
          "config.ipvs.syncPeriod: \"soon\" is not a duration (for example 30s, 15m, 1h30m)");
    CHECK(fails("mode: ipvs\niptables:\n  masqueradeAll: yes\n") ==
          "config.iptables.masqueradeAll: \"yes\" is not a boolean (true or false)");
    CHECK(fails("mode: ipvs\nipvs:\n  excludeCIDRs: 10.0.0.0/8\n") ==
          "config.ipvs.excludeCIDRs: must be a list");
    CHECK(fails("mode: ipvs\nipvs: [1, 2]\n") == "config.ipvs: must be a mapping");
    CHECK(fails("mode: ipvs\nipvs:\n  scheduler: rr\n  scheduler: sh\n") ==
          "config.ipvs.scheduler: given more than once");
    CHECK(fails("mode: ipvs\nclusterCIDR: 10.0.0.0/8\nclusterCIDR: 10.1.0.0/16\n") ==
          "config.clusterCIDR: given more than once");
    CHECK(fails("mode: ipvs\nfeatureGates: true\n") == "config.featureGates: must be a mapping");
    CHECK(fails("mode: ipvs\noomScoreAdj: 5000\n") ==
          "config.oomScoreAdj: \"5000\" must be within [-1000, 1000]");
    CHECK(fails("mode: ipvs\nipvs: {syncPeriod: 30s\n").find("not valid YAML") !=
          std::string::npos);

    TempFile wrongVersion(
        "apiVersion: kubeproxy.config.k8s.io/v1beta9\nkind: KubeProxyConfiguration\n");
    auto r = parseCommandLine({"--config=" + wrongVersion.path});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == wrongVersion.path +
                                   ": config.apiVersion: \"kubeproxy.config.k8s.io/v1beta9\" is "
                                   "not supported (use kubeproxy.config.k8s.io/v1alpha1)");
}

TEST_CASE("/configz and --write-config-to describe the effective configuration", "[config]") {
    auto r =
        parseCommandLine({"--proxy-mode=ipvs", "--ipvs-scheduler=lc", "--ipvs-sync-period=45s"});
    REQUIRE(r.has_value());
    const auto j = r->configzJson();
    CHECK(j.rfind("{\"kubeproxy.config.k8s.io\":{", 0) == 0);
    CHECK(
        j.find("\"IPVS\":{\"SyncPeriod\":\"45s\",\"MinSyncPeriod\":\"0s\",\"Scheduler\":\"lc\"") !=
        std::string::npos);
    CHECK(j.find("\"Mode\":\"ipvs\"") != std::string::npos);

    // What --write-config-to writes reads back to the same configuration.
    TempFile f(r->toYaml());
    auto back = parseCommandLine({"--config=" + f.path});
    REQUIRE(back.has_value());
    CHECK(back->ipvs.scheduler == "lc");
    CHECK(back->ipvs.syncPeriod == Duration(45s));
    CHECK(back->configzJson() == j);
}

TEST_CASE("--write-config-to says what a file cannot keep: a disabled server", "[config]") {
    // An empty --healthz-bind-address disables the health server, but "" in a file means the
    // default address: the written file would start it again. The file says so beside the
    // field, and notWritable() (logged by --write-config-to) names it.
    auto r = parseCommandLine({"--proxy-mode=ipvs", "--healthz-bind-address="});
    REQUIRE(r.has_value());
    REQUIRE(r->healthzBindAddress.empty());
    const auto notes = r->notWritable();
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].rfind("healthzBindAddress: the server is disabled", 0) == 0);
    const auto yaml = r->toYaml();
    CHECK(yaml.find("healthzBindAddress: \"\"  # healthzBindAddress: the server is disabled") !=
          std::string::npos);
    CHECK(yaml.find("metricsBindAddress: 127.0.0.1:10249\n") != std::string::npos);

    // It reads back, comment and all, and the file's "" is the default again.
    TempFile f(yaml);
    auto back = parseCommandLine({"--config=" + f.path});
    REQUIRE(back.has_value());
    CHECK(back->healthzBindAddress == "0.0.0.0:10256");
    CHECK(back->notWritable().empty());

    auto both = parseCommandLine(
        {"--proxy-mode=ipvs", "--healthz-bind-address=", "--metrics-bind-address="});
    REQUIRE(both.has_value());
    CHECK(both->notWritable().size() == 2);
}

TEST_CASE("/configz is valid JSON whatever bytes the config holds", "[config]") {
    // Found by fuzz_proxy_config: a kubeconfig path with a stray 0xe0 byte went into /configz
    // as is, and the body was not JSON. Valid UTF-8 (é) stays; each invalid byte becomes
    // U+FFFD (0xf4 0x90 ... would be above U+10FFFF).
    auto r = parseCommandLine({"--proxy-mode=ipvs",
                               "--kubeconfig=/a\xe0"
                               "b/\xc3\xa9\x01",
                               "--hostname-override=n\xf4\x90\x80\x80"});
    REQUIRE(r.has_value());
    const auto j = r->configzJson();
    CHECK(j.find("\"Kubeconfig\":\"/a\\ufffdb/\xc3\xa9\\u0001\"") != std::string::npos);
    CHECK(j.find("\"HostnameOverride\":\"n\\ufffd\\ufffd\\ufffd\\ufffd\"") != std::string::npos);
}

TEST_CASE("--write-config-to keeps control characters in text fields", "[config]") {
    // Found by fuzz_proxy_config: yaml-cpp wrote a hostnameOverride of "\r" unquoted, and the
    // file read back with an empty hostnameOverride. Text holding a control character is
    // written double-quoted now.
    for (const std::string v : {"\r", "a\rb", "\r\n", "\t", "x\x1b", "\x7f"}) {
        INFO(v);
        auto r = parseCommandLine(
            {"--proxy-mode=ipvs", "--hostname-override=" + v, "--kubeconfig=" + v});
        REQUIRE(r.has_value());
        TempFile f(r->toYaml());
        auto back = parseCommandLine({"--config=" + f.path});
        REQUIRE(back.has_value());
        CHECK(back->hostnameOverride == v);
        CHECK(back->clientConnection.kubeconfig == v);
        CHECK(back->toYaml() == r->toYaml());
    }
}

TEST_CASE("--help lists the flags; --version and --help skip validation", "[config]") {
    const auto u = usage();
    for (const char* f : {"--proxy-mode", "--ipvs-scheduler", "--ipvs-exclude-cidrs", "--cleanup",
                          "--healthz-bind-address", "--nodeport-addresses", "-v, --v"}) {
        INFO(f);
        CHECK(u.find(f) != std::string::npos);
    }
    auto v = parseCommandLine({"--version", "--proxy-mode=iptables"});
    REQUIRE(v.has_value());
    CHECK(v->showVersion);
    auto h = parseCommandLine({"-h"});
    REQUIRE(h.has_value());
    CHECK(h->showHelp);
}
