#include "proxy/daemon.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/inotify.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "ipvs/iptables_exec.h"
#include "ipvs/libipset.h"
#include "ipvs/names.h"
#include "ipvs/netlink_ipvs.h"
#include "ipvs/nf_conntrack.h"
#include "ipvs/rtnl_addresses.h"
#include "ipvs/sysctl.h"
#include "ipvs/writer_gate.h"
#include "k8s-client/client.h"
#include "k8s-client/client_thread.h"
#include "k8s-client/config.h"
#include "k8s-client/decode.h"
#include "k8s-client/observer.h"
#include "proxy/anomalies.h"
#include "proxy/cleanup.h"
#include "proxy/health.h"
#include "proxy/http_server.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/node_setup.h"
#include "proxy/process.h"
#include "proxy/proxier.h"
#include "proxy/rules_sync.h"
#include "proxy/scheduler.h"
#include "proxy/version.h"

namespace kipvs::proxy {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

// See Daemon::earlyStepAt_.
constexpr auto kEarlyStepGap = std::chrono::milliseconds(20);
// Virtual servers compared per step of a verification (Daemon::compareStep), by digest; one
// read again because it differs counts as 32. The "Verified kernel state" line reports the
// longest step (longestStepSeconds).
constexpr std::size_t kCompareBudget = 500;
// How far the verification reader is below the other threads (nice steps).
constexpr int kVerifierNice = 10;

// Run first on the verification's background thread (its read, then the snapshot's release):
// named for top -H and perf, and below the io thread and the API client's threads. The read
// is background work (2.5 s at 10,000 Services, 24-31 s at 44,000 under emulation) and must
// not take their CPU while events arrive; the netlink dumps run in this thread's context too.
void enterVerifierThread() {
    pthread_setname_np(pthread_self(), "kube-ipvs-ver");
    lowerThreadPriority(kVerifierNice);
}
// The longest the verification reader holds back one step of its IPVS read while a sync
// writes (ipvs::WriterGate): a sync of a few changes takes milliseconds.
constexpr auto kReaderMaxPause = std::chrono::milliseconds(250);

std::int64_t wallNowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string familyLabel(net::Family f) {
    return f == net::Family::V4 ? "IPv4" : "IPv6";
}

// hostnameOverride, or the host name; trimmed and lower-cased as kube-proxy does.
std::string nodeName(const Config& cfg) {
    std::string n = cfg.hostnameOverride;
    if (n.empty()) {
        char buf[256] = {};
        gethostname(buf, sizeof buf - 1);
        n = buf;
    }
    while (!n.empty() && std::isspace(static_cast<unsigned char>(n.back()))) {
        n.pop_back();
    }
    std::size_t start = 0;
    while (start < n.size() && std::isspace(static_cast<unsigned char>(n[start]))) {
        ++start;
    }
    n = n.substr(start);
    std::transform(n.begin(), n.end(), n.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return n;
}

KernelVersion runningKernel() {
    utsname u{};
    uname(&u);
    return parseKernelRelease(u.release).value_or(KernelVersion{});
}

int onlineCpus() {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

// Sysctls, conntrack limits and IPVS timeouts (reference §9.3), shared by --init-only and the
// daemon. Values already right are not written.
Result<void> setupNode(const Config& cfg, ipvs::Ipvs* ipvs) {
    ipvs::ProcSysctl sysctl;
    const KernelVersion kernel = runningKernel();
    if (!cfg.rateEstimation && kernel < kRunEstimationSince) {
        log::warning(
            "--ipvs-rate-estimation=false needs kernel 5.16 or later; IPVS keeps "
            "estimating rates",
            {{"kernel", std::to_string(kernel.major) + "." + std::to_string(kernel.minor)}});
    }
    // In the DaemonSet only the privileged init container may write /proc/sys. After a change
    // of the config file (which makes the proxy exit), the kubelet restarts only the proxy's
    // container, which then cannot apply a sysctl the change altered: say what to do.
    const auto readOnly = [&cfg](const Error& e) {
        const int err = e.code.value();
        if (cfg.initOnly || (err != EROFS && err != EACCES && err != EPERM)) {
            return e;
        }
        return e.context(
            "this container cannot write /proc/sys (in the DaemonSet the init "
            "container sets sysctls; after a config change that alters one, delete "
            "the pod so that it runs again)");
    };
    auto changed = ipvs::applySysctls(sysctl, proxySysctls(cfg, kernel));
    if (!changed) {
        return readOnly(changed.error()).context("set IPVS sysctls");
    }
    for (const auto& k : *changed) {
        log::info("Set sysctl", {{"sysctl", k}});
    }
    const auto ct = conntrackSysctls(cfg, onlineCpus());
    auto ctChanged = ipvs::applySysctls(sysctl, ct);
    if (!ctChanged) {
        return readOnly(ctChanged.error()).context("set conntrack limits");
    }
    for (const auto& s : ct) {
        if (s.key != "net/netfilter/nf_conntrack_max") {
            continue;
        }
        // The hash table should hold a quarter of the entries; raise it if it is smaller.
        ipvs::ProcSysctl sys("/sys/module/nf_conntrack/parameters");
        const long long want = std::stoll(s.value) / 4;
        auto cur = sys.get("hashsize");
        if (cur && std::stoll(*cur) < want) {
            if (auto r = sys.set("hashsize", std::to_string(want)); !r) {
                log::warning("Cannot raise the conntrack hash size (/sys is read-only?)",
                             {{"error", r.error().message}});
            }
        }
    }
    if (auto t = ipvsTimeouts(cfg); t && ipvs != nullptr) {
        auto cur = ipvs->timeouts();
        const bool same = cur && (t->tcp == 0 || cur->tcp == t->tcp) &&
                          (t->tcpFin == 0 || cur->tcpFin == t->tcpFin) &&
                          (t->udp == 0 || cur->udp == t->udp);
        if (!same) {
            if (auto r = ipvs->setTimeouts(*t); !r) {
                log::error("Setting the IPVS timeouts failed", {{"error", r.error().message}});
            }
        }
    }
    return ok();
}

std::vector<net::Cidr> cidrsOf(const std::vector<std::string>& texts, net::Family f) {
    std::vector<net::Cidr> out;
    for (const auto& t : texts) {
        if (auto c = net::Cidr::parse(t); c && c->family() == f) {
            out.push_back(*c);
        }
    }
    return out;
}

std::vector<std::string> splitComma(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto end = s.find(',', start);
        if (end == std::string::npos) {
            end = s.size();
        }
        if (end > start) {
            out.push_back(s.substr(start, end - start));
        }
        start = end + 1;
    }
    return out;
}

// The self-pipe the signal handler writes to; the second signal exits at once.
int gSignalPipe[2] = {-1, -1};
std::atomic<int> gSignals{0};

extern "C" void onSignal(int sig) {
    if (gSignals.fetch_add(1) > 0) {
        _exit(128 + sig);
    }
    const char c = static_cast<char>(sig);
    [[maybe_unused]] auto n = write(gSignalPipe[1], &c, 1);
}

}  // namespace

class Daemon {
  public:
    explicit Daemon(const Config& cfg)
        : cfg_(cfg),
          health_(2 * std::chrono::duration_cast<SteadyClock::duration>(cfg.ipvs.syncPeriod)),
          scheduler_(std::chrono::duration_cast<SteadyClock::duration>(cfg.ipvs.minSyncPeriod),
                     std::chrono::duration_cast<SteadyClock::duration>(cfg.ipvs.syncPeriod)),
          syncTimer_(io_),
          verifyTimer_(io_),
          reapTimer_(io_),
          serverRetryTimer_(io_),
          signalPipe_(io_),
          configWatch_(io_),
          start_(SteadyClock::now()),
          startWallNs_(wallNowNs()),
          nodeName_(nodeName(cfg)),
          services_(*this),
          slices_(*this),
          node_(*this),
          observer_(*this) {}

