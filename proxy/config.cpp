#include "proxy/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <tuple>

#include "ipvs/net.h"

namespace kipvs::proxy {

// ---- durations --------------------------------------------------------------------------

std::optional<Duration> parseGoDuration(std::string_view s) {
    if (s.empty()) {
        return std::nullopt;
    }
    bool negative = false;
    if (s[0] == '-' || s[0] == '+') {
        negative = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s == "0") {
        return Duration::zero();
    }
    if (s.empty()) {
        return std::nullopt;
    }
    long double total = 0;
    while (!s.empty()) {
        std::size_t i = 0;
        while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) {
            ++i;
        }
        const auto num = s.substr(0, i);
        if (num.empty() || num == "." || std::count(num.begin(), num.end(), '.') > 1) {
            return std::nullopt;
        }
        s.remove_prefix(i);
        std::size_t u = 0;
        while (u < s.size() && !((s[u] >= '0' && s[u] <= '9') || s[u] == '.')) {
            ++u;
        }
        const auto unit = s.substr(0, u);
        s.remove_prefix(u);
        long double scale = 0;
        if (unit == "ns") {
            scale = 1;
        } else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") {
            scale = 1e3L;
        } else if (unit == "ms") {
            scale = 1e6L;
        } else if (unit == "s") {
            scale = 1e9L;
        } else if (unit == "m") {
            scale = 60e9L;
        } else if (unit == "h") {
            scale = 3600e9L;
        } else {
            return std::nullopt;
        }
        const std::string numStr(num);
        char* end = nullptr;
        const long double v = std::strtold(numStr.c_str(), &end);
        if (end != numStr.c_str() + numStr.size()) {
            return std::nullopt;
        }
        total += v * scale;
    }
    if (total > 9.2e18L) {
        return std::nullopt;
    }
    const auto ns = static_cast<std::int64_t>(std::llround(static_cast<double>(total)));
    return Duration(negative ? -ns : ns);
}

std::string formatGoDuration(Duration d) {
    std::int64_t ns = d.count();
    if (ns == 0) {
        return "0s";
    }
    std::string sign;
    if (ns < 0) {
        sign = "-";
        ns = -ns;
    }
    auto frac = [](std::int64_t v, std::int64_t unit) {
        // v / unit with trailing zeros of the fraction trimmed.
        std::string s = std::to_string(v / unit);
        std::int64_t rem = v % unit;
        if (rem != 0) {
            std::string f = std::to_string(rem);
            f.insert(0, std::to_string(unit).size() - 1 - f.size(), '0');
            while (!f.empty() && f.back() == '0') {
                f.pop_back();
            }
            s += "." + f;
        }
        return s;
    };
    if (ns < 1000) {
        return sign + std::to_string(ns) + "ns";
    }
    if (ns < 1000000) {
        return sign + frac(ns, 1000) + "\xc2\xb5s";
    }
    if (ns < 1000000000) {
        return sign + frac(ns, 1000000) + "ms";
    }
    const std::int64_t h = ns / 3600000000000LL;
    ns -= h * 3600000000000LL;
    const std::int64_t m = ns / 60000000000LL;
    ns -= m * 60000000000LL;
    std::string out = sign;
    if (h > 0) {
        out += std::to_string(h) + "h";
    }
    if (h > 0 || m > 0) {
        out += std::to_string(m) + "m";
    }
    out += frac(ns, 1000000000) + "s";
    return out;
}

const std::vector<std::string>& ipvsSchedulers() {
    static const std::vector<std::string> s = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
                                               "sh", "sed", "nq", "fo",  "ovf",  "mh",    "twos"};
    return s;
}

// ---- value parsing shared by flags and the file -----------------------------------------

namespace {

std::string quoted(std::string_view v) {
    return "\"" + std::string(v) + "\"";
}

Error bad(const std::string& where, std::string_view value, const std::string& why) {
    return Error::invalid(where + ": " + quoted(value) + " " + why);
}

// The deprecated port flags keep the address's host (an IPv6 one included).
std::string withPort(const std::string& hostPort, const char* fallbackHost, int port) {
    const auto colon = hostPort.rfind(':');
    const std::string host =
        colon == std::string::npos || colon == 0 ? fallbackHost : hostPort.substr(0, colon);
    return host + ":" + std::to_string(port);
}

Result<bool> parseBool(const std::string& where, std::string_view v) {
    static const std::set<std::string_view> yes = {"1", "t", "T", "true", "TRUE", "True"};
    static const std::set<std::string_view> no = {"0", "f", "F", "false", "FALSE", "False"};
    if (yes.count(v) != 0) {
        return true;
    }
    if (no.count(v) != 0) {
        return false;
    }
    return bad(where, v, "is not a boolean (true or false)");
}

Result<std::int32_t> parseInt32(const std::string& where, std::string_view v) {
    std::int64_t x = 0;
    const auto* end = v.data() + v.size();
    auto [p, ec] = std::from_chars(v.data(), end, x);
    if (v.empty() || ec != std::errc() || p != end || x < INT32_MIN || x > INT32_MAX) {
        return bad(where, v, "is not a 32-bit integer");
    }
    return static_cast<std::int32_t>(x);
}

// A port for the deprecated --healthz-port / --metrics-port (0 disables the server).
Result<std::int32_t> parsePort(const std::string& where, std::string_view v) {
    auto p = parseInt32(where, v);
    if (p && (*p < 0 || *p > 65535)) {
        return bad(where, v, "is not a port (0 disables the server)");
    }
    return p;
}

Result<double> parseDouble(const std::string& where, std::string_view v) {
    const std::string s(v);
    char* end = nullptr;
    errno = 0;
    const double x = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || errno != 0 || !std::isfinite(x)) {
        return bad(where, v, "is not a number");
    }
    return x;
}

Result<Duration> parseDuration(const std::string& where, std::string_view v) {
    auto d = parseGoDuration(v);
    if (!d) {
        return bad(where, v, "is not a duration (for example 30s, 15m, 1h30m)");
    }
    return *d;
}

std::vector<std::string> splitList(std::string_view v) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= v.size()) {
        auto end = v.find(',', start);
        if (end == std::string_view::npos) {
            end = v.size();
        }
        auto item = v.substr(start, end - start);
        while (!item.empty() && item.front() == ' ') {
            item.remove_prefix(1);
        }
        while (!item.empty() && item.back() == ' ') {
            item.remove_suffix(1);
        }
        if (!item.empty()) {
            out.emplace_back(item);
        }
        start = end + 1;
    }
    return out;
}

// The name to print for a field: the flag that set it, or its place in the file.
std::string originOf(const Config& c, const std::string& field) {
    auto it = c.origins.find(field);
    return it != c.origins.end() ? it->second : "config." + field;
}

}  // namespace

// ---- flags ------------------------------------------------------------------------------

