// The API client on a thread of its own.
//
// A large initial list (44,000 Services and their EndpointSlices: tens of MB of JSON over TLS)
// keeps one core busy decrypting and decoding for seconds. Run on the thread that programs the
// kernel, it would delay the first sync by all of that; here it runs on its own io_context and
// thread, and every handler and observer call is handed to `post` (the consumer's executor),
// in the order the client made them. The consumer's handlers therefore run on the consumer's
// thread only, exactly as if the client ran there.
//
//   auto t = k8s::ClientThread::start(config, options,
//                                     {&services, &slices, &node, nodeName, &observer},
//                                     [&](std::function<void()> fn) {
//                                         asio::post(strand, std::move(fn));
//                                     });
//
// `post` must run the functions it is given in the order it was given them, on one thread
// (an Asio strand, or an io_context run by one thread). The handlers and the observer must
// outlive the ClientThread and anything it posted. Destruction (or stop()) stops the client,
// its informers and the thread; nothing is posted afterwards. The consumer must keep running
// what is posted (the client slows down to its pace, see kMaxQueued), and must not wait on
// the client's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "ipvs/error.h"
#include "k8s-client/client.h"

namespace kipvs::k8s {

class ClientThread {
  public:
    using Post = std::function<void(std::function<void()>)>;

    // A null handler's resource is not watched by this thread (another may watch it: the
    // daemon decodes Services and EndpointSlices on two threads).
    struct Consumers {
        EventHandler<Service>* services = nullptr;
        EventHandler<EndpointSlice>* slices = nullptr;
        EventHandler<Node>* node = nullptr;
        std::string nodeName;
        Observer* observer = nullptr;  // may be null
    };

    // Calls waiting for the consumer, per ClientThread (an object is one or two calls: its
    // hand-over holds a copy of it, and an observer gets an event count): at this many, after
    // a piece of a response, the client stops reading until the consumer has taken them down
    // to half, but for one piece per wait slice; at twice as many it lets nothing in. 8,192
    // calls are a few MB, and under a second of decoding under emulation.
    static constexpr std::size_t kMaxQueued = 8192;
    // How long the client waits at a time, at the bound, before it runs its other work (its
    // other watches) and lets one more piece in.
    static constexpr std::chrono::milliseconds kWaitSlice{1000};

    // Creates the client and an informer per non-null handler and starts them on a new
    // thread. Fails (and starts nothing) when the client cannot be created, e.g. for an
    // unreadable CA file, or when there is nothing to watch.
    static Result<std::unique_ptr<ClientThread>> start(
        const ClientConfig& config, const ClientOptions& options, Consumers consumers, Post post,
        std::size_t maxQueued = kMaxQueued, std::chrono::milliseconds waitSlice = kWaitSlice);

    ~ClientThread();
    ClientThread(const ClientThread&) = delete;
    ClientThread& operator=(const ClientThread&) = delete;

    // Stops the informers and the client on their thread, then joins it. Idempotent.
    void stop();

    struct Impl;

  private:
    explicit ClientThread(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kipvs::k8s
