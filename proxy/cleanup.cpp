#include "proxy/cleanup.h"

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <sstream>

#include "ipvs/names.h"
#include "proxy/desired.h"
#include "proxy/ownership.h"

namespace kipvs::proxy {

namespace {

const std::vector<std::pair<std::string_view, std::vector<std::string_view>>>& ourChains() {
    namespace n = names;
    static const std::vector<std::pair<std::string_view, std::vector<std::string_view>>> c = {
        {"nat",
         {n::kChainServices, n::kChainPostrouting, n::kChainNodePort, n::kChainLoadBalancer,
          n::kChainMarkMasq}},
        {"filter",
         {n::kChainForward, n::kChainNodePort, n::kChainProxyFirewall,
          n::kChainSourceRangesFirewall, n::kChainIpvsFilter, n::kChainIpvsOutFilter,
          n::kChainIpvsState}},
    };
    return c;
}

}  // namespace

std::string cleanupPayload(std::string_view saveOutput) {
    // table -> chains present, and the jump rules present (as iptables-save prints them).
    std::map<std::string, std::set<std::string>> chains;
    std::map<std::string, std::vector<std::string>> jumps;
    std::string table;
    std::istringstream in{std::string(saveOutput)};
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("*")) {
            table = line.substr(1);
        } else if (line.starts_with(":")) {
            chains[table].insert(line.substr(1, line.find(' ') - 1));
        } else if (line.starts_with("-A ")) {
            for (const auto& j : ipvs::jumpRules()) {
                if (j.table == table && line.starts_with("-A " + std::string(j.chain) + " ") &&
                    line.find("-j " + std::string(j.target)) != std::string::npos &&
                    line.find(std::string(j.comment)) != std::string::npos) {
                    jumps[table].push_back("-D" + line.substr(2));
                }
            }
        }
    }
    std::string out;
    for (const auto& [tbl, ours] : ourChains()) {
        std::vector<std::string_view> present;
        for (const auto& c : ours) {
            if (chains[std::string(tbl)].count(std::string(c)) != 0) {
                present.push_back(c);
            }
        }
        const auto& js = jumps[std::string(tbl)];
        if (present.empty() && js.empty()) {
            continue;
        }
        out += "*" + std::string(tbl) + "\n";
        // Declaring a chain flushes it, so rules between our chains go before the -X lines.
        for (const auto& c : present) {
            out += ":" + std::string(c) + " - [0:0]\n";
        }
        for (const auto& j : js) {
            out += j + "\n";
        }
        for (const auto& c : present) {
            out += "-X " + std::string(c) + "\n";
        }
        out += "COMMIT\n";
    }
    return out;
}

CleanupReport cleanup(CleanupTargets& t) {
    CleanupReport rep;
    const std::string dev(names::kDummyInterface);

    // What marks a virtual server as ours, read before anything is removed.
    std::map<std::pair<net::Family, SetId>, std::set<ipvs::SetEntry>> members;
    // Whether every virtual server of ours is gone; if not, what marks them as ours (the sets
    // and kube-ipvs0) stays, so that running --cleanup again still finds and deletes them.
    bool allGone = true;
    for (auto fam : {net::Family::V4, net::Family::V6}) {
        for (const auto& def : setDefs()) {
            auto r = t.ipset.list(names::setName(def.base, fam));
            if (r) {
                members[{fam, def.id}].insert(r->begin(), r->end());
            } else if (r.error().code.value() != ENOENT) {
                rep.errors.push_back(r.error().message);
                allGone = false;  // some of ours may not have been recognised
            }
        }
    }
    std::set<net::IpAddress> bound;
    if (auto a = t.addresses.addresses(dev); a) {
        bound.insert(a->begin(), a->end());
    }
    if (auto r = t.addresses.localRoutes(dev); r) {
        bound.insert(r->begin(), r->end());
    }
    std::set<net::IpAddress> nodeAddrs;
    if (auto all = t.addresses.allAddresses(dev); all) {
        for (const auto& a : *all) {
            nodeAddrs.insert(a.address);
        }
    }

    std::vector<ipvs::Op> deletes;
    auto walked = t.ipvs.walk([&](const ipvs::ServiceEntry& s, std::span<const ipvs::DestEntry>) {
        const auto& key = s.service.key;
        const OwnershipView view{[&](SetId set, const ipvs::SetEntry& e) {
                                     auto it = members.find({key.family(), set});
                                     return it != members.end() && it->second.count(e) != 0;
                                 },
                                 [&](const net::IpAddress& a) { return bound.count(a) != 0; },
                                 [&](const net::IpAddress& a) { return nodeAddrs.count(a) != 0; }};
        const bool excluded =
            std::any_of(t.excludeCidrs.begin(), t.excludeCidrs.end(),
                        [&](const net::Cidr& c) { return c.contains(key.address); });
        if (!excluded && ownsVirtualServer(key, view)) {
            deletes.push_back(ipvs::Op::deleteService(key));
        }
    });
    if (!walked) {
        rep.errors.push_back(walked.error().message);
        allGone = false;
    }
    const auto results = t.ipvs.apply(deletes);
    for (std::size_t i = 0; i < results.size(); ++i) {
        if (results[i].succeeded()) {
            ++rep.virtualServers;
        } else {
            rep.errors.push_back(results[i].message);
            allGone = false;
        }
    }
    if (!allGone) {
        rep.errors.push_back(
            "kube-ipvs0 and the ipsets are kept: they mark the virtual servers "
            "that are left as kube-ipvs', so that --cleanup run again deletes "
            "them");
    }

    // The link takes its addresses and local routes with it.
    if (!allGone) {
        // Kept (above).
    } else if (auto exists = t.addresses.linkExists(dev); exists && *exists) {
        if (auto r = t.addresses.deleteLink(dev); r) {
            rep.link = true;
        } else {
            rep.errors.push_back(r.error().message);
        }
    }

    // Rules before sets: iptables refuses to let a set referenced by a rule go.
    for (auto [fam, ipt] : {std::pair<net::Family, ipvs::Iptables*>{net::Family::V4, t.iptables4},
                            {net::Family::V6, t.iptables6}}) {
        if (ipt == nullptr) {
            continue;
        }
        std::string save;
        for (const char* table : {"nat", "filter"}) {
            auto s = ipt->save(fam, table);
            if (!s) {
                rep.errors.push_back(s.error().message);
                continue;
            }
            save += *s;
        }
        const auto payload = cleanupPayload(save);
        if (payload.empty()) {
            continue;
        }
        if (auto r = ipt->restore(fam, payload); r) {
            std::istringstream lines(payload);
            std::string l;
            while (std::getline(lines, l)) {
                rep.chains += l.starts_with("-X ") ? 1 : 0;
            }
        } else {
            rep.errors.push_back(r.error().message);
        }
    }

    for (auto fam : {net::Family::V4, net::Family::V6}) {
        for (const auto& def : setDefs()) {
            if (!allGone) {
                return rep;  // kept (above)
            }
            const auto name = names::setName(def.base, fam);
            auto info = t.ipset.info(name);
            if (!info || !*info) {
                continue;
            }
            if (auto r = t.ipset.destroy(name); r) {
                ++rep.sets;
            } else {
                rep.errors.push_back(r.error().message);
            }
        }
    }
    return rep;
}

}  // namespace kipvs::proxy
