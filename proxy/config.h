// kube-proxy's configuration, as kube-ipvs accepts it: the command-line flags of
// `kube-proxy --proxy-mode=ipvs` and a KubeProxyConfiguration file
// (kubeproxy.config.k8s.io/v1alpha1), with the same names, defaults and precedence
// (kube-proxy-ipvs.md §9).
//
// Every default lives in this header, as an in-class initializer. Parsing collects
// warnings for flags and fields kube-proxy has but that mean nothing in IPVS mode (they are
// accepted, never silently), and fails with a message naming the flag or field and the value
// for anything invalid or unknown.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/error.h"

namespace kipvs::proxy {

using Duration = std::chrono::nanoseconds;

// Go's time.ParseDuration: "30s", "1m30s", "1.5h", "500ms", "0". Negative values parse.
std::optional<Duration> parseGoDuration(std::string_view s);
// Go's Duration.String(): "30s", "15m0s", "24h0m0s", "1.5s", "0s".
std::string formatGoDuration(Duration d);

// The schedulers the Linux kernel ships (ip_vs_*.ko).
const std::vector<std::string>& ipvsSchedulers();

struct Config {
    // ---- KubeProxyConfiguration (field names as in the YAML) ----
    std::string mode;  // "" or "ipvs"; anything else is refused
    std::string hostnameOverride;
    std::string bindAddress = "0.0.0.0";
    bool bindAddressHardFail = false;
    std::string healthzBindAddress = "0.0.0.0:10256";    // "[::]:10256" if bindAddress is IPv6
    std::string metricsBindAddress = "127.0.0.1:10249";  // "[::1]:10249" if IPv6
    bool enableProfiling = false;
    struct ClientConnection {
        std::string kubeconfig;
        std::string contentType = "application/vnd.kubernetes.protobuf";
        std::string acceptContentTypes;
        double qps = 5;
        std::int32_t burst = 10;
    } clientConnection;
    std::string clusterCIDR;      // comma-separated, at most one per family
    std::string detectLocalMode;  // "" means ClusterCIDR
    struct DetectLocal {
        std::string bridgeInterface;
        std::string interfaceNamePrefix;
    } detectLocal;
    std::vector<std::string> nodePortAddresses;  // CIDRs, or ["primary"]
    Duration configSyncPeriod = std::chrono::minutes(15);
    struct Iptables {
        bool masqueradeAll = false;
        std::int32_t masqueradeBit = 14;
        Duration syncPeriod = std::chrono::seconds(30);    // not used in ipvs mode
        Duration minSyncPeriod = std::chrono::seconds(1);  // not used in ipvs mode
        bool localhostNodePorts = true;                    // not used in ipvs mode
    } iptables;
    struct Ipvs {
        Duration syncPeriod = std::chrono::seconds(30);
        Duration minSyncPeriod = Duration::zero();
        std::string scheduler;  // "" means rr
        std::vector<std::string> excludeCIDRs;
        bool strictARP = false;
        Duration tcpTimeout = Duration::zero();
        Duration tcpFinTimeout = Duration::zero();
        Duration udpTimeout = Duration::zero();
    } ipvs;
    struct Conntrack {
        std::optional<std::int32_t> maxPerCore = 32768;
        std::optional<std::int32_t> min = 131072;
        std::optional<Duration> tcpEstablishedTimeout = std::chrono::hours(24);
        std::optional<Duration> tcpCloseWaitTimeout = std::chrono::hours(1);
        bool tcpBeLiberal = false;
        Duration udpTimeout = Duration::zero();
        Duration udpStreamTimeout = Duration::zero();
    } conntrack;
    std::optional<std::int32_t> oomScoreAdj = -999;
    struct Logging {
        std::string format = "text";  // text | json
        std::int32_t verbosity = 0;
    } logging;

    // ---- flags only (not in the file) ----
    std::string configFile;     // --config
    std::string master;         // --master: overrides the kubeconfig's server
    bool cleanup = false;       // --cleanup
    bool initOnly = false;      // --init-only
    std::string writeConfigTo;  // --write-config-to
    bool showVersion = false;
    bool showHelp = false;
    // The deprecated --healthz-port / --metrics-port: applied after every other flag (and the
    // IPv6 defaults), to whatever address the servers then have.
    std::optional<std::int32_t> healthzPortFlag;
    std::optional<std::int32_t> metricsPortFlag;

    // ---- kube-ipvs extensions ----
    // How VIPs are made local: "address" (kube-proxy's way) or "route" (ipvs/addresses.h).
    std::string vipBinding = "address";
    // Per-Service IPVS counters on /metrics (--ipvs-service-metrics).
    bool serviceMetrics = false;
    // --ipvs-rate-estimation=false sets net.ipv4.vs.run_estimation=0; true leaves the node's.
    bool rateEstimation = true;

    // Messages about accepted-but-ignored flags and fields, for the log.
    std::vector<std::string> warnings;
    // Where each field's value came from ("ipvs.scheduler" -> "--ipvs-scheduler" or
    // "config.ipvs.scheduler"), so errors name what the operator wrote.
    std::map<std::string, std::string> origins;

    // Everything valid and consistent? The error names the field ("config.ipvs.scheduler"
    // when it came from the file, "--ipvs-scheduler" from a flag) and the value.
    Result<void> validate() const;

    // The effective scheduler ("rr" when empty), and durations in seconds for IPVS.
    std::string effectiveScheduler() const {
        return ipvs.scheduler.empty() ? "rr" : ipvs.scheduler;
    }

    // /configz body: {"kubeproxy.config.k8s.io": {...}} with kube-proxy's Go field names.
    std::string configzJson() const;
    // The configuration as a KubeProxyConfiguration YAML document (--write-config-to).
    std::string toYaml() const;
    // What that document cannot say, one message each: a server disabled by an empty
    // --healthz-bind-address or --metrics-bind-address, which the file can only write as "",
    // and "" there means the default (kube-proxy's defaulting). toYaml() puts each message
    // beside its field as a comment; --write-config-to also logs it.
    std::vector<std::string> notWritable() const;
};

// Parses argv (without argv[0]). With --config, the file's values replace all flags except
// --hostname-override and the logging flags (-v, --logging-format), as in kube-proxy; flags
// ignored that way are reported in Config::warnings. The result is validated.
Result<Config> parseCommandLine(const std::vector<std::string>& args);

// Parses a KubeProxyConfiguration document into `cfg` (fields absent keep their value).
// `source` names the file in errors. Unknown fields are errors.
Result<void> parseConfigYaml(std::string_view text, const std::string& source, Config& cfg);

// kube-ipvs --help.
std::string usage();

}  // namespace kipvs::proxy