namespace {

enum class FlagKind { Bool, String };

struct Flag {
    std::string_view name;  // without dashes
    FlagKind kind;
    std::string_view field;  // config field path it sets ("" for flag-only)
    // Sets the value; empty for flags accepted with a warning only.
    std::function<Result<void>(Config&, const std::string& where, std::string_view v)> set;
    std::string_view warning;  // why it is ignored, for accepted-but-ignored flags
    std::string_view help;
    bool survivesConfig = false;  // still applies with --config
};

Result<void> ok_() {
    return ok();
}

const std::vector<Flag>& flagTable() {
    using R = Result<void>;
    auto str = [](std::string Config::*m) {
        return [m](Config& c, const std::string&, std::string_view v) -> R {
            c.*m = std::string(v);
            return ok_();
        };
    };
    auto dur = [](Duration Config::Ipvs::*m) {
        return [m](Config& c, const std::string& w, std::string_view v) -> R {
            auto d = parseDuration(w, v);
            if (!d) {
                return d.error();
            }
            c.ipvs.*m = *d;
            return ok_();
        };
    };
    auto boolean = [](bool& (*at)(Config&)) {
        return [at](Config& c, const std::string& w, std::string_view v) -> R {
            auto b = parseBool(w, v);
            if (!b) {
                return b.error();
            }
            at(c) = *b;
            return ok_();
        };
    };
    static const std::vector<Flag> flags = {
        {"config", FlagKind::String, "", str(&Config::configFile), "",
         "The path to a KubeProxyConfiguration file; its values replace all other flags "
         "except --hostname-override and logging flags.",
         true},
        {"kubeconfig", FlagKind::String, "clientConnection.kubeconfig",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.clientConnection.kubeconfig = std::string(v);
             return ok_();
         },
         "", "Path to a kubeconfig file with the API server and credentials."},
        {"master", FlagKind::String, "", str(&Config::master), "",
         "The address of the API server (overrides the kubeconfig's server).", true},
        {"hostname-override", FlagKind::String, "hostnameOverride",
         str(&Config::hostnameOverride), "", "The name of this node, instead of the hostname.",
         true},
        {"proxy-mode", FlagKind::String, "mode", str(&Config::mode), "",
         "Which proxy mode to use: kube-ipvs implements 'ipvs' only."},
        {"bind-address", FlagKind::String, "bindAddress", str(&Config::bindAddress), "",
         "Overrides the node's primary IP (0.0.0.0: use the Node's address)."},
        {"bind-address-hard-fail", FlagKind::Bool, "bindAddressHardFail",
         boolean([](Config& c) -> bool& { return c.bindAddressHardFail; }),
         "", "Exit if the health or metrics server cannot bind."},
        {"healthz-bind-address", FlagKind::String, "healthzBindAddress",
         str(&Config::healthzBindAddress), "",
         "ip:port of the health server (/healthz, /livez); empty disables it. "
         "Default 0.0.0.0:10256."},
        {"metrics-bind-address", FlagKind::String, "metricsBindAddress",
         str(&Config::metricsBindAddress), "",
         "ip:port of the metrics server (/metrics, /healthz, /proxyMode, /configz); empty "
         "disables it. Default 127.0.0.1:10249."},
        {"healthz-port", FlagKind::String, "healthzPort",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto p = parsePort(w, v);
             if (!p) {
                 return p.error();
             }
             c.healthzPortFlag = *p;
             return ok_();
         },
         "", "Deprecated: the port of --healthz-bind-address; 0 disables."},
        {"metrics-port", FlagKind::String, "metricsPort",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto p = parsePort(w, v);
             if (!p) {
                 return p.error();
             }
             c.metricsPortFlag = *p;
             return ok_();
         },
         "", "Deprecated: the port of --metrics-bind-address; 0 disables."},
        {"cluster-cidr", FlagKind::String, "clusterCIDR", str(&Config::clusterCIDR), "",
         "The pod CIDRs (comma-separated, one per family) for local traffic detection."},
        {"detect-local-mode", FlagKind::String, "detectLocalMode", str(&Config::detectLocalMode),
         "", "ClusterCIDR (default), NodeCIDR, BridgeInterface or InterfaceNamePrefix."},
        {"pod-bridge-interface", FlagKind::String, "detectLocal.bridgeInterface",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.detectLocal.bridgeInterface = std::string(v);
             return ok_();
         },
         "", "The bridge pods attach to (detect-local-mode BridgeInterface)."},
        {"pod-interface-name-prefix", FlagKind::String, "detectLocal.interfaceNamePrefix",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.detectLocal.interfaceNamePrefix = std::string(v);
             return ok_();
         },
         "", "The prefix of pod interfaces (detect-local-mode InterfaceNamePrefix)."},
        {"nodeport-addresses", FlagKind::String, "nodePortAddresses",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.nodePortAddresses = splitList(v);
             return ok_();
         },
         "", "CIDRs (comma-separated) whose node addresses answer NodePorts, or 'primary'."},
        {"masquerade-all", FlagKind::Bool, "iptables.masqueradeAll",
         boolean([](Config& c) -> bool& { return c.iptables.masqueradeAll; }),
         "", "SNAT all traffic sent to Service cluster IPs."},
        {"iptables-masquerade-bit", FlagKind::String, "iptables.masqueradeBit",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto i = parseInt32(w, v);
             if (!i) {
                 return i.error();
             }
             c.iptables.masqueradeBit = *i;
             return ok_();
         },
         "", "The fwmark bit (0-31) that marks packets for SNAT. Default 14."},
        {"ipvs-scheduler", FlagKind::String, "ipvs.scheduler",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.ipvs.scheduler = std::string(v);
             return ok_();
         },
         "", "The IPVS scheduler (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos)."},
        {"ipvs-sync-period", FlagKind::String, "ipvs.syncPeriod", dur(&Config::Ipvs::syncPeriod),
         "", "The period of the full verification of kernel state. Default 30s."},
        {"ipvs-min-sync-period", FlagKind::String, "ipvs.minSyncPeriod",
         dur(&Config::Ipvs::minSyncPeriod), "", "The minimum gap between syncs. Default 0s."},
        {"ipvs-exclude-cidrs", FlagKind::String, "ipvs.excludeCIDRs",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.ipvs.excludeCIDRs = splitList(v);
             return ok_();
         },
         "", "CIDRs (comma-separated) whose virtual servers are never deleted."},
        {"ipvs-strict-arp", FlagKind::Bool, "ipvs.strictARP",
         boolean([](Config& c) -> bool& { return c.ipvs.strictARP; }),
         "", "Set arp_ignore=1 and arp_announce=2."},
        {"ipvs-tcp-timeout", FlagKind::String, "ipvs.tcpTimeout", dur(&Config::Ipvs::tcpTimeout),
         "", "IPVS idle timeout of TCP connections (0 keeps the kernel's)."},
        {"ipvs-tcpfin-timeout", FlagKind::String, "ipvs.tcpFinTimeout",
         dur(&Config::Ipvs::tcpFinTimeout), "",
         "IPVS timeout of TCP connections after FIN (0 keeps the kernel's)."},
        {"ipvs-udp-timeout", FlagKind::String, "ipvs.udpTimeout", dur(&Config::Ipvs::udpTimeout),
         "", "IPVS timeout of UDP flows (0 keeps the kernel's)."},
        // kube-ipvs's own flags have no field in KubeProxyConfiguration, so they apply with
        // --config too (the DaemonSet uses one).
        {"ipvs-vip-binding", FlagKind::String, "", str(&Config::vipBinding), "",
         "kube-ipvs: make VIPs local with 'address'es on kube-ipvs0 (default, as kube-proxy) "
         "or local 'route's (scales linearly to tens of thousands of Services).",
         true},
        {"ipvs-service-metrics", FlagKind::Bool, "",
         boolean([](Config& c) -> bool& { return c.serviceMetrics; }),
         "",
         "kube-ipvs: add each Service's IPVS counters (connections, packets, bytes) to "
         "/metrics. Off by default: 5 series per Service on every node, 25 MB per scrape at "
         "44,000 Services.",
         true},
        {"ipvs-rate-estimation", FlagKind::Bool, "",
         boolean([](Config& c) -> bool& { return c.rateEstimation; }),
         "",
         "kube-ipvs: false sets net.ipv4.vs.run_estimation=0 (kernel 5.16 or later), which "
         "stops the rates of `ipvsadm -L --rate` (the counters still count). Before 6.2 the "
         "kernel estimates them for every virtual and real server in one timer every 2 s that "
         "holds a CPU: 200 ms at 50,000 Services. Default true leaves the node's setting.",
         true},
        {"kube-api-qps", FlagKind::String, "clientConnection.qps",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto d = parseDouble(w, v);
             if (!d) {
                 return d.error();
             }
             c.clientConnection.qps = *d;
             return ok_();
         },
         "", "Client-side rate limit of API list requests. Default 5."},
        {"kube-api-burst", FlagKind::String, "clientConnection.burst",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto i = parseInt32(w, v);
             if (!i) {
                 return i.error();
             }
             c.clientConnection.burst = *i;
             return ok_();
         },
         "", "Burst of the API rate limit. Default 10."},
        {"kube-api-content-type", FlagKind::String, "clientConnection.contentType",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.clientConnection.contentType = std::string(v);
             return ok_();
         },
         "", "Accepted for compatibility; kube-ipvs always speaks JSON to the API server."},
        {"config-sync-period", FlagKind::String, "configSyncPeriod",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto d = parseDuration(w, v);
             if (!d) {
                 return d.error();
             }
             c.configSyncPeriod = *d;
             return ok_();
         },
         "", "Accepted for compatibility (informer resync; watches make it unnecessary)."},
        {"conntrack-max-per-core", FlagKind::String, "conntrack.maxPerCore",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto i = parseInt32(w, v);
             if (!i) {
                 return i.error();
             }
             c.conntrack.maxPerCore = *i;
             return ok_();
         },
         "", "nf_conntrack_max per CPU (0 leaves the limit alone). Default 32768."},
        {"conntrack-min", FlagKind::String, "conntrack.min",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto i = parseInt32(w, v);
             if (!i) {
                 return i.error();
             }
             c.conntrack.min = *i;
             return ok_();
         },
         "", "Minimum nf_conntrack_max. Default 131072."},
        {"conntrack-tcp-timeout-established", FlagKind::String, "conntrack.tcpEstablishedTimeout",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto d = parseDuration(w, v);
             if (!d) {
                 return d.error();
             }
             c.conntrack.tcpEstablishedTimeout = *d;
             return ok_();
         },
         "", "nf_conntrack_tcp_timeout_established (0 leaves it). Default 24h."},
        {"conntrack-tcp-timeout-close-wait", FlagKind::String, "conntrack.tcpCloseWaitTimeout",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto d = parseDuration(w, v);
             if (!d) {
                 return d.error();
             }
             c.conntrack.tcpCloseWaitTimeout = *d;
             return ok_();
         },
         "", "nf_conntrack_tcp_timeout_close_wait (0 leaves it). Default 1h."},
        {"conntrack-tcp-be-liberal", FlagKind::Bool, "conntrack.tcpBeLiberal",
         boolean([](Config& c) -> bool& { return c.conntrack.tcpBeLiberal; }),
         "", "Set nf_conntrack_tcp_be_liberal=1."},
        {"conntrack-udp-timeout", FlagKind::String, "conntrack.udpTimeout",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto d = parseDuration(w, v);
             if (!d) {
                 return d.error();
             }
             c.conntrack.udpTimeout = *d;
             return ok_();
         },
         "", "nf_conntrack_udp_timeout (0 leaves it)."},
        {"conntrack-udp-timeout-stream", FlagKind::String, "conntrack.udpStreamTimeout",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto d = parseDuration(w, v);
             if (!d) {
                 return d.error();
             }
             c.conntrack.udpStreamTimeout = *d;
             return ok_();
         },
         "", "nf_conntrack_udp_timeout_stream (0 leaves it)."},
        {"oom-score-adj", FlagKind::String, "oomScoreAdj",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto i = parseInt32(w, v);
             if (!i) {
                 return i.error();
             }
             c.oomScoreAdj = *i;
             return ok_();
         },
         "", "The oom_score_adj of the process, in [-1000, 1000]. Default -999."},
        {"cleanup", FlagKind::Bool, "",
         boolean([](Config& c) -> bool& { return c.cleanup; }),
         "", "Remove everything kube-ipvs (or kube-proxy in ipvs mode) programmed, then exit.",
         true},
        {"init-only", FlagKind::Bool, "",
         boolean([](Config& c) -> bool& { return c.initOnly; }),
         "", "Set the sysctls and IPVS timeouts, then exit.", true},
        {"write-config-to", FlagKind::String, "", str(&Config::writeConfigTo), "",
         "Write the effective configuration to this file as YAML, then exit.", true},
        {"v", FlagKind::String, "logging.verbosity",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto i = parseInt32(w, v);
             if (!i) {
                 return i.error();
             }
             c.logging.verbosity = *i;
             return ok_();
         },
         "", "Log verbosity (0-10).", true},
        {"logging-format", FlagKind::String, "logging.format",
         [](Config& c, const std::string&, std::string_view v) -> R {
             c.logging.format = std::string(v);
             return ok_();
         },
         "", "Log format: text (klog style) or json.", true},
        {"profiling", FlagKind::Bool, "enableProfiling",
         [](Config& c, const std::string& w, std::string_view v) -> R {
             auto b = parseBool(w, v);
             if (!b) {
                 return b.error();
             }
             c.enableProfiling = *b;
             if (*b) {
                 c.warnings.push_back("flag " + w +
                                      " is ignored: Go's pprof endpoints do not exist in kube-ipvs");
             }
             return ok_();
         },
         "", "Accepted for compatibility; Go's pprof endpoints do not exist in kube-ipvs."},
        {"version", FlagKind::Bool, "",
         boolean([](Config& c) -> bool& { return c.showVersion; }),
         "", "Print the version and exit.", true},
        {"help", FlagKind::Bool, "",
         [](Config& c, const std::string&, std::string_view) -> R {
             c.showHelp = true;
             return ok_();
         },
         "", "Print this help and exit.", true},
        // Accepted and ignored, with a warning: they mean nothing in IPVS mode or here.
        {"iptables-sync-period", FlagKind::String, "", nullptr, "applies to iptables mode only",
         "Ignored (iptables mode only)."},
        {"iptables-min-sync-period", FlagKind::String, "", nullptr,
         "applies to iptables mode only", "Ignored (iptables mode only)."},
        {"iptables-localhost-nodeports", FlagKind::Bool, "", nullptr,
         "applies to iptables mode only", "Ignored (iptables mode only)."},
        {"proxy-port-range", FlagKind::String, "", nullptr, "is a no-op in kube-proxy too",
         "Ignored (deprecated no-op)."},
        {"feature-gates", FlagKind::String, "", nullptr,
         "has no gate that changes kube-ipvs' behaviour", "Ignored."},
        {"show-hidden-metrics-for-version", FlagKind::String, "", nullptr,
         "kube-ipvs hides no metrics", "Ignored."},
        {"vmodule", FlagKind::String, "", nullptr, "per-file verbosity is not supported",
         "Ignored."},
    };
    return flags;
}

