// The API client the daemon uses: one connection config, one request layer (auth, rate
// limit, retries), and an informer per resource.
//
//   boost::asio::io_context ioc;
//   auto cfg = k8s::resolveClientConfig(kubeconfigPath, master);      // config.h
//   k8s::ClientOptions opts;  opts.version = kVersion;  opts.qps = 5;  opts.burst = 10;
//   auto client = k8s::Client::create(ioc, *cfg, opts, &observer);
//   auto svc  = (*client)->watchServices(serviceHandler);
//   auto eps  = (*client)->watchEndpointSlices(sliceHandler);
//   auto node = (*client)->watchNode(nodeName, nodeHandler);
//   svc->start(); eps->start(); node->start();
//   ioc.run();   // handlers are called on this thread
//
// Everything runs on the one thread that runs the io_context. The client must outlive its
// informers. Boost.Asio stays out of this header (only io_context is named).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "ipvs/error.h"
#include "k8s-client/clock.h"
#include "k8s-client/config.h"
#include "k8s-client/handler.h"
#include "k8s-client/informer.h"
#include "k8s-client/observer.h"
#include "k8s-client/policy.h"
#include "k8s-client/transport.h"

namespace boost::asio {
class io_context;
}

namespace kipvs::k8s {

// The label selector kube-proxy puts on Services and EndpointSlices.
inline constexpr std::string_view kProxyLabelSelector =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

struct ClientOptions {
    // User-Agent: kube-ipvs/<version> (linux/<arch>).
    std::string version = "0.0.0";
    // Client-side rate limit of lists and gets (never watches); qps <= 0 disables it.
    double qps = 5;
    int burst = 10;
    // Try the streaming list (sendInitialEvents) first; falls back to list+watch.
    bool watchList = true;
    int pageSize = 500;
    // Deadlines of each step of a request.
    Duration connectTimeout = std::chrono::seconds(10);
    Duration handshakeTimeout = std::chrono::seconds(10);
    Duration writeTimeout = std::chrono::seconds(10);
    // TLS: offer ChaCha20-Poly1305 first; unset, when the CPU lacks AES instructions
    // (TransportOptions::preferChaCha).
    std::optional<bool> preferChaCha;
    Duration headerTimeout = std::chrono::seconds(60);
    Duration bodyIdleTimeout = std::chrono::seconds(60);
    // Watch: timeoutSeconds uniform in [minWatchTimeout, 2*minWatchTimeout); the idle deadline
    // is timeoutSeconds + watchIdleSlack.
    Duration minWatchTimeout = std::chrono::minutes(5);
    Duration watchIdleSlack = std::chrono::seconds(60);
    Duration veryShortWatch = std::chrono::seconds(1);
    BackoffParams backoff;
    int maxRetries = 10;
    Duration connectionRetryDelay = std::chrono::seconds(1);
    Duration tokenRefresh = std::chrono::minutes(1);
    // Jitter and timeoutSeconds randomness; 0 seeds from std::random_device.
    std::uint64_t randomSeed = 0;
};

// "kube-ipvs/<version> (linux/amd64)"
std::string userAgent(const std::string& version);

class Client {
  public:
    // The real environment: Beast/OpenSSL transport, Asio timers, a random seed.
    static Result<std::unique_ptr<Client>> create(boost::asio::io_context& ioc,
                                                  const ClientConfig& config,
                                                  const ClientOptions& options,
                                                  Observer* observer = nullptr);

    // An injected environment (tests): any Transport, Clock, random source and file reader.
    struct Environment {
        std::shared_ptr<Transport> transport;
        std::shared_ptr<Clock> clock;
        RandomFn random;
        ReadFileFn readFile = k8s::readFile;
    };
    Client(Environment env, const ClientConfig& config, const ClientOptions& options,
           Observer* observer = nullptr);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // All namespaces, with kProxyLabelSelector.
    std::unique_ptr<Informer<Service>> watchServices(EventHandler<Service>& handler);
    std::unique_ptr<Informer<EndpointSlice>> watchEndpointSlices(
        EventHandler<EndpointSlice>& handler);
    // The one Node named `nodeName` (fieldSelector=metadata.name=<nodeName>).
    std::unique_ptr<Informer<Node>> watchNode(const std::string& nodeName,
                                              EventHandler<Node>& handler);

    Clock& clock();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kipvs::k8s
