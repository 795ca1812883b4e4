#include "k8s-client/policy.h"

#include <algorithm>
#include <charconv>

namespace kipvs::k8s {

Duration Backoff::next(TimePoint now) {
    if (!lastStart_ || now - *lastStart_ > p_.resetAfter) {
        current_ = p_.initial;
    }
    lastStart_ = now;
    Duration d = current_;
    // As wait.Backoff.Step: grow for next time, capping the stored value; jitter applies to
    // the value being returned.
    auto grown =
        std::chrono::duration_cast<Duration>(std::chrono::duration<double, Duration::period>(
            static_cast<double>(current_.count()) * p_.factor));
    current_ = std::min(grown, p_.cap);
    if (p_.jitter > 0) {
        d += std::chrono::duration_cast<Duration>(std::chrono::duration<double, Duration::period>(
            static_cast<double>(d.count()) * p_.jitter * random_()));
    }
    return d;
}

TokenBucket::TokenBucket(double qps, int burst)
    : qps_(qps), burst_(std::max(1, burst)), tokens_(std::max(1, burst)) {}

Duration TokenBucket::reserve(TimePoint now) {
    if (qps_ <= 0) {
        return Duration::zero();  // rate limiting disabled
    }
    if (last_) {
        const double elapsed = std::chrono::duration<double>(now - *last_).count();
        tokens_ = std::min(burst_, tokens_ + elapsed * qps_);
    }
    last_ = now;
    tokens_ -= 1.0;
    if (tokens_ >= 0) {
        return Duration::zero();
    }
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(-tokens_ / qps_));
}

TokenSource::TokenSource(std::string staticToken, std::string file, ReadFileFn read,
                         Duration period)
    : token_(std::move(staticToken)),
      file_(std::move(file)),
      read_(std::move(read)),
      period_(period) {}

namespace {

std::string trimSpace(std::string s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) {
        return {};
    }
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

}  // namespace

const std::string& TokenSource::token(TimePoint now) {
    if (file_.empty() || !read_) {
        return token_;
    }
    if (stale_ || !lastRead_ || now - *lastRead_ >= period_) {
        lastRead_ = now;
        stale_ = false;
        ++reads_;
        if (auto t = read_(file_)) {
            std::string fresh = trimSpace(std::move(*t));
            if (!fresh.empty()) {
                token_ = std::move(fresh);
            }
        }
    }
    return token_;
}

std::optional<int> parseRetryAfter(std::string_view value) {
    int v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || ec != std::errc() || p != value.data() + value.size() || v < 0) {
        return std::nullopt;
    }
    return v;
}

}  // namespace kipvs::k8s
