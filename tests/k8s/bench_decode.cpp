// Benchmark: decode lists of N Services and N EndpointSlices (10 endpoints each) through the
// streaming list parser, then an initial list+watch of the same size from the fake API
// server over TLS on loopback.
//
//   meson test -C build --benchmark bench-k8s-decode -v      (or run the binary: [N])
//
// Reports throughput, peak RSS, and heap bytes held per decoded object and per key the
// client keeps (counted by this binary's global operator new/delete: live bytes requested).
#include <sys/resource.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "k8s-client/client.h"
#include "k8s-client/decode.h"
#include "k8s-client/list_parser.h"
#include "tests/k8s/fake_server.h"

using namespace kipvs::k8s;
using Steady = std::chrono::steady_clock;

namespace {
std::atomic<long long> gLive{0};
constexpr std::size_t kHeader = 16;  // keeps max_align_t alignment
}  // namespace

void* operator new(std::size_t n) {
    void* p = std::malloc(n + kHeader);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    *static_cast<std::size_t*>(p) = n;
    gLive += static_cast<long long>(n);
    return static_cast<char*>(p) + kHeader;
}
void* operator new[](std::size_t n) {
    return operator new(n);
}
void operator delete(void* p) noexcept {
    if (p != nullptr) {
        char* b = static_cast<char*>(p) - kHeader;
        gLive -= static_cast<long long>(*reinterpret_cast<std::size_t*>(b));
        std::free(b);
    }
}
void operator delete[](void* p) noexcept {
    operator delete(p);
}
void operator delete(void* p, std::size_t) noexcept {
    operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    operator delete(p);
}

namespace {

std::string ip4(unsigned base, unsigned i) {
    return std::to_string(base) + "." + std::to_string((i >> 16) & 255) + "." +
           std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255);
}

// Shaped like the fake server's --synth objects and real ones (uid, timestamps, selector,
// targetRef), since bytes per object decide the MB/s figure.
std::string serviceList(int n) {
    std::string s =
        R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"99"},"items":[)";
    for (int i = 0; i < n; ++i) {
        const std::string name = "svc-" + std::to_string(i);
        const std::string ip = ip4(10, 0x600000 + i);
        s +=
            (i ? "," : "") + std::string(R"({"metadata":{"name":")") + name +
            R"(","namespace":"ns-)" + std::to_string(i % 50) +
            R"(","uid":"3f1a5e5e-0c4e-4f6c-9d7e-)" + std::to_string(100000000000 + i) +
            R"(","resourceVersion":")" + std::to_string(i + 1) +
            R"(","creationTimestamp":"2024-01-01T00:00:00Z","labels":{"app":")" + name +
            R"("}},"spec":{"type":"ClusterIP","clusterIP":")" + ip + R"(","clusterIPs":[")" + ip +
            R"("],"ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","selector":{"app":")" +
            name +
            R"("},"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}],"sessionAffinity":"None","internalTrafficPolicy":"Cluster"},"status":{"loadBalancer":{}}})";
    }
    return s + "]}";
}

std::string sliceList(int n) {
    std::string s =
        R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"99"},"items":[)";
    for (int i = 0; i < n; ++i) {
        const std::string name = "svc-" + std::to_string(i);
        const std::string ns = "ns-" + std::to_string(i % 50);
        s +=
            (i ? "," : "") + std::string(R"({"metadata":{"name":")") + name +
            R"(-abcde","namespace":")" + ns + R"(","uid":"u)" + std::to_string(i) +
            R"(","labels":{"kubernetes.io/service-name":")" + name +
            R"(","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},"addressType":"IPv4","endpoints":[)";
        for (int j = 0; j < 10; ++j) {
            s +=
                (j ? "," : "") + std::string(R"({"addresses":[")") +
                ip4(10, 0x800000 + i * 10 + j) +
                R"("],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node-)" +
                std::to_string(j % 5) +
                R"(","zone":"zone-a","targetRef":{"kind":"Pod","namespace":")" + ns +
                R"(","name":")" + name + "-pod-" + std::to_string(j) + R"("}})";
        }
        s += R"(],"ports":[{"name":"http","protocol":"TCP","port":8080}]})";
    }
    return s + "]}";
}

std::size_t heapInUse() {
    return static_cast<std::size_t>(gLive.load());
}

long peakRssKb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