    ~Daemon() {
        if (verifier_.joinable()) {
            verifier_.join();
        }
    }

    int run();

  private:
    // ---- API event fan-out: handlers only record and ask for a sync ----
    struct ServiceHandler final : k8s::EventHandler<k8s::Service> {
        explicit ServiceHandler(Daemon& d) : d(d) {}
        void onAdd(const k8s::Service& s) override { upsert(s); }
        void onUpdate(const k8s::Service& s) override { upsert(s); }
        void upsert(const k8s::Service& s) {
            for (auto& p : d.proxiers_) {
                p->onServiceUpsert(s);
            }
            d.changed();
        }
        void onDelete(const k8s::ObjectKey& key) override {
            for (auto& p : d.proxiers_) {
                p->onServiceDelete(key);
            }
            d.changed();
        }
        void onSynced() override {
            for (auto& p : d.proxiers_) {
                p->setServicesSynced();
            }
            d.changed();
        }
        Daemon& d;
    };
    struct SliceHandler final : k8s::EventHandler<k8s::EndpointSlice> {
        explicit SliceHandler(Daemon& d) : d(d) {}
        void onAdd(const k8s::EndpointSlice& s) override { upsert(s); }
        void onUpdate(const k8s::EndpointSlice& s) override { upsert(s); }
        void upsert(const k8s::EndpointSlice& s) {
            for (auto& p : d.proxiers_) {
                p->onSliceUpsert(s);
            }
            d.changed();
        }
        void onDelete(const k8s::ObjectKey& key) override {
            for (auto& p : d.proxiers_) {
                p->onSliceDelete(key);
            }
            d.changed();
        }
        void onSynced() override {
            for (auto& p : d.proxiers_) {
                p->setSlicesSynced();
            }
            d.changed();
        }
        Daemon& d;
    };
    struct NodeHandler final : k8s::EventHandler<k8s::Node> {
        explicit NodeHandler(Daemon& d) : d(d) {}
        void onAdd(const k8s::Node& n) override { upsert(n); }
        void onUpdate(const k8s::Node& n) override { upsert(n); }
        void upsert(const k8s::Node& n) {
            d.health_.setNodeEligible(!n.deleting && !n.toBeDeletedByAutoscaler);
            for (auto& p : d.proxiers_) {
                p->onNodeUpsert(n);
                if (d.cfg_.detectLocalMode == "NodeCIDR") {
                    p->setLocalDetector(d.nodeCidrDetector(n, p->family()));
                }
            }
            d.changed();
        }
        void onDelete(const k8s::ObjectKey&) override {
            d.health_.setNodeEligible(false);
            for (auto& p : d.proxiers_) {
                p->onNodeDelete();
            }
            d.changed();
        }
        void onSynced() override {
            for (auto& p : d.proxiers_) {
                p->setNodeSynced();
            }
            d.changed();
        }
        Daemon& d;
    };

    // ---- the API client's reports: logged once here, and counted ----
    struct ClientObserver final : k8s::Observer {
        explicit ClientObserver(Daemon& d) : d(d) {}
        void onInvalid(k8s::Kind kind, const k8s::ObjectKey& key, const k8s::Issue& issue,
                       bool whole, const std::string& message) override {
            d.metrics_
                .counter("kube_ipvs_rejected_objects_total",
                         "API objects (or entries of them) rejected as invalid",
                         {{"kind", std::string(k8s::kindName(kind))},
                          {"scope", whole ? "object" : "entry"}})
                .inc();
            log::warning(whole ? "Rejected an invalid object" : "Dropped an invalid entry",
                         {{"kind", k8s::kindName(kind)},
                          {"object", key.toString()},
                          {"field", issue.field},
                          {"reason", message}});
        }
        // Used as it is, as kube-proxy uses it, but unusual: counted and logged once per change
        // (proxy/anomalies.h), as are the anomalies the proxiers find.
        void onHandled(k8s::Kind kind, const k8s::ObjectKey& key, std::string_view code,
                       const k8s::Issue& issue, const std::string& message) override {
            d.anomalies_.onAnomaly({k8s::kindName(kind), key, code, issue.field, message, 0});
        }
        void onSkippedEvent(k8s::Kind kind, const std::string& message) override {
            log::warning("Skipped a watch event",
                         {{"kind", k8s::kindName(kind)}, {"reason", message}});
        }
        void onRequestError(k8s::Kind kind, std::string_view op, int status,
                            const std::string& message) override {
            d.metrics_
                .counter("kube_ipvs_api_request_errors_total", "Failed API requests",
                         {{"kind", std::string(k8s::kindName(kind))}, {"op", std::string(op)}})
                .inc();
            log::error("API request failed", {{"kind", k8s::kindName(kind)},
                                              {"op", op},
                                              {"status", status},
                                              {"error", message}});
        }
        void onRetry(std::string_view target, const std::string& reason, double delay) override {
            log::debug(2, "Retrying API request",
                       {{"target", target}, {"reason", reason}, {"delaySeconds", delay}});
        }
        void onList(k8s::Kind kind, const std::string& rv, const std::string& reason) override {
            d.metrics_
                .counter("kube_ipvs_api_lists_total", "Lists (initial and relists) started",
                         {{"kind", std::string(k8s::kindName(kind))}})
                .inc();
            log::debug(
                reason == "initial" ? 2 : 0, "Listing",
                {{"kind", k8s::kindName(kind)}, {"resourceVersion", rv}, {"reason", reason}});
        }
        void onWatch(k8s::Kind kind, const std::string& rv, const std::string& reason) override {
            log::debug(
                3, "Watching",
                {{"kind", k8s::kindName(kind)}, {"resourceVersion", rv}, {"reason", reason}});
        }
        void onBackoff(k8s::Kind kind, const std::string& reason, double delay) override {
            log::warning(
                "API watch failed; backing off",
                {{"kind", k8s::kindName(kind)}, {"reason", reason}, {"delaySeconds", delay}});
        }
        void onWatchListFallback(k8s::Kind kind, const std::string& reason) override {
            log::info("Streaming list not available; using list and watch",
                      {{"kind", k8s::kindName(kind)}, {"reason", reason}});
        }
        void onSynced(k8s::Kind kind, std::size_t objects) override {
            log::info("Synced", {{"kind", k8s::kindName(kind)}, {"objects", objects}});
        }
        // Called for every watch event (88,000 for the initial watch-list at 44,000
        // Services): the counter of each kind and known type is looked up once.
        void onEvent(k8s::Kind kind, std::string_view type) override {
            static constexpr std::array<std::string_view, kEventTypes> kTypes{
                "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
            const auto t = static_cast<std::size_t>(std::find(kTypes.begin(), kTypes.end(), type) -
                                                    kTypes.begin());
            const auto k = static_cast<std::size_t>(kind);
            const auto lookup = [&]() -> metrics::Counter& {
                return d.metrics_.counter(
                    "kube_ipvs_api_watch_events_total", "Watch events received",
                    {{"kind", std::string(k8s::kindName(kind))}, {"type", std::string(type)}});
            };
            if (t >= kEventTypes || k >= kKinds) {
                lookup().inc();  // an unknown type: rare, not cached
                return;
            }
            auto*& cached = eventCounters[k][t];
            if (cached == nullptr) {
                cached = &lookup();
            }
            cached->inc();
        }
        Daemon& d;
        static constexpr std::size_t kKinds = 3;  // k8s::Kind
        static constexpr std::size_t kEventTypes = 5;
        std::array<std::array<metrics::Counter*, kEventTypes>, kKinds> eventCounters{};
    };

