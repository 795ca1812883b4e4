// The iptables-restore payload (reference §5.3), the jump rules (§5.1) and IptablesSync.
//
// The payload is written in the form iptables-save prints for most rules (`! -s CIDR` before
// the matches, `MARK --set-xmark M/M` for kube-proxy's `--or-mark M`, `--set-xmark M/0x0` for
// `--xor-mark M`), which is the reference's example byte for byte; iptables-restore reads
// either spelling into the same rule. Where iptables-save still differs (it prints `-s X/32`,
// `--vproto 6` before `--vaddr`, `--reject-with icmp-port-unreachable`, and escapes the single
// quotes of the SCTP comments), IptablesSync does not compare against the payload: it keeps
// what iptables-save showed right after its own restore.
#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

#include "ipvs/iptables.h"
#include "ipvs/names.h"

namespace kipvs::ipvs {

namespace {

namespace n = names;

// The rules that exist only while their set has members (upstream's ipsetWithIptablesChain),
// in the order they are written.
struct SetRule {
    std::string_view set;
    bool nat;  // table nat, else filter
    std::string_view from;
    std::string_view to;
    std::string_view match;
    std::string_view protocol;  // "-p" match, empty for none
};

constexpr std::array<SetRule, 12> kSetRules{{
    {n::kSetLoopBack, true, n::kChainPostrouting, "MASQUERADE", "dst,dst,src", ""},
    {n::kSetLoadBalancer, true, n::kChainServices, n::kChainLoadBalancer, "dst,dst", ""},
    {n::kSetLoadBalancerLocal, true, n::kChainLoadBalancer, "RETURN", "dst,dst", ""},
    {n::kSetLoadBalancerFw, false, n::kChainProxyFirewall, n::kChainSourceRangesFirewall, "dst,dst",
     ""},
    {n::kSetLoadBalancerSourceCidr, false, n::kChainSourceRangesFirewall, "RETURN", "dst,dst,src",
     ""},
    {n::kSetLoadBalancerSourceIp, false, n::kChainSourceRangesFirewall, "RETURN", "dst,dst,src",
     ""},
    {n::kSetNodePortLocalTcp, true, n::kChainNodePort, "RETURN", "dst", "tcp"},
    {n::kSetNodePortTcp, true, n::kChainNodePort, n::kChainMarkMasq, "dst", "tcp"},
    {n::kSetNodePortLocalUdp, true, n::kChainNodePort, "RETURN", "dst", "udp"},
    {n::kSetNodePortUdp, true, n::kChainNodePort, n::kChainMarkMasq, "dst", "udp"},
    {n::kSetNodePortLocalSctp, true, n::kChainNodePort, "RETURN", "dst,dst", "sctp"},
    {n::kSetNodePortSctp, true, n::kChainNodePort, n::kChainMarkMasq, "dst,dst", "sctp"},
}};

// The comment each set's rules carry (reference §4); kube-proxy has them on the set objects.
std::string_view setComment(std::string_view set) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 17> kComments{{
        {n::kSetLoopBack,
         "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"},
        {n::kSetClusterIp, "Kubernetes service cluster ip + port for masquerade purpose"},
        {n::kSetExternalIp,
         "Kubernetes service external ip + port for masquerade and filter purpose"},
        {n::kSetExternalIpLocal,
         "Kubernetes service external ip + port with externalTrafficPolicy=local"},
        {n::kSetLoadBalancer, "Kubernetes service lb portal"},
        {n::kSetLoadBalancerLocal,
         "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"},
        {n::kSetLoadBalancerFw,
         "Kubernetes service load balancer ip + port for load balancer with sourceRange"},
        {n::kSetLoadBalancerSourceCidr,
         "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"},
        {n::kSetLoadBalancerSourceIp,
         "Kubernetes service load balancer ip + port + source IP for packet filter purpose"},
        {n::kSetNodePortTcp, "Kubernetes nodeport TCP port for masquerade purpose"},
        {n::kSetNodePortLocalTcp, "Kubernetes nodeport TCP port with externalTrafficPolicy=local"},
        {n::kSetNodePortUdp, "Kubernetes nodeport UDP port for masquerade purpose"},
        {n::kSetNodePortLocalUdp, "Kubernetes nodeport UDP port with externalTrafficPolicy=local"},
        {n::kSetNodePortSctp,
         "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"},
        {n::kSetNodePortLocalSctp,
         "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash "
         "ip:port'"},
        {n::kSetHealthCheckNodePort, "Kubernetes health check node port"},
        {n::kSetIpvsIps, "Addresses on the ipvs interface"},
    }};
    for (const auto& [name, comment] : kComments) {
        if (name == set) {
            return comment;
        }
    }
    return {};
}

constexpr std::array<std::string_view, 5> kNatChains{n::kChainServices, n::kChainPostrouting,
                                                     n::kChainNodePort, n::kChainLoadBalancer,
                                                     n::kChainMarkMasq};
constexpr std::array<std::string_view, 6> kFilterChains{
    n::kChainForward,       n::kChainNodePort,
    n::kChainProxyFirewall, n::kChainSourceRangesFirewall,
    n::kChainIpvsFilter,    n::kChainIpvsOutFilter};

constexpr std::array<JumpRule, 9> kJumpRules{{
    {"nat", "OUTPUT", "kubernetes service portals", n::kChainServices},
    {"nat", "PREROUTING", "kubernetes service portals", n::kChainServices},
    {"nat", "POSTROUTING", "kubernetes postrouting rules", n::kChainPostrouting},
    {"filter", "FORWARD", "kubernetes forwarding rules", n::kChainForward},
    {"filter", "INPUT", "kubernetes health check rules", n::kChainNodePort},
    {"filter", "INPUT", "kube-proxy firewall rules", n::kChainProxyFirewall},
    {"filter", "FORWARD", "kube-proxy firewall rules", n::kChainProxyFirewall},
    {"filter", "INPUT", "kubernetes ipvs access filter", n::kChainIpvsFilter},
    {"filter", "OUTPUT", "kubernetes ipvs access filter", n::kChainIpvsOutFilter},
}};

struct Sections {
    std::string nat;
    std::string filter;
};

class Writer {
  public:
    explicit Writer(const RulesInput& in) : in_(in) {
        std::array<char, 16> buf{};
        std::snprintf(buf.data(), buf.size(), "0x%x", 1U << (in.masqueradeBit & 31));
        mark_ = buf.data();
    }

