// The reconciler of one IP family: turns Services, EndpointSlices and the Node into IPVS
// virtual and real servers, kube-ipvs0 addresses, ipset members and iptables rules, and
// keeps them so, writing only what changed.
//
// How it works (README "Design" tells the longer story):
//  - Event handlers only record objects and mark their Service dirty.
//  - A sync step recomputes the desired state of dirty Services only (proxy/desired.h),
//    diffs it against the *known* kernel state (what the kernel was last seen or made to
//    hold), and issues the difference: IPVS writes through one pipelined batch, ipset and
//    address changes batched. Objects several Services share (addresses, set members) are
//    reference-counted, so a change costs O(what changed), never a walk of all Services.
//  - The known state changes only when the kernel confirms a write, so after a partial
//    failure it still matches the kernel and the failed part is retried on the next sync.
//  - Start-up reads the kernel once (adopt) and converges by diff: a restart with nothing
//    changed writes nothing.
//  - The periodic verification compares a kernel snapshot with the known state and repairs
//    whatever someone else changed.
//
// Ownership: we touch only what is ours. kube-ipvs0 and every address on it are ours. A
// virtual server is ours when our ipsets say so: its (ip, protocol, port) is in
// KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP(-LOCAL) or KUBE-LOAD-BALANCER, or it is a NodePort (a node
// address with the port in KUBE-NODE-PORT-*). Members are added before the virtual server and
// removed after it, so this holds across a crash at any point. Virtual servers inside
// excludeCIDRs are never deleted.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ipvs/addresses.h"
#include "ipvs/conntrack.h"
#include "ipvs/ipset.h"
#include "ipvs/iptables.h"
#include "ipvs/ipvs.h"
#include "k8s-client/objects.h"
#include "proxy/anomalies.h"
#include "proxy/desired.h"
#include "proxy/digest.h"
#include "proxy/endpoints.h"
#include "proxy/metrics.h"
#include "proxy/packed_dest.h"
#include "proxy/packed_lists.h"
#include "proxy/ref_table.h"
#include "proxy/rules_sync.h"
#include "proxy/slice_index.h"

namespace kipvs::proxy {

// How service VIPs are made local: addresses on kube-ipvs0 (kube-proxy's way, the default)
// or local routes through kube-ipvs0 (see ipvs/addresses.h for why).
enum class VipBinding : std::uint8_t { Address, Route };

// The binding a family really gets: the kernel refuses IPv6 routes through a link that is
// down, as kube-ipvs0 always is (ipvs/rtnl_addresses.h), so IPv6 VIPs are always addresses.
constexpr VipBinding bindingFor(VipBinding configured, net::Family f) {
    return f == net::Family::V6 ? VipBinding::Address : configured;
}

struct ObjectKeyHash {
    std::size_t operator()(const k8s::ObjectKey& k) const noexcept;
};
struct SetEntryHash {
    std::size_t operator()(const ipvs::SetEntry& e) const noexcept;
};
// The digest of a VIP or a set member, from all of its content (proxy/digest.h). Each table of
// them keeps the sum of its known members' (RefTable::knownDigest), which a verification
// compares with that of the members it read.
struct ContentDigest {
    std::uint64_t operator()(const net::IpAddress& a) const noexcept;
    std::uint64_t operator()(const ipvs::SetEntry& e) const noexcept;
};
// Hash and equality of API objects by their key, for a set of objects found by key: the key
// is stored once, in the object, not again as a map key (at 44,000 Services that is 64 bytes
// per Service and per slice).
struct ByKeyHash {
    using is_transparent = void;
    std::size_t operator()(const k8s::ObjectKey& k) const noexcept { return ObjectKeyHash{}(k); }
    template <class T>
    std::size_t operator()(const T& object) const noexcept {
        return ObjectKeyHash{}(object.key);
    }
};
struct ByKeyEqual {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
        return keyOf(a) == keyOf(b);
    }

  private:
    static const k8s::ObjectKey& keyOf(const k8s::ObjectKey& k) { return k; }
    template <class T>
    static const k8s::ObjectKey& keyOf(const T& object) {
        return object.key;
    }
};