template <class T>
void decodeBench(const char* what, const std::string& body) {
    std::vector<T> out;
    std::size_t rejected = 0;
    const std::size_t heap0 = heapInUse();
    const auto t0 = Steady::now();
    ListParser p([&](boost::json::value&& v) {
        DecodeReport r;
        if (auto o = Codec<T>::decode(v, r)) {
            out.push_back(std::move(*o));
        } else {
            ++rejected;
        }
    });
    // Fed in 64 KiB pieces, as the transport delivers a body.
    for (std::size_t i = 0; i < body.size(); i += 65536) {
        if (!p.feed(std::string_view(body).substr(i, 65536))) {
            std::printf("parse error: %s\n", p.error().c_str());
            return;
        }
    }
    p.finish();
    const double secs = std::chrono::duration<double>(Steady::now() - t0).count();
    out.shrink_to_fit();
    const std::size_t held = heapInUse() - heap0;
    std::printf(
        "%-15s %6zu objects  %7.1f MB  %6.3f s  %7.1f MB/s  %6.0f bytes held/object (rejected "
        "%zu)\n",
        what, out.size(), static_cast<double>(body.size()) / 1e6, secs,
        static_cast<double>(body.size()) / 1e6 / secs,
        static_cast<double>(held) / static_cast<double>(std::max<std::size_t>(1, out.size())),
        rejected);
}

template <class T>
class Keep : public EventHandler<T> {
  public:
    void onAdd(const T& o) override { objects.push_back(o); }
    void onUpdate(const T&) override {}
    void onDelete(const ObjectKey&) override {}
    void onSynced() override { synced = true; }
    std::vector<T> objects;
    bool synced = false;
};

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
    std::printf("# k8s-client benchmark, N=%d (10 endpoints per slice)\n", n);
    // Initial list+watch from the fake server, TLS on loopback.
    char tmpl[] = "/tmp/kipvs-k8s-bench-XXXXXX";
    const std::string dir = mkdtemp(tmpl);
    kipvs::k8s::testing::FakeServer server(
        {"--tls-dir", dir, "--token", "t", "--synth", std::to_string(n)});
    // list+watch with the server answering in one page (as the watch cache does for RV 0),
    // watch-list, then list+watch with 500-item pages (the client's qps 5 / burst 10 limit
    // paces the pages). Peak RSS is a high-water mark, so the realistic mode goes first.
    for (const int mode : {1, 2, 0}) {
        const bool watchList = mode == 2;
        server.post("config", mode == 1 ? R"({"ignore_limit":true})" : R"({"ignore_limit":false})");
        boost::asio::io_context ioc;
        auto cfg = loadKubeconfig(dir + "/kubeconfig-token.yaml");
        if (!cfg) {
            std::printf("kubeconfig: %s\n", cfg.error().message.c_str());
            return 1;
        }
        ClientOptions opts;
        opts.watchList = watchList;
        auto client = Client::create(ioc, *cfg, opts);
        if (!client) {
            std::printf("client: %s\n", client.error().message.c_str());
            return 1;
        }
        Keep<Service> sh;
        Keep<EndpointSlice> eh;
        const std::size_t heap0 = heapInUse();
        const auto t0 = Steady::now();
        auto si = (*client)->watchServices(sh);
        auto ei = (*client)->watchEndpointSlices(eh);
        si->start();
        ei->start();
        while (!(sh.synced && eh.synced) && Steady::now() - t0 < std::chrono::minutes(5)) {
            ioc.run_for(std::chrono::milliseconds(10));
        }
        const double secs = std::chrono::duration<double>(Steady::now() - t0).count();
        const std::size_t consumer = heapInUse() - heap0;
        // What the client itself keeps: drop the consumer's copies and measure again.
        std::vector<Service>().swap(sh.objects);
        std::vector<EndpointSlice>().swap(eh.objects);
        const std::size_t clientKept = heapInUse() - heap0;
        const std::size_t nsvc = si->size();
        const std::size_t nslice = ei->size();
        si.reset();
        ei.reset();
        std::printf(
            "%s from fake server: %zu Services + %zu EndpointSlices synced in %.2f s; "
            "heap with consumer copies %.1f MiB, client alone %.1f MiB (%.0f bytes/key); peak RSS "
            "%.1f MiB\n",
            mode == 0   ? "list+watch (500/page)"
            : mode == 1 ? "list+watch (1 page)"
                        : "watch-list",
            nsvc, nslice, secs, static_cast<double>(consumer) / (1 << 20),
            static_cast<double>(clientKept) / (1 << 20),
            static_cast<double>(clientKept) /
                static_cast<double>(std::max<std::size_t>(1, nsvc + nslice)),
            static_cast<double>(peakRssKb()) / 1024);
        std::printf("  after destroying the informers: %.2f MiB above the start\n",
                    (static_cast<double>(heapInUse()) - static_cast<double>(heap0)) / (1 << 20));
    }
    {
        const std::string services = serviceList(n);
        decodeBench<Service>("Services", services);
    }
    {
        const std::string slices = sliceList(n);
        decodeBench<EndpointSlice>("EndpointSlices", slices);
    }
    std::printf("peak RSS after decoding (includes the generated JSON text): %.1f MiB\n",
                static_cast<double>(peakRssKb()) / 1024);

    return 0;
}
