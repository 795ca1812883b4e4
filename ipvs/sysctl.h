// sysctls (reference §9.3), read and written under /proc/sys.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/error.h"

namespace kipvs::ipvs {

class Sysctl {
  public:
    virtual ~Sysctl() = default;
    // `key` is a path below /proc/sys, e.g. "net/ipv4/vs/conntrack". Values are trimmed.
    virtual Result<std::string> get(std::string_view key) = 0;
    virtual Result<void> set(std::string_view key, std::string_view value) = 0;
};

struct SysctlSetting {
    std::string key;
    std::string value;
};

// Writes each setting whose current value differs and returns the keys it changed. Stops at
// the first failure, whose error names the key and the value.
Result<std::vector<std::string>> applySysctls(Sysctl& s, std::span<const SysctlSetting> settings);

// /proc/sys (or another root, for tests).
class ProcSysctl final : public Sysctl {
  public:
    explicit ProcSysctl(std::string root = "/proc/sys") : root_(std::move(root)) {}
    Result<std::string> get(std::string_view key) override;
    Result<void> set(std::string_view key, std::string_view value) override;

  private:
    std::string root_;
};

// Whether IPVS scheduler `sched` ("rr", "wrr", ...) is loaded as a module: true when
// <sysModule>/ip_vs_<sched> exists. False for a scheduler built into the kernel (it may have no
// entry there), for a name that is not a plain module name, or when /sys is not mounted.
bool ipvsSchedulerLoaded(std::string_view sched, const std::string& sysModule = "/sys/module");

}  // namespace kipvs::ipvs
