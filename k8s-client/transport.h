// The HTTP edge of the client, as a small interface: the real one speaks HTTP/1.1 over TCP or
// TLS (http_transport.h); unit tests use a scripted fake. Everything above it (retries, auth,
// rate limits, the reflector) is pure code over this interface and an injected Clock.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "k8s-client/clock.h"

namespace kipvs::k8s {

struct HttpRequest {
    // Path and query, including the server's path prefix ("/prefix/api/v1/services?...").
    std::string target;
    // Every header but Host (the transport adds it).
    std::vector<std::pair<std::string, std::string>> headers;
    // Longest wait for the response headers.
    Duration headerTimeout = std::chrono::seconds(60);
    // Longest silence while reading the body. For a watch this is longer than the server's
    // timeoutSeconds, so that a quiet collection is not mistaken for a dead connection.
    Duration bodyIdleTimeout = std::chrono::seconds(60);
};

struct HttpResponseHead {
    int status = 0;
    std::string contentType;
    std::string retryAfter;  // raw header value; empty when absent
};

enum class TransportErrorKind {
    ConnectionRefused,  // nothing listens: a watch backs off and re-watches
    Connect,            // resolve or connect failed otherwise
    Tls,                // handshake or certificate verification failed
    Timeout,            // a deadline of ours expired
    Reset,              // reset, EOF or truncated message from the server
    Protocol,           // not HTTP we can read
};

struct TransportError {
    TransportErrorKind kind = TransportErrorKind::Reset;
    std::string message;
};

std::string_view transportErrorKindName(TransportErrorKind k);

// Receives one response. Calls come from the transport's thread, never from inside send(),
// in the order onHead, onData*, onDone; or onDone alone when no response head arrived.
class ResponseSink {
  public:
    virtual ~ResponseSink() = default;
    virtual void onHead(const HttpResponseHead& head) = 0;
    virtual void onData(std::string_view bytes) = 0;
    // Last call. `error` null: the body ended as HTTP says it ends (Content-Length reached or
    // the final chunk read).
    virtual void onDone(const TransportError* error) = 0;
};

// Destroying the handle cancels the request: no sink call happens after that, even when the
// handle is destroyed from inside a sink call.
class RequestHandle {
  public:
    virtual ~RequestHandle() = default;
};

class Transport {
  public:
    virtual ~Transport() = default;
    // Sends a GET. The transport keeps `sink` alive for as long as it may call it.
    virtual std::unique_ptr<RequestHandle> get(HttpRequest request,
                                               std::shared_ptr<ResponseSink> sink) = 0;
};

}  // namespace kipvs::k8s
