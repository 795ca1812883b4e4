// Watch-stream framing (k8s-client/framing.h) and event decoding, the latter through the real
// reflector (the only place a watch line becomes an event) on a scripted transport and a fake
// clock, so no socket and no sleep.
//
// Input: byte 0 options, byte 1 seeds the chunking, byte 2 the framer's line limit; the rest is
// a response body.
//   opt & 3:  Service, EndpointSlice or Node informer
//   opt & 4:  watch-list (the body is the sendInitialEvents watch); else list+watch
//   opt & 8:  with list+watch, the body is the list response instead of the watch
//   opt & 16: the body ends with a connection reset instead of a clean end
// Invariants:
//  * LineFramer against a model of the byte stream: the same lines (empty and "\r" lines
//    skipped), pending() is the unterminated tail, no line longer than the limit is ever
//    returned, and a tail over the limit fails the framer;
//  * the reflector delivers adds only for keys it has not delivered, updates and deletes only
//    for keys it has, valid objects only (k8s_checks.h), and size() matches; and everything it
//    delivers and reports is the same whether the body arrives whole or in any chunks.
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "k8s-client/client.h"
#include "k8s-client/framing.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/k8s_checks.h"
#include "tests/k8s/fake_transport.h"
#include "tests/k8s/test_util.h"

namespace kipvs::fuzz {

namespace {

using k8s::testing::CountingObserver;
using k8s::testing::FakeTransport;

void framerModel(std::string_view body, std::size_t maxLine, Choices& c) {
    k8s::LineFramer framer(maxLine);
    std::string tail;  // the model: bytes after the last '\n' seen
    std::string line;
    for (auto part : chunks(body, c, c.range(1, 3 * maxLine))) {
        const bool ok = framer.feed(part);
        std::vector<std::string> expect;
        std::string_view rest = part;
        for (auto nl = rest.find('\n'); nl != std::string_view::npos; nl = rest.find('\n')) {
            tail.append(rest.substr(0, nl));
            if (!tail.empty() && tail != "\r") {
                expect.push_back(tail);
            }
            tail.clear();
            rest.remove_prefix(nl + 1);
        }
        tail.append(rest);
        if (!ok) {
            // feed() fails on an unterminated tail over the limit, and only then.
            FUZZ_CHECK_MSG(tail.size() > maxLine, std::to_string(tail.size()));
            FUZZ_CHECK(framer.failed());
            FUZZ_CHECK(!framer.next(line));
            return;
        }
        FUZZ_CHECK_MSG(tail.size() <= maxLine, std::to_string(tail.size()));
        std::vector<std::string> got;
        while (framer.next(line)) {
            FUZZ_CHECK_MSG(line.size() <= maxLine, std::to_string(line.size()));
            got.push_back(line);
        }
        // A complete line over the limit fails next() there: the lines before it came out.
        const auto tooLong = std::find_if(expect.begin(), expect.end(),
                                          [&](const std::string& l) { return l.size() > maxLine; });
        if (tooLong != expect.end()) {
            FUZZ_CHECK(framer.failed());
            FUZZ_CHECK(got == std::vector<std::string>(expect.begin(), tooLong));
            return;
        }
        FUZZ_CHECK(!framer.failed());
        FUZZ_CHECK(got == expect);
        FUZZ_CHECK(framer.pending() == tail.size());
        FUZZ_CHECK(tail.size() <= maxLine);
    }
}

template <class T>
std::string keyOf(const T& obj) {
    return k8s::Codec<T>::key(obj).toString();
}

// Records callbacks and checks them as they come.
template <class T>
class CheckingHandler : public k8s::EventHandler<T> {
  public:
    void onAdd(const T& obj) override {
        checkObject(obj);
        FUZZ_CHECK(hashes.count(keyOf(obj)) == 0);
        hashes[keyOf(obj)] = k8s::contentHash(obj);
        log.push_back("add " + keyOf(obj) + " " + std::to_string(hashes[keyOf(obj)]));
    }
    void onUpdate(const T& obj) override {
        checkObject(obj);
        auto it = hashes.find(keyOf(obj));
        FUZZ_CHECK(it != hashes.end());
        // An update that changes nothing the consumer sees is not delivered.
        FUZZ_CHECK(it->second != k8s::contentHash(obj));
        it->second = k8s::contentHash(obj);
        log.push_back("update " + keyOf(obj) + " " + std::to_string(it->second));
    }
    void onDelete(const k8s::ObjectKey& key) override {
        FUZZ_CHECK(hashes.erase(key.toString()) == 1);
        log.push_back("delete " + key.toString());
    }
    void onSynced() override {
        FUZZ_CHECK(!synced);
        synced = true;
        log.push_back("synced");
    }

