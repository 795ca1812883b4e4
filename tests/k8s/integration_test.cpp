// The client against the fake API server over real TLS on loopback: the scenarios of
// kubernetes-api.md §8.7, asserting the exact sequence of consumer callbacks and that the
// consumer's cache ends equal to the server's state. Waits are on real events (with generous
// limits), never on elapsed time.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "k8s-client/client.h"
#include "k8s-client/client_thread.h"
#include "k8s-client/decode.h"
#include "k8s-client/http_transport.h"
#include "tests/k8s/fake_server.h"
#include "tests/k8s/test_util.h"

using namespace kipvs::k8s;
using namespace kipvs::k8s::testing;
using namespace std::chrono_literals;
using Strings = std::vector<std::string>;
namespace json = boost::json;

namespace {

const std::string& tlsDir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/kipvs-k8s-it-XXXXXX";
        const char* d = mkdtemp(tmpl);
        return std::string(d != nullptr ? d : "/tmp");
    }();
    return dir;
}

std::string svcObj(const std::string& name, const std::string& ip, int port = 80,
                   const std::string& labels = "{}") {
    return R"({"kind":"Service","apiVersion":"v1","metadata":{"name":")" + name +
           R"(","namespace":"default","labels":)" + labels +
           R"(},"spec":{"type":"ClusterIP","clusterIP":")" + ip +
           R"(","ports":[{"name":"http","protocol":"TCP","port":)" + std::to_string(port) + "}]}}";
}

// Services s0..s<n-1> (ClusterIPs 10.96.0.0 upwards), comma-separated for a JSON array.
std::string manySvcName(int i) {
    return "s" + std::to_string(i);
}
std::string manySvcObjs(int n, const std::string& labels = "{}") {
    std::string out;
    for (int i = 0; i < n; ++i) {
        out +=
            (i ? "," : "") +
            svcObj(manySvcName(i),
                   "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250), 80, labels);
    }
    return out;
}

std::string sliceObj(const std::string& name, const std::string& svc, const std::string& type,
                     const std::string& endpoints) {
    return R"({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":")" +
           name + R"(","namespace":"default","labels":{"kubernetes.io/service-name":")" + svc +
           R"("}},"addressType":")" + type +
           R"(","ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":)" + endpoints +
           "}";
}

struct It {
    explicit It(std::vector<std::string> serverArgs = {}, bool watchList = false) {
        serverArgs.insert(serverArgs.begin(), {"--tls-dir", tlsDir(), "--token", "t1"});
        server = std::make_unique<FakeServer>(serverArgs);
        server->post("config", R"({"bookmark_interval":0.3})");
        opts.watchList = watchList;
        opts.version = "9.9.9";
        opts.backoff.initial = 50ms;
        opts.randomSeed = 7;
        opts.headerTimeout = 10s;
    }

    kipvs::Result<ClientConfig> kubeconfig(const std::string& name = "kubeconfig-token.yaml") {
        return loadKubeconfig(tlsDir() + "/" + name);
    }

    void connect(ClientConfig cfg) {
        auto c = Client::create(ioc, cfg, opts, &observer);
        REQUIRE(c.has_value());
        client = std::move(*c);
    }
    void connect() {
        auto cfg = kubeconfig();
        REQUIRE(cfg.has_value());
        connect(*cfg);
    }

    void startServices() {
        services = client->watchServices(svcH);
        services->start();
    }
    void startAll(const std::string& node = "node-1") {
        startServices();
        slices = client->watchEndpointSlices(sliceH);
        slices->start();
        nodes = client->watchNode(node, nodeH);
        nodes->start();
    }

    // Generous: CI runs this under ASan next to other suites. A timeout prints what the
    // client reported, so that a failure in CI's log says why.
    bool runUntil(const std::function<bool()>& pred, std::chrono::seconds limit = 60s) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!pred() && std::chrono::steady_clock::now() < end) {
            ioc.restart();
            ioc.run_for(5ms);
        }
        if (!pred()) {
            std::cerr << "runUntil timed out; client reported:\n";
            for (const auto& m : observer.messages) {
                std::cerr << "  " << m << "\n";
            }
            std::cerr << "  lists:";
            for (const auto& rv : observer.lists) {
                std::cerr << " [" << rv << "]";
            }
            std::cerr << "\n  watches: " << observer.watches.size()
                      << ", retries: " << observer.retries << ", events: " << observer.events
                      << "\n";
            dumpServerView();
        }
        return pred();
    }
    // What the fake server saw: its request log, open watches and fault rules (a rare CI
    // failure of a re-watch could not be explained from the client's side alone).
    void dumpServerView() {
        try {
            std::cerr << "server saw:\n";
            // Held in a local: a range over a part of the temporary reply (at() and
            // as_array() return references into it) would read it after it is destroyed,
            // which crashed this very dump once.
            const json::value seen = server->control("GET", "requests");
            for (const auto& r : seen.at("requests").as_array()) {
                const auto& o = r.as_object();
                const auto text = [&](const char* k) { return std::string(o.at(k).as_string()); };
                std::cerr << "  #" << o.at("seq") << " t=" << o.at("time") << " " << text("method")
                          << " " << text("path") << "?" << text("query") << "\n";
            }
            std::cerr << "  watches: " << server->control("GET", "watches") << "\n";
            std::cerr << "  faults: " << server->control("GET", "faults") << "\n";
        } catch (const std::exception& e) {
            std::cerr << "  (server not reachable: " << e.what() << ")\n";
        }
    }
    // Runs until the server has `n` open watches on `resource`.
    bool waitWatches(int n, const std::string& resource = "services") {
        return runUntil([&] {
            auto v = server->control("GET", "watches");
            return v.at("by_resource").at(resource).as_int64() >= n;
        });
    }
    std::int64_t rv() { return server->control("GET", "state").at("rv").as_int64(); }
    json::array requests(const std::string& resource = "services") {
        json::array out;
        auto all = server->control("GET", "requests");
        for (auto& r : all.at("requests").as_array()) {
            if (r.at("resource").as_string() == resource) {
                out.push_back(r);
            }
        }
        return out;
    }

    // The server's objects as the consumer should see them: matching the proxy's selector and
    // valid after decoding.
    std::map<std::string, Service> serverServices() {
        std::map<std::string, Service> out;
        auto v = server->control("GET", "objects?resource=services");
        for (auto& item : v.at("items").as_array()) {
            const auto* labels = item.at("metadata").as_object().if_contains("labels");
            if (labels != nullptr && labels->is_object() &&
                (labels->as_object().contains("service.kubernetes.io/service-proxy-name") ||
                 labels->as_object().contains("service.kubernetes.io/headless"))) {
                continue;
            }
            DecodeReport r;
            if (auto s = decodeService(item, r)) {
                out[s->key.toString()] = *s;
            }
        }
        return out;
    }

    boost::asio::io_context ioc;
    std::unique_ptr<FakeServer> server;
    ClientOptions opts;
    CountingObserver observer;
    std::unique_ptr<Client> client;
    Recorder<Service> svcH;
    Recorder<EndpointSlice> sliceH;
    Recorder<Node> nodeH;
    std::unique_ptr<Informer<Service>> services;
    std::unique_ptr<Informer<EndpointSlice>> slices;
    std::unique_ptr<Informer<Node>> nodes;
};

}  // namespace

