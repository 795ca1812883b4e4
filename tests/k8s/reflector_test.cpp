// The reflector and request layer against a scripted transport on a fake clock: exact
// requests, exact consumer callbacks, and every wait measured on the injected clock.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>

#include "k8s-client/client.h"
#include "tests/k8s/fake_transport.h"
#include "tests/k8s/test_util.h"

using namespace kipvs::k8s;
using namespace kipvs::k8s::testing;
using namespace std::chrono_literals;
using Strings = std::vector<std::string>;

namespace {

struct Rig {
    explicit Rig(bool watchList = false, double rnd = 0.25) {
        opts.watchList = watchList;
        opts.version = "1.2.3";
        cfg.token = "static-token";
        Client::Environment env;
        env.transport = transport;
        env.clock = clock;
        env.random = [rnd] { return rnd; };
        env.readFile = [this](const std::string& path) -> kipvs::Result<std::string> {
            ++fileReads;
            if (path == "/token") {
                return tokenFileContent;
            }
            return kipvs::Error::invalid("no file " + path);
        };
        cfgTokenFile();
        client = std::make_unique<Client>(std::move(env), cfg, opts, &observer);
    }
    void cfgTokenFile() {}

    void start() {
        informer = client->watchServices(handler);
        informer->start();
    }

    FakeTransport::Pending& req() { return transport->last(); }

    // Answers the pending list with `items` at `rv`, then returns the watch request.
    FakeTransport::Pending& list(const std::string& rv, const Strings& items) {
        req().respond(200, listJson("Service", rv, items));
        return req();
    }

    std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
    std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
    ClientConfig cfg;
    ClientOptions opts;
    std::string tokenFileContent = "file-token\n";
    int fileReads = 0;
    Recorder<Service> handler;
    CountingObserver observer;
    std::unique_ptr<Client> client;
    std::unique_ptr<Informer<Service>> informer;
};

}  // namespace

TEST_CASE("initial list then watch: requests and callbacks", "[reflector]") {
    Rig r;
    r.start();
    REQUIRE(r.transport->count() == 1);
    auto& l = r.req();
    CHECK(l.path() == "/api/v1/services");
    CHECK(l.request.target ==
          "/api/v1/services?labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service."
          "kubernetes.io%2Fservice-proxy-name&limit=500&resourceVersion=0");
    CHECK(l.header("Accept") == "application/json");
    CHECK(l.header("User-Agent") == "kube-ipvs/1.2.3 (linux/amd64)");
    CHECK(l.header("Authorization") == "Bearer static-token");
    CHECK_FALSE(r.informer->hasSynced());

    auto& w = r.list("100", {svcJson("a", "90"), svcJson("b", "95")});
    CHECK(r.handler.take() == Strings{"add default/a", "add default/b", "synced"});
    CHECK(r.informer->hasSynced());
    CHECK(w.param("watch") == "true");
    CHECK(w.param("resourceVersion") == "100");
    CHECK(w.param("allowWatchBookmarks") == "true");
    CHECK(w.param("timeoutSeconds") == "375");  // 300 * (1 + 0.25)
    CHECK(w.param("labelSelector") ==
          "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name");
    CHECK_FALSE(w.has("limit"));

    w.head(200);
    w.data(svcEvent("ADDED", "c", "101") + svcEvent("MODIFIED", "a", "102", "10.96.0.10", 81));
    // An update that changes nothing the consumer sees is not delivered.
    w.data(svcEvent("MODIFIED", "b", "103"));
    w.data(svcEvent("DELETED", "b", "104"));
    w.data(bookmark("110"));
    CHECK(r.handler.take() == Strings{"add default/c", "update default/a", "delete default/b"});
    CHECK(r.handler.cache.at("default/a").ports.at(0).port == 81);

    // A clean close (server timeout) re-watches at once from the bookmark's RV: no timer.
    r.clock->advance(10s);
    w.end();
    auto& w2 = r.req();
    CHECK(&w2 != &w);
    CHECK(w2.param("resourceVersion") == "110");
    CHECK(r.observer.lists == Strings{"0"});
    CHECK(r.observer.backoffs.empty());
}

TEST_CASE("an event split across chunks and several events in one chunk", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("10", {});
    r.handler.take();
    w.head(200);
    const std::string both = svcEvent("ADDED", "x", "11") + svcEvent("ADDED", "y", "12");
    for (char c : both) {
        w.data(std::string(1, c));
    }
    CHECK(r.handler.take() == Strings{"add default/x", "add default/y"});
}