    Result<void> openKernel();
    Result<void> checkScheduler();
    Result<void> createProxiers();
    Result<void> startClient();
    void startAdoptRead();
    Result<void> startServers();
    void installSignals();
    void watchConfigFile();
    ipvs::LocalDetector localDetector(net::Family f) const;
    ipvs::LocalDetector nodeCidrDetector(const k8s::Node& n, net::Family f) const;

    void changed();
    void scheduleSync();
    void scheduleSync(SteadyClock::time_point now);
    void runSync();
    void scheduleVerify();
    void startVerify();
    struct CompareRun {
        KernelSnapshot snap;
        std::vector<std::uint64_t> seqs;
        std::size_t proxier = 0;
        Proxier::VerifyProgress progress;
        bool drift = false;
        long long startedUnixMs = 0;
        double readSeconds = 0;
        double readPausedSeconds = 0;  // the read's time holding back for syncs
        double busySeconds = 0;
        double longestStepSeconds = 0;  // the longest the io thread was held by one step
        SteadyClock::time_point start;
    };
    void compareStep(const std::shared_ptr<CompareRun>& run);
    void scheduleReap();
    void syncHealthChecks();
    void stop(int code, const std::string& why);

    HttpResponse serveHealthz(const HttpRequest& r);
    HttpResponse serveMetrics(const HttpRequest& r);
    void refreshProcessMetrics();
    std::string ipvsCounters();
    double monoSeconds() const {
        return std::chrono::duration<double>(SteadyClock::now() - start_).count();
    }

    Config cfg_;
    asio::io_context io_;
    metrics::Registry metrics_;
    // Per family, looked up once (changed() runs for every API event).
    std::array<metrics::Gauge*, 2> lastQueued_{};
    metrics::Gauge& lastQueuedGauge(net::Family f);
    metrics::Gauge& lastSyncedGauge(net::Family f);
    ProxyHealth health_;
    SyncScheduler scheduler_;
    asio::steady_timer syncTimer_;
    asio::steady_timer verifyTimer_;
    asio::steady_timer reapTimer_;
    asio::steady_timer serverRetryTimer_;
    int serverRetries_ = 0;
    asio::posix::stream_descriptor signalPipe_;
    asio::posix::stream_descriptor configWatch_;
    SteadyClock::time_point start_;
    std::int64_t startWallNs_;
    std::string nodeName_;
    bool syncArmed_ = false;
    SteadyClock::time_point syncArmedAt_{};
    bool heapTrimmed_ = false;
    bool stopping_ = false;
    int exitCode_ = 0;

    std::unique_ptr<ipvs::NetlinkIpvs> ipvs_;
    std::unique_ptr<ipvs::RtnlAddresses> addrs_;
    std::unique_ptr<ipvs::LibIpset> ipset_;
    std::unique_ptr<ipvs::NetfilterConntrack> conntrack_;
    ipvs::ExecIptables iptables_;
    std::map<net::Family, std::unique_ptr<IptablesRulesSync>> rules_;
    std::vector<std::unique_ptr<Proxier>> proxiers_;
    std::map<net::Family, std::optional<SteadyClock::time_point>> syncStarted_;
    std::map<net::Family, Proxier::Step::Times> syncTimes_;  // of the sync in progress
    // End of the last early step (Proxier::programEarly): the next waits kEarlyStepGap, so
    // that each programs a batch of what arrived meanwhile rather than one Service at a time.
    std::optional<SteadyClock::time_point> earlyStepAt_;

    ServiceHandler services_;
    SliceHandler slices_;
    NodeHandler node_;
    ClientObserver observer_;
    AnomalyReporter anomalies_{metrics_};
    // The API client decodes on threads of its own; their calls arrive here, each thread's in
    // order, through the strand (k8s-client/client_thread.h).
    asio::strand<asio::io_context::executor_type> apiStrand_{io_.get_executor()};
    std::array<std::unique_ptr<k8s::ClientThread>, 2> api_;

    std::unique_ptr<HttpServer> healthzServer_;
    std::unique_ptr<HttpServer> metricsServer_;
    struct HcListener {
        k8s::ObjectKey service;
        std::array<std::uint32_t, 2> localEndpoints{};  // IPv4, IPv6
        std::unique_ptr<HttpServer> server;             // null while the port cannot be bound
    };
    std::map<std::uint16_t, HcListener> hc_;

