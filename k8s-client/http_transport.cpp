#include "k8s-client/http_transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <array>
#include <vector>

#include "ipvs/net.h"

namespace kipvs::k8s {

std::string_view transportErrorKindName(TransportErrorKind k) {
    switch (k) {
        case TransportErrorKind::ConnectionRefused:
            return "connection refused";
        case TransportErrorKind::Connect:
            return "connect failed";
        case TransportErrorKind::Tls:
            return "TLS failed";
        case TransportErrorKind::Timeout:
            return "timed out";
        case TransportErrorKind::Reset:
            return "connection reset";
        case TransportErrorKind::Protocol:
            return "protocol error";
    }
    return "?";
}

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// Phases of one request, to classify an error by where it happened.
enum class Phase { Resolve, Connect, Handshake, Write, Header, Body };

TransportErrorKind classify(const error_code& ec, Phase phase) {
    if (ec == beast::error::timeout) {
        return TransportErrorKind::Timeout;
    }
    if (ec == asio::error::connection_refused) {
        return TransportErrorKind::ConnectionRefused;
    }
    if (phase == Phase::Resolve || phase == Phase::Connect) {
        return TransportErrorKind::Connect;
    }
    if (phase == Phase::Handshake) {
        return TransportErrorKind::Tls;
    }
    if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
        return TransportErrorKind::Protocol;
    }
    return TransportErrorKind::Reset;
}

std::string_view phaseName(Phase p) {
    switch (p) {
        case Phase::Resolve:
            return "resolve";
        case Phase::Connect:
            return "connect";
        case Phase::Handshake:
            return "TLS handshake";
        case Phase::Write:
            return "write request";
        case Phase::Header:
            return "read response headers";
        case Phase::Body:
            return "read response body";
    }
    return "?";
}

std::string opensslErrors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        std::array<char, 256> buf{};
        ERR_error_string_n(e, buf.data(), buf.size());
        if (!out.empty()) {
            out += "; ";
        }
        out += buf.data();
    }
    return out;
}

class ConnBase;
class TransportImpl;

struct RequestState {
    HttpRequest request;
    std::shared_ptr<ResponseSink> sink;
    bool cancelled = false;
    bool staleRetried = false;
    std::weak_ptr<ConnBase> conn;
};

class ConnBase : public std::enable_shared_from_this<ConnBase> {
  public:
    virtual ~ConnBase() = default;
    // Shared::tlsGeneration when it was made: a connection from before a client certificate
    // change is not reused.
    std::uint64_t tlsGeneration = 0;
    virtual void run(std::shared_ptr<RequestState> st, bool reused) = 0;
    virtual void abort() = 0;
};

class Handle : public RequestHandle {
  public:
    explicit Handle(std::shared_ptr<RequestState> st) : st_(std::move(st)) {}
    ~Handle() override {
        st_->cancelled = true;
        if (auto c = st_->conn.lock()) {
            c->abort();
        }
    }

  private:
    std::shared_ptr<RequestState> st_;
};

struct Shared {
    asio::io_context& ioc;
    ClientConfig config;
    TransportOptions options;
    std::optional<ssl::context> tls;
    bool preferChaCha = false;
    // The client certificate and key files as last loaded (inode, size, mtime); "" before.
    std::string certStamp;
    std::uint64_t tlsGeneration = 0;  // bumped when they are loaded again
};

Result<void> loadTls(ssl::context& ctx, const ClientConfig& cfg, bool preferChaCha);

std::string fileStamp(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        return "-";
    }
    return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