const Flag* findFlag(std::string_view name) {
    for (const auto& f : flagTable()) {
        if (f.name == name) {
            return &f;
        }
    }
    return nullptr;
}

}  // namespace

// ---- the config file --------------------------------------------------------------------

namespace {

class YamlReader {
  public:
    YamlReader(Config& cfg, std::string source) : cfg_(cfg), source_(std::move(source)) {}

    Result<void> read(const YAML::Node& root) {
        if (!root.IsMap()) {
            return Error::invalid(source_ + ": not a KubeProxyConfiguration mapping");
        }
        std::set<std::string> seen;
        for (const auto& kv : root) {
            const auto key = kv.first.as<std::string>();
            if (auto r = once(seen, key); !r) {
                return r;
            }
            if (auto r = top(key, kv.second); !r) {
                return r;
            }
        }
        return ok();
    }

  private:
    std::string where(const std::string& path) const { return "config." + path; }

    Error err(const std::string& path, std::string_view value, const std::string& why) const {
        return Error::invalid(source_ + ": " + where(path) + ": " + quoted(value) + " " + why);
    }
    Error unknown(const std::string& path) const {
        return Error::invalid(source_ + ": " + where(path) +
                              ": unknown field (not in KubeProxyConfiguration v1alpha1)");
    }

    void note(const std::string& path) { cfg_.origins[path] = where(path); }

    // yaml-cpp keeps both of a mapping's duplicate keys; the later would win unseen. kube-proxy's
    // strict decoding reports them too.
    Result<void> once(std::set<std::string>& seen, const std::string& path) {
        if (!seen.insert(path).second) {
            return Error::invalid(source_ + ": " + where(path) + ": given more than once");
        }
        return ok();
    }

    Result<std::string> scalar(const std::string& path, const YAML::Node& n) {
        if (n.IsNull()) {
            return std::string();
        }
        if (!n.IsScalar()) {
            return Error::invalid(source_ + ": " + where(path) + ": must be a single value");
        }
        note(path);
        return n.Scalar();
    }

