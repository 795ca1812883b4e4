// The HTTP server on loopback, through a real TCP client.
#include <catch2/catch.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "proxy/http_server.h"

using namespace kipvs::proxy;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Sends raw request bytes and returns everything the server wrote until it closed.
std::string exchange(std::uint16_t port, const std::string& raw,
                     const std::string& host = "127.0.0.1") {
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address(host), port));
    asio::write(s, asio::buffer(raw));
    std::string out;
    boost::system::error_code ec;
    char buf[4096];
    for (;;) {
        const auto n = s.read_some(asio::buffer(buf), ec);
        out.append(buf, n);
        if (ec) {
            break;
        }
    }
    return out;
}

struct Running {
    asio::io_context io;
    std::unique_ptr<HttpServer> server;
    std::thread thread;
    explicit Running(HttpHandler h, HttpTimeouts t = {}, const std::string& at = "127.0.0.1:0") {
        auto r = HttpServer::listen(io, at, std::move(h), t);
        REQUIRE(r.has_value());
        server = std::move(*r);
        thread = std::thread([this] { io.run(); });
    }
    ~Running() {
        asio::post(io, [this] { server->close(); });
        io.stop();
        thread.join();
    }
};

}  // namespace

TEST_CASE("the server answers with the handler's status, type, headers and body", "[http]") {
    Running r([](const HttpRequest& req) {
        if (req.path() != "/healthz") {
            return HttpResponse::notFound();
        }
        HttpResponse res;
        res.contentType = "application/json";
        res.headers.emplace_back("X-Content-Type-Options", "nosniff");
        res.body = "{\"method\":\"" + req.method + "\",\"target\":\"" + req.target + "\"}";
        return res;
    });
    const auto ok = exchange(r.server->port(),
                             "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    INFO(ok);
    CHECK(ok.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(ok.find("Content-Type: application/json\r\n") != std::string::npos);
    CHECK(ok.find("X-Content-Type-Options: nosniff\r\n") != std::string::npos);
    CHECK(ok.find("{\"method\":\"GET\",\"target\":\"/healthz?x=1\"}") != std::string::npos);

    const auto missing =
        exchange(r.server->port(), "GET /debug HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    CHECK(missing.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
}

TEST_CASE("keep-alive serves several requests on one connection", "[http]") {
    int calls = 0;
    Running r([&](const HttpRequest&) {
        ++calls;
        HttpResponse res;
        res.body = "n=" + std::to_string(calls);
        return res;
    });
    const auto out = exchange(r.server->port(),
                              "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    CHECK(out.find("n=1") != std::string::npos);
    CHECK(out.find("n=2") != std::string::npos);
}

TEST_CASE("a large reply taken slowly is sent whole: the read deadline does not cut it", "[http]") {
    // /metrics with per-Service counters at 44,000 Services is 25 MB; under load a scraper
    // took longer than the request deadline to read it and got a truncated body.
    const std::string big(16 * 1024 * 1024, 'x');
    HttpTimeouts t;
    t.read = std::chrono::milliseconds(200);
    t.write = std::chrono::milliseconds(20000);
    Running r(
        [&](const HttpRequest&) {
            HttpResponse res;
            res.body = big;
            return res;
        },
        t);
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), r.server->port()));
    asio::write(s, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: a\r\n"
                                            "Connection: close\r\n\r\n")));
    // Socket buffers hold a small part of 16 MiB: the write is still going on when the read
    // deadline passes.
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    std::string out;
    boost::system::error_code ec;
    std::vector<char> buf(1 << 20);
    for (;;) {
        const auto n = s.read_some(asio::buffer(buf), ec);
        out.append(buf.data(), n);
        if (ec) {
            break;
        }
    }
    const auto head = out.find("\r\n\r\n");
    REQUIRE(head != std::string::npos);
    CHECK(out.size() - head - 4 == big.size());
}

TEST_CASE("garbage and oversized requests are refused without calling the handler", "[http]") {
    int calls = 0;
    Running r([&](const HttpRequest&) {
        ++calls;
        return HttpResponse{};
    });
    exchange(r.server->port(), "NOT HTTP AT ALL\r\n\r\n");
    exchange(r.server->port(),
             "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(20000, 'x') + "\r\n\r\n");
    CHECK(calls == 0);
    // Still serving afterwards.
    const auto ok = exchange(r.server->port(), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK(ok.rfind("HTTP/1.1 200", 0) == 0);
    CHECK(calls == 1);
}

TEST_CASE("listen reports a bad or busy address", "[http]") {
    asio::io_context io;
    CHECK_FALSE(HttpServer::listen(io, "localhost:80", nullptr).has_value());
    CHECK_FALSE(HttpServer::listen(io, "127.0.0.1:70000", nullptr).has_value());
    auto a = HttpServer::listen(io, "127.0.0.1:0", nullptr);
    REQUIRE(a.has_value());
    auto b = HttpServer::listen(io, "127.0.0.1:" + std::to_string((*a)->port()), nullptr);
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().message.find("listen on 127.0.0.1:") == 0);
}

TEST_CASE("at the connection limit, the longest-waiting connection makes room for a new one",
          "[http]") {
    Running r([](const HttpRequest&) {
        HttpResponse res;
        res.body = "ok";
        return res;
    });
    asio::io_context cio;
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), r.server->port());
    // Connections that never send a request, as a client holding the limit would keep them.
    std::vector<tcp::socket> idle;
    for (int i = 0; i < 128; ++i) {
        idle.emplace_back(cio).connect(ep);
        if (i == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));  // clearly the oldest
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // all accepted
    const auto out = exchange(r.server->port(), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK(out.rfind("HTTP/1.1 200", 0) == 0);
    // The oldest was closed for it (end of stream at once, not a 10 s read deadline later);
    // the newest is still open.
    idle.front().non_blocking(true);
    idle.back().non_blocking(true);
    char b = 0;
    boost::system::error_code ec;
    idle.front().read_some(asio::buffer(&b, 1), ec);
    CHECK(ec == asio::error::eof);
    idle.back().read_some(asio::buffer(&b, 1), ec);
    CHECK(ec == asio::error::would_block);
}

TEST_CASE("a dual-stack listener tells the handler which family the client reached", "[http]") {
    Running r(
        [](const HttpRequest& req) {
            HttpResponse res;
            res.body = req.localIsV6 ? "v6" : "v4";
            return res;
        },
        {}, "[::]:0");
    const std::string get = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    const auto v4 = exchange(r.server->port(), get);
    CHECK(v4.substr(v4.size() - 2) == "v4");  // IPv4-mapped on the IPv6 socket
    asio::io_context io;
    tcp::socket probe(io);
    boost::system::error_code ec;
    probe.connect(tcp::endpoint(asio::ip::make_address("::1"), r.server->port()), ec);
    if (ec) {
        WARN("no IPv6 loopback here (" << ec.message() << "): the IPv6 half is not checked");
        return;
    }
    probe.close();
    const auto v6 = exchange(r.server->port(), get, "::1");
    CHECK(v6.substr(v6.size() - 2) == "v6");
}