// Client certificate files are read again when they change (stat follows a kubelet-style
// "-current.pem" symlink to the file it names), before each request: the API server checks
// the certificate's validity on every request, so the idle connections made with the old pair
// are closed and not reused (client-go closes its connections too). Requests running keep
// theirs; a watch was authenticated when it began. The old context may be destroyed while they
// run: each SSL object holds its own reference to the OpenSSL context, and none of its asio
// callbacks (verify, password) is set. A pair that does not load, caught mid-write or with a
// key that does not match yet, leaves the old one in use; the next request tries again.
// Returns whether the pair changed.
bool refreshClientCert(Shared& sh) {
    const auto& cfg = sh.config;
    if (!sh.tls || cfg.clientCertFile.empty() || cfg.clientKeyFile.empty()) {
        return false;
    }
    const auto stamp = fileStamp(cfg.clientCertFile) + "|" + fileStamp(cfg.clientKeyFile);
    if (stamp == sh.certStamp) {
        return false;
    }
    auto cert = readFile(cfg.clientCertFile);
    auto key = readFile(cfg.clientKeyFile);
    if (!cert || !key) {
        return false;
    }
    if (*cert == cfg.clientCertPem && *key == cfg.clientKeyPem) {
        sh.certStamp = stamp;  // touched, or the first look: the context in use is right
        return false;
    }
    ClientConfig next = cfg;
    next.clientCertPem = std::move(*cert);
    next.clientKeyPem = std::move(*key);
    ssl::context fresh(ssl::context::tls_client);
    if (!loadTls(fresh, next, sh.preferChaCha)) {
        return false;
    }
    *sh.tls = std::move(fresh);
    sh.config = std::move(next);
    sh.certStamp = stamp;
    ++sh.tlsGeneration;
    return true;
}

class TransportImpl : public Transport, public std::enable_shared_from_this<TransportImpl> {
  public:
    explicit TransportImpl(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

    std::unique_ptr<RequestHandle> get(HttpRequest request,
                                       std::shared_ptr<ResponseSink> sink) override {
        auto st = std::make_shared<RequestState>();
        st->request = std::move(request);
        st->sink = std::move(sink);
        start(st);
        return std::make_unique<Handle>(st);
    }

    // Runs `st` on an idle connection, or a new one (`fresh`: never an idle one).
    void start(const std::shared_ptr<RequestState>& st, bool fresh = false);

    void release(std::shared_ptr<ConnBase> c) {
        if (idle_.size() < shared_->options.maxIdleConnections &&
            c->tlsGeneration == shared_->tlsGeneration) {
            idle_.push_back(std::move(c));
        }
    }

  private:
    std::shared_ptr<Shared> shared_;
    std::vector<std::shared_ptr<ConnBase>> idle_;
};

template <class Stream>
class Conn : public ConnBase {
  public:
    Conn(std::shared_ptr<Shared> shared, std::weak_ptr<TransportImpl> transport, Stream stream)
        : shared_(std::move(shared)),
          transport_(std::move(transport)),
          stream_(std::move(stream)),
          resolver_(shared_->ioc),
          resolveTimer_(shared_->ioc),
          body_(64 * 1024) {
        // Beast reads at most the buffer's free capacity (512 bytes at least): left to grow
        // on its own from the response head, it stayed at a few hundred bytes, so every TLS
        // record (16 KiB) was taken out of OpenSSL in some 30 reads, each a trip through the
        // io_context (a zero-byte read to complete it) with its timer, clock reads and
        // epoll_wait: 210,000 epoll_waits and 630,000 clock reads to list 44,000
        // EndpointSlices. With room for a whole record, one read takes one record.
        buf_.reserve(kReadBufferBytes);
    }

    void run(std::shared_ptr<RequestState> st, bool reused) override {
        st_ = std::move(st);
        st_->conn = weak_from_this();
        reused_ = reused;
        const auto& r = st_->request;
        req_ = {};
        req_.method(http::verb::get);
        req_.version(11);
        req_.target(r.target);
        req_.set(http::field::host, shared_->config.server.hostHeader());
        for (const auto& [k, v] : r.headers) {
            req_.set(k, v);
        }
        req_.keep_alive(true);
        if (connected_) {
            write();
        } else {
            resolve();
        }
    }

    void abort() override {
        closed_ = true;
        error_code ignored;
        resolver_.cancel();
        resolveTimer_.cancel();
        beast::get_lowest_layer(stream_).socket().close(ignored);
    }

  private:
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

    auto self() { return std::static_pointer_cast<Conn>(shared_from_this()); }
    bool cancelled() const { return !st_ || st_->cancelled; }
    tcp::socket& socket() { return beast::get_lowest_layer(stream_).socket(); }

