#include "proxy/http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <charconv>
#include <chrono>
#include <map>
#include <optional>

#include "ipvs/net.h"

namespace kipvs::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr std::size_t kMaxConnections = 128;
constexpr std::size_t kHeaderLimit = 8 * 1024;
constexpr std::uint64_t kBodyLimit = 64 * 1024;
}  // namespace

Result<std::pair<std::string, std::uint16_t>> splitHostPort(const std::string& hostPort) {
    const auto colon = hostPort.rfind(':');
    if (colon == std::string::npos) {
        return Error::invalid(hostPort + ": not ip:port");
    }
    std::string host = hostPort.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const auto portText = hostPort.substr(colon + 1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
    if (ec != std::errc() || p != portText.data() + portText.size() || port > 65535 ||
        !net::IpAddress::parse(host)) {
        return Error::invalid(hostPort + ": not ip:port");
    }
    return std::make_pair(host, static_cast<std::uint16_t>(port));
}

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
    Impl(asio::io_context& io, HttpHandler h, HttpTimeouts t)
        : io(io), acceptor(io), handler(std::move(h)), timeouts(t) {}

    class Session : public std::enable_shared_from_this<Session> {
      public:
        Session(std::shared_ptr<Impl> owner, tcp::socket s)
            : owner_(std::move(owner)), stream_(std::move(s)) {}

        void start() { read(); }
        // Waiting for (the rest of) a request since this time, or nullopt while answering.
        std::optional<std::chrono::steady_clock::time_point> waitingSince() const {
            return waitingSince_;
        }
        void stop() {
            beast::error_code ec;
            stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
            stream_.close();
        }

      private:
        void read() {
            waitingSince_ = std::chrono::steady_clock::now();
            parser_.emplace();
            parser_->header_limit(kHeaderLimit);
            parser_->body_limit(kBodyLimit);
            stream_.expires_after(owner_->timeouts.read);
            http::async_read(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                 self->onRead(ec);
                             });
        }

        void onRead(beast::error_code ec) {
            if (ec) {
                finish();
                return;
            }
            waitingSince_.reset();
            const auto& req = parser_->get();
            HttpRequest r;
            r.method = std::string(req.method_string());
            r.target = std::string(req.target());
            beast::error_code lec;
            const auto local = stream_.socket().local_endpoint(lec).address();
            r.localIsV6 = !lec && local.is_v6() && !local.to_v6().is_v4_mapped();
            HttpResponse out = owner_->handler ? owner_->handler(r) : HttpResponse::notFound();
            auto res = std::make_shared<http::response<http::string_body>>();
            res->version(req.version());
            res->result(static_cast<unsigned>(out.status));
            res->set(http::field::server, "kube-ipvs");
            res->set(http::field::content_type, out.contentType);
            for (const auto& [k, v] : out.headers) {
                res->set(k, v);
            }
            res->keep_alive(req.keep_alive());
            const auto length = out.body.size();
            if (req.method() != http::verb::head) {
                res->body() = std::move(out.body);
            }
            res->prepare_payload();
            if (req.method() == http::verb::head) {
                res->content_length(length);
            }
            const bool keep = res->keep_alive();
            // Its own deadline: the read's would cut a large reply short.
            stream_.expires_after(owner_->timeouts.write);
            http::async_write(
                stream_, *res,
                [self = shared_from_this(), res, keep](beast::error_code wec, std::size_t) {
                    if (wec || !keep) {
                        self->finish();
                        return;
                    }
                    self->read();
                });
        }

        void finish() {
            stop();
            owner_->sessions.erase(this);
        }

        std::shared_ptr<Impl> owner_;
        beast::tcp_stream stream_;
        beast::flat_buffer buffer_;
        std::optional<http::request_parser<http::string_body>> parser_;
        std::optional<std::chrono::steady_clock::time_point> waitingSince_;
    };

    // At the connection limit, the session that has waited longest for a request makes room,
    // as a new connection's probe is the one to answer: refusing new ones instead let anyone
    // who holds the limit's idle connections fail the kubelet's and load balancers' probes.
    // False when every session is answering.
    bool evictOldestWaiting() {
        Session* oldest = nullptr;
        std::chrono::steady_clock::time_point since{};
        for (const auto& [raw, weak] : sessions) {
            const auto s = weak.lock();
            const auto w = s ? s->waitingSince() : std::nullopt;
            if (w && (oldest == nullptr || *w < since)) {
                oldest = raw;
                since = *w;
            }
        }
        if (oldest == nullptr) {
            return false;
        }
        if (auto s = sessions[oldest].lock()) {
            s->stop();  // its read ends with an error and finish() erases it
        }
        sessions.erase(oldest);
        return true;
    }

    void accept() {
        acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
            if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) {
                return;
            }
            if (!ec) {
                if (self->sessions.size() >= kMaxConnections && !self->evictOldestWaiting()) {
                    beast::error_code ignored;
                    s.close(ignored);
                } else {
                    auto session = std::make_shared<Session>(self, std::move(s));
                    self->sessions.emplace(session.get(), session);
                    session->start();
                }
            }
            self->accept();
        });
    }

    asio::io_context& io;
    tcp::acceptor acceptor;
    HttpHandler handler;
    HttpTimeouts timeouts;
    std::map<Session*, std::weak_ptr<Session>> sessions;
};

HttpServer::HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
    close();
}

Result<std::unique_ptr<HttpServer>> HttpServer::listen(asio::io_context& io,
                                                       const std::string& hostPort,
                                                       HttpHandler handler, HttpTimeouts timeouts) {
    auto hp = splitHostPort(hostPort);
    if (!hp) {
        return hp.error();
    }
    beast::error_code ec;
    const auto addr = asio::ip::make_address(hp->first, ec);
    if (ec) {
        return Error::invalid(hostPort + ": " + ec.message());
    }
    auto impl = std::make_shared<Impl>(io, std::move(handler), timeouts);
    const tcp::endpoint ep(addr, hp->second);
    impl->acceptor.open(ep.protocol(), ec);
    if (!ec) {
        impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec && addr.is_v6()) {
        // "[::]:port" serves IPv4 too, as Go's wildcard listener does.
        impl->acceptor.set_option(asio::ip::v6_only(false), ec);
    }
    if (!ec) {
        impl->acceptor.bind(ep, ec);
    }
    if (!ec) {
        impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        return Error(ec, "listen on " + hostPort + ": " + ec.message());
    }
    impl->accept();
    return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

std::uint16_t HttpServer::port() const {
    beast::error_code ec;
    const auto ep = impl_->acceptor.local_endpoint(ec);
    return ec ? 0 : ep.port();
}

void HttpServer::close() {
    if (!impl_) {
        return;
    }
    beast::error_code ec;
    impl_->acceptor.close(ec);
    auto sessions = std::move(impl_->sessions);
    for (auto& [ptr, weak] : sessions) {
        if (auto s = weak.lock()) {
            s->stop();
        }
    }
    impl_->handler = nullptr;
}

}  // namespace kipvs::proxy