TEST_CASE("an event bigger than the reused parse arena is decoded whole, as are those around it",
          "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("10", {});
    r.handler.take();
    w.head(200);
    // 3,000 ports: 170 KB of JSON, more than twice the 64 KiB the reflector reuses for
    // each event's tree, so its parse continues on the heap.
    std::string ports;
    for (int i = 0; i < 3000; ++i) {
        ports += std::string(i ? "," : "") + R"({"name":"port-number-)" + std::to_string(i) +
                 R"(","protocol":"TCP","port":)" + std::to_string(1000 + i) + "}";
    }
    const std::string big =
        R"({"kind":"Service","apiVersion":"v1","metadata":{"name":"big","namespace":"default",)"
        R"("resourceVersion":"12"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.50",)"
        R"("ports":[)" +
        ports + "]}}";
    REQUIRE(big.size() > 2 * 64 * 1024);
    w.data(svcEvent("ADDED", "a", "11", "10.96.0.11", 81) + event("ADDED", big) +
           svcEvent("ADDED", "c", "13", "10.96.0.13", 83));
    CHECK(r.handler.take() == Strings{"add default/a", "add default/big", "add default/c"});
    const auto& got = r.handler.cache.at("default/big").ports;
    REQUIRE(got.size() == 3000);
    CHECK(got.front().name == "port-number-0");
    CHECK(got.back().port == 3999);
    CHECK(r.handler.cache.at("default/a").ports.at(0).port == 81);
    CHECK(r.handler.cache.at("default/c").ports.at(0).port == 83);
}

TEST_CASE("410 in-band: backoff, relist at the last RV, set-based diff", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {svcJson("keep", "1"), svcJson("change", "2"), svcJson("gone", "3")});
    r.handler.take();
    w.head(200);
    w.data(bookmark("150"));
    w.data(event("ERROR", statusJson(410, "Expired", "too old resource version: 150 (200)")));
    // No request until the backoff (0.8 s * (1 + 0.25 jitter) = 1 s) has passed.
    REQUIRE(r.observer.backoffs.size() == 1);
    CHECK(r.observer.backoffs[0] == Approx(1.0));
    const auto before = r.transport->count();
    r.clock->advance(999ms);
    CHECK(r.transport->count() == before);
    r.clock->advance(1ms);
    REQUIRE(r.transport->count() == before + 1);
    auto& l = r.req();
    CHECK(l.param("resourceVersion") == "150");
    CHECK_FALSE(l.has("limit"));  // RV "N": no paging
    r.list("300",
           {svcJson("change", "250", "10.96.0.99"), svcJson("keep", "1"), svcJson("new", "260")});
    CHECK(r.handler.take() ==
          Strings{"update default/change", "add default/new", "delete default/gone"});
    CHECK(r.handler.synced == 1);  // onSynced only once
    CHECK(r.req().param("resourceVersion") == "300");
}

TEST_CASE("an object no relist listed is deleted by the next complete one, past 65,535 failures",
          "[reflector]") {
    // Each delivered object carries the mark of the last replace (list) that listed it; the
    // marks are 16 bits, and come round again after 65,535 replaces.
    Rig r;
    r.start();
    auto& w = r.list("100", {svcJson("a", "1"), svcJson("b", "2")});
    r.handler.take();
    w.head(200);
    w.data(event("ERROR", statusJson(500, "InternalError", "watch failed")));
    // 65,534 relists fail before any object arrives: b keeps the first list's mark.
    for (int i = 0; i < 65534; ++i) {
        r.clock->advance(r.clock->nextDue());
        REQUIRE(r.req().param("watch") == "<absent>");
        r.req().respond(500, statusJson(500, "InternalError", "list failed"));
    }
    REQUIRE(r.handler.log.empty());
    // The 65,535th relist since the first list completes, without b.
    r.clock->advance(r.clock->nextDue());
    r.list("200", {svcJson("a", "1")});
    CHECK(r.handler.take() == Strings{"delete default/b"});
}

TEST_CASE("410 on the relist list: relist at once at RV \"\" (consistent read)", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {svcJson("a", "1")});
    w.head(200);
    w.end();  // immediate re-watch? no: very short watch (0 events, < 1 s)
    r.clock->advance(1s);
    auto& l = r.req();
    CHECK(l.param("resourceVersion") == "100");
    const auto backoffs = r.observer.backoffs;
    l.respond(410,
              statusJson(410, "Expired", "The resourceVersion for the provided list is too old."));
    // No backoff step first, as client-go's list() retries at once.
    CHECK(r.observer.backoffs == backoffs);
    auto& l2 = r.req();
    CHECK(!l2.has("resourceVersion"));
    CHECK(l2.param("limit") == "500");
    CHECK(r.observer.lists == Strings{"0", "100", ""});
}