    void resolve() {
        const auto& server = shared_->config.server;
        if (auto ip = net::IpAddress::parse(server.host)) {
            tcp::endpoint ep(asio::ip::make_address(ip->toString()), server.port);
            std::vector<tcp::endpoint> eps{ep};
            connect(eps);
            return;
        }
        resolveTimer_.expires_after(shared_->options.connectTimeout);
        resolveTimer_.async_wait([this, s = self()](const error_code& ec) {
            if (!ec) {
                resolver_.cancel();
            }
        });
        resolver_.async_resolve(
            server.host, std::to_string(server.port),
            [this, s = self()](const error_code& ec, const tcp::resolver::results_type& res) {
                resolveTimer_.cancel();
                if (cancelled()) {
                    return;
                }
                if (ec) {
                    fail(ec, Phase::Resolve);
                    return;
                }
                std::vector<tcp::endpoint> eps;
                for (const auto& e : res) {
                    eps.push_back(e.endpoint());
                }
                connect(eps);
            });
    }

    void connect(const std::vector<tcp::endpoint>& eps) {
        auto& lowest = beast::get_lowest_layer(stream_);
        lowest.expires_after(shared_->options.connectTimeout);
        lowest.async_connect(eps, [this, s = self()](const error_code& ec, const tcp::endpoint&) {
            if (cancelled()) {
                return;
            }
            if (ec) {
                fail(ec, Phase::Connect);
                return;
            }
            error_code ignored;
            socket().set_option(tcp::no_delay(true), ignored);
            setKeepalive();
            if constexpr (kTls) {
                handshake();
            } else {
                connected_ = true;
                write();
            }
        });
    }

    // Best effort, as TCP_NODELAY: a socket that refuses still works, it only notices a dead
    // peer later.
    void setKeepalive() {
        const auto& o = shared_->options;
        const int fd = socket().native_handle();
        const int on = 1;
        const auto secs = [](Duration d) {
            return static_cast<int>(
                std::max<std::int64_t>(1, std::chrono::ceil<std::chrono::seconds>(d).count()));
        };
        const int idle = secs(o.keepaliveIdle);
        const int interval = secs(o.keepaliveInterval);
        const int probes = std::max(1, o.keepaliveProbes);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    }

    void handshake() {
        if constexpr (kTls) {
            const auto& cfg = shared_->config;
            const std::string& name =
                cfg.tlsServerName.empty() ? cfg.server.host : cfg.tlsServerName;
            SSL* ssl = stream_.native_handle();
            const bool isIp = net::IpAddress::parse(name).has_value();
            // SNI carries DNS names only (RFC 6066).
            if (!isIp && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) {
                failMessage(TransportErrorKind::Tls, "cannot set SNI: " + opensslErrors());
                return;
            }
            if (!cfg.insecureSkipTlsVerify) {
                X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                const int okName = isIp ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                                        : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
                if (okName != 1) {
                    failMessage(TransportErrorKind::Tls,
                                "cannot set the name to verify: " + opensslErrors());
                    return;
                }
            }
            beast::get_lowest_layer(stream_).expires_after(shared_->options.handshakeTimeout);
            stream_.async_handshake(
                ssl::stream_base::client, [this, s = self()](const error_code& ec) {
                    if (cancelled()) {
                        return;
                    }
                    if (ec) {
                        std::string detail;
                        const long vr = SSL_get_verify_result(stream_.native_handle());
                        if (vr != X509_V_OK) {
                            detail = std::string(" (certificate verify: ") +
                                     X509_verify_cert_error_string(vr) + ")";
                        }
                        failMessage(classify(ec, Phase::Handshake) == TransportErrorKind::Timeout
                                        ? TransportErrorKind::Timeout
                                        : TransportErrorKind::Tls,
                                    "TLS handshake with " + shared_->config.server.toString() +
                                        ": " + ec.message() + detail);
                        return;
                    }
                    connected_ = true;
                    write();
                });
        }
    }

    void write() {
        beast::get_lowest_layer(stream_).expires_after(shared_->options.writeTimeout);
        http::async_write(stream_, req_, [this, s = self()](const error_code& ec, std::size_t) {
            if (cancelled()) {
                return;
            }
            if (ec) {
                staleOrFail(ec, Phase::Write);
                return;
            }
            readHeader();
        });
    }