    std::map<std::string, std::uint64_t> hashes;
    std::vector<std::string> log;
    bool synced = false;
};

struct Outcome {
    std::vector<std::string> log;
    std::vector<std::string> messages;
    std::size_t requests = 0;
    bool operator==(const Outcome&) const = default;
};

std::string emptyList(int kind) {
    static constexpr const char* kKinds[] = {"ServiceList", "EndpointSliceList", "NodeList"};
    return std::string(R"({"kind":")") + kKinds[kind] +
           R"(","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]})";
}

template <class T>
Outcome runReflector(int opt, const std::vector<std::string_view>& parts) {
    const int kind = opt & 3;
    const bool watchList = (opt & 4) != 0;
    const bool bodyIsList = !watchList && (opt & 8) != 0;
    auto clock = std::make_shared<k8s::FakeClock>();
    auto transport = std::make_shared<FakeTransport>();
    CountingObserver observer;
    CheckingHandler<T> handler;
    k8s::ClientConfig cfg;
    cfg.token = "fuzz";
    k8s::ClientOptions opts;
    opts.watchList = watchList;
    k8s::Client::Environment env;
    env.transport = transport;
    env.clock = clock;
    env.random = [] { return 0.5; };
    env.readFile = [](const std::string& path) -> Result<std::string> {
        return Error::invalid("no file " + path);
    };
    k8s::Client client(std::move(env), cfg, opts, &observer);
    std::unique_ptr<k8s::Informer<T>> informer;
    if constexpr (std::is_same_v<T, k8s::Service>) {
        informer = client.watchServices(handler);
    } else if constexpr (std::is_same_v<T, k8s::EndpointSlice>) {
        informer = client.watchEndpointSlices(handler);
    } else {
        informer = client.watchNode("node-1", handler);
    }
    informer->start();
    FUZZ_CHECK(transport->count() == 1);
    if (!watchList && !bodyIsList) {
        transport->last().respond(200, emptyList(kind));
        FUZZ_CHECK(transport->count() == 2);
    }
    auto& req = transport->last();
    req.head(200);
    for (auto part : parts) {
        req.data(std::string(part));
    }
    if ((opt & 16) != 0) {
        req.fail(k8s::TransportErrorKind::Reset, "connection reset by peer");
    } else {
        req.end();
    }
    FUZZ_CHECK(informer->size() == handler.hashes.size());
    // Let any backoff or re-watch happen; they find no answer.
    clock->advance(std::chrono::seconds(120));
    FUZZ_CHECK(informer->size() == handler.hashes.size());
    Outcome out;
    out.log = handler.log;
    out.messages = observer.messages;
    out.requests = transport->count();
    informer.reset();
    return out;
}

template <class T>
void reflectorBoth(int opt, std::string_view body, Choices& c) {
    const Outcome whole = runReflector<T>(opt, {body});
    const Outcome chunked = runReflector<T>(opt, chunks(body, c, c.range(1, 96)));
    FUZZ_CHECK(whole == chunked);
}

}  // namespace

int watchStream(const std::uint8_t* data, std::size_t size) {
    if (size < 3) {
        return 0;
    }
    const int opt = data[0];
    Choices c(data[1]);
    const std::size_t maxLine = 1 + data[2];
    const std::string_view body(reinterpret_cast<const char*>(data) + 3, size - 3);
    framerModel(body, maxLine, c);
    switch (opt & 3) {
        case 0:
        case 3:
            reflectorBoth<k8s::Service>(opt & ~3, body, c);
            break;
        case 1:
            reflectorBoth<k8s::EndpointSlice>(opt, body, c);
            break;
        case 2:
            reflectorBoth<k8s::Node>(opt, body, c);
            break;
        default:
            break;
    }
    return 0;
}

}  // namespace kipvs::fuzz

#ifndef KIPVS_FUZZ_REGRESSION
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return kipvs::fuzz::watchStream(data, size);
}
#endif
