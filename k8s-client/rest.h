// The request layer (kubernetes-api.md §5, client-go rest/request.go): headers and auth, the
// client-side rate limit for lists and gets (never for watches), transparent retries, and
// decoding of error bodies into a Status.
//
// Transparent retries, at most `maxRetries` per call:
//  * 429 or any 5xx WITH an integer Retry-After: wait that many seconds, send again;
//  * a reset, EOF or timeout before the response head (every request here is a GET): wait
//    1 s, as if the server had said 500 + Retry-After: 1, send again.
// Everything else goes up to the caller as an ApiError. A 401 also marks the token stale, so
// the next request re-reads the token file.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "k8s-client/clock.h"
#include "k8s-client/policy.h"
#include "k8s-client/transport.h"

namespace kipvs::k8s {

// A failed request: an HTTP status with its (decoded) Status body, or a transport failure.
struct ApiError {
    bool transport = false;  // true: no HTTP status, see transportKind
    TransportErrorKind transportKind = TransportErrorKind::Reset;
    int status = 0;       // HTTP status (or Status.code from an in-band ERROR event)
    std::string reason;   // Status.reason: Expired, Gone, Forbidden, TooManyRequests, ...
    std::string message;  // Status.message, or the text body (at most 2048 bytes)
    std::vector<std::string> causes;  // details.causes[].reason
    std::optional<int> retryAfter;    // seconds

    // 410 with reason Expired or Gone (or no Status body at all).
    bool isExpired() const;
    // 504 "Too large resource version" (cause ResourceVersionTooLarge).
    bool isTooLargeResourceVersion() const;
    // "410 Expired: too old resource version: 5 (10)" / "connection refused: connect ..."
    std::string describe() const;
};

// Builds an ApiError from an HTTP status, content type and body (a Status if it parses).
ApiError apiErrorFromResponse(int status, std::string_view contentType, std::string_view body,
                              std::string_view retryAfterHeader);
// Builds an ApiError from the `object` of an in-band ERROR event; nullopt when it is not a
// Status.
std::optional<ApiError> apiErrorFromStatusJson(std::string_view json);

// What a caller of RestClient::get receives. The same rules as ResponseSink: calls never come
// from inside get(), and destroying the Call stops them.
class RestStream {
  public:
    virtual ~RestStream() = default;
    // A 200 response head arrived (for a watch: the watch is established).
    virtual void onOpen() = 0;
    virtual void onData(std::string_view bytes) = 0;
    // The 200 body ended: cleanly (nullptr) or with a transport error.
    virtual void onClose(const TransportError* error) = 0;
    // No 200 response, after any transparent retries.
    virtual void onFailed(const ApiError& error) = 0;
};

struct RestOptions {
    std::string userAgent = "kube-ipvs/0.0.0 (linux/amd64)";
    int maxRetries = 10;
    // The wait before re-sending after a reset/EOF/timeout with no response.
    Duration connectionRetryDelay = std::chrono::seconds(1);
    Duration headerTimeout = std::chrono::seconds(60);
    Duration bodyIdleTimeout = std::chrono::seconds(60);
};

// Hooks for the request layer's own events (the client forwards them to its Observer).
struct RestHooks {
    // A transparent retry is scheduled after `delay` because of `error`.
    std::function<void(std::string_view target, const ApiError& error, Duration delay)> onRetry;
};

class RestClient {
  public:
    class Call {
      public:
        virtual ~Call() = default;
    };

    RestClient(std::shared_ptr<Transport> transport, Clock& clock, TokenSource* tokens,
               TokenBucket* limiter, RestOptions options, RestHooks hooks = {});

    // GET `target` (path + query, without the server's path prefix, which is added here).
    // `watch` requests skip the rate limit and use `watchIdleTimeout` between body bytes.
    std::unique_ptr<Call> get(std::string target, bool watch, Duration watchIdleTimeout,
                              RestStream& stream);

    // Path prefix of the server URL ("" or "/prefix").
    void setPathPrefix(std::string prefix) { prefix_ = std::move(prefix); }

  private:
    class CallImpl;
    std::shared_ptr<Transport> transport_;
    Clock& clock_;
    TokenSource* tokens_;
    TokenBucket* limiter_;
    RestOptions options_;
    RestHooks hooks_;
    std::string prefix_;
};

// Percent-encodes a query value as Go's url.QueryEscape does.
std::string queryEscape(std::string_view s);

}  // namespace kipvs::k8s
