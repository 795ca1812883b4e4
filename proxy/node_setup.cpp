#include "proxy/node_setup.h"

#include <algorithm>
#include <charconv>

namespace kipvs::proxy {

std::optional<KernelVersion> parseKernelRelease(std::string_view release) {
    KernelVersion v;
    const auto* end = release.data() + release.size();
    auto [p, ec] = std::from_chars(release.data(), end, v.major);
    if (ec != std::errc() || p == end || *p != '.') {
        return std::nullopt;
    }
    auto [q, ec2] = std::from_chars(p + 1, end, v.minor);
    if (ec2 != std::errc()) {
        return std::nullopt;
    }
    return v;
}

std::vector<ipvs::SysctlSetting> proxySysctls(const Config& cfg, KernelVersion kernel) {
    std::vector<ipvs::SysctlSetting> s = {{"net/ipv4/vs/conntrack", "1"}};
    if (kernel >= KernelVersion{4, 1} && kernel < KernelVersion{5, 9}) {
        s.push_back({"net/ipv4/vs/conn_reuse_mode", "0"});
    }
    s.push_back({"net/ipv4/vs/expire_nodest_conn", "1"});
    s.push_back({"net/ipv4/vs/expire_quiescent_template", "1"});
    s.push_back({"net/ipv4/ip_forward", "1"});
    if (cfg.ipvs.strictARP) {
        s.push_back({"net/ipv4/conf/all/arp_ignore", "1"});
        s.push_back({"net/ipv4/conf/all/arp_announce", "2"});
    }
    if (!cfg.rateEstimation && kernel >= kRunEstimationSince) {
        s.push_back({"net/ipv4/vs/run_estimation", "0"});
    }
    return s;
}

std::vector<ipvs::SysctlSetting> conntrackSysctls(const Config& cfg, int cpus) {
    std::vector<ipvs::SysctlSetting> s;
    const auto& ct = cfg.conntrack;
    if (ct.maxPerCore && *ct.maxPerCore > 0) {
        const long long max = std::max<long long>(static_cast<long long>(*ct.maxPerCore) * cpus,
                                                  ct.min ? *ct.min : 0);
        s.push_back({"net/netfilter/nf_conntrack_max", std::to_string(max)});
    }
    auto seconds = [](Duration d) {
        return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count());
    };
    if (ct.tcpEstablishedTimeout && *ct.tcpEstablishedTimeout > Duration::zero()) {
        s.push_back({"net/netfilter/nf_conntrack_tcp_timeout_established",
                     seconds(*ct.tcpEstablishedTimeout)});
    }
    if (ct.tcpCloseWaitTimeout && *ct.tcpCloseWaitTimeout > Duration::zero()) {
        s.push_back({"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
                     seconds(*ct.tcpCloseWaitTimeout)});
    }
    if (ct.tcpBeLiberal) {
        s.push_back({"net/netfilter/nf_conntrack_tcp_be_liberal", "1"});
    }
    if (ct.udpTimeout > Duration::zero()) {
        s.push_back({"net/netfilter/nf_conntrack_udp_timeout", seconds(ct.udpTimeout)});
    }
    if (ct.udpStreamTimeout > Duration::zero()) {
        s.push_back(
            {"net/netfilter/nf_conntrack_udp_timeout_stream", seconds(ct.udpStreamTimeout)});
    }
    return s;
}

std::optional<ipvs::Timeouts> ipvsTimeouts(const Config& cfg) {
    auto secs = [](Duration d) {
        return static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::seconds>(d).count());
    };
    ipvs::Timeouts t{secs(cfg.ipvs.tcpTimeout), secs(cfg.ipvs.tcpFinTimeout),
                     secs(cfg.ipvs.udpTimeout)};
    if (t.tcp == 0 && t.tcpFin == 0 && t.udp == 0) {
        return std::nullopt;
    }
    return t;
}

}  // namespace kipvs::proxy
