#include "k8s-client/client.h"

#include "k8s-client/http_transport.h"
#include "k8s-client/reflector.h"
#include "k8s-client/rest.h"

namespace kipvs::k8s {

std::string userAgent(const std::string& version) {
#if defined(__x86_64__)
    constexpr const char* kArch = "amd64";
#elif defined(__aarch64__)
    constexpr const char* kArch = "arm64";
#else
    constexpr const char* kArch = "unknown";
#endif
    return "kube-ipvs/" + version + " (linux/" + kArch + ")";
}

struct Client::Impl {
    Impl(Environment e, const ClientConfig& config, const ClientOptions& o, Observer* obs)
        : env(std::move(e)),
          options(o),
          observer(obs),
          tokens(config.token, config.tokenFile, env.readFile, o.tokenRefresh),
          limiter(o.qps, o.burst),
          rest(env.transport, *env.clock, &tokens, &limiter, restOptions(o), hooks(obs)) {
        rest.setPathPrefix(config.server.pathPrefix);
    }

    static RestOptions restOptions(const ClientOptions& o) {
        RestOptions r;
        r.userAgent = userAgent(o.version);
        r.maxRetries = o.maxRetries;
        r.connectionRetryDelay = o.connectionRetryDelay;
        r.headerTimeout = o.headerTimeout;
        r.bodyIdleTimeout = o.bodyIdleTimeout;
        return r;
    }

    static RestHooks hooks(Observer* obs) {
        RestHooks h;
        if (obs != nullptr) {
            h.onRetry = [obs](std::string_view target, const ApiError& e, Duration delay) {
                obs->onRetry(target, e.describe(), std::chrono::duration<double>(delay).count());
            };
        }
        return h;
    }

    ReflectorOptions reflectorOptions() const {
        ReflectorOptions r;
        r.watchList = options.watchList;
        r.pageSize = options.pageSize;
        r.minWatchTimeout = options.minWatchTimeout;
        r.watchIdleSlack = options.watchIdleSlack;
        r.veryShortWatch = options.veryShortWatch;
        r.backoff = options.backoff;
        return r;
    }

    Environment env;
    ClientOptions options;
    Observer* observer;
    TokenSource tokens;
    TokenBucket limiter;
    RestClient rest;
};

Client::Client(Environment env, const ClientConfig& config, const ClientOptions& options,
               Observer* observer)
    : impl_(std::make_unique<Impl>(std::move(env), config, options, observer)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::create(boost::asio::io_context& ioc,
                                               const ClientConfig& config,
                                               const ClientOptions& options, Observer* observer) {
    TransportOptions t;
    t.connectTimeout = options.connectTimeout;
    t.handshakeTimeout = options.handshakeTimeout;
    t.writeTimeout = options.writeTimeout;
    t.preferChaCha = options.preferChaCha;
    auto transport = makeHttpTransport(ioc, config, t);
    if (!transport) {
        return transport.error();
    }
    Environment env;
    env.transport = *transport;
    env.clock = std::shared_ptr<Clock>(makeAsioClock(ioc));
    env.random = makeRandom(options.randomSeed);
    return std::make_unique<Client>(std::move(env), config, options, observer);
}

std::unique_ptr<Informer<Service>> Client::watchServices(EventHandler<Service>& handler) {
    ResourceSpec spec{Kind::Service, "/api/v1/services", std::string(kProxyLabelSelector), ""};
    return makeReflector<Service>(impl_->rest, *impl_->env.clock, impl_->env.random,
                                  impl_->observer, std::move(spec), impl_->reflectorOptions(),
                                  handler);
}

std::unique_ptr<Informer<EndpointSlice>> Client::watchEndpointSlices(
    EventHandler<EndpointSlice>& handler) {
    ResourceSpec spec{Kind::EndpointSlice, "/apis/discovery.k8s.io/v1/endpointslices",
                      std::string(kProxyLabelSelector), ""};
    return makeReflector<EndpointSlice>(impl_->rest, *impl_->env.clock, impl_->env.random,
                                        impl_->observer, std::move(spec), impl_->reflectorOptions(),
                                        handler);
}

std::unique_ptr<Informer<Node>> Client::watchNode(const std::string& nodeName,
                                                  EventHandler<Node>& handler) {
    ResourceSpec spec{Kind::Node, "/api/v1/nodes", "", "metadata.name=" + nodeName};
    return makeReflector<Node>(impl_->rest, *impl_->env.clock, impl_->env.random, impl_->observer,
                               std::move(spec), impl_->reflectorOptions(), handler);
}

Clock& Client::clock() {
    return *impl_->env.clock;
}

}  // namespace kipvs::k8s