TEST_CASE("1 cold start: list RV 0 then watch; state equals the server's", "[it]") {
    It t;
    t.server->post(
        "objects",
        "[" + svcObj("a", "10.96.0.1") + "," + svcObj("b", "10.96.0.2") + "," +
            svcObj("other", "10.96.0.3", 80,
                   R"({"service.kubernetes.io/service-proxy-name":"x"})") +
            "," + sliceObj("a-1", "a", "IPv4", R"([{"addresses":["10.1.0.1"]}])") +
            R"(,{"kind":"Node","metadata":{"name":"node-1","labels":{"topology.kubernetes.io/zone":"z1"}},"spec":{}},)" +
            R"({"kind":"Node","metadata":{"name":"node-2"},"spec":{}}])");
    t.connect();
    t.startAll();
    REQUIRE(t.runUntil(
        [&] { return t.services->hasSynced() && t.slices->hasSynced() && t.nodes->hasSynced(); }));
    CHECK(t.svcH.take() == Strings{"add default/a", "add default/b", "synced"});
    CHECK(t.sliceH.take() == Strings{"add default/a-1", "synced"});
    CHECK(t.nodeH.take() == Strings{"add node-1", "synced"});
    CHECK(t.nodeH.cache.at("node-1").zone == "z1");
    CHECK(t.sliceH.cache.at("default/a-1").endpoints.at(0).address.toString() == "10.1.0.1");
    CHECK(t.svcH.cache == t.serverServices());
    REQUIRE(t.waitWatches(1));
    auto reqs = t.requests();
    REQUIRE(reqs.size() >= 2);
    CHECK(reqs[0].at("query").as_string() ==
          "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-"
          "proxy-name&limit=500&resourceVersion=0");
    const auto& h = reqs[0].at("headers").as_object();
    CHECK(h.at("User-Agent").as_string() == "kube-ipvs/9.9.9 (linux/amd64)");
    CHECK(h.at("Accept").as_string() == "application/json");
    CHECK(h.at("Authorization").as_string() == "Bearer t1");
    CHECK(reqs[1].at("watch").as_bool());
}

TEST_CASE("a wait that times out prints the server's request log", "[it]") {
    // What a rare CI failure leaves to explain it. The dump once ranged over a part of a
    // temporary reply, read it after it was freed and crashed.
    It t;
    t.server->post("objects", svcObj("a", "10.96.0.1"));
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    std::ostringstream err;
    auto* const old = std::cerr.rdbuf(err.rdbuf());
    const bool met = t.runUntil([] { return false; }, 0s);
    std::cerr.rdbuf(old);
    CHECK_FALSE(met);
    const std::string out = err.str();
    INFO(out);
    CHECK(out.find("runUntil timed out") != std::string::npos);
    CHECK(out.find("server saw:\n  #0 ") != std::string::npos);
    CHECK(out.find(" GET /api/v1/services?") != std::string::npos);
    CHECK(out.find("server not reachable") == std::string::npos);
}

TEST_CASE("a large response over TLS is read a TLS record at a time, not in small pieces",
          "[it][tls]") {
    // 2,000 Services of about 650 bytes: a 1.3 MB list body in 16 KiB TLS records. Each read
    // of the body is one trip through the io_context; reading a few hundred bytes at a time
    // (the HTTP read buffer's capacity after the response head) made that about 30 trips per
    // record.
    It t;
    t.server->post("objects",
                   "[" + manySvcObjs(2000, R"({"pad":")" + std::string(400, 'x') + R"("})") + "]");
    t.server->post("config", R"({"ignore_limit":true})");  // one page, as a watch cache answers
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.svcH.cache.size() == 2000);
    REQUIRE(t.observer.bytes > 1'000'000);
    CHECK(t.observer.bytes / t.observer.reads >= 4096);
}

TEST_CASE("TLS: ChaCha20-Poly1305 is offered first when asked (and on CPUs without AES)",
          "[it][tls]") {
    // The server follows a client that offers ChaCha20 first, as kube-apiserver does; it
    // picks AES-GCM otherwise. Under emulation without AES instructions (the test guest)
    // ChaCha20 decrypts about 7 times faster.
    for (const bool chacha : {true, false}) {
        INFO("preferChaCha " << chacha);
        It t;
        t.server->post("objects", "[" + svcObj("a", "10.96.0.1") + "]");
        t.opts.preferChaCha = chacha;
        t.connect();
        t.startServices();
        REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
        auto reqs = t.requests();
        REQUIRE_FALSE(reqs.empty());
        const std::string cipher(reqs[0].at("cipher").as_string());
        CHECK(cipher == (chacha ? "TLS_CHACHA20_POLY1305_SHA256" : "TLS_AES_256_GCM_SHA384"));
    }
}

namespace {

// What the daemon's strand does for a ClientThread: runs what is posted, in order, on the
// thread that drains it (here the test's).
struct PostQueue {
    void post(std::function<void()> fn) {
        const std::lock_guard l(m);
        q.push_back(std::move(fn));
        cv.notify_one();
    }
    // Runs what was posted until pred() holds or `limit` passes.
    bool drainUntil(const std::function<bool()>& pred, std::chrono::seconds limit = 60s) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!pred()) {
            std::unique_lock l(m);
            if (!cv.wait_until(l, end, [&] { return !q.empty(); })) {
                return pred();
            }
            auto fn = std::move(q.front());
            q.pop_front();
            l.unlock();
            fn();
        }
        return true;
    }
    std::size_t size() {
        const std::lock_guard l(m);
        return q.size();
    }
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::function<void()>> q;
};

