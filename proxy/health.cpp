#include "proxy/health.h"

#include <cstdio>
#include <ctime>

namespace kipvs::proxy {

std::string goTimeString(std::int64_t wallNs, std::optional<double> monotonicSeconds) {
    if (wallNs == 0) {
        return "0001-01-01 00:00:00 +0000 UTC";
    }
    const std::time_t secs = static_cast<std::time_t>(wallNs / 1000000000);
    const auto nanos = static_cast<long>(wallNs % 1000000000);
    std::tm t{};
    gmtime_r(&secs, &t);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d", t.tm_year + 1900, t.tm_mon + 1,
                  t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
    std::string out = buf;
    if (nanos != 0) {
        std::snprintf(buf, sizeof buf, ".%09ld", nanos);
        std::string frac = buf;
        while (frac.back() == '0') {
            frac.pop_back();
        }
        out += frac;
    }
    out += " +0000 UTC";
    if (monotonicSeconds) {
        std::snprintf(buf, sizeof buf, " m=%+.9f", *monotonicSeconds);
        out += buf;
    }
    return out;
}

void ProxyHealth::queued(net::Family f, Clock::time_point now) {
    auto& s = state(f);
    s.seen = true;
    if (!s.oldestPending) {
        s.oldestPending = now;
    }
}

void ProxyHealth::updated(net::Family f, Clock::time_point /*now*/, std::int64_t wallNs) {
    auto& s = state(f);
    s.seen = true;
    s.oldestPending.reset();
    s.lastUpdatedNs = wallNs;
}

bool ProxyHealth::healthy(Clock::time_point now) const {
    for (const auto* s : {&v4_, &v6_}) {
        if (s->oldestPending && now - *s->oldestPending > timeout_) {
            return false;
        }
    }
    return true;
}

std::string ProxyHealth::lastUpdatedText(Clock::time_point now, std::int64_t wallNs,
                                         double monoSeconds) const {
    if (healthy(now)) {
        // kube-proxy reports lastUpdated = currentTime while healthy.
        return goTimeString(wallNs, monoSeconds);
    }
    // Unhealthy: the last update of the stale family (zero time if it never synced).
    for (const auto* s : {&v4_, &v6_}) {
        if (s->oldestPending && now - *s->oldestPending > timeout_) {
            return goTimeString(s->lastUpdatedNs);
        }
    }
    return goTimeString(0);
}

ProxyHealth::Answer ProxyHealth::healthz(Clock::time_point now, std::int64_t wallNs,
                                         double monoSeconds) const {
    Answer a;
    const bool ok = healthy(now) && nodeEligible_;
    a.status = ok ? 200 : 503;
    a.body = "{\"lastUpdated\": \"" + lastUpdatedText(now, wallNs, monoSeconds) +
             "\",\"currentTime\": \"" + goTimeString(wallNs, monoSeconds) +
             "\", \"nodeEligible\": " + (nodeEligible_ ? "true" : "false") + "}";
    return a;
}

ProxyHealth::Answer ProxyHealth::livez(Clock::time_point now, std::int64_t wallNs,
                                       double monoSeconds) const {
    Answer a;
    a.status = healthy(now) ? 200 : 503;
    a.body = "{\"lastUpdated\": \"" + lastUpdatedText(now, wallNs, monoSeconds) +
             "\",\"currentTime\": \"" + goTimeString(wallNs, monoSeconds) + "\"}";
    return a;
}

std::string serviceHealthBody(const std::string& ns, const std::string& name,
                              std::uint32_t localEndpoints, bool proxyHealthy) {
    auto quote = [](const std::string& s) {
        std::string out = "\"";
        for (const char c : s) {
            if (c == '"' || c == '\\') {
                out += '\\';
            }
            out += c;
        }
        return out + "\"";
    };
    return "{\n\t\"service\": {\n\t\t\"namespace\": " + quote(ns) +
           ",\n\t\t\"name\": " + quote(name) +
           "\n\t},\n\t\"localEndpoints\": " + std::to_string(localEndpoints) +
           ",\n\t\"serviceProxyHealthy\": " + (proxyHealthy ? "true" : "false") + "\n}";
}

}  // namespace kipvs::proxy