struct ProxierConfig {
    net::Family family = net::Family::V4;
    std::string nodeName;
    ipvs::ShortName scheduler = *ipvs::ShortName::make("rr");
    std::vector<net::Cidr> excludeCidrs;   // this family's
    std::vector<net::Cidr> nodePortCidrs;  // this family's; empty: every node address
    // nodePortAddresses ["primary"]: NodePorts answer on the node's own IP of this family only.
    bool nodePortPrimary = false;
    // Overrides the Node's address as this family's node IP (--bind-address).
    std::optional<net::IpAddress> bindAddress;
    ipvs::RulesInput rules;  // masquerade bit/all, local detector, random-fully
    VipBinding binding = VipBinding::Address;
    std::size_t servicesPerStep = 2000;  // bounded work per sync step
    // Trigger times (endpoints.kubernetes.io/last-change-trigger-time) at or before this
    // Unix time are not measured: they predate this process.
    std::int64_t startWallNs = 0;
    // Unix time in ns once the kernel is programmed, the end of the programming latency (as
    // kube-proxy measures it). Unset: the sync's start time (SyncTime::wallNs), for tests.
    std::function<std::int64_t()> wallClock;
    // Where EndpointSlices kept despite an anomaly are reported (proxy/anomalies.h): one whose
    // Service does not exist, one whose endpoints another slice of its Service has too. Null:
    // not reported (and not looked for).
    AnomalySink* anomalies = nullptr;
};

struct KernelRefs {
    ipvs::Ipvs& ipvs;
    ipvs::Addresses& addresses;
    ipvs::Ipset& ipset;
    RulesSync& rules;  // this family's iptables
    ipvs::Conntrack* conntrack = nullptr;
};

struct SyncTime {
    std::chrono::steady_clock::time_point mono;
    std::int64_t wallNs = 0;  // Unix time, for trigger-time latency
};

// A virtual server's configuration, its key left out (a known one's is its map's key).
struct VsSettings {
    ipvs::ShortName scheduler;
    std::uint32_t flags = 0;  // HASHED stripped
    std::uint32_t timeout = 0;
    std::uint32_t netmask = 0xffffffff;  // as ipvs::VirtualServer's
    ipvs::ShortName persistenceEngine;
    static VsSettings of(const ipvs::VirtualServer& vs) {
        return {vs.scheduler, vs.flags & ~ipvs::kSvcFlagHashed, vs.timeout, vs.netmask,
                vs.persistenceEngine};
    }
    bool sameAs(const ipvs::VirtualServer& vs) const {
        return scheduler == vs.scheduler && flags == (vs.flags & ~ipvs::kSvcFlagHashed) &&
               timeout == vs.timeout && netmask == vs.netmask &&
               persistenceEngine == vs.persistenceEngine;
    }
};

// What verification compares of a virtual server, in 64 bits: its settings, then its real
// servers in key order (PackedDest::addTo: the draining flag left out). Equal for equal
// states, whichever list type holds the real servers.
template <class Dests>
std::uint64_t vsDigest(const VsSettings& s, const Dests& dests) {
    Digest d;
    const auto name = [&d](const ipvs::ShortName& n) {
        const auto v = n.view();
        d.addBytes({reinterpret_cast<const std::uint8_t*>(v.data()), v.size()});
    };
    name(s.scheduler);
    d.add(s.flags).add(s.timeout).add(s.netmask);
    name(s.persistenceEngine);
    d.add(dests.size());
    for (const PackedDest x : dests) {
        x.addTo(d);
    }
    return d.value();
}

// A kernel IPVS table as read by Ipvs::walk, each virtual server reduced to its key and its
// vsDigest. The io thread compares that digest with its known state's and reads only the
// virtual servers that differ again, whole. Keeping the real servers instead held 9.5 MB at
// 44,000 Services x 10 for the length of a pass (1.8 MB now: bench-proxier-memory).
struct IpvsSnapshot {
    struct Vs {
        ipvs::ServiceKey key;
        std::uint64_t digest = 0;
    };
    // A deque: no copy of the whole list while it grows.
    std::deque<Vs> services;
};
// Reads the whole IPVS table (both families). Safe on another thread with its own Ipvs.
Result<IpvsSnapshot> takeSnapshot(ipvs::Ipvs& ipvs);