// A Recorder that also notes whether any call came from a thread other than the test's.
template <class T>
struct ThreadRecorder : Recorder<T> {
    void onAdd(const T& o) override {
        check();
        Recorder<T>::onAdd(o);
    }
    void onUpdate(const T& o) override {
        check();
        Recorder<T>::onUpdate(o);
    }
    void onDelete(const ObjectKey& k) override {
        check();
        Recorder<T>::onDelete(k);
    }
    void onSynced() override {
        check();
        Recorder<T>::onSynced();
    }
    void check() { foreign = foreign || std::this_thread::get_id() != owner; }
    std::thread::id owner = std::this_thread::get_id();
    bool foreign = false;
};

}  // namespace

TEST_CASE("ClientThread: calls arrive on the consumer's thread, in order; none after stop()",
          "[it][thread]") {
    It t;
    std::string objs = "[";
    Strings want;
    for (int i = 0; i < 40; ++i) {
        char name[8];
        std::snprintf(name, sizeof name, "s%02d", i);
        objs += svcObj(name, "10.96.1." + std::to_string(i + 1)) + ",";
        want.push_back(std::string("add default/") + name);
    }
    want.push_back("synced");
    objs += svcObj("bad", "10.96.1.999") + "," +
            sliceObj("s00-1", "s00", "IPv4", R"([{"addresses":["10.1.0.1"]}])") +
            R"(,{"kind":"Node","metadata":{"name":"node-1"},"spec":{}}])";
    t.server->post("objects", objs);
    auto cfg = t.kubeconfig();
    REQUIRE(cfg.has_value());
    PostQueue queue;
    ThreadRecorder<Service> svc;
    ThreadRecorder<EndpointSlice> sl;
    ThreadRecorder<Node> node;
    CountingObserver obs;
    auto ct = ClientThread::start(*cfg, t.opts, {&svc, &sl, &node, "node-1", &obs},
                                  [&](std::function<void()> fn) { queue.post(std::move(fn)); });
    REQUIRE(ct.has_value());
    REQUIRE(queue.drainUntil([&] { return svc.synced && sl.synced && node.synced; }));
    CHECK(svc.take() == want);
    CHECK(sl.take() == Strings{"add default/s00-1", "synced"});
    CHECK(node.take() == Strings{"add node-1", "synced"});
    CHECK(obs.rejected == 1);  // the observer is forwarded too
    CHECK(obs.lists.size() == 3);
    CHECK_FALSE((svc.foreign || sl.foreign || node.foreign));
    // A change while running arrives; after stop() nothing more is posted.
    REQUIRE(t.waitWatches(1));
    t.server->post("objects", svcObj("late", "10.96.2.1"));
    REQUIRE(queue.drainUntil([&] { return !svc.log.empty(); }));
    CHECK(svc.take() == Strings{"add default/late"});
    (*ct)->stop();
    const auto left = queue.size();
    t.server->post("objects", svcObj("after-stop", "10.96.2.2"));
    std::this_thread::sleep_for(300ms);  // a delivery, if any, would be posted by now
    CHECK(queue.size() == left);
    (*ct)->stop();  // idempotent
}

TEST_CASE("ClientThread: the objects of one piece of a response reach the consumer together",
          "[it][thread]") {
    // 200 Services in one page (some 40 KB: a few TLS records). Each object handed over on its
    // own would wake the consumer 200 times; handed over per piece read, a few times.
    It t;
    Strings want;
    for (int i = 0; i < 200; ++i) {
        want.push_back("add default/" + manySvcName(i));
    }
    std::sort(want.begin(), want.end());  // the list's order: by name
    want.push_back("synced");
    t.server->post("objects", "[" + manySvcObjs(200) + "]");
    t.server->post("config", R"({"ignore_limit":true})");
    auto cfg = t.kubeconfig();
    REQUIRE(cfg.has_value());
    // The consumer's executor runs each posted function at once (on the client's thread, which
    // is enough to count hand-overs), so every post is a separate wake-up.
    std::atomic<int> posts{0};
    struct : Recorder<Service> {
        void onSynced() override {
            Recorder<Service>::onSynced();
            done = true;
        }
        std::atomic<bool> done{false};
    } svc;
    auto ct = ClientThread::start(*cfg, t.opts, {&svc, nullptr, nullptr, "", nullptr},
                                  [&](const std::function<void()>& fn) {
                                      ++posts;
                                      fn();
                                  });
    REQUIRE(ct.has_value());
    const auto end = std::chrono::steady_clock::now() + 60s;
    while (!svc.done && std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(10ms);
    }
    (*ct)->stop();  // joins the client's thread: its recording is complete and visible
    CHECK(svc.take() == want);
    INFO("posts: " << posts.load());
    CHECK(posts.load() <= 20);
}

namespace {

// A ClientThread on one list of n Services, with a bound of `bound` calls and a wait slice
// of `slice`, posting to `queue`, which nobody drains yet; returns once the first hand-over is
// posted.
std::unique_ptr<ClientThread> startUndrained(It& t, int n, PostQueue& queue, Recorder<Service>& svc,
                                             std::size_t bound,
                                             std::chrono::milliseconds slice = 30s) {
    t.server->post("objects", "[" + manySvcObjs(n) + "]");
    t.server->post("config", R"({"ignore_limit":true})");
    auto cfg = t.kubeconfig();
    REQUIRE(cfg.has_value());
    auto ct = ClientThread::start(
        *cfg, t.opts, {&svc, nullptr, nullptr, "", nullptr},
        [&](std::function<void()> fn) { queue.post(std::move(fn)); }, bound, slice);
    REQUIRE(ct.has_value());
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (queue.size() == 0 && std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(10ms);
    }
    REQUIRE(queue.size() > 0);
    return std::move(*ct);
}

}  // namespace

TEST_CASE("ClientThread: a consumer that falls behind stops the reading at the bound",
          "[it][thread]") {
    // 2,000 Services in one list (about 400 KB). The consumer takes nothing for a second: the
    // client may decode ahead up to the bound, plus one piece read (a TLS record, at most
    // 16 KB: some 80 of these Services) per wait slice (here 30 s), not the whole list. Then
    // everything arrives, in order.
    It t;
    constexpr int kServices = 2000;
    constexpr std::size_t kBound = 100;
    Strings want;
    for (int i = 0; i < kServices; ++i) {
        want.push_back("add default/" + manySvcName(i));
    }
    std::sort(want.begin(), want.end());
    want.push_back("synced");
    PostQueue queue;
    Recorder<Service> svc;
    auto ct = startUndrained(t, kServices, queue, svc, kBound);
    // 400 KB over loopback takes milliseconds: unbounded, the whole list would be decoded
    // and queued by now, and the first drain would hand over all of it.
    std::this_thread::sleep_for(1s);
    REQUIRE(queue.drainUntil([&] { return !svc.log.empty(); }));
    INFO("delivered by the first drain: " << svc.log.size());
    CHECK(svc.log.size() <= kBound + 2 * 80);
    REQUIRE(queue.drainUntil([&] { return svc.synced; }));
    CHECK(svc.take() == want);
    ct->stop();
}

