// The client's timing policies as pure code over an injected clock (kubernetes-api.md §4-§6):
// the reflector's backoff, the client-side rate limit of lists and gets, and the bearer token
// that is re-read from its file.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "k8s-client/clock.h"
#include "k8s-client/config.h"

namespace kipvs::k8s {

struct BackoffParams {
    Duration initial = std::chrono::milliseconds(800);
    Duration cap = std::chrono::seconds(30);
    double factor = 2.0;
    double jitter = 1.0;  // each wait is d + rand*jitter*d
    // A backoff that was not used for this long starts again from `initial`.
    Duration resetAfter = std::chrono::minutes(2);
};

// client-go's exponential backoff manager (NewExponentialBackoffManager(800ms, 30s, 2m, 2.0,
// 1.0)): 0.8, 1.6, 3.2, ... capped at 30 s before jitter.
class Backoff {
  public:
    Backoff(BackoffParams p, RandomFn random) : p_(p), random_(std::move(random)) {}
    // The next wait, counted from `now`.
    Duration next(TimePoint now);

  private:
    BackoffParams p_;
    RandomFn random_;
    Duration current_{};
    std::optional<TimePoint> lastStart_;
};

// golang.org/x/time/rate as client-go uses it: `burst` tokens, refilled at `qps` per second;
// a request takes one token and waits if the bucket is in debt.
class TokenBucket {
  public:
    TokenBucket(double qps, int burst);
    // Reserves a token at `now`; returns how long the caller must wait before sending.
    Duration reserve(TimePoint now);

  private:
    double qps_;
    double burst_;
    double tokens_;
    std::optional<TimePoint> last_;
};

// A bearer token, from a file (re-read every `period`, and at the next request after a 401)
// or static. A failed or empty re-read keeps the previous token, as client-go does.
class TokenSource {
  public:
    TokenSource(std::string staticToken, std::string file, ReadFileFn read,
                Duration period = std::chrono::minutes(1));
    // The token to send at `now`; "" for none.
    const std::string& token(TimePoint now);
    // After a 401: the next token() re-reads the file.
    void reset() { stale_ = true; }
    std::size_t reads() const { return reads_; }

  private:
    std::string token_;
    std::string file_;
    ReadFileFn read_;
    Duration period_;
    std::optional<TimePoint> lastRead_;
    bool stale_ = true;
    std::size_t reads_ = 0;
};

// Retry-After as client-go reads it: a non-negative integer number of seconds; anything else
// (an HTTP date, garbage) is no Retry-After at all.
std::optional<int> parseRetryAfter(std::string_view value);

}  // namespace kipvs::k8s
