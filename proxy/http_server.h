// A small HTTP/1.1 server for the health, metrics and health-check node port endpoints.
//
// Requests are read with a deadline and size limits (8 KiB of headers, no body needed), the
// handler answers synchronously on the io_context thread, and keep-alive is honoured. The
// number of open connections is capped, so a scraper that never hangs up cannot exhaust
// file descriptors.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ipvs/error.h"

namespace boost::asio {
class io_context;
}

namespace kipvs::proxy {

struct HttpRequest {
    std::string method;
    std::string target;  // path and query, as sent
    // The family of the address the client connected to (an IPv4-mapped IPv6 address is IPv4),
    // so that one dual-stack listener can answer per family.
    bool localIsV6 = false;
    std::string path() const { return target.substr(0, target.find('?')); }
};

struct HttpResponse {
    int status = 200;
    std::string contentType = "text/plain; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;

    static HttpResponse notFound() {
        HttpResponse r;
        r.status = 404;
        r.body = "404 page not found\n";
        return r;
    }
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpTimeouts {
    // A request must arrive within `read` of the connection's start or of the previous reply.
    std::chrono::milliseconds read{10000};
    // A reply must be taken within `write`: /metrics with per-Service counters at 44,000
    // Services is 25 MB, which a slow scraper reads for longer than a request may take.
    std::chrono::milliseconds write{60000};
};

class HttpServer {
  public:
    // Binds "ip:port" ("[::]:10256", "0.0.0.0:0" for any free port) and starts accepting.
    static Result<std::unique_ptr<HttpServer>> listen(boost::asio::io_context& io,
                                                      const std::string& hostPort,
                                                      HttpHandler handler,
                                                      HttpTimeouts timeouts = {});
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    std::uint16_t port() const;
    // Stops accepting and closes open connections.
    void close();

  private:
    struct Impl;
    explicit HttpServer(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;
};

// "ip:port" -> (ip, port); accepts "[v6]:port". nullopt-like error for anything else.
Result<std::pair<std::string, std::uint16_t>> splitHostPort(const std::string& hostPort);

}  // namespace kipvs::proxy
