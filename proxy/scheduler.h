// When to sync: kube-proxy's bounded-frequency runner, as a pure state machine on an
// injected clock (kube-proxy-ipvs.md §6.1).
//
//  - A change requests a sync. Syncs are coalesced: many requests before a run give one run.
//  - minInterval limits how often syncs run, with a token bucket of burst 2 (two syncs may
//    run back to back, then one per minInterval). minInterval 0 means no limit.
//  - A failed sync is retried after a delay that doubles from 1 s up to maxRetry, and resets
//    after a success.
//  - A sync step that left work behind (a bounded step of a large sync) continues at once.
//
// The daemon owns the timer; this class only says when it should fire.
#pragma once

#include <chrono>
#include <optional>

namespace kipvs::proxy {

class SyncScheduler {
  public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;
    using Duration = Clock::duration;

    SyncScheduler(Duration minInterval, Duration maxRetry);

    // A change wants a sync.
    void request();
    // Whether a sync is wanted at all (requested, retrying, or continuing).
    bool wanted() const { return requested_ || continuing_ || retryAt_.has_value(); }
    // When the next sync may run; nullopt when none is wanted.
    std::optional<TimePoint> next(TimePoint now) const;
    // Record a run that started at `now`. `failed`: some write failed (retry with backoff).
    // `more`: the step left work for another step (continue at once). A sync in several steps
    // failed if any of its steps did: its failed Services wait for the retry (Proxier).
    void ran(TimePoint now, bool failed, bool more);
    // The current retry delay (for logs and tests).
    Duration retryDelay() const { return retryDelay_; }

  private:
    void refill(TimePoint now) const;

    Duration minInterval_;
    Duration maxRetry_;
    bool requested_ = false;
    bool continuing_ = false;
    bool stepFailed_ = false;  // a step of the sync under way failed
    std::optional<TimePoint> retryAt_;
    Duration retryDelay_ = std::chrono::seconds(1);
    // Token bucket: tokens_ as of lastRefill_.
    mutable double tokens_ = 2;
    mutable std::optional<TimePoint> lastRefill_;
};

}  // namespace kipvs::proxy