    Sections write() {
        for (auto c : kNatChains) {
            line(nat_, ":", c, " - [0:0]");
        }
        for (auto c : kFilterChains) {
            line(filter_, ":", c, " - [0:0]");
        }
        const bool v6 = in_.family == net::Family::V6;
        // Connections from the node's loopback never go through a service chain.
        line(nat_, "-A ", n::kChainServices,
             v6 ? " -s ::1/128 -j RETURN" : " -s 127.0.0.0/8 -j RETURN");

        for (const auto& r : kSetRules) {
            if (!nonEmpty(r.set)) {
                continue;
            }
            std::string rule = "-A " + std::string(r.from);
            if (!r.protocol.empty()) {
                rule += " -p " + std::string(r.protocol);
            }
            rule += commentSet(r.set, r.match) + " -j " + std::string(r.to);
            (r.nat ? nat_ : filter_) += rule + "\n";
        }

        if (nonEmpty(n::kSetClusterIp)) {
            clusterIpRule();
        }
        if (nonEmpty(n::kSetExternalIp)) {
            const std::string base =
                "-A " + std::string(n::kChainServices) + commentSet(n::kSetExternalIp, "dst,dst");
            nat_ += base + " -j " + std::string(n::kChainMarkMasq) + "\n";
            externalIpAccepts(base);
        }
        if (nonEmpty(n::kSetExternalIpLocal)) {
            externalIpAccepts("-A " + std::string(n::kChainServices) +
                              commentSet(n::kSetExternalIpLocal, "dst,dst"));
        }
        line(nat_, "-A ", n::kChainServices, " -m addrtype --dst-type LOCAL -j ",
             n::kChainNodePort);
        line(nat_, "-A ", n::kChainLoadBalancer, " -j ", n::kChainMarkMasq);
        line(filter_, "-A ", n::kChainSourceRangesFirewall, " -j DROP");
        for (const auto& d : in_.noNodeAccess) {
            const std::string ip = d.ip.toString();
            filter_ += "-A " + std::string(n::kChainIpvsOutFilter) + " -s " + ip +
                       " -m ipvs --vaddr " + ip + " --vproto " +
                       std::string(protocolLower(d.protocol)) + " --vport " +
                       std::to_string(d.port) + " -j DROP\n";
        }
        // Accept IPVS traffic before other components' nat rules can catch it; these must be
        // the last rules of KUBE-SERVICES.
        for (auto set : {n::kSetClusterIp, n::kSetLoadBalancer}) {
            if (nonEmpty(set)) {
                line(nat_, "-A ", n::kChainServices, " -m set --match-set ", setName(set),
                     " dst,dst -j ACCEPT");
            }
        }
        line(filter_, "-A ", n::kChainForward,
             " -m comment --comment \"kubernetes forwarding rules\" -m mark --mark ", mark_, "/",
             mark_, " -j ACCEPT");
        line(filter_, "-A ", n::kChainForward,
             " -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack "
             "--ctstate RELATED,ESTABLISHED -j ACCEPT");
        // Written whether or not the sets have members (as upstream does).
        line(filter_, "-A ", n::kChainNodePort, commentSet(n::kSetHealthCheckNodePort, "dst"),
             " -j ACCEPT");
        for (auto set :
             {n::kSetLoadBalancer, n::kSetClusterIp, n::kSetExternalIp, n::kSetExternalIpLocal}) {
            line(filter_, "-A ", n::kChainIpvsFilter, " -m set --match-set ", setName(set),
                 " dst,dst -j RETURN");
        }
        line(filter_, "-A ", n::kChainIpvsFilter, " -m set --match-set ",
             setName(n::kSetHealthCheckNodePort), " dst -j RETURN");
        line(filter_, "-A ", n::kChainIpvsFilter, " -m conntrack --ctstate NEW -m set --match-set ",
             setName(n::kSetIpvsIps),
             v6 ? " dst -j REJECT --reject-with icmp6-port-unreachable" : " dst -j REJECT");

        line(nat_, "-A ", n::kChainPostrouting, " -m mark ! --mark ", mark_, "/", mark_,
             " -j RETURN");
        // Clears the mark (kube-proxy: --xor-mark) so a packet that re-traverses the stack is
        // not masqueraded twice.
        line(nat_, "-A ", n::kChainPostrouting, " -j MARK --set-xmark ", mark_, "/0x0");
        line(nat_, "-A ", n::kChainPostrouting,
             " -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE",
             in_.randomFully ? " --random-fully" : "");
        line(nat_, "-A ", n::kChainMarkMasq, " -j MARK --set-xmark ", mark_, "/", mark_);
        return {std::move(nat_), std::move(filter_)};
    }