TEST_CASE("ClientThread: at the bound, a piece per wait slice, up to twice the bound",
          "[it][thread]") {
    // A 100 ms slice and a consumer that takes nothing for a second: the client keeps letting
    // pieces in (at most 16 KB: some 80 Services each) until twice the bound, then stops.
    It t;
    constexpr std::size_t kBound = 100;
    PostQueue queue;
    Recorder<Service> svc;
    auto ct = startUndrained(t, 2000, queue, svc, kBound, 100ms);
    std::this_thread::sleep_for(1s);
    REQUIRE(queue.drainUntil([&] { return !svc.log.empty(); }));
    INFO("delivered by the first drain: " << svc.log.size());
    CHECK(svc.log.size() >= 2 * kBound);
    CHECK(svc.log.size() <= 2 * kBound + 80);
    REQUIRE(queue.drainUntil([&] { return svc.synced; }));
    CHECK(svc.log.size() == 2001);
    ct->stop();
}

TEST_CASE("ClientThread: stop() returns while the client waits for a consumer that is gone",
          "[it][thread]") {
    // The daemon stops its clients from the consumer's own thread, which then no longer
    // drains: a client blocked at the bound must not hold up the join.
    It t;
    PostQueue queue;
    Recorder<Service> svc;
    auto ct = startUndrained(t, 2000, queue, svc, 10);
    std::this_thread::sleep_for(500ms);  // the client reaches the bound and waits
    // The client waits 30 s at a time here; released, stop() does not wait for that.
    auto stopped = std::async(std::launch::async, [&] { ct->stop(); });
    const bool prompt = stopped.wait_for(5s) == std::future_status::ready;
    CHECK(prompt);
    stopped.wait();
}

TEST_CASE("2 steady state: add/update/delete; bookmarks move the RV only", "[it]") {
    It t;
    t.server->post("objects", svcObj("a", "10.96.0.1"));
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    t.svcH.take();
    t.server->post("objects", svcObj("b", "10.96.0.2"));
    t.server->post("objects", svcObj("a", "10.96.0.1", 81));
    t.server->post("objects",
                   svcObj("a", "10.96.0.1", 81, R"({"unrelated":"label"})"));  // no visible change
    t.server->post("delete", R"({"resource":"services","namespace":"default","name":"b"})");
    REQUIRE(t.runUntil([&] { return t.svcH.log.size() >= 3; }));
    // Changes elsewhere move the global RV; the services watch only sees bookmarks for them.
    t.server->post("objects", R"({"kind":"Node","metadata":{"name":"n9"}})");
    const auto target = std::to_string(t.rv());
    // Two more bookmarks: the second was surely computed after the Node write.
    const auto seen = t.observer.events;
    REQUIRE(t.runUntil([&] { return t.observer.events >= seen + 2; }));
    t.server->post("close-watches", R"({"mode":"close"})");
    REQUIRE(t.runUntil([&] { return t.observer.watches.size() >= 2; }));
    CHECK(t.svcH.take() == Strings{"add default/b", "update default/a", "delete default/b"});
    CHECK(t.observer.watches.back() == target);
    CHECK(t.observer.lists.size() == 1);
    CHECK(t.svcH.cache == t.serverServices());
}

TEST_CASE("3+4 endpoints: terminating, nil conditions, dual-stack slices, hints, node zone",
          "[it]") {
    It t;
    t.server->post(
        "objects",
        R"([{"kind":"Service","metadata":{"name":"ds","namespace":"default"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.5","clusterIPs":["10.96.0.5","fd00::5"],"ipFamilies":["IPv4","IPv6"],"ports":[{"name":"http","port":80}]}},)" +
            sliceObj(
                "ds-v4", "ds", "IPv4",
                R"([{"addresses":["10.1.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"node-1","hints":{"forZones":[{"name":"z1"}]}},{"addresses":["10.1.0.2"]}])") +
            "," +
            sliceObj("ds-v6", "ds", "IPv6", R"([{"addresses":["fd00:1::1"],"conditions":{}}])") +
            R"(,{"kind":"Node","metadata":{"name":"node-1","labels":{"topology.kubernetes.io/zone":"z1"}},"spec":{}}])");
    t.connect();
    t.startAll();
    REQUIRE(t.runUntil(
        [&] { return t.services->hasSynced() && t.slices->hasSynced() && t.nodes->hasSynced(); }));
    const auto& svc = t.svcH.cache.at("default/ds");
    REQUIRE(svc.clusterIPs.size() == 2);
    CHECK(svc.clusterIPs[1].toString() == "fd00::5");
    const auto& v4 = t.sliceH.cache.at("default/ds-v4");
    CHECK((!v4.endpoints[0].ready && v4.endpoints[0].serving && v4.endpoints[0].terminating));
    CHECK(v4.endpoints[0].nodeName.view() == "node-1");
    REQUIRE(v4.endpoints[0].hints != nullptr);
    CHECK(v4.endpoints[0].hints->forZones.at(0).view() == t.nodeH.cache.at("node-1").zone);
    CHECK((v4.endpoints[1].ready && v4.endpoints[1].serving && !v4.endpoints[1].terminating));
    const auto& v6 = t.sliceH.cache.at("default/ds-v6");
    CHECK(v6.addressType == AddressType::IPv6);
    CHECK((v6.endpoints.at(0).ready && v6.endpoints[0].serving && !v6.endpoints[0].terminating));
}

TEST_CASE("5 timeout roll-over resumes from the bookmark RV, no 410, no relist", "[it]") {
    It t;
    t.opts.minWatchTimeout = 2s;  // timeoutSeconds 2..3
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    t.server->post("objects", svcObj("a", "10.96.0.1"));
    t.server->post("objects", R"({"kind":"Node","metadata":{"name":"n9"}})");
    REQUIRE(t.runUntil([&] { return t.observer.watches.size() >= 3; }));
    t.server->post("objects", svcObj("b", "10.96.0.2"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == 2; }));
    CHECK(t.svcH.take() == Strings{"synced", "add default/a", "add default/b"});
    CHECK(t.observer.lists.size() == 1);
    CHECK(t.observer.backoffs.empty());
    for (const auto& m : t.observer.messages) {
        CHECK(m.find("410") == std::string::npos);
    }
}

