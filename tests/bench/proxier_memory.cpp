// Heap bytes the reconciler keeps per Service and per endpoint (issue 8, memory): the daemon's
// two proxiers (IPv4 and IPv6) are fed N ClusterIP Services with E endpoints each, as the
// initial lists deliver them, and synced against the kernel fakes. The bytes they hold are
// measured by destroying them (glibc's mallinfo2 before and after), so the fakes' own tables
// do not count. Then the verification's snapshot of the same kernel state is read from the
// fakes: the bytes it holds (and those of its IPVS part) and the most it held at once while it
// was read (counted by this program's operator new). Bytes, not times: the result is the same on
// every machine.
//
//   bench-proxier-memory [SERVICES [ENDPOINTS [SERVICES_PER_STEP]]]   (default 10000 10 2000)
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "proxy/proxier.h"
#include "tests/fakes/fake_kernel.h"

using namespace kipvs;

namespace {

// Bytes allocated through operator new and not yet freed, and the most since resetPeak().
std::atomic<std::size_t> gLive{0};
std::atomic<std::size_t> gPeak{0};

void resetPeak() {
    gPeak = gLive.load();
}

}  // namespace

// GCC takes the free() below for a mismatch with operator new, which it cannot see is this one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
    void* p = std::malloc(n == 0 ? 1 : n);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    const std::size_t live = gLive += malloc_usable_size(p);
    std::size_t peak = gPeak.load();
    while (live > peak && !gPeak.compare_exchange_weak(peak, live)) {
    }
    return p;
}

void operator delete(void* p) noexcept {
    if (p != nullptr) {
        gLive -= malloc_usable_size(p);
        std::free(p);
    }
}

void operator delete(void* p, std::size_t /*n*/) noexcept {
    operator delete(p);
}
#pragma GCC diagnostic pop

namespace {

std::size_t heapInUse() {
    const auto m = mallinfo2();
    return m.uordblks + m.hblkhd;  // blocks in the heaps and blocks mapped on their own
}

net::IpAddress v4(std::uint32_t a) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                  a & 255);
    return *net::IpAddress::parse(buf);
}