// Everything the periodic verification compares, read in one go, possibly on another thread
// with its own kernel handles, so that the io thread only compares.
struct KernelSnapshot {
    IpvsSnapshot ipvs;
    bool linkExists = true;  // kube-ipvs0
    // Per family: the digest (ContentDigest) of kube-ipvs0's addresses or local routes
    // (nullopt: unreadable) and of the members of each of our sets (nullopt: the set is
    // missing), and iptables-save of nat and filter (nullopt: unreadable). The io thread reads
    // a list again only when its digest differs from the known one's: the lists themselves
    // held 4.5 MB at 44,000 Services for the length of a pass.
    struct Family {
        std::optional<UnorderedDigest> vips;
        std::array<std::optional<UnorderedDigest>, kSetCount> sets;
        std::optional<std::string> iptablesSave;
    };
    std::map<net::Family, Family> families;
    std::optional<std::vector<ipvs::InterfaceAddress>> nodeAddresses;
};

struct SnapshotSources {
    ipvs::Ipvs& ipvs;
    ipvs::Addresses& addresses;
    ipvs::IpsetLister& ipset;
    ipvs::Iptables* iptables = nullptr;
};
Result<KernelSnapshot> takeKernelSnapshot(SnapshotSources src,
                                          const std::vector<net::Family>& families,
                                          VipBinding binding);

struct HealthCheck {
    std::uint16_t port = 0;
    std::uint32_t localEndpoints = 0;
};

struct VerifyReport {
    int ipvsRepairs = 0;
    int addressRepairs = 0;
    int setRepairs = 0;
    int iptablesRepairs = 0;
    int total() const { return ipvsRepairs + addressRepairs + setRepairs + iptablesRepairs; }
};

class Proxier {
  public:
    Proxier(ProxierConfig cfg, KernelRefs kernel, metrics::Registry& metrics);
    ~Proxier();
    Proxier(const Proxier&) = delete;
    Proxier& operator=(const Proxier&) = delete;

    // ---- events (only record; nothing is programmed here) ----
    void onServiceUpsert(const k8s::Service& svc);
    void onServiceDelete(const k8s::ObjectKey& key);
    void onSliceUpsert(const k8s::EndpointSlice& slice);
    void onSliceDelete(const k8s::ObjectKey& key);
    void onNodeUpsert(const k8s::Node& node);
    void onNodeDelete();
    void setServicesSynced();
    void setSlicesSynced();
    void setNodeSynced();
    // Services, EndpointSlices and the Node have all synced once.
    bool initialized() const;

    // ---- kernel ----
    // Reads the kernel state we own (kube-ipvs0, our sets, our virtual servers) and creates
    // what must exist (kube-ipvs0, the sets). Must succeed once before the first sync.
    Result<void> adopt();
    bool adopted() const { return adopted_; }
    // adopt() in three parts, so that the IPVS table (the long part: 18 s at 44,000 Services
    // x 10 under emulation) is read on another thread while this one takes the initial lists:
    //  1. prepareAdopt() creates kube-ipvs0 and the sets and reads the VIPs, the set members
    //     and the node addresses, which say which virtual servers are ours;
    //  2. readOwned() reads our virtual servers of this family. It may run on another thread
    //     with its own Ipvs while this proxier takes events (and only events: every member it
    //     reads changes only in syncs and verification, which wait for finishAdopt());
    //  3. finishAdopt() takes what it read.
    struct OwnedTable;
    Result<void> prepareAdopt();
    Result<std::unique_ptr<OwnedTable>> readOwned(ipvs::Ipvs& ipvs) const;
    void finishAdopt(std::unique_ptr<OwnedTable> table);
    // Virtual servers of ours the kernel holds (as last seen or written).
    std::size_t knownVirtualServers() const { return known_.size(); }