TEST_CASE("6 history gap: compaction while disconnected → 410 → relist with deletions", "[it]") {
    It t;
    t.server->post("objects", "[" + svcObj("a", "10.96.0.1") + "," + svcObj("b", "10.96.0.2") +
                                  "," + svcObj("c", "10.96.0.3") + "]");
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    t.svcH.take();
    REQUIRE(t.runUntil([&] { return t.observer.events >= 1; }));
    t.server->post("config", R"({"bookmark_interval":0})");  // keep the client's RV old
    t.server->post("faults", R"({"match":{"resource":"services","watch":true},"action":"hold"})");
    t.server->post("close-watches", R"({"mode":"reset"})");
    REQUIRE(t.runUntil([&] { return t.observer.watches.size() >= 2; }));
    t.server->post("delete", R"({"resource":"services","namespace":"default","name":"b"})");
    t.server->post("objects", svcObj("a", "10.96.0.1", 8080));
    t.server->post("objects", svcObj("d", "10.96.0.4"));
    t.server->post("compact", "{}");
    t.server->post("release", "{}");
    REQUIRE(t.runUntil([&] { return t.observer.lists.size() >= 2 && t.svcH.log.size() >= 3; }));
    CHECK(t.svcH.take() == Strings{"update default/a", "add default/d", "delete default/b"});
    CHECK(t.svcH.cache == t.serverServices());
    bool saw410 = false;
    for (const auto& m : t.observer.messages) {
        saw410 = saw410 || m.find("410 Expired") != std::string::npos;
    }
    CHECK(saw410);
}

TEST_CASE("7a token rotation: 401 makes the client re-read its token file", "[it][auth]") {
    It t;
    const std::string tokenFile = tlsDir() + "/rotating-token";
    std::ofstream(tokenFile) << "t1\n";
    t.connect([&] {
        auto cfg = t.kubeconfig();
        cfg->token.clear();
        cfg->tokenFile = tokenFile;
        return *cfg;
    }());
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    std::ofstream(tokenFile) << "t2\n";
    t.server->post("config", R"({"tokens":["t2"]})");
    t.server->post("close-watches", R"({"mode":"close"})");
    t.server->post("objects", svcObj("after", "10.96.0.9"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.count("default/after") == 1; }));
    bool saw401 = false;
    for (const auto& m : t.observer.messages) {
        saw401 = saw401 || m.find("401") != std::string::npos;
    }
    CHECK(saw401);
    auto reqs = t.requests();
    CHECK(reqs.back().at("headers").at("Authorization").as_string() == "Bearer t2");
}

TEST_CASE("7b TLS: wrong CA and wrong server name are refused; mTLS works", "[it][tls]") {
    {
        It t;
        auto cfg = t.kubeconfig();
        REQUIRE(cfg.has_value());
        std::ifstream in(tlsDir() + "/other-ca.crt");
        cfg->caPem.assign(std::istreambuf_iterator<char>(in), {});
        t.connect(*cfg);
        t.startServices();
        REQUIRE(t.runUntil([&] { return t.observer.requestErrors >= 1; }));
        CHECK_FALSE(t.services->hasSynced());
        CHECK(t.observer.messages.back().find("certificate verify") != std::string::npos);
    }
    {
        It t({"--serve-cert", "wrong-san"});
        t.connect();
        t.startServices();
        REQUIRE(t.runUntil([&] { return t.observer.requestErrors >= 1; }));
        CHECK_FALSE(t.services->hasSynced());
        CHECK(t.observer.messages.back().find("TLS") != std::string::npos);
        // The same server, checked under a name its certificate holds, is accepted.
        auto cfg = t.kubeconfig();
        cfg->tlsServerName = "wrong.example";
        Recorder<Service> h;
        CountingObserver o;
        auto c = Client::create(t.ioc, *cfg, t.opts, &o);
        REQUIRE(c.has_value());
        auto inf = (*c)->watchServices(h);
        inf->start();
        CHECK(t.runUntil([&] { return inf->hasSynced(); }));
    }
    {
        It t({"--client-cert-auth"});
        t.server->post("config", R"({"tokens":[]})");
        t.server->post("config", R"({"tokens":["unused"],"client_cert_auth":true})");
        auto cfg = t.kubeconfig("kubeconfig-cert.yaml");
        REQUIRE(cfg.has_value());
        CHECK(cfg->token.empty());
        t.connect(*cfg);
        t.startServices();
        CHECK(t.runUntil([&] { return t.services->hasSynced(); }));
    }
}

namespace {

// Installs the fake server's pair `from` ("client", "other-ca") as NAME.crt and NAME.key,
// replacing the files in place as a certificate rotation does.
void installPair(const std::string& from, const std::string& name) {
    for (const char* ext : {".crt", ".key"}) {
        std::filesystem::copy_file(tlsDir() + "/" + from + ext, tlsDir() + "/" + name + ext,
                                   std::filesystem::copy_options::overwrite_existing);
    }
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), {}};
}

// The client-certificate kubeconfig, with its pair read from NAME.crt and NAME.key.
ClientConfig certConfig(It& t, const std::string& name) {
    auto cfg = t.kubeconfig("kubeconfig-cert.yaml");
    REQUIRE(cfg.has_value());
    cfg->clientCertFile = tlsDir() + "/" + name + ".crt";
    cfg->clientKeyFile = tlsDir() + "/" + name + ".key";
    cfg->clientCertPem = slurp(cfg->clientCertFile);
    cfg->clientKeyPem = slurp(cfg->clientKeyFile);
    return *cfg;
}

}  // namespace

TEST_CASE("7c mTLS: rotated client certificate files are used without a restart", "[it][tls]") {
    It t({"--client-cert-auth"});
    t.server->post("config", R"({"tokens":["unused"],"client_cert_auth":true})");
    // The loader remembers where the pair came from.
    const auto loaded = t.kubeconfig("kubeconfig-cert.yaml");
    REQUIRE(loaded.has_value());
    CHECK(loaded->clientCertFile == tlsDir() + "/client.crt");
    CHECK(loaded->clientKeyFile == tlsDir() + "/client.key");
    // Files that first hold a pair the server does not trust (another CA's), as an expired
    // certificate would be refused.
    installPair("other-ca", "rotating");
    t.connect(certConfig(t, "rotating"));
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.observer.requestErrors >= 1; }));
    CHECK_FALSE(t.services->hasSynced());
    // The pair is rotated in place: the next connection reads it again and is accepted.
    installPair("client", "rotating");
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));

    // Rotated again, to a pair the server refuses: the next watch's connection presents it.
    const int errors = t.observer.requestErrors;
    installPair("other-ca", "rotating");
    t.server->post("close-watches", R"({"mode":"close"})");
    CHECK(t.runUntil([&] { return t.observer.requestErrors > errors; }));
}

