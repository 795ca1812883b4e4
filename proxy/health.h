// The proxy's health, as kube-proxy's health server reports it (kube-proxy-ipvs.md §8.1,
// §8.2): per family, when the last sync completed and since when an update has waited.
// Pure: times are passed in. The HTTP servers (proxy/http_server.h) serve the answers.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "ipvs/net.h"

namespace kipvs::proxy {

// Go's time.Time.String() of a UTC time: "2025-01-02 03:04:05.123456789 +0000 UTC", with
// " m=+12.345678901" appended when a monotonic reading (seconds since start) is given.
// wallNs 0 gives Go's zero time, "0001-01-01 00:00:00 +0000 UTC".
std::string goTimeString(std::int64_t wallNs, std::optional<double> monotonicSeconds = {});

class ProxyHealth {
  public:
    using Clock = std::chrono::steady_clock;

    // Healthy means no update of any family has waited longer than `timeout`
    // (2 x syncPeriod in kube-proxy).
    explicit ProxyHealth(Clock::duration timeout) : timeout_(timeout) {}

    // A sync was requested (only the oldest pending request counts).
    void queued(net::Family f, Clock::time_point now);
    // A sync completed: nothing is pending, and `wallNs` is the last update.
    void updated(net::Family f, Clock::time_point now, std::int64_t wallNs);
    // The Node is being deleted or tainted ToBeDeletedByClusterAutoscaler.
    void setNodeEligible(bool eligible) { nodeEligible_ = eligible; }
    bool nodeEligible() const { return nodeEligible_; }

    bool healthy(Clock::time_point now) const;

    struct Answer {
        int status = 200;
        std::string body;
    };
    // /healthz: 200 when healthy and the node is eligible, else 503.
    // `monoSeconds` is the time since the process started (Go's m=+ suffix).
    Answer healthz(Clock::time_point now, std::int64_t wallNs, double monoSeconds) const;
    // /livez: the same without the node eligibility.
    Answer livez(Clock::time_point now, std::int64_t wallNs, double monoSeconds) const;

  private:
    struct FamilyState {
        std::optional<Clock::time_point> oldestPending;
        std::int64_t lastUpdatedNs = 0;
        bool seen = false;
    };
    FamilyState& state(net::Family f) { return f == net::Family::V4 ? v4_ : v6_; }
    std::string lastUpdatedText(Clock::time_point now, std::int64_t wallNs,
                                double monoSeconds) const;

    Clock::duration timeout_;
    FamilyState v4_;
    FamilyState v6_;
    bool nodeEligible_ = true;
};

// The body of a per-Service health-check node port answer, exactly as kube-proxy writes it
// (tab-indented, no trailing newline).
std::string serviceHealthBody(const std::string& ns, const std::string& name,
                              std::uint32_t localEndpoints, bool proxyHealthy);

}  // namespace kipvs::proxy
