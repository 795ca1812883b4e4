// Helpers shared by the k8s-client tests: JSON builders for objects and events, a handler
// that records callbacks, and an observer that counts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "k8s-client/handler.h"
#include "k8s-client/observer.h"

namespace kipvs::k8s::testing {

inline std::string svcJson(const std::string& name, const std::string& rv,
                           const std::string& ip = "10.96.0.10", int port = 80,
                           const std::string& ns = "default", bool withKind = false) {
    return std::string("{") + (withKind ? R"("kind":"Service","apiVersion":"v1",)" : "") +
           R"("metadata":{"name":")" + name + R"(","namespace":")" + ns +
           R"(","resourceVersion":")" + rv + R"("},"spec":{"type":"ClusterIP","clusterIP":")" + ip +
           R"(","ports":[{"name":"http","protocol":"TCP","port":)" + std::to_string(port) + "}]}}";
}

inline std::string event(const std::string& type, const std::string& object) {
    return R"({"type":")" + type + R"(","object":)" + object + "}\n";
}

inline std::string svcEvent(const std::string& type, const std::string& name, const std::string& rv,
                            const std::string& ip = "10.96.0.10", int port = 80) {
    return event(type, svcJson(name, rv, ip, port, "default", true));
}

inline std::string bookmark(const std::string& rv, const std::string& kind = "Service",
                            bool initialEnd = false) {
    return event("BOOKMARK",
                 R"({"kind":")" + kind + R"(","apiVersion":"v1","metadata":{"resourceVersion":")" +
                     rv + "\"" +
                     (initialEnd ? R"(,"annotations":{"k8s.io/initial-events-end":"true"})" : "") +
                     "}}");
}

inline std::string listJson(const std::string& kind, const std::string& rv,
                            const std::vector<std::string>& items, const std::string& cont = "") {
    std::string s = R"({"kind":")" + kind +
                    R"(List","apiVersion":"v1","metadata":{"resourceVersion":")" + rv + "\"";
    if (!cont.empty()) {
        s += R"(,"continue":")" + cont + "\"";
    }
    s += R"(},"items":[)";
    for (std::size_t i = 0; i < items.size(); ++i) {
        s += (i ? "," : "") + items[i];
    }
    return s + "]}";
}

inline std::string statusJson(int code, const std::string& reason, const std::string& message) {
    return R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":")" +
           message + R"(","reason":")" + reason + R"(","code":)" + std::to_string(code) + "}";
}

// Records every callback as "add ns/name", "update ns/name", "delete ns/name", "synced", and
// keeps the resulting cache.
template <class T>
class Recorder : public EventHandler<T> {
  public:
    static std::string keyOf(const Service& s) { return s.key.toString(); }
    static std::string keyOf(const EndpointSlice& s) { return s.key.toString(); }
    static std::string keyOf(const Node& n) { return n.name; }

    void onAdd(const T& obj) override {
        log.push_back("add " + keyOf(obj));
        cache[keyOf(obj)] = obj;
    }
    void onUpdate(const T& obj) override {
        log.push_back("update " + keyOf(obj));
        cache[keyOf(obj)] = obj;
    }
    void onDelete(const ObjectKey& key) override {
        log.push_back("delete " + key.toString());
        cache.erase(key.toString());
    }
    void onSynced() override {
        log.push_back("synced");
        ++synced;
    }
    // Returns and clears the log.
    std::vector<std::string> take() {
        auto out = std::move(log);
        log.clear();
        return out;
    }

    std::vector<std::string> log;
    std::map<std::string, T> cache;
    int synced = 0;
};

class CountingObserver : public Observer {
  public:
    void onInvalid(Kind, const ObjectKey&, const Issue&, bool whole,
                   const std::string& message) override {
        (whole ? rejected : dropped)++;
        messages.push_back(message);
    }
    void onHandled(Kind, const ObjectKey&, std::string_view code, const Issue&,
                   const std::string& message) override {
        handled.push_back(std::string(code) + ": " + message);
    }
    void onSkippedEvent(Kind, const std::string& message) override {
        ++skipped;
        messages.push_back(message);
    }
    void onRequestError(Kind, std::string_view op, int status,
                        const std::string& message) override {
        ++requestErrors;
        messages.push_back(std::string(op) + " " + std::to_string(status) + " " + message);
    }
    void onRetry(std::string_view, const std::string&, double) override { ++retries; }
    void onList(Kind, const std::string& rv, const std::string&) override { lists.push_back(rv); }
    void onWatch(Kind, const std::string& rv, const std::string&) override {
        watches.push_back(rv);
    }
    void onBackoff(Kind, const std::string&, double seconds) override {
        backoffs.push_back(seconds);
    }
    void onWatchListFallback(Kind, const std::string&) override { ++fallbacks; }
    void onBytes(Kind, std::size_t n) override {
        bytes += n;
        ++reads;
    }
    void onEvent(Kind, std::string_view) override { ++events; }

    int rejected = 0;
    int dropped = 0;
    int skipped = 0;
    int requestErrors = 0;
    int retries = 0;
    int fallbacks = 0;
    std::size_t bytes = 0;
    std::size_t reads = 0;  // onBytes calls: body pieces the transport delivered
    std::size_t events = 0;
    std::vector<std::string> lists;
    std::vector<std::string> watches;
    std::vector<double> backoffs;
    std::vector<std::string> messages;
    std::vector<std::string> handled;  // "code: message"
};

}  // namespace kipvs::k8s::testing