TEST_CASE("7d mTLS: an idle connection made with a replaced certificate is not reused",
          "[it][tls]") {
    // The API server checks the client certificate on every request, so a pooled connection
    // made with a pair since replaced (an expired one) must not carry the next request.
    It t({"--client-cert-auth"});
    t.server->post("config", R"({"tokens":["unused"],"client_cert_auth":true})");
    installPair("client", "pooled");
    auto transport = makeHttpTransport(t.ioc, certConfig(t, "pooled"));
    REQUIRE(transport.has_value());
    struct Sink final : ResponseSink {
        int status = 0;
        bool done = false;
        std::string error;
        void onHead(const HttpResponseHead& h) override { status = h.status; }
        void onData(std::string_view /*bytes*/) override {}
        void onDone(const TransportError* e) override {
            done = true;
            error = e != nullptr ? e->message : "";
        }
    };
    const auto get = [&] {
        auto sink = std::make_shared<Sink>();
        auto handle = (*transport)->get({"/api/v1/namespaces/default/services", {}}, sink);
        REQUIRE(t.runUntil([&] { return sink->done; }));
        return sink;
    };
    const auto first = get();
    CHECK(first->status == 200);
    CHECK(first->error.empty());
    installPair("other-ca", "pooled");  // a pair the server refuses
    const auto second = get();
    CHECK(second->status != 200);
    CHECK_FALSE(second->error.empty());
}

TEST_CASE("8 throttling: 429 JSON and text with Retry-After, 429 on watch without", "[it]") {
    It t;
    t.server->post(
        "faults",
        R"([{"match":{"resource":"services","watch":false},"action":"status","status":429,"retry_after":1,"count":1},
                       {"match":{"resource":"services","watch":false},"action":"status","status":429,"retry_after":1,"content_type":"text","count":1},
                       {"match":{"resource":"services","watch":false},"action":"status","status":503,"retry_after":1,"count":1},
                       {"match":{"resource":"services","watch":true},"action":"status","status":429,"content_type":"text","count":1}])");
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    CHECK(t.observer.retries == 3);
    REQUIRE(t.waitWatches(1));
    CHECK(t.observer.lists.size() == 1);  // the watch's 429 re-watched at the same RV
    CHECK(t.observer.watches.size() == 2);
    CHECK(t.observer.watches[0] == t.observer.watches[1]);
}

TEST_CASE("9 stream corruption and resets", "[it][stream]") {
    struct Case {
        std::string then;
        bool relist;
    };
    const Case c = GENERATE(Case{"reset", false}, Case{"partial", true}, Case{"garbled", true},
                            Case{"unknown_type", true}, Case{"wrong_kind", false});
    It t;
    t.server->post("config", R"({"chunk_split":7})");  // FS-41: every event over many chunks
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    REQUIRE(t.runUntil([&] { return t.observer.events >= 1; }));
    t.server->post(
        "faults",
        R"({"match":{"resource":"services","watch":true},"action":"stream","after_events":1,"then":")" +
            c.then + R"("})");
    // The fault applies to the next watch: end the current one.
    t.server->post("close-watches", R"({"mode":"close"})");
    REQUIRE(t.runUntil([&] { return t.observer.watches.size() >= 2; }));
    REQUIRE(t.waitWatches(1));
    // A bookmark first, so that a reset right after is not a "very short watch".
    const auto seen = t.observer.events;
    REQUIRE(t.runUntil([&] { return t.observer.events > seen; }));
    t.server->post("objects", svcObj("a", "10.96.0.1"));
    t.server->post("objects", svcObj("b", "10.96.0.2"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == 2; }));
    t.server->post("objects", svcObj("c", "10.96.0.3"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == 3; }));
    // No event lost, none duplicated, nothing half-applied.
    CHECK(t.svcH.take() == Strings{"synced", "add default/a", "add default/b", "add default/c"});
    std::string all;
    for (const auto& m : t.observer.messages) {
        all += m + " | ";
    }
    INFO(c.then + ": " + all);
    CHECK((t.observer.lists.size() > 1) == c.relist);
    CHECK(t.svcH.cache == t.serverServices());
    if (c.then == "wrong_kind") {
        CHECK(t.observer.skipped == 1);
    }
}

TEST_CASE("10 label-selector transitions: service-proxy-name → DELETED, removed → ADDED", "[it]") {
    It t;
    t.server->post("objects", svcObj("x", "10.96.0.1"));
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    t.server->post("objects", svcObj("x", "10.96.0.1", 80,
                                     R"({"service.kubernetes.io/service-proxy-name":"other"})"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.empty(); }));
    t.server->post("objects", svcObj("x", "10.96.0.1"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == 1; }));
    CHECK(t.svcH.take() == Strings{"add default/x", "synced", "delete default/x", "add default/x"});
}

TEST_CASE("11 pagination, and 410 on a continue page → one full list", "[it]") {
    It t;
    std::string items = "[";
    for (int i = 0; i < 1200; ++i) {
        items += (i ? "," : "") +
                 svcObj("s" + std::to_string(i),
                        "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
    }
    t.server->post("objects", items + "]");
    t.server->post(
        "faults",
        R"({"match":{"resource":"services","query":"continue="},"action":"status","status":410,"reason":"Expired","count":1,"message":"The provided continue parameter is too old"})");
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    CHECK(t.svcH.cache.size() == 1200);
    CHECK(t.svcH.log.size() == 1201);
    auto reqs = t.requests();
    REQUIRE(reqs.size() >= 3);
    CHECK(std::string(reqs[1].at("query").as_string()).find("continue=") != std::string::npos);
    CHECK(std::string(reqs[1].at("query").as_string()).find("resourceVersion") ==
          std::string::npos);
    CHECK(std::string(reqs[2].at("query").as_string()).find("limit") == std::string::npos);
    CHECK(t.svcH.cache == t.serverServices());
}

TEST_CASE("12 watch-list on, and off (422 → list+watch)", "[it][watchlist]") {
    {
        It t({}, true);
        t.server->post("objects", svcObj("a", "10.96.0.1"));
        t.connect();
        t.startServices();
        REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
        CHECK(t.svcH.take() == Strings{"add default/a", "synced"});
        auto reqs = t.requests();
        REQUIRE(reqs.size() == 1);
        CHECK(std::string(reqs[0].at("query").as_string()).find("sendInitialEvents=true") !=
              std::string::npos);
        t.server->post("objects", svcObj("b", "10.96.0.2"));
        REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == 2; }));
    }
    {
        It t({"--no-watchlist"}, true);
        t.server->post("objects", svcObj("a", "10.96.0.1"));
        t.connect();
        t.startServices();
        REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
        CHECK(t.observer.fallbacks == 1);
        CHECK(t.svcH.take() == Strings{"add default/a", "synced"});
        REQUIRE(t.waitWatches(1));
        t.server->post(
            "faults",
            R"({"match":{"resource":"services","watch":true},"action":"stream","after_events":0,"then":"error_410"})");
        t.server->post("close-watches", R"({"mode":"close"})");
        REQUIRE(t.runUntil([&] { return t.observer.lists.size() >= 3; }));
        REQUIRE(t.waitWatches(1));
        auto reqs = t.requests();
        int watchLists = 0;
        for (auto& r : reqs) {
            watchLists += std::string(r.at("query").as_string()).find("sendInitialEvents") !=
                          std::string::npos;
        }
        CHECK(watchLists == 1);  // the 422 is remembered
    }
}