  private:
    template <class... Parts>
    static void line(std::string& out, const Parts&... parts) {
        (out.append(std::string_view(parts)), ...);
        out += '\n';
    }

    bool nonEmpty(std::string_view set) const { return in_.nonEmptySets.contains(set); }
    std::string setName(std::string_view base) const { return names::setName(base, in_.family); }
    std::string commentSet(std::string_view set, std::string_view match) const {
        return " -m comment --comment \"" + std::string(setComment(set)) +
               "\" -m set --match-set " + setName(set) + " " + std::string(match);
    }

    void clusterIpRule() {
        const auto& d = in_.localDetector;
        std::string rule = "-A " + std::string(n::kChainServices);
        std::string match = "dst,dst";
        if (!in_.masqueradeAll) {
            switch (d.kind) {
                case LocalDetector::Kind::Cidr:
                    rule += " ! -s " + d.cidr.toString();
                    break;
                case LocalDetector::Kind::BridgeInterface:
                    rule += " ! -i " + d.interface;
                    break;
                case LocalDetector::Kind::InterfacePrefix:
                    rule += " ! -i " + d.interface + "+";
                    break;
                case LocalDetector::Kind::None:
                    // Masquerade node-originated traffic whose source is a VIP on kube-ipvs0
                    // (kubernetes#65158).
                    match = "src,dst";
                    break;
            }
        }
        nat_ += rule + commentSet(n::kSetClusterIp, match) + " -j " +
                std::string(n::kChainMarkMasq) + "\n";
    }

    // Traffic to an external IP from off the node (not from a bridge, not from a local
    // process), and traffic to one that is also a local address, stays with IPVS.
    void externalIpAccepts(const std::string& base) {
        nat_ += base + " -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT\n";
        nat_ += base + " -m addrtype --dst-type LOCAL -j ACCEPT\n";
    }

    const RulesInput& in_;
    std::string mark_;
    std::string nat_;
    std::string filter_;
};

std::string jumpLine(const JumpRule& j) {
    return "-I " + std::string(j.chain) + " 1 -m comment --comment \"" + std::string(j.comment) +
           "\" -j " + std::string(j.target) + "\n";
}

std::vector<std::string_view> splitLines(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        auto l = text.substr(0, nl);
        while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) {
            l.remove_suffix(1);
        }
        out.push_back(l);
        if (nl == std::string_view::npos) {
            break;
        }
        text.remove_prefix(nl + 1);
    }
    return out;
}