    struct Step {
        bool done = true;     // nothing left to do in this sync
        bool failed = false;  // some kernel write failed (it will be retried)
        // iptables-restore failed: the sync stopped short. Only this makes a sync unhealthy
        // (kube-proxy-ipvs.md §6.2 step 10, §6.5): a refused per-object write is logged,
        // retried and counted, but the sync completes, as kube-proxy's does.
        bool aborted = false;
        // A step taken while the initial lists are still arriving (programEarly()): it
        // programmed what is known so far and is not a completed sync.
        bool early = false;
        // Where the step's time went, in seconds (logged with the sync at -v 2, so that a slow
        // sync says which part of the kernel it waited for).
        struct Times {
            double compute = 0;    // desired state and diff of the changed Services
            double ipsets = 0;     // set member writes
            double addresses = 0;  // kube-ipvs0 addresses or local routes
            double ipvs = 0;       // virtual and real server writes
            double iptables = 0;   // iptables-save/-restore
            Times& operator+=(const Times& o);
        } times;
        std::size_t services = 0;  // changed Services processed
        std::size_t left = 0;      // changed Services still to process (early: incl. unlisted)
    };
    // Does a bounded amount of sync work: up to servicesPerStep changed Services (fewer once
    // their IPVS writes reach a bound), then the shared objects, iptables and clean-up once the
    // changed Services are drained. Call again while !done. A Service whose write failed is
    // changed again from the end of the sync on, not in this one: its retry waits for the
    // runner's retry delay, and failing Services cannot keep a sync from ending. No-op (done)
    // before adopt(), and before initialized() unless programEarly(). Before initialized() a step
    // is `early`: it programs the changed Services known so far and leaves every removal (and the
    // clean-up of stale objects) to the first full sync.
    Step syncStep(const SyncTime& now);
    // A cold node (adopt() found nothing of ours) whose Node is known programs Services while
    // the initial lists still arrive: there is nothing of ours a partial view could remove,
    // and at 44,000 Services the lists take seconds that the kernel writes can overlap.
    // kube-proxy waits for every list first; after a restart kube-ipvs does too, because
    // there a partial view would take real servers away.
    bool programEarly() const { return adopted_ && coldStart_ && nodeSynced_ && !initialized(); }
    // Runs steps until done; true if no write failed.
    bool syncAll(const SyncTime& now);
    // There is work for a sync: changed Services, retries, or the first sync.
    bool pending() const;

    // Compares a snapshot with the known state and repairs drift: known state is corrected to
    // what the kernel holds and the owners are marked for the next sync. Objects we wrote
    // after the snapshot began (opSeq() > snapshotSeq) are skipped: the snapshot may predate
    // those writes. Its kernel I/O reads again what differs from the known state, whole, and
    // confirms virtual servers the snapshot lacks (a dump read while others are deleted can
    // skip some that are there).
    VerifyReport verify(const KernelSnapshot& snap, std::uint64_t snapshotSeq);
    // The same in bounded steps, so that comparing a 44,000-Service snapshot does not hold up
    // events: each call compares one part (the addresses, one set, up to `budget` virtual
    // servers, the confirmation of missing ones, the rules) and may be followed by events and
    // syncs before the next (what they write is after the snapshot, so it is skipped).
    struct VerifyProgress {
        int stage = 0;
        std::size_t pos = 0;  // next virtual server of the snapshot
        std::size_t sub = 0;  // next bucket of known_ in the scan for unseen virtual servers
        void nextStage() {
            ++stage;
            sub = 0;
        }
        // This pass's number (0 until its first step): the known virtual servers the snapshot
        // holds are marked with it (KnownVs::seenIn), where a set of their keys took 3 MB at
        // 44,000 Services for the length of the pass.
        std::uint32_t pass = 0;
        // Ours and not in the snapshot, found by scanning known_ a few buckets per step;
        // the bucket count it started with (a rehash between steps restarts the scan).
        std::vector<ipvs::ServiceKey> unseen;
        std::size_t buckets = 0;
        VerifyReport report;
        bool done = false;
    };
    void verifyStep(const KernelSnapshot& snap, std::uint64_t snapshotSeq, VerifyProgress& p,
                    std::size_t budget);
    // Sets the gauges that count all Services (virtual and real servers, Services without
    // local endpoints, refused set members). O(Services), so called when /metrics is
    // rendered, not by every sync.
    void refreshGauges();
    // Sequence number of the latest kernel write; take it just before starting a snapshot.
    std::uint64_t opSeq() const { return opSeq_; }

    // Deletes terminating TCP real servers that have no connections left (reads their
    // counters). Returns how many were deleted.
    int reapTerminating();
    std::size_t terminatingCount() const;