    std::thread verifier_;
    std::optional<SteadyClock::time_point> lastVerifyStart_;
    // The verifier thread is reading the kernel (the adoption's or a verification's read).
    std::atomic<bool> verifyReading_{false};
    bool adoptReading_ = false;  // startAdoptRead() has not finished
    // A sync marks itself here; the verifier's IPVS read does not start a step meanwhile.
    ipvs::WriterGate ipvsWriters_{kReaderMaxPause};
    bool verifying_ = false;
    char signalByte_ = 0;
    std::array<char, 4096> inotifyBuf_{};
};

// ---- start-up ---------------------------------------------------------------------------

Result<void> Daemon::openKernel() {
    auto ipvs = ipvs::NetlinkIpvs::open();
    if (!ipvs) {
        return ipvs.error().context("can't use the IPVS proxier: IPVS generic netlink");
    }
    ipvs_ = std::move(*ipvs);
    auto addrs = ipvs::RtnlAddresses::open();
    if (!addrs) {
        return addrs.error().context("rtnetlink");
    }
    addrs_ = std::move(*addrs);
    auto ipset = ipvs::LibIpset::open();
    if (!ipset) {
        return ipset.error().context("can't use the IPVS proxier: ipset");
    }
    ipset_ = std::move(*ipset);
    if (auto ct = ipvs::NetfilterConntrack::open(); ct) {
        conntrack_ = std::move(*ct);
    } else {
        log::warning(
            "conntrack netlink is unavailable; UDP conntrack entries will not be "
            "cleaned up",
            {{"error", ct.error().message}});
    }
    return ok();
}

Result<void> Daemon::checkScheduler() {
    // Its module loaded already (always so on a restart): nothing to ask the kernel. Else, as
    // kube-proxy: if no virtual server uses the scheduler yet, create a probe one with it (the
    // kernel loads ip_vs_<scheduler> on demand) and delete it again. Listing the virtual
    // servers is a full dump, which took seconds of a restart at 44,000 Services.
    const auto sched = cfg_.effectiveScheduler();
    if (ipvs::ipvsSchedulerLoaded(sched)) {
        return ok();
    }
    auto services = ipvs_->services();
    if (!services) {
        return services.error().context("can't use the IPVS proxier: list virtual servers");
    }
    for (const auto& s : *services) {
        if (s.service.scheduler.view() == sched) {
            return ok();
        }
    }
    ipvs::VirtualServer probe;
    probe.key = {*net::IpAddress::parse("198.51.100.0"), 20000, ipvs::Protocol::TCP, 0};
    probe.scheduler = *ipvs::ShortName::make(sched);
    const ipvs::Op ops[] = {ipvs::Op::addService(probe), ipvs::Op::deleteService(probe.key)};
    const auto results = ipvs_->apply(ops);
    if (results.empty() || !results[0].succeeded()) {
        return Error::invalid("can't use the IPVS proxier: scheduler " + sched + ": " +
                              (results.empty() ? std::string("no result") : results[0].message));
    }
    return ok();
}

ipvs::LocalDetector Daemon::localDetector(net::Family f) const {
    ipvs::LocalDetector d;
    const auto& mode = cfg_.detectLocalMode;
    if (mode.empty() || mode == "ClusterCIDR") {
        for (const auto& c : cidrsOf(splitComma(cfg_.clusterCIDR), f)) {
            d.kind = ipvs::LocalDetector::Kind::Cidr;
            d.cidr = c;
            break;
        }
    } else if (mode == "BridgeInterface") {
        d.kind = ipvs::LocalDetector::Kind::BridgeInterface;
        d.interface = cfg_.detectLocal.bridgeInterface;
    } else if (mode == "InterfaceNamePrefix") {
        d.kind = ipvs::LocalDetector::Kind::InterfacePrefix;
        d.interface = cfg_.detectLocal.interfaceNamePrefix;
    }
    return d;
}

ipvs::LocalDetector Daemon::nodeCidrDetector(const k8s::Node& n, net::Family f) const {
    ipvs::LocalDetector d;
    for (const auto& c : n.podCIDRs) {
        if (c.family() == f) {
            d.kind = ipvs::LocalDetector::Kind::Cidr;
            d.cidr = c;
            break;
        }
    }
    return d;
}

Result<void> Daemon::createProxiers() {
    // A family is proxied when its iptables works (and, for IPv6, the kernel has IPv6), as
    // kube-proxy decides dual-stack.
    std::vector<net::Family> families;
    for (auto f : {net::Family::V4, net::Family::V6}) {
        if (f == net::Family::V6 && access("/proc/net/if_inet6", F_OK) != 0) {
            continue;
        }
        if (auto s = iptables_.save(f, "nat"); !s) {
            log::warning("iptables unusable; not proxying this family",
                         {{"ipFamily", familyLabel(f)}, {"error", s.error().message}});
            continue;
        }
        families.push_back(f);
    }
    if (families.empty()) {
        return Error::invalid("neither iptables nor ip6tables works on this node");
    }
    // MASQUERADE --random-fully only where iptables has it (1.6.2 on), as kube-proxy checks;
    // asked once (both families' tools come from one package). An unknown version keeps it:
    // every iptables of the last years has it.
    bool randomFully = true;
    if (auto v = iptables_.version(families.front()); v) {
        randomFully = ipvs::supportsRandomFully(*v).value_or(true);
        if (!randomFully) {
            log::warning("iptables is older than 1.6.2: masquerading without --random-fully",
                         {{"version", v->substr(0, v->find('\n'))}});
        }
    }
    const bool primary =
        cfg_.nodePortAddresses.size() == 1 && cfg_.nodePortAddresses[0] == "primary";
    for (auto f : families) {
        ProxierConfig pc;
        pc.family = f;
        pc.nodeName = nodeName_;
        pc.scheduler = *ipvs::ShortName::make(cfg_.effectiveScheduler());
        pc.excludeCidrs = cidrsOf(cfg_.ipvs.excludeCIDRs, f);
        pc.nodePortPrimary = primary;
        if (!primary) {
            // None of this family (CIDRs of the other only) matches all, as in kube-proxy
            // (reference §3.2).
            pc.nodePortCidrs = cidrsOf(cfg_.nodePortAddresses, f);
        }
        if (auto b = net::IpAddress::parse(cfg_.bindAddress); b && !b->isUnspecified()) {
            pc.bindAddress = *b;
        }
        pc.rules.randomFully = randomFully;
        pc.rules.masqueradeBit = cfg_.iptables.masqueradeBit;
        pc.rules.masqueradeAll = cfg_.iptables.masqueradeAll;
        pc.rules.localDetector = localDetector(f);
        pc.binding = cfg_.vipBinding == "route" ? VipBinding::Route : VipBinding::Address;
        pc.startWallNs = startWallNs_;
        pc.wallClock = wallNowNs;
        pc.anomalies = &anomalies_;
        rules_[f] = std::make_unique<IptablesRulesSync>(iptables_);
        proxiers_.push_back(std::make_unique<Proxier>(
            pc, KernelRefs{*ipvs_, *addrs_, *ipset_, *rules_[f], conntrack_.get()}, metrics_));
        log::info("Proxying", {{"ipFamily", familyLabel(f)}, {"node", nodeName_}});
    }
    // Read what is already programmed (a restart converges by diff, it does not flush): here
    // kube-ipvs0, the sets and the VIPs, then the IPVS table in startAdoptRead().
    for (auto& p : proxiers_) {
        if (auto r = p->prepareAdopt(); !r) {
            return r.error().context("read the kernel state of " + familyLabel(p->family()));
        }
    }
    return ok();
}

// The IPVS table is read on the verifier's thread slot, so that meanwhile this thread takes
// the initial lists, which the client has been decoding since start-up, and serves /healthz
// and /metrics. At 44,000 Services x 10 under emulation the read takes 18 s and the queued
// list objects 3 s more after it. The proxiers only take events until finishAdopt()
// (Proxier::readOwned). A failed read is retried by the next sync, on this thread.
void Daemon::startAdoptRead() {
    adoptReading_ = true;
    verifyReading_ = true;
    const auto start = SteadyClock::now();
    verifier_ = std::thread([this, start] {
        pthread_setname_np(pthread_self(), "kube-ipvs-read");
        std::vector<Result<std::unique_ptr<Proxier::OwnedTable>>> tables;
        auto ipvs = ipvs::NetlinkIpvs::open();
        for (auto& p : proxiers_) {
            if (!ipvs) {
                tables.emplace_back(ipvs.error());
            } else {
                tables.push_back(p->readOwned(**ipvs));
            }
        }
        const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
        verifyReading_ = false;
        asio::post(io_, [this, seconds, tables = std::move(tables)]() mutable {
            adoptReading_ = false;
            if (stopping_) {
                return;
            }
            for (std::size_t i = 0; i < proxiers_.size(); ++i) {
                auto& p = proxiers_[i];
                auto& t = tables[i];
                if (!t) {
                    log::error(
                        "Reading the kernel state failed",
                        {{"ipFamily", familyLabel(p->family())}, {"error", t.error().message}});
                    continue;
                }
                p->finishAdopt(std::move(*t));
                log::info("Read the kernel state", {{"ipFamily", familyLabel(p->family())},
                                                    {"virtualServers", p->knownVirtualServers()},
                                                    {"seconds", seconds}});
            }
            scheduler_.request();
            scheduleSync();
        });
    });
}

Result<void> Daemon::startClient() {
    auto cc = k8s::resolveClientConfig(cfg_.clientConnection.kubeconfig, cfg_.master);
    if (!cc) {
        return cc.error();
    }
    k8s::ClientOptions opts;
    opts.version = kVersion;
    // Two decoding threads: at 10,000 Services one thread decoding both lists was the
    // bottleneck of a cold start (its core saturated, the other partly idle). Services on one,
    // EndpointSlices (the larger list) and the Node on the other. Each client gets half the
    // configured request rate, so together they keep to it.
    // As client-go: a QPS or burst of 0 means its defaults (5 and 10), not "unlimited".
    const double qps = cfg_.clientConnection.qps > 0 ? cfg_.clientConnection.qps : 5.0;
    const int burst = cfg_.clientConnection.burst > 0 ? cfg_.clientConnection.burst : 10;
    opts.qps = qps / 2;
    opts.burst = std::max(1, burst / 2);
    const auto post = [this](std::function<void()> fn) { asio::post(apiStrand_, std::move(fn)); };
    auto services = k8s::ClientThread::start(
        *cc, opts, {&services_, nullptr, nullptr, nodeName_, &observer_}, post);
    if (!services) {
        return services.error();
    }
    auto slices = k8s::ClientThread::start(
        *cc, opts, {nullptr, &slices_, &node_, nodeName_, &observer_}, post);
    if (!slices) {
        return slices.error();
    }
    api_[0] = std::move(*services);
    api_[1] = std::move(*slices);
    log::info("Watching the API server",
              {{"server", cc->server.toString()}, {"source", cc->source}});
    return ok();
}

// Opens the health and metrics servers that are not open yet. A bind that fails (the
// kube-proxy being replaced still holds the port, say) is retried every 5 s, as kube-proxy
// retries it, unless bindAddressHardFail makes it fatal.
Result<void> Daemon::startServers() {
    struct Server {
        const char* what;
        const std::string* address;
        std::unique_ptr<HttpServer>* slot;
        HttpResponse (Daemon::*serve)(const HttpRequest&);
    };
    bool missing = false;
    for (const Server& s :
         {Server{"healthz", &cfg_.healthzBindAddress, &healthzServer_, &Daemon::serveHealthz},
          Server{"metrics", &cfg_.metricsBindAddress, &metricsServer_, &Daemon::serveMetrics}}) {
        if (s.address->empty() || *s.slot) {
            continue;
        }
        auto l = HttpServer::listen(io_, *s.address, [this, serve = s.serve](const HttpRequest& r) {
            return (this->*serve)(r);
        });
        if (l) {
            *s.slot = std::move(*l);
            if (serverRetries_ > 0) {
                log::info("Started a server", {{"server", s.what}, {"address", *s.address}});
            }
            continue;
        }
        if (cfg_.bindAddressHardFail) {
            return l.error().context(std::string("start the ") + s.what + " server");
        }
        if (serverRetries_ == 0) {
            log::error("Cannot start a server; retrying every 5 s",
                       {{"server", s.what}, {"error", l.error().message}});
        } else {
            log::debug(2, "Cannot start a server",
                       {{"server", s.what}, {"error", l.error().message}});
        }
        missing = true;
    }
    if (missing && !stopping_) {
        ++serverRetries_;
        serverRetryTimer_.expires_after(std::chrono::seconds(5));
        serverRetryTimer_.async_wait([this](auto ec) {
            if (!ec && !stopping_) {
                (void)startServers();
            }
        });
    }
    return ok();
}

void Daemon::installSignals() {
    if (pipe2(gSignalPipe, O_CLOEXEC) != 0) {
        log::error("Cannot create the signal pipe");
        return;
    }
    struct sigaction sa {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    signalPipe_.assign(gSignalPipe[0]);
    signalPipe_.async_read_some(asio::buffer(&signalByte_, 1), [this](auto ec, std::size_t) {
        if (!ec) {
            stop(0, std::string("received ") + strsignal(static_cast<int>(signalByte_)));
        }
    });
}

void Daemon::watchConfigFile() {
    if (cfg_.configFile.empty()) {
        return;
    }
    const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0) {
        log::warning("Cannot watch the configuration file", {{"file", cfg_.configFile}});
        return;
    }
    // Follows the ConfigMap's symlinks to the file itself: an edit or the atomic swap of a
    // ConfigMap update both end up here.
    if (inotify_add_watch(fd, cfg_.configFile.c_str(),
                          IN_MODIFY | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF) < 0) {
        close(fd);
        log::warning("Cannot watch the configuration file", {{"file", cfg_.configFile}});
        return;
    }
    configWatch_.assign(fd);
    configWatch_.async_read_some(asio::buffer(inotifyBuf_), [this](auto ec, std::size_t) {
        if (!ec) {
            // As kube-proxy: exit, and let the DaemonSet restart us with the new content.
            stop(1, "content of the proxy server's configuration file was updated");
        }
    });
}

// ---- the sync loop ----------------------------------------------------------------------

// Called for every API event (88,000 for the initial lists at 44,000 Services): two clock
// reads, and the sync timer is left alone when it already fires in time.
void Daemon::changed() {
    const auto now = SteadyClock::now();
    // As kube-proxy, an update is queued for health only once its proxier is initialized:
    // until then nothing can be synced. Queued from the first event on, the health went 503
    // when a large cluster's initial lists (or an API outage during them) took longer than
    // 2 x syncPeriod, and the liveness probe restarted the pod into the same lists.
    double wallSeconds = 0;
    for (auto& p : proxiers_) {
        if (!p->initialized()) {
            continue;
        }
        health_.queued(p->family(), now);
        if (wallSeconds == 0) {
            wallSeconds = static_cast<double>(wallNowNs()) / 1e9;
        }
        lastQueuedGauge(p->family()).set(wallSeconds);
    }
    scheduler_.request();
    scheduleSync(now);
}

metrics::Gauge& Daemon::lastSyncedGauge(net::Family f) {
    return metrics_.gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                          "The last time proxy rules were successfully synced",
                          {{"ip_family", familyLabel(f)}});
}

metrics::Gauge& Daemon::lastQueuedGauge(net::Family f) {
    auto& g = lastQueued_[f == net::Family::V4 ? 0 : 1];
    if (g == nullptr) {
        g = &metrics_.gauge("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                            "The last time a sync of proxy rules was queued",
                            {{"ip_family", familyLabel(f)}});
    }
    return *g;
}

void Daemon::scheduleSync() {
    scheduleSync(SteadyClock::now());
}

void Daemon::scheduleSync(SteadyClock::time_point now) {
    if (stopping_) {
        return;
    }
    auto at = scheduler_.next(now);
    if (!at) {
        return;
    }
    const bool listing = std::any_of(proxiers_.begin(), proxiers_.end(),
                                     [](const auto& p) { return p->programEarly(); });
    if (listing && earlyStepAt_) {
        at = std::max(*at, *earlyStepAt_ + kEarlyStepGap);
    }
    // Armed for no later than needed: keep it. Re-arming cancels the pending wait, which
    // completes as a handler of its own, and updates the timer queue (clock reads, timerfd):
    // per event, while a list arrives. What the armed time was computed from (the
    // scheduler's tokens, the last early step) only changes when a sync runs, which disarms.
    if (syncArmed_ && syncArmedAt_ <= *at) {
        return;
    }
    syncArmed_ = true;
    syncArmedAt_ = *at;
    syncTimer_.expires_at(*at);
    syncTimer_.async_wait([this](auto ec) {
        if (ec) {
            return;  // re-armed or stopped
        }
        syncArmed_ = false;
        runSync();
    });
}

void Daemon::runSync() {
    if (stopping_ || adoptReading_) {
        // Nothing is programmed before the IPVS table is read; startAdoptRead() schedules
        // the sync then (the scheduler does not count this one, so it is not held back).
        return;
    }
    const ipvs::WriterGate::Scope writing(ipvsWriters_);
    const auto now = SteadyClock::now();
    const SyncTime t{now, wallNowNs()};
    bool failed = false;
    bool more = false;
    for (auto& p : proxiers_) {
        const auto fam = p->family();
        if (!p->adopted()) {
            if (auto r = p->adopt(); !r) {
                log::error("Reading the kernel state failed",
                           {{"ipFamily", familyLabel(fam)}, {"error", r.error().message}});
                failed = true;
                continue;
            }
        }
        if (!p->initialized()) {
            if (p->programEarly() && p->pending()) {
                // The lists are still arriving: program what is known (proxier.h). Not a
                // completed sync: no log line, no health update, no continuation at once.
                const auto step = p->syncStep(t);
                syncTimes_[fam] += step.times;
                earlyStepAt_ = SteadyClock::now();
                log::debug(3, "Programmed Services listed so far",
                           {{"ipFamily", familyLabel(fam)},
                            {"services", step.services},
                            {"changedLeft", step.left},
                            {"seconds", std::chrono::duration<double>(*earlyStepAt_ - now).count()},
                            {"ipvsSeconds", step.times.ipvs}});
            }
            continue;
        }
        if (!p->pending()) {
            // Nothing left to program: whatever was queued (an event that changed nothing, a
            // relist of the same objects) is in the kernel. Without this, such an event left
            // /healthz waiting for a sync that never had to happen, and it turned 503.
            health_.updated(fam, now, wallNowNs());
            continue;
        }
        auto& started = syncStarted_[fam];
        if (!started) {
            started = now;
        }
        const auto step = p->syncStep(t);
        auto& times = syncTimes_[fam];
        times += step.times;
        failed = failed || step.failed;
        if (!step.done) {
            more = true;
            continue;
        }
        const auto end = SteadyClock::now();
        // kube-proxy logs "SyncProxyRules complete" with the elapsed time at V(2) as well; the
        // scale benchmark (tests/bench/scale/) reads this line's time stamp.
        log::debug(2, "Synced proxy rules",
                   {{"ipFamily", familyLabel(fam)},
                    {"seconds", std::chrono::duration<double>(end - *started).count()},
                    {"failed", step.failed},
                    {"computeSeconds", times.compute},
                    {"ipsetSeconds", times.ipsets},
                    {"addressSeconds", times.addresses},
                    {"ipvsSeconds", times.ipvs},
                    {"iptablesSeconds", times.iptables}});
        times = {};
        metrics_
            .histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                       "SyncProxyRules latency in seconds",
                       metrics::exponentialBuckets(0.001, 2, 15), {{"ip_family", familyLabel(fam)}})
            .observe(std::chrono::duration<double>(end - *started).count());
        started.reset();
        // A refused write of one object does not make the proxy unhealthy (it is retried
        // and counted); a sync that stopped short does (kube-proxy-ipvs.md §6.5, §8.1).
        if (!step.aborted) {
            health_.updated(fam, end, wallNowNs());
            lastSyncedGauge(fam).set(static_cast<double>(wallNowNs()) / 1e9);
        }
    }
    if (!heapTrimmed_ && std::all_of(proxiers_.begin(), proxiers_.end(),
                                     [](const auto& p) { return p->initialSyncDone(); })) {
        // The initial lists and the first sync leave freed memory behind (decoded objects
        // queued between the threads, list buffers, batches); give it back once, so that the
        // steady RSS is what the state needs.
        heapTrimmed_ = true;
        releaseFreeHeap();
    }
    scheduler_.ran(now, failed, more);
    syncHealthChecks();
    scheduleReap();
    scheduleSync();
}