    void readHeader() {
        parser_.emplace();
        parser_->body_limit(boost::none);
        parser_->header_limit(1U << 20);
        beast::get_lowest_layer(stream_).expires_after(st_->request.headerTimeout);
        http::async_read_header(stream_, buf_, *parser_,
                                [this, s = self()](const error_code& ec, std::size_t) {
                                    if (cancelled()) {
                                        return;
                                    }
                                    if (ec) {
                                        staleOrFail(ec, Phase::Header);
                                        return;
                                    }
                                    HttpResponseHead head;
                                    const auto& msg = parser_->get();
                                    head.status = static_cast<int>(msg.result_int());
                                    head.contentType = std::string(msg[http::field::content_type]);
                                    head.retryAfter = std::string(msg[http::field::retry_after]);
                                    auto st = st_;
                                    st->sink->onHead(head);
                                    if (st->cancelled) {
                                        return;
                                    }
                                    readBody();
                                });
    }

    void readBody() {
        if (parser_->is_done()) {
            finish();
            return;
        }
        auto& body = parser_->get().body();
        body.data = body_.data();
        body.size = body_.size();
        beast::get_lowest_layer(stream_).expires_after(st_->request.bodyIdleTimeout);
        http::async_read_some(
            stream_, buf_, *parser_, [this, s = self()](error_code ec, std::size_t) {
                if (cancelled()) {
                    return;
                }
                if (ec == http::error::need_buffer) {
                    ec = {};
                }
                const std::size_t produced = body_.size() - parser_->get().body().size;
                if (produced > 0) {
                    auto st = st_;
                    st->sink->onData(std::string_view(body_.data(), produced));
                    if (st->cancelled) {
                        return;
                    }
                }
                if (ec) {
                    fail(ec, Phase::Body);
                    return;
                }
                readBody();
            });
    }

    void finish() {
        const bool keepAlive = parser_->keep_alive();
        auto st = std::move(st_);
        st->conn.reset();
        if (!keepAlive) {
            abort();
        }
        st->sink->onDone(nullptr);
        if (keepAlive && !closed_) {
            if (auto t = transport_.lock()) {
                t->release(shared_from_this());
            }
        }
    }

    // A kept-alive connection may have been closed by the server while idle: if nothing of
    // the response arrived, the request is sent again once on a fresh connection.
    void staleOrFail(const error_code& ec, Phase phase) {
        const bool nothingReceived = ec == http::error::end_of_stream ||
                                     ec == asio::error::connection_reset ||
                                     ec == asio::error::broken_pipe || ec == asio::error::eof;
        if (reused_ && nothingReceived && !st_->staleRetried) {
            auto st = std::move(st_);
            st->staleRetried = true;
            abort();
            if (auto t = transport_.lock()) {
                t->start(st, true);
            }
            return;
        }
        fail(ec, phase);
    }

    void fail(const error_code& ec, Phase phase) {
        failMessage(classify(ec, phase), std::string(phaseName(phase)) + " " +
                                             shared_->config.server.toString() + ": " +
                                             ec.message());
    }

    void failMessage(TransportErrorKind kind, std::string message) {
        abort();
        auto st = std::move(st_);
        if (!st || st->cancelled) {
            return;
        }
        st->conn.reset();
        TransportError err{kind, std::move(message)};
        st->sink->onDone(&err);
    }

