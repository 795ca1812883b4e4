// What kube-ipvs sets on the node before it proxies anything (kube-proxy-ipvs.md §9.3):
// the IPVS and forwarding sysctls, the IPVS timeouts, and the conntrack limits. Pure
// functions compute the settings; applySysctls (ipvs/sysctl.h) writes only what differs, so
// a restart, or the unprivileged container after the init container did the work, writes
// nothing.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "ipvs/sysctl.h"
#include "ipvs/types.h"
#include "proxy/config.h"

namespace kipvs::proxy {

struct KernelVersion {
    int major = 0;
    int minor = 0;
    friend auto operator<=>(const KernelVersion&, const KernelVersion&) = default;
};
// "6.1.0-56-amd64" -> 6.1
std::optional<KernelVersion> parseKernelRelease(std::string_view release);

// net/ipv4/vs/conntrack=1, conn_reuse_mode=0 on 4.1 <= kernel < 5.9 (left alone from 5.9,
// which fixed what it worked around), expire_nodest_conn=1, expire_quiescent_template=1,
// ip_forward=1, and with strictARP arp_ignore=1 and arp_announce=2.
std::vector<ipvs::SysctlSetting> proxySysctls(const Config& cfg, KernelVersion kernel);
// The first kernel with net.ipv4.vs.run_estimation (--ipvs-rate-estimation=false).
inline constexpr KernelVersion kRunEstimationSince{5, 16};

// nf_conntrack_max = max(maxPerCore * cpus, min) when maxPerCore > 0, and the TCP/UDP
// conntrack timeouts that are set (> 0).
std::vector<ipvs::SysctlSetting> conntrackSysctls(const Config& cfg, int cpus);

// The IPVS timeouts to set (`ipvsadm --set`), or nullopt when none is configured.
std::optional<ipvs::Timeouts> ipvsTimeouts(const Config& cfg);

}  // namespace kipvs::proxy