    Result<void> str(const std::string& path, const YAML::Node& n, std::string& out) {
        auto s = scalar(path, n);
        if (!s) {
            return s.error();
        }
        out = *s;
        return ok();
    }
    Result<void> boolean(const std::string& path, const YAML::Node& n, bool& out) {
        if (n.IsNull()) {
            return ok();
        }
        auto s = scalar(path, n);
        if (!s) {
            return s.error();
        }
        if (*s == "true") {
            out = true;
        } else if (*s == "false") {
            out = false;
        } else {
            return err(path, *s, "is not a boolean (true or false)");
        }
        return ok();
    }
    template <class T>
    Result<void> int32(const std::string& path, const YAML::Node& n, T& out) {
        if (n.IsNull()) {
            return ok();
        }
        auto s = scalar(path, n);
        if (!s) {
            return s.error();
        }
        auto v = parseInt32(where(path), *s);
        if (!v) {
            return err(path, *s, "is not a 32-bit integer");
        }
        out = *v;
        return ok();
    }
    template <class T>
    Result<void> duration(const std::string& path, const YAML::Node& n, T& out) {
        if (n.IsNull()) {
            return ok();
        }
        auto s = scalar(path, n);
        if (!s) {
            return s.error();
        }
        auto d = parseGoDuration(*s);
        if (!d) {
            return err(path, *s, "is not a duration (for example 30s, 15m, 1h30m)");
        }
        out = *d;
        return ok();
    }
    Result<void> list(const std::string& path, const YAML::Node& n, std::vector<std::string>& out) {
        if (n.IsNull()) {
            out.clear();
            return ok();
        }
        if (!n.IsSequence()) {
            return Error::invalid(source_ + ": " + where(path) + ": must be a list");
        }
        out.clear();
        for (std::size_t i = 0; i < n.size(); ++i) {
            if (!n[i].IsScalar()) {
                return Error::invalid(source_ + ": " + where(path) + "[" + std::to_string(i) +
                                      "]: must be a string");
            }
            out.push_back(n[i].Scalar());
        }
        note(path);
        return ok();
    }
    // Fields kube-proxy has that do nothing in IPVS mode: accepted, with a warning.
    void ignored(const std::string& path, const std::string& why) {
        cfg_.warnings.push_back(source_ + ": " + where(path) + " is ignored: " + why);
    }

    using Handler = std::function<Result<void>(const YAML::Node&)>;
    Result<void> section(const std::string& path, const YAML::Node& n,
                         const std::map<std::string, Handler>& fields) {
        if (n.IsNull()) {
            return ok();
        }
        if (!n.IsMap()) {
            return Error::invalid(source_ + ": " + where(path) + ": must be a mapping");
        }
        std::set<std::string> seen;
        for (const auto& kv : n) {
            const auto key = kv.first.as<std::string>();
            if (auto r = once(seen, path + "." + key); !r) {
                return r;
            }
            auto it = fields.find(key);
            if (it == fields.end()) {
                return unknown(path + "." + key);
            }
            if (auto r = it->second(kv.second); !r) {
                return r;
            }
        }
        return ok();
    }