    // detectLocalMode NodeCIDR learns the pod CIDR from the Node: the rules follow it.
    void setLocalDetector(const ipvs::LocalDetector& d) {
        if (!(cfg_.rules.localDetector == d)) {
            cfg_.rules.localDetector = d;
        }
    }

    // ---- for the daemon ----
    const std::map<k8s::ObjectKey, HealthCheck>& healthChecks() const { return healthChecks_; }
    // Bumped whenever healthChecks() changes.
    std::uint64_t healthCheckGeneration() const { return hcGeneration_; }
    net::Family family() const { return cfg_.family; }
    std::size_t serviceCount() const { return services_.size(); }
    // True once the first full sync after start has completed.
    bool initialSyncDone() const { return initialSyncDone_; }
    // Buckets of all its hash tables, for the tests and the memory bench.
    std::size_t bucketCount() const;
    // The Service that owns a virtual server, or null.
    const k8s::ObjectKey* ownerOf(const ipvs::ServiceKey& key) const {
        auto it = vsOwner_.find(key);
        return it == vsOwner_.end() ? nullptr : it->second;
    }

  private:
    // What one Service wants, as ServiceDesired says, kept to diff its next change against.
    // The lists are one heap block (proxy/packed_lists.h): 44,000 of these are resident.
    struct Contribution {
        PackedLists<ipvs::ServiceKey, net::IpAddress, DesiredEntry, ipvs::NoNodeAccess> lists;
        std::span<const ipvs::ServiceKey> vss() const { return lists.get<0>(); }  // sorted
        std::span<const net::IpAddress> bind() const { return lists.get<1>(); }
        std::span<const DesiredEntry> entries() const { return lists.get<2>(); }
        std::span<const ipvs::NoNodeAccess> noNodeAccess() const { return lists.get<3>(); }
        std::unique_ptr<std::vector<UdpServing>> udp;  // null: no UDP port
        std::uint16_t healthCheckNodePort = 0;
        std::uint32_t localReadyIps = 0;
        bool noLocalInternal = false;
        bool noLocalExternal = false;
    };
    struct KnownVs {
        VsSettings settings;
        DestList dests;             // sorted by key; draining() if terminating
        std::uint64_t touched = 0;  // opSeq of our last write to it
        // The last verification pass whose snapshot held it (0 again if it was gone when
        // read again).
        std::uint32_t seenIn = 0;
    };

  public:
    // Defined here, after the private types it holds.
    struct OwnedTable {
        std::unordered_map<ipvs::ServiceKey, KnownVs> known;
        std::map<ipvs::ServiceKey, std::set<ipvs::DestKey>> terminating;
    };

  private:
    using SetTable = RefTable<ipvs::SetEntry, SetEntryHash, ContentDigest>;
    using SetKnown = std::unordered_set<ipvs::SetEntry, SetEntryHash>;

    // Work collected while processing Services, applied in a crash-safe order.
    struct Batch;

