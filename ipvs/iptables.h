// iptables: the handful of rules kube-ipvs keeps beside IPVS (reference §5).
//
// buildRestorePayload() is pure: it turns a description of what is wanted into an
// `iptables-restore --noflush` payload that rewrites our chains atomically. The Iptables
// interface runs iptables-restore / iptables-save (or the ip6tables ones), whichever backend
// (nft or legacy) the node's `iptables` uses. IptablesSync puts the two together and skips
// the restore when nothing changed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/net.h"
#include "ipvs/types.h"

namespace kipvs::ipvs {

// How "traffic from inside the cluster" is recognised (detectLocalMode).
struct LocalDetector {
    enum class Kind : std::uint8_t { None, Cidr, BridgeInterface, InterfacePrefix };
    Kind kind = Kind::None;
    net::Cidr cidr;         // ClusterCIDR / NodeCIDR modes: this family's CIDR
    std::string interface;  // bridge name or interface name prefix
    friend bool operator==(const LocalDetector&, const LocalDetector&) = default;
};

// An LB (ip, protocol, port) that the node itself may not reach because no source range
// admits the node (KUBE-IPVS-OUT-FILTER DROP, reference §4 and §5.4).
struct NoNodeAccess {
    net::IpAddress ip;
    Protocol protocol = Protocol::TCP;
    std::uint16_t port = 0;
    friend auto operator<=>(const NoNodeAccess&, const NoNodeAccess&) = default;
};

struct RulesInput {
    net::Family family = net::Family::V4;
    int masqueradeBit = 14;
    bool masqueradeAll = false;
    LocalDetector localDetector;
    bool randomFully = true;  // iptables >= 1.6.2 supports MASQUERADE --random-fully
    // Base names (names::kSet*, without the KUBE-6- rewrite) of the sets that have members;
    // rules that match an empty set are left out, as kube-proxy does.
    std::set<std::string, std::less<>> nonEmptySets;
    std::vector<NoNodeAccess> noNodeAccess;  // sorted, unique
    friend bool operator==(const RulesInput&, const RulesInput&) = default;
};

// The `iptables-restore --noflush` input for one family: nat chains and rules, COMMIT, filter
// chains and rules, COMMIT (reference §5.3). Each ":CHAIN - [0:0]" line flushes that chain, so
// applying it replaces the content of our chains and nothing else.
std::string buildRestorePayload(const RulesInput& in);

// A rule in a built-in chain that jumps to one of ours (reference §5.1).
struct JumpRule {
    std::string_view table;    // "nat" or "filter"
    std::string_view chain;    // "OUTPUT", "PREROUTING", ...
    std::string_view comment;  // "kubernetes service portals"
    std::string_view target;   // "KUBE-SERVICES"
};
// In the order kube-proxy inserts them (each at position 1).
std::span<const JumpRule> jumpRules();

// The jump rules absent from `iptables-save` output of the nat and filter tables.
std::vector<JumpRule> missingJumpRules(std::string_view saveOutput);

class Iptables {
  public:
    virtual ~Iptables() = default;
    // Feeds `payload` to iptables-restore (ip6tables-restore for V6) with --noflush and the
    // xtables lock wait options. The error carries the tool's stderr.
    virtual Result<void> restore(net::Family f, const std::string& payload) = 0;
    // iptables-save output for one table ("nat", "filter").
    virtual Result<std::string> save(net::Family f, std::string_view table) = 0;
    // iptables-save output of the nat table followed by the filter table, what every sync and
    // verification compares. This default saves each table; ExecIptables reads both with one
    // run of the tool.
    virtual Result<std::string> saveNatFilter(net::Family f);
};

// Keeps our chains and jump rules in place for one family.
class IptablesSync {
  public:
    explicit IptablesSync(Iptables& ipt) : ipt_(ipt) {}

    struct Report {
        bool restored = false;      // iptables-restore ran
        int jumpRulesInserted = 0;  // missing jump rules put back
    };

    // Ensures the jump rules and, if `in` differs from what was last applied successfully (or
    // nothing was), rewrites our chains. Both go through one iptables-restore run. A fresh
    // instance (a restarted daemon) first looks for the state chain (names::kChainIpvsState):
    // if it records this very input and our chains still hold what that restore left, nothing
    // is rewritten. After each rewrite a second, small restore updates the state chain.
    Result<Report> sync(const RulesInput& in);

    // Re-reads the tables and reports whether our chains or jump rules differ from what the
    // last sync left (someone else changed them). If so, the next sync() rewrites them.
    Result<bool> verify(net::Family f);
    // The same, judged from iptables-save output of nat and filter read elsewhere.
    Result<bool> verify(net::Family f, std::string_view saveOutput);

    // Forget what was applied, so the next sync() restores unconditionally.
    void invalidate();

  private:
    Iptables& ipt_;
    struct State;
    std::shared_ptr<State> state_;
};

}  // namespace kipvs::ipvs