TEST_CASE("paging: continue pages carry only continue+limit; 410 on continue → one full list",
          "[reflector]") {
    Rig r;
    r.start();
    r.req().respond(200, listJson("Service", "50", {svcJson("a", "1")}, "tok1"));
    auto& p2 = r.req();
    CHECK(p2.param("continue") == "tok1");
    CHECK(p2.param("limit") == "500");
    CHECK_FALSE(p2.has("resourceVersion"));
    // Objects go out as pages arrive; deletions and onSynced wait for the last page.
    CHECK(r.handler.take() == Strings{"add default/a"});
    p2.respond(410, statusJson(410, "Expired", "The provided continue parameter is too old"));
    auto& full = r.req();
    CHECK_FALSE(full.has("limit"));
    CHECK_FALSE(full.has("continue"));
    // Page 1 went out: at RV "0" another API server's older cache could take "a" back.
    CHECK_FALSE(full.has("resourceVersion"));
    full.respond(200, listJson("Service", "60", {svcJson("a", "1"), svcJson("b", "2")}));
    CHECK(r.handler.take() == Strings{"add default/b", "synced"});
    CHECK(r.req().param("resourceVersion") == "60");
}

TEST_CASE("stream corruption: garbled line, unknown type and partial line relist", "[reflector]") {
    const std::string bad = GENERATE(std::string(R"({"type":"ADDED","object":{]})") + "\n",
                                     std::string(R"({"type":"FOO","object":{}})") + "\n",
                                     std::string(R"({"type":"MODIFIED","object":{"kind":)"));
    Rig r;
    r.start();
    auto& w = r.list("100", {svcJson("a", "1")});
    r.handler.take();
    w.head(200);
    w.data(svcEvent("MODIFIED", "a", "101", "10.96.0.10", 90) + bad);
    if (bad.back() != '\n') {
        w.end();  // partial line at the end of the stream
    }
    CHECK(r.handler.take() == Strings{"update default/a"});  // nothing half-applied
    REQUIRE(r.observer.backoffs.size() == 1);
    r.clock->advance(r.clock->nextDue());
    CHECK(r.req().param("watch") == "<absent>");
    CHECK(r.req().param("resourceVersion") == "101");
    r.list("120", {svcJson("a", "101", "10.96.0.10", 90)});
    CHECK(r.handler.take().empty());  // unchanged: no callback
}

// client-go frames a watch body as a sequence of JSON values, not lines.
TEST_CASE("several events on one line and a last event without its newline are applied",
          "[reflector]") {
    const auto unterminated = [](std::string ev) {
        ev.pop_back();
        return ev;
    };
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    r.handler.take();
    w.head(200);
    r.clock->advance(5s);
    w.data(unterminated(svcEvent("ADDED", "a", "101")) +
           unterminated(svcEvent("ADDED", "b", "102")) + " " + svcEvent("ADDED", "c", "103"));
    CHECK(r.handler.take() == Strings{"add default/a", "add default/b", "add default/c"});
    w.data(unterminated(svcEvent("ADDED", "d", "104")));
    CHECK(r.handler.take().empty());  // not known to be complete before the stream ends
    w.end();
    CHECK(r.handler.take() == Strings{"add default/d"});
    CHECK(r.observer.backoffs.empty());
    auto& w2 = r.req();
    CHECK(w2.param("watch") == "true");
    CHECK(w2.param("resourceVersion") == "104");
    CHECK(r.observer.lists.size() == 1);
}

TEST_CASE("a watch-list whose bookmark ends the stream without a newline is complete",
          "[reflector][watchlist]") {
    Rig r(true);
    r.start();
    auto& w = r.req();
    w.head(200);
    std::string end = bookmark("8", "Service", true);
    end.pop_back();
    w.data(svcEvent("ADDED", "a", "5") + end);
    CHECK(r.handler.take() == Strings{"add default/a"});
    r.clock->advance(10s);
    w.end();
    CHECK(r.handler.take() == Strings{"synced"});
    CHECK(r.observer.fallbacks == 0);
    CHECK(r.req().param("resourceVersion") == "8");
}

TEST_CASE("an event followed by garbage on its line is applied, then the stream relists",
          "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    r.handler.take();
    w.head(200);
    std::string ev = svcEvent("ADDED", "a", "101");
    ev.pop_back();
    w.data(ev + "{\"type\":\n");
    CHECK(r.handler.take() == Strings{"add default/a"});
    REQUIRE(r.observer.backoffs.size() == 1);
    REQUIRE(r.observer.requestErrors == 1);
    CHECK_THAT(r.observer.messages.back(), Catch::Contains("unable to decode an event"));
}

TEST_CASE("an event of the wrong kind is skipped and the watch goes on", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    w.head(200);
    w.data(event(
        "ADDED",
        R"({"kind":"Node","apiVersion":"v1","metadata":{"name":"n1","resourceVersion":"101"}})"));
    w.data(svcEvent("ADDED", "a", "102"));
    CHECK(r.handler.take() == Strings{"synced", "add default/a"});
    CHECK(r.observer.skipped == 1);
    CHECK(w.live());
}

