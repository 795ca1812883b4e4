// A scripted Transport for unit tests: requests are recorded, and the test answers each one
// (head, body bytes, end, or a transport error) whenever it likes, on its own thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "k8s-client/transport.h"

namespace kipvs::k8s::testing {

class FakeTransport : public Transport {
  public:
    struct Pending {
        HttpRequest request;
        std::shared_ptr<ResponseSink> sink;
        bool cancelled = false;
        bool done = false;

        bool live() const { return !cancelled && !done; }
        std::string header(const std::string& name) const {
            for (const auto& [k, v] : request.headers) {
                if (k == name) {
                    return v;
                }
            }
            return "";
        }
        // Path without the query.
        std::string path() const { return request.target.substr(0, request.target.find('?')); }
        // A query parameter, percent-decoded; "<absent>" when missing.
        std::string param(const std::string& name) const;
        bool has(const std::string& name) const { return param(name) != "<absent>"; }

        void head(int status, const std::string& contentType = "application/json",
                  const std::string& retryAfter = "") {
            if (live()) {
                sink->onHead({status, contentType, retryAfter});
            }
        }
        void data(const std::string& bytes) {
            if (live()) {
                sink->onData(bytes);
            }
        }
        void end() {
            if (live()) {
                done = true;
                sink->onDone(nullptr);
            }
        }
        void fail(TransportErrorKind kind, const std::string& msg = "fake failure") {
            if (live()) {
                done = true;
                TransportError e{kind, msg};
                sink->onDone(&e);
            }
        }
        // A complete response.
        void respond(int status, const std::string& body,
                     const std::string& contentType = "application/json",
                     const std::string& retryAfter = "") {
            head(status, contentType, retryAfter);
            data(body);
            end();
        }
    };

    std::unique_ptr<RequestHandle> get(HttpRequest request,
                                       std::shared_ptr<ResponseSink> sink) override {
        auto p = std::make_shared<Pending>();
        p->request = std::move(request);
        p->sink = std::move(sink);
        requests.push_back(p);
        struct H : RequestHandle {
            std::shared_ptr<Pending> p;
            ~H() override { p->cancelled = true; }
        };
        auto h = std::make_unique<H>();
        h->p = p;
        return h;
    }

    // The most recent request; the test fails loudly (nullptr deref) if there is none.
    Pending& last() { return *requests.back(); }
    std::size_t count() const { return requests.size(); }
    // Requests that are neither answered nor cancelled.
    std::size_t live() const {
        std::size_t n = 0;
        for (const auto& r : requests) {
            n += r->live() ? 1 : 0;
        }
        return n;
    }

    std::vector<std::shared_ptr<Pending>> requests;
};

inline std::string FakeTransport::Pending::param(const std::string& name) const {
    const auto q = request.target.find('?');
    if (q == std::string::npos) {
        return "<absent>";
    }
    std::string rest = request.target.substr(q + 1);
    std::size_t pos = 0;
    while (pos <= rest.size()) {
        auto amp = rest.find('&', pos);
        if (amp == std::string::npos) {
            amp = rest.size();
        }
        const std::string kv = rest.substr(pos, amp - pos);
        const auto eq = kv.find('=');
        if (kv.substr(0, eq) == name) {
            std::string raw = eq == std::string::npos ? "" : kv.substr(eq + 1);
            std::string out;
            for (std::size_t i = 0; i < raw.size(); ++i) {
                if (raw[i] == '%' && i + 2 < raw.size() + 0 && i + 2 <= raw.size() - 1) {
                    out.push_back(static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16)));
                    i += 2;
                } else if (raw[i] == '+') {
                    out.push_back(' ');
                } else {
                    out.push_back(raw[i]);
                }
            }
            return out;
        }
        pos = amp + 1;
    }
    return "<absent>";
}

}  // namespace kipvs::k8s::testing