    Result<void> top(const std::string& key, const YAML::Node& n) {
        auto& c = cfg_;
        if (key == "apiVersion") {
            auto s = scalar(key, n);
            if (!s) {
                return s.error();
            }
            if (*s != "kubeproxy.config.k8s.io/v1alpha1") {
                return err(key, *s, "is not supported (use kubeproxy.config.k8s.io/v1alpha1)");
            }
            return ok();
        }
        if (key == "kind") {
            auto s = scalar(key, n);
            if (!s) {
                return s.error();
            }
            if (*s != "KubeProxyConfiguration") {
                return err(key, *s, "is not KubeProxyConfiguration");
            }
            return ok();
        }
        if (key == "mode") {
            return str(key, n, c.mode);
        }
        if (key == "hostnameOverride") {
            return str(key, n, c.hostnameOverride);
        }
        if (key == "bindAddress") {
            return str(key, n, c.bindAddress);
        }
        if (key == "bindAddressHardFail") {
            return boolean(key, n, c.bindAddressHardFail);
        }
        if (key == "healthzBindAddress") {
            return str(key, n, c.healthzBindAddress);
        }
        if (key == "metricsBindAddress") {
            return str(key, n, c.metricsBindAddress);
        }
        if (key == "enableProfiling") {
            auto r = boolean(key, n, c.enableProfiling);
            if (r && c.enableProfiling) {
                ignored(key, "Go's pprof endpoints do not exist in kube-ipvs");
            }
            return r;
        }
        if (key == "clusterCIDR") {
            return str(key, n, c.clusterCIDR);
        }
        if (key == "detectLocalMode") {
            return str(key, n, c.detectLocalMode);
        }
        if (key == "nodePortAddresses") {
            return list(key, n, c.nodePortAddresses);
        }
        if (key == "configSyncPeriod") {
            return duration(key, n, c.configSyncPeriod);
        }
        if (key == "oomScoreAdj") {
            if (n.IsNull()) {
                return ok();  // as kube-proxy's defaulting: null keeps the default (-999)
            }
            std::int32_t v = 0;
            auto r = int32(key, n, v);
            c.oomScoreAdj = v;
            return r;
        }
        if (key == "udpIdleTimeout") {
            // The userspace mode's, removed from the type in 1.29; older kubeadm ConfigMaps
            // still hold "udpIdleTimeout: 0s".
            Duration d{};
            auto r = duration(key, n, d);
            if (r && d != Duration::zero()) {
                ignored(key, "it applied to the removed userspace mode");
            }
            return r;
        }
        if (key == "portRange") {
            if (!n.IsNull() && !(n.IsScalar() && n.Scalar().empty())) {
                ignored(key, "it is a no-op in kube-proxy too");
            }
            return ok();
        }
        if (key == "showHiddenMetricsForVersion") {
            if (!n.IsNull() && !(n.IsScalar() && n.Scalar().empty())) {
                ignored(key, "kube-ipvs hides no metrics");
            }
            return ok();
        }
        if ((key == "featureGates" || key == "winkernel" || key == "nftables") && !n.IsNull() &&
            !n.IsMap()) {
            return Error::invalid(source_ + ": " + where(key) + ": must be a mapping");
        }
        if (key == "featureGates") {
            if (n.IsMap() && n.size() > 0) {
                ignored(key, "no feature gate changes kube-ipvs' behaviour");
            }
            return ok();
        }
        if (key == "winkernel" || key == "nftables") {
            if (n.IsMap() && n.size() > 0) {
                ignored(key, "it applies to another proxy mode");
            }
            return ok();
        }
        if (key == "clientConnection") {
            auto& cc = c.clientConnection;
            return section(key, n,
                           {{"kubeconfig",
                             [&](const YAML::Node& v) {
                                 return str("clientConnection.kubeconfig", v, cc.kubeconfig);
                             }},
                            {"contentType",
                             [&](const YAML::Node& v) {
                                 return str("clientConnection.contentType", v, cc.contentType);
                             }},
                            {"acceptContentTypes",
                             [&](const YAML::Node& v) {
                                 return str("clientConnection.acceptContentTypes", v,
                                            cc.acceptContentTypes);
                             }},
                            {"qps",
                             [&](const YAML::Node& v) -> Result<void> {
                                 auto s = scalar("clientConnection.qps", v);
                                 if (!s || s->empty()) {
                                     return s ? ok() : Result<void>(s.error());
                                 }
                                 auto d = parseDouble("", *s);
                                 if (!d) {
                                     return err("clientConnection.qps", *s, "is not a number");
                                 }
                                 cc.qps = *d;
                                 return ok();
                             }},
                            {"burst", [&](const YAML::Node& v) {
                                 return int32("clientConnection.burst", v, cc.burst);
                             }}});
        }
        if (key == "detectLocal") {
            auto& d = c.detectLocal;
            return section(key, n,
                           {{"bridgeInterface",
                             [&](const YAML::Node& v) {
                                 return str("detectLocal.bridgeInterface", v, d.bridgeInterface);
                             }},
                            {"interfaceNamePrefix", [&](const YAML::Node& v) {
                                 return str("detectLocal.interfaceNamePrefix", v,
                                            d.interfaceNamePrefix);
                             }}});
        }
        if (key == "iptables") {
            auto& i = c.iptables;
            return section(
                key, n,
                {{"masqueradeAll",
                  [&](const YAML::Node& v) {
                      return boolean("iptables.masqueradeAll", v, i.masqueradeAll);
                  }},
                 {"masqueradeBit",
                  [&](const YAML::Node& v) {
                      return int32("iptables.masqueradeBit", v, i.masqueradeBit);
                  }},
                 {"syncPeriod",
                  [&](const YAML::Node& v) {
                      ignored("iptables.syncPeriod", "it applies to iptables mode only");
                      return duration("iptables.syncPeriod", v, i.syncPeriod);
                  }},
                 {"minSyncPeriod",
                  [&](const YAML::Node& v) {
                      ignored("iptables.minSyncPeriod", "it applies to iptables mode only");
                      return duration("iptables.minSyncPeriod", v, i.minSyncPeriod);
                  }},
                 {"localhostNodePorts", [&](const YAML::Node& v) {
                      ignored("iptables.localhostNodePorts", "it applies to iptables mode only");
                      return boolean("iptables.localhostNodePorts", v, i.localhostNodePorts);
                  }}});
        }
        if (key == "ipvs") {
            auto& i = c.ipvs;
            return section(
                key, n,
                {{"syncPeriod",
                  [&](const YAML::Node& v) {
                      return duration("ipvs.syncPeriod", v, i.syncPeriod);
                  }},
                 {"minSyncPeriod",
                  [&](const YAML::Node& v) {
                      return duration("ipvs.minSyncPeriod", v, i.minSyncPeriod);
                  }},
                 {"scheduler",
                  [&](const YAML::Node& v) { return str("ipvs.scheduler", v, i.scheduler); }},
                 {"excludeCIDRs",
                  [&](const YAML::Node& v) {
                      return list("ipvs.excludeCIDRs", v, i.excludeCIDRs);
                  }},
                 {"strictARP",
                  [&](const YAML::Node& v) { return boolean("ipvs.strictARP", v, i.strictARP); }},
                 {"tcpTimeout",
                  [&](const YAML::Node& v) {
                      return duration("ipvs.tcpTimeout", v, i.tcpTimeout);
                  }},
                 {"tcpFinTimeout",
                  [&](const YAML::Node& v) {
                      return duration("ipvs.tcpFinTimeout", v, i.tcpFinTimeout);
                  }},
                 {"udpTimeout", [&](const YAML::Node& v) {
                      return duration("ipvs.udpTimeout", v, i.udpTimeout);
                  }}});
        }
        if (key == "conntrack") {
            auto& ct = c.conntrack;
            auto optInt = [&](const char* path, std::optional<std::int32_t>& out) {
                return [&, path](const YAML::Node& v) -> Result<void> {
                    if (v.IsNull()) {
                        return ok();  // as kube-proxy's defaulting: null keeps the default
                    }
                    std::int32_t x = 0;
                    auto r = int32(path, v, x);
                    out = x;
                    return r;
                };
            };
            auto optDur = [&](const char* path, std::optional<Duration>& out) {
                return [&, path](const YAML::Node& v) -> Result<void> {
                    if (v.IsNull()) {
                        return ok();  // as kube-proxy's defaulting: null keeps the default
                    }
                    Duration x{};
                    auto r = duration(path, v, x);
                    out = x;
                    return r;
                };
            };
            return section(key, n,
                           {{"maxPerCore", optInt("conntrack.maxPerCore", ct.maxPerCore)},
                            {"min", optInt("conntrack.min", ct.min)},
                            {"tcpEstablishedTimeout",
                             optDur("conntrack.tcpEstablishedTimeout", ct.tcpEstablishedTimeout)},
                            {"tcpCloseWaitTimeout",
                             optDur("conntrack.tcpCloseWaitTimeout", ct.tcpCloseWaitTimeout)},
                            {"tcpBeLiberal",
                             [&](const YAML::Node& v) {
                                 return boolean("conntrack.tcpBeLiberal", v, ct.tcpBeLiberal);
                             }},
                            {"udpTimeout",
                             [&](const YAML::Node& v) {
                                 return duration("conntrack.udpTimeout", v, ct.udpTimeout);
                             }},
                            {"udpStreamTimeout", [&](const YAML::Node& v) {
                                 return duration("conntrack.udpStreamTimeout", v,
                                                 ct.udpStreamTimeout);
                             }}});
        }
        if (key == "logging") {
            auto& l = c.logging;
            return section(
                key, n,
                {{"format",
                  [&](const YAML::Node& v) { return str("logging.format", v, l.format); }},
                 {"verbosity",
                  [&](const YAML::Node& v) { return int32("logging.verbosity", v, l.verbosity); }},
                 {"flushFrequency",
                  [&](const YAML::Node&) {
                      ignored("logging.flushFrequency", "kube-ipvs writes lines unbuffered");
                      return ok();
                  }},
                 {"vmodule",
                  [&](const YAML::Node&) {
                      ignored("logging.vmodule", "per-file verbosity is not supported");
                      return ok();
                  }},
                 {"options", [&](const YAML::Node&) {
                      ignored("logging.options", "there are no format options");
                      return ok();
                  }}});
        }
        return unknown(key);
    }

    Config& cfg_;
    std::string source_;
};

}  // namespace

namespace {

// "0.0.0.0" -> "0.0.0.0:10256", "::" -> "[::]:10256" (kube-proxy's AppendPortIfNeeded).
void appendPortIfNeeded(std::string& hostPort, std::uint16_t port) {
    if (auto ip = net::IpAddress::parse(hostPort)) {
        hostPort = net::joinHostPort(*ip, port);
    }
}

// kube-proxy decodes the file through its API scheme, whose defaulting
// (SetDefaults_KubeProxyConfiguration) puts the default back wherever the file holds a zero
// value. kubeadm's kube-proxy ConfigMap is written that way: "syncPeriod: 0s",
// "healthzBindAddress: \"\"", "qps: 0", "oomScoreAdj: null" all mean the defaults there, so they
// do here. Flags are not defaulted again: --ipvs-sync-period=0s stays an error.
void applyFileDefaults(Config& c) {
    const Config d;
    if (c.bindAddress.empty()) {
        c.bindAddress = d.bindAddress;
    }
    for (auto [field, value, fallback, port] :
         {std::tuple<const char*, std::string*, const std::string*, std::uint16_t>{
              "healthzBindAddress", &c.healthzBindAddress, &d.healthzBindAddress, 10256},
          {"metricsBindAddress", &c.metricsBindAddress, &d.metricsBindAddress, 10249}}) {
        if (value->empty()) {
            // The default, which follows an IPv6 bindAddress (parseCommandLine).
            *value = *fallback;
            c.origins.erase(field);
        } else {
            appendPortIfNeeded(*value, port);
        }
    }
    if (c.ipvs.syncPeriod == Duration::zero()) {
        c.ipvs.syncPeriod = d.ipvs.syncPeriod;
    }
    if (c.iptables.syncPeriod == Duration::zero()) {
        c.iptables.syncPeriod = d.iptables.syncPeriod;
    }
    if (c.iptables.minSyncPeriod == Duration::zero()) {
        c.iptables.minSyncPeriod = d.iptables.minSyncPeriod;
    }
    if (c.configSyncPeriod == Duration::zero()) {
        c.configSyncPeriod = d.configSyncPeriod;
    }
    auto& cc = c.clientConnection;
    if (cc.contentType.empty()) {
        cc.contentType = d.clientConnection.contentType;
    }
    if (cc.qps == 0) {
        cc.qps = d.clientConnection.qps;
    }
    if (cc.burst == 0) {
        cc.burst = d.clientConnection.burst;
    }
    if (c.logging.format.empty()) {
        c.logging.format = d.logging.format;
    }
}

}  // namespace