    std::shared_ptr<Shared> shared_;
    std::weak_ptr<TransportImpl> transport_;
    Stream stream_;
    tcp::resolver resolver_;
    asio::steady_timer resolveTimer_;
    static constexpr std::size_t kReadBufferBytes = 64 * 1024;
    beast::flat_buffer buf_;
    std::optional<http::response_parser<http::buffer_body>> parser_;
    http::request<http::empty_body> req_;
    std::shared_ptr<RequestState> st_;
    std::vector<char> body_;
    bool connected_ = false;
    bool reused_ = false;
    bool closed_ = false;
};

void TransportImpl::start(const std::shared_ptr<RequestState>& st, bool fresh) {
    std::shared_ptr<ConnBase> conn;
    bool reused = false;
    if (refreshClientCert(*shared_)) {
        idle_.clear();  // made with the old client certificate
    }
    if (!fresh && !idle_.empty()) {
        conn = std::move(idle_.back());
        idle_.pop_back();
        reused = true;
    } else if (shared_->tls) {
        using TlsStream = beast::ssl_stream<beast::tcp_stream>;
        conn = std::make_shared<Conn<TlsStream>>(
            shared_, weak_from_this(), TlsStream(beast::tcp_stream(shared_->ioc), *shared_->tls));
        conn->tlsGeneration = shared_->tlsGeneration;
    } else {
        conn = std::make_shared<Conn<beast::tcp_stream>>(shared_, weak_from_this(),
                                                         beast::tcp_stream(shared_->ioc));
    }
    conn->run(st, reused);
}

Result<void> loadTls(ssl::context& ctx, const ClientConfig& cfg, bool preferChaCha) {
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    if (preferChaCha) {
        // The same suites as OpenSSL's defaults, ChaCha20-Poly1305 first. In the test guest
        // (no AES instructions) it decrypts at 164 MB/s against AES-256-GCM's 24 MB/s: 131 MB
        // of lists at 44,000 Services cost the API client 5.5 s of CPU in AES alone.
        if (SSL_CTX_set_ciphersuites(ctx.native_handle(),
                                     "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:"
                                     "TLS_AES_256_GCM_SHA384") != 1 ||
            SSL_CTX_set_cipher_list(ctx.native_handle(), "ECDHE+CHACHA20:DEFAULT") != 1) {
            return Error::invalid("TLS cipher preference: " + opensslErrors());
        }
    }
    error_code ec;
    if (cfg.insecureSkipTlsVerify) {
        ctx.set_verify_mode(ssl::verify_none);
    } else {
        ctx.set_verify_mode(ssl::verify_peer);
        if (!cfg.caPem.empty()) {
            ERR_clear_error();
            ctx.add_certificate_authority(asio::buffer(cfg.caPem), ec);
            if (ec) {
                return Error::invalid(
                    (cfg.caSource.empty() ? "certificate authority" : cfg.caSource) +
                    ": not a PEM certificate bundle: " + ec.message());
            }
        } else {
            ctx.set_default_verify_paths(ec);
            if (ec) {
                return Error::invalid("system CA roots: " + ec.message());
            }
        }
    }
    if (!cfg.clientCertPem.empty()) {
        ctx.use_certificate_chain(asio::buffer(cfg.clientCertPem), ec);
        if (ec) {
            return Error::invalid(
                (cfg.clientCertSource.empty() ? "client certificate" : cfg.clientCertSource) +
                ": not a PEM certificate: " + ec.message());
        }
        ctx.use_private_key(asio::buffer(cfg.clientKeyPem), ssl::context::pem, ec);
        if (ec) {
            return Error::invalid(
                (cfg.clientKeySource.empty() ? "client key" : cfg.clientKeySource) +
                ": not a PEM private key: " + ec.message());
        }
        if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
            return Error::invalid(
                (cfg.clientKeySource.empty() ? "client key" : cfg.clientKeySource) +
                ": does not match the client certificate");
        }
    }
    return ok();
}

}  // namespace

bool tlsPrefersChaCha() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") == 0 || __builtin_cpu_supports("pclmul") == 0;
#else
    return false;
#endif
}

Result<std::shared_ptr<Transport>> makeHttpTransport(asio::io_context& ioc,
                                                     const ClientConfig& config,
                                                     const TransportOptions& options) {
    auto shared = std::make_shared<Shared>(Shared{ioc, config, options, std::nullopt, false, {}});
    if (config.server.tls) {
        shared->preferChaCha = options.preferChaCha.value_or(tlsPrefersChaCha());
        shared->tls.emplace(ssl::context::tls_client);
        if (auto r = loadTls(*shared->tls, config, shared->preferChaCha); !r) {
            return r.error();
        }
    }
    return std::shared_ptr<Transport>(std::make_shared<TransportImpl>(std::move(shared)));
}

}  // namespace kipvs::k8s
