#include "tests/fakes/fake_kernel.h"

#include <algorithm>
#include <cerrno>
#include <numeric>
#include <sstream>

namespace kipvs::fakes {

using ipvs::Op;
using ipvs::OpKind;
using ipvs::OpResult;
using ipvs::Outcome;

namespace {

int sum(const std::map<std::string, int>& m) {
    return std::accumulate(m.begin(), m.end(), 0,
                           [](int acc, const auto& kv) { return acc + kv.second; });
}

OpResult failed(const Op& op, int err) {
    OpResult r;
    r.outcome = Outcome::Failed;
    r.error = err;
    r.message = op.toString() + ": " + std::error_code(err, std::generic_category()).message();
    return r;
}

OpResult outcome(Outcome o) {
    OpResult r;
    r.outcome = o;
    return r;
}

}  // namespace

// ---- IPVS -------------------------------------------------------------------------------

int FakeIpvs::totalWrites() const {
    return sum(writes);
}

void FakeIpvs::addService(const ipvs::VirtualServer& vs) {
    table[vs.key].vs = vs;
}

void FakeIpvs::addDest(const ipvs::ServiceKey& k, const ipvs::RealServer& rs, std::uint32_t active,
                       std::uint32_t inactive) {
    auto& d = table.at(k).dests[rs.key];
    d.dest = rs;
    d.activeConns = active;
    d.inactiveConns = inactive;
}

void FakeIpvs::setConns(const ipvs::ServiceKey& k, const ipvs::DestKey& d, std::uint32_t active,
                        std::uint32_t inactive) {
    auto& e = table.at(k).dests.at(d);
    e.activeConns = active;
    e.inactiveConns = inactive;
}

const ipvs::DestEntry* FakeIpvs::dest(const ipvs::ServiceKey& k, const ipvs::DestKey& d) const {
    auto it = table.find(k);
    if (it == table.end()) {
        return nullptr;
    }
    auto jt = it->second.dests.find(d);
    return jt == it->second.dests.end() ? nullptr : &jt->second;
}

Result<ipvs::Info> FakeIpvs::info() {
    return ipvs::Info{0x010201, 4096};
}

Result<ipvs::Timeouts> FakeIpvs::timeouts() {
    return timeoutValues;
}

Result<void> FakeIpvs::setTimeouts(const ipvs::Timeouts& t) {
    ++writes["set-timeouts"];
    if (t.tcp != 0) {
        timeoutValues.tcp = t.tcp;
    }
    if (t.tcpFin != 0) {
        timeoutValues.tcpFin = t.tcpFin;
    }
    if (t.udp != 0) {
        timeoutValues.udp = t.udp;
    }
    return ok();
}

Result<std::vector<ipvs::ServiceEntry>> FakeIpvs::services() {
    std::vector<ipvs::ServiceEntry> out;
    for (const auto& [k, v] : table) {
        out.push_back({v.vs, {}});
    }
    return out;
}

Result<std::optional<ipvs::ServiceEntry>> FakeIpvs::service(const ipvs::ServiceKey& key) {
    if (int err = failRead ? failRead("service", key) : 0; err != 0) {
        return Error::sys(err, "get-service " + key.toString());
    }
    auto it = table.find(key);
    if (it == table.end()) {
        return std::optional<ipvs::ServiceEntry>();
    }
    return std::optional<ipvs::ServiceEntry>(ipvs::ServiceEntry{it->second.vs, {}});
}

Result<std::vector<ipvs::DestEntry>> FakeIpvs::dests(const ipvs::ServiceKey& key) {
    if (int err = failRead ? failRead("dests", key) : 0; err != 0) {
        return Error::sys(err, "get-dests " + key.toString());
    }
    auto it = table.find(key);
    if (it == table.end()) {
        return Error::sys(ESRCH, "get-dests " + key.toString());
    }
    std::vector<ipvs::DestEntry> out;
    for (const auto& [dk, d] : it->second.dests) {
        out.push_back(d);
    }
    return out;
}

Result<void> FakeIpvs::walk(const ServiceVisitor& fn, const ServiceFilter& want) {
    if (onWalk) {
        if (auto r = onWalk(); !r) {
            return r;
        }
    }
    for (const auto& [k, v] : table) {
        if (want && !want(k)) {
            continue;
        }
        ++walkDestReads;
        std::vector<ipvs::DestEntry> ds;
        for (const auto& [dk, d] : v.dests) {
            ds.push_back(d);
        }
        fn(ipvs::ServiceEntry{v.vs, {}}, ds);
    }
    return ok();
}

OpResult FakeIpvs::applyOne(const Op& op) {
    if (journal != nullptr) {
        journal->push_back("ipvs " + op.toString());
    }
    if (refuse) {
        if (const int err = refuse(op)) {
            return failed(op, err);
        }
    }
    const auto& key = op.service.key;
    auto it = table.find(key);
    switch (op.kind) {
        case OpKind::AddService:
            ++writes["add-service"];
            if (it != table.end()) {
                it->second.vs = op.service;
                return outcome(Outcome::Converted);
            }
            table[key].vs = op.service;
            return outcome(Outcome::Done);
        case OpKind::UpdateService:
            ++writes["update-service"];
            if (it == table.end()) {
                table[key].vs = op.service;
                return outcome(Outcome::Converted);
            }
            it->second.vs = op.service;
            return outcome(Outcome::Done);
        case OpKind::DeleteService:
            ++writes["delete-service"];
            if (it == table.end()) {
                return outcome(Outcome::Absent);
            }
            table.erase(it);
            return outcome(Outcome::Done);
        case OpKind::AddDest:
        case OpKind::UpdateDest: {
            ++writes[op.kind == OpKind::AddDest ? "add-dest" : "update-dest"];
            if (it == table.end()) {
                return failed(op, ESRCH);
            }
            auto& dests = it->second.dests;
            const bool existed = dests.count(op.dest.key) != 0;
            dests[op.dest.key].dest = op.dest;
            const bool asked = op.kind == OpKind::AddDest;
            return outcome(existed == !asked ? Outcome::Done : Outcome::Converted);
        }
        case OpKind::DeleteDest:
            ++writes["delete-dest"];
            if (it == table.end() || it->second.dests.erase(op.dest.key) == 0) {
                return outcome(Outcome::Absent);
            }
            return outcome(Outcome::Done);
    }
    return failed(op, EINVAL);
}

std::vector<OpResult> FakeIpvs::apply(std::span<const Op> ops) {
    ++applyCalls;
    std::vector<OpResult> out;
    out.reserve(ops.size());
    for (const auto& op : ops) {
        out.push_back(applyOne(op));
    }
    return out;
}

Result<void> FakeIpvs::flush() {
    ++writes["flush"];
    table.clear();
    return ok();
}

// ---- Addresses --------------------------------------------------------------------------

int FakeAddresses::totalWrites() const {
    return sum(writes);
}

Result<bool> FakeAddresses::ensureDummy(const std::string& name) {
    auto it = links.find(name);
    if (it != links.end()) {
        if (it->second.type != "dummy") {
            return Error::invalid("link " + name + " exists with type " + it->second.type);
        }
        return false;
    }
    ++writes["create-link"];
    links[name];
    return true;
}

Result<bool> FakeAddresses::linkExists(const std::string& name) {
    return links.count(name) != 0;
}

Result<void> FakeAddresses::deleteLink(const std::string& name) {
    ++writes["delete-link"];
    links.erase(name);
    return ok();
}

Result<std::vector<net::IpAddress>> FakeAddresses::addresses(const std::string& name) {
    ++linkReads;
    auto it = links.find(name);
    if (it == links.end()) {
        return Error::sys(ENODEV, "list addresses of " + name);
    }
    return std::vector<net::IpAddress>(it->second.addresses.begin(), it->second.addresses.end());
}

namespace {

std::vector<Result<void>> applyTo(
    std::map<std::string, FakeAddresses::Link>& links, std::map<std::string, int>& writes,
    Journal* journal, const std::function<int(std::string_view, const net::IpAddress&)>& refuse,
    const std::string& name, std::span<const ipvs::AddressOp> ops, bool routes) {
    std::vector<Result<void>> out;
    auto it = links.find(name);
    for (const auto& op : ops) {
        const bool add = op.kind == ipvs::AddressOpKind::Add;
        const std::string kind =
            std::string(add ? "add-" : "del-") + (routes ? "route" : "address");
        ++writes[kind];
        if (journal != nullptr) {
            journal->push_back(std::string(routes ? "route " : "address ") +
                               (add ? "add " : "del ") + op.address.toString());
        }
        if (it == links.end()) {
            out.emplace_back(Error::sys(ENODEV, kind + " " + op.address.toString() + " " + name));
            continue;
        }
        if (refuse) {
            if (const int err = refuse(kind, op.address)) {
                out.emplace_back(Error::sys(err, kind + " " + op.address.toString()));
                continue;
            }
        }
        auto& set = routes ? it->second.localRoutes : it->second.addresses;
        if (add) {
            set.insert(op.address);
        } else {
            set.erase(op.address);
        }
        out.emplace_back(ok());
    }
    return out;
}

}  // namespace

std::vector<Result<void>> FakeAddresses::apply(const std::string& name,
                                               std::span<const ipvs::AddressOp> ops) {
    return applyTo(links, writes, journal, refuse, name, ops, false);
}

Result<std::vector<ipvs::InterfaceAddress>> FakeAddresses::allAddresses(std::string_view except) {
    std::vector<ipvs::InterfaceAddress> out;
    for (const auto& [name, link] : links) {
        if (!except.empty() && name == except) {
            continue;
        }
        for (const auto& a : link.addresses) {
            out.push_back({name, a, static_cast<std::uint8_t>(a.size() * 8)});
        }
    }
    return out;
}

Result<std::vector<net::IpAddress>> FakeAddresses::localRoutes(const std::string& name) {
    ++linkReads;
    auto it = links.find(name);
    if (it == links.end()) {
        return Error::sys(ENODEV, "list local routes of " + name);
    }
    return std::vector<net::IpAddress>(it->second.localRoutes.begin(),
                                       it->second.localRoutes.end());
}

std::vector<Result<void>> FakeAddresses::applyLocalRoutes(const std::string& name,
                                                          std::span<const ipvs::AddressOp> ops) {
    return applyTo(links, writes, journal, refuse, name, ops, true);
}

// ---- ipset ------------------------------------------------------------------------------

int FakeIpset::totalWrites() const {
    return sum(writes);
}

Result<std::vector<std::string>> FakeIpset::setNames() {
    std::vector<std::string> out;
    for (const auto& [name, s] : sets) {
        out.push_back(name);
    }
    return out;
}

Result<std::optional<ipvs::SetInfo>> FakeIpset::info(const std::string& name) {
    auto it = sets.find(name);
    if (it == sets.end()) {
        return std::optional<ipvs::SetInfo>();
    }
    ipvs::SetInfo i;
    i.name = name;
    i.type = it->second.spec.type;
    i.family = it->second.spec.family;
    i.maxElem = it->second.spec.maxElem;
    i.entries = static_cast<std::uint32_t>(it->second.entries.size());
    return std::optional<ipvs::SetInfo>(i);
}

Result<void> FakeIpset::create(const ipvs::SetSpec& spec) {
    auto it = sets.find(spec.name);
    if (it != sets.end()) {
        if (it->second.spec.type != spec.type ||
            (spec.type != ipvs::SetType::BitmapPort && it->second.spec.family != spec.family)) {
            return Error::invalid("ipset create " + spec.name + ": exists with another type");
        }
        return ok();
    }
    ++writes["create"];
    sets[spec.name].spec = spec;
    return ok();
}

Result<std::size_t> FakeIpset::visit(const std::string& name, const MemberVisitor& fn) {
    ++lists;
    auto it = sets.find(name);
    if (it == sets.end()) {
        return Error::sys(ENOENT, "ipset list " + name);
    }
    for (const auto& e : it->second.entries) {
        fn(e);
    }
    return it->second.entries.size();
}

std::vector<Result<void>> FakeIpset::apply(const std::string& name, ipvs::SetType /*type*/,
                                           std::span<const ipvs::SetOp> ops) {
    std::vector<Result<void>> out;
    auto it = sets.find(name);
    for (const auto& op : ops) {
        const bool add = op.kind == ipvs::SetOpKind::Add;
        ++writes[add ? "add" : "del"];
        if (journal != nullptr) {
            journal->push_back(std::string("ipset ") + (add ? "add " : "del ") + name);
        }
        if (it == sets.end()) {
            out.emplace_back(Error::sys(ENOENT, "ipset " + name + ": no such set"));
            continue;
        }
        if (refuse) {
            if (const int err = refuse(name, op)) {
                out.emplace_back(
                    Error::sys(err, std::string("ipset ") + (add ? "add " : "del ") + name));
                continue;
            }
        }
        auto& set = it->second;
        if (add) {
            if (set.entries.count(op.entry) == 0 && set.entries.size() >= set.spec.maxElem) {
                out.emplace_back(Error::invalid("ipset add " + name +
                                                ": Hash is full, cannot add more elements"));
                continue;
            }
            set.entries.insert(op.entry);
        } else {
            set.entries.erase(op.entry);
        }
        out.emplace_back(ok());
    }
    return out;
}

Result<void> FakeIpset::flush(const std::string& name) {
    ++writes["flush"];
    auto it = sets.find(name);
    if (it == sets.end()) {
        return Error::sys(ENOENT, "ipset flush " + name);
    }
    it->second.entries.clear();
    return ok();
}

Result<void> FakeIpset::destroy(const std::string& name) {
    ++writes["destroy"];
    sets.erase(name);
    return ok();
}

Result<void> FakeIpset::swap(const std::string& a, const std::string& b) {
    ++writes["swap"];
    auto ia = sets.find(a);
    auto ib = sets.find(b);
    if (ia == sets.end() || ib == sets.end()) {
        return Error::sys(ENOENT, "ipset swap " + a + " " + b);
    }
    std::swap(ia->second.entries, ib->second.entries);
    return ok();
}

// ---- iptables ---------------------------------------------------------------------------
//
// The fake keeps the tables as iptables-save would print them: applying a restore payload
// flushes the chains it declares, appends -A rules and turns "-I CHAIN 1 ..." into a rule at
// the head of CHAIN, so missing-jump-rule detection and drift checks see realistic text.

namespace {

struct Tables {
    std::map<std::string, std::map<std::string, std::vector<std::string>>> chains;
};

Tables parseSave(const std::string& text) {
    Tables t;
    std::istringstream in(text);
    std::string line;
    std::string table;
    while (std::getline(in, line)) {
        if (line.starts_with("*")) {
            table = line.substr(1);
        } else if (line.starts_with(":")) {
            t.chains[table][line.substr(1, line.find(' ') - 1)];
        } else if (line.starts_with("-A ")) {
            const auto sp = line.find(' ', 3);
            t.chains[table][line.substr(3, sp - 3)].push_back(line);
        }
    }
    return t;
}

std::string renderSave(const Tables& t) {
    std::string out;
    for (const auto& [table, chains] : t.chains) {
        out += "*" + table + "\n";
        for (const auto& [chain, rules] : chains) {
            out += ":" + chain + " - [0:0]\n";
        }
        for (const auto& [chain, rules] : chains) {
            for (const auto& r : rules) {
                out += r + "\n";
            }
        }
        out += "COMMIT\n";
    }
    return out;
}

}  // namespace

Result<void> FakeIptables::restore(net::Family f, const std::string& payload) {
    const int fi = f == net::Family::V4 ? 0 : 1;
    restores[fi].push_back(payload);
    if (failRestores > 0) {
        --failRestores;
        return Error::invalid("iptables-restore: line 3 failed");
    }
    Tables t = parseSave(saveText[fi]);
    std::istringstream in(payload);
    std::string line;
    std::string table;
    while (std::getline(in, line)) {
        if (line.starts_with("*")) {
            table = line.substr(1);
        } else if (line.starts_with(":")) {
            t.chains[table][line.substr(1, line.find(' ') - 1)].clear();
        } else if (line.starts_with("-A ")) {
            const auto sp = line.find(' ', 3);
            t.chains[table][line.substr(3, sp - 3)].push_back(line);
        } else if (line.starts_with("-D ")) {
            const auto sp = line.find(' ', 3);
            auto& rules = t.chains[table][line.substr(3, sp - 3)];
            auto it = std::find(rules.begin(), rules.end(), "-A" + line.substr(2));
            if (it == rules.end()) {
                return Error::invalid("iptables-restore: line: " + line + ": no such rule");
            }
            rules.erase(it);
        } else if (line.starts_with("-X ")) {
            t.chains[table].erase(line.substr(3));
        } else if (line.starts_with("-I ")) {
            // "-I CHAIN 1 rest" -> "-A CHAIN rest" at the head.
            const auto sp = line.find(' ', 3);
            const std::string chain = line.substr(3, sp - 3);
            const auto sp2 = line.find(' ', sp + 1);
            auto& rules = t.chains[table][chain];
            rules.insert(rules.begin(), "-A " + chain + line.substr(sp2));
        }
    }
    saveText[fi] = renderSave(t);
    return ok();
}

Result<std::string> FakeIptables::save(net::Family f, std::string_view table) {
    const int fi = f == net::Family::V4 ? 0 : 1;
    const Tables all = parseSave(saveText[fi]);
    Tables one;
    if (auto it = all.chains.find(std::string(table)); it != all.chains.end()) {
        one.chains[it->first] = it->second;
    } else {
        one.chains[std::string(table)];
    }
    return renderSave(one);
}

// ---- conntrack, sysctl ------------------------------------------------------------------

Result<std::size_t> FakeConntrack::deleteMatching(
    net::Family family, ipvs::Protocol protocol,
    const std::function<bool(const ipvs::ConntrackEntry&)>& match) {
    ++dumps;
    std::size_t n = 0;
    std::erase_if(entries, [&](const ipvs::ConntrackEntry& e) {
        if (e.protocol == protocol && e.original.dst.family() == family && match(e)) {
            ++n;
            return true;
        }
        return false;
    });
    return n;
}

Result<std::string> FakeSysctl::get(std::string_view key) {
    auto it = values.find(key);
    if (it == values.end()) {
        return Error::sys(ENOENT, "sysctl " + std::string(key));
    }
    return it->second;
}

Result<void> FakeSysctl::set(std::string_view key, std::string_view value) {
    written.emplace_back(key);
    values[std::string(key)] = std::string(value);
    return ok();
}

}  // namespace kipvs::fakes