Result<void> parseConfigYaml(std::string_view text, const std::string& source, Config& cfg) {
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        return Error::invalid(source + ": not valid YAML: " + e.what());
    }
    YamlReader reader(cfg, source);
    try {
        if (auto r = reader.read(root); !r) {
            return r;
        }
    } catch (const YAML::Exception& e) {
        return Error::invalid(source + ": " + e.what());
    }
    applyFileDefaults(cfg);
    return ok();
}

// ---- the command line -------------------------------------------------------------------

Result<Config> parseCommandLine(const std::vector<std::string>& args) {
    Config cfg;
    auto& origins = cfg.origins;

    struct Given {
        const Flag* flag;
        std::string value;
        std::string spelled;
    };
    std::vector<Given> given;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.size() < 2 || a[0] != '-') {
            return Error::invalid("unexpected argument " + quoted(a) +
                                  " (kube-ipvs takes flags only; see --help)");
        }
        std::string body = a.substr(a[1] == '-' ? 2 : 1);
        std::optional<std::string> value;
        if (auto eq = body.find('='); eq != std::string::npos) {
            value = body.substr(eq + 1);
            body.resize(eq);
        }
        std::string name = body;
        if (a[1] != '-' && name != "v" && name != "h") {
            return Error::invalid("unknown flag: " + a + " (long flags take two dashes)");
        }
        if (name == "h") {
            name = "help";
        }
        const Flag* f = findFlag(name);
        if (f == nullptr) {
            return Error::invalid("unknown flag: --" + name);
        }
        if (!value) {
            if (f->kind == FlagKind::Bool) {
                value = "true";
            } else if (i + 1 < args.size()) {
                value = args[++i];
            } else {
                return Error::invalid("flag needs an argument: --" + name);
            }
        }
        given.push_back({f, *value, "--" + name});
    }

    auto apply = [&](const Given& g) -> Result<void> {
        if (!g.flag->set) {
            cfg.warnings.push_back("flag " + g.spelled +
                                   " is ignored: " + std::string(g.flag->warning));
            return ok();
        }
        if (!g.flag->field.empty()) {
            origins[std::string(g.flag->field)] = g.spelled;
        }
        return g.flag->set(cfg, g.spelled, g.value);
    };

    // --config first: the file's values replace the flags, except the few that survive it.
    for (const auto& g : given) {
        if (g.flag->name == "config") {
            if (auto r = apply(g); !r) {
                return r.error();
            }
        }
    }
    if (!cfg.configFile.empty()) {
        std::ifstream in(cfg.configFile);
        if (!in) {
            return Error::sys(errno, "--config " + cfg.configFile);
        }
        std::stringstream ss;
        ss << in.rdbuf();
        if (auto r = parseConfigYaml(ss.str(), cfg.configFile, cfg); !r) {
            return r.error();
        }
    }
    for (const auto& g : given) {
        if (g.flag->name == "config") {
            continue;
        }
        if (!cfg.configFile.empty() && !g.flag->survivesConfig) {
            cfg.warnings.push_back("flag " + g.spelled + " is ignored because --config is set");
            continue;
        }
        if (auto r = apply(g); !r) {
            return r.error();
        }
    }
    if (cfg.showHelp || cfg.showVersion) {
        return cfg;
    }
    if (auto r = cfg.validate(); !r) {
        return r.error();
    }
    // healthz/metrics defaults follow an IPv6 bind address, as kube-proxy's do.
    if (auto b = net::IpAddress::parse(cfg.bindAddress); b && b->isV6()) {
        if (origins.count("healthzBindAddress") == 0) {
            cfg.healthzBindAddress = "[::]:10256";
        }
        if (origins.count("metricsBindAddress") == 0) {
            cfg.metricsBindAddress = "[::1]:10249";
        }
    }
    // The deprecated port flags change the port of the address the server has by now.
    for (auto [port, address, host] :
         {std::tuple{cfg.healthzPortFlag, &cfg.healthzBindAddress, "0.0.0.0"},
          std::tuple{cfg.metricsPortFlag, &cfg.metricsBindAddress, "127.0.0.1"}}) {
        if (port) {
            *address = *port == 0 ? "" : withPort(*address, host, *port);
        }
    }
    if (cfg.mode.empty()) {
        cfg.warnings.push_back(
            "no proxy mode was set (kube-proxy would default to iptables); kube-ipvs runs in "
            "ipvs mode");
        cfg.mode = "ipvs";
    }
    return cfg;
}

// ---- validation -------------------------------------------------------------------------

namespace {

// The two servers' address fields, by their file names.
std::array<std::pair<const char*, const std::string*>, 2> servers(const Config& c) {
    return {{{"healthzBindAddress", &c.healthzBindAddress},
             {"metricsBindAddress", &c.metricsBindAddress}}};
}

Result<void> validHostPort(const Config& c, const std::string& field, const std::string& v) {
    if (v.empty()) {
        return ok();
    }
    const auto colon = v.rfind(':');
    if (colon == std::string::npos) {
        return bad(originOf(c, field), v, "is not ip:port");
    }
    std::string host = v.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const auto port = v.substr(colon + 1);
    int p = -1;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (!net::IpAddress::parse(host) || ec != std::errc() || ptr != port.data() + port.size() ||
        p < 0 || p > 65535) {
        return bad(originOf(c, field), v, "is not ip:port");
    }
    return ok();
}

Result<void> validDuration(const Config& c, const std::string& field, Duration d, bool positive) {
    if (d < Duration::zero() || (positive && d == Duration::zero())) {
        return bad(originOf(c, field), formatGoDuration(d),
                   positive ? "must be greater than 0" : "must not be negative");
    }
    return ok();
}

}  // namespace