// "-A CHAIN ..." -> CHAIN
std::string_view appendChain(std::string_view line) {
    if (!line.starts_with("-A ")) {
        return {};
    }
    line.remove_prefix(3);
    return line.substr(0, line.find(' '));
}

bool isJumpRule(const JumpRule& j, std::string_view table, std::string_view line) {
    if (j.table != table || appendChain(line) != j.chain) {
        return false;
    }
    const std::string quoted = "--comment \"" + std::string(j.comment) + "\"";
    const std::string target = " -j " + std::string(j.target);
    return line.find(quoted) != std::string_view::npos && line.ends_with(target);
}

bool ours(std::string_view table, std::string_view chain) {
    if (table == "nat") {
        return std::find(kNatChains.begin(), kNatChains.end(), chain) != kNatChains.end();
    }
    if (table == "filter") {
        return std::find(kFilterChains.begin(), kFilterChains.end(), chain) != kFilterChains.end();
    }
    return false;
}

// Our part of iptables-save output: the declarations and rules of our chains and our jump
// rules, each prefixed with its table. Built-in chain counters and rule order elsewhere are
// left out, so that other components' rules and traffic do not count as changes.
std::string ourPart(std::string_view save) {
    std::string out;
    std::string_view table;
    for (auto line : splitLines(save)) {
        if (line.starts_with("*")) {
            table = line.substr(1);
            continue;
        }
        if (line.starts_with(":")) {
            const auto chain = line.substr(1, line.find(' ') - 1);
            if (ours(table, chain)) {
                out.append(table).append(" :").append(chain).append("\n");
            }
            continue;
        }
        if (ours(table, appendChain(line)) ||
            std::any_of(kJumpRules.begin(), kJumpRules.end(),
                        [&](const JumpRule& j) { return isJumpRule(j, table, line); })) {
            out.append(table).append(" ").append(line).append("\n");
        }
    }
    return out;
}

// Whether iptables-save output declares every chain we own.
bool allChainsPresent(std::string_view save) {
    const std::string part = ourPart(save);
    const auto has = [&](std::string_view table, std::string_view chain) {
        return part.find(std::string(table) + " :" + std::string(chain) + "\n") !=
               std::string::npos;
    };
    return std::all_of(kNatChains.begin(), kNatChains.end(),
                       [&](auto c) { return has("nat", c); }) &&
           std::all_of(kFilterChains.begin(), kFilterChains.end(),
                       [&](auto c) { return has("filter", c); });
}

}  // namespace

std::string buildRestorePayload(const RulesInput& in) {
    auto s = Writer(in).write();
    return "*nat\n" + s.nat + "COMMIT\n*filter\n" + s.filter + "COMMIT\n";
}

std::span<const JumpRule> jumpRules() {
    return kJumpRules;
}

std::vector<JumpRule> missingJumpRules(std::string_view saveOutput) {
    std::vector<bool> found(kJumpRules.size(), false);
    std::string_view table;
    for (auto line : splitLines(saveOutput)) {
        if (line.starts_with("*")) {
            table = line.substr(1);
            continue;
        }
        for (std::size_t i = 0; i < kJumpRules.size(); ++i) {
            if (!found[i] && isJumpRule(kJumpRules[i], table, line)) {
                found[i] = true;
            }
        }
    }
    std::vector<JumpRule> out;
    for (std::size_t i = 0; i < kJumpRules.size(); ++i) {
        if (!found[i]) {
            out.push_back(kJumpRules[i]);
        }
    }
    return out;
}