    void markDirty(const k8s::ObjectKey& svc);
    Step syncStepOnce(const SyncTime& now);
    bool waitingForService(const k8s::ObjectKey& svc) const;
    bool serviceExists(const k8s::ObjectKey& key) const;
    bool hasSlices(const k8s::ObjectKey& svc) const;
    void addSlicesWithoutService(std::ptrdiff_t delta);
    void reportSliceAnomalies(const k8s::EndpointSlice& slice);
    void markAllDirty();
    NodeContext nodeContext() const;
    Result<void> refreshNodeAddresses();
    void setNodeAddresses(const std::vector<ipvs::InterfaceAddress>& all);
    MergedEndpoints endpointsOf(const k8s::ObjectKey& svc) const;
    void processService(const k8s::ObjectKey& key, const NodeContext& node, Batch& b);
    void claimVs(const k8s::ObjectKey& owner, const DesiredVs& want, Batch& b);
    void releaseVs(const k8s::ObjectKey& owner, const ipvs::ServiceKey& key, Batch& b);
    void diffVs(const DesiredVs& want, Batch& b);
    void refEntry(const DesiredEntry& e, int delta, Batch& b);
    void refBind(const net::IpAddress& a, int delta, Batch& b);
    bool applyBatch(Batch& b, const SyncTime& now);
    bool applySetOps(Batch& b, bool adds);
    bool applyVipOps(Batch& b, bool adds);
    bool applyIpvsOps(Batch& b);
    void applyKnown(const ipvs::Op& op);
    bool syncIptables();
    void cleanupConntrack(Batch& b);
    void queueStaleCleanup(Batch& b);
    bool owns(const ipvs::ServiceKey& key) const;
    // Whether removing this set member or VIP would leave a virtual server whose delete has
    // not succeeded yet (still in vsPending_) without what makes it ours.
    bool marksPendingVs(SetId set, const ipvs::SetEntry& e) const;
    bool marksPendingVs(const net::IpAddress& vip) const;
    bool excluded(const net::IpAddress& a) const;
    // VIPs bound one way: kube-ipvs0's addresses or its local routes (this family's, for
    // vipList).
    std::vector<Result<void>> vipApply(VipBinding how, std::span<const ipvs::AddressOp> ops);
    Result<std::vector<net::IpAddress>> vipList(VipBinding how);
    void removeOtherBinding();
    Result<void> ensureSets();
    Result<void> readSets();
    void countOp(std::string_view object, std::string_view op, std::string_view result,
                 double n = 1);
    class OpTally;
    void updateTerminatingGauge();
    // After a complete sync: gives back the bucket arrays of tables that shrank or were sized
    // for a burst (proxy/hash_buckets.h).
    void shrinkTables();
    // f(table) for each std::unordered_* table (not binds_ and sets_, RefTables).
    template <class Self, class F>
    static void forEachTable(Self& self, F&& f);
    void countRepair(std::string_view object, int& counter);
    // kube-ipvs0's VIPs of this family, read again (sorted, no duplicates).
    Result<std::vector<net::IpAddress>> readVips();
    void compareVips(const std::vector<net::IpAddress>& vips, VerifyReport& rep);
    void compareSet(std::size_t i, const std::vector<ipvs::SetEntry>& members, VerifyReport& rep);
    void resyncVs(const ipvs::ServiceKey& key);
    bool changedSince(const ipvs::ServiceKey& key, std::uint64_t snapshotSeq) const;
    // Returns whether it read the virtual server from the kernel again (it differs).
    bool verifyVs(const IpvsSnapshot::Vs& v, std::uint64_t snapshotSeq, std::uint32_t pass,
                  VerifyReport& rep);
    // Collects known virtual servers absent from the snapshot, about `budget` entries of
    // known_ per call; true once the scan is complete.
    bool scanUnseen(std::uint64_t snapshotSeq, VerifyProgress& p, std::size_t budget) const;
    void confirmUnseen(std::uint64_t snapshotSeq, const std::vector<ipvs::ServiceKey>& unseen,
                       VerifyReport& rep);

    ProxierConfig cfg_;
    KernelRefs k_;
    metrics::Registry& metrics_;
    std::string familyLabel_;
    // Counted for every event: looked up once (a lookup builds its name, help and labels).
    metrics::Counter& serviceChanges_;
    metrics::Counter& endpointChanges_;

    // API state.
    // Services with a cluster IP of this family; the others are only known to exist.
    std::unordered_set<k8s::Service, ByKeyHash, ByKeyEqual> services_;
    // Only known to exist, so only a 64-bit hash of each key is kept: 40 bytes per Service,
    // where the key took 96, and the IPv6 proxier of a single-stack IPv4 cluster holds one
    // per Service. Two keys with the same hash (about 10^-10 at 44,000 Services) would only
    // miscount kube_ipvs_endpointslices_without_service.
    std::unordered_set<std::uint64_t> otherFamily_;
    static std::uint64_t keyHash(const k8s::ObjectKey& k);
    std::unordered_set<k8s::EndpointSlice, ByKeyHash, ByKeyEqual> slices_;
    // The slices of each Service, pointing into slices_ (its elements do not move).
    SliceIndex slicesOf_;
    std::optional<k8s::Node> node_;
    bool servicesSynced_ = false;
    bool slicesSynced_ = false;
    bool nodeSynced_ = false;
    std::unordered_set<k8s::ObjectKey, ObjectKeyHash> dirty_;
    // Services whose IPVS write failed in the sync under way: back in dirty_ when it ends.
    std::unordered_set<k8s::ObjectKey, ObjectKeyHash> retryAfterSync_;
    // Services an early step left for their slices (programmed once, with them); back in
    // dirty_ when the slices are all listed.
    std::unordered_set<k8s::ObjectKey, ObjectKeyHash> earlyDeferred_;
    std::unordered_map<k8s::ObjectKey, std::int64_t, ObjectKeyHash> triggers_;
    std::vector<net::IpAddress> nodeAddresses_;  // this family, not kube-ipvs0, sorted
    // Slices in slices_ whose Service is not in services_; counted once Services synced.
    std::size_t slicesWithoutService_ = 0;