Result<void> Config::validate() const {
    if (!mode.empty() && mode != "ipvs") {
        return bad(originOf(*this, "mode"), mode,
                   "is not supported: kube-ipvs implements the ipvs proxy mode only");
    }
    if (!net::IpAddress::parse(bindAddress)) {
        return bad(originOf(*this, "bindAddress"), bindAddress, "is not an IP address");
    }
    for (const auto& [field, v] : servers(*this)) {
        if (auto r = validHostPort(*this, field, *v); !r) {
            return r;
        }
    }
    if (clientConnection.qps < 0) {
        return bad(originOf(*this, "clientConnection.qps"), std::to_string(clientConnection.qps),
                   "must not be negative");
    }
    if (clientConnection.burst < 0) {
        return bad(originOf(*this, "clientConnection.burst"),
                   std::to_string(clientConnection.burst), "must not be negative");
    }
    {
        bool v4 = false;
        bool v6 = false;
        for (const auto& c : splitList(clusterCIDR)) {
            auto cidr = net::Cidr::parse(c);
            if (!cidr) {
                return bad(originOf(*this, "clusterCIDR"), c, "is not a CIDR");
            }
            bool& seen = cidr->family() == net::Family::V4 ? v4 : v6;
            if (seen) {
                return bad(originOf(*this, "clusterCIDR"), clusterCIDR,
                           "has more than one CIDR of a family");
            }
            seen = true;
        }
    }
    static const std::set<std::string> modes = {"", "ClusterCIDR", "NodeCIDR", "BridgeInterface",
                                                "InterfaceNamePrefix"};
    if (modes.count(detectLocalMode) == 0) {
        return bad(originOf(*this, "detectLocalMode"), detectLocalMode,
                   "is not a local traffic detection mode (ClusterCIDR, NodeCIDR, "
                   "BridgeInterface, InterfaceNamePrefix)");
    }
    if (detectLocalMode == "BridgeInterface" && detectLocal.bridgeInterface.empty()) {
        return bad(originOf(*this, "detectLocal.bridgeInterface"), "",
                   "must name the pod bridge with detectLocalMode BridgeInterface");
    }
    if (detectLocalMode == "InterfaceNamePrefix" && detectLocal.interfaceNamePrefix.empty()) {
        return bad(originOf(*this, "detectLocal.interfaceNamePrefix"), "",
                   "must be set with detectLocalMode InterfaceNamePrefix");
    }
    if (!(nodePortAddresses.size() == 1 && nodePortAddresses[0] == "primary")) {
        for (const auto& c : nodePortAddresses) {
            if (!net::Cidr::parse(c)) {
                return bad(originOf(*this, "nodePortAddresses"), c,
                           "is not a CIDR (or 'primary' alone)");
            }
        }
    }
    if (auto r = validDuration(*this, "configSyncPeriod", configSyncPeriod, true); !r) {
        return r;
    }
    if (iptables.masqueradeBit < 0 || iptables.masqueradeBit > 31) {
        return bad(originOf(*this, "iptables.masqueradeBit"),
                   std::to_string(iptables.masqueradeBit), "must be within [0, 31]");
    }
    if (auto r = validDuration(*this, "ipvs.syncPeriod", ipvs.syncPeriod, true); !r) {
        return r;
    }
    if (auto r = validDuration(*this, "ipvs.minSyncPeriod", ipvs.minSyncPeriod, false); !r) {
        return r;
    }
    if (ipvs.minSyncPeriod > ipvs.syncPeriod) {
        return bad(originOf(*this, "ipvs.minSyncPeriod"), formatGoDuration(ipvs.minSyncPeriod),
                   "must be less than or equal to ipvs.syncPeriod (" +
                       formatGoDuration(ipvs.syncPeriod) + ")");
    }
    const auto& scheds = ipvsSchedulers();
    if (!ipvs.scheduler.empty() &&
        std::find(scheds.begin(), scheds.end(), ipvs.scheduler) == scheds.end()) {
        std::string list;
        for (const auto& s : scheds) {
            list += (list.empty() ? "" : ", ") + s;
        }
        return bad(originOf(*this, "ipvs.scheduler"), ipvs.scheduler,
                   "is not an IPVS scheduler (" + list + ")");
    }
    for (const auto& c : ipvs.excludeCIDRs) {
        if (!net::Cidr::parse(c)) {
            return bad(originOf(*this, "ipvs.excludeCIDRs"), c, "is not a CIDR");
        }
    }
    for (const auto& [field, d] :
         {std::pair<const char*, Duration>{"ipvs.tcpTimeout", ipvs.tcpTimeout},
          {"ipvs.tcpFinTimeout", ipvs.tcpFinTimeout},
          {"ipvs.udpTimeout", ipvs.udpTimeout},
          {"conntrack.udpTimeout", conntrack.udpTimeout},
          {"conntrack.udpStreamTimeout", conntrack.udpStreamTimeout}}) {
        if (auto r = validDuration(*this, field, d, false); !r) {
            return r;
        }
    }
    for (const auto& [field, d] :
         {std::pair<const char*, std::optional<Duration>>{"conntrack.tcpEstablishedTimeout",
                                                          conntrack.tcpEstablishedTimeout},
          {"conntrack.tcpCloseWaitTimeout", conntrack.tcpCloseWaitTimeout}}) {
        if (d) {
            if (auto r = validDuration(*this, field, *d, false); !r) {
                return r;
            }
        }
    }
    for (const auto& [field, v] : {std::pair<const char*, std::optional<std::int32_t>>{
                                       "conntrack.maxPerCore", conntrack.maxPerCore},
                                   {"conntrack.min", conntrack.min}}) {
        if (v && *v < 0) {
            return bad(originOf(*this, field), std::to_string(*v), "must not be negative");
        }
    }
    if (oomScoreAdj && (*oomScoreAdj < -1000 || *oomScoreAdj > 1000)) {
        return bad(originOf(*this, "oomScoreAdj"), std::to_string(*oomScoreAdj),
                   "must be within [-1000, 1000]");
    }
    if (logging.format != "text" && logging.format != "json") {
        return bad(originOf(*this, "logging.format"), logging.format,
                   "is not a log format (text, json)");
    }
    if (logging.verbosity < 0) {
        return bad(originOf(*this, "logging.verbosity"), std::to_string(logging.verbosity),
                   "must not be negative");
    }
    if (vipBinding != "address" && vipBinding != "route") {
        return bad("--ipvs-vip-binding", vipBinding, "is not a VIP binding (address, route)");
    }
    return ok();
}

// ---- output -----------------------------------------------------------------------------

namespace {

// A text field for the YAML emitter. yaml-cpp writes some control characters unquoted (a lone
// carriage return, for one), and a reader takes those as line breaks: text holding any
// control character is written double-quoted.
struct Text {
    const std::string& s;
};

YAML::Emitter& operator<<(YAML::Emitter& e, const Text& t) {
    if (std::any_of(t.s.begin(), t.s.end(),
                    [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
        e << YAML::DoubleQuoted;
    }
    return e << t.s;
}

// The length of the valid UTF-8 sequence at s[i], or 0 if there is none.
std::size_t utf8Length(const std::string& s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    std::size_t n = 0;
    unsigned lo = 0x80;
    unsigned hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;  // no overlong forms
        hi = c == 0xed ? 0x9f : 0xbf;  // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;  // nothing above U+10FFFF
    } else {
        return 0;
    }
    if (i + n > s.size() || b(i + 1) < lo || b(i + 1) > hi) {
        return 0;
    }
    for (std::size_t k = 2; k < n; ++k) {
        if (b(i + k) < 0x80 || b(i + k) > 0xbf) {
            return 0;
        }
    }
    return n;
}

// A JSON string. Bytes that are not UTF-8 (a config file may hold any) become U+FFFD, so the
// /configz body is always valid JSON.
std::string jsonString(const std::string& s) {
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
            out += buf;
        } else if (u < 0x80) {
            out += c;
        } else if (const std::size_t n = utf8Length(s, i); n > 0) {
            out.append(s, i, n);
            i += n;
            continue;
        } else {
            out += "\\ufffd";
        }
        ++i;
    }
    return out + "\"";
}

std::string jsonList(const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
        out += (i ? "," : "") + jsonString(v[i]);
    }
    return out + "]";
}

std::string jsonBool(bool b) {
    return b ? "true" : "false";
}

std::string jsonNumber(double d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", d);
    return buf;
}

template <class T>
std::string jsonOpt(const std::optional<T>& v) {
    if (!v) {
        return "null";
    }
    if constexpr (std::is_same_v<T, Duration>) {
        return jsonString(formatGoDuration(*v));
    } else {
        return std::to_string(*v);
    }
}

}  // namespace