TEST_CASE("reset mid-stream re-watches at once from the last RV", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    w.head(200);
    r.clock->advance(5s);
    w.data(svcEvent("ADDED", "a", "101"));
    w.fail(TransportErrorKind::Reset, "connection reset by peer");
    auto& w2 = r.req();
    CHECK(w2.param("watch") == "true");
    CHECK(w2.param("resourceVersion") == "101");
    CHECK(r.observer.lists.size() == 1);
    w2.head(200);
    w2.data(svcEvent("ADDED", "b", "102"));
    CHECK(r.handler.take() == Strings{"synced", "add default/a", "add default/b"});
}

TEST_CASE("a reset inside an event drops the partial event and re-watches", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    w.head(200);
    r.clock->advance(5s);
    const std::string ev = svcEvent("ADDED", "a", "101");
    w.data(ev.substr(0, 20));
    w.fail(TransportErrorKind::Reset, "connection reset by peer");
    CHECK(r.observer.lists.size() == 1);
    auto& w2 = r.req();
    CHECK(w2.param("resourceVersion") == "100");
    w2.head(200);
    w2.data(ev);
    CHECK(r.handler.take() == Strings{"synced", "add default/a"});
}

TEST_CASE("very short watch is an error: backoff and relist", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    w.head(200);
    r.clock->advance(500ms);
    w.end();
    CHECK(r.observer.backoffs.size() == 1);
    r.clock->advance(r.clock->nextDue());
    CHECK(r.req().param("watch") == "<absent>");
    CHECK(r.req().param("resourceVersion") == "100");
}

TEST_CASE("backoff doubles, caps at 30 s, resets after 2 min healthy", "[reflector][backoff]") {
    Backoff b({}, [] { return 0.0; });
    TimePoint t{};
    Strings got;
    for (int i = 0; i < 8; ++i) {
        got.push_back(std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(b.next(t)).count()));
        t += 1s;
    }
    CHECK(got == Strings{"800", "1600", "3200", "6400", "12800", "25600", "30000", "30000"});
    t += 121s;
    CHECK(b.next(t) == 800ms);
    Backoff j({}, [] { return 0.5; });
    CHECK(j.next(t) == 1200ms);  // jitter 1.0: d + 0.5 * d
}

TEST_CASE("watch request 429 without Retry-After: back off, re-watch at the same RV",
          "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {});
    w.respond(429, "Too many requests, please try again later.", "text/plain");
    REQUIRE(r.observer.backoffs.size() == 1);
    r.clock->advance(r.clock->nextDue());
    CHECK(r.req().param("watch") == "true");
    CHECK(r.req().param("resourceVersion") == "100");
    CHECK(r.observer.lists.size() == 1);
}

TEST_CASE("429 and 5xx with Retry-After are retried transparently, at most 10 times",
          "[reflector][retry]") {
    Rig r;
    r.start();
    auto* l = &r.req();
    for (int i = 0; i < 10; ++i) {
        const auto n = r.transport->count();
        if (i % 2 == 0) {
            l->respond(429, statusJson(429, "TooManyRequests", "slow down"), "application/json",
                       "3");
        } else {
            l->respond(503, "busy", "text/plain", "3");
        }
        r.clock->advance(2999ms);
        CHECK(r.transport->count() == n);  // waits the full Retry-After
        r.clock->advance(1ms);
        REQUIRE(r.transport->count() == n + 1);
        l = &r.req();
        CHECK(l->param("resourceVersion") == "0");  // same request again
    }
    CHECK(r.observer.retries == 10);
    CHECK(r.observer.backoffs.empty());
    l->respond(429, "Too many requests", "text/plain", "3");
    // The 11th failure goes up to the reflector: a cycle backoff, not a Retry-After wait.
    CHECK(r.observer.backoffs.size() == 1);
    CHECK(r.observer.requestErrors == 1);
}