void Daemon::scheduleVerify() {
    if (stopping_) {
        return;
    }
    // Passes start every syncPeriod (or at once, when one took longer), not syncPeriod after
    // the previous one ended: a change made behind our back is seen by the pass that starts
    // at most one syncPeriod later, however long reading a large table takes.
    const auto period = std::chrono::duration_cast<SteadyClock::duration>(cfg_.ipvs.syncPeriod);
    const auto now = SteadyClock::now();
    verifyTimer_.expires_at(lastVerifyStart_ ? std::max(now, *lastVerifyStart_ + period)
                                             : now + period);
    verifyTimer_.async_wait([this](auto ec) {
        if (!ec) {
            startVerify();
        }
    });
}

void Daemon::startVerify() {
    const bool ready = std::all_of(proxiers_.begin(), proxiers_.end(),
                                   [](const auto& p) { return p->initialSyncDone(); });
    if (verifying_ || !ready || stopping_) {
        scheduleVerify();
        return;
    }
    verifying_ = true;
    if (verifier_.joinable()) {
        verifier_.join();
    }
    std::vector<std::uint64_t> seqs;
    for (auto& p : proxiers_) {
        seqs.push_back(p->opSeq());
    }
    // Everything the comparison needs (the IPVS table, kube-ipvs0, our sets, iptables-save)
    // is read on its own thread with its own kernel handles, so a 44,000-Service table does
    // not stall event handling; the comparison runs back on the io thread.
    std::vector<net::Family> families;
    for (auto& p : proxiers_) {
        families.push_back(p->family());
    }
    const auto binding = cfg_.vipBinding == "route" ? VipBinding::Route : VipBinding::Address;
    const auto verifyStart = SteadyClock::now();
    const long long verifyStartWall = wallNowNs() / 1000000;  // Unix ms
    lastVerifyStart_ = verifyStart;
    verifyReading_ = true;
    verifier_ = std::thread([this, seqs, families, binding, verifyStart, verifyStartWall] {
        enterVerifierThread();
        Result<KernelSnapshot> snap = Error::invalid("no snapshot");
        ipvs::NetlinkIpvs::Options ipvsOptions;
        ipvsOptions.beforeReadStep = [this] { ipvsWriters_.awaitWriters(); };
        const double pausedBefore = ipvsWriters_.stats().waitSeconds;
        auto ipvs = ipvs::NetlinkIpvs::open(ipvsOptions);
        auto addrs = ipvs::RtnlAddresses::open();
        // Not a LibIpset: libipset's state is process-wide and the io thread's is in use.
        auto ipset = ipvs::NetlinkIpsetLister::open();
        if (!ipvs) {
            snap = ipvs.error();
        } else if (!addrs) {
            snap = addrs.error();
        } else if (!ipset) {
            snap = ipset.error();
        } else {
            ipvs::ExecIptables ipt;
            snap = takeKernelSnapshot({**ipvs, **addrs, **ipset, &ipt}, families, binding);
        }
        const auto readDone = SteadyClock::now();
        const double paused = ipvsWriters_.stats().waitSeconds - pausedBefore;
        verifyReading_ = false;
        asio::post(io_, [this, seqs, snap = std::move(snap), verifyStart, verifyStartWall, readDone,
                         paused]() mutable {
            if (stopping_) {
                verifying_ = false;
                return;
            }
            if (!snap) {
                verifying_ = false;
                log::error("Reading the kernel state for verification failed",
                           {{"error", snap.error().message}});
                scheduleVerify();
                return;
            }
            auto run = std::make_shared<CompareRun>();
            run->snap = std::move(*snap);
            run->seqs = seqs;
            run->startedUnixMs = verifyStartWall;
            run->readSeconds = std::chrono::duration<double>(readDone - verifyStart).count();
            run->readPausedSeconds = paused;
            run->start = SteadyClock::now();
            compareStep(run);
        });
    });
}

