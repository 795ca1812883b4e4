// Stateful fakes of every kernel interface the reconciler uses.
//
// Each fake holds a kernel state that a test can load, inspect and change behind the
// reconciler's back, counts the writes it receives per kind, and can be told to refuse
// chosen operations. They implement the interfaces' documented semantics (EEXIST on add
// becomes an update, deleting something absent is done, one failing op does not stop a
// batch), so a reconciler that passes against them does the right thing against the kernel
// layer, whose real implementations are tested in the guest VM.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ipvs/addresses.h"
#include "ipvs/conntrack.h"
#include "ipvs/ipset.h"
#include "ipvs/iptables.h"
#include "ipvs/ipvs.h"
#include "ipvs/sysctl.h"

namespace kipvs::fakes {

// Fakes given the same journal append one line per write to it, so tests can check the
// order of writes across IPVS, addresses and sets ("ipvs add-service ...",
// "address add 10.96.0.1", "ipset add KUBE-CLUSTER-IP").
using Journal = std::vector<std::string>;

class FakeIpvs final : public ipvs::Ipvs {
  public:
    Journal* journal = nullptr;
    struct Vs {
        ipvs::VirtualServer vs;
        std::map<ipvs::DestKey, ipvs::DestEntry> dests;
    };
    std::map<ipvs::ServiceKey, Vs> table;
    ipvs::Timeouts timeoutValues{900, 120, 300};

    // Writes received, per kind ("add-service", ...); reads are not counted.
    std::map<std::string, int> writes;
    // Virtual servers whose real servers a walk read.
    int walkDestReads = 0;
    // Runs as a walk starts (a test pauses a reader thread there); an error fails the walk.
    std::function<Result<void>()> onWalk;
    int totalWrites() const;
    int applyCalls = 0;
    // Returns an errno to refuse an op with, or 0 to let it through.
    std::function<int(const ipvs::Op&)> refuse;
    // Returns an errno to fail a read of one virtual server ("service") or of its real
    // servers ("dests") with, or 0 to let it through.
    std::function<int(std::string_view read, const ipvs::ServiceKey&)> failRead;

    // Test helpers.
    void addService(const ipvs::VirtualServer& vs);
    void addDest(const ipvs::ServiceKey& k, const ipvs::RealServer& rs, std::uint32_t active = 0,
                 std::uint32_t inactive = 0);
    void setConns(const ipvs::ServiceKey& k, const ipvs::DestKey& d, std::uint32_t active,
                  std::uint32_t inactive);
    const ipvs::DestEntry* dest(const ipvs::ServiceKey& k, const ipvs::DestKey& d) const;

    Result<ipvs::Info> info() override;
    Result<ipvs::Timeouts> timeouts() override;
    Result<void> setTimeouts(const ipvs::Timeouts& t) override;
    Result<std::vector<ipvs::ServiceEntry>> services() override;
    Result<std::optional<ipvs::ServiceEntry>> service(const ipvs::ServiceKey& key) override;
    Result<std::vector<ipvs::DestEntry>> dests(const ipvs::ServiceKey& key) override;
    using ipvs::Ipvs::walk;
    Result<void> walk(const ServiceVisitor& fn, const ServiceFilter& want) override;
    std::vector<ipvs::OpResult> apply(std::span<const ipvs::Op> ops) override;
    Result<void> flush() override;

  private:
    ipvs::OpResult applyOne(const ipvs::Op& op);
};

class FakeAddresses final : public ipvs::Addresses {
  public:
    Journal* journal = nullptr;
    struct Link {
        std::string type = "dummy";
        std::set<net::IpAddress> addresses;
        std::set<net::IpAddress> localRoutes;
    };
    std::map<std::string, Link> links;
    std::map<std::string, int> writes;  // "add-address", "del-address", "add-route", ...
    int linkReads = 0;                  // lists of one link's addresses or local routes
    int totalWrites() const;
    std::function<int(std::string_view kind, const net::IpAddress&)> refuse;

    Result<bool> ensureDummy(const std::string& name) override;
    Result<bool> linkExists(const std::string& name) override;
    Result<void> deleteLink(const std::string& name) override;
    Result<std::vector<net::IpAddress>> addresses(const std::string& name) override;
    std::vector<Result<void>> apply(const std::string& name,
                                    std::span<const ipvs::AddressOp> ops) override;
    Result<std::vector<ipvs::InterfaceAddress>> allAddresses(std::string_view except) override;
    Result<std::vector<net::IpAddress>> localRoutes(const std::string& name) override;
    std::vector<Result<void>> applyLocalRoutes(const std::string& name,
                                               std::span<const ipvs::AddressOp> ops) override;
};

class FakeIpset final : public ipvs::Ipset {
  public:
    Journal* journal = nullptr;
    struct Set {
        ipvs::SetSpec spec;
        std::set<ipvs::SetEntry> entries;
    };
    std::map<std::string, Set> sets;
    std::map<std::string, int> writes;  // "create", "add", "del", "flush", "destroy", "swap"
    int lists = 0;                      // sets listed
    int totalWrites() const;
    std::function<int(const std::string& set, const ipvs::SetOp&)> refuse;

    Result<std::vector<std::string>> setNames() override;
    Result<std::optional<ipvs::SetInfo>> info(const std::string& name) override;
    Result<void> create(const ipvs::SetSpec& spec) override;
    Result<std::size_t> visit(const std::string& name, const MemberVisitor& fn) override;
    std::vector<Result<void>> apply(const std::string& name, ipvs::SetType type,
                                    std::span<const ipvs::SetOp> ops) override;
    Result<void> flush(const std::string& name) override;
    Result<void> destroy(const std::string& name) override;
    Result<void> swap(const std::string& a, const std::string& b) override;
};

// Records restores and serves a save output that tests can edit.
class FakeIptables final : public ipvs::Iptables {
  public:
    std::vector<std::string> restores[2];  // per family (0 = V4, 1 = V6)
    std::string saveText[2];               // what save() returns, all tables
    int failRestores = 0;                  // refuse the next N restores
    Result<void> restore(net::Family f, const std::string& payload) override;
    Result<std::string> save(net::Family f, std::string_view table) override;
};

class FakeConntrack final : public ipvs::Conntrack {
  public:
    std::vector<ipvs::ConntrackEntry> entries;
    int dumps = 0;
    Result<std::size_t> deleteMatching(
        net::Family family, ipvs::Protocol protocol,
        const std::function<bool(const ipvs::ConntrackEntry&)>& match) override;
};

class FakeSysctl final : public ipvs::Sysctl {
  public:
    std::map<std::string, std::string, std::less<>> values;
    std::vector<std::string> written;
    Result<std::string> get(std::string_view key) override;
    Result<void> set(std::string_view key, std::string_view value) override;
};

}  // namespace kipvs::fakes