std::string Config::configzJson() const {
    const auto d = [](Duration x) { return jsonString(formatGoDuration(x)); };
    std::string j = "{\"kubeproxy.config.k8s.io\":{";
    j += "\"BindAddress\":" + jsonString(bindAddress);
    j += ",\"BindAddressHardFail\":" + jsonBool(bindAddressHardFail);
    j += ",\"ClientConnection\":{\"Kubeconfig\":" + jsonString(clientConnection.kubeconfig) +
         ",\"AcceptContentTypes\":" + jsonString(clientConnection.acceptContentTypes) +
         ",\"ContentType\":" + jsonString(clientConnection.contentType) +
         ",\"QPS\":" + jsonNumber(clientConnection.qps) +
         ",\"Burst\":" + std::to_string(clientConnection.burst) + "}";
    j += ",\"ClusterCIDR\":" + jsonString(clusterCIDR);
    j += ",\"ConfigSyncPeriod\":" + d(configSyncPeriod);
    j += ",\"Conntrack\":{\"MaxPerCore\":" + jsonOpt(conntrack.maxPerCore) +
         ",\"Min\":" + jsonOpt(conntrack.min) +
         ",\"TCPEstablishedTimeout\":" + jsonOpt(conntrack.tcpEstablishedTimeout) +
         ",\"TCPCloseWaitTimeout\":" + jsonOpt(conntrack.tcpCloseWaitTimeout) +
         ",\"TCPBeLiberal\":" + jsonBool(conntrack.tcpBeLiberal) +
         ",\"UDPTimeout\":" + d(conntrack.udpTimeout) +
         ",\"UDPStreamTimeout\":" + d(conntrack.udpStreamTimeout) + "}";
    j += ",\"DetectLocalMode\":" +
         jsonString(detectLocalMode.empty() ? "ClusterCIDR" : detectLocalMode);
    j += ",\"DetectLocal\":{\"BridgeInterface\":" + jsonString(detectLocal.bridgeInterface) +
         ",\"InterfaceNamePrefix\":" + jsonString(detectLocal.interfaceNamePrefix) + "}";
    j += ",\"EnableProfiling\":" + jsonBool(enableProfiling);
    j += ",\"HealthzBindAddress\":" + jsonString(healthzBindAddress);
    j += ",\"HostnameOverride\":" + jsonString(hostnameOverride);
    j += ",\"IPTables\":{\"MasqueradeAll\":" + jsonBool(iptables.masqueradeAll) +
         ",\"MasqueradeBit\":" + std::to_string(iptables.masqueradeBit) +
         ",\"LocalhostNodePorts\":" + jsonBool(iptables.localhostNodePorts) +
         ",\"SyncPeriod\":" + d(iptables.syncPeriod) +
         ",\"MinSyncPeriod\":" + d(iptables.minSyncPeriod) + "}";
    j += ",\"IPVS\":{\"SyncPeriod\":" + d(ipvs.syncPeriod) +
         ",\"MinSyncPeriod\":" + d(ipvs.minSyncPeriod) +
         ",\"Scheduler\":" + jsonString(ipvs.scheduler) +
         ",\"ExcludeCIDRs\":" + jsonList(ipvs.excludeCIDRs) +
         ",\"StrictARP\":" + jsonBool(ipvs.strictARP) + ",\"TCPTimeout\":" + d(ipvs.tcpTimeout) +
         ",\"TCPFinTimeout\":" + d(ipvs.tcpFinTimeout) + ",\"UDPTimeout\":" + d(ipvs.udpTimeout) +
         "}";
    j += ",\"Logging\":{\"Format\":" + jsonString(logging.format) +
         ",\"Verbosity\":" + std::to_string(logging.verbosity) + "}";
    j += ",\"MetricsBindAddress\":" + jsonString(metricsBindAddress);
    j += ",\"Mode\":" + jsonString(mode.empty() ? "ipvs" : mode);
    j += ",\"NodePortAddresses\":" + jsonList(nodePortAddresses);
    j += ",\"OOMScoreAdj\":" + jsonOpt(oomScoreAdj);
    j += "}}";
    return j;
}

namespace {

std::string disabledServerNote(const char* field) {
    return std::string(field) +
           ": the server is disabled (an empty flag), which a configuration file cannot say: "
           "\"\" there means the default address, as in kube-proxy";
}

}  // namespace

std::vector<std::string> Config::notWritable() const {
    std::vector<std::string> out;
    for (const auto& [field, address] : servers(*this)) {
        if (address->empty()) {
            out.push_back(disabledServerNote(field));
        }
    }
    return out;
}

std::string Config::toYaml() const {
    YAML::Emitter e;
    const auto d = [](Duration x) { return formatGoDuration(x); };
    e << YAML::BeginMap;
    e << YAML::Key << "apiVersion" << YAML::Value << "kubeproxy.config.k8s.io/v1alpha1";
    e << YAML::Key << "kind" << YAML::Value << "KubeProxyConfiguration";
    e << YAML::Key << "mode" << YAML::Value << Text{mode.empty() ? "ipvs" : mode};
    e << YAML::Key << "bindAddress" << YAML::Value << Text{bindAddress};
    e << YAML::Key << "bindAddressHardFail" << YAML::Value << bindAddressHardFail;
    for (const auto& [field, address] : servers(*this)) {
        e << YAML::Key << field << YAML::Value << Text{*address};
        if (address->empty()) {
            e << YAML::Comment(disabledServerNote(field));
        }
    }
    e << YAML::Key << "hostnameOverride" << YAML::Value << Text{hostnameOverride};
    e << YAML::Key << "clientConnection" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "kubeconfig" << YAML::Value << Text{clientConnection.kubeconfig};
    e << YAML::Key << "qps" << YAML::Value << clientConnection.qps;
    e << YAML::Key << "burst" << YAML::Value << clientConnection.burst;
    e << YAML::EndMap;
    e << YAML::Key << "clusterCIDR" << YAML::Value << Text{clusterCIDR};
    e << YAML::Key << "detectLocalMode" << YAML::Value << Text{detectLocalMode};
    e << YAML::Key << "detectLocal" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "bridgeInterface" << YAML::Value << Text{detectLocal.bridgeInterface};
    e << YAML::Key << "interfaceNamePrefix" << YAML::Value << Text{detectLocal.interfaceNamePrefix};
    e << YAML::EndMap;
    e << YAML::Key << "nodePortAddresses" << YAML::Value << YAML::Flow << nodePortAddresses;
    e << YAML::Key << "configSyncPeriod" << YAML::Value << d(configSyncPeriod);
    e << YAML::Key << "iptables" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "masqueradeAll" << YAML::Value << iptables.masqueradeAll;
    e << YAML::Key << "masqueradeBit" << YAML::Value << iptables.masqueradeBit;
    e << YAML::EndMap;
    e << YAML::Key << "ipvs" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "scheduler" << YAML::Value << Text{ipvs.scheduler};
    e << YAML::Key << "syncPeriod" << YAML::Value << d(ipvs.syncPeriod);
    e << YAML::Key << "minSyncPeriod" << YAML::Value << d(ipvs.minSyncPeriod);
    e << YAML::Key << "excludeCIDRs" << YAML::Value << YAML::Flow << ipvs.excludeCIDRs;
    e << YAML::Key << "strictARP" << YAML::Value << ipvs.strictARP;
    e << YAML::Key << "tcpTimeout" << YAML::Value << d(ipvs.tcpTimeout);
    e << YAML::Key << "tcpFinTimeout" << YAML::Value << d(ipvs.tcpFinTimeout);
    e << YAML::Key << "udpTimeout" << YAML::Value << d(ipvs.udpTimeout);
    e << YAML::EndMap;
    e << YAML::Key << "conntrack" << YAML::Value << YAML::BeginMap;
    if (conntrack.maxPerCore) {
        e << YAML::Key << "maxPerCore" << YAML::Value << *conntrack.maxPerCore;
    }
    if (conntrack.min) {
        e << YAML::Key << "min" << YAML::Value << *conntrack.min;
    }
    if (conntrack.tcpEstablishedTimeout) {
        e << YAML::Key << "tcpEstablishedTimeout" << YAML::Value
          << d(*conntrack.tcpEstablishedTimeout);
    }
    if (conntrack.tcpCloseWaitTimeout) {
        e << YAML::Key << "tcpCloseWaitTimeout" << YAML::Value << d(*conntrack.tcpCloseWaitTimeout);
    }
    e << YAML::Key << "tcpBeLiberal" << YAML::Value << conntrack.tcpBeLiberal;
    e << YAML::Key << "udpTimeout" << YAML::Value << d(conntrack.udpTimeout);
    e << YAML::Key << "udpStreamTimeout" << YAML::Value << d(conntrack.udpStreamTimeout);
    e << YAML::EndMap;
    if (oomScoreAdj) {
        e << YAML::Key << "oomScoreAdj" << YAML::Value << *oomScoreAdj;
    }
    e << YAML::Key << "logging" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "format" << YAML::Value << Text{logging.format};
    e << YAML::Key << "verbosity" << YAML::Value << logging.verbosity;
    e << YAML::EndMap;
    e << YAML::EndMap;
    return std::string(e.c_str()) + "\n";
}

std::string usage() {
    std::string out =
        "kube-ipvs: a Kubernetes node service proxy that programs Linux IPVS.\n"
        "A drop-in replacement for `kube-proxy --proxy-mode=ipvs`: same flags, same\n"
        "KubeProxyConfiguration file, same kernel objects.\n\n"
        "Usage: kube-ipvs [flags]\n\nFlags:\n";
    for (const auto& f : flagTable()) {
        std::string name = "  --" + std::string(f.name);
        if (f.name == "v") {
            name = "  -v, --v";
        }
        if (f.kind == FlagKind::String) {
            name += " value";
        }
        if (name.size() < 40) {
            name.resize(40, ' ');
        } else {
            name += "\n" + std::string(40, ' ');
        }
        out += name + std::string(f.help) + "\n";
    }
    return out;
}

}  // namespace kipvs::proxy