TEST_CASE("FS-43/FS-33 no response headers or a reset: the request is retried", "[it]") {
    It t;
    t.opts.headerTimeout = 1s;
    t.server->post(
        "faults",
        R"([{"match":{"resource":"services","watch":false},"action":"no_headers","timeout":5,"count":1},
                                 {"match":{"resource":"services","watch":false},"action":"reset","count":1}])");
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    CHECK(t.observer.retries == 2);
}

TEST_CASE("FS-20/27 403 on one resource: backoff and retry, others unaffected", "[it]") {
    It t;
    t.server->post("config", R"({"forbidden":["endpointslices"]})");
    t.connect();
    t.startAll();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced() && t.observer.backoffs.size() >= 2; }));
    CHECK_FALSE(t.slices->hasSynced());
    t.server->post("config", R"({"forbidden":[]})");
    CHECK(t.runUntil([&] { return t.slices->hasSynced(); }));
}

TEST_CASE("FS-42 a silent watch is not reconnected before timeoutSeconds", "[it]") {
    It t;
    t.opts.minWatchTimeout = 2s;
    t.connect();
    t.server->post("config", R"({"bookmark_interval":0})");
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.observer.watches.size() >= 3; }));
    CHECK(t.observer.requestErrors == 0);
    CHECK(t.observer.lists.size() == 1);
}

TEST_CASE("connections to the API server have TCP keepalive on", "[it]") {
    // A watch is quiet for minutes; without keepalive an API server that vanished without a
    // reset would go unnoticed until the watch's idle deadline.
    It t;
    t.connect();
    t.startServices();
    REQUIRE(t.waitWatches(1));
    int checked = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        const int fd = std::stoi(entry.path().filename().string());
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
            peer.ss_family != AF_INET ||
            ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port) != t.server->port) {
            continue;
        }
        auto opt = [&](int level, int name) {
            int v = -1;
            socklen_t l = sizeof v;
            REQUIRE(getsockopt(fd, level, name, &v, &l) == 0);
            return v;
        };
        CHECK(opt(SOL_SOCKET, SO_KEEPALIVE) == 1);
        CHECK(opt(IPPROTO_TCP, TCP_KEEPIDLE) == 30);
        CHECK(opt(IPPROTO_TCP, TCP_KEEPINTVL) == 10);
        CHECK(opt(IPPROTO_TCP, TCP_KEEPCNT) == 3);
        ++checked;
    }
    CHECK(checked >= 1);  // the watch's connection at least
}

TEST_CASE("in-band ERROR events and clean early close", "[it][stream]") {
    struct Case {
        std::string then;
        bool relist;
    };
    const Case c = GENERATE(Case{"error_410", true}, Case{"error_gone", true},
                            Case{"error_500", true}, Case{"close", false});
    It t;
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    REQUIRE(t.runUntil([&] { return t.observer.events >= 1; }));
    t.server->post(
        "faults",
        R"({"match":{"resource":"services","watch":true},"action":"stream","after_events":1,"then":")" +
            c.then + R"("})");
    t.server->post("close-watches", R"({"mode":"close"})");
    REQUIRE(t.runUntil([&] { return t.observer.watches.size() >= 2; }));
    t.server->post("objects", svcObj("a", "10.96.0.1"));
    t.server->post("objects", svcObj("b", "10.96.0.2"));
    REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == 2; }));
    CHECK(t.svcH.take() == Strings{"synced", "add default/a", "add default/b"});
    CHECK((t.observer.lists.size() > 1) == c.relist);
    if (c.then == "error_410" || c.then == "error_gone") {
        // Expired: the relist asks for the last RV ("not older than"), not a consistent read.
        REQUIRE(t.observer.lists.size() >= 2);
        CHECK_FALSE(t.observer.lists[1].empty());
        CHECK(t.observer.lists[1] != "0");
    }
}

TEST_CASE("FS-32 504 too-large RV: retried with Retry-After, then relist at RV \"\"", "[it]") {
    It t;
    t.opts.maxRetries = 2;
    t.server->post(
        "faults",
        R"({"match":{"resource":"services","watch":false},"action":"status","preset":"too_large_rv","count":3})");
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    CHECK(t.observer.retries == 2);
    CHECK(t.observer.lists == Strings{"0", ""});
}

TEST_CASE("FS-24 410 on a relist with RV → next list at RV \"\"", "[it]") {
    It t;
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    REQUIRE(t.runUntil([&] { return t.observer.events >= 1; }));
    t.server->post(
        "faults",
        R"([{"match":{"resource":"services","watch":true},"action":"stream","then":"error_500"},
        {"match":{"resource":"services","watch":false},"action":"status","status":410,"reason":"Expired","message":"The resourceVersion for the provided list is too old."}])");
    t.server->post("close-watches", R"({"mode":"close"})");
    REQUIRE(
        t.runUntil([&] { return t.observer.lists.size() >= 3 && t.observer.watches.size() >= 3; }));
    CHECK(t.observer.lists[2].empty());
    CHECK_FALSE(t.observer.lists[1].empty());
}