namespace {

// FNV-1a: a stable hash (unlike std::hash) for the state chain's record.
std::string stableHash(std::string_view s) {
    std::uint64_t h = 1469598103934665603ULL;
    for (const char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string stateComment(const std::string& input, const std::string& rules) {
    return "kube-ipvs input=" + input + " rules=" + rules;
}

// The comment of the state chain's rule in iptables-save output, or "".
std::string findStateComment(std::string_view save) {
    const std::string prefix = "-A " + std::string(names::kChainIpvsState) + " ";
    for (auto line : splitLines(save)) {
        if (!line.starts_with(prefix)) {
            continue;
        }
        const auto at = line.find("kube-ipvs input=");
        if (at == std::string_view::npos) {
            continue;
        }
        auto rest = line.substr(at);
        const auto end = rest.find('"');
        return std::string(end == std::string_view::npos ? rest : rest.substr(0, end));
    }
    return {};
}

}  // namespace

struct IptablesSync::State {
    bool applied = false;  // `last` is what our chains hold, as far as we know
    bool fresh = true;     // no sync yet in this process: what a previous one wrote may be adopted
    RulesInput last;
    std::string snapshot;  // ourPart() of iptables-save right after the last restore
};

Result<std::string> Iptables::saveNatFilter(net::Family f) {
    auto nat = save(f, "nat");
    if (!nat) {
        return nat.error();
    }
    auto filter = save(f, "filter");
    if (!filter) {
        return filter.error();
    }
    return *nat + *filter;
}

Result<IptablesSync::Report> IptablesSync::sync(const RulesInput& in) {
    if (!state_) {
        state_ = std::make_shared<State>();
    }
    State& st = *state_;
    const std::string what =
        std::string("iptables sync (") + std::string(net::familyName(in.family)) + ")";
    auto saved = ipt_.saveNatFilter(in.family);
    if (!saved) {
        return saved.error().context(what);
    }
    const auto missing = missingJumpRules(*saved);
    const Sections full = Writer(in).write();
    const std::string inputHash = stableHash(full.nat + "\n" + full.filter);
    Report report;
    const bool fresh = std::exchange(st.fresh, false);
    if (fresh && missing.empty() && allChainsPresent(*saved) &&
        findStateComment(*saved) == stateComment(inputHash, stableHash(ourPart(*saved)))) {
        // A restart with everything in place: adopt it, write nothing.
        st.applied = true;
        st.last = in;
        st.snapshot = ourPart(*saved);
        return report;
    }
    // A chain someone deleted must be rewritten before a jump to it can be inserted.
    const bool rewrite =
        !st.applied || st.last.family != in.family || !(st.last == in) || !allChainsPresent(*saved);
    if (!rewrite && missing.empty()) {
        return report;
    }

    Sections s;
    if (rewrite) {
        s = full;
    }
    for (const auto& j : missing) {
        (j.table == "nat" ? s.nat : s.filter) += jumpLine(j);
    }
    std::string payload;
    if (!s.nat.empty()) {
        payload += "*nat\n" + s.nat + "COMMIT\n";
    }
    if (!s.filter.empty()) {
        payload += "*filter\n" + s.filter + "COMMIT\n";
    }
    if (auto r = ipt_.restore(in.family, payload); !r) {
        // A table may have been committed before another failed: trust nothing next time.
        st.applied = false;
        return r.error().context(what);
    }
    report.restored = true;
    report.jumpRulesInserted = static_cast<int>(missing.size());
    if (rewrite) {
        st.last = in;
    }
    st.applied = true;
    auto after = ipt_.saveNatFilter(in.family);
    // Without a snapshot verify() cannot compare and reports a change, which only costs one
    // more rewrite.
    st.snapshot = after ? ourPart(*after) : std::string();
    if (after && (rewrite || findStateComment(*after).empty())) {
        // Record what we wrote, for the next process. Failing here costs only one restore at
        // the next start.
        const std::string chain(names::kChainIpvsState);
        const std::string state =
            "*filter\n:" + chain + " - [0:0]\n-A " + chain + " -m comment --comment \"" +
            stateComment(inputHash, stableHash(st.snapshot)) + "\" -j RETURN\nCOMMIT\n";
        (void)ipt_.restore(in.family, state);
    }
    return report;
}

Result<bool> IptablesSync::verify(net::Family f) {
    if (!state_ || !state_->applied || state_->last.family != f) {
        return true;
    }
    auto saved = ipt_.saveNatFilter(f);
    if (!saved) {
        return saved.error().context("iptables verify (" + std::string(net::familyName(f)) + ")");
    }
    return verify(f, *saved);
}

Result<bool> IptablesSync::verify(net::Family f, std::string_view saveOutput) {
    if (!state_ || !state_->applied || state_->last.family != f) {
        return true;
    }
    const auto* saved = &saveOutput;
    const bool changed = ourPart(*saved) != state_->snapshot || !missingJumpRules(*saved).empty();
    if (changed) {
        state_->applied = false;
    }
    return changed;
}

void IptablesSync::invalidate() {
    if (state_) {
        state_->applied = false;
        state_->fresh = false;
    }
}

}  // namespace kipvs::ipvs