TEST_CASE("Retry-After that is not an integer is ignored", "[retry]") {
    CHECK(parseRetryAfter("5") == 5);
    CHECK_FALSE(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"));
    CHECK_FALSE(parseRetryAfter("-1"));
    CHECK_FALSE(parseRetryAfter(""));
    Rig r;
    r.start();
    r.req().respond(503, "x", "text/plain", "soon");
    CHECK(r.observer.retries == 0);
    CHECK(r.observer.backoffs.size() == 1);
}

TEST_CASE("a reset before any response is retried after 1 s", "[retry]") {
    Rig r;
    r.start();
    const auto n = r.transport->count();
    r.req().fail(TransportErrorKind::Reset);
    r.clock->advance(999ms);
    CHECK(r.transport->count() == n);
    r.clock->advance(1ms);
    CHECK(r.transport->count() == n + 1);
    r.req().fail(TransportErrorKind::ConnectionRefused);  // not retried transparently
    CHECK(r.observer.backoffs.size() == 1);
}

TEST_CASE("401 makes the next request re-read the token file", "[auth]") {
    Rig r;
    r.cfg.tokenFile = "/token";
    r.client = nullptr;
    {
        Client::Environment env;
        env.transport = r.transport;
        env.clock = r.clock;
        env.random = [] { return 0.25; };
        env.readFile = [&r](const std::string&) -> kipvs::Result<std::string> {
            ++r.fileReads;
            return r.tokenFileContent;
        };
        r.client = std::make_unique<Client>(std::move(env), r.cfg, r.opts, &r.observer);
    }
    r.start();
    CHECK(r.req().header("Authorization") == "Bearer file-token");
    CHECK(r.fileReads == 1);
    r.tokenFileContent = "rotated";
    r.req().respond(401, statusJson(401, "Unauthorized", "Unauthorized"));
    r.clock->advance(r.clock->nextDue());
    CHECK(r.req().header("Authorization") == "Bearer rotated");
    CHECK(r.fileReads == 2);
    // Within a minute, no re-read; after a minute, one.
    r.req().respond(200, listJson("Service", "5", {}));
    CHECK(r.fileReads == 2);
    r.clock->advance(61s);
    r.req().head(200);
    r.req().data(svcEvent("ADDED", "a", "6"));
    r.req().end();
    CHECK(r.fileReads == 3);
}

TEST_CASE("token source: periodic re-read, keeps the old token on failure", "[auth]") {
    std::string content = "t1";
    bool fail = false;
    TokenSource ts("static", "/f", [&](const std::string&) -> kipvs::Result<std::string> {
        if (fail) {
            return kipvs::Error::invalid("gone");
        }
        return content;
    });
    TimePoint t{};
    CHECK(ts.token(t) == "t1");
    content = "t2";
    CHECK(ts.token(t + 59s) == "t1");
    CHECK(ts.token(t + 60s) == "t2");
    fail = true;
    ts.reset();
    CHECK(ts.token(t + 61s) == "t2");
    fail = false;
    content = "  \n";
    ts.reset();
    CHECK(ts.token(t + 62s) == "t2");  // empty re-read keeps the old token
    TokenSource none("static", "", nullptr);
    CHECK(none.token(t) == "static");
}

TEST_CASE("rate limit: burst 10 then 5 per second, lists only", "[ratelimit]") {
    TokenBucket b(5, 10);
    TimePoint t{};
    for (int i = 0; i < 10; ++i) {
        CHECK(b.reserve(t) == Duration::zero());
    }
    CHECK(b.reserve(t) == 200ms);
    CHECK(b.reserve(t) == 400ms);
    t += 2s;  // 10 tokens refilled, minus the 2 owed
    for (int i = 0; i < 8; ++i) {
        CHECK(b.reserve(t) == Duration::zero());
    }
    CHECK(b.reserve(t) > Duration::zero());

    // Through the client: the 11th list of a burst waits 200 ms; watches never wait.
    Rig r;
    r.opts.burst = 2;
    r.opts.qps = 5;
    Client::Environment env;
    env.transport = r.transport;
    env.clock = r.clock;
    env.random = [] { return 0.0; };
    r.client = std::make_unique<Client>(std::move(env), r.cfg, r.opts, &r.observer);
    r.start();
    r.req().respond(200, listJson("Service", "5", {}, "c1"));  // token 1
    const auto n = r.transport->count();
    CHECK(n == 2);                                             // page 2: token 2
    r.req().respond(200, listJson("Service", "5", {}, "c2"));  // page 3 must wait 200 ms
    CHECK(r.transport->count() == n);
    r.clock->advance(199ms);
    CHECK(r.transport->count() == n);
    r.clock->advance(1ms);
    CHECK(r.transport->count() == n + 1);
    r.req().respond(200, listJson("Service", "5", {}));
    CHECK(r.transport->count() == n + 2);  // the watch goes out at once
    CHECK(r.req().param("watch") == "true");
}

TEST_CASE("an invalid new version deletes the delivered one", "[reflector][decode]") {
    Rig r;
    r.start();
    auto& w = r.list("100", {svcJson("a", "1")});
    r.handler.take();
    w.head(200);
    w.data(svcEvent("MODIFIED", "a", "101", "not-an-ip"));
    CHECK(r.handler.take() == Strings{"delete default/a"});
    CHECK(r.observer.rejected == 1);
    CHECK(r.observer.messages.back() ==
          "Service default/a: spec.clusterIP: \"not-an-ip\" is not a valid IP address");
    w.data(svcEvent("MODIFIED", "a", "102"));
    CHECK(r.handler.take() == Strings{"add default/a"});
}

namespace {

// svcJson with one annotation of `bytes` bytes (over the API server's limit: a Note).
std::string annotatedSvc(const std::string& name, const std::string& rv, std::size_t bytes,
                         int port = 80) {
    std::string s = svcJson(name, rv, "10.96.0.10", port, "default", true);
    const std::string meta = R"("metadata":{)";
    s.insert(s.find(meta) + meta.size(),
             R"("annotations":{"example.com/blob":")" + std::string(bytes, 'x') + R"("},)");
    return s;
}

}  // namespace

TEST_CASE("notes are reported once per change, not again by a relist", "[reflector][notes]") {
    Rig r;
    r.start();
    const std::size_t big = 300 * 1024;
    auto& w = r.list("100", {annotatedSvc("a", "1", big), svcJson("b", "2")});
    CHECK(r.handler.take() == Strings{"add default/a", "add default/b", "synced"});
    REQUIRE(r.observer.handled.size() == 1);
    CHECK(r.observer.handled[0].rfind(
              "annotations_too_large: Service default/a: metadata.annotations: 307216 bytes", 0) ==
          0);
    w.head(200);
    // A change of what is delivered reports again; the same object again does not.
    w.data(event("MODIFIED", annotatedSvc("a", "101", big, 81)));
    w.data(event("MODIFIED", annotatedSvc("a", "102", big + 1, 81)));
    CHECK(r.handler.take() == Strings{"update default/a"});
    CHECK(r.observer.handled.size() == 2);
    // The annotation goes (nothing delivered changes) and comes back: reported again, with
    // no update delivered for either.
    w.data(svcEvent("MODIFIED", "a", "103", "10.96.0.10", 81));
    CHECK(r.observer.handled.size() == 2);
    w.data(event("MODIFIED", annotatedSvc("a", "104", big, 81)));
    CHECK(r.handler.take().empty());
    CHECK(r.observer.handled.size() == 3);
    // Only b changes across a relist: a's note is not reported again.
    w.data(event("ERROR", statusJson(410, "Expired", "too old")));
    r.clock->advance(r.clock->nextDue());
    r.list("300", {annotatedSvc("a", "104", big, 81), svcJson("b", "250", "10.96.0.99")});
    CHECK(r.handler.take() == Strings{"update default/b"});
    CHECK(r.observer.handled.size() == 3);
    // After a delete, the same object is new again.
    auto& w2 = r.req();
    w2.head(200);
    w2.data(event("DELETED", annotatedSvc("a", "301", big, 81)));
    w2.data(event("ADDED", annotatedSvc("a", "302", big, 81)));
    CHECK(r.handler.take() == Strings{"delete default/a", "add default/a"});
    CHECK(r.observer.handled.size() == 4);
    CHECK(r.observer.dropped == 0);
    CHECK(r.observer.rejected == 0);
}

TEST_CASE("watch-list: initial events go out as they arrive; deletions wait for the bookmark",
          "[reflector][watchlist]") {
    Rig r(true);
    r.start();
    auto& w = r.req();
    CHECK(w.param("watch") == "true");
    CHECK(w.param("sendInitialEvents") == "true");
    CHECK(w.param("resourceVersionMatch") == "NotOlderThan");
    CHECK(w.param("allowWatchBookmarks") == "true");
    CHECK_FALSE(w.has("resourceVersion"));
    w.head(200);
    // Each object goes out as it arrives (a consumer can program a cold node while a
    // 44,000-object list streams in); the informer is not synced before the bookmark.
    w.data(svcEvent("ADDED", "a", "5") + svcEvent("ADDED", "b", "6"));
    CHECK(r.handler.take() == Strings{"add default/a", "add default/b"});
    CHECK_FALSE(r.informer->hasSynced());
    w.data(svcEvent("ADDED", "c", "7"));
    CHECK(r.handler.take() == Strings{"add default/c"});
    w.data(bookmark("8", "Service", true));
    CHECK(r.handler.take() == Strings{"synced"});
    CHECK(r.informer->hasSynced());
    w.data(svcEvent("DELETED", "a", "9"));
    CHECK(r.handler.take() == Strings{"delete default/a"});
    // The same stream goes on as a normal watch; after a clean close, a plain watch at RV 9.
    r.clock->advance(10s);
    w.end();
    CHECK(r.req().param("resourceVersion") == "9");
    CHECK(r.req().has("sendInitialEvents") == false);
}

TEST_CASE(
    "watch-list after a failed cycle: unchanged objects are quiet, unlisted ones deleted "
    "at the bookmark",
    "[reflector][watchlist]") {
    Rig r(true);
    r.start();
    auto& w0 = r.req();
    w0.head(200);
    w0.data(svcEvent("ADDED", "a", "5") + svcEvent("ADDED", "b", "6") +
            bookmark("10", "Service", true));
    CHECK(r.handler.take() == Strings{"add default/a", "add default/b", "synced"});
    w0.data(event("ERROR", statusJson(500, "InternalError", "x")));
    r.clock->advance(r.clock->nextDue());
    auto& w1 = r.req();
    CHECK(w1.param("sendInitialEvents") == "true");
    w1.head(200);
    // b is gone and a changed: the change goes out at once, the deletion only once the
    // initial events are complete (b may still come).
    w1.data(svcEvent("ADDED", "a", "11", "10.96.0.77"));
    CHECK(r.handler.take() == Strings{"update default/a"});
    w1.data(bookmark("12", "Service", true));
    CHECK(r.handler.take() == Strings{"delete default/b"});
    CHECK(r.informer->size() == 1);
}

TEST_CASE("watch-list rejected with 422: list+watch now and later", "[reflector][watchlist]") {
    Rig r(true);
    r.start();
    r.req().respond(422, statusJson(422, "Invalid",
                                    "sendInitialEvents is forbidden for watch unless the WatchList "
                                    "feature gate is enabled"));
    CHECK(r.observer.fallbacks == 1);
    auto& l = r.req();
    CHECK(l.param("watch") == "<absent>");
    CHECK(l.param("resourceVersion") == "0");
    auto& w = r.list("10", {svcJson("a", "1")});
    w.respond(500, statusJson(500, "InternalError", "boom"));
    r.clock->advance(r.clock->nextDue());
    CHECK(r.req().param("watch") == "<absent>");  // no second watch-list attempt
    CHECK(r.req().param("resourceVersion") == "10");
}

TEST_CASE("watch-list ignored by an old server (plain bookmark first): list+watch from then on",
          "[reflector][watchlist]") {
    Rig r(true);
    r.start();
    auto& w = r.req();
    w.head(200);
    w.data(svcEvent("ADDED", "a", "5") + svcEvent("ADDED", "b", "6") + bookmark("7"));
    // A plain watch's events are real versions too: they went out.
    CHECK(r.handler.take() == Strings{"add default/a", "add default/b"});
    CHECK(r.observer.fallbacks == 1);
    CHECK_FALSE(w.live());
    auto& l = r.req();
    CHECK(l.param("watch") == "<absent>");
    // The list completes the replace: a, unchanged, is quiet; b, not listed, is deleted.
    auto& w2 = r.list("10", {svcJson("a", "5")});
    CHECK(r.handler.take() == Strings{"delete default/b", "synced"});
    w2.respond(500, statusJson(500, "InternalError", "x"));
    r.clock->advance(r.clock->nextDue());
    CHECK(r.req().param("watch") == "<absent>");  // no watch-list attempt again
}

TEST_CASE("watch-list stream ending before its bookmark falls back to a list",
          "[reflector][watchlist]") {
    Rig r(true);
    r.start();
    auto& w = r.req();
    w.head(200);
    w.data(svcEvent("ADDED", "a", "5"));
    CHECK(r.handler.take() == Strings{"add default/a"});
    r.clock->advance(2s);
    w.end();
    CHECK(r.req().param("watch") == "<absent>");
    CHECK_FALSE(r.req().has("resourceVersion"));  // a went out: a consistent list
    r.list("10", {svcJson("b", "1")});
    CHECK(r.handler.take() == Strings{"add default/b", "delete default/a", "synced"});
}

// client-go's ListAndWatch falls back from a failed watchList() to a list in the same cycle;
// only a failing list backs off. Backing off here stacks a second backoff (up to 60 s once
// capped) on the one that began the cycle, which kept the daemon off the API for over 90 s
// in the guest's watch-fault scenario.
TEST_CASE("watch-list broken before its bookmark: list at once, no second backoff",
          "[reflector][watchlist]") {
    struct Case {
        std::string what, bad, wantRV;
    };
    const Case c = GENERATE(
        Case{"in-band 410", event("ERROR", statusJson(410, "Expired", "too old resource version")),
             ""},
        Case{"in-band 500", event("ERROR", statusJson(500, "InternalError", "boom")), "10"},
        Case{"garbled line", std::string(R"({"type":"ADDED","object":{]})") + "\n", "10"},
        Case{"unknown type", std::string(R"({"type":"FOO","object":{}})") + "\n", "10"});
    INFO(c.what);
    Rig r(true);
    r.start();
    auto& w0 = r.req();
    w0.head(200);
    w0.data(svcEvent("ADDED", "a", "5") + bookmark("10", "Service", true));
    CHECK(r.handler.take() == Strings{"add default/a", "synced"});
    // The cycle fails in the watch phase: one backoff, then a watch-list from RV 10.
    w0.data(event("ERROR", statusJson(500, "InternalError", "x")));
    REQUIRE(r.observer.backoffs.size() == 1);
    r.clock->advance(r.clock->nextDue());
    auto& w1 = r.req();
    CHECK(w1.param("sendInitialEvents") == "true");
    CHECK(w1.param("resourceVersion") == "10");
    w1.head(200);
    w1.data(svcEvent("ADDED", "a", "5") + c.bad);
    CHECK_FALSE(w1.live());
    // A list at once, no second backoff. The unchanged a went out as nothing.
    CHECK(r.observer.backoffs.size() == 1);
    CHECK(r.observer.fallbacks == 1);
    CHECK(r.handler.log.empty());
    auto& l = r.req();
    CHECK(l.param("watch") == "<absent>");
    CHECK(l.param("resourceVersion") == (c.wantRV.empty() ? "<absent>" : c.wantRV));
    r.list("12", {svcJson("b", "11")});
    CHECK(r.handler.take() == Strings{"add default/b", "delete default/a"});
    CHECK(r.req().param("watch") == "true");
    CHECK(r.req().param("resourceVersion") == "12");
    CHECK(r.observer.backoffs.size() == 1);
}

// The objects of a replace go out as they arrive. In an HA cluster, a list "not older than"
// the last RV could reach an API server whose cache lags the one that sent them and take them
// back to older versions; after a change went out, the fallback is a consistent read.
TEST_CASE("a replace broken after a change went out falls back to a consistent list",
          "[reflector][watchlist]") {
    const bool watchList = GENERATE(true, false);
    INFO((watchList ? "watch-list" : "paged list"));
    Rig r(watchList);
    r.start();
    if (watchList) {
        auto& w0 = r.req();
        w0.head(200);
        w0.data(svcEvent("ADDED", "a", "5") + bookmark("10", "Service", true));
        CHECK(r.handler.take() == Strings{"add default/a", "synced"});
        w0.data(event("ERROR", statusJson(500, "InternalError", "x")));
        r.clock->advance(r.clock->nextDue());
        auto& w1 = r.req();
        CHECK(w1.param("resourceVersion") == "10");
        w1.head(200);
        w1.data(svcEvent("ADDED", "a", "11", "10.96.0.11"));
        CHECK(r.handler.take() == Strings{"update default/a"});
        w1.data(std::string(R"({"type":"ADDED","object":{]})") + "\n");
    } else {
        auto& l0 = r.req();
        CHECK(l0.param("resourceVersion") == "0");
        l0.respond(200, listJson("Service", "50", {svcJson("a", "1")}, "tok1"));
        CHECK(r.handler.take() == Strings{"add default/a"});
        r.req().respond(500, statusJson(500, "InternalError", "x"));
        r.clock->advance(r.clock->nextDue());
    }
    auto& l = r.req();
    CHECK(l.param("watch") == "<absent>");
    CHECK_FALSE(l.has("resourceVersion"));
    r.list("60", {svcJson("a", "11", "10.96.0.11")});
    CHECK(r.req().param("resourceVersion") == "60");  // back to the usual RVs once committed
}

TEST_CASE("informer destruction cancels everything", "[reflector]") {
    Rig r;
    r.start();
    auto& w = r.list("10", {});
    w.head(200);
    r.informer.reset();
    CHECK_FALSE(w.live());
    CHECK(r.clock->pendingTimers() == 0);
}

TEST_CASE("node informer uses the field selector", "[reflector]") {
    Rig r;
    Recorder<Node> h;
    auto inf = r.client->watchNode("node-1", h);
    inf->start();
    CHECK(r.req().request.target ==
          "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-1&limit=500&resourceVersion=0");
    r.req().respond(200, listJson("Node", "3", {R"({"metadata":{"name":"node-1"},"spec":{}})"}));
    CHECK(h.take() == Strings{"add node-1", "synced"});
}

TEST_CASE("a real bookmark (zero fields included) only moves the RV", "[reflector]") {
    std::ifstream in(std::string(K8S_TEST_DATA) + "/bookmark.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string line = ss.str();
    line.erase(std::remove(line.begin(), line.end(), '\n'), line.end());
    Rig r;
    r.start();
    auto& w = r.list("100", {svcJson("a", "1")});
    r.handler.take();
    w.head(200);
    r.clock->advance(5s);
    w.data(line + "\n");
    w.end();
    CHECK(r.handler.log.empty());
    CHECK(r.req().param("resourceVersion") == "12746");
}
