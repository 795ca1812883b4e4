#include "proxy/rules_sync.h"

namespace kipvs::proxy {

IptablesRulesSync::IptablesRulesSync(ipvs::Iptables& ipt) : sync_(ipt) {}

Result<ipvs::IptablesSync::Report> IptablesRulesSync::sync(const ipvs::RulesInput& in) {
    return sync_.sync(in);
}

Result<bool> IptablesRulesSync::verify(net::Family f, const std::string& saveOutput) {
    return sync_.verify(f, saveOutput);
}

}  // namespace kipvs::proxy
