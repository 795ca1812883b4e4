#include "proxy/scheduler.h"

#include <algorithm>

namespace kipvs::proxy {

namespace {
constexpr double kBurst = 2;
constexpr SyncScheduler::Duration kFirstRetry = std::chrono::seconds(1);
}  // namespace

SyncScheduler::SyncScheduler(Duration minInterval, Duration maxRetry)
    : minInterval_(minInterval), maxRetry_(std::max(maxRetry, kFirstRetry)) {}

void SyncScheduler::request() {
    requested_ = true;
}

void SyncScheduler::refill(TimePoint now) const {
    if (minInterval_ <= Duration::zero()) {
        tokens_ = kBurst;
        return;
    }
    if (lastRefill_) {
        const double earned = std::chrono::duration<double>(now - *lastRefill_).count() /
                              std::chrono::duration<double>(minInterval_).count();
        tokens_ = std::min(kBurst, tokens_ + earned);
    }
    lastRefill_ = now;
}

std::optional<SyncScheduler::TimePoint> SyncScheduler::next(TimePoint now) const {
    if (continuing_) {
        return now;
    }
    std::optional<TimePoint> at;
    if (requested_) {
        refill(now);
        if (tokens_ >= 1) {
            at = now;
        } else {
            const double missing = 1 - tokens_;
            at = now + std::chrono::duration_cast<Duration>(missing * minInterval_);
        }
    }
    if (retryAt_ && (!at || *retryAt_ < *at)) {
        // A retry does not wait for tokens: it is already spaced by its own delay.
        at = std::max(*retryAt_, now);
    }
    return at;
}

void SyncScheduler::ran(TimePoint now, bool failed, bool more) {
    if (!continuing_) {
        // A new sync (not the continuation of a bounded one) spends a token.
        refill(now);
        tokens_ = std::max(0.0, tokens_ - 1);
    }
    requested_ = false;
    continuing_ = more;
    stepFailed_ = stepFailed_ || failed;
    if (more) {
        return;
    }
    failed = stepFailed_;
    stepFailed_ = false;
    if (failed) {
        retryAt_ = now + retryDelay_;
        retryDelay_ = std::min(retryDelay_ * 2, maxRetry_);
    } else {
        retryAt_.reset();
        retryDelay_ = kFirstRetry;
    }
}

}  // namespace kipvs::proxy
