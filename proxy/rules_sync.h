// The reconciler's view of iptables: hand over what the rules must express, learn whether
// someone changed them. IptablesRulesSync adapts ipvs::IptablesSync (which builds the payload
// and runs iptables-restore); unit tests use a recording fake.
#pragma once

#include <memory>
#include <string>

#include "ipvs/error.h"
#include "ipvs/iptables.h"

namespace kipvs::proxy {

class RulesSync {
  public:
    virtual ~RulesSync() = default;
    // Makes our chains and jump rules express `in`; reports whether iptables-restore ran.
    virtual Result<ipvs::IptablesSync::Report> sync(const ipvs::RulesInput& in) = 0;
    // True if our chains or jump rules, as `saveOutput` (iptables-save of nat and filter) shows
    // them, were changed by someone else since the last sync.
    virtual Result<bool> verify(net::Family f, const std::string& saveOutput) = 0;
};

// Defined in rules_sync.cpp, part of the daemon's library (not the core the unit tests link).
class IptablesRulesSync final : public RulesSync {
  public:
    explicit IptablesRulesSync(ipvs::Iptables& ipt);
    Result<ipvs::IptablesSync::Report> sync(const ipvs::RulesInput& in) override;
    Result<bool> verify(net::Family f, const std::string& saveOutput) override;

  private:
    ipvs::IptablesSync sync_;
};

}  // namespace kipvs::proxy