TEST_CASE("plain HTTP server via --master", "[it]") {
    FakeServer server({"--control-port", "0"});
    server.post("objects", svcObj("a", "10.96.0.1"));
    boost::asio::io_context ioc;
    auto cfg = resolveClientConfig("", "http://127.0.0.1:" + std::to_string(server.port));
    REQUIRE(cfg.has_value());
    ClientOptions opts;
    auto c = Client::create(ioc, *cfg, opts);
    REQUIRE(c.has_value());
    Recorder<Service> h;
    auto inf = (*c)->watchServices(h);
    inf->start();
    const auto end = std::chrono::steady_clock::now() + 30s;
    while (!inf->hasSynced() && std::chrono::steady_clock::now() < end) {
        ioc.restart();
        ioc.run_for(5ms);
    }
    CHECK(h.take() == Strings{"add default/a", "synced"});
}

// Issue 7, scenario 2 at the client level: 1,000 fault cycles, each a fault rule at some
// point of the list/watch stream (in-band 410s, resets mid-event, garbled and partial lines,
// 429/5xx with Retry-After, failing relists) while a Service is added, changed or deleted.
// After every cycle the consumer saw exactly that one change (nothing lost, nothing
// duplicated) and its cache equals the server's; the process' RSS does not grow from cycle
// 100 to the end. Hidden ([.]): run on its own as `integration-k8s-client-cycles`.
TEST_CASE("1,000 fault cycles: no lost or duplicated change, no memory growth", "[.cycles][it]") {
    It t;
    t.opts.backoff.initial = 5ms;
    t.opts.backoff.cap = 20ms;
    t.opts.qps = 0;  // lists are not what is measured here
    t.connect();
    t.startServices();
    REQUIRE(t.runUntil([&] { return t.services->hasSynced(); }));
    REQUIRE(t.waitWatches(1));
    t.svcH.take();

    std::vector<std::pair<std::string, std::string>> kinds;  // label, rules (JSON list)
    const std::string watch = R"({"resource":"services","watch":true})";
    const std::string list = R"({"resource":"services","watch":false})";
    for (const char* then : {"reset", "close", "partial", "garbled", "error_410", "error_gone",
                             "error_500", "unknown_type", "wrong_kind"}) {
        for (int k : {0, 1, 2}) {
            kinds.emplace_back(std::string("stream ") + then + " after " + std::to_string(k),
                               R"([{"match":)" + watch +
                                   R"(,"action":"stream","count":1,"after_events":)" +
                                   std::to_string(k) + R"(,"then":")" + then + R"("}])");
        }
    }
    const std::string force410 =
        R"({"match":)" + watch +
        R"(,"action":"stream","count":1,"after_events":0,"then":"error_410"})";
    kinds.emplace_back("relist 410",
                       "[" + force410 + R"(,{"match":)" + list +
                           R"(,"action":"status","count":1,"status":410,"reason":"Expired"}])");
    kinds.emplace_back("relist reset", "[" + force410 + R"(,{"match":)" + list +
                                           R"(,"action":"reset","count":1}])");
    kinds.emplace_back("watch reset before headers",
                       R"([{"match":)" + watch + R"(,"action":"reset","count":1}])");
    // With Retry-After (1 s each): every 25th cycle only, to keep the run short.
    std::vector<std::pair<std::string, std::string>> throttled;
    for (const auto& [status, reason] : std::vector<std::pair<int, std::string>>{
             {429, "TooManyRequests"}, {500, "InternalError"}, {503, "ServiceUnavailable"}}) {
        throttled.emplace_back("relist " + std::to_string(status) + " Retry-After",
                               "[" + force410 + R"(,{"match":)" + list +
                                   R"(,"action":"status","count":1,"retry_after":1,"status":)" +
                                   std::to_string(status) + R"(,"reason":")" + reason + "\"}]");
    }
    throttled.emplace_back(
        "watch 429 Retry-After",
        R"([{"match":)" + watch +
            R"(,"action":"status","count":1,"retry_after":1,"status":429,"reason":"TooManyRequests"}])");

    auto rssKiB = [] {
        std::ifstream f("/proc/self/status");
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("VmRSS:", 0) == 0) {
                return std::stol(line.substr(6));
            }
        }
        return 0L;
    };
    auto allFired = [&] {
        const auto faults = t.server->control("GET", "faults");
        for (const auto& f : faults.at("faults").as_array()) {
            if (f.at("count").as_int64() != 0) {
                return false;
            }
        }
        return true;
    };
    constexpr int kCycles = 1000;
    std::map<std::string, int> present;  // name -> port
    long rssWarm = 0;
    std::size_t lists = 0;
    for (int i = 0; i < kCycles; ++i) {
        const auto& kind = i % 25 == 24
                               ? throttled[static_cast<std::size_t>(i / 25) % throttled.size()]
                               : kinds[static_cast<std::size_t>(i) % kinds.size()];
        t.server->post("faults", kind.second);
        t.server->post("close-watches", R"({"mode":"close"})");
        // One change per cycle: add, change the port of, or delete one of 20 Services.
        const std::string name = "s" + std::to_string((i * 7) % 20);
        std::string want;
        if (present.count(name) == 0) {
            present[name] = 80;
            t.server->post("objects", svcObj(name, "10.96.1." + std::to_string((i * 7) % 20 + 1)));
            want = "add default/" + name;
        } else if (i % 3 != 0) {
            const int port = present[name] = present[name] == 80 ? 81 : 80;
            t.server->post("objects",
                           svcObj(name, "10.96.1." + std::to_string((i * 7) % 20 + 1), port));
            want = "update default/" + name;
        } else {
            present.erase(name);
            t.server->post("delete", R"({"resource":"services","namespace":"default","name":")" +
                                         name + "\"}");
            want = "delete default/" + name;
        }
        INFO("cycle " << i << ": " << kind.first << ", " << want);
        REQUIRE(t.runUntil([&] { return allFired() && !t.svcH.log.empty(); }));
        REQUIRE(t.waitWatches(1));
        REQUIRE(t.runUntil([&] { return t.svcH.cache.size() == present.size(); }));
        auto log = t.svcH.take();
        std::erase(log, "synced");
        REQUIRE(log == Strings{want});
        REQUIRE(t.svcH.cache == t.serverServices());
        t.server->control("DELETE", "faults");
        lists += t.observer.lists.size();
        t.observer.lists.clear();
        t.observer.watches.clear();
        t.observer.messages.clear();
        t.observer.backoffs.clear();
        if (i == 99) {
            rssWarm = rssKiB();
        }
    }
    const long rssEnd = rssKiB();
    std::cerr << "# 1,000 fault cycles: " << lists << " lists; RSS at cycle 100 " << rssWarm
              << " KiB, at the end " << rssEnd << " KiB\n";
    CHECK(lists >= kCycles / 4);
    // A leak of even 1 KiB per cycle would show as 900 KiB here.
    CHECK(rssEnd - rssWarm < 512);
}