// One bounded part of comparing a snapshot (Proxier::verifyStep), then the next is posted,
// so that events and syncs are served in between: at 10,000 Services the whole comparison
// held the io thread for 0.3 s under emulation, and an event arriving then waited for it.
void Daemon::compareStep(const std::shared_ptr<CompareRun>& run) {
    if (stopping_) {
        verifying_ = false;
        return;
    }
    const auto t0 = SteadyClock::now();
    auto& p = *proxiers_[run->proxier];
    p.verifyStep(run->snap, run->seqs[run->proxier], run->progress, kCompareBudget);
    const double stepSeconds = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    run->busySeconds += stepSeconds;
    run->longestStepSeconds = std::max(run->longestStepSeconds, stepSeconds);
    if (run->progress.done) {
        const auto& rep = run->progress.report;
        if (rep.total() > 0) {
            run->drift = true;
            log::warning("Kernel state changed behind our back; repairing",
                         {{"ipFamily", familyLabel(p.family())},
                          {"ipvs", rep.ipvsRepairs},
                          {"addresses", rep.addressRepairs},
                          {"ipsets", rep.setRepairs},
                          {"iptables", rep.iptablesRepairs}});
        }
        ++run->proxier;
        run->progress = {};
    }
    if (run->proxier < proxiers_.size()) {
        asio::post(io_, [this, run] { compareStep(run); });
        return;
    }
    verifying_ = false;
    const double compareWall =
        std::chrono::duration<double>(SteadyClock::now() - run->start).count();
    // The snapshot (a key and a digest per virtual server, 1.9 MB at 44,000 x 10; it held
    // every real server and the sets' members once) is freed at once and its pages given
    // back, or the steady RSS could keep it. Both took 26 ms at 44,000 x 10 under emulation
    // when it held everything, the longest step on the io thread, so they run on the
    // verification's thread slot (its read ended; startVerify and shutdown join it), below
    // the io thread's priority.
    if (verifier_.joinable()) {
        verifier_.join();
    }
    verifier_ = std::thread([snap = std::move(run->snap)]() mutable {
        enterVerifierThread();
        const auto start = SteadyClock::now();
        snap = KernelSnapshot{};
        releaseFreeHeap();
        log::debug(
            3, "Released the verification snapshot",
            {{"seconds", std::chrono::duration<double>(SteadyClock::now() - start).count()}});
    });
    // Read on the verifier thread, compared on the io thread in steps (compareSeconds: the
    // io thread's time, the part that can delay events); the scale benchmark reads this line.
    log::debug(2, "Verified kernel state",
               {{"startedUnixMs", run->startedUnixMs},
                {"readSeconds", run->readSeconds},
                {"compareSeconds", run->busySeconds},
                {"compareWallSeconds", compareWall},
                {"longestStepSeconds", run->longestStepSeconds},
                {"drift", run->drift},
                {"readPausedSeconds", run->readPausedSeconds}});
    if (!run->drift) {
        // The pass found the kernel as desired: what kube-proxy's periodic sync (every
        // syncPeriod) reports in this gauge, so alerts on its age hold on a quiet cluster.
        // A family with changes still to program waits for their sync.
        for (const auto& p : proxiers_) {
            if (p->initialized() && !p->pending()) {
                lastSyncedGauge(p->family()).set(static_cast<double>(wallNowNs()) / 1e9);
            }
        }
    }
    if (run->drift || std::any_of(proxiers_.begin(), proxiers_.end(),
                                  [](const auto& p) { return p->pending(); })) {
        changed();
    }
    scheduleVerify();
}