    // Desired state, as contributions per Service and reference counts of shared objects.
    std::unordered_map<k8s::ObjectKey, Contribution, ObjectKeyHash> contrib_;
    // The Service that has each virtual server: its key in contrib_ (whose nodes do not move).
    std::unordered_map<ipvs::ServiceKey, const k8s::ObjectKey*> vsOwner_;
    std::unordered_map<ipvs::ServiceKey, std::vector<k8s::ObjectKey>> vsWaiting_;
    // The shared kernel objects: VIPs and set members, with how many Services want each and
    // whether the kernel holds it (known state, as known_ is for virtual servers).
    RefTable<net::IpAddress, std::hash<net::IpAddress>, ContentDigest> binds_;
    std::array<SetTable, kSetCount> sets_;
    std::map<ipvs::NoNodeAccess, std::uint32_t> noNodeAccessRefs_;
    std::map<k8s::ObjectKey, HealthCheck> healthChecks_;
    std::uint64_t hcGeneration_ = 0;

    // Known kernel state.
    std::unordered_map<ipvs::ServiceKey, KnownVs> known_;
    std::map<ipvs::ServiceKey, std::set<ipvs::DestKey>> terminating_;
    std::unordered_map<ipvs::ServiceKey, std::uint64_t> recentlyDeleted_;  // key -> opSeq
    std::uint64_t opSeq_ = 0;
    std::uint32_t verifyPass_ = 0;   // the number of the last verification pass begun
    std::uint64_t vipWriteSeq_ = 0;  // opSeq of the last VIP write
    std::array<std::uint64_t, kSetCount> setWriteSeq_{};  // opSeq of the last write per set
    std::uint64_t iptablesSeq_ = 0;                       // opSeq of the last rules sync

    // Objects whose kernel presence must be re-checked against desired (changed refcount,
    // failed write, drift, or stale after adoption).
    std::unordered_set<net::IpAddress> vipPending_;
    std::array<SetKnown, kSetCount> setPending_;
    // Pending set entries whose last write failed (a subset of setPending_). They are retried
    // once per verification pass or after a delete in their set freed room, not by every step:
    // a full set refused 114,000 adds on each 100 ms step of a cold start at 44,000 Services.
    std::array<SetKnown, kSetCount> setFailed_;
    bool retrySetFailures_ = false;
    std::unordered_set<ipvs::ServiceKey> vsPending_;  // unowned known VSs to delete
    // VIPs bound the other way than this family's binding, found at adoption: addresses on
    // kube-ipvs0 in route mode (kube-proxy's, or ours from address mode), our local routes in
    // address mode. Each left the VIP local after its Service went, and the other binding
    // never looked at them. Removed once the first complete sync has bound the wanted ones
    // our way, servicesPerStep per complete sync (an IPv4 address delete walks the link's
    // whole address list).
    std::vector<net::IpAddress> otherBinding_;

    std::optional<ipvs::RulesInput> lastRules_;  // input of the last successful iptables sync
    bool iptablesDirty_ = true;  // sync even if the input did not change (start, drift, failure)
    bool adopted_ = false;
    bool bootstrapDone_ = false;    // default/kubernetes programmed first (issue #133773)
    bool coldStart_ = true;         // nothing of ours was in the kernel at adoption
    bool initialSyncDone_ = false;  // every Service processed once since start
    bool sawFailure_ = false;       // a write failed in the current sync
};

}  // namespace kipvs::proxy