class NullRules final : public proxy::RulesSync {
  public:
    Result<ipvs::IptablesSync::Report> sync(const ipvs::RulesInput& /*in*/) override {
        return ipvs::IptablesSync::Report{};
    }
    Result<bool> verify(net::Family /*f*/, const std::string& /*save*/) override { return false; }
};

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
    const int e = argc > 2 ? std::atoi(argv[2]) : 10;
    const int perStep = argc > 3 ? std::atoi(argv[3]) : 2000;  // the daemon's default
    if (n <= 0 || e < 0 || perStep <= 0) {
        std::fprintf(stderr,
                     "usage: bench-proxier-memory [SERVICES [ENDPOINTS [SERVICES_PER_STEP]]]\n");
        return 2;
    }
    fakes::FakeIpvs ipvs;
    fakes::FakeAddresses addrs;
    fakes::FakeIpset ipset;
    NullRules rules4;
    NullRules rules6;
    addrs.links["eth0"].type = "veth";
    addrs.links["eth0"].addresses = {*net::IpAddress::parse("192.168.1.10")};
    metrics::Registry reg;

    // The objects as the client hands them over, built before the measurement starts.
    std::vector<k8s::Service> services;
    std::vector<k8s::EndpointSlice> slices;
    services.reserve(static_cast<std::size_t>(n));
    slices.reserve(static_cast<std::size_t>(n));
    const auto node = k8s::Name::intern("node-0");
    for (int i = 0; i < n; ++i) {
        k8s::Service s;
        s.key = {"default", "svc-" + std::to_string(i)};
        s.clusterIPs.push_back(v4(0x0A600000U + static_cast<std::uint32_t>(i)));  // 10.96/12
        s.ports.push_back({"http", ipvs::Protocol::TCP, 80, 0});
        services.push_back(std::move(s));
        k8s::EndpointSlice sl;
        sl.key = {"default", "svc-" + std::to_string(i) + "-abcde"};
        sl.serviceName = "svc-" + std::to_string(i);
        sl.ports.push_back({"http", ipvs::Protocol::TCP, 8080});
        for (int j = 0; j < e; ++j) {
            k8s::Endpoint ep;
            ep.address = v4(0x0A800000U + static_cast<std::uint32_t>(i * e + j));  // 10.128/9
            ep.nodeName = node;
            sl.endpoints.push_back(ep);
        }
        slices.push_back(std::move(sl));
    }
    k8s::Node nodeObj;
    nodeObj.name = "node-1";
    nodeObj.addresses.push_back(
        {k8s::NodeAddressType::InternalIP, *net::IpAddress::parse("192.168.1.10")});

    std::vector<std::unique_ptr<proxy::Proxier>> proxiers;
    const std::size_t before = heapInUse();
    resetPeak();
    for (auto f : {net::Family::V4, net::Family::V6}) {
        proxy::ProxierConfig cfg;
        cfg.family = f;
        cfg.nodeName = "node-1";
        cfg.servicesPerStep = static_cast<std::size_t>(perStep);
        proxiers.push_back(std::make_unique<proxy::Proxier>(
            cfg,
            proxy::KernelRefs{ipvs, addrs, ipset,
                              f == net::Family::V4 ? static_cast<proxy::RulesSync&>(rules4)
                                                   : static_cast<proxy::RulesSync&>(rules6),
                              nullptr},
            reg));
    }
    for (auto& p : proxiers) {
        if (!p->adopt()) {
            std::fprintf(stderr, "adopt failed\n");
            return 1;
        }
        p->onNodeUpsert(nodeObj);
        for (const auto& s : services) {
            p->onServiceUpsert(s);
        }
        for (const auto& s : slices) {
            p->onSliceUpsert(s);
        }
        p->setServicesSynced();
        p->setSlicesSynced();
        p->setNodeSynced();
        p->syncAll({std::chrono::steady_clock::now(), 0});
    }
    // The fakes only grow in a cold start: the most held beyond the end state is the sync's.
    const std::size_t syncTransient = gPeak - gLive;
    malloc_trim(0);
    const std::size_t withProxiers = heapInUse();
    const std::size_t snapBefore = gLive;
    resetPeak();
    std::size_t snapHeld = 0;
    std::size_t ipvsHeld = 0;
    {
        // As the daemon's verification reads it: both families, VIPs bound as the proxier
        // binds them by default, no iptables.
        auto snap = proxy::takeKernelSnapshot({ipvs, addrs, ipset, nullptr},
                                              {net::Family::V4, net::Family::V6},
                                              proxy::ProxierConfig{}.binding);
        if (!snap) {
            std::fprintf(stderr, "snapshot failed: %s\n", snap.error().message.c_str());
            return 1;
        }
        snapHeld = gLive - snapBefore;
        const std::size_t beforeIpvs = gLive;
        snap->ipvs = {};
        ipvsHeld = beforeIpvs - gLive;
    }
    const std::size_t snapPeak = gPeak - snapBefore;
    const std::size_t v4Before = heapInUse();
    proxiers[0].reset();
    const std::size_t v4Bytes = v4Before - heapInUse();
    const std::size_t v6Before = heapInUse();
    proxiers[1].reset();
    const std::size_t v6Held = v6Before - heapInUse();
    const std::size_t total = v4Bytes + v6Held;
    std::printf("services=%d endpoints=%d virtual_servers=%zu real_servers=%d\n", n, e,
                ipvs.table.size(), n * e);
    std::printf("proxier_bytes=%zu ipv4=%zu ipv6=%zu grew_while_syncing=%zu\n", total, v4Bytes,
                v6Held, withProxiers - before);
    std::printf("bytes_per_service=%.0f (with its %d endpoints)\n", static_cast<double>(total) / n,
                e);
    std::printf("cold_start_transient=%zu (the most held beyond what is held at its end)\n",
                syncTransient);
    std::printf("verification_snapshot_bytes=%zu of_which_ipvs=%zu peak_while_read=%zu\n", snapHeld,
                ipvsHeld, snapPeak);
    return 0;
}