void Daemon::scheduleReap() {
    const bool draining = std::any_of(proxiers_.begin(), proxiers_.end(),
                                      [](const auto& p) { return p->terminatingCount() > 0; });
    if (!draining || stopping_ || reapTimer_.expiry() > SteadyClock::now()) {
        return;
    }
    // Draining real servers are checked every few seconds (kube-proxy: every minute) and
    // deleted once their last connection is gone.
    reapTimer_.expires_after(std::chrono::seconds(5));
    reapTimer_.async_wait([this](auto ec) {
        if (ec) {
            return;
        }
        for (auto& p : proxiers_) {
            if (const int n = p->reapTerminating(); n > 0) {
                log::debug(2, "Deleted drained real servers",
                           {{"ipFamily", familyLabel(p->family())}, {"count", n}});
            }
        }
        scheduleReap();
    });
}

void Daemon::syncHealthChecks() {
    // port -> (Service, local endpoints per family)
    std::map<std::uint16_t, std::pair<k8s::ObjectKey, std::array<std::uint32_t, 2>>> want;
    for (const auto& p : proxiers_) {
        for (const auto& [svc, hc] : p->healthChecks()) {
            auto& w = want[hc.port];
            w.first = svc;
            w.second[p->family() == net::Family::V4 ? 0 : 1] = hc.localEndpoints;
        }
    }
    for (auto it = hc_.begin(); it != hc_.end();) {
        if (want.count(it->first) == 0) {
            log::info("Closing health check port",
                      {{"service", it->second.service.toString()}, {"port", it->first}});
            it = hc_.erase(it);
        } else {
            ++it;
        }
    }
    for (const auto& [port, w] : want) {
        auto& l = hc_[port];
        l.service = w.first;
        l.localEndpoints = w.second;
        if (l.server) {
            continue;
        }
        // One listener per port for both families (kube-proxy opens one per family proxier),
        // on every node address: nodePortAddresses does not narrow it (a difference the
        // README states). IPv4-only where the node has no IPv6. Each family's load balancer
        // gets its family's count, as from kube-proxy's per-family listeners.
        const std::string addr = "[::]:" + std::to_string(port);
        // clang 14: no binding captures
        auto handler = [this, port = port](const HttpRequest& req) {
            HttpResponse res;
            auto it = hc_.find(port);
            const std::uint32_t local =
                it == hc_.end() ? 0 : it->second.localEndpoints[req.localIsV6 ? 1 : 0];
            const bool healthy = health_.healthy(SteadyClock::now());
            res.status = local > 0 && healthy ? 200 : 503;
            res.contentType = "application/json";
            res.headers.emplace_back("X-Content-Type-Options", "nosniff");
            // Read by weighted load balancers (GCP's) as the node's share, as kube-proxy sends.
            res.headers.emplace_back("X-Load-Balancing-Endpoint-Weight", std::to_string(local));
            res.body =
                serviceHealthBody(it == hc_.end() ? "" : it->second.service.ns,
                                  it == hc_.end() ? "" : it->second.service.name, local, healthy);
            return res;
        };
        auto s = HttpServer::listen(io_, addr, handler);
        if (!s &&
            (s.error().code.value() == EAFNOSUPPORT || s.error().code.value() == EADDRNOTAVAIL)) {
            // A node without IPv6: IPv4 alone. Other errors (the port is taken) are reported
            // as they are.
            s = HttpServer::listen(io_, "0.0.0.0:" + std::to_string(port), handler);
        }
        if (s) {
            l.server = std::move(*s);
            log::info("Opened health check port",
                      {{"service", w.first.toString()}, {"port", port}});
        } else {
            // Retried on the next sync, as kube-proxy does.
            metrics_
                .counter("kube_ipvs_health_check_listen_failures_total",
                         "Failures to open a Service's health check node port")
                .inc();
            log::error("Failed to start health check", {{"node", nodeName_},
                                                        {"service", w.first.toString()},
                                                        {"port", port},
                                                        {"error", s.error().message}});
        }
    }
}

// ---- HTTP -------------------------------------------------------------------------------

HttpResponse Daemon::serveHealthz(const HttpRequest& r) {
    const auto path = r.path();
    if (path != "/healthz" && path != "/livez") {
        return HttpResponse::notFound();
    }
    const auto now = SteadyClock::now();
    const auto a = path == "/healthz" ? health_.healthz(now, wallNowNs(), monoSeconds())
                                      : health_.livez(now, wallNowNs(), monoSeconds());
    metrics_
        .counter(
            path == "/healthz" ? "kubeproxy_proxy_healthz_total" : "kubeproxy_proxy_livez_total",
            "Cumulative proxy health check results", {{"code", std::to_string(a.status)}})
        .inc();
    HttpResponse res;
    res.status = a.status;
    res.contentType = "application/json";
    res.headers.emplace_back("X-Content-Type-Options", "nosniff");
    res.body = a.body;
    return res;
}

std::string Daemon::ipvsCounters() {
    auto services = ipvs_->services();
    if (!services) {
        return {};
    }
    std::string conns;
    std::string packets;
    std::string bytes;
    for (const auto& s : *services) {
        const k8s::ObjectKey* owner = nullptr;
        for (const auto& p : proxiers_) {
            if ((owner = p->ownerOf(s.service.key)) != nullptr) {
                break;
            }
        }
        if (owner == nullptr) {
            continue;
        }
        const std::string labels = "service=\"" + metrics::escapeLabelValue(owner->toString()) +
                                   "\",virtual_server=\"" +
                                   metrics::escapeLabelValue(s.service.key.toString()) + "\"";
        conns += "kube_ipvs_virtual_server_connections_total{" + labels + "} " +
                 std::to_string(s.stats.conns) + "\n";
        packets += "kube_ipvs_virtual_server_packets_total{" + labels + ",direction=\"in\"} " +
                   std::to_string(s.stats.inPackets) + "\n";
        packets += "kube_ipvs_virtual_server_packets_total{" + labels + ",direction=\"out\"} " +
                   std::to_string(s.stats.outPackets) + "\n";
        bytes += "kube_ipvs_virtual_server_bytes_total{" + labels + ",direction=\"in\"} " +
                 std::to_string(s.stats.inBytes) + "\n";
        bytes += "kube_ipvs_virtual_server_bytes_total{" + labels + ",direction=\"out\"} " +
                 std::to_string(s.stats.outBytes) + "\n";
    }
    return "# HELP kube_ipvs_virtual_server_connections_total Connections IPVS scheduled to a "
           "Service's virtual server\n# TYPE kube_ipvs_virtual_server_connections_total "
           "counter\n" +
           conns +
           "# HELP kube_ipvs_virtual_server_packets_total Packets through a Service's virtual "
           "server\n# TYPE kube_ipvs_virtual_server_packets_total counter\n" +
           packets +
           "# HELP kube_ipvs_virtual_server_bytes_total Bytes through a Service's virtual "
           "server\n# TYPE kube_ipvs_virtual_server_bytes_total counter\n" +
           bytes;
}

// The process_* series of Prometheus' standard process collector, which dashboards built for
// kube-proxy chart (its memory and CPU, its descriptors).
void Daemon::refreshProcessMetrics() {
    const auto st = readProcessStats();
    if (!st) {
        return;
    }
    auto& cpu = metrics_.counter("process_cpu_seconds_total",
                                 "Total user and system CPU time spent in seconds.");
    if (st->cpuSeconds > cpu.value()) {
        cpu.inc(st->cpuSeconds - cpu.value());
    }
    metrics_.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        .set(st->residentBytes);
    metrics_.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        .set(st->virtualBytes);
    metrics_.gauge("process_open_fds", "Number of open file descriptors.").set(st->openFds);
    metrics_.gauge("process_max_fds", "Maximum number of open file descriptors.").set(st->maxFds);
    metrics_
        .gauge("process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.")
        .set(static_cast<double>(startWallNs_) / 1e9);
}

HttpResponse Daemon::serveMetrics(const HttpRequest& r) {
    const auto path = r.path();
    HttpResponse res;
    if (path == "/metrics") {
        res.contentType = "text/plain; version=0.0.4; charset=utf-8";
        metrics_.gauge("kube_ipvs_build_info", "kube-ipvs version", {{"version", kVersion}}).set(1);
        refreshProcessMetrics();
        for (auto& p : proxiers_) {
            p->refreshGauges();
        }
        res.body = metrics_.render();
        if (cfg_.serviceMetrics) {
            res.body += ipvsCounters();
        }
    } else if (path == "/healthz") {
        res.body = "ok";
    } else if (path == "/proxyMode") {
        res.body = "ipvs";
    } else if (path == "/configz") {
        res.contentType = "application/json";
        res.body = cfg_.configzJson();
    } else {
        return HttpResponse::notFound();
    }
    return res;
}

// ---- run and stop -----------------------------------------------------------------------

void Daemon::stop(int code, const std::string& why) {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    exitCode_ = code;
    if (code == 0) {
        log::info("Stopping; the programmed rules stay in place", {{"reason", why}});
    } else {
        log::error("Exiting", {{"reason", why}});
    }
    boost::system::error_code ec;
    syncTimer_.cancel();
    verifyTimer_.cancel();
    reapTimer_.cancel();
    serverRetryTimer_.cancel();
    signalPipe_.cancel(ec);
    configWatch_.cancel(ec);
    for (auto& a : api_) {
        if (a) {
            a->stop();
        }
    }
    hc_.clear();
    if (healthzServer_) {
        healthzServer_->close();
    }
    if (metricsServer_) {
        metricsServer_->close();
    }
    io_.stop();
}

int Daemon::run() {
    log::info("Starting kube-ipvs", {{"version", kVersion}, {"node", nodeName_}});
    for (const auto& w : cfg_.warnings) {
        log::warning(w);
    }
    installSignals();
    limitHeapRetention();
    // The API client starts first: its lists run on their own thread while this one sets the
    // node up and reads the kernel. What it delivers waits in apiStrand_ until io_ runs below,
    // after the proxiers exist.
    if (auto r = startClient(); !r) {
        log::error("Cannot start", {{"error", r.error().message}});
        return 1;
    }
    if (auto r = openKernel(); !r) {
        log::error("Cannot start", {{"error", r.error().message}});
        return 1;
    }
    if (auto r = setupNode(cfg_, ipvs_.get()); !r) {
        log::error("Cannot start", {{"error", r.error().message}});
        return 1;
    }
    if (cfg_.oomScoreAdj) {
        std::ofstream oom("/proc/self/oom_score_adj");
        oom << *cfg_.oomScoreAdj;
        if (!oom.flush()) {
            log::warning("Cannot set oom_score_adj", {{"value", *cfg_.oomScoreAdj}});
        }
    }
    if (auto r = checkScheduler(); !r) {
        log::error("Cannot start", {{"error", r.error().message}});
        return 1;
    }
    if (auto r = createProxiers(); !r) {
        log::error("Cannot start", {{"error", r.error().message}});
        return 1;
    }
    if (auto r = startServers(); !r) {
        log::error("Cannot start", {{"error", r.error().message}});
        return 1;
    }
    watchConfigFile();
    startAdoptRead();
    // kube-proxy's SyncLoop marks itself updated before it starts.
    for (auto& p : proxiers_) {
        health_.updated(p->family(), SteadyClock::now(), wallNowNs());
    }
    scheduleVerify();
    io_.run();
    if (verifier_.joinable() && verifyReading_.load()) {
        // A read of a large table (the adoption's or a verification's) can take a while; it
        // only reads, so there is nothing to wait for, and SIGTERM must not hang behind it.
        log::info("Exiting during a kernel read; not waiting for it", {});
        std::fflush(nullptr);
        std::_Exit(exitCode_);
    }
    if (verifier_.joinable()) {
        verifier_.join();
    }
    return exitCode_;
}

int runDaemon(const Config& cfg) {
    Daemon d(cfg);
    return d.run();
}

int runInitOnly(const Config& cfg) {
    auto ipvs = ipvs::NetlinkIpvs::open();
    if (!ipvs) {
        log::warning("IPVS is unavailable; IPVS timeouts not set",
                     {{"error", ipvs.error().message}});
    }
    if (auto r = setupNode(cfg, ipvs ? ipvs->get() : nullptr); !r) {
        log::error("Initialisation failed", {{"error", r.error().message}});
        return 1;
    }
    log::info("Node initialised; exiting (--init-only)");
    return 0;
}

int runCleanup(const Config& cfg) {
    auto ipvs = ipvs::NetlinkIpvs::open();
    auto addrs = ipvs::RtnlAddresses::open();
    auto ipset = ipvs::LibIpset::open();
    if (!ipvs || !addrs || !ipset) {
        log::error("Cannot clean up: kernel interfaces unavailable",
                   {{"error", !ipvs    ? ipvs.error().message
                              : !addrs ? addrs.error().message
                                       : ipset.error().message}});
        return 1;
    }
    ipvs::ExecIptables ipt;
    const bool v4 = ipt.save(net::Family::V4, "nat").has_value();
    const bool v6 =
        access("/proc/net/if_inet6", F_OK) == 0 && ipt.save(net::Family::V6, "nat").has_value();
    std::vector<net::Cidr> exclude;
    for (const auto& c : cfg.ipvs.excludeCIDRs) {
        if (auto p = net::Cidr::parse(c)) {
            exclude.push_back(*p);
        }
    }
    CleanupTargets t{**ipvs, **addrs, **ipset, v4 ? &ipt : nullptr, v6 ? &ipt : nullptr, exclude};
    const auto rep = cleanup(t);
    for (const auto& e : rep.errors) {
        log::error("Cleanup failed", {{"error", e}});
    }
    log::info("Cleaned up", {{"virtualServers", rep.virtualServers},
                             {"sets", rep.sets},
                             {"chains", rep.chains},
                             {"kubeIpvs0", rep.link}});
    return rep.errors.empty() ? 0 : 1;
}

}  // namespace kipvs::proxy
